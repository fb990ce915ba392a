//! What one scheduling decision costs: scheduler_perf's SchedulingBasic shape — 5,000 nodes
//! (cpu 4, memory 32Gi, pods 110) and 10,000 pods (one container, containerPort 80, requests =
//! limits = cpu 100m, memory 500Mi) — through the pure core: queue add/pop, `schedule_one`,
//! `Cache::assume`, queue `done`. No API calls: this is the scheduler's share of the
//! 1,000 pods/s budget.
//!
//! Run: `cargo bench -p keel-control-plane --bench scheduler -- [NODES] [PODS]` (default 5,000
//! and 10,000). Prints microseconds per pod for the whole loop and for `schedule_one` alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use keel_control_plane::scheduler::{Cache, Config, PodInfo, Profile, QueueConfig, Scheduler, SchedulingQueue};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

/// The allocator of the `keel` binary, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn node(i: usize) -> Node {
    let name = format!("scheduler-perf-{i:05}");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("node template")
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i:06}"), "namespace": "sched-0", "uid": format!("uid-{i}")},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "ports": [{"containerPort": 80}],
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "100m", "memory": "500Mi"}}}]},
    }))
    .expect("pod template")
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let nodes = args.first().copied().unwrap_or(5_000);
    let pods = args.get(1).copied().unwrap_or(10_000);
    let mut cache = Cache::default();
    for i in 0..nodes {
        cache.upsert_node(Arc::new(node(i)));
    }
    let profile = Profile::default_profile();
    let mut queue = SchedulingQueue::new(QueueConfig::default(), profile.events());
    let mut scheduler = Scheduler::new(profile, Config::default());
    let mut rng = StdRng::seed_from_u64(1);
    let now = Instant::now();
    for i in 0..pods {
        queue.add(Arc::new(pod(i)), now).expect("queue has room");
    }
    let mut in_schedule = Duration::ZERO;
    let mut scheduled = 0usize;
    let started = Instant::now();
    while let Some(next) = queue.pop(now) {
        let info = PodInfo::new(next.pod.clone());
        let cycle = Instant::now();
        let chosen = scheduler.schedule_one(&info, &cache, &mut rng);
        in_schedule += cycle.elapsed();
        match chosen {
            Ok(node) => {
                cache.assume(next.pod, &node, now).expect("assume");
                queue.done(&next.key);
                scheduled += 1;
            }
            Err(e) => panic!("pod {} unschedulable: {e}", next.key),
        }
    }
    let total = started.elapsed();
    let per_pod = |d: Duration| d.as_secs_f64() * 1e6 / pods as f64;
    println!("scheduler: {pods} pods onto {nodes} nodes, {scheduled} scheduled");
    println!(
        "  whole loop (queue, PodInfo, schedule_one, assume): {:.1} µs/pod, {:.0} pods/s",
        per_pod(total),
        pods as f64 / total.as_secs_f64()
    );
    println!("  schedule_one alone: {:.1} µs/pod", per_pod(in_schedule));
    let busiest = cache.nodes().iter().map(|n| n.pods.len()).max().unwrap_or(0);
    let idlest = cache.nodes().iter().map(|n| n.pods.len()).min().unwrap_or(0);
    println!("  pods per node: min {idlest}, max {busiest}");
}
