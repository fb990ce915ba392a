//! A node's Lease in `kube-node-lease`: what the node lifecycle controller reads as the node's
//! heartbeat. holderIdentity is the node name, leaseDurationSeconds 40, renewTime refreshed
//! every quarter of that (10 s), an ownerReference to the Node so the Lease goes with it.
//!
//! As the kubelet's lease controller: the first renewal GETs the Lease (creating it if absent);
//! later ones PUT the object with the resourceVersion of the last write, so a concurrent writer
//! is noticed (409) and the next attempt starts again from a GET.

use bytes::Bytes;
use http::Method;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiError, Client};
use crate::status::micro_time;

pub const NAMESPACE: &str = "kube-node-lease";

#[derive(Deserialize)]
struct Written {
    metadata: WrittenMeta,
}

#[derive(Deserialize)]
struct WrittenMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
}

/// One node's lease and what the agent last knew of it.
pub struct NodeLease {
    node: String,
    node_uid: String,
    duration_seconds: u32,
    /// The resourceVersion of our last write; None: read it first.
    resource_version: Option<String>,
}

impl NodeLease {
    pub fn new(node: &str, node_uid: &str, duration_seconds: u32) -> NodeLease {
        NodeLease { node: node.to_string(), node_uid: node_uid.to_string(), duration_seconds, resource_version: None }
    }

    fn path(&self) -> String {
        format!("/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{}", self.node)
    }

    fn body(&self, now: Timestamp) -> Result<Bytes, ApiError> {
        let mut metadata = json!({
            "name": self.node,
            "namespace": NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self.node_uid}],
        });
        if let Some(version) = &self.resource_version {
            metadata["resourceVersion"] = json!(version);
        }
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": self.duration_seconds,
                "renewTime": micro_time(now),
            },
        });
        serde_json::to_vec(&lease).map(Bytes::from).map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// One renewal (creating the Lease if it does not exist).
    pub async fn renew(&mut self, client: &Client) -> Result<(), ApiError> {
        if self.resource_version.is_none() {
            let response = client.get(&self.path()).await?;
            if response.status.as_u16() == 404 {
                let path = format!("/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases");
                let created = client
                    .request(Method::POST, &path, Some("application/json"), self.body(Timestamp::now())?)
                    .await?
                    .json::<Written>()?;
                self.resource_version = Some(created.metadata.resource_version);
                return Ok(());
            }
            self.resource_version = Some(response.json::<Written>()?.metadata.resource_version);
        }
        let response =
            client.request(Method::PUT, &self.path(), Some("application/json"), self.body(Timestamp::now())?).await?;
        if matches!(response.status.as_u16(), 404 | 409) {
            self.resource_version = None;
        }
        self.resource_version = Some(response.json::<Written>()?.metadata.resource_version);
        Ok(())
    }
}
