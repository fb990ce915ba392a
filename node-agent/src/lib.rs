//! Keel's node agent: registers Nodes, renews their Leases and runs the pods bound to them
//! through a container runtime, talking to the cluster only through the Kubernetes API.
//!
//! # Layout
//! - `agent.rs`: one process's nodes, its view of their pods and CIDRs, each node's life
//!   (registration, Lease renewal, periodic status report).
//! - `api/`: the HTTP/2 client with failover over `--server`, credentials, list-then-watch.
//! - `node.rs`: the Node object as the kubelet registers it. `lease.rs`: the node Lease.
//! - `pods.rs`: the pod workers (start, report, stop, delete). `status.rs`: pod status, pure.
//! - `runtime/`: the [`runtime::Runtime`] trait and its implementations (`simulated`).
//! - `ipam.rs`: pod IPs from a node's pod CIDR. `queue.rs`: the de-duplicating work queue.
//! - `model.rs`: the fields of Pods and Nodes the agent reads. `backoff.rs`: retry delays.
//!
//! # Invariants
//! - The agent never reads or writes the store: every effect is an API request.
//! - ONE pod watch and ONE Node watch per process, whatever the number of nodes; each pod is
//!   synced by one worker at a time.
//! - Pod status is only written when it changed; a Lease write happens once per period per
//!   node; nothing else is periodic.
//! - Every queue is bounded: the work queue by the number of pods on our nodes, requests in
//!   flight by `api::client::MAX_IN_FLIGHT`, response bodies by `MAX_BODY_BYTES`.

pub mod agent;
pub mod api;
pub mod backoff;
pub mod ipam;
pub mod lease;
pub mod model;
pub mod node;
pub mod pods;
pub mod queue;
pub mod runtime;
pub mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::{Agent, View};
use api::credentials::{Credentials, Kubeconfig};
use api::{ApiError, Client};
use node::{HollowNode, Shape};
use queue::WorkQueue;
use runtime::Notify;

