//! Watch delivery latency and lost events.
//!
//! Owns the `watch` test. W watchers each open their **own watch stream** (one
//! gRPC bidi stream, one watch on it) on a single key; the streams share a few
//! connections, spread round-robin over the endpoints. One writer then puts to
//! that key at a fixed rate. Each value starts with the send time (nanoseconds
//! since the test's base `Instant`, 20 ASCII digits), taken just before the put
//! is sent; a watcher computes `receive time - send time` for every event, so the
//! latency includes the put's commit (and replication, for watchers on other
//! members), not just the watch fan-out. Writer and watchers share one process
//! and one monotonic clock, so no clock sync is involved.
//!
//! Lost events: the writer records the revision of every acknowledged put; each
//! watcher records the revisions it saw. `lost` counts (watcher, acknowledged
//! revision) pairs that were never delivered. Watchers start at the revision
//! after the current one, so nothing written after setup can be missed legally.
//!
//! Bounds: watcher setup, the write phase (`--watch-puts` and the time limit)
//! and the drain after the last put (`drain`) are each limited in time.

use std::collections::HashSet;
use std::time::Duration;

use etcd_client::{Client, WatchOptions};
use tokio::sync::watch as signal;
use tokio::time::{Instant, MissedTickBehavior};

use super::BenchError;
use super::stats::{Latencies, MAX_PREALLOC, Row};

/// Width of the timestamp at the start of each value.
const STAMP_LEN: usize = 20;

/// Parameters of one watch test.
pub struct WatchTest<'a> {
    /// Connections the watch streams are opened on (watcher `i` uses `i % len`).
    pub watch_clients: &'a [Client],
    /// Connection the writer puts through.
    pub writer: Client,
    pub key: String,
    pub watchers: usize,
    pub puts: u64,
    pub rate: f64,
    pub value_size: usize,
    pub max_time: Duration,
    pub op_timeout: Duration,
    /// How long to wait for stragglers after the last put.
    pub drain: Duration,
}

/// Sent to watchers when the writer is done: the last acknowledged revision
/// and when to stop waiting for it.
type Finish = Option<(i64, Instant)>;

/// What one watcher saw.
struct Seen {
    latencies: Latencies,
    revisions: Vec<i64>,
    error: Option<String>,
}

