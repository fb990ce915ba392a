//! The controllers of the controller manager: each one a pure sync (`<name>.rs`, objects in,
//! a [`action::Plan`] out) run by the controller runtime over the informer caches.

pub mod action;
pub mod deployment;
pub mod replicaset;
