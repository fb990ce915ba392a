//! The simulated runtime of hollow nodes: bookkeeping only, no processes.
//!
//! - A sandbox gets the next IP of its node's pod CIDR ([`crate::ipam`]) at once.
//! - A container is `Created`, then `Running` after the configured start delay.
//! - It runs until stopped, unless the pod carries the annotation
//!   [`EXIT_AFTER_ANNOTATION`] (`sim.keel.dev/exit-after-seconds: "5"`): then it exits that long
//!   after starting, with the code in [`EXIT_CODE_ANNOTATION`] (default 0). Tests use this for
//!   Succeeded/Failed pods.
//! - Stopping is immediate whatever the grace period: exit code 0, reason "Completed".
//!
//! Each state change the runtime makes by itself is announced through [`Notify`]. State is in
//! memory: a restarted agent finds no sandboxes and starts the pods again (a real runtime's
//! `list_sandboxes` is what re-adoption is for).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;

use super::{
    ContainerConfig, ContainerState, ContainerStatus, Notify, Runtime, RuntimeError, SandboxConfig, SandboxStatus,
};
use crate::ipam;

/// Seconds after starting a simulated container exits (absent: it runs until stopped).
pub const EXIT_AFTER_ANNOTATION: &str = "sim.keel.dev/exit-after-seconds";
/// The exit code of such a container.
pub const EXIT_CODE_ANNOTATION: &str = "sim.keel.dev/exit-code";
/// The version in `containerRuntimeVersion`.
const VERSION: &str = concat!("simulated://", env!("CARGO_PKG_VERSION"));

struct Sandbox {
    status: SandboxStatus,
    annotations: BTreeMap<String, String>,
    cidr: String,
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, Sandbox>,
    /// Container ID → sandbox ID.
    containers: HashMap<String, String>,
    /// Pod CIDR → its allocator (a CIDR belongs to one node).
    ranges: HashMap<String, ipam::Range>,
    next_id: u64,
}

#[derive(Clone)]
pub struct Simulated {
    state: Arc<Mutex<State>>,
    start_delay: Duration,
    notify: Notify,
}

impl Simulated {
    pub fn new(start_delay: Duration, notify: Notify) -> Simulated {
        Simulated { state: Arc::new(Mutex::new(State::default())), start_delay, notify }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bookkeeping behind; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn new_id(state: &mut State) -> String {
        state.next_id += 1;
        format!("{:016x}{:016x}", rand::random::<u64>(), state.next_id)
    }

    /// Runs the container's life: Running after the delay, maybe Exited later.
    fn schedule(&self, sandbox_id: String, container_id: String, exit: Option<(Duration, i32)>) {
        let runtime = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(runtime.start_delay).await;
            let started_at = Timestamp::now();
            if !runtime.transition(&sandbox_id, &container_id, |state| match state {
                ContainerState::Created => Some(ContainerState::Running { started_at }),
                _ => None,
            }) {
                return;
            }
            let Some((after, exit_code)) = exit else { return };
            tokio::time::sleep(after).await;
            let reason = if exit_code == 0 { "Completed" } else { "Error" }.to_string();
            runtime.transition(&sandbox_id, &container_id, |state| match state {
                ContainerState::Running { started_at } => Some(ContainerState::Exited {
                    started_at: *started_at,
                    finished_at: Timestamp::now(),
                    exit_code,
                    reason: reason.clone(),
                }),
                _ => None,
            });
        });
    }

    /// Applies `change` to a container if it yields a new state; notifies the pod's owner.
    fn transition(
        &self,
        sandbox_id: &str,
        container_id: &str,
        change: impl Fn(&ContainerState) -> Option<ContainerState>,
    ) -> bool {
        let uid = {
            let mut state = self.lock();
            let Some(sandbox) = state.sandboxes.get_mut(sandbox_id) else { return false };
            let Some(container) = sandbox.status.containers.iter_mut().find(|c| c.id == container_id) else {
                return false;
            };
            let Some(next) = change(&container.state) else { return false };
            container.state = next;
            sandbox.status.uid.clone()
        };
        (self.notify)(&uid);
        true
    }
}

