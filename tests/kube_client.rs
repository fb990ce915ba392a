//! The `kube` crate (kube-rs), a typed Rust client, against a three-master `keel up` cluster:
//! it authenticates with the kubeconfig Keel writes, then lists, watches, creates and patches.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::control_plane::{Backend, UpCluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

async fn client(cluster: &UpCluster) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("read the kubeconfig keel up wrote");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config from the kubeconfig");
    kube::Client::try_from(config).expect("client")
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    let mut map: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": { "suite": "kube" } }
    }))
    .expect("configmap");
    map.data = Some(BTreeMap::from([("value".to_string(), value.to_string())]));
    map
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_lists_watches_creates_and_patches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start(dir.path(), Backend::Embedded);
    let client = client(&cluster).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let listed = maps.list(&ListParams::default().labels("suite=kube")).await.expect("list");
    assert!(listed.items.is_empty());
    let from = listed.metadata.resource_version.clone().expect("a list has a resourceVersion");

    let created = maps.create(&PostParams::default(), &configmap("one", "1")).await.expect("create");
    assert_eq!(created.metadata.name.as_deref(), Some("one"));
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let duplicate = maps.create(&PostParams::default(), &configmap("one", "1")).await;
    match duplicate {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("a duplicate create must be 409 AlreadyExists, got {other:?}"),
    }

    let merge = serde_json::json!({ "data": { "value": "2" } });
    let patched = maps.patch("one", &PatchParams::default(), &Patch::Merge(&merge)).await.expect("merge patch");
    assert_eq!(patched.data.as_ref().and_then(|d| d.get("value")).map(String::as_str), Some("2"));
    let strategic = serde_json::json!({ "metadata": { "labels": { "patched": "yes" } } });
    let patched = maps.patch("one", &PatchParams::default(), &Patch::Strategic(&strategic)).await.expect("strategic");
    let labels = patched.metadata.labels.unwrap_or_default();
    assert_eq!((labels.get("suite"), labels.get("patched")), (Some(&"kube".to_string()), Some(&"yes".to_string())));
    let applied = maps
        .patch("two", &PatchParams::apply("keel-test"), &Patch::Apply(&configmap("two", "applied")))
        .await
        .expect("server-side apply creates");
    assert_eq!(applied.data.as_ref().and_then(|d| d.get("value")).map(String::as_str), Some("applied"));

    // A watch from the list's resourceVersion sees exactly what happened since, in order.
    let params = WatchParams::default().labels("suite=kube").timeout(20);
    let mut events = maps.watch(&params, &from).await.expect("watch").boxed();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(15), events.try_next()).await;
        match next.expect("watch event within 15 s").expect("watch stream") {
            Some(WatchEvent::Added(map)) => seen.push(format!("ADDED {}", map.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Modified(map)) => seen.push(format!("MODIFIED {}", map.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Deleted(map)) => seen.push(format!("DELETED {}", map.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Bookmark(_)) => {}
            Some(WatchEvent::Error(error)) => panic!("watch error: {error:?}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["ADDED one", "MODIFIED one", "MODIFIED one", "ADDED two"]);

    // Typed objects of another group through another master.
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    assert!(deployments.list(&ListParams::default()).await.expect("list deployments").items.is_empty());
}
