//! Three `keel master` processes started one by one (not through `keel up`, which stops the
//! whole cluster when one master exits), for tests that stop a single master: each has an
//! embedded store member (plain HTTP on its client and peer ports, so etcdctl reaches it
//! without certificates) and its API server (TLS, with the PKI this harness generates once).
//! Every process is started here and killed by its PID on drop; when the test is panicking,
//! the tail of each master's log is printed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{keel_bin, require_program, send_signal};

/// How long the masters get to serve `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Lines of each master's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// One master's ports.
#[derive(Clone, Copy, Debug)]
pub struct MasterPorts {
    pub api: u16,
    pub client: u16,
    pub peer: u16,
}

pub struct Masters {
    pub dir: PathBuf,
    pub ports: Vec<MasterPorts>,
    children: Vec<Option<Child>>,
}

impl Masters {
    /// Generates the PKI and a kubeconfig in `dir`, starts `n` masters and waits until each
    /// answers `/readyz`.
    pub fn start(dir: &Path, n: usize) -> Masters {
        let pki = keel_control_plane::pki::ensure(&dir.join("pki"), &["127.0.0.1".to_string()]).expect("cluster PKI");
        let free = keel_net::ports::free_local_ports(3 * n).expect("free ports for the masters");
        let ports: Vec<MasterPorts> =
            (0..n).map(|i| MasterPorts { api: free[3 * i], client: free[3 * i + 1], peer: free[3 * i + 2] }).collect();
        let server = format!("https://127.0.0.1:{}", ports[0].api);
        keel_control_plane::pki::write_kubeconfig(&dir.join("kubeconfig"), &server, &pki, "keel").expect("kubeconfig");
        let mut masters = Masters { dir: dir.to_path_buf(), ports, children: Vec::new() };
        for i in 0..n {
            let child = masters.spawn(i);
            masters.children.push(Some(child));
        }
        for i in 0..n {
            masters.wait_ready(i);
        }
        masters
    }

    fn spawn(&self, i: usize) -> Child {
        let cluster: Vec<String> =
            self.ports.iter().enumerate().map(|(j, p)| format!("m{j}=http://127.0.0.1:{}", p.peer)).collect();
        let own = self.ports[i];
        let client_url = format!("http://127.0.0.1:{}", own.client);
        let peer_url = format!("http://127.0.0.1:{}", own.peer);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(i)).expect("master log");
        let log_err = log.try_clone().expect("clone log handle");
        Command::new(keel_bin())
            .arg("master")
            .args(["--api-listen", &format!("127.0.0.1:{}", own.api)])
            .arg("--pki-dir")
            .arg(self.dir.join("pki"))
            .arg(format!("--name=m{i}"))
            .arg(format!("--data-dir={}", self.dir.join(format!("m{i}")).display()))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-token", "keel-masters"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("start master m{i}: {e}"))
    }

    fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status(i) {
                panic!("master m{i} exited with {status}; logs:\n{}", self.logs());
            }
            let out = self.kubectl_on(i, &["get", "--raw=/readyz", "--request-timeout=2s"]);
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "master m{i} not ready after {READY_TIMEOUT:?}; logs:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn api_url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.ports[i].api)
    }

    /// `127.0.0.1:PORT` of master `i`'s embedded store (plain etcd v3).
    pub fn store_endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i].client)
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("m{i}.log"))
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        (0..self.len())
            .map(|i| {
                let log = self.log(i);
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                format!("---- m{i} ----\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    /// The real kubectl against master `i`, with its own discovery cache.
    pub fn kubectl_on(&self, i: usize, args: &[&str]) -> Output {
        Command::new(require_program("kubectl"))
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--server")
            .arg(self.api_url(i))
            .arg("--cache-dir")
            .arg(self.dir.join(format!("kube-cache-{i}")))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// A `kubectl` process on master `i` left running (e.g. `get --watch`), with its output
    /// discarded; the caller stops it by PID.
    pub fn kubectl_spawn(&self, i: usize, args: &[&str]) -> Child {
        Command::new(require_program("kubectl"))
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--server")
            .arg(self.api_url(i))
            .arg("--cache-dir")
            .arg(self.dir.join(format!("kube-cache-{i}")))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl")
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].as_ref().map(Child::id).unwrap_or_else(|| panic!("master m{i} is not running"))
    }

    /// Sends `signal` to master `i` by PID.
    pub fn signal(&self, i: usize, signal: &str) {
        send_signal(self.pid(i), signal);
    }

    /// Master `i`'s exit status if it has exited (the process stays reaped).
    pub fn exit_status(&mut self, i: usize) -> Option<ExitStatus> {
        self.children[i].as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// Waits at most `timeout` for master `i` to exit; its status, or None if it still runs.
    pub fn wait_exit_status(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status(i) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Masters {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("masters in {}; logs:\n{}", self.dir.display(), self.logs());
        }
    }
}
