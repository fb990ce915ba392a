//! What the agent needs from a container runtime, and the runtimes that provide it.
//!
//! The trait follows the CRI's split (the kubelet's view of containerd): a **pod sandbox** owns
//! the pod's network (its IP comes from the sandbox, as CNI gives it to containerd) and holds
//! the pod's **containers**, which are started, reported and stopped one by one. Everything a
//! runtime knows is keyed by ids it chose, and every sandbox carries the pod's identity
//! (namespace, name, UID, node), so an agent that restarts re-adopts what still runs by
//! [`Runtime::list_sandboxes`] instead of starting pods twice.
//!
//! State changes the agent did not ask for (a container started after its delay, a process
//! exited) are announced through the [`Notify`] callback a runtime is built with: the agent
//! re-syncs that pod (PLEG's job in the kubelet). The callback must not block.
//!
//! - `simulated.rs`: hollow nodes. No processes; containers start after a delay and run until
//!   stopped or until an annotation says they exit.
//! - (next) `containerd.rs`: containerd's gRPC API, CNI for the sandbox network.

pub mod simulated;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

/// Called with a pod's UID when the runtime changed that pod's state by itself.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("sandbox {0} not found")]
    SandboxNotFound(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("pod network: {0}")]
    Network(String),
    #[error("{0}")]
    Failed(String),
}

/// What a sandbox is created from: the pod's identity and its network.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The node the pod runs on (one agent process serves many nodes).
    pub node: String,
    /// The node's `spec.podCIDR`: the range the pod's IP comes from.
    pub pod_cidr: String,
    pub annotations: BTreeMap<String, String>,
}

/// What a container is created from.
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
}

/// A container's state as the runtime reports it; times are the runtime's.
#[derive(Clone, Debug, PartialEq)]
pub enum ContainerState {
    /// Created, not (yet) running.
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        started_at: Timestamp,
        finished_at: Timestamp,
        exit_code: i32,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub state: ContainerState,
}

/// A sandbox and its containers.
#[derive(Clone, Debug)]
pub struct SandboxStatus {
    pub id: String,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// The pod's IP (none once the sandbox is stopped and its network released).
    pub ip: Option<IpAddr>,
    pub created_at: Timestamp,
    /// False once stopped.
    pub ready: bool,
    pub containers: Vec<ContainerStatus>,
}

/// A container runtime: one per agent process, shared by all its nodes.
pub trait Runtime: Send + Sync + 'static {
    /// `<name>://<version>`, Node `status.nodeInfo.containerRuntimeVersion`; `<name>://` is also
    /// the prefix of container IDs in pod status.
    fn version(&self) -> String;

    /// Creates the pod's sandbox and network; its status (with the pod IP).
    fn run_sandbox(&self, config: SandboxConfig) -> impl Future<Output = Result<SandboxStatus, RuntimeError>> + Send;

    /// Creates and starts one container in a sandbox; its ID. Starting may finish later (the
    /// runtime notifies then).
    fn start_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// The sandbox and the state of each of its containers.
    fn sandbox_status(&self, sandbox_id: &str) -> impl Future<Output = Result<SandboxStatus, RuntimeError>> + Send;

    /// Stops one container: the stop signal, then a kill after `grace`.
    fn stop_container(
        &self,
        container_id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stops whatever still runs in the sandbox (killed at once) and releases its network.
    fn stop_sandbox(&self, sandbox_id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Forgets a stopped sandbox and its containers.
    fn remove_sandbox(&self, sandbox_id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Every sandbox the runtime has, for re-adoption after an agent restart.
    fn list_sandboxes(&self) -> impl Future<Output = Result<Vec<SandboxStatus>, RuntimeError>> + Send;
}
