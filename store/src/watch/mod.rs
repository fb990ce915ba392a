//! Watches: a hub on every member, fed in revision order by the applier after each commit.
//!
//! A watcher is either *synced* (it has every revision up to the last published one and gets
//! new revisions pushed as they commit) or *unsynced* (it starts in the past, or its stream's
//! buffer was full). Unsynced watchers are caught up from the engine's history by one task,
//! in bounded chunks; the last step of the catch-up runs under the hub lock so the switch to
//! live delivery has no gap and no duplicate. A slow client therefore never blocks writers:
//! its buffer fills, its watchers drop to unsynced, and they read history when it drains.
//!
//! [`hub`] holds the watchers and delivery; [`filter`] turns a revision's changes into what
//! one watcher receives.

pub mod filter;
pub mod hub;

pub use hub::{Outgoing, WatchHub, WatchParams};
