//! Leader election of the scheduler and the controller manager through `coordination.k8s.io/v1`
//! Leases in kube-system (`kube-scheduler`, `kube-controller-manager`), with fencing.
//!
//! Every master runs one [`Elector`] per component. A round reads the Lease (a linearizable
//! store read) and decides ([`record::decide`]): create it, take it over once its holder has
//! been silent for the lease duration (timed by this process's clock from when it first saw
//! the record unchanged, as client-go does), renew it, or follow. Leading means holding a
//! [`Fence`]: acquiring the Lease writes the component's fence key in the same store txn, and
//! that txn's revision is the fence every write of the component carries. A renewal requires
//! the fence key unchanged too, so a holder that lost the Lease can neither renew nor write.
//!
//! # Invariants
//! - The fence key changes exactly when the Lease's holder changes (both in one txn), so two
//!   holders can never both have a write accepted after the second one's first write.
//! - Leadership is published as `Some(fence)` only after the acquiring txn succeeded, and
//!   withdrawn (None) as soon as a renewal fails past the renew deadline, a round sees another
//!   holder, or the elector stops; work under a withdrawn fence is stopped by its owner, and any
//!   write still in flight is refused by the store.
//! - On a clean stop the holder releases the Lease (empty holder), so a rolling restart hands
//!   leadership over at the next candidate's round instead of after the lease duration.

pub mod record;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::apiserver::storage::{Component, Fence};
use crate::apiserver::{Api, object, resources};
use crate::kv::{Compare, Range, Txn, TxnOp};
use record::{Decision, Observed};

/// The namespace of the control plane's Leases.
pub const NAMESPACE: &str = "kube-system";

/// Timing, as kube-scheduler's `--leader-elect-*` flags. Keel's defaults are far shorter than
/// Kubernetes' 15 s / 10 s / 2 s because fencing, not the lease margin, keeps a deposed holder
/// from writing: a kill -9 of the holder is followed by a takeover within about
/// `lease_duration` + `retry_period`.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct ElectionConfig {
    /// How long a holder's silence must last before another master takes its Lease.
    #[arg(long = "leader-elect-lease-duration", value_parser = parse_duration, default_value = "1500ms")]
    pub lease_duration: Duration,
    /// A holder that cannot renew for this long stops leading (shorter than the lease).
    #[arg(long = "leader-elect-renew-deadline", value_parser = parse_duration, default_value = "1s")]
    pub renew_deadline: Duration,
    /// How often candidates try and holders renew.
    #[arg(long = "leader-elect-retry-period", value_parser = parse_duration, default_value = "250ms")]
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    fn default() -> ElectionConfig {
        ElectionConfig {
            lease_duration: Duration::from_millis(1500),
            renew_deadline: Duration::from_secs(1),
            retry_period: Duration::from_millis(250),
        }
    }
}

/// "1500ms", "2s", "1m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, "s"), |at| text.split_at(at));
    let value: u64 = number.parse().map_err(|_| format!("not a duration: {text:?} (e.g. 1500ms, 2s)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(value.saturating_mul(3600))),
        _ => Err(format!("not a duration: {text:?} (units: ms, s, m, h)")),
    }
}

/// `<master name>_<random suffix>`: new per process, as client-go's `<hostname>_<uuid>`.
pub fn identity(master: &str) -> String {
    format!("{master}_{}", object::new_uid())
}

pub struct Elector {
    pub api: Arc<Api>,
    pub component: Component,
    pub identity: String,
    pub config: ElectionConfig,
}

/// Where this elector stands.
struct Standing {
    observed: Option<Observed>,
    /// The current term while leading, and when it was last renewed.
    leading: Option<(Fence, Instant)>,
}

