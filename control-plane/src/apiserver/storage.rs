//! Objects in the store: JSON under `/registry/<resource>/<namespace>/<name>`, with the store's
//! mod revision as resourceVersion. Every write is one txn guarded by the mod revision it was
//! based on, so concurrent writers never overwrite each other (optimistic concurrency).

use std::sync::Arc;

use serde_json::Value;

use super::object;
use super::resources::Resource;
use super::status::ApiError;
use crate::kv::{Compare, Kv, OpResult, Range, Txn, TxnOp, TxnResult, prefix_end};

/// Objects a single list page may hold at most, whatever `limit` asks.
pub const MAX_PAGE: i64 = 10_000;
/// Attempts of a read-modify-write (patch, scale, apply) before giving up with a conflict.
pub const UPDATE_ATTEMPTS: usize = 16;

/// Whether a request's writes reach the store. Under `dryRun=All` every write is checked as it
/// would be in its txn (the key absent for a create, still at the expected revision for an
/// update or delete) by reading, and nothing is written: the store's revision and contents stay
/// exactly as they were, as kube-apiserver's dry-run storage leaves etcd. A fenced write is a
/// commit whose txn also requires the writer's leadership to be current ([`Fence`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteMode {
    #[default]
    Commit,
    DryRun,
    Fenced(Fence),
}

impl WriteMode {
    pub fn dry_run(dry_run: bool) -> WriteMode {
        if dry_run { WriteMode::DryRun } else { WriteMode::Commit }
    }

    pub fn is_dry_run(self) -> bool {
        self == WriteMode::DryRun
    }

    /// Adds the fence's compare (and, on failure, a read of the fence key) to a write's txn.
    pub fn guard(self, txn: &mut Txn) {
        if let WriteMode::Fenced(fence) = self {
            let key = fence.component.key();
            txn.compare.push(Compare::mod_revision(key.as_bytes(), fence.revision));
            txn.failure.push(TxnOp::Get(Range::key(key.as_bytes())));
        }
    }

    /// After a failed guarded txn: the fence error when the fence is what failed.
    pub fn fence_failure(self, outcome: &TxnResult) -> Option<ApiError> {
        let WriteMode::Fenced(fence) = self else { return None };
        let now = match outcome.results.last() {
            Some(OpResult::Get(fence_read)) => fence_read.kvs.first().map_or(0, |kv| kv.mod_revision),
            _ => return None,
        };
        (now != fence.revision).then(|| fence.rejected(now))
    }
}

/// The leader-elected components whose writes are fenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    Scheduler,
    ControllerManager,
}

impl Component {
    /// The Lease the component is elected through (namespace kube-system).
    pub fn lease_name(self) -> &'static str {
        match self {
            Component::Scheduler => "kube-scheduler",
            Component::ControllerManager => "kube-controller-manager",
        }
    }

    /// The fence key: written in the same txn as every change of the Lease's holder, and only
    /// then, so its mod revision names one term of leadership.
    pub fn key(self) -> String {
        format!("{FENCE_PREFIX}{}", self.lease_name())
    }
}

/// Where the fence keys live (outside every resource's prefix, so no list or watch sees them).
pub const FENCE_PREFIX: &str = "/registry/keel.dev/fences/";

/// A leadership term: the fence key's mod revision when this holder acquired the Lease. A
/// write carrying it succeeds only while the key is still at that revision, that is, while no
/// other holder has taken the Lease since — on the embedded store and on real etcd alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub component: Component,
    pub revision: i64,
}

impl Fence {
    /// The error a write gets once its leadership is gone: 403, and never worth a retry by
    /// the same holder.
    pub fn rejected(self, now: i64) -> ApiError {
        ApiError::forbidden(format!(
            "{FENCED_MESSAGE}: {} lost its leadership (fence {} is at revision {now}, this holder's term began at {})",
            self.component.lease_name(),
            self.component.key(),
            self.revision
        ))
    }
}

/// The start of every fenced write's error message, which clients match on.
pub const FENCED_MESSAGE: &str = "write fenced";

/// One stored object with its resourceVersion (mod revision).
#[derive(Clone, Debug)]
pub struct Stored {
    pub object: Value,
    pub revision: i64,
}

/// A page of a list.
pub struct Page {
    pub items: Vec<Value>,
    /// The store revision the page was read at (the list's resourceVersion).
    pub revision: i64,
    /// The continue token for the next page, when there is one.
    pub continue_token: Option<String>,
    /// Objects left after this page, when known.
    pub remaining: Option<i64>,
}

#[derive(Clone)]
pub struct Storage {
    pub kv: Arc<dyn Kv>,
    /// Counts fenced writes by outcome.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Storage {
    pub fn new(kv: Arc<dyn Kv>, metrics: Arc<crate::metrics::Metrics>) -> Storage {
        Storage { kv, metrics }
    }

