//! Put and get workloads: a closed loop of fixed workers.
//!
//! Owns the sequential-put, put-throughput and get-throughput tests, plus the
//! untimed pre-population of the keyspace the gets read. `inflight` workers each
//! keep exactly one request outstanding; worker `j` uses client `j % clients`, so
//! N requests in flight are multiplexed over C connections. Workers pull op
//! numbers from a shared counter, so the op count is exact however fast each
//! worker is. Every loop stops at the op count, at the test's deadline, or after
//! [`MAX_ERRORS`] failures, whichever comes first; every request has its own
//! timeout, so a hung server cannot hold a worker past `deadline + op_timeout`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;
use etcd_client::proto::{PbPutRequest, PbRangeRequest};
use tokio::time::Instant;

use super::BenchError;
use super::grpc::KvConn;
use super::stats::{Latencies, Row};

/// A test gives up after this many failed requests (a dead server fails fast,
/// and nothing useful is measured after that).
pub const MAX_ERRORS: u64 = 100;

/// The request a workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    GetLinearizable,
    GetSerializable,
}

/// The keys a workload touches: `<prefix>kv/<n>` for `n` in `0..size`, op `i`
/// uses key `i % size`, so puts overwrite a bounded set and gets always hit.
#[derive(Debug, Clone)]
pub struct KeySpace {
    pub prefix: String,
    pub size: u64,
}

impl KeySpace {
    fn key(&self, i: u64) -> String {
        format!("{}kv/{:08}", self.prefix, i % self.size.max(1))
    }
}

/// One closed-loop run.
pub struct Workload<'a> {
    pub name: &'static str,
    pub op: Op,
    pub clients: &'a [KvConn],
    /// The endpoints `clients` are spread over: client `i` is on endpoint `i % endpoints`.
    pub endpoints: usize,
    pub inflight: usize,
    pub total: u64,
    pub keys: KeySpace,
    pub value: Arc<Vec<u8>>,
    pub max_time: Duration,
    pub op_timeout: Duration,
}

/// Counts failures and remembers the first one, for the error message.
#[derive(Default)]
struct Failures {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Failures {
    fn note(&self, what: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert(what);
        }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn first(&self) -> String {
        self.first.lock().ok().and_then(|f| f.clone()).unwrap_or_default()
    }
}

/// Runs the workload and returns its table row, or an error if it hit
/// [`MAX_ERRORS`] or had no client to run on.
pub async fn run(w: Workload<'_>) -> Result<Row, BenchError> {
    if w.clients.is_empty() || w.inflight == 0 {
        return Err(BenchError::Args(format!("{}: needs at least one client", w.name)));
    }
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Failures::default());
    let keys = Arc::new(w.keys);
    let start = Instant::now();
    let deadline = start + w.max_time;
    let per_worker = (w.total as usize / w.inflight).saturating_add(1);

    let mut workers = Vec::with_capacity(w.inflight);
    for j in 0..w.inflight {
        let job = Job {
            client: w.clients[client_of_worker(j, w.clients.len(), w.endpoints)].clone(),
            op: w.op,
            next: next.clone(),
            total: w.total,
            keys: keys.clone(),
            value: w.value.clone(),
            deadline,
            op_timeout: w.op_timeout,
            failures: failures.clone(),
        };
        workers.push(tokio::spawn(job.run(per_worker)));
    }
    let mut latencies = Latencies::with_capacity(w.total as usize);
    for worker in workers {
        match worker.await {
            Ok(l) => latencies.merge(l),
            Err(e) => failures.note(format!("worker task failed: {e}")),
        }
    }
    let elapsed = start.elapsed();

