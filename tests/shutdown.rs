//! Clean shutdown on SIGTERM and SIGINT, with real processes: a `keel store` member (a
//! follower, the leader, all three at once) and a `keel master` exit with status 0 within 5 s
//! under a write load, no acknowledged write is lost, and a leader hands leadership over
//! before it exits, so the survivors never wait out an election timeout. `keel up` exits 0
//! too, with embedded stores and on a real etcd.
//!
//! Every process is started by the harness and stopped by its PID, also when a test fails.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, parse_status};
use common::control_plane::{Backend, UpCluster};
use common::masters::Masters;
use common::{Target, client};
use etcd_client::{GetOptions, WatchOptions};

const MEMBERS: usize = 3;
/// What a stopped process may take, from the signal to its exit.
const EXIT_WITHIN: Duration = Duration::from_secs(5);
/// How long a test waits for an exit before it fails (longer than `EXIT_WITHIN`, to report
/// how long a slow stop took).
const EXIT_WAIT: Duration = Duration::from_secs(15);
/// The election timeout of the hand-over test: a follower campaigns only 3.75 to 5 s after it
/// last heard from its leader, so a leader within `NEW_LEADER_WITHIN` cannot come from one.
const LONG_ELECTION_TIMEOUT_MS: u64 = 5_000;
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(2);
const LOAD_WRITERS: usize = 4;
/// A writer gives up on one put (and moves to the next endpoint) after this long.
const PUT_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs a blocking harness call from an async test without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Sends `signal` to member `i`, waits for its exit and returns the status and how long it took;
/// fails the test if it is still running after `EXIT_WAIT`.
fn stop_member(cluster: &mut Cluster, i: usize, signal: &str) -> (ExitStatus, Duration) {
    cluster.signal(i, signal);
    let sent = Instant::now();
    let status = cluster
        .wait_exit_status(i, EXIT_WAIT)
        .unwrap_or_else(|| panic!("member {i} still running {EXIT_WAIT:?} after SIG{signal}"));
    (status, sent.elapsed())
}

fn assert_clean_exit(what: &str, status: ExitStatus, took: Duration) {
    eprintln!("{what}: exited with {status} after {} ms", took.as_millis());
    assert!(status.success(), "{what}: exit status {status}, expected 0");
    assert!(took < EXIT_WITHIN, "{what}: took {took:?} to exit, more than {EXIT_WITHIN:?}");
}

/// One acknowledged put of the write load.
#[derive(Clone, Debug)]
struct Ack {
    key: String,
    value: String,
    rev: i64,
}

/// Writers putting new keys under `prefix` through `endpoints`, one put in flight each,
/// moving to the next endpoint after an error or a timeout, until stopped (or 60 s).
struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(prefix: &str, endpoints: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let writers = (0..LOAD_WRITERS)
            .map(|w| tokio::spawn(write(format!("{prefix}{w}/"), w, endpoints.clone(), stop.clone(), acks.clone())))
            .collect();
        Load { stop, acks, writers }
    }

    fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    async fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.await.expect("writer task");
        }
        self.acks.lock().unwrap().clone()
    }
}