/// Runs the test and returns its row; fails only if the watches cannot be set up.
pub async fn run(t: WatchTest<'_>) -> Result<Row, BenchError> {
    let fail = |reason: String| BenchError::Test { test: "watch".into(), reason };
    if t.watch_clients.is_empty() || t.watchers == 0 {
        return Err(fail("needs at least one watcher and one connection".into()));
    }
    let mut writer = t.writer;
    let current = tokio::time::timeout(t.op_timeout, writer.get(t.key.as_str(), None))
        .await
        .map_err(|_| fail("timed out reading the current revision".into()))?
        .map_err(|e| fail(format!("reading the current revision: {e}")))?
        .header()
        .map(|h| h.revision())
        .ok_or_else(|| fail("server sent no response header".into()))?;

    let base = Instant::now();
    let (finish_tx, finish_rx) = signal::channel::<Finish>(None);
    let hard_stop = base + t.max_time + t.op_timeout + t.drain;
    let mut watchers = Vec::with_capacity(t.watchers);
    for i in 0..t.watchers {
        if Instant::now() >= base + t.max_time {
            return Err(fail(format!("only {i} watchers set up within {:?}", t.max_time)));
        }
        let mut client = t.watch_clients[i % t.watch_clients.len()].clone();
        let options = WatchOptions::new().with_start_revision(current + 1);
        let setup = async {
            let mut stream = client.watch(t.key.as_str(), Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        };
        let (stream, first) = tokio::time::timeout(t.op_timeout, setup)
            .await
            .map_err(|_| fail(format!("watcher {i}: not created within {:?}", t.op_timeout)))?
            .map_err(|e| fail(format!("watcher {i}: {e}")))?;
        match first {
            Some(r) if r.created() && !r.canceled() => {}
            Some(r) => {
                return Err(fail(format!("watcher {i}: not created (canceled: {})", r.cancel_reason())));
            }
            None => return Err(fail(format!("watcher {i}: stream closed at creation"))),
        }
        let expect = t.puts as usize;
        watchers.push(tokio::spawn(watch_loop(stream, base, finish_rx.clone(), hard_stop, expect)));
    }

    // Write phase: one put per tick, each value stamped with its send time.
    let interval = Duration::from_secs_f64(1.0 / t.rate.max(0.001));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let write_deadline = base + t.max_time;
    let size = t.value_size.max(STAMP_LEN);
    let mut acked: Vec<i64> = Vec::with_capacity((t.puts as usize).min(MAX_PREALLOC));
    let mut put_latency = Latencies::with_capacity(t.puts as usize);
    let mut write_errors = 0u64;
    let mut first_error = None;
    let started = Instant::now();
    for _ in 0..t.puts {
        // A slow --watch-rate must not sleep past the time limit.
        let on_time = tokio::time::timeout_at(write_deadline, ticker.tick()).await.is_ok();
        if !on_time || Instant::now() >= write_deadline || write_errors >= super::kv::MAX_ERRORS {
            break;
        }
        let sent = Instant::now();
        let value = stamped_value(sent.duration_since(base), size);
        match tokio::time::timeout(t.op_timeout, writer.put(t.key.as_str(), value, None)).await {
            Ok(Ok(resp)) => {
                put_latency.record(sent.elapsed());
                if let Some(h) = resp.header() {
                    acked.push(h.revision());
                }
            }
            Ok(Err(e)) => {
                write_errors += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(_) => {
                write_errors += 1;
                first_error.get_or_insert(format!("put timed out after {:?}", t.op_timeout));
            }
        }
    }
    let write_time = started.elapsed();
    let last = acked.iter().copied().max().unwrap_or(0);
    let _ = finish_tx.send(Some((last, Instant::now() + t.drain)));

    let mut latencies = Latencies::with_capacity(acked.len().saturating_mul(t.watchers));
    let acked_set: HashSet<i64> = acked.iter().copied().collect();
    let (mut lost, mut duplicates, mut watch_errors) = (0u64, 0u64, 0u64);
    let mut watch_error = None;
    for w in watchers {
        let seen = match w.await {
            Ok(s) => s,
            Err(e) => Seen {
                latencies: Latencies::default(),
                revisions: Vec::new(),
                error: Some(format!("watcher task failed: {e}")),
            },
        };
        let unique: HashSet<i64> = seen.revisions.iter().copied().collect();
        duplicates += (seen.revisions.len() - unique.len()) as u64;
        lost += acked_set.difference(&unique).count() as u64;
        if let Some(e) = seen.error {
            watch_errors += 1;
            watch_error.get_or_insert(e);
        }
        latencies.merge(seen.latencies);
    }
    drop(finish_tx);

    let expected = acked.len() as u64 * t.watchers as u64;
    let mut notes = vec![format!(
        "ops = events delivered, latency = delivery - put send time; \
         {} watchers (one watch stream each, over {} connections) on one key; \
         {} of {} puts acked at {}/s; {} of {expected} events delivered; \
         put ack p50 {}",
        t.watchers,
        t.watch_clients.len().min(t.watchers),
        acked.len(),
        t.puts,
        t.rate,
        latencies.len(),
        fmt_ms(put_latency.summary().p50),
    )];
    if lost > 0 {
        notes.push(format!("LOST {lost} events"));
    }
    if duplicates > 0 {
        notes.push(format!("{duplicates} duplicate events"));
    }
    if write_errors > 0 {
        notes.push(format!("{write_errors} puts failed; first: {}", first_error.unwrap_or_default()));
    }
    if watch_errors > 0 {
        notes.push(format!("{watch_errors} watchers ended early; first: {}", watch_error.unwrap_or_default()));
    }
    if (acked.len() as u64) + write_errors < t.puts {
        notes.push(format!("writer stopped by the {}s time limit", t.max_time.as_secs()));
    }
    Ok(Row {
        test: "watch".into(),
        ops: latencies.len() as u64,
        errors: write_errors + watch_errors,
        lost: Some(lost),
        elapsed: write_time,
        latency: latencies.summary(),
        note: Some(notes.join("; ")),
    })
}

/// Receives events until the last acknowledged revision arrived, the drain
/// time after the writer finished ran out, or `hard_stop` passed.
async fn watch_loop(
    mut stream: etcd_client::WatchStream,
    base: Instant,
    mut finish: signal::Receiver<Finish>,
    hard_stop: Instant,
    expect: usize,
) -> Seen {
    let mut seen = Seen {
        latencies: Latencies::with_capacity(expect),
        revisions: Vec::with_capacity(expect.min(MAX_PREALLOC)),
        error: None,
    };
    let mut max_rev = 0i64;
    let mut stop_at = hard_stop;
    let mut target: Option<i64> = None;
    loop {
        if let Some((last, drain_until)) = *finish.borrow_and_update() {
            target = Some(last);
            stop_at = stop_at.min(drain_until);
        }
        if target.is_some_and(|last| max_rev >= last) {
            break;
        }
        tokio::select! {
            msg = stream.message() => {
                let now = base.elapsed();
                match msg {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            seen.error = Some(format!("watch canceled: {}", resp.cancel_reason()));
                            break;
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            max_rev = max_rev.max(kv.mod_revision());
                            seen.revisions.push(kv.mod_revision());
                            if let Some(sent) = read_stamp(kv.value()) {
                                seen.latencies.record(now.saturating_sub(sent));
                            }
                        }
                    }
                    Ok(None) => {
                        seen.error = Some("watch stream closed by the server".into());
                        break;
                    }
                    Err(e) => {
                        seen.error = Some(e.to_string());
                        break;
                    }
                }
            }
            changed = finish.changed() => {
                if changed.is_err() {
                    break; // the test is over
                }
            }
            _ = tokio::time::sleep_until(stop_at) => break,
        }
    }
    seen
}

/// A value of `size` bytes (at least [`STAMP_LEN`]) starting with `since_base` in
/// nanoseconds as zero-padded decimal digits, then filler.
pub fn stamped_value(since_base: Duration, size: usize) -> Vec<u8> {
    let mut v = format!("{:0width$}", since_base.as_nanos(), width = STAMP_LEN).into_bytes();
    v.resize(size.max(STAMP_LEN), b'x');
    v
}

/// Reads the timestamp written by [`stamped_value`]; `None` if the value is not ours.
pub fn read_stamp(value: &[u8]) -> Option<Duration> {
    let digits = std::str::from_utf8(value.get(..STAMP_LEN)?).ok()?;
    let nanos: u64 = digits.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn fmt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let d = Duration::from_nanos(1_234_567_890_123);
        let v = stamped_value(d, 256);
        assert_eq!(v.len(), 256);
        assert_eq!(read_stamp(&v), Some(d));
        // Values shorter than the stamp still carry the whole stamp.
        assert_eq!(stamped_value(d, 4).len(), STAMP_LEN);
        assert_eq!(read_stamp(b"not a stamp at all, no"), None);
        assert_eq!(read_stamp(b"123"), None);
    }
}
