//! The one small harness every process-level test shares: start a real `keel store` (or, for
//! differential runs, a real etcd 3.4), wait until it serves, run the real `etcdctl` against it,
//! and stop every process it started by its PID.
//!
//! `KEEL_TEST_TARGET=etcd` runs a suite against real etcd instead of Keel, which is how we check
//! that a test encodes etcd's behaviour and not our own.
#![allow(dead_code)]

use std::net::TcpListener;
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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
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
    extra_args: Vec<String>,
}

impl Server {
    /// Starts the target chosen by `KEEL_TEST_TARGET` with a data directory inside `dir`.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(Target::from_env(), dir, &[])
    }

    /// Starts `target` with extra flags (only honoured by Keel).
    pub fn start_with(target: Target, dir: &Path, extra_args: &[&str]) -> Server {
        let port = free_port();
        let mut server = Server {
            child: None,
            target,
            endpoint: format!("127.0.0.1:{port}"),
            data_dir: dir.join("data"),
            log_path: dir.join(format!("server-{port}.log")),
            port,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server.wait_ready();
        server
    }

    fn spawn(&mut self) {
        let url = format!("http://{}", self.endpoint);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server log");
        let log_err = log.try_clone().expect("clone log handle");
        let mut cmd = match self.target {
            Target::Keel => {
                let mut c = Command::new(keel_bin());
                c.arg("store");
                c
            }
            Target::Etcd => {
                let mut c = Command::new(require_program("etcd"));
                let peer = free_port();
                c.arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                    .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
                    .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"));
                c
            }
        };
        cmd.arg("--name=default")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"));
        if self.target == Target::Keel {
            cmd.args(&self.extra_args);
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        self.child = Some(cmd.spawn().expect("spawn server"));
    }

    /// Waits (at most 30 s) until the client port accepts connections and answers a Status RPC.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("server exited early with {status}; log:\n{}", self.log());
                }
            }
            let out = etcdctl(&self.endpoint, &["endpoint", "status"]);
            if out.status.success() {
                return;
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
    etcd_client::Client::connect([format!("http://{endpoint}")], None)
        .await
        .expect("connect etcd-client")
}
