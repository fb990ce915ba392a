//! Per-resource rules the API server applies to a request body before it is stored: strict
//! decoding, defaulting and validation, each producing exactly what Kubernetes 1.33 produces so
//! that unmodified `kubectl` sees the errors and objects it expects.
//!
//! # Layout
//! - [`strict`]: decodes a JSON or YAML body for a resource, reporting unknown and duplicate fields
//!   (`fieldValidation=Strict` fails, `Warn` collects warnings, `Ignore` is plain decoding).
//! - [`defaults`]: fills the fields Kubernetes defaults (`SetDefaults_*`) on a decoded object.
//! - [`validation`]: checks a defaulted object (and, on update, its stored predecessor) and returns
//!   field causes worded as Kubernetes words them, plus the `Status` message that wraps them.
//! - [`pod_admission`]: a new pod's QoS class and the DefaultTolerationSeconds tolerations.
//! - [`names`]: name and key rules (DNS-1123 labels and subdomains, qualified names, label values,
//!   port names, config keys) shared by the others.
//!
//! # Order of use
//! A create or update runs `strict` (on the raw body), then `defaults`, then `validation`; the
//! caller turns a [`strict::StrictError`] into a 400 and non-empty causes into a 422 `Invalid`.
//!
//! # Boundaries
//! Everything here is pure: no I/O, no clock, no store access. Resources are named by their plural
//! (`pods`, `deployments`, ...). Name generation, immutability of `metadata` (name, namespace, uid),
//! cluster-IP and node-port allocation and admission (service accounts, priority-class lookup)
//! belong to the callers; this module only checks and fills what it is given.

pub mod defaults;
pub mod names;
pub mod pod_admission;
pub mod strict;
pub mod validation;