async fn write(
    prefix: String,
    first: usize,
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut current = first % endpoints.len();
    let mut connection: Option<etcd_client::Client> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if connection.is_none() {
            let url = format!("http://{}", endpoints[current]);
            let options = etcd_client::ConnectOptions::new().with_connect_timeout(PUT_TIMEOUT);
            connection = etcd_client::Client::connect([url], Some(options)).await.ok();
        }
        let Some(c) = connection.as_mut() else {
            current = (current + 1) % endpoints.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let (key, value) = (format!("{prefix}{seq:06}"), format!("v{seq}"));
        seq += 1;
        match tokio::time::timeout(PUT_TIMEOUT, c.put(key.as_str(), value.as_str(), None)).await {
            Ok(Ok(resp)) => {
                let rev = resp.header().expect("put header").revision();
                acks.lock().unwrap().push(Ack { key, value, rev });
            }
            _ => {
                connection = None;
                current = (current + 1) % endpoints.len();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Every key and value under `prefix` by a linearizable read on `endpoint`.
async fn read_prefix(endpoint: &str, prefix: &str) -> BTreeMap<String, (String, i64)> {
    let mut c = client(endpoint).await;
    let resp = tokio::time::timeout(Duration::from_secs(10), c.get(prefix, Some(GetOptions::new().with_prefix())))
        .await
        .unwrap_or_else(|_| panic!("get {prefix} on {endpoint}: no answer within 10s"))
        .unwrap_or_else(|e| panic!("get {prefix} on {endpoint}: {e:?}"));
    resp.kvs()
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(kv.key()).to_string();
            (key, (String::from_utf8_lossy(kv.value()).to_string(), kv.mod_revision()))
        })
        .collect()
}

/// Every acknowledged put is readable, with its value and revision, on each of `endpoints`.
async fn assert_no_ack_lost(acks: &[Ack], endpoints: &[String], prefix: &str) {
    assert!(!acks.is_empty(), "the load had no acknowledged put at all");
    for endpoint in endpoints {
        let stored = read_prefix(endpoint, prefix).await;
        for ack in acks {
            assert_eq!(
                stored.get(&ack.key),
                Some(&(ack.value.clone(), ack.rev)),
                "acknowledged put {} (revision {}) lost on {endpoint}",
                ack.key,
                ack.rev
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn a_follower_sent_sigterm_under_load_exits_0_within_5s_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = blocking(|| Cluster::start(Target::Keel, dir.path(), MEMBERS));
    let endpoints = cluster.endpoints();
    let leader = blocking(|| cluster.wait_leader(Duration::from_secs(10)));
    let follower = (0..MEMBERS).find(|&i| i != leader).expect("a follower");

    // A watch stream on the follower must not keep it alive: the stop ends it.
    let mut wc = client(&endpoints[follower]).await;
    let mut watch = wc.watch("follower/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
    let load = Load::start("follower/", endpoints.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(load.acked() > 0, "no put acknowledged in the first second");

    let (status, took) = blocking(|| stop_member(&mut cluster, follower, "TERM"));
    assert_clean_exit("follower after SIGTERM", status, took);
    let ended = tokio::time::timeout(Duration::from_secs(1), async {
        // Events until the stream ends or fails.
        while let Ok(Some(_)) = watch.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the follower's watch stream did not end with it");

    let before = load.acked();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acks = load.finish().await;
    assert!(acks.len() > before, "no put acknowledged after the follower stopped");
    let survivors: Vec<String> = (0..MEMBERS).filter(|&i| i != follower).map(|i| endpoints[i].clone()).collect();
    assert_no_ack_lost(&acks, &survivors, "follower/").await;

    // It comes back with everything, too.
    blocking(|| cluster.restart(follower));
    assert_no_ack_lost(&acks, &[endpoints[follower].clone()], "follower/").await;
}

/// How long after `since` a survivor first acknowledges a put committed in a term after
/// `old_term` (so under a new leader, not forwarded to the old one); fails the test after 10 s.
async fn first_put_under_new_leader(survivors: &[String], old_term: u64, since: Instant) -> Duration {
    for attempt in 0usize.. {
        let endpoint = &survivors[attempt % survivors.len()];
        let options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_millis(200));
        if let Ok(mut c) = etcd_client::Client::connect([format!("http://{endpoint}")], Some(options)).await {
            let put = tokio::time::timeout(Duration::from_millis(300), c.put("handover/probe", "x", None)).await;
            if let Ok(Ok(resp)) = put
                && resp.header().is_some_and(|h| h.raft_term() > old_term)
            {
                return since.elapsed();
            }
        }
        assert!(since.elapsed() < Duration::from_secs(10), "no survivor took a put within 10 s of the SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn the_leader_sent_sigterm_under_load_hands_leadership_over_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let election = format!("--election-timeout={LONG_ELECTION_TIMEOUT_MS}");
    let mut cluster = blocking(|| Cluster::start_with_flags(Target::Keel, dir.path(), MEMBERS, &[&election]));
    let endpoints = cluster.endpoints();
    let leader = blocking(|| cluster.wait_leader(Duration::from_secs(30)));
    let old = blocking(|| cluster.status(leader)).expect("leader status");
    let survivors: Vec<String> = (0..MEMBERS).filter(|&i| i != leader).map(|i| endpoints[i].clone()).collect();
    let load = Load::start("leader/", endpoints.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(load.acked() > 0, "no put acknowledged in the first second");

    cluster.signal(leader, "TERM");
    let sent = Instant::now();
    let probe = {
        let survivors = survivors.clone();
        let old_term = old.raft_term;
        tokio::spawn(async move { first_put_under_new_leader(&survivors, old_term, sent).await })
    };
    let status = blocking(|| cluster.wait_exit_status(leader, EXIT_WAIT))
        .unwrap_or_else(|| panic!("the leader still runs {EXIT_WAIT:?} after SIGTERM"));
    let took = sent.elapsed();
    let first_put = probe.await.expect("probe task");
    assert_clean_exit("leader after SIGTERM", status, took);
    eprintln!("first put under a new leader {} ms after the SIGTERM", first_put.as_millis());
    assert!(
        first_put < NEW_LEADER_WITHIN,
        "the first put under a new leader came {first_put:?} after the SIGTERM: leadership was not handed \
         over (an election after a {LONG_ELECTION_TIMEOUT_MS} ms timeout takes at least 3.75 s)"
    );
    let log = cluster.log(leader);
    assert!(log.contains("handover=\"Moved"), "the leader's log does not show the hand-over:\n{log}");

    // One new term, led by a survivor, and no write lost. (The exited member is reaped so the
    // harness looks at the survivors only.)
    blocking(|| cluster.kill9(leader));
    let new_leader = blocking(|| cluster.wait_leader(Duration::from_secs(10)));
    let new = blocking(|| cluster.status(new_leader)).expect("new leader status");
    assert_ne!(new.leader, old.leader);
    assert!(new.raft_term > old.raft_term, "term {} after {}", new.raft_term, old.raft_term);
    let acks = load.finish().await;
    assert_no_ack_lost(&acks, &survivors, "leader/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn all_three_members_sent_sigterm_at_once_exit_0_within_5s_and_keep_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = blocking(|| Cluster::start(Target::Keel, dir.path(), MEMBERS));
    let endpoints = cluster.endpoints();
    blocking(|| cluster.wait_leader(Duration::from_secs(10)));
    let load = Load::start("all/", endpoints.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(load.acked() > 0, "no put acknowledged in the first second");

    let sent = Instant::now();
    for i in 0..MEMBERS {
        cluster.signal(i, "TERM");
    }
    for i in 0..MEMBERS {
        let status = blocking(|| cluster.wait_exit_status(i, EXIT_WAIT))
            .unwrap_or_else(|| panic!("member {i} still runs {EXIT_WAIT:?} after SIGTERM"));
        assert_clean_exit(&format!("member {i} of three stopped at once"), status, sent.elapsed());
    }
    let acks = load.finish().await;

    blocking(|| {
        for i in 0..MEMBERS {
            cluster.start_member(i);
        }
        for i in 0..MEMBERS {
            cluster.wait_ready(i);
        }
        cluster.wait_leader(Duration::from_secs(30));
    });
    assert_no_ack_lost(&acks, &endpoints, "all/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_a_member_as_sigterm_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = blocking(|| Cluster::start(Target::Keel, dir.path(), 1));
    let mut c = client(&cluster.endpoint(0)).await;
    let rev = c.put("sigint/a", "1", None).await.expect("put").header().expect("header").revision();
    let (status, took) = blocking(|| stop_member(&mut cluster, 0, "INT"));
    assert_clean_exit("single member after SIGINT", status, took);
    assert!(cluster.log(0).contains("store member stopped"), "no clean stop in the log:\n{}", cluster.log(0));
    blocking(|| cluster.restart(0));
    let stored = read_prefix(&cluster.endpoint(0), "sigint/").await;
    assert_eq!(stored.get("sigint/a"), Some(&("1".to_string(), rev)));
}

// ---------------------------------------------------------------------------------------------
// Masters
// ---------------------------------------------------------------------------------------------

/// A kube-rs client for master `i`, authenticated with the harness's kubeconfig.
async fn kube_client(masters: &Masters, i: usize) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(masters.kubeconfig()).expect("read kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client config");
    config.cluster_url = masters.api_url(i).parse().expect("API URL");
    config.read_timeout = Some(PUT_TIMEOUT);
    kube::Client::try_from(config).expect("kube client")
}

/// Writers creating ConfigMaps through the masters, one create in flight each, moving to the
/// next master after an error or a timeout, until stopped; the names acknowledged.
async fn create_configmaps(
    clients: Vec<kube::Client>,
    first: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut current = first % clients.len();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let name = format!("load-{first}-{seq:06}");
        seq += 1;
        let map: ConfigMap = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "n": "1" }
        }))
        .expect("configmap");
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(clients[current].clone(), "default");
        match tokio::time::timeout(PUT_TIMEOUT * 2, api.create(&Default::default(), &map)).await {
            Ok(Ok(_)) => acked.lock().unwrap().push(name),
            _ => {
                current = (current + 1) % clients.len();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The master whose embedded store member leads, by `etcdctl endpoint status`.
fn store_leader(masters: &Masters) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statuses: Vec<_> = (0..masters.len())
            .filter_map(|i| {
                let out = common::etcdctl(&masters.store_endpoint(i), &["endpoint", "status", "-w", "json"]);
                parse_status(&String::from_utf8_lossy(&out.stdout)).into_iter().next().map(|s| (i, s))
            })
            .collect();
        if let Some((i, _)) = statuses.iter().find(|(_, s)| s.leader != 0 && s.member_id == s.leader) {
            return *i;
        }
        assert!(Instant::now() < deadline, "no store leader among the masters: {statuses:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the child by PID when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn a_master_sent_sigterm_under_load_exits_0_within_5s_and_the_others_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut masters = blocking(|| Masters::start(dir.path(), MEMBERS));
    // The master whose store leads: its stop hands leadership over as well.
    let stopped = blocking(|| store_leader(&masters));
    let _watch = KillOnDrop(masters.kubectl_spawn(stopped, &["get", "configmaps", "--watch"]));
    let mut clients = Vec::new();
    for i in 0..masters.len() {
        clients.push(kube_client(&masters, i).await);
    }
    let (stop, acked): (Arc<AtomicBool>, Arc<Mutex<Vec<String>>>) = Default::default();
    let writers: Vec<_> = (0..LOAD_WRITERS)
        .map(|w| tokio::spawn(create_configmaps(clients.clone(), w, stop.clone(), acked.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!acked.lock().unwrap().is_empty(), "no ConfigMap created in the first 2 s");

    masters.signal(stopped, "TERM");
    let sent = Instant::now();
    let status = blocking(|| masters.wait_exit_status(stopped, EXIT_WAIT))
        .unwrap_or_else(|| panic!("master m{stopped} still runs {EXIT_WAIT:?} after SIGTERM"));
    assert_clean_exit(&format!("master m{stopped} (store leader) after SIGTERM"), status, sent.elapsed());
    let before = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer task");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > before, "no ConfigMap created after master m{stopped} stopped");

    for i in (0..masters.len()).filter(|&i| i != stopped) {
        let out = blocking(|| masters.kubectl_on(i, &["get", "configmaps", "-o", "name", "--request-timeout=10s"]));
        assert!(out.status.success(), "kubectl get on m{i}: {}", String::from_utf8_lossy(&out.stderr));
        let listed: HashSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("configmap/").map(str::to_string))
            .collect();
        for name in &acked {
            assert!(listed.contains(name), "acknowledged ConfigMap {name} missing on m{i}");
        }
        let name = format!("after-stop-{i}");
        let out = blocking(|| masters.kubectl_on(i, &["create", "configmap", &name, "--request-timeout=10s"]));
        assert!(out.status.success(), "kubectl create on m{i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(masters.log(stopped).contains("API server stopped"), "no API server drain in the log");
}

/// True while `pid` is a live process whose command line names `dir` (PIDs get reused).
fn runs_in(pid: u32, dir: &std::path::Path) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !cmdline.is_empty() && String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy())
}

/// `keel up` stops its masters and exits 0 on `signal`, within the masters' 5 s and its own
/// bookkeeping.
fn up_exits_cleanly(backend: Backend, signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = UpCluster::start(dir.path(), backend);
    let pids = cluster.master_pids();
    assert_eq!(pids.len(), 3, "keel up wrote {} master pid files", pids.len());
    let sent = Instant::now();
    let status = cluster
        .stop_up(signal, EXIT_WAIT)
        .unwrap_or_else(|| panic!("keel up still runs {EXIT_WAIT:?} after SIG{signal}; logs:\n{}", cluster.logs()));
    assert_clean_exit(&format!("keel up ({backend:?}) after SIG{signal}"), status, sent.elapsed());
    for pid in pids {
        assert!(!runs_in(pid, &cluster.dir), "master {pid} still runs after keel up exited");
    }
    let logs = cluster.logs();
    for line in logs.lines().filter(|line| line.contains("stopped") || line.contains("shutting down")) {
        eprintln!("{line}");
    }
    assert!(!logs.contains("did not stop"), "a master did not stop completely:\n{logs}");
}

#[test]
fn keel_up_exits_0_on_sigterm() {
    up_exits_cleanly(Backend::Embedded, "TERM");
}

#[test]
fn keel_up_on_etcd_exits_0_on_sigint() {
    up_exits_cleanly(Backend::Etcd, "INT");
}
