//! Resource quantities and what a pod requests.
//!
//! Kubernetes quantities are decimal or binary numbers with a suffix ("100m", "1Gi", "1e3",
//! "500Mi"). The scheduler compares integers: cpu in milli-cores, everything else in whole units
//! (bytes, pods, devices). Both are rounded up, as `Quantity.MilliValue()`/`Value()` do, so a
//! fractional request never rounds into a fit it does not have.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is not a number with an optional suffix")]
    Malformed(String),
    #[error("quantity {0:?} has an unknown suffix")]
    UnknownSuffix(String),
}

/// `cpu` request a container without one counts as for scoring (100m, `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// `memory` request a container without one counts as for scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Most digits kept from a quantity's number: more cannot change an i64 result.
const DIGITS_MAX: usize = 30;

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2` (negative when `negative`).
struct Parsed {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

fn parse(text: &str) -> Result<Parsed, QuantityError> {
    let malformed = || QuantityError::Malformed(text.to_string());
    let s = text.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(malformed());
    }
    let mut mantissa: u128 = 0;
    let mut exp10: i32 = 0;
    let mut kept = 0usize;
    for (index, c) in whole.bytes().chain(fraction.bytes()).enumerate() {
        let in_fraction = index >= whole.len();
        if kept >= DIGITS_MAX {
            // Further digits only matter for rounding up: keep one sticky unit.
            if !in_fraction {
                exp10 += 1;
            }
            if c != b'0' {
                mantissa |= 1;
            }
            continue;
        }
        mantissa = mantissa * 10 + u128::from(c - b'0');
        if mantissa > 0 {
            kept += 1;
        }
        if in_fraction {
            exp10 -= 1;
        }
    }
    let (suffix_exp10, exp2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other if other.starts_with(['e', 'E']) => {
            let exponent: i32 = other[1..].parse().map_err(|_| QuantityError::UnknownSuffix(text.to_string()))?;
            if !(-100..=100).contains(&exponent) {
                return Err(malformed());
            }
            (exponent, 0)
        }
        _ => return Err(QuantityError::UnknownSuffix(text.to_string())),
    };
    Ok(Parsed { negative, mantissa, exp10: exp10 + suffix_exp10, exp2 })
}

/// `value × 10^scale_exp10`, rounded up (towards +∞), saturated to the i64 range.
fn scaled(text: &str, scale_exp10: i32) -> Result<i64, QuantityError> {
    let p = parse(text)?;
    let exp10 = p.exp10 + scale_exp10;
    let mut value: u128 = p.mantissa;
    let mut inexact = false;
    if exp10 >= 0 {
        for _ in 0..exp10 {
            value = value.saturating_mul(10);
        }
    } else {
        for _ in 0..(-exp10) {
            if value == 0 {
                break;
            }
            inexact |= value % 10 != 0;
            value /= 10;
        }
    }
    value = value.saturating_mul(1u128 << p.exp2.min(100));
    // Binary multipliers after decimal truncation would lose the remainder: redo exactly when
    // both apply (e.g. "1.5Gi").
    if p.exp2 > 0 && exp10 < 0 {
        let divisor = 10u128.checked_pow((-exp10) as u32);
        if let Some(divisor) = divisor {
            let numerator = p.mantissa.saturating_mul(1u128 << p.exp2);
            value = numerator / divisor;
            inexact = numerator % divisor != 0;
        }
    }
    let magnitude = i64::try_from(value).unwrap_or(i64::MAX);
    Ok(if p.negative {
        // Rounding up a negative value moves it towards zero: truncation already did.
        -magnitude
    } else if inexact {
        magnitude.saturating_add(1)
    } else {
        magnitude
    })
}

/// Milli-units of a quantity string, rounded up: "100m" → 100, "2" → 2000, "1e3" → 1,000,000.
pub fn parse_milli(text: &str) -> Result<i64, QuantityError> {
    scaled(text, 3)
}

/// Whole units of a quantity string, rounded up: "1Gi" → 1,073,741,824, "500Mi", "1.5" → 2.
pub fn parse_value(text: &str) -> Result<i64, QuantityError> {
    scaled(text, 0)
}

/// Amounts of the resources the scheduler accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Pod slots (`pods`); only meaningful for a node's allocatable.
    pub pods: i64,
    /// Every other resource (extended resources, hugepages), in whole units, sorted by name.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a `ResourceList`. An unparsable quantity counts as 0 (the API server validates
    /// quantities; the scheduler must not fail on one it somehow got).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut out = Resources::default();
        for (name, quantity) in list {
            out.set(name, &quantity.0);
        }
        out
    }

    fn set(&mut self, name: &str, text: &str) {
        match name {
            "cpu" => self.milli_cpu = parse_milli(text).unwrap_or(0),
            "memory" => self.memory = parse_value(text).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = parse_value(text).unwrap_or(0),
            "pods" => self.pods = parse_value(text).unwrap_or(0),
            other => self.set_scalar(other, parse_value(text).unwrap_or(0)),
        }
    }

    /// The amount of a scalar resource (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1,
            Err(_) => 0,
        }
    }

    fn set_scalar(&mut self, name: &str, value: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = value,
            Err(i) => self.scalar.insert(i, (name.to_string(), value)),
        }
    }

    /// Adds `other` (saturating), or subtracts it when `sign` is -1.
    pub fn add(&mut self, other: &Resources, sign: i64) {
        self.milli_cpu = self.milli_cpu.saturating_add(sign * other.milli_cpu);
        self.memory = self.memory.saturating_add(sign * other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(sign * other.ephemeral_storage);
        self.pods = self.pods.saturating_add(sign * other.pods);
        for (name, value) in &other.scalar {
            let current = self.scalar(name);
            self.set_scalar(name, current.saturating_add(sign * value));
        }
    }

    /// Per resource, the larger of the two.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (name, value) in &other.scalar {
            let current = self.scalar(name);
            self.set_scalar(name, current.max(*value));
        }
    }

    /// True when nothing is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// What one container requests. A resource with a limit but no request counts its limit, as the
/// API server's defaulting would have set it. With `non_zero`, missing cpu/memory requests count
/// the scoring defaults.
fn container_requests(container: &Container, non_zero: bool) -> Resources {
    let mut out = Resources::default();
    let resources = container.resources.as_ref();
    if let Some(limits) = resources.and_then(|r| r.limits.as_ref()) {
        for (name, quantity) in limits {
            out.set(name, &quantity.0);
        }
    }
    let requests = resources.and_then(|r| r.requests.as_ref());
    if let Some(requests) = requests {
        for (name, quantity) in requests {
            out.set(name, &quantity.0);
        }
    }
    if non_zero {
        let has = |name: &str| {
            requests.is_some_and(|r| r.contains_key(name))
                || resources.and_then(|r| r.limits.as_ref()).is_some_and(|l| l.contains_key(name))
        };
        if !has("cpu") {
            out.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            out.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    out
}

/// What a pod needs on a node: the regular containers plus the sidecars (init containers with
/// `restartPolicy: Always`, which keep running), or the peak of an init container (its own
/// request plus the sidecars started before it) if higher; then `spec.overhead`.
pub fn pod_requests(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&container_requests(container, non_zero), 1);
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let own = container_requests(container, non_zero);
        let peak = if container.restart_policy.as_deref() == Some("Always") {
            total.add(&own, 1);
            sidecars.add(&own, 1);
            sidecars.clone()
        } else {
            let mut peak = own;
            peak.add(&sidecars, 1);
            peak
        };
        init_peak.max_with(&peak);
    }
    total.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead), 1);
    }
    total.pods = 0;
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    #[test]
    fn scheduler_quantities_parse_to_milli_units_and_bytes() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("2"), Ok(2000));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli("1e3"), Ok(1_000_000));
        assert_eq!(parse_milli("1.5k"), Ok(1_500_000));
        assert_eq!(parse_milli("250u"), Ok(1), "rounded up");
        assert_eq!(parse_value("1Gi"), Ok(1 << 30));
        assert_eq!(parse_value("500Mi"), Ok(500 << 20));
        assert_eq!(parse_value("32Gi"), Ok(32 << 30));
        assert_eq!(parse_value("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_value("1E"), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_value("2k"), Ok(2000));
        assert_eq!(parse_value("1.5"), Ok(2), "rounded up");
        assert_eq!(parse_value("100m"), Ok(1), "rounded up");
        assert_eq!(parse_value("110"), Ok(110));
        assert_eq!(parse_value("12e-1"), Ok(2));
        assert_eq!(parse_value("-5"), Ok(-5));
        assert_eq!(parse_value("0"), Ok(0));
        assert_eq!(parse_value("8Ei"), Ok(i64::MAX), "saturates");
        assert!(matches!(parse_value("abc"), Err(QuantityError::Malformed(_))));
        assert!(matches!(parse_value("1Zi"), Err(QuantityError::UnknownSuffix(_))));
        assert!(matches!(parse_value("1.2.3"), Err(QuantityError::Malformed(_))));
        assert!(matches!(parse_value(""), Err(QuantityError::Malformed(_))));
    }

    fn container(cpu: &str, memory: &str, restart_always: bool) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.to_string()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_string(), Quantity(memory.to_string()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
            restart_policy: restart_always.then(|| "Always".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn scheduler_pod_requests_count_sidecars_init_peaks_and_overhead() {
        let spec = PodSpec {
            containers: vec![container("500m", "1Gi", false), container("250m", "", false)],
            init_containers: Some(vec![
                container("2", "", false),     // peak 2000m alone
                container("100m", "", true),   // sidecar: runs alongside
                container("1900m", "", false), // peak 1900 + 100 sidecar = 2000m
                container("", "3Gi", false),   // peak memory 3Gi
            ]),
            overhead: Some([("cpu".to_string(), Quantity("10m".into()))].into()),
            ..Default::default()
        };
        let r = pod_requests(&spec, false);
        // containers 750 + sidecar 100 = 850 < init peak 2000; + overhead 10.
        assert_eq!(r.milli_cpu, 2010);
        assert_eq!(r.memory, 3 << 30);
        let nz = pod_requests(&PodSpec { containers: vec![container("", "", false)], ..Default::default() }, true);
        assert_eq!((nz.milli_cpu, nz.memory), (DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST));
        let zero = pod_requests(&PodSpec { containers: vec![container("", "", false)], ..Default::default() }, false);
        assert!(zero.is_zero());
    }
}
