//! The one small harness every process-level test shares: start a real `keel store` (or, for
//! differential runs, a real etcd 3.4), wait until it serves, run the real `etcdctl` against it,
//! and stop every process it started by its PID.
//!
//! `KEEL_TEST_TARGET=etcd` runs a suite against real etcd instead of Keel, which is how we check
//! that a test encodes etcd's behaviour and not our own.
#![allow(dead_code)]

pub mod cluster;
pub mod control_plane;
pub mod kube;
pub mod masters;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Which server a suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Keel,
    Etcd,
}

impl Target {
    /// `KEEL_TEST_TARGET=etcd` selects real etcd; anything else (or unset) selects Keel.
    pub fn from_env() -> Target {
        match std::env::var("KEEL_TEST_TARGET").as_deref() {
            Ok("etcd") => Target::Etcd,
            _ => Target::Keel,
        }
    }
}

/// The `keel` binary cargo built for this test run (same profile as the tests).
pub fn keel_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keel"))
}

/// A program the suite needs from the system. Missing means the setup script was not run:
/// fail loudly instead of skipping.
pub fn require_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not installed: run scripts/setup.sh (it installs etcd-client and etcd-server)");
}

/// A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range (see
/// `keel_net::ports` for why).
pub fn free_port() -> u16 {
    keel_net::ports::free_local_ports(1).expect("a free port")[0]
}

/// One running server process. Dropping it kills the process (by PID) and reaps it.
pub struct Server {
    child: Option<Child>,
    pub target: Target,
    /// `127.0.0.1:PORT`, what etcdctl's `--endpoints` and etcd-client take.
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    port: u16,
    peer_port: u16,
    extra_args: Vec<String>,
    /// Flags passed to both Keel and etcd (see `Server::start_with_flags`).
    shared_args: Vec<String>,
}

impl Server {
    /// Starts the target chosen by `KEEL_TEST_TARGET` with a data directory inside `dir`.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(Target::from_env(), dir, &[])
    }

    /// Starts `target` with extra flags (only honoured by Keel).
    pub fn start_with(target: Target, dir: &Path, extra_args: &[&str]) -> Server {
        Server::launch(target, dir, extra_args, &[])
    }

    /// Spawns a server on fresh ports and waits until it serves. A new server (no data
    /// directory yet) that exits because its port was taken in the meantime (another test's
    /// server) is started again on other ports, at most three times in all; any other early
    /// exit fails the test.
    fn launch(target: Target, dir: &Path, extra_args: &[&str], shared_args: &[&str]) -> Server {
        const ATTEMPTS: usize = 3;
        // A data directory the test prepared is never removed, so never retried.
        let fresh = !dir.join("data").exists();
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let mut server = Server {
                child: None,
                target,
                endpoint: format!("127.0.0.1:{port}"),
                data_dir: dir.join("data"),
                log_path: dir.join(format!("server-{port}.log")),
                port,
                peer_port: free_port(),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                shared_args: shared_args.iter().map(|s| s.to_string()).collect(),
            };
            server.spawn();
            match server.serving_or_exited() {
                Ok(()) => return server,
                Err(log) if fresh && attempt < ATTEMPTS && log.to_lowercase().contains("address already in use") => {
                    // The data directory it made names the old peer URL: start from nothing.
                    drop(server);
                    let _ = std::fs::remove_dir_all(dir.join("data"));
                }
                Err(log) => panic!("server exited early; log:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(&mut self) {
        let url = format!("http://{}", self.endpoint);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open server log");
        let log_err = log.try_clone().expect("clone log handle");
        let mut cmd = match self.target {
            Target::Keel => {
                let mut c = Command::new(keel_bin());
                c.arg("store");
                c
            }
            Target::Etcd => Command::new(require_program("etcd")),
        };
        // Both listen on a peer port, as a real member does (kept across restarts: the member's
        // identity derives from it).
        // A test that sets them itself (to reuse them elsewhere) keeps its own.
        let peer = self.peer_port;
        if !self.extra_args.iter().any(|a| a.starts_with("--listen-peer-urls")) {
            cmd.arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"));
        }
        cmd.arg("--name=default")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"));
        if self.target == Target::Keel {
            cmd.args(&self.extra_args);
        }
        cmd.args(&self.shared_args);
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        self.child = Some(cmd.spawn().expect("spawn server"));
    }

    /// Waits (at most 30 s) until the client port accepts connections and answers a Status RPC.
    pub fn wait_ready(&mut self) {
        if let Err(log) = self.serving_or_exited() {
            panic!("server exited early; log:\n{log}");
        }
    }

    /// `Ok` once the server answers a Status RPC; `Err(log)` if its process exits first.
    /// Panics if neither happens within 30 s.
    fn serving_or_exited(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("(exit status {status})\n{}", self.log()));
                }
            }
            let out = etcdctl(&self.endpoint, &["endpoint", "status"]);
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!("server at {} not ready after 30s; log:\n{}", self.endpoint, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("server is running")
    }

    /// SIGKILL, no chance to flush anything: what a crash looks like.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`, ...) to the process `pid` with kill(1); panics
/// if kill fails (the process is not ours or already reaped).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("run kill -{signal} {pid}: {e}"));
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Runs the real etcdctl (API v3) against one endpoint with a 10 s command timeout.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    etcdctl_stdin(endpoint, args, None)
}

