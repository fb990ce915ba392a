//! How long a store with many keys takes to reopen (the bar: seconds, not minutes, at 1M keys).
//!
//! Run: `cargo bench -p keel-store --bench reopen -- [KEYS] [DIR]` (defaults: 1,000,000 keys in
//! a temporary directory). It writes the keys through the real applier (one revision each, as
//! clients would), closes the engine, then times `Engine::open` and a first read.

use std::sync::Arc;
use std::time::Instant;

use etcd_client::proto::PbPutRequest as PutRequest;
use keel_store::apply::{Applier, Proposal};
use keel_store::lease::Lessor;
use keel_store::mvcc::Engine;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let keys: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let scratch = tempfile::tempdir()?;
    let dir = args.next().map(std::path::PathBuf::from).unwrap_or_else(|| scratch.path().join("db"));

    let started = Instant::now();
    {
        let engine = Arc::new(Engine::open(&dir)?);
        let mut applier = Applier::new(engine.clone(), Arc::new(Lessor::new(2)));
        for i in 0..keys {
            let put = PutRequest {
                key: format!("/registry/pods/ns-{}/pod-{i:08}", i % 100).into_bytes(),
                value: vec![b'v'; 256],
                ..Default::default()
            };
            let (outcome, _) = applier.apply(&Proposal::Put(put));
            outcome?;
        }
        engine.db().flush_wal(true)?;
        engine.publish_committed(applier.revision());
    }
    let fill_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let engine = Engine::open(&dir)?;
    let open_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let found = engine.get_at(b"/registry/pods/ns-7/pod-00000007", engine.committed_revision())?;
    let first_read_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(found.is_some(), "a written key must be readable after reopening");
    println!(
        "keys: {keys}  fill: {fill_seconds:.1} s  reopen: {open_seconds:.3} s  first read: {first_read_ms:.2} ms  revision: {}",
        engine.committed_revision()
    );
    Ok(())
}
