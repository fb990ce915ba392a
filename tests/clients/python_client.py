"""The official Python `kubernetes` client (Debian's python3-kubernetes) against a Keel API
server: list, watch (ADDED, MODIFIED, DELETED in order), create, patch, server-side apply and
delete. Run by tests/client_matrix.rs as `python3 python_client.py KUBECONFIG SERVER PREFIX`;
exits 0 and prints "python client: ok" when every step behaved, else exits 1 saying which
step did not.

Every wait is bounded: the watch runs for at most WATCH_SECONDS on the server's clock and the
collector thread is joined with a timeout."""

import json
import sys
import threading

from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

WATCH_SECONDS = 30
NAMESPACE = "default"


def fail(message):
    print(f"python client: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def configmap(name, label, value):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"suite": label}},
        "data": {"value": value},
    }


def collect_events(core, label, resource_version, seen, done):
    """Watches configmaps with the suite label from `resource_version` until a DELETED."""
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        NAMESPACE,
        label_selector=f"suite={label}",
        resource_version=resource_version,
        timeout_seconds=WATCH_SECONDS,
    )
    try:
        for event in stream:
            seen.append(f"{event['type']} {event['object'].metadata.name}")
            if event["type"] == "DELETED":
                break
    finally:
        done.set()


def main():
    if len(sys.argv) != 4:
        fail("usage: python_client.py KUBECONFIG SERVER PREFIX")
    kubeconfig, server, prefix = sys.argv[1:]
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.host = server
    api = client.ApiClient(configuration)
    core = client.CoreV1Api(api)
    label = f"{prefix}-py"
    one, two = f"{prefix}-py-one", f"{prefix}-py-two"

    listed = core.list_namespaced_config_map(NAMESPACE, label_selector=f"suite={label}")
    check(listed.items == [], f"a fresh label lists nothing, got {len(listed.items)} items")
    resource_version = listed.metadata.resource_version
    check(resource_version, "a list carries a resourceVersion")

    seen, done = [], threading.Event()
    watcher = threading.Thread(target=collect_events, args=(core, label, resource_version, seen, done), daemon=True)
    watcher.start()

    created = core.create_namespaced_config_map(NAMESPACE, configmap(one, label, "1"))
    check(created.metadata.uid, "a created object has a uid")
    try:
        core.create_namespaced_config_map(NAMESPACE, configmap(one, label, "1"))
        fail("a second create of the same name succeeded")
    except ApiException as error:
        check(error.status == 409, f"a duplicate create is 409, got {error.status}")
        check(json.loads(error.body)["reason"] == "AlreadyExists", f"reason AlreadyExists: {error.body}")

    # A dict body is sent as a strategic merge patch, a list as a JSON patch.
    patched = core.patch_namespaced_config_map(one, NAMESPACE, {"data": {"value": "2"}})
    check(patched.data["value"] == "2", f"strategic merge patch: {patched.data}")
    patched = core.patch_namespaced_config_map(
        one, NAMESPACE, [{"op": "add", "path": "/metadata/labels/patched", "value": "yes"}]
    )
    check(patched.metadata.labels.get("patched") == "yes", f"json patch: {patched.metadata.labels}")

    resources = dynamic.DynamicClient(api)
    configmaps = resources.resources.get(api_version="v1", kind="ConfigMap")
    applied = resources.server_side_apply(
        configmaps,
        body=json.dumps(configmap(two, label, "applied")),
        name=two,
        namespace=NAMESPACE,
        field_manager="python-test",
    )
    check(applied.data["value"] == "applied", f"server-side apply: {applied.data}")
    managers = [entry["manager"] for entry in applied.metadata.managedFields]
    check("python-test" in managers, f"the applier is a field manager: {managers}")

    core.delete_namespaced_config_map(one, NAMESPACE)
    try:
        core.read_namespaced_config_map(one, NAMESPACE)
        fail("a deleted configmap can still be read")
    except ApiException as error:
        check(error.status == 404, f"a deleted object is 404, got {error.status}")

    check(done.wait(WATCH_SECONDS + 5), f"the watch ended within {WATCH_SECONDS + 5} s; saw {seen}")
    expected = [f"ADDED {one}", f"MODIFIED {one}", f"MODIFIED {one}", f"ADDED {two}", f"DELETED {one}"]
    check(seen == expected, f"watch events {seen}, expected {expected}")
    core.delete_namespaced_config_map(two, NAMESPACE)
    print("python client: ok")


if __name__ == "__main__":
    main()