    /// Runs a write's txn under `mode`'s fence: the fence error when the fence is what
    /// failed, otherwise the outcome (which may have failed its own compares).
    async fn guarded_txn(&self, mut txn: Txn, mode: WriteMode) -> Result<TxnResult, ApiError> {
        mode.guard(&mut txn);
        let outcome = self.kv.txn(txn).await?;
        let WriteMode::Fenced(fence) = mode else { return Ok(outcome) };
        let component = fence.component.lease_name();
        if outcome.succeeded {
            self.metrics.fenced_write(component, Some(outcome.revision));
        } else if let Some(fenced) = mode.fence_failure(&outcome) {
            self.metrics.fenced_write(component, None);
            return Err(fenced);
        }
        Ok(outcome)
    }

    /// The object, or None when absent.
    pub async fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Stored>, ApiError> {
        let key = resource.key(namespace, name);
        let result = self.kv.range(Range::key(key.as_bytes())).await?;
        Ok(result.kvs.into_iter().next().and_then(|kv| decode(&kv.value, kv.mod_revision)))
    }

    /// The object, or 404.
    pub async fn get_existing(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Stored, ApiError> {
        self.get(resource, namespace, name)
            .await?
            .ok_or_else(|| ApiError::not_found(resource.group, resource.plural, name))
    }

    /// One page of objects under `namespace` (all for None). `revision` 0 reads the latest;
    /// a continue token pins the revision of the first page.
    pub async fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        limit: i64,
        continue_token: Option<&str>,
        revision: i64,
    ) -> Result<Page, ApiError> {
        let prefix = resource.prefix(namespace);
        let (start, revision) = match continue_token {
            Some(token) => decode_continue(token, &prefix)?,
            None => (prefix.clone().into_bytes(), revision),
        };
        let page_size = if limit <= 0 { MAX_PAGE } else { limit.min(MAX_PAGE) };
        let range = Range {
            key: start,
            range_end: Some(prefix_end(prefix.as_bytes())),
            limit: page_size,
            revision,
            ..Range::default()
        };
        let result = self.kv.range(range).await?;
        let read_revision = if revision > 0 { revision } else { result.revision };
        let continue_token = match result.kvs.last() {
            Some(last) if result.more => Some(encode_continue(read_revision, &last.key)),
            _ => None,
        };
        let remaining = result.more.then(|| result.count - result.kvs.len() as i64);
        let items = result.kvs.iter().filter_map(|kv| decode(&kv.value, kv.mod_revision)).map(|s| s.object).collect();
        Ok(Page { items, revision: read_revision, continue_token, remaining })
    }

    /// Creates the object; 409 AlreadyExists when the key is taken. A dry run answers the
    /// object as it would be stored, without a resourceVersion (none was assigned).
    pub async fn create(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
        mode: WriteMode,
    ) -> Result<Stored, ApiError> {
        let key = resource.key(namespace, name).into_bytes();
        if mode.is_dry_run() {
            if self.kv.range(Range::key(&key)).await?.kvs.is_empty() {
                return Ok(Stored { object: object.clone(), revision: 0 });
            }
            return Err(ApiError::already_exists(resource.group, resource.plural, name));
        }
        let txn = Txn {
            compare: vec![Compare::mod_revision(&key, 0)],
            success: vec![TxnOp::Put { key: key.clone(), value: object::encode_for_store(object), lease: 0 }],
            failure: vec![],
        };
        let outcome = self.guarded_txn(txn, mode).await?;
        if !outcome.succeeded {
            return Err(ApiError::already_exists(resource.group, resource.plural, name));
        }
        let mut created = object.clone();
        object::set_resource_version(&mut created, outcome.revision);
        Ok(Stored { object: created, revision: outcome.revision })
    }

    /// Replaces the object if it is still at `expected_revision`; 409 Conflict otherwise,
    /// 404 when it is gone. A dry run answers the new object at the revision it was based on.
    pub async fn update(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
        expected_revision: i64,
        mode: WriteMode,
    ) -> Result<Stored, ApiError> {
        let key = resource.key(namespace, name).into_bytes();
        if mode.is_dry_run() {
            self.check_unchanged(resource, name, &key, expected_revision).await?;
            let mut updated = object.clone();
            object::set_resource_version(&mut updated, expected_revision);
            return Ok(Stored { object: updated, revision: expected_revision });
        }
        let txn = Txn {
            compare: vec![Compare::mod_revision(&key, expected_revision)],
            success: vec![TxnOp::Put { key: key.clone(), value: object::encode_for_store(object), lease: 0 }],
            failure: vec![TxnOp::Get(Range::key(&key))],
        };
        let outcome = self.guarded_txn(txn, mode).await?;
        if outcome.succeeded {
            let mut updated = object.clone();
            object::set_resource_version(&mut updated, outcome.revision);
            return Ok(Stored { object: updated, revision: outcome.revision });
        }
        Err(match outcome.results.first() {
            Some(OpResult::Get(current)) if current.kvs.is_empty() => {
                ApiError::not_found(resource.group, resource.plural, name)
            }
            _ => ApiError::conflict(resource.group, resource.plural, name),
        })
    }

