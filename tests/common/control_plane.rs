//! A `keel up` cluster for the control-plane suites: three masters on free loopback ports
//! (optionally on a real etcd 3.4 through `--store-endpoints`), the real `kubectl` and
//! `etcdctl` pointed at it, and every process stopped by its PID.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, keel_bin, require_program};

/// How long `keel up` may take to report the cluster ready.
const UP_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the API servers store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded store replicas (the normal `keel up`).
    Embedded,
    /// A real etcd 3.4 the harness starts.
    Etcd,
}

pub struct UpCluster {
    up: Option<Child>,
    etcd: Option<Child>,
    pub dir: PathBuf,
    pub port_base: u16,
    pub backend: Backend,
    /// etcd's client URL when the backend is etcd.
    pub etcd_url: Option<String>,
}

/// A port base whose nine ports (base+{0,1,2,10,11,12,20,21,22}) are free now, within
/// `keel_net::ports::LOCAL_PORTS` (below the ephemeral range).
fn free_port_base() -> u16 {
    for _ in 0..200 {
        let ports = keel_net::ports::LOCAL_PORTS;
        let base = rand::random_range(ports.start..ports.end - 22);
        let all_free =
            (0..3u16).all(|i| (0..3u16).all(|j| TcpListener::bind(("127.0.0.1", base + 10 * i + j)).is_ok()));
        if all_free {
            return base;
        }
    }
    panic!("no free port base found");
}

impl UpCluster {
    pub fn start(dir: &Path, backend: Backend) -> UpCluster {
        UpCluster::start_with(dir, backend, &[])
    }

    /// `keel up` with extra flags (`--agents 3 --runtime simulated`).
    pub fn start_with(dir: &Path, backend: Backend, extra_args: &[&str]) -> UpCluster {
        let mut cluster = UpCluster {
            up: None,
            etcd: None,
            dir: dir.join("keel"),
            port_base: free_port_base(),
            backend,
            etcd_url: None,
        };
        let mut command = Command::new(keel_bin());
        command.arg("up").arg("--dir").arg(&cluster.dir).arg("--port-base").arg(cluster.port_base.to_string());
        if backend == Backend::Etcd {
            let (etcd, url) = start_etcd(dir);
            cluster.etcd = Some(etcd);
            command.arg("--store-endpoints").arg(&url);
            cluster.etcd_url = Some(url);
        }
        command.args(extra_args);
        command.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
        let mut up = command.spawn().expect("start keel up");
        let stdout = up.stdout.take().expect("stdout");
        cluster.up = Some(up);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reads to the end, so `up` never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + UP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("Keel is up") => break,
                Ok(_) => continue,
                Err(_) => panic!("keel up did not report ready in {UP_TIMEOUT:?}; logs:\n{}", cluster.logs()),
            }
        }
        cluster
    }

    pub fn api_port(&self, master: usize) -> u16 {
        self.port_base + 10 * master as u16
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn pki(&self, file: &str) -> PathBuf {
        self.dir.join("pki").join(file)
    }

    /// The real kubectl against master 0, with its own discovery cache.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_on(0, args)
    }

    /// The real kubectl against `master`.
    pub fn kubectl_on(&self, master: usize, args: &[&str]) -> Output {
        let server = format!("https://127.0.0.1:{}", self.api_port(master));
        Command::new(require_program("kubectl"))
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--server")
            .arg(server)
            .arg("--cache-dir")
            .arg(self.dir.join(format!("kube-cache-{master}")))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl with stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(require_program("kubectl"))
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.join("kube-cache-0"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// The real etcdctl against the store the API servers use.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(require_program("etcdctl"));
        command.env("ETCDCTL_API", "3");
        match &self.etcd_url {
            Some(url) => {
                command.arg("--endpoints").arg(url);
            }
            None => {
                command
                    .arg("--endpoints")
                    .arg(format!("https://127.0.0.1:{}", self.port_base + 1))
                    .arg("--cacert")
                    .arg(self.pki("ca.crt"))
                    .arg("--cert")
                    .arg(self.pki("store-client.crt"))
                    .arg("--key")
                    .arg(self.pki("store-client.key"));
            }
        }
        command.args(args).output().expect("run etcdctl")
    }

    /// Sends `signal` to `keel up` by PID and waits at most `timeout` for it to exit; its exit
    /// status, or None if it is still running (drop then kills it).
    pub fn stop_up(&mut self, signal: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        let up = self.up.as_mut().expect("keel up is running");
        super::send_signal(up.id(), signal);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = up.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PIDs of the masters `keel up` started, as its pid files name them.
    pub fn master_pids(&self) -> Vec<u32> {
        (1..=3)
            .filter_map(|i| std::fs::read_to_string(self.dir.join(format!("master-{i}.pid"))).ok())
            .filter_map(|pid| pid.trim().parse().ok())
            .collect()
    }

    /// The PID of the node agent `keel up --agents` started, as its pid file names it.
    pub fn agent_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("agent.pid")).ok()?.trim().parse().ok()
    }

    pub fn logs(&self) -> String {
        ["master-1", "master-2", "master-3", "agent"]
            .iter()
            .filter(|name| self.dir.join(format!("{name}.log")).exists())
            .map(|name| {
                let path = self.dir.join(format!("{name}.log"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                format!("--- {name} ---\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Starts a real etcd 3.4 on free loopback ports; returns it and its client URL.
fn start_etcd(dir: &Path) -> (Child, String) {
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
    let child = Command::new(require_program("etcd"))
        .args(["--name", "etcd", "--data-dir"])
        .arg(dir.join("etcd-data"))
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("etcd={peer_url}")])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start etcd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(Instant::now() < deadline, "etcd did not listen on {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, url)
}

fn terminate(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

fn wait_or_kill(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for UpCluster {
    fn drop(&mut self) {
        if let Some(mut up) = self.up.take() {
            terminate(up.id());
            wait_or_kill(&mut up, Duration::from_secs(20));
        }
        // Masters (and the agent) left behind by an `up` that could not stop them.
        for name in ["master-1", "master-2", "master-3", "agent"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(format!("{name}.pid"))) {
                // Only if that PID is still one of our masters (PIDs get reused).
                let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
                let ours = String::from_utf8_lossy(&cmdline).contains(&*self.dir.to_string_lossy());
                if ours {
                    let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).status();
                }
            }
        }
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }
}
