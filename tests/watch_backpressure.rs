//! A watcher that stops reading never slows writers down, and when it reads again it gets every
//! event, in order, exactly once (the hub drops it to catch-up from history meanwhile).
//! Also: periodic progress notifications reach an idle watcher that asked for them.

mod common;

use std::time::{Duration, Instant};

use etcd_client::{EventType, PutOptions, WatchOptions};

const WRITES: i64 = 3_000;
const VALUE_BYTES: usize = 4_096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watcher_does_not_block_writers_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::Server::start(dir.path());
    let mut watcher_client = common::client(&server.endpoint).await;
    let mut writer = common::client(&server.endpoint).await;

    let mut stream = watcher_client.watch("/slow/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
    let created = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
    assert!(matches!(created, Ok(Ok(Some(ref r))) if r.created()), "first message is created: {created:?}");

    // ~12 MiB of events that nobody reads: far more than the stream's buffers hold.
    let value = vec![b'x'; VALUE_BYTES];
    let started = Instant::now();
    let mut first_revision = 0;
    for i in 0..WRITES {
        let put = tokio::time::timeout(
            Duration::from_secs(10),
            writer.put(format!("/slow/{i:05}"), value.clone(), None::<PutOptions>),
        )
        .await
        .expect("a put must not hang behind a stalled watcher")
        .expect("put");
        if i == 0 {
            first_revision = put.header().map(|h| h.revision()).unwrap_or_default();
        }
    }
    let writing = started.elapsed();
    assert!(writing < Duration::from_secs(60), "writes took {writing:?} with a stalled watcher");

    let mut next = first_revision;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < first_revision + WRITES {
        assert!(Instant::now() < deadline, "watcher caught up only to revision {next}");
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
        let response = match message {
            Ok(Ok(Some(response))) => response,
            other => panic!("watch stream ended early at revision {next}: {other:?}"),
        };
        assert!(!response.canceled(), "watch canceled: {}", response.cancel_reason());
        for event in response.events() {
            let kv = event.kv().expect("event kv");
            assert_eq!(event.event_type(), EventType::Put);
            assert_eq!(kv.mod_revision(), next, "events in order, no gap, no duplicate");
            assert_eq!(kv.value().len(), VALUE_BYTES);
            next += 1;
        }
    }
    assert_eq!(next, first_revision + WRITES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_progress_notifications_reach_idle_watchers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::Server::start_with_flags(dir.path(), &["--experimental-watch-progress-notify-interval=500ms"]);
    let mut client = common::client(&server.endpoint).await;
    client.put("/idle/a", "1", None).await.expect("put");
    let mut stream =
        client.watch("/idle/", Some(WatchOptions::new().with_prefix().with_progress_notify())).await.expect("watch");
    let created = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
    assert!(matches!(created, Ok(Ok(Some(ref r))) if r.created()));
    let progress = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a progress notification within 10 s")
        .expect("stream")
        .expect("message");
    assert!(progress.events().is_empty() && !progress.canceled(), "an empty progress response");
    assert_eq!(progress.header().map(|h| h.revision()), Some(2), "progress carries the current revision");
}