/// The most nodes one agent process runs.
pub const MAX_NODES: usize = 20_000;
/// The most pod workers.
const MAX_POD_WORKERS: usize = 256;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Hollow nodes: no processes, containers start after `--simulated-start-delay-ms`.
    Simulated,
}

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The container runtime.
    #[arg(long, value_enum, default_value = "simulated")]
    pub runtime: RuntimeKind,
    /// How many nodes this process runs.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Node names are PREFIX1, PREFIX2, ...
    #[arg(long, default_value = "hollow-")]
    pub name_prefix: String,
    /// The API servers, tried in order on failure (comma-separated https:// URLs). Without
    /// it, the kubeconfig's server.
    #[arg(long, value_delimiter = ',')]
    pub server: Vec<String>,
    /// The cluster CA (PEM).
    #[arg(long, requires_all = ["cert", "key"], conflicts_with = "kubeconfig")]
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The client key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// A kubeconfig with embedded certificate data (as `keel up` writes).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// CPU capacity of each node.
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory capacity of each node (Ki, Mi, Gi, Ti or bytes).
    #[arg(long, default_value = "8Gi")]
    pub memory: String,
    /// Pod capacity of each node (the kubelet's maxPods).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// The nodes' InternalIPs are taken from this range, in order.
    #[arg(long, default_value = "172.31.0.0/16")]
    pub node_ip_range: String,
    /// leaseDurationSeconds of the node Leases; they are renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: u32,
    /// How long a simulated container takes to start.
    #[arg(long, default_value_t = 1000)]
    pub simulated_start_delay_ms: u64,
    /// Pods synced at once.
    #[arg(long, default_value_t = 16)]
    pub pod_workers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("bad flags: {0}")]
    Flags(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn connect(args: &AgentArgs) -> Result<Client, AgentError> {
    let (mut servers, credentials) = match (&args.kubeconfig, &args.ca, &args.cert, &args.key) {
        (Some(path), _, _, _) => {
            let config = Kubeconfig::load(path)?;
            (vec![config.server], config.credentials)
        }
        (None, Some(ca), Some(cert), Some(key)) => (Vec::new(), Credentials::from_files(ca, cert, key)?),
        _ => return Err(AgentError::Flags("give --kubeconfig, or --ca, --cert and --key".into())),
    };
    if !args.server.is_empty() {
        servers = args.server.clone();
    }
    Ok(Client::new(&servers, &credentials)?)
}

fn hollow_nodes(args: &AgentArgs) -> Result<Vec<HollowNode>, AgentError> {
    if args.nodes == 0 || args.nodes > MAX_NODES {
        return Err(AgentError::Flags(format!("--nodes must be 1..={MAX_NODES}")));
    }
    let mut range = ipam::Range::parse(&args.node_ip_range).map_err(|e| AgentError::Flags(e.to_string()))?;
    (1..=args.nodes)
        .map(|index| {
            let ip = range.allocate().map_err(|e| AgentError::Flags(format!("--node-ip-range: {e}")))?;
            Ok(HollowNode { name: format!("{}{index}", args.name_prefix), ip })
        })
        .collect()
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let client = connect(&args)?;
    let nodes = hollow_nodes(&args)?;
    let memory_bytes =
        node::parse_bytes(&args.memory).ok_or_else(|| AgentError::Flags(format!("--memory {:?}", args.memory)))?;
    if args.node_lease_duration_seconds < 4 {
        return Err(AgentError::Flags("--node-lease-duration-seconds must be at least 4".into()));
    }
    let queue = WorkQueue::default();
    let uid_keys: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let notify: Notify = {
        let (queue, uid_keys) = (queue.clone(), uid_keys.clone());
        Arc::new(move |uid: &str| {
            let key = uid_keys.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned();
            if let Some(key) = key {
                queue.add(&key);
            }
        })
    };
    let runtime = match args.runtime {
        RuntimeKind::Simulated => {
            runtime::simulated::Simulated::new(Duration::from_millis(args.simulated_start_delay_ms), notify)
        }
    };
    let shape = Shape {
        cpu: args.cpu.clone(),
        memory_bytes,
        max_pods: args.max_pods,
        runtime_version: runtime::Runtime::version(&runtime),
        boot_id: format!("{:032x}", rand::random::<u128>()),
    };
    let agent = Arc::new(Agent {
        client,
        runtime,
        runtime_name: "simulated".into(),
        nodes: nodes.iter().map(|n| (n.name.clone(), n.clone())).collect(),
        shape,
        lease_duration_seconds: args.node_lease_duration_seconds,
        view: Mutex::new(View::default()),
        queue,
        uid_keys,
    });
    serve(agent, nodes, args.pod_workers).await
}

async fn serve<R: runtime::Runtime>(
    agent: Arc<Agent<R>>,
    nodes: Vec<HollowNode>,
    workers: usize,
) -> Result<(), AgentError> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!(nodes = nodes.len(), server = %agent.client.current_server().await, "node agent starting");
    agent.adopt().await;
    let mut tasks = tokio::task::JoinSet::new();
    let period = Duration::from_secs(u64::from(agent.lease_duration_seconds / 4));
    let count = nodes.len() as u32;
    for (index, node) in nodes.into_iter().enumerate() {
        let offset = period * index as u32 / count;
        tasks.spawn(agent.clone().run_node(node, offset));
    }
    let pods = agent.clone();
    tasks.spawn(api::watch::run(
        agent.client.clone(),
        "/api/v1/pods".into(),
        "fieldSelector=spec.nodeName%21%3D".into(),
        move |event| pods.on_pod_event(event),
    ));
    let nodes_view = agent.clone();
    tasks.spawn(api::watch::run(agent.client.clone(), "/api/v1/nodes".into(), String::new(), move |event| {
        nodes_view.on_node_event(event)
    }));
    for _ in 0..workers.clamp(1, MAX_POD_WORKERS) {
        tasks.spawn(pods::work(agent.clone()));
    }
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: node agent stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: node agent stopping"),
        Some(ended) = tasks.join_next() => tracing::error!(?ended, "a node agent task ended; stopping"),
    }
    tasks.abort_all();
    Ok(())
}
