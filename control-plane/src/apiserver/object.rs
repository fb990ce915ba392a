//! Object metadata the server owns: uid, creation time, resourceVersion (the store's
//! mod revision, never stored), generation, and the parts of an object that are "spec" for
//! generation and status-subresource purposes.

use serde_json::{Map, Value, json};

/// The fields of an object outside `metadata` and `status`: a change to them is a spec
/// change (bumps `generation`).
fn spec_part(object: &Value) -> Map<String, Value> {
    let mut spec = object.as_object().cloned().unwrap_or_default();
    for key in ["metadata", "status", "apiVersion", "kind"] {
        spec.remove(key);
    }
    spec
}

pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

/// The object's `metadata`, created when missing or not an object.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let Value::Object(map) = object else { unreachable!("just made an object") };
    let entry = map.entry("metadata").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(metadata) => metadata,
        _ => unreachable!("just made an object"),
    }
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    metadata(object)?.get(field)?.as_str()
}

pub fn name(object: &Value) -> Option<&str> {
    meta_str(object, "name").filter(|name| !name.is_empty())
}

/// A random RFC 4122 version 4 uid, as Kubernetes gives every object.
pub fn new_uid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Now, as Kubernetes writes times (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Five random lowercase alphanumerics: the suffix of a `generateName`.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// Fills what the server owns on create: name from generateName, uid, creation time,
/// namespace, and generation 1 for kinds that track one (`tracks_generation`; see
/// [`Resource::tracks_generation`](super::resources::Resource::tracks_generation)); drops what
/// clients may not set.
pub fn prepare_for_create(object: &mut Value, namespace: Option<&str>, tracks_generation: bool) {
    let metadata = metadata_mut(object);
    let has_name = metadata.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    if !has_name {
        if let Some(prefix) = metadata.get("generateName").and_then(Value::as_str) {
            let generated = format!("{prefix}{}", random_suffix());
            metadata.insert("name".into(), Value::String(generated));
        }
    }
    if let Some(namespace) = namespace {
        metadata.insert("namespace".into(), Value::String(namespace.to_string()));
    }
    metadata.insert("uid".into(), Value::String(new_uid()));
    metadata.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    if tracks_generation {
        metadata.insert("generation".into(), json!(1));
    }
    for owned_by_server in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        metadata.remove(owned_by_server);
    }
}

/// Carries over what an update may not change (uid, creation time, generation, deletion
/// state) and, for kinds that track a generation, bumps it when the spec changed.
pub fn prepare_for_update(new: &mut Value, old: &Value, tracks_generation: bool) {
    let spec_changed = spec_part(new) != spec_part(old);
    let old_metadata = metadata(old).cloned().unwrap_or_default();
    let metadata = metadata_mut(new);
    for kept in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
        "generation",
    ] {
        match old_metadata.get(kept) {
            Some(value) => metadata.insert(kept.into(), value.clone()),
            None => metadata.remove(kept),
        };
    }
    if tracks_generation {
        let generation = old_metadata.get("generation").and_then(Value::as_i64).unwrap_or(1);
        let generation = if spec_changed { generation + 1 } else { generation };
        metadata.insert("generation".into(), json!(generation));
    }
    metadata.remove("resourceVersion");
}

/// The object as stored: without resourceVersion (the store's mod revision is the truth).
pub fn encode_for_store(object: &Value) -> Vec<u8> {
    let mut stored = object.clone();
    if let Some(metadata) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// A stored object with its resourceVersion filled from the store's mod revision.
pub fn decode_from_store(value: &[u8], mod_revision: i64) -> Option<Value> {
    let mut object: Value = serde_json::from_slice(value).ok()?;
    set_resource_version(&mut object, mod_revision);
    Some(object)
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    metadata_mut(object).insert("resourceVersion".into(), Value::String(revision.to_string()));
}

/// The status part moves from `from` into `into` (status subresource rules).
pub fn keep_status(into: &mut Value, from: &Value) {
    if let Some(map) = into.as_object_mut() {
        match from.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
}

/// Everything but status and annotations moves from `from` into `into`: a `/status` write
/// changes status and may change annotations (Kubernetes' status strategies reset the spec
/// and, for some kinds, labels, but not annotations; the Deployment controller writes its
/// revision annotation with the status).
pub fn keep_all_but_status(into: &mut Value, from: &Value) {
    let status = into.get("status").cloned();
    let annotations = into.pointer("/metadata/annotations").cloned();
    *into = from.clone();
    if let Some(map) = into.as_object_mut() {
        match status {
            Some(status) => map.insert("status".into(), status),
            None => map.remove("status"),
        };
    }
    let metadata = metadata_mut(into);
    match annotations {
        Some(annotations) => metadata.insert("annotations".into(), annotations),
        None => metadata.remove("annotations"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_a_version_4_uuid() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_ne!(uid, new_uid());
    }

    #[test]
    fn generation_bumps_only_on_spec_changes() {
        let old = json!({"metadata": {"name": "a", "uid": "u", "generation": 3}, "spec": {"replicas": 1}});
        let mut labels_only = json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"replicas": 1}});
        prepare_for_update(&mut labels_only, &old, true);
        assert_eq!(labels_only["metadata"]["generation"], 3);
        assert_eq!(labels_only["metadata"]["uid"], "u");
        let mut scaled = json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}});
        prepare_for_update(&mut scaled, &old, true);
        assert_eq!(scaled["metadata"]["generation"], 4);
        let mut status_only = json!({"metadata": {"name": "a"}, "spec": {"replicas": 1}, "status": {"x": 1}});
        prepare_for_update(&mut status_only, &old, true);
        assert_eq!(status_only["metadata"]["generation"], 3);
        let configmap = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
        let mut changed = json!({"metadata": {"name": "c", "generation": 7}, "data": {"a": "2"}});
        prepare_for_update(&mut changed, &configmap, false);
        assert!(changed["metadata"].get("generation").is_none(), "no generation on kinds without one");
    }

    #[test]
    fn create_fills_generate_name_and_server_fields() {
        let mut object = json!({"metadata": {"generateName": "web-", "resourceVersion": "9"}});
        prepare_for_create(&mut object, Some("default"), true);
        let name = object["metadata"]["name"].as_str().expect("name");
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(object["metadata"]["namespace"], "default");
        assert!(object["metadata"].get("resourceVersion").is_none());
        assert_eq!(object["metadata"]["generation"], 1);
        let mut config_map = json!({"metadata": {"name": "c"}});
        prepare_for_create(&mut config_map, Some("default"), false);
        assert!(config_map["metadata"].get("generation").is_none());
    }

    #[test]
    fn stored_objects_carry_no_resource_version() {
        let object = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let stored = encode_for_store(&object);
        let back = decode_from_store(&stored, 12).expect("decode");
        assert_eq!(back["metadata"]["resourceVersion"], "12");
        assert!(!String::from_utf8_lossy(&stored).contains("resourceVersion"));
    }
}