impl Elector {
    /// Runs rounds until `stop` turns true, publishing leadership on `leadership`.
    pub async fn run(self, leadership: watch::Sender<Option<Fence>>, mut stop: watch::Receiver<bool>) {
        let mut standing = Standing { observed: None, leading: None };
        let mut ticker = tokio::time::interval(self.config.retry_period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|stopping| *stopping) => break,
            }
            let round = tokio::time::timeout(self.config.renew_deadline, self.round(&mut standing)).await;
            if let Ok(Err(error)) | Err(error) = round.map_err(|_| "the round timed out".to_string()) {
                tracing::debug!(component = self.component.lease_name(), %error, "election round failed");
            }
            if let Some((_, renewed)) = standing.leading {
                if renewed.elapsed() > self.config.renew_deadline {
                    tracing::warn!(component = self.component.lease_name(), identity = %self.identity, "leaderelection lost: could not renew in time");
                    standing.leading = None;
                }
            }
            let now = standing.leading.map(|(fence, _)| fence);
            if *leadership.borrow() != now {
                if let Some(fence) = now {
                    tracing::info!(component = self.component.lease_name(), identity = %self.identity, fence = fence.revision, "became leader");
                } else {
                    tracing::info!(component = self.component.lease_name(), identity = %self.identity, "stopped leading");
                }
                leadership.send_replace(now);
            }
        }
        leadership.send_replace(None);
        if let Some((fence, _)) = standing.leading {
            self.release(fence).await;
        }
    }

    fn lease_key(&self) -> Vec<u8> {
        leases().key(Some(NAMESPACE), self.component.lease_name()).into_bytes()
    }

    async fn round(&self, standing: &mut Standing) -> Result<(), String> {
        let key = self.lease_key();
        let read = self.api.storage.kv.range(Range::key(&key)).await.map_err(|e| e.to_string())?;
        let (lease, revision) = match read.kvs.first() {
            Some(kv) => (object::decode_from_store(&kv.value, kv.mod_revision), kv.mod_revision),
            None => (None, 0),
        };
        let now = Instant::now();
        let changed = standing.observed.as_ref().is_none_or(|o| o.revision != revision);
        if changed {
            standing.observed = Some(Observed { lease, revision, seen_at: now.into_std() });
        }
        let Some(observed) = standing.observed.clone() else { return Ok(()) };
        let decision = record::decide(&observed, &self.identity, self.config.lease_duration, now.into_std());
        match decision {
            Decision::Follow { .. } => {
                standing.leading = None;
                Ok(())
            }
            Decision::Renew => {
                let Some((fence, _)) = standing.leading else {
                    // Our identity, but not our term (cannot happen with a per-process
                    // identity): take it over properly.
                    return self.acquire(standing, &observed).await;
                };
                let lease = self.lease_object(observed.lease.as_ref());
                let fence_key = self.component.key();
                let txn = Txn {
                    compare: vec![
                        Compare::mod_revision(&key, observed.revision),
                        Compare::mod_revision(fence_key.as_bytes(), fence.revision),
                    ],
                    success: vec![TxnOp::Put { key: key.clone(), value: object::encode_for_store(&lease), lease: 0 }],
                    failure: vec![],
                };
                let outcome = self.api.storage.kv.txn(txn).await.map_err(|e| e.to_string())?;
                if outcome.succeeded {
                    standing.leading = Some((fence, Instant::now()));
                    Ok(())
                } else {
                    standing.leading = None;
                    Err("the Lease or the fence changed under us".into())
                }
            }
            Decision::Create | Decision::TakeOver => self.acquire(standing, &observed).await,
        }
    }

    /// Creates or takes over the Lease and writes the fence key, in one txn.
    async fn acquire(&self, standing: &mut Standing, observed: &Observed) -> Result<(), String> {
        let key = self.lease_key();
        let lease = self.lease_object(observed.lease.as_ref());
        let fence_key = self.component.key();
        let txn = Txn {
            compare: vec![Compare::mod_revision(&key, observed.revision)],
            success: vec![
                TxnOp::Put { key: key.clone(), value: object::encode_for_store(&lease), lease: 0 },
                TxnOp::Put { key: fence_key.into_bytes(), value: self.identity.clone().into_bytes(), lease: 0 },
            ],
            failure: vec![],
        };
        let outcome = self.api.storage.kv.txn(txn).await.map_err(|e| e.to_string())?;
        if !outcome.succeeded {
            return Err("another candidate acquired the Lease first".into());
        }
        let fence = Fence { component: self.component, revision: outcome.revision };
        standing.leading = Some((fence, Instant::now()));
        Ok(())
    }

    /// The Lease as this holder writes it.
    fn lease_object(&self, previous: Option<&Value>) -> Value {
        let now = record::micro_time_now();
        let spec = record::led_spec(previous, &self.identity, self.config.lease_duration, &now);
        match previous {
            Some(previous) => {
                let mut lease = previous.clone();
                lease["spec"] = spec;
                lease
            }
            None => {
                let mut lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": { "name": self.component.lease_name() },
                    "spec": spec,
                });
                object::prepare_for_create(&mut lease, Some(NAMESPACE), false);
                lease
            }
        }
    }

    /// A clean stop: empty holder and a 1 s lease, so the next candidate takes over at once
    /// (kube-scheduler's ReleaseOnCancel). Only while our term is still current.
    async fn release(&self, fence: Fence) {
        let key = self.lease_key();
        let Ok(read) = self.api.storage.kv.range(Range::key(&key)).await else { return };
        let Some(kv) = read.kvs.first() else { return };
        let Some(mut lease) = object::decode_from_store(&kv.value, kv.mod_revision) else { return };
        if record::holder(&lease) != Some(self.identity.as_str()) {
            return;
        }
        lease["spec"]["holderIdentity"] = json!("");
        lease["spec"]["leaseDurationSeconds"] = json!(1);
        let fence_key = self.component.key();
        let txn = Txn {
            compare: vec![
                Compare::mod_revision(&key, kv.mod_revision),
                Compare::mod_revision(fence_key.as_bytes(), fence.revision),
            ],
            success: vec![TxnOp::Put { key, value: object::encode_for_store(&lease), lease: 0 }],
            failure: vec![],
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), self.api.storage.kv.txn(txn)).await;
    }
}

fn leases() -> &'static resources::Resource {
    resources::RESOURCES.iter().find(|r| r.plural == "leases").unwrap_or(&resources::RESOURCES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_the_flags_take_them() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").is_err());
    }
}