/// Runs etcdctl feeding `stdin` (for `txn -i`).
pub fn etcdctl_stdin(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(require_program("etcdctl"));
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn etcdctl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("etcdctl stdin");
        pipe.write_all(input.as_bytes()).expect("write etcdctl stdin");
    }
    child.wait_with_output().expect("wait for etcdctl")
}

/// An etcd-client connected to `endpoint`.
pub async fn client(endpoint: &str) -> etcd_client::Client {
    etcd_client::Client::connect([format!("http://{endpoint}")], None).await.expect("connect etcd-client")
}

// ---------------------------------------------------------------------------------------------
// Helpers for the client_semantics, bad_input and crash suites.
// ---------------------------------------------------------------------------------------------

/// gRPC status codes as numbers (tonic's `Code` is not nameable from the tests without a direct
/// tonic dependency; `status.code() as i32` is).
pub mod grpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const INTERNAL: i32 = 13;
}

impl Server {
    /// Starts the target chosen by `KEEL_TEST_TARGET` and passes `flags` to it whichever it is
    /// (unlike `start_with`, whose extra flags only Keel gets). Use it for flags Keel and etcd
    /// share with the same meaning, such as `--max-request-bytes=...`, so the same test can run
    /// against both.
    pub fn start_with_flags(dir: &Path, flags: &[&str]) -> Server {
        Server::launch(Target::from_env(), dir, &[], flags)
    }

    /// True while the process this handle started is alive (has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// Asserts that `result` is a gRPC error with exactly `code` (see `grpc_code`) and `message`.
pub fn assert_grpc_error<T: std::fmt::Debug>(
    result: Result<T, etcd_client::Error>,
    code: i32,
    message: &str,
    what: &str,
) {
    match result {
        Err(etcd_client::Error::GRpcStatus(status)) => {
            assert_eq!(
                (status.code() as i32, status.message()),
                (code, message),
                "{what}: wrong gRPC status (got code {:?})",
                status.code()
            );
        }
        other => panic!("{what}: expected gRPC error code {code} {message:?}, got {other:?}"),
    }
}

/// Checks the server still works after something nasty: its process is alive and a fresh client
/// can put a key and read it back.
pub async fn assert_still_serves(server: &mut Server, what: &str) {
    assert!(server.is_running(), "{what}: server process exited; log:\n{}", server.log());
    let mut c = tokio::time::timeout(Duration::from_secs(10), client(&server.endpoint))
        .await
        .unwrap_or_else(|_| panic!("{what}: connecting took more than 10s"));
    let key = format!("still-serves/{}", free_port());
    let put = tokio::time::timeout(Duration::from_secs(10), c.put(key.clone(), "ok", None))
        .await
        .unwrap_or_else(|_| panic!("{what}: put took more than 10s"));
    put.unwrap_or_else(|e| panic!("{what}: put after the bad input failed: {e:?}"));
    let got = tokio::time::timeout(Duration::from_secs(10), c.get(key.clone(), None))
        .await
        .unwrap_or_else(|_| panic!("{what}: get took more than 10s"))
        .unwrap_or_else(|e| panic!("{what}: get after the bad input failed: {e:?}"));
    assert_eq!(got.kvs().len(), 1, "{what}: key written after the bad input is missing");
    assert_eq!(got.kvs()[0].value(), b"ok", "{what}: wrong value read back");
    assert!(server.is_running(), "{what}: server process exited; log:\n{}", server.log());
}

/// The next message on a watch stream, failing the test if none comes within `secs` seconds or
/// the stream ends or errors.
pub async fn next_watch_msg(stream: &mut etcd_client::WatchStream, secs: u64) -> etcd_client::WatchResponse {
    match tokio::time::timeout(Duration::from_secs(secs), stream.message()).await {
        Ok(Ok(Some(resp))) => resp,
        Ok(Ok(None)) => panic!("watch stream ended unexpectedly"),
        Ok(Err(e)) => panic!("watch stream failed: {e:?}"),
        Err(_) => panic!("no watch response within {secs}s"),
    }
}

/// What a one-shot `keel store` run did.
#[derive(Debug)]
pub enum OneShot {
    /// It exited by itself with this status; `output` is its stdout+stderr.
    Exited { status: std::process::ExitStatus, output: String },
    /// It was still running after the timeout (it was then killed by PID).
    StillRunning { output: String },
}

/// Runs `keel store` on `data_dir` (client and peer ports free ones, `--name=default`) plus `flags`,
/// waits at most `timeout` for it to exit by itself, and kills it (by PID) if it does not.
/// For checks that the store refuses to start.
pub fn run_keel_store_once(data_dir: &Path, log_path: &Path, flags: &[&str], timeout: Duration) -> OneShot {
    let url = format!("http://127.0.0.1:{}", free_port());
    // Its own peer port too: the default (2380) would clash with one-shots running in parallel.
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let log = std::fs::File::create(log_path).expect("create one-shot log");
    let log_err = log.try_clone().expect("clone log handle");
    let mut child = Command::new(keel_bin())
        .arg("store")
        .arg("--name=default")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .args(flags)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .expect("spawn keel store");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let output = std::fs::read_to_string(log_path).unwrap_or_default();
            return OneShot::Exited { status, output };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(log_path).unwrap_or_default();
            return OneShot::StillRunning { output };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file and directory under `root` (relative path → contents; directories map to an empty
/// marker), to check that something left a directory exactly as it was.
pub fn snapshot_dir(root: &Path) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Option<Vec<u8>>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).expect("under root").display().to_string();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}
