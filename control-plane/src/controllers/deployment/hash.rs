//! The `pod-template-hash`: names a Deployment's ReplicaSet for one pod template, and keeps the
//! pods of different templates apart (it is in the ReplicaSet's selector and pod labels).
//!
//! **What is hashed:** the JSON serialization (serde_json, k8s-openapi 0.27 `PodTemplateSpec`)
//! of the Deployment's `spec.template` as stored: fields in the struct's declaration order,
//! maps (labels, annotations, resources…) sorted by key, absent optionals omitted. So the value
//! is the same in every process and on every run for the same stored template; it changes if a
//! k8s-openapi upgrade changes the serialization (harmless: at worst one extra rollout of an
//! unchanged template, exactly what a Kubernetes upgrade that changes its Go dump does). Then,
//! when `status.collisionCount` is set, its value as 4 little-endian bytes followed by 4 zero
//! bytes (as Kubernetes writes it into an 8-byte buffer). The function is FNV-1a, 32 bits; its
//! decimal text is mapped byte by byte into [`NAME_ALPHABET`] (Kubernetes' `SafeEncodeString`),
//! so it looks exactly like Kubernetes' values (e.g. `5869d7778c`).

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::controllers::replicaset::{NAME_ALPHABET, to_json};

/// The label (and selector) key Deployments add to their ReplicaSets and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

/// The pod-template-hash of `template` with `collision_count` (see the module docs).
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let serialized = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = FNV32_OFFSET;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(FNV32_PRIME);
        }
    };
    feed(&serialized);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        feed(&bytes);
    }
    hash.to_string().bytes().map(|digit| char::from(NAME_ALPHABET[usize::from(digit) % NAME_ALPHABET.len()])).collect()
}

/// Whether two templates are equal once the pod-template-hash label is dropped from both
/// (Kubernetes' `EqualIgnoreHash`; an empty label map equals none, as Go's semantic equality
/// has it).
pub fn equal_ignore_hash(left: &PodTemplateSpec, right: &PodTemplateSpec) -> bool {
    without_hash(left) == without_hash(right)
}

fn without_hash(template: &PodTemplateSpec) -> serde_json::Value {
    let mut value = to_json(template);
    if let Some(labels) = value.pointer_mut("/metadata/labels").and_then(|labels| labels.as_object_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    for key in ["labels", "annotations"] {
        let empty =
            value.pointer(&format!("/metadata/{key}")).is_some_and(|m| m.as_object().is_some_and(|m| m.is_empty()));
        if empty {
            if let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                metadata.remove(key);
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::replicaset::tests::template;

    #[test]
    fn hash_is_stable_and_in_the_alphabet() {
        let nginx = template("web", "nginx:1.25");
        let first = pod_template_hash(&nginx, None);
        assert_eq!(first, pod_template_hash(&nginx.clone(), None));
        assert!(!first.is_empty() && first.len() <= 10);
        assert!(first.bytes().all(|b| NAME_ALPHABET.contains(&b)), "{first}");
        // A fixed value: the hash must not change between builds or processes.
        assert_eq!(first, pod_template_hash(&template("web", "nginx:1.25"), None));
        assert_ne!(first, pod_template_hash(&template("web", "nginx:1.26"), None));
        assert_ne!(first, pod_template_hash(&nginx, Some(1)));
        assert_ne!(pod_template_hash(&nginx, Some(1)), pod_template_hash(&nginx, Some(2)));
    }

    #[test]
    fn fnv32a_and_encoding_match_the_reference_algorithm() {
        // FNV-1a 32 of "" is the offset basis 2166136261; digits map 0→4 … 9→f.
        let mut hash = FNV32_OFFSET;
        for byte in b"" {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(FNV32_PRIME);
        }
        let encoded: String =
            hash.to_string().bytes().map(|d| char::from(NAME_ALPHABET[usize::from(d) % 27])).collect();
        assert_eq!(encoded, "65bb57b6b5");
        let digits: String = b"0123456789".iter().map(|d| char::from(NAME_ALPHABET[usize::from(*d) % 27])).collect();
        assert_eq!(digits, "456789bcdf");
    }

    #[test]
    fn equality_ignores_only_the_hash_label() {
        let plain = template("web", "nginx");
        let mut hashed = plain.clone();
        hashed.metadata.as_mut().map(|m| m.labels.as_mut().map(|l| l.insert(POD_TEMPLATE_HASH.into(), "abc".into())));
        assert!(equal_ignore_hash(&plain, &hashed));
        assert!(!equal_ignore_hash(&plain, &template("web", "httpd")));
    }
}
