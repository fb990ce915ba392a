//! The API server's watch cache seen from a client (the `kube` crate over HTTPS) against a
//! three-master `keel up`, on embedded store replicas and on a real etcd 3.4:
//! - a watch from a list's resourceVersion sees exactly the later changes, whether the
//!   master's cache existed before the changes or is created by the watch afterwards, and
//!   on a master other than the one that served the list;
//! - a `resourceVersion=0` list is answered from the cache;
//! - after more writes than the cache's window holds, a watch from the old resourceVersion
//!   gets one ERROR event carrying a 410 Expired Status, and a fresh one works.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::control_plane::{Backend, UpCluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Writes that overflow the cache's ring (4,096 events per resource) with room to spare.
const OVERFLOW_WRITES: usize = 4_400;
/// Concurrent writers for the overflow (each patches its own configmap).
const WRITERS: usize = 16;

type Watch = futures::stream::BoxStream<'static, Result<WatchEvent<ConfigMap>, kube::Error>>;

/// A client of `master` with the credentials `keel up` wrote.
async fn client(cluster: &UpCluster, master: usize) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("read the kubeconfig keel up wrote");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config from the kubeconfig");
    config.cluster_url = format!("https://127.0.0.1:{}", cluster.api_port(master)).parse().expect("an API server URL");
    kube::Client::try_from(config).expect("client")
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    let mut map: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": { "suite": "cache" } }
    }))
    .expect("configmap");
    map.data = Some(BTreeMap::from([("value".to_string(), value.to_string())]));
    map
}

async fn watch_from(maps: &Api<ConfigMap>, resource_version: &str) -> Watch {
    let params = WatchParams::default().labels("suite=cache").timeout(60);
    maps.watch(&params, resource_version).await.expect("watch").boxed()
}

/// "ADDED one", ... for the next `count` changes (bookmarks skipped), then checks that no
/// further change arrives for a while.
async fn exactly(events: &mut Watch, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut last_revision = 0u64;
    while seen.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(20), events.try_next()).await;
        let event = next.expect("a watch event within 20 s").expect("watch stream").expect("the watch ended early");
        let (kind, map) = match event {
            WatchEvent::Added(map) => ("ADDED", map),
            WatchEvent::Modified(map) => ("MODIFIED", map),
            WatchEvent::Deleted(map) => ("DELETED", map),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => panic!("watch error: {status:?}"),
        };
        let revision: u64 = map.metadata.resource_version.as_deref().unwrap_or("").parse().expect("numeric RV");
        assert!(revision > last_revision, "events arrive in revision order: {revision} after {last_revision}");
        last_revision = revision;
        seen.push(format!("{kind} {}", map.metadata.name.unwrap_or_default()));
    }
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, events.try_next()).await {
            Err(_) | Ok(Ok(None)) => break,
            Ok(Ok(Some(WatchEvent::Bookmark(_)))) => continue,
            Ok(other) => panic!("nothing after {seen:?}, got {other:?}"),
        }
    }
    seen
}

/// Patches `total` times, spread over `WRITERS` configmaps written concurrently through
/// masters 0 and 1.
async fn overflow(zero: &Api<ConfigMap>, one: &Api<ConfigMap>, total: usize) {
    for writer in 0..WRITERS {
        zero.create(&PostParams::default(), &configmap(&format!("bulk-{writer}"), "0")).await.expect("create bulk");
    }
    let per_writer = total.div_ceil(WRITERS);
    let writers = (0..WRITERS).map(|writer| {
        let maps = if writer % 2 == 0 { zero.clone() } else { one.clone() };
        async move {
            for i in 0..per_writer {
                let patch = serde_json::json!({ "data": { "value": i.to_string() } });
                maps.patch(&format!("bulk-{writer}"), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("patch");
            }
        }
    });
    futures::future::join_all(writers).await;
}

async fn run(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = UpCluster::start(dir.path(), backend);
    let zero: Api<ConfigMap> = Api::namespaced(client(&cluster, 0).await, "default");
    let one: Api<ConfigMap> = Api::namespaced(client(&cluster, 1).await, "default");

    // A consistent list from the store; its resourceVersion is where the watches resume.
    let listed = zero.list(&ListParams::default().labels("suite=cache")).await.expect("list");
    assert!(listed.items.is_empty());
    let from = listed.metadata.resource_version.clone().expect("a list has a resourceVersion");
    // Master 0's cache exists before the changes; master 1's is created after them.
    let mut before = watch_from(&zero, &from).await;

    zero.create(&PostParams::default(), &configmap("one", "1")).await.expect("create one");
    let merge = serde_json::json!({ "data": { "value": "2" } });
    one.patch("one", &PatchParams::default(), &Patch::Merge(&merge)).await.expect("patch one");
    zero.create(&PostParams::default(), &configmap("two", "2")).await.expect("create two");
    zero.delete("one", &Default::default()).await.expect("delete one");
    let expected = vec!["ADDED one", "MODIFIED one", "ADDED two", "DELETED one"];
    assert_eq!(exactly(&mut before, 4).await, expected, "master 0, cache from before the changes");
    let mut after = watch_from(&one, &from).await;
    assert_eq!(exactly(&mut after, 4).await, expected, "master 1, cache created after the changes");

    // resourceVersion=0: any recent state, from master 1's cache.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cached = one.list(&ListParams::default().labels("suite=cache").match_any()).await.expect("list rv=0");
        let names: Vec<String> = cached.items.iter().filter_map(|map| map.metadata.name.clone()).collect();
        if names == ["two"] {
            break;
        }
        assert!(Instant::now() < deadline, "the cached list never caught up: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // More writes than the window holds: the old resourceVersion is gone, in the stream.
    overflow(&zero, &one, OVERFLOW_WRITES).await;
    for (master, maps) in [(0, &zero), (1, &one)] {
        let mut stale = watch_from(maps, &from).await;
        let first = tokio::time::timeout(Duration::from_secs(20), stale.try_next()).await;
        match first.expect("an answer within 20 s").expect("a 200 watch stream") {
            Some(WatchEvent::Error(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (410, "Expired"), "master {master}: {status:?}");
                let prefix = format!("too old resource version: {from} (");
                assert!(status.message.starts_with(&prefix), "master {master}: {}", status.message);
            }
            other => panic!("master {master}: a watch from {from} must get a 410 ERROR event, got {other:?}"),
        }
    }
    let latest = zero.list(&ListParams::default().labels("suite=cache")).await.expect("list");
    let latest = latest.metadata.resource_version.expect("resourceVersion");
    let mut fresh = watch_from(&one, &latest).await;
    let change = serde_json::json!({ "data": { "value": "3" } });
    one.patch("two", &PatchParams::default(), &Patch::Merge(&change)).await.expect("patch two");
    assert_eq!(exactly(&mut fresh, 1).await, vec!["MODIFIED two"], "a fresh watch works");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_cache_on_embedded_stores() {
    run(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_cache_on_etcd() {
    run(Backend::Etcd).await;
}