    let errors = failures.count();
    if errors >= MAX_ERRORS {
        return Err(BenchError::Test {
            test: w.name.to_string(),
            reason: format!("gave up after {errors} failed requests; first: {}", failures.first()),
        });
    }
    let ops = latencies.len() as u64;
    let mut notes = Vec::new();
    if ops + errors < w.total {
        notes.push(format!(
            "stopped by the {}s time limit after {} of {} ops",
            w.max_time.as_secs(),
            ops + errors,
            w.total
        ));
    }
    if errors > 0 {
        notes.push(format!("{errors} failed; first: {}", failures.first()));
    }
    Ok(Row {
        test: w.name.to_string(),
        ops,
        errors,
        lost: None,
        elapsed,
        latency: latencies.summary(),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

/// What one worker needs; owns clones of the shared pieces.
struct Job {
    client: KvConn,
    op: Op,
    next: Arc<AtomicU64>,
    total: u64,
    keys: Arc<KeySpace>,
    value: Arc<Vec<u8>>,
    deadline: Instant,
    op_timeout: Duration,
    failures: Arc<Failures>,
}

impl Job {
    async fn run(mut self, capacity: usize) -> Latencies {
        let mut latencies = Latencies::with_capacity(capacity);
        while Instant::now() < self.deadline && self.failures.count() < MAX_ERRORS {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.total {
                break;
            }
            let key = self.keys.key(i);
            let sent = Instant::now();
            let outcome = tokio::time::timeout(self.op_timeout, self.once(key)).await;
            let took = sent.elapsed();
            match outcome {
                Ok(Ok(())) => latencies.record(took),
                Ok(Err(e)) => self.failures.note(e),
                Err(_) => self.failures.note(format!("timed out after {:?}", self.op_timeout)),
            }
        }
        latencies
    }

    async fn once(&mut self, key: String) -> Result<(), String> {
        match self.op {
            Op::Put => {
                let request = PbPutRequest { key: key.into_bytes(), value: self.value.to_vec(), ..Default::default() };
                self.client.put(&request).await?;
            }
            Op::GetLinearizable | Op::GetSerializable => {
                let serializable = self.op == Op::GetSerializable;
                let request = PbRangeRequest { key: key.into_bytes(), serializable, ..Default::default() };
                let response = self.client.range(&request).await?;
                if response.kvs.len() != 1 {
                    let key = String::from_utf8_lossy(&request.key);
                    return Err(format!("get {key}: expected 1 key, got {}", response.kvs.len()));
                }
            }
        }
        Ok(())
    }
}

/// The client worker `worker` uses, out of `clients` spread round-robin over `endpoints`:
/// workers go round-robin over the endpoints first, then over each endpoint's clients, so every
/// endpoint gets the same share of the requests in flight however many clients each has.
fn client_of_worker(worker: usize, clients: usize, endpoints: usize) -> usize {
    let endpoints = endpoints.clamp(1, clients.max(1));
    let endpoint = worker % endpoints;
    let on_endpoint = (clients - endpoint).div_ceil(endpoints);
    endpoint + endpoints * ((worker / endpoints) % on_endpoint)
}

/// Deletes every key under `prefix`; returns how many were deleted.
pub async fn delete_prefix(client: &Client, prefix: &str, timeout: Duration) -> Result<i64, String> {
    let mut client = client.clone();
    let options = etcd_client::DeleteOptions::new().with_prefix();
    let resp = tokio::time::timeout(timeout, client.delete(prefix, Some(options)))
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(resp.deleted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_spread_evenly_over_endpoints_then_clients() {
        let share = |clients: usize, endpoints: usize, workers: usize| {
            let mut per_client = vec![0; clients];
            for w in 0..workers {
                per_client[client_of_worker(w, clients, endpoints)] += 1;
            }
            per_client
        };
        // Four clients on three endpoints: endpoint 0's two clients share its third.
        assert_eq!(share(4, 3, 64), vec![11, 21, 21, 11]);
        assert_eq!(share(3, 3, 64), vec![22, 21, 21]);
        assert_eq!(share(6, 3, 60), vec![10; 6]);
        // Fewer clients than endpoints: only the endpoints that have one.
        assert_eq!(share(2, 3, 10), vec![5, 5]);
        assert_eq!(share(1, 1, 5), vec![5]);
    }

    #[test]
    fn keys_wrap_around_the_keyspace() {
        let k = KeySpace { prefix: "/bench/x/".into(), size: 3 };
        assert_eq!(k.key(0), "/bench/x/kv/00000000");
        assert_eq!(k.key(4), "/bench/x/kv/00000001");
        let zero = KeySpace { prefix: "/p/".into(), size: 0 };
        assert_eq!(zero.key(9), "/p/kv/00000000");
    }
}
