//! The Lease record and the pure decision of one election round.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What a candidate knows of the Lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The Lease as stored, with its mod revision (0: absent).
    pub lease: Option<Value>,
    pub revision: i64,
    /// When this process first saw the record as it is now (its own clock: renewTime is never
    /// compared across machines, as client-go does).
    pub seen_at: Instant,
}

/// What a round should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create the Lease and lead.
    Create,
    /// Take the Lease over (held by no one, or its holder went silent).
    TakeOver,
    /// Renew our own Lease.
    Renew,
    /// Someone else holds it and is alive.
    Follow { holder: String },
}

pub fn holder(lease: &Value) -> Option<&str> {
    lease.pointer("/spec/holderIdentity").and_then(Value::as_str).filter(|h| !h.is_empty())
}

/// The round's decision for `identity`, at `now`.
pub fn decide(observed: &Observed, identity: &str, lease_duration: Duration, now: Instant) -> Decision {
    let Some(lease) = &observed.lease else { return Decision::Create };
    match holder(lease) {
        Some(current) if current == identity => Decision::Renew,
        Some(current) => {
            let duration = lease
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_f64)
                .map_or(lease_duration, |seconds| Duration::from_secs_f64(seconds.max(0.0)))
                .max(lease_duration);
            if now.duration_since(observed.seen_at) < duration {
                Decision::Follow { holder: current.to_string() }
            } else {
                Decision::TakeOver
            }
        }
        None => Decision::TakeOver,
    }
}

/// The Lease's spec after a round that leads: acquireTime and leaseTransitions move only when
/// the holder changes.
pub fn led_spec(previous: Option<&Value>, identity: &str, lease_duration: Duration, now: &str) -> Value {
    let previous_spec = previous.and_then(|lease| lease.get("spec"));
    let same_holder = previous.and_then(holder) == Some(identity);
    let transitions = previous_spec.and_then(|s| s.get("leaseTransitions")).and_then(Value::as_i64).unwrap_or(0);
    let acquire = match previous_spec.and_then(|s| s.get("acquireTime")) {
        Some(time) if same_holder => time.clone(),
        _ => json!(now),
    };
    let transitions = if same_holder || previous.is_none() { transitions } else { transitions + 1 };
    json!({
        "holderIdentity": identity,
        // Whole seconds on the wire (the field is an integer); at least 1.
        "leaseDurationSeconds": lease_duration.as_secs().max(1),
        "acquireTime": acquire,
        "renewTime": now,
        "leaseTransitions": transitions,
    })
}

/// Kubernetes' MicroTime: RFC 3339 with microseconds.
pub fn micro_time_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str) -> Value {
        json!({ "spec": { "holderIdentity": holder, "leaseDurationSeconds": 1, "leaseTransitions": 2,
                          "acquireTime": "2026-01-01T00:00:00.000000Z" } })
    }

    #[test]
    fn a_live_holder_is_followed_and_a_silent_one_taken_over() {
        let start = Instant::now();
        let duration = Duration::from_millis(1500);
        let observed = Observed { lease: Some(lease("m1_a")), revision: 7, seen_at: start };
        assert_eq!(
            decide(&observed, "m2_b", duration, start + Duration::from_millis(100)),
            Decision::Follow { holder: "m1_a".into() }
        );
        assert_eq!(decide(&observed, "m2_b", duration, start + Duration::from_millis(1600)), Decision::TakeOver);
        assert_eq!(decide(&observed, "m1_a", duration, start), Decision::Renew);
        let absent = Observed { lease: None, revision: 0, seen_at: start };
        assert_eq!(decide(&absent, "m2_b", duration, start), Decision::Create);
        let released = Observed { lease: Some(lease("")), revision: 9, seen_at: start };
        assert_eq!(decide(&released, "m2_b", duration, start), Decision::TakeOver);
    }

    #[test]
    fn transitions_count_holder_changes_only() {
        let now = "2026-12-03T00:00:00.000000Z";
        let taken = led_spec(Some(&lease("m1_a")), "m2_b", Duration::from_secs(2), now);
        assert_eq!(taken["leaseTransitions"], 3);
        assert_eq!(taken["acquireTime"], now);
        let renewed = led_spec(Some(&lease("m1_a")), "m1_a", Duration::from_secs(2), now);
        assert_eq!(renewed["leaseTransitions"], 2);
        assert_eq!(renewed["acquireTime"], "2026-01-01T00:00:00.000000Z");
        let created = led_spec(None, "m1_a", Duration::from_millis(1500), now);
        assert_eq!(
            (created["leaseTransitions"].clone(), created["leaseDurationSeconds"].clone()),
            (json!(0), json!(1))
        );
    }
}