    /// Deletes the object if it is still at `expected_revision`; returns its last state.
    pub async fn delete(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        expected_revision: i64,
        mode: WriteMode,
    ) -> Result<Stored, ApiError> {
        let key = resource.key(namespace, name).into_bytes();
        if mode.is_dry_run() {
            return self.check_unchanged(resource, name, &key, expected_revision).await;
        }
        let txn = Txn {
            compare: vec![Compare::mod_revision(&key, expected_revision)],
            success: vec![TxnOp::Delete { key: key.clone(), range_end: None }],
            failure: vec![TxnOp::Get(Range::key(&key))],
        };
        let outcome = self.guarded_txn(txn, mode).await?;
        if outcome.succeeded {
            return match outcome.results.first() {
                Some(OpResult::Delete { prev, .. }) => prev
                    .first()
                    .and_then(|kv| decode(&kv.value, outcome.revision))
                    .ok_or_else(|| ApiError::not_found(resource.group, resource.plural, name)),
                _ => Err(ApiError::internal("delete answered without its result")),
            };
        }
        Err(match outcome.results.first() {
            Some(OpResult::Get(current)) if current.kvs.is_empty() => {
                ApiError::not_found(resource.group, resource.plural, name)
            }
            _ => ApiError::conflict(resource.group, resource.plural, name),
        })
    }

    /// What a dry-run update or delete checks: the object is there, still at `expected_revision`.
    async fn check_unchanged(
        &self,
        resource: &Resource,
        name: &str,
        key: &[u8],
        expected_revision: i64,
    ) -> Result<Stored, ApiError> {
        let result = self.kv.range(Range::key(key)).await?;
        let Some(current) = result.kvs.first() else {
            return Err(ApiError::not_found(resource.group, resource.plural, name));
        };
        if current.mod_revision != expected_revision {
            return Err(ApiError::conflict(resource.group, resource.plural, name));
        }
        decode(&current.value, current.mod_revision).ok_or_else(|| ApiError::internal("a stored object is not JSON"))
    }

    /// Read-modify-write: `change` gets the current object and returns the new one (or None
    /// to leave it unchanged); retried on a concurrent write. `change` must be deterministic
    /// over its input (it may run several times).
    pub async fn guaranteed_update<F>(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        mode: WriteMode,
        mut change: F,
    ) -> Result<Stored, ApiError>
    where
        F: FnMut(Stored) -> Result<Option<Value>, ApiError>,
    {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_existing(resource, namespace, name).await?;
            let revision = current.revision;
            let Some(updated) = change(current.clone())? else { return Ok(current) };
            if updated == current.object {
                return Ok(current);
            }
            match self.update(resource, namespace, name, &updated, revision, mode).await {
                Err(error) if error.reason == "Conflict" => continue,
                outcome => return outcome,
            }
        }
        Err(ApiError::conflict(resource.group, resource.plural, name))
    }
}

fn decode(value: &[u8], revision: i64) -> Option<Stored> {
    let object = object::decode_from_store(value, revision)?;
    Some(Stored { object, revision })
}

/// `<revision>:<hex of the next key>`: where the next page starts, at the first page's revision.
fn encode_continue(revision: i64, last_key: &[u8]) -> String {
    let mut next = last_key.to_vec();
    next.push(0);
    let hex: String = next.iter().map(|b| format!("{b:02x}")).collect();
    format!("{revision}:{hex}")
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Vec<u8>, i64), ApiError> {
    let invalid = || ApiError::bad_request("continue key is not valid: malformed token");
    let (revision, hex) = token.split_once(':').ok_or_else(invalid)?;
    let revision: i64 = revision.parse().map_err(|_| invalid())?;
    if hex.len() % 2 != 0 || hex.len() > 4096 {
        return Err(invalid());
    }
    let key = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    if !key.starts_with(prefix.as_bytes()) || revision <= 0 {
        return Err(invalid());
    }
    Ok((key, revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_stay_in_their_prefix() {
        let token = encode_continue(42, b"/registry/pods/default/a");
        let (key, revision) = decode_continue(&token, "/registry/pods/").expect("decode");
        assert_eq!(revision, 42);
        assert_eq!(key, b"/registry/pods/default/a\0".to_vec());
        assert!(decode_continue(&token, "/registry/secrets/").is_err(), "a token cannot read another resource");
        assert!(decode_continue("x", "/registry/pods/").is_err());
        assert!(decode_continue("5:zz", "/registry/pods/").is_err());
    }
}
