//! `keel up`: a local three-master cluster on loopback, as child processes.
//!
//! Generates the cluster PKI once, starts three `keel master` processes (each an embedded store
//! replica with mutual TLS between peers, plus the API server), waits until every API server
//! answers `/readyz`, writes a kubeconfig, prints how to use kubectl and etcdctl, and stops the
//! children (by PID: SIGTERM, then SIGKILL after a grace period) on Ctrl-C or SIGTERM.
//!
//! With `--agents N`, once the masters are ready it also starts one `keel agent --nodes N`
//! child (the same binary; the control plane does not link the node agent: they only talk
//! through the API) with the admin client certificate, stopped first when `up` stops.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::pki::{self, Pki};

/// Masters in a local cluster.
pub const MASTERS: usize = 3;
/// How long `up` waits for every API server to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a master gets to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The pause before a master that exited is started again (`--restart-masters`).
const RESTART_DELAY: Duration = Duration::from_millis(200);

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where data, certificates, logs and the kubeconfig go.
    #[arg(long, default_value = ".keel")]
    pub dir: PathBuf,
    /// Port layout: master i (0, 1, 2) serves the API on base+10i, the store on base+10i+1 and
    /// peers on base+10i+2. Without it: API 6443-6445, store 2379/12379/22379, peers
    /// 2380/12380/22380.
    #[arg(long)]
    pub port_base: Option<u16>,
    /// Run the API servers on these etcd v3 endpoints instead of embedded store replicas.
    #[arg(long, value_delimiter = ',')]
    pub store_endpoints: Vec<String>,
    /// Hollow nodes to run in one `keel agent` child once the masters are ready (0: none).
    #[arg(long, default_value_t = 0)]
    pub agents: usize,
    /// Start a master again when it exits (killed by a chaos run or `keel bench
    /// control-plane-failover`), with the same flags and data directory.
    #[arg(long)]
    pub restart_masters: bool,
    /// The agent's container runtime (`keel agent --runtime`).
    #[arg(long, default_value = "simulated")]
    pub runtime: String,
    /// An extra `keel master` flag for every master (repeatable), e.g.
    /// `--master-arg=--node-monitor-grace-period=5s`.
    #[arg(long = "master-arg", allow_hyphen_values = true)]
    pub master_args: Vec<String>,
}

/// One master's ports.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub api: u16,
    pub store: u16,
    pub peer: u16,
}

