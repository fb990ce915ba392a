//! What field management costs per write: `fieldmanager::update` (every create, update and
//! patch records its manager) and `fieldmanager::apply` (server-side apply), on a ConfigMap like
//! `keel bench api` writes and on a Deployment with two containers.
//!
//! Run: `cargo bench -p keel-control-plane --bench fieldmanager -- [ITERATIONS]` (default
//! 20,000). Prints microseconds per call, the median of five runs.

use std::time::Instant;

use keel_control_plane::fieldmanager::{self, Context, FieldSet, Shape};
use serde_json::{Value, json};

/// The allocator of the `keel` binary, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: &str = "2026-12-03T12:00:00Z";

fn context(group: &'static str, kind: &'static str, api_version: &'static str) -> Context<'static> {
    Context { shape: Shape::root(group, kind), api_version, subresource: "", ignored: FieldSet::new(), now: NOW }
}

fn config_map() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bench-1", "namespace": "keel-bench", "uid": "u-1", "labels": {"bench": "api"}},
        "data": {"value": "0", "other": "x"}})
}

fn deployment() -> Value {
    let container = |name: &str, image: &str, port: u16| {
        json!({"name": name, "image": image, "ports": [{"containerPort": port, "protocol": "TCP"}],
            "env": [{"name": "MODE", "value": "fast"}], "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File"})
    };
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "u-2", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container("main", "nginx:1.25", 80), container("side", "busybox", 9000)],
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30}}}})
}

/// The object as stored after its create: with the creator's entry.
fn created(ctx: &Context<'_>, object: &Value) -> Value {
    let mut stored = object.clone();
    let managed = fieldmanager::update(ctx, None, object, "kubectl-create").expect("create entry");
    stored["metadata"]["managedFields"] = managed.unwrap_or(Value::Null);
    stored
}

/// Microseconds per call of `op`, the median of five runs of `iterations` calls.
fn time(iterations: u32, mut op: impl FnMut(u32)) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            for i in 0..iterations {
                op(i);
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn main() {
    let iterations: u32 =
        std::env::args().skip(1).find(|a| !a.starts_with("--")).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    println!("| call | object | µs per call |");
    println!("|---|---|---:|");
    for (name, ctx, object, change) in [
        ("ConfigMap", context("", "ConfigMap", "v1"), config_map(), "/data/value"),
        ("Deployment", context("apps", "Deployment", "apps/v1"), deployment(), "/spec/replicas"),
    ] {
        let live = created(&ctx, &object);
        let create = time(iterations, |_| {
            std::hint::black_box(fieldmanager::update(&ctx, None, &object, "kubectl-create").expect("create"));
        });
        println!("| update (create) | {name} | {create:.2} |");
        let update = time(iterations, |i| {
            let mut new = live.clone();
            if let Some(field) = new.pointer_mut(change) {
                *field = if field.is_string() { json!(i.to_string()) } else { json!(i) };
            }
            std::hint::black_box(fieldmanager::update(&ctx, Some(&live), &new, "bench").expect("update"));
        });
        println!("| update (one field changed, incl. the object's clone) | {name} | {update:.2} |");
        let clone = time(iterations, |_| {
            std::hint::black_box(live.clone());
        });
        println!("| (the clone alone) | {name} | {clone:.2} |");
        let applied = time(iterations, |_| {
            std::hint::black_box(fieldmanager::apply(&ctx, Some(&live), &object, "bench-apply", true).expect("apply"));
        });
        println!("| apply (forced, same values) | {name} | {applied:.2} |");
    }
}
