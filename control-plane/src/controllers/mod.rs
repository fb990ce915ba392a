//! The controllers of the controller manager: each one a pure sync (`<name>.rs`, objects in,
//! a [`action::Plan`] out) run by the controller runtime over the informer caches.

pub mod action;
pub mod deployment;
pub mod endpoints;
pub mod endpointslices;
pub mod garbage_collector;
pub mod kubernetes_service;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pod_gc;
pub mod replicaset;
pub mod service_account;