pub fn ports(base: Option<u16>, index: usize) -> Ports {
    let i = index as u16;
    match base {
        Some(base) => Ports { api: base + 10 * i, store: base + 10 * i + 1, peer: base + 10 * i + 2 },
        None => Ports { api: 6443 + i, store: 2379 + 10_000 * i, peer: 2380 + 10_000 * i },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("pki: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("master {0} exited before it was ready; see its log in {1}")]
    MasterExited(usize, PathBuf),
    #[error("the node agent exited at once; see its log in {0}")]
    AgentExited(PathBuf),
    #[error("the API servers were not ready within {0:?}; see the logs in {1}")]
    NotReady(Duration, PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UpError {
    let what = what.into();
    move |source| UpError::Io { what, source }
}

/// Runs the local cluster until Ctrl-C or SIGTERM.
pub async fn run(args: UpArgs) -> Result<(), UpError> {
    std::fs::create_dir_all(&args.dir).map_err(io(format!("creating {}", args.dir.display())))?;
    // Listening from the start: Ctrl-C while the masters come up stops them too.
    let asked_to_stop = keel_store::shutdown::signal();
    tokio::pin!(asked_to_stop);
    let cluster_pki = pki::ensure(&args.dir.join("pki"), &["127.0.0.1".to_string(), "localhost".to_string()])?;
    let exe = std::env::current_exe().map_err(io("finding the keel binary"))?;
    let mut children = Vec::new();
    for index in 0..MASTERS {
        match start_master(&exe, &args, &cluster_pki, index) {
            Ok(child) => children.push(child),
            Err(error) => {
                stop_all(children).await;
                return Err(error);
            }
        }
    }
    let ready = tokio::select! {
        ready = wait_ready(&args, &cluster_pki, &mut children) => ready,
        () = &mut asked_to_stop => {
            println!("stopping the masters");
            stop_all(children).await;
            return Ok(());
        }
    };
    if let Err(error) = ready {
        stop_all(children).await;
        return Err(error);
    }
    let server = format!("https://127.0.0.1:{}", ports(args.port_base, 0).api);
    let kubeconfig = args.dir.join("kubeconfig");
    pki::write_kubeconfig(&kubeconfig, &server, &cluster_pki, "keel")?;
    let mut agent = None;
    if args.agents > 0 {
        match start_agent(&exe, &args, &cluster_pki).await {
            Ok(child) => agent = Some(child),
            Err(error) => {
                stop_all(children).await;
                return Err(error);
            }
        }
    }
    print_usage(&args, &cluster_pki, &kubeconfig);
    // A master that dies (killed, as chaos tests and users trying failover do) leaves the
    // others serving: the cluster stays up while a quorum does. When every master is gone,
    // `keel up` ends.
    let mut exited = vec![false; children.len()];
    loop {
        tokio::select! {
            () = &mut asked_to_stop => println!("stopping the masters"),
            index = any_exit(&mut children, &exited) => {
                if args.restart_masters && index < MASTERS {
                    eprintln!("{} exited; restarting it", child_name(index));
                    tokio::time::sleep(RESTART_DELAY).await;
                    match start_master(&exe, &args, &cluster_pki, index) {
                        Ok(child) => {
                            children[index] = child;
                            continue;
                        }
                        Err(error) => eprintln!("{} could not be restarted: {error}", child_name(index)),
                    }
                }
                exited[index] = true;
                if exited.iter().all(|gone| *gone) {
                    eprintln!("{} exited; no master is left", child_name(index));
                } else {
                    eprintln!("{} exited; the others keep running", child_name(index));
                    continue;
                }
            }
            // A node agent that dies leaves the control plane up: its nodes go NotReady, as
            // Kubernetes' nodes do when a kubelet dies.
            status = async { agent.as_mut()?.wait().await.ok() }, if agent.is_some() => {
                eprintln!("the node agent exited ({status:?}); the masters keep running");
                agent = None;
                continue;
            }
        }
        break;
    }
    children.extend(agent);
    stop_all(children).await;
    Ok(())
}

fn start_master(exe: &Path, args: &UpArgs, cluster_pki: &Pki, index: usize) -> Result<Child, UpError> {
    let name = format!("master-{}", index + 1);
    let own = ports(args.port_base, index);
    let log_path = args.dir.join(format!("{name}.log"));
    // Appended to: a restarted master (`--restart-masters`) keeps its earlier log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(format!("opening {}", log_path.display())))?;
    let log_err = log.try_clone().map_err(io("duplicating the log file"))?;
    let mut command = Command::new(exe);
    command
        .arg("master")
        .arg("--worker-threads")
        .arg(threads_per_master().to_string())
        .arg("--api-listen")
        .arg(format!("127.0.0.1:{}", own.api))
        .arg("--pki-dir")
        .arg(&cluster_pki.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true);
    if args.store_endpoints.is_empty() {
        store_flags(&mut command, args, cluster_pki, index);
    } else {
        // The master's name (its Lease holder identities' prefix) is the member name otherwise.
        command.arg("--name").arg(&name);
        command.arg("--store-endpoints").arg(args.store_endpoints.join(","));
    }
    command.args(&args.master_args);
    let child = command.spawn().map_err(io(format!("starting {name}")))?;
    // Tests and scripts stop stray masters by these PIDs if `up` itself was killed.
    if let Some(pid) = child.id() {
        let pid_path = args.dir.join(format!("{name}.pid"));
        std::fs::write(&pid_path, pid.to_string()).map_err(io(format!("writing {}", pid_path.display())))?;
    }
    Ok(child)
}

/// Starts `keel agent --nodes N` against every master, logging to `agent.log`, its PID in
/// `agent.pid`; fails if it exits within its first half second (bad flags, bad certificates).
async fn start_agent(exe: &Path, args: &UpArgs, cluster_pki: &Pki) -> Result<Child, UpError> {
    let log_path = args.dir.join("agent.log");
    // Appended to: a restarted master (`--restart-masters`) keeps its earlier log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(format!("opening {}", log_path.display())))?;
    let log_err = log.try_clone().map_err(io("duplicating the log file"))?;
    let servers: Vec<String> =
        (0..MASTERS).map(|i| format!("https://127.0.0.1:{}", ports(args.port_base, i).api)).collect();
    let mut child = Command::new(exe)
        .arg("agent")
        .args(["--worker-threads", "1", "--runtime", &args.runtime, "--nodes", &args.agents.to_string()])
        .arg("--server")
        .arg(servers.join(","))
        .arg("--ca")
        .arg(cluster_pki.ca_cert())
        .arg("--cert")
        .arg(cluster_pki.admin_cert())
        .arg("--key")
        .arg(cluster_pki.admin_key())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .spawn()
        .map_err(io("starting the node agent"))?;
    if let Some(pid) = child.id() {
        let pid_path = args.dir.join("agent.pid");
        std::fs::write(&pid_path, pid.to_string()).map_err(io(format!("writing {}", pid_path.display())))?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Ok(Some(_)) = child.try_wait() {
        return Err(UpError::AgentExited(log_path));
    }
    Ok(child)
}

/// Children are the masters in order, then the agent.
fn child_name(index: usize) -> String {
    if index < MASTERS { format!("master {}", index + 1) } else { "the node agent".to_string() }
}

/// Runtime threads for each master: the machine's CPUs shared by the three, at least one.
/// Three masters with a thread per CPU each spend a large part of a small machine waking
/// threads (see docs/benchmarks.md).
fn threads_per_master() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get().div_ceil(MASTERS))
}

/// The embedded store replica's flags: TLS on the client port (client certificates
/// required) and mutual TLS between peers.
fn store_flags(command: &mut Command, args: &UpArgs, cluster_pki: &Pki, index: usize) {
    let own = ports(args.port_base, index);
    let cluster: Vec<String> =
        (0..MASTERS).map(|i| format!("master-{}=https://127.0.0.1:{}", i + 1, ports(args.port_base, i).peer)).collect();
    let client_url = format!("https://127.0.0.1:{}", own.store);
    let peer_url = format!("https://127.0.0.1:{}", own.peer);
    command
        .arg("--name")
        .arg(format!("master-{}", index + 1))
        .arg("--data-dir")
        .arg(args.dir.join(format!("master-{}", index + 1)))
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-token", "keel"])
        .arg("--cert-file")
        .arg(cluster_pki.store_server_cert())
        .arg("--key-file")
        .arg(cluster_pki.store_server_key())
        .arg("--trusted-ca-file")
        .arg(cluster_pki.ca_cert())
        .arg("--client-cert-auth")
        .arg("--peer-cert-file")
        .arg(cluster_pki.store_peer_cert())
        .arg("--peer-key-file")
        .arg(cluster_pki.store_peer_key())
        .arg("--peer-trusted-ca-file")
        .arg(cluster_pki.ca_cert())
        .arg("--peer-client-cert-auth");
}

/// Waits until every API server answers `/readyz` with 200.
async fn wait_ready(args: &UpArgs, cluster_pki: &Pki, children: &mut [Child]) -> Result<(), UpError> {
    let connector = probe_connector(cluster_pki)?;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    for index in 0..MASTERS {
        let port = ports(args.port_base, index).api;
        loop {
            if let Ok(Some(_)) = children[index].try_wait() {
                return Err(UpError::MasterExited(index + 1, args.dir.clone()));
            }
            if probe_ready(&connector, port).await {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(UpError::NotReady(READY_TIMEOUT, args.dir.clone()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

fn probe_connector(cluster_pki: &Pki) -> Result<tokio_rustls::TlsConnector, UpError> {
    let pem = std::fs::read(cluster_pki.ca_cert()).map_err(io("reading the cluster CA"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpError::Io { what: "TLS client config".into(), source: std::io::Error::other(e) })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One HTTP/1.1 `GET /readyz` over TLS; true on a 200.
async fn probe_ready(connector: &tokio_rustls::TlsConnector, port: u16) -> bool {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
        let mut tls = connector.connect(name, tcp).await.ok()?;
        tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut head = [0u8; 12];
        tls.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Some(true)))
}

fn print_usage(args: &UpArgs, cluster_pki: &Pki, kubeconfig: &Path) {
    let endpoints: Vec<String> =
        (0..MASTERS).map(|i| format!("https://127.0.0.1:{}", ports(args.port_base, i).store)).collect();
    if args.agents > 0 {
        println!("Keel is up: {MASTERS} masters, {} hollow nodes (logs in {}).", args.agents, args.dir.display());
    } else {
        println!("Keel is up: {MASTERS} masters (logs in {}).", args.dir.display());
    }
    println!();
    println!("  export KUBECONFIG={}", absolute(kubeconfig).display());
    println!("  kubectl get nodes,namespaces");
    for index in 1..MASTERS {
        println!(
            "  kubectl --server https://127.0.0.1:{} get pods -A   # master {}",
            ports(args.port_base, index).api,
            index + 1
        );
    }
    println!();
    if args.store_endpoints.is_empty() {
        println!("  export ETCDCTL_API=3 ETCDCTL_ENDPOINTS={}", endpoints.join(","));
        println!(
            "  export ETCDCTL_CACERT={} ETCDCTL_CERT={} ETCDCTL_KEY={}",
            absolute(&cluster_pki.ca_cert()).display(),
            absolute(&cluster_pki.store_client_cert()).display(),
            absolute(&cluster_pki.store_client_key()).display()
        );
        println!("  etcdctl get /registry/namespaces --prefix --keys-only");
    }
    println!();
    println!("Ctrl-C stops the cluster.");
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Resolves when any child exits; its index.
/// The index of the next child to exit among those not `exited` yet.
async fn any_exit(children: &mut [Child], exited: &[bool]) -> usize {
    let waits: Vec<_> = children
        .iter_mut()
        .enumerate()
        .filter(|(index, _)| !exited.get(*index).copied().unwrap_or(false))
        .map(|(index, child)| {
            Box::pin(async move {
                let _ = child.wait().await;
                index
            })
        })
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(waits).await.0
}

/// SIGTERM every child by PID, then SIGKILL whoever is still there after the grace period. A
/// master stops by itself within 5 s (`keel_store::shutdown`); the SIGKILL is the fallback for
/// one that does not, and is reported.
async fn stop_all(children: Vec<Child>) {
    for child in &children {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on a PID we started and have not yet reaped; no memory involved.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    let stops = children.into_iter().enumerate().map(|(index, mut child)| async move {
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("{} exited with {status}", child_name(index)),
            Ok(Err(error)) => eprintln!("{}: waiting for it failed: {error}", child_name(index)),
            Err(_) => {
                eprintln!("{} did not stop within {STOP_GRACE:?}; killing it", child_name(index));
                let _ = child.kill().await;
            }
        }
    });
    futures::future::join_all(stops).await;
}
