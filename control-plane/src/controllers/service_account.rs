//! The service account controller's decision: every active namespace has a `default`
//! ServiceAccount (pods that name none run as it).
//!
//! Inputs the runtime keeps: the Namespace and whether the ServiceAccount `default` exists in
//! it (the service account informer, by namespace/name). Synced on namespace add/update and on
//! the deletion of a `default` ServiceAccount.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::action::{Action, Plan, SERVICE_ACCOUNTS};
use super::endpointslices::to_json;

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Creates `default` in `namespace` unless it exists or the namespace is terminating (creates
/// there are refused anyway).
pub fn sync(namespace: &Namespace, existing: Option<&ServiceAccount>) -> Plan {
    let mut plan = Plan::default();
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if existing.is_some() || terminating {
        return plan;
    }
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            namespace: namespace.metadata.name.clone(),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    plan.push(Action::Create {
        resource: SERVICE_ACCOUNTS,
        namespace: namespace.metadata.name.clone(),
        object: to_json(&account),
    });
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn namespace(phase: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta { name: Some("team".into()), ..ObjectMeta::default() },
            spec: None,
            status: Some(NamespaceStatus { phase: Some(phase.into()), conditions: None }),
        }
    }

    #[test]
    fn a_missing_default_is_created_once() {
        let plan = sync(&namespace("Active"), None);
        let [Action::Create { resource, namespace: in_namespace, object }] = &plan.actions[..] else {
            panic!("{plan:?}")
        };
        assert_eq!((*resource, in_namespace.as_deref()), (SERVICE_ACCOUNTS, Some("team")));
        assert_eq!(object["metadata"]["name"], "default");
        assert_eq!(object["kind"], "ServiceAccount");
        let existing: ServiceAccount = serde_json::from_value(object.clone()).unwrap();
        assert!(sync(&namespace("Active"), Some(&existing)).is_empty());
    }

    #[test]
    fn terminating_namespaces_get_none() {
        assert!(sync(&namespace("Terminating"), None).is_empty());
        let mut deleting = namespace("Active");
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(sync(&deleting, None).is_empty());
    }
}
