//! The harness for store-access tests: one [`Fixture`] per test, holding a [`Kv`] on a real
//! store. Three kinds, so one test body checks that all three behave as etcd does:
//!
//! - `embedded`: a single-member Keel store started in this process with
//!   `keel_store::server::start`, reached through `EmbeddedKv`;
//! - `keel`: a `keel store` process (the binary cargo built next to this test, i.e.
//!   `$CARGO_TARGET_DIR/release/keel`), reached through `RemoteKv`;
//! - `etcd`: a real etcd 3.4 process (`etcd` on the PATH), reached through `RemoteKv`.
//!
//! Every store gets a fresh temporary data directory and 127.0.0.1 ports that were free a
//! moment before. Every process is started here and stopped by its PID (SIGKILL, then reaped)
//! when the fixture drops; if the test is failing, the tail of the process log is printed.
//! Nothing is skipped: a missing binary fails the test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use keel_control_plane::kv::embedded::EmbeddedKv;
use keel_control_plane::kv::remote::RemoteKv;
use keel_control_plane::kv::{Kv, Range};
use keel_store::server::RunningStore;
use keel_store::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a store gets to start answering.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines printed when a test fails.
const LOG_TAIL_LINES: usize = 60;
/// Largest `/metrics` answer read.
const METRICS_MAX_BYTES: usize = 4 << 20;

/// Two distinct free ports (client, peer).
fn two_ports() -> (u16, u16) {
    let ports = keel_net::ports::free_local_ports(2).expect("two free ports");
    (ports[0], ports[1])
}

/// The `keel` binary built in the same target directory as this test
/// (`<target>/release/deps/kv-…` → `<target>/release/keel`).
pub fn keel_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary sits in <target>/<profile>/deps");
    let bin = profile_dir.join("keel");
    assert!(bin.is_file(), "{} is missing: build it first (cargo build --release --workspace)", bin.display());
    bin
}

/// etcd from the PATH; missing means the machine was not set up: fail, never skip.
pub fn etcd_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`etcd` (3.4) is not installed: run scripts/setup.sh"))
}

/// The flags etcd and `keel store` share for a single member on loopback.
fn member_flags(data_dir: &Path, client_port: u16, peer_port: u16) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    vec![
        "--name=default".into(),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=default={peer_url}"),
    ]
}

/// A process this harness started. Dropping it kills it by PID and reaps it.
pub struct Process {
    name: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, mut command: Command, log_path: PathBuf) -> Process {
        let log = std::fs::File::create(&log_path).expect("create process log");
        let log_err = log.try_clone().expect("clone log handle");
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { name, child: Some(child), log_path }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Panics (with the log) if the process has exited.
    fn assert_alive(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("{} exited with {status}; log:\n{}", self.name, self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- last lines of {} ({}) ----\n{}", self.name, self.log_path.display(), self.log_tail());
        }
    }
}

/// What keeps the store alive for the test.
enum Guard {
    Embedded(Option<RunningStore>),
    Process(Process),
}

/// Where the number of live watchers can be read, to check that dropping a watch cancels it.
enum Watchers {
    /// The in-process store's hub.
    Hub(Arc<Store>),
    /// etcd's `etcd_debugging_mvcc_watcher_total` gauge on its client port (`host:port`).
    EtcdMetrics(String),
    /// `keel store` does not export a watcher count.
    Unobservable,
}

/// One store and a [`Kv`] on it.
pub struct Fixture {
    pub kv: Arc<dyn Kv>,
    watchers: Watchers,
    guard: Guard,
    /// Deleted last (after the store stopped).
    _dir: tempfile::TempDir,
}

/// `keel store`'s flags as clap reads them (the harness builds the embedded config this way).
#[derive(Parser)]
struct StoreCli {
    #[command(flatten)]
    args: keel_store::config::StoreArgs,
}

impl Fixture {
    /// A single-member Keel store running in this process, behind `EmbeddedKv`.
    pub async fn embedded() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client_port, peer_port) = two_ports();
        let mut argv = vec!["store".to_string()];
        argv.extend(member_flags(&dir.path().join("data"), client_port, peer_port));
        let config = StoreCli::try_parse_from(argv).expect("store flags").args.into_config().expect("store config");
        let running = keel_store::server::start(config).await.expect("start the embedded store");
        let store = running.store.clone();
        let mut fixture = Fixture {
            kv: Arc::new(EmbeddedKv::new(store.clone())),
            watchers: Watchers::Hub(store),
            guard: Guard::Embedded(Some(running)),
            _dir: dir,
        };
        fixture.wait_ready().await;
        fixture
    }

    /// A `keel store` process behind `RemoteKv`.
    pub async fn keel() -> Fixture {
        let mut command = Command::new(keel_bin());
        command.arg("store");
        Fixture::process("keel store", command, |_| Watchers::Unobservable).await
    }

    /// A real etcd 3.4 process behind `RemoteKv`.
    pub async fn etcd() -> Fixture {
        Fixture::process("etcd", Command::new(etcd_bin()), Watchers::EtcdMetrics).await
    }

    async fn process(name: &'static str, mut command: Command, watchers: impl FnOnce(String) -> Watchers) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client_port, peer_port) = two_ports();
        command.args(member_flags(&dir.path().join("data"), client_port, peer_port));
        let process = Process::spawn(name, command, dir.path().join("server.log"));
        let endpoint = format!("127.0.0.1:{client_port}");
        let kv = RemoteKv::connect(&[format!("http://{endpoint}")], None).await.expect("connect");
        let mut fixture =
            Fixture { kv: Arc::new(kv), watchers: watchers(endpoint), guard: Guard::Process(process), _dir: dir };
        fixture.wait_ready().await;
        fixture
    }

    /// Waits until a linearizable read succeeds (the member has a leader and serves).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Guard::Process(process) = &mut self.guard {
                process.assert_alive();
            }
            match self.kv.range(Range::key(b"health")).await {
                Ok(_) => return,
                Err(error) if Instant::now() > deadline => panic!("store not ready after {READY_TIMEOUT:?}: {error}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The number of watchers the store holds, where it can be read.
    pub async fn watcher_count(&self) -> Option<usize> {
        match &self.watchers {
            Watchers::Hub(store) => Some(store.hub.watcher_count()),
            Watchers::EtcdMetrics(endpoint) => Some(etcd_watcher_gauge(endpoint).await),
            Watchers::Unobservable => None,
        }
    }

    /// Stops the store (the embedded one shuts down as `keel store` does on SIGTERM).
    pub async fn stop(mut self) {
        if let Guard::Embedded(running) = &mut self.guard
            && let Some(running) = running.take()
        {
            running.stop().await;
        }
    }
}

/// Reads etcd's `/metrics` over plain HTTP/1.0 and returns its watcher gauge.
async fn etcd_watcher_gauge(endpoint: &str) -> usize {
    let mut stream = tokio::net::TcpStream::connect(endpoint).await.expect("connect to etcd for /metrics");
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {endpoint}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send /metrics request");
    let mut body = Vec::new();
    stream.take(METRICS_MAX_BYTES as u64).read_to_end(&mut body).await.expect("read /metrics");
    let text = String::from_utf8_lossy(&body);
    let line = text
        .lines()
        .find(|line| line.starts_with("etcd_debugging_mvcc_watcher_total "))
        .unwrap_or_else(|| panic!("etcd's /metrics has no etcd_debugging_mvcc_watcher_total"));
    let value = line.rsplit(' ').next().unwrap_or_default();
    value.parse::<f64>().unwrap_or_else(|_| panic!("bad gauge line {line:?}")) as usize
}
