//! Kubernetes strategic merge patch: the `application/strategic-merge-patch+json` PATCH body that
//! `kubectl apply`, `kubectl edit` and `kubectl patch --type strategic` send.
//!
//! # Layout
//! - [`strategic`]: the algorithm. [`strategic::apply`] merges a patch into a stored object given
//!   the object's API group and kind; it is pure (JSON in, JSON out) and bounds its recursion.
//! - [`schema`]: the patch metadata Kubernetes keeps in Go struct tags (which lists merge by which
//!   key, which are sets of scalars, which objects have `retainKeys`), as a static tree per kind.
//!
//! # API boundary
//! Nothing here knows about HTTP, storage or versions: the API server decodes the request, loads
//! the object, calls [`strategic::apply`], then validates and stores the result. Kinds missing from
//! the schema (custom resources) get JSON merge patch semantics plus the directives.
pub mod schema;
pub mod strategic;