fn exit_plan(annotations: &BTreeMap<String, String>) -> Option<(Duration, i32)> {
    let after: f64 = annotations.get(EXIT_AFTER_ANNOTATION)?.trim().parse().ok()?;
    if !after.is_finite() || after < 0.0 {
        return None;
    }
    let code = annotations.get(EXIT_CODE_ANNOTATION).and_then(|c| c.trim().parse().ok()).unwrap_or(0);
    Some((Duration::from_secs_f64(after.min(1e9)), code))
}

fn stop_now(state: &mut ContainerState) {
    let now = Timestamp::now();
    *state = match state {
        ContainerState::Created => {
            ContainerState::Exited { started_at: now, finished_at: now, exit_code: 0, reason: "Completed".into() }
        }
        ContainerState::Running { started_at } => ContainerState::Exited {
            started_at: *started_at,
            finished_at: now,
            exit_code: 0,
            reason: "Completed".into(),
        },
        ContainerState::Exited { .. } => return,
    };
}

impl Runtime for Simulated {
    fn version(&self) -> String {
        VERSION.to_string()
    }

    async fn run_sandbox(&self, config: SandboxConfig) -> Result<SandboxStatus, RuntimeError> {
        let mut state = self.lock();
        if !state.ranges.contains_key(&config.pod_cidr) {
            let range = ipam::Range::parse(&config.pod_cidr).map_err(|e| RuntimeError::Network(e.to_string()))?;
            state.ranges.insert(config.pod_cidr.clone(), range);
        }
        let ip = match state.ranges.get_mut(&config.pod_cidr) {
            Some(range) => range.allocate().map_err(|e| RuntimeError::Network(e.to_string()))?,
            None => return Err(RuntimeError::Network(format!("no range for {}", config.pod_cidr))),
        };
        let id = Self::new_id(&mut state);
        let status = SandboxStatus {
            id: id.clone(),
            uid: config.uid,
            namespace: config.namespace,
            name: config.name,
            node: config.node,
            ip: Some(IpAddr::V4(ip)),
            created_at: Timestamp::now(),
            ready: true,
            containers: Vec::new(),
        };
        state
            .sandboxes
            .insert(id, Sandbox { status: status.clone(), annotations: config.annotations, cidr: config.pod_cidr });
        Ok(status)
    }

    async fn start_container(&self, sandbox_id: &str, config: ContainerConfig) -> Result<String, RuntimeError> {
        let (id, exit) = {
            let mut state = self.lock();
            let id = Self::new_id(&mut state);
            let Some(sandbox) = state.sandboxes.get_mut(sandbox_id) else {
                return Err(RuntimeError::SandboxNotFound(sandbox_id.to_string()));
            };
            if !sandbox.status.ready {
                return Err(RuntimeError::Failed(format!("sandbox {sandbox_id} is stopped")));
            }
            sandbox.status.containers.push(ContainerStatus {
                id: id.clone(),
                name: config.name,
                image_id: format!("simulated://{}", config.image),
                image: config.image,
                state: ContainerState::Created,
            });
            let exit = exit_plan(&sandbox.annotations);
            state.containers.insert(id.clone(), sandbox_id.to_string());
            (id, exit)
        };
        self.schedule(sandbox_id.to_string(), id.clone(), exit);
        Ok(id)
    }

    async fn sandbox_status(&self, sandbox_id: &str) -> Result<SandboxStatus, RuntimeError> {
        let state = self.lock();
        state
            .sandboxes
            .get(sandbox_id)
            .map(|s| s.status.clone())
            .ok_or_else(|| RuntimeError::SandboxNotFound(sandbox_id.to_string()))
    }

    async fn stop_container(&self, container_id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        let sandbox_id = state
            .containers
            .get(container_id)
            .cloned()
            .ok_or_else(|| RuntimeError::ContainerNotFound(container_id.into()))?;
        let sandbox =
            state.sandboxes.get_mut(&sandbox_id).ok_or_else(|| RuntimeError::SandboxNotFound(sandbox_id.clone()))?;
        if let Some(container) = sandbox.status.containers.iter_mut().find(|c| c.id == container_id) {
            stop_now(&mut container.state);
        }
        Ok(())
    }

    async fn stop_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        let state = &mut *state;
        let sandbox =
            state.sandboxes.get_mut(sandbox_id).ok_or_else(|| RuntimeError::SandboxNotFound(sandbox_id.into()))?;
        for container in &mut sandbox.status.containers {
            stop_now(&mut container.state);
        }
        sandbox.status.ready = false;
        if let (Some(IpAddr::V4(ip)), Some(range)) = (sandbox.status.ip.take(), state.ranges.get_mut(&sandbox.cidr)) {
            range.release(ip);
        }
        Ok(())
    }

    async fn remove_sandbox(&self, sandbox_id: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        let state = &mut *state;
        if let Some(mut sandbox) = state.sandboxes.remove(sandbox_id) {
            for container in &sandbox.status.containers {
                state.containers.remove(&container.id);
            }
            if let (Some(IpAddr::V4(ip)), Some(range)) = (sandbox.status.ip.take(), state.ranges.get_mut(&sandbox.cidr))
            {
                range.release(ip);
            }
        }
        Ok(())
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        Ok(self.lock().sandboxes.values().map(|s| s.status.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn config(uid: &str, annotations: &[(&str, &str)]) -> SandboxConfig {
        SandboxConfig {
            uid: uid.into(),
            namespace: "default".into(),
            name: "p".into(),
            node: "hollow-1".into(),
            pod_cidr: "10.244.7.0/24".into(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn counting() -> (Notify, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        (
            Arc::new(move |_: &str| {
                seen.fetch_add(1, Ordering::SeqCst);
            }),
            count,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_runs_after_the_delay_and_stops_at_once() {
        let (notify, count) = counting();
        let runtime = Simulated::new(Duration::from_millis(500), notify);
        let sandbox = runtime.run_sandbox(config("u1", &[])).await.expect("sandbox");
        assert_eq!(sandbox.ip.expect("ip").to_string(), "10.244.7.2");
        let id = runtime
            .start_container(&sandbox.id, ContainerConfig { name: "app".into(), image: "nginx".into() })
            .await
            .expect("start");
        assert_eq!(
            runtime.sandbox_status(&sandbox.id).await.expect("status").containers[0].state,
            ContainerState::Created
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(matches!(
            runtime.sandbox_status(&sandbox.id).await.expect("status").containers[0].state,
            ContainerState::Running { .. }
        ));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        runtime.stop_container(&id, Duration::from_secs(30)).await.expect("stop");
        let status = runtime.sandbox_status(&sandbox.id).await.expect("status");
        assert!(
            matches!(&status.containers[0].state, ContainerState::Exited { exit_code: 0, reason, .. } if reason == "Completed")
        );
        runtime.stop_sandbox(&sandbox.id).await.expect("stop sandbox");
        runtime.remove_sandbox(&sandbox.id).await.expect("remove");
        assert!(runtime.list_sandboxes().await.expect("list").is_empty());
        let again = runtime.run_sandbox(config("u2", &[])).await.expect("sandbox");
        assert_eq!(again.ip.expect("ip").to_string(), "10.244.7.3", "host-local style: no immediate reuse");
    }

    #[tokio::test(start_paused = true)]
    async fn the_exit_annotation_ends_a_container_with_its_code() {
        let (notify, count) = counting();
        let runtime = Simulated::new(Duration::from_millis(100), notify);
        let sandbox = runtime
            .run_sandbox(config("u1", &[(EXIT_AFTER_ANNOTATION, "2"), (EXIT_CODE_ANNOTATION, "3")]))
            .await
            .expect("sandbox");
        runtime
            .start_container(&sandbox.id, ContainerConfig { name: "job".into(), image: "busybox".into() })
            .await
            .expect("start");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let status = runtime.sandbox_status(&sandbox.id).await.expect("status");
        assert!(
            matches!(&status.containers[0].state, ContainerState::Exited { exit_code: 3, reason, .. } if reason == "Error")
        );
        assert_eq!(count.load(Ordering::SeqCst), 2, "started, then exited");
    }
}
