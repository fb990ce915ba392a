//! Validation of decoded, defaulted objects, with Kubernetes' field causes and messages.
//!
//! [`validate`] returns one [`FieldCause`] per problem, in the order Kubernetes 1.33 reports them
//! (`reason`, `message` without the field, and `field`), and [`invalid_message`] wraps them into the
//! `Status.message` of a 422 `Invalid` response, e.g.
//! `Deployment.apps "web" is invalid: spec.template.spec.containers[0].image: Required value`.
//!
//! # Contract
//! - The object has passed [`super::strict`] (or equivalent) decoding, so values have the right
//!   JSON types; a value of another type is treated as absent, never a panic.
//! - The object has been through [`super::defaults`]; like Kubernetes, validation reports a missing
//!   field that defaulting would have filled (`restartPolicy`, `imagePullPolicy`, ...).
//! - `old` is the stored object on update. Only the update rules listed per resource are applied;
//!   `metadata` immutability and allocation (cluster IPs, node ports) are the caller's.
//!
//! # Layout
//! Field causes and Go-style value formatting come first, then object metadata, the pod spec
//! (shared by pods and workload templates), and one section per resource. Quantities (`100m`,
//! `1Gi`) are parsed by [`Quantity`], which [`super::defaults`] also uses to canonicalize them.
//!
//! # Known differences from Kubernetes
//! - Bad values that are Go structs, maps or slices are printed in Go's `%#v` syntax
//!   (`map[string]string{"app":"web"}`, `v1.LabelSelector{...}`), the long-standing form; int-or-
//!   string values print as their text (`0`, `25%`).
//! - The diff Kubernetes appends to `pod updates may not change fields ...` is Go-specific; a short
//!   `- path: old` / `+ path: new` listing takes its place.
//! - Environment variable names use the relaxed rule Kubernetes 1.33 enables by default.
//! - Not checked: owner references, managed fields, affinity and topology spread, readiness and
//!   scheduling gate names, security contexts beyond user and group IDs, sysctls, pod OS,
//!   ephemeral-container updates, most volume source types' own fields, AppArmor and seccomp
//!   annotations, resize policies, resource claims, dual-stack IP family rules, service topology
//!   annotations, and `stringData` changes to an immutable Secret.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};

use super::names;

/// `reason` of a missing required value.
pub const REASON_REQUIRED: &str = "FieldValueRequired";
/// `reason` of a malformed value.
pub const REASON_INVALID: &str = "FieldValueInvalid";
/// `reason` of a value outside an enumeration.
pub const REASON_NOT_SUPPORTED: &str = "FieldValueNotSupported";
/// `reason` of a value that must be unique and is not.
pub const REASON_DUPLICATE: &str = "FieldValueDuplicate";
/// `reason` of a value over a size limit.
pub const REASON_TOO_LONG: &str = "FieldValueTooLong";
/// `reason` of a value that is valid but not allowed here.
pub const REASON_FORBIDDEN: &str = "FieldValueForbidden";
/// `reason` of a reference to something that does not exist (a volume mount's volume).
pub const REASON_NOT_FOUND: &str = "FieldValueNotFound";

/// Largest total size of a ConfigMap's or Secret's data (1 MiB).
pub const MAX_CONFIG_DATA_BYTES: usize = 1024 * 1024;
/// Largest total size of an object's annotation keys and values (256 KiB).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

const NODE_PORT_MIN: i64 = 30000;
const NODE_PORT_MAX: i64 = 32767;
const MAX_INT32: i64 = i32::MAX as i64;
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;
const NEGATIVE_MSG: &str = "must be greater than or equal to 0";
const IMMUTABLE_MSG: &str = "field is immutable";
const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
/// Kubernetes' text for a malformed quantity (a decoding error there, a field cause here).
pub const QUANTITY_FORMAT_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const SELECTOR_MISMATCH_MSG: &str = "`selector` does not match template `labels`";
const IMMUTABLE_WHEN_SET_MSG: &str = "field is immutable when `immutable` is set";
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const UPDATABLE_POD_SPEC_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// One problem with one field, as it appears in `Status.details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCause {
    /// Machine-readable kind of problem: one of the `REASON_*` constants.
    pub reason: &'static str,
    /// Human-readable problem without the field, e.g. `Invalid value: "Foo": a lowercase ...`.
    pub message: String,
    /// JSON path of the field, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
}

/// Validates `object` of `resource` (a plural such as `deployments`); `old` is the stored object
/// on update. An empty result means the object may be stored.
pub fn validate(resource: &str, object: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut c = Causes::default();
    match resource {
        "pods" => validate_pod(&mut c, object, old),
        "deployments" => validate_workload(&mut c, object, old, Workload::Deployment),
        "replicasets" => validate_workload(&mut c, object, old, Workload::ReplicaSet),
        "services" => validate_service(&mut c, object, old),
        "configmaps" => validate_config_map(&mut c, object, old),
        "secrets" => validate_secret(&mut c, object, old),
        "namespaces" => validate_namespace(&mut c, object),
        "nodes" => validate_node(&mut c, object, old),
        "endpoints" => validate_endpoints(&mut c, object),
        "endpointslices" => validate_endpoint_slice(&mut c, object),
        "events" => validate_event(&mut c, object),
        "leases" => validate_lease(&mut c, object),
        _ => validate_object_meta(&mut c, object, NameRule::Subdomain, true),
    }
    c.0
}

/// The `Status.message` of a 422 for `causes`, built like apimachinery's `NewInvalid`:
/// `<kind> "<name>" is invalid: <field>: <message>` for one cause and `[a, b]` for several
/// (identical texts are listed once). `kind` is the qualified kind, e.g. `Deployment.apps`; see
/// [`qualified_kind`].
pub fn invalid_message(kind: &str, name: &str, causes: &[FieldCause]) -> String {
    let mut seen = HashSet::new();
    let texts: Vec<String> = causes
        .iter()
        .map(|cause| format!("{}: {}", cause.field, cause.message))
        .filter(|text| seen.insert(text.clone()))
        .collect();
    let subject = format!("{kind} {} is invalid", go_quote(name));
    match texts.as_slice() {
        [] => subject,
        [only] => format!("{subject}: {only}"),
        many => format!("{subject}: [{}]", many.join(", ")),
    }
}

/// The qualified kind (`Kind.group`, or `Kind` for the core group) Kubernetes names `resource` by
/// in messages.
pub fn qualified_kind(resource: &str) -> Option<&'static str> {
    Some(match resource {
        "pods" => "Pod",
        "services" => "Service",
        "namespaces" => "Namespace",
        "nodes" => "Node",
        "endpoints" => "Endpoints",
        "configmaps" => "ConfigMap",
        "secrets" => "Secret",
        "events" => "Event",
        "serviceaccounts" => "ServiceAccount",
        "endpointslices" => "EndpointSlice.discovery.k8s.io",
        "deployments" => "Deployment.apps",
        "replicasets" => "ReplicaSet.apps",
        "leases" => "Lease.coordination.k8s.io",
        _ => return None,
    })
}

/// Quotes `s` the way Go's `%q` does: double quotes, `\"` and `\\`, escapes for control
/// characters, other characters as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// Causes, paths and values as Kubernetes prints them.
// ---------------------------------------------------------------------------------------------

/// A field path such as `spec.containers[0].ports[1].name`; map keys print as `data[key]`.
#[derive(Debug, Clone)]
struct Path(String);

impl Path {
    fn root(name: &str) -> Path {
        Path(name.to_string())
    }

    fn child(&self, name: &str) -> Path {
        if self.0.is_empty() { Path(name.to_string()) } else { Path(format!("{}.{name}", self.0)) }
    }

    fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }
}

/// A bad value as Kubernetes prints it after `Invalid value: `.
enum Bad<'a> {
    /// A string, printed with Go's `%q`.
    Str(&'a str),
    /// A number, printed plainly.
    Int(i64),
    /// Already formatted (Go syntax for structs, maps and slices; plain text for stringers).
    Text(String),
    /// Go's nil.
    Null,
}

impl Bad<'_> {
    fn render(&self) -> String {
        match self {
            Bad::Str(s) => go_quote(s),
            Bad::Int(n) => n.to_string(),
            Bad::Text(text) => text.clone(),
            Bad::Null => "null".to_string(),
        }
    }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() { head } else { format!("{head}: {detail}") }
}

/// The causes collected so far; each method mirrors one of apimachinery's `field` constructors.
#[derive(Default)]
struct Causes(Vec<FieldCause>);

impl Causes {
    fn push(&mut self, reason: &'static str, path: &Path, message: String) {
        self.0.push(FieldCause { reason, message, field: path.0.clone() });
    }

    fn required(&mut self, path: &Path, detail: &str) {
        self.push(REASON_REQUIRED, path, with_detail("Required value".to_string(), detail));
    }

    fn invalid(&mut self, path: &Path, bad: Bad<'_>, detail: &str) {
        self.push(REASON_INVALID, path, with_detail(format!("Invalid value: {}", bad.render()), detail));
    }

    /// One `Invalid` per message, all for the string `value`.
    fn invalid_all(&mut self, path: &Path, value: &str, messages: Vec<String>) {
        for message in messages {
            self.invalid(path, Bad::Str(value), &message);
        }
    }

    fn not_supported(&mut self, path: &Path, bad: Bad<'_>, valid: &[&str]) {
        let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
        let detail = if quoted.is_empty() { String::new() } else { format!("supported values: {}", quoted.join(", ")) };
        self.push(REASON_NOT_SUPPORTED, path, with_detail(format!("Unsupported value: {}", bad.render()), &detail));
    }

    fn duplicate(&mut self, path: &Path, bad: Bad<'_>) {
        self.push(REASON_DUPLICATE, path, format!("Duplicate value: {}", bad.render()));
    }

    fn duplicate_with_detail(&mut self, path: &Path, bad: Bad<'_>, detail: &str) {
        self.push(REASON_DUPLICATE, path, with_detail(format!("Duplicate value: {}", bad.render()), detail));
    }

    fn not_found(&mut self, path: &Path, bad: Bad<'_>) {
        self.push(REASON_NOT_FOUND, path, format!("Not found: {}", bad.render()));
    }

    fn forbidden(&mut self, path: &Path, detail: &str) {
        self.push(REASON_FORBIDDEN, path, with_detail("Forbidden".to_string(), detail));
    }

    fn too_long(&mut self, path: &Path, max_bytes: usize) {
        self.push(REASON_TOO_LONG, path, format!("Too long: may not be more than {max_bytes} bytes"));
    }

    fn non_negative(&mut self, path: &Path, value: Option<i64>) {
        if let Some(n) = value.filter(|n| *n < 0) {
            self.invalid(path, Bad::Int(n), NEGATIVE_MSG);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Go's `%#v` of a `[]string`.
fn go_string_slice(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Go's `%#v` of a `map[string]string` (keys sorted, as Go prints maps).
fn go_string_map(map: Option<&Map<String, Value>>) -> String {
    let Some(map) = map else {
        return "map[string]string(nil)".to_string();
    };
    let sorted: BTreeMap<&str, String> = map.iter().map(|(k, v)| (k.as_str(), scalar_text(v))).collect();
    let entries: Vec<String> = sorted.iter().map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v))).collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// Go's `%#v` of a `metav1.LabelSelector`.
fn go_label_selector(selector: &Value) -> String {
    let labels = go_string_map(object(selector, "matchLabels"));
    let expressions = match field(selector, "matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list.iter().map(go_selector_requirement).collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

fn go_selector_requirement(requirement: &Value) -> String {
    let values = match field(requirement, "values").and_then(Value::as_array) {
        None => "[]string(nil)".to_string(),
        Some(list) => {
            let strings: Vec<String> = list.iter().map(scalar_text).collect();
            go_string_slice(&strings.iter().map(String::as_str).collect::<Vec<_>>())
        }
    };
    format!(
        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
        go_quote(text(requirement, "key")),
        go_quote(text(requirement, "operator"))
    )
}

// ---------------------------------------------------------------------------------------------
// Reading JSON without trusting it.
// ---------------------------------------------------------------------------------------------

static NULL_VALUE: Value = Value::Null;

/// The member `key` of `value`, or `None` when absent, null, or `value` is not an object.
fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.get(key).filter(|v| !v.is_null())
}

/// The member `key`, or JSON null, so lookups can chain.
fn member<'a>(value: &'a Value, key: &str) -> &'a Value {
    field(value, key).unwrap_or(&NULL_VALUE)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    field(value, key).and_then(Value::as_str).unwrap_or("")
}

fn opt_text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    field(value, key).and_then(Value::as_str)
}

fn int(value: &Value, key: &str) -> Option<i64> {
    field(value, key).and_then(Value::as_i64)
}

fn boolean(value: &Value, key: &str) -> bool {
    field(value, key).and_then(Value::as_bool).unwrap_or(false)
}

fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    field(value, key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn object<'a>(value: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    field(value, key).and_then(Value::as_object)
}

/// A scalar as the string Go would hold after decoding it into a string-typed field.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Object metadata.
// ---------------------------------------------------------------------------------------------

/// Which rule an object's name follows.
#[derive(Debug, Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
}

impl NameRule {
    fn check(self, name: &str, prefix: bool) -> Vec<String> {
        match self {
            NameRule::Subdomain => names::name_is_dns_subdomain(name, prefix),
            NameRule::Label => names::name_is_dns_label(name, prefix),
            NameRule::Dns1035 => names::name_is_dns1035_label(name, prefix),
        }
    }
}

fn validate_object_meta(c: &mut Causes, resource_object: &Value, rule: NameRule, namespaced: bool) {
    let meta = member(resource_object, "metadata");
    let path = Path::root("metadata");
    let name = text(meta, "name");
    let generate_name = text(meta, "generateName");
    if !generate_name.is_empty() {
        c.invalid_all(&path.child("generateName"), generate_name, rule.check(generate_name, true));
    }
    if !name.is_empty() {
        c.invalid_all(&path.child("name"), name, rule.check(name, false));
    } else if generate_name.is_empty() {
        c.required(&path.child("name"), "name or generateName is required");
    }
    let namespace = text(meta, "namespace");
    if namespaced && !namespace.is_empty() {
        c.invalid_all(&path.child("namespace"), namespace, names::name_is_dns_label(namespace, false));
    }
    c.non_negative(&path.child("generation"), int(meta, "generation"));
    validate_labels(c, object(meta, "labels"), &path.child("labels"));
    validate_annotations(c, object(meta, "annotations"), &path.child("annotations"));
    validate_finalizers(c, items(meta, "finalizers"), &path.child("finalizers"), true);
}

/// Label keys and values; every problem is reported at the map's own path, as Kubernetes does.
fn validate_labels(c: &mut Causes, labels: Option<&Map<String, Value>>, path: &Path) {
    for (key, value) in labels.into_iter().flatten() {
        c.invalid_all(path, key, names::is_qualified_name(key));
        let value = scalar_text(value);
        c.invalid_all(path, &value, names::is_label_value(&value));
    }
}

fn validate_annotations(c: &mut Causes, annotations: Option<&Map<String, Value>>, path: &Path) {
    let mut total = 0usize;
    for (key, value) in annotations.into_iter().flatten() {
        // Annotation keys follow the qualified-name rule without regard to case.
        c.invalid_all(path, key, names::is_qualified_name(&key.to_lowercase()));
        total = total.saturating_add(key.len()).saturating_add(scalar_text(value).len());
    }
    if total > MAX_ANNOTATIONS_BYTES {
        c.too_long(path, MAX_ANNOTATIONS_BYTES);
    }
}

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Finalizer names: qualified names, and unprefixed ones must be standard. For metadata the
/// standard-name check is reported per index; for a namespace's spec at the list itself.
fn validate_finalizers(c: &mut Causes, finalizers: &[Value], path: &Path, indexed: bool) {
    for (i, finalizer) in finalizers.iter().enumerate() {
        let name = scalar_text(finalizer);
        c.invalid_all(path, &name, names::is_qualified_name(&name));
        if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name.as_str()) {
            let at = if indexed { path.index(i) } else { path.clone() };
            c.invalid(&at, Bad::Str(&name), "name is neither a standard finalizer name nor is it fully qualified");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantities.
// ---------------------------------------------------------------------------------------------

/// How a quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityFormat {
    /// Powers of ten with SI suffixes (`100m`, `1k`, `5`).
    DecimalSi,
    /// Powers of two (`64Mi`, `1Gi`).
    BinarySi,
    /// Scientific notation (`1e3`).
    DecimalExponent,
}

/// A Kubernetes resource quantity, held exactly in billionths (`1` is `1_000_000_000`).
///
/// Parsing accepts what Kubernetes accepts: an optionally signed decimal number followed by a
/// decimal SI suffix (`n u m k M G T P E`), a binary one (`Ki` .. `Ei`) or an exponent (`e3`).
/// Magnitudes beyond about 10^29 are refused rather than capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;
const NANOS_PER_MILLI: i128 = 1_000_000;
/// Inputs longer than this are refused before any arithmetic.
const QUANTITY_MAX_TEXT: usize = 64;
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

impl Quantity {
    /// Parses `text`; `None` when it is not a quantity.
    pub fn parse(text: &str) -> Option<Quantity> {
        if text.is_empty() || text.len() > QUANTITY_MAX_TEXT {
            return None;
        }
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, suffix) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.len() + fraction.len() == 0 || fraction.contains('.') {
            return None;
        }
        let (scale10, scale2, format) = parse_suffix(suffix)?;
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        let exponent = 9 + scale10 - fraction.len() as i32;
        let scaled = scale_by_power_of_ten(mantissa, exponent)?.checked_mul(1i128 << scale2)?;
        if scaled > 10i128.pow(38) / 10 {
            return None;
        }
        Some(Quantity { nanos: if negative { -scaled } else { scaled }, format })
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the quantity is a whole number of units.
    pub fn is_whole(&self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// The quantity rounded away from zero to a whole number of thousandths, as Kubernetes does to
    /// every resource list it stores.
    pub fn round_up_to_milli(self) -> Quantity {
        let rest = self.nanos % NANOS_PER_MILLI;
        if rest == 0 {
            return self;
        }
        let toward_zero = self.nanos - rest;
        let nanos = if self.nanos > 0 { toward_zero + NANOS_PER_MILLI } else { toward_zero - NANOS_PER_MILLI };
        Quantity { nanos, format: self.format }
    }

    /// The canonical spelling Kubernetes stores and prints: the largest suffix of the original kind
    /// that keeps the number whole (`0.5` is `500m`, `1536Mi` stays, `2048Mi` is `2Gi`). Binary
    /// quantities below 1024 or with a fraction are printed in decimal, as Kubernetes does.
    pub fn canonical(&self) -> String {
        let binary = self.format == QuantityFormat::BinarySi
            && self.nanos.abs() >= 1024 * NANOS_PER_UNIT
            && self.nanos % NANOS_PER_UNIT == 0;
        if binary {
            return canonical_binary(self.nanos / NANOS_PER_UNIT);
        }
        if self.nanos == 0 {
            return "0".to_string();
        }
        let mut mantissa = self.nanos;
        let mut exponent = -9;
        while exponent < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exponent += 3;
        }
        let suffix = match (self.format, exponent) {
            (QuantityFormat::DecimalExponent, 0) => String::new(),
            (QuantityFormat::DecimalExponent, e) => format!("e{e}"),
            (_, e) => decimal_suffix(e).to_string(),
        };
        format!("{mantissa}{suffix}")
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

/// Returns (decimal exponent, binary exponent, format) for a suffix.
fn parse_suffix(suffix: &str) -> Option<(i32, u32, QuantityFormat)> {
    let decimal = |e: i32| Some((e, 0, QuantityFormat::DecimalSi));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            if let Some(at) = BINARY_SUFFIXES.iter().skip(1).position(|s| *s == suffix) {
                return Some((0, 10 * (at as u32 + 1), QuantityFormat::BinarySi));
            }
            let exponent = suffix.strip_prefix('e').or_else(|| suffix.strip_prefix('E'))?;
            let digits = exponent.trim_start_matches(['+', '-']);
            if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let value: i32 = exponent.parse().ok()?;
            (-60..=60).contains(&value).then_some((value, 0, QuantityFormat::DecimalExponent))
        }
    }
}

/// `mantissa * 10^exponent`, rounding away from zero when the exponent is negative.
fn scale_by_power_of_ten(mantissa: i128, exponent: i32) -> Option<i128> {
    if exponent >= 0 {
        return mantissa.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?);
    }
    let divisor = 10i128.checked_pow(exponent.unsigned_abs()).unwrap_or(i128::MAX);
    let quotient = mantissa / divisor;
    Some(if mantissa % divisor == 0 { quotient } else { quotient + 1 })
}

fn canonical_binary(mut units: i128) -> String {
    let mut power = 0;
    while power < BINARY_SUFFIXES.len() - 1 && units % 1024 == 0 {
        units /= 1024;
        power += 1;
    }
    format!("{units}{}", BINARY_SUFFIXES.get(power).unwrap_or(&""))
}

fn decimal_suffix(exponent: i32) -> &'static str {
    match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => "",
    }
}

/// The text of a quantity field, which JSON may carry as a string or a number.
fn quantity_text(value: &Value) -> String {
    scalar_text(value)
}

// ---------------------------------------------------------------------------------------------
// Resource requirements.
// ---------------------------------------------------------------------------------------------

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_huge_pages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Unprefixed names and names under `kubernetes.io/` belong to Kubernetes itself.
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && names::is_qualified_name(&format!("requests.{name}")).is_empty()
}

/// Resources the scheduler may overcommit; the others need requests equal to limits.
fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_huge_pages(name)
}

fn validate_container_resource_name(c: &mut Causes, name: &str, path: &Path) {
    let qualified = names::is_qualified_name(name);
    if !qualified.is_empty() {
        c.invalid_all(path, name, qualified);
        return;
    }
    if !name.contains('/') {
        let standard = STANDARD_RESOURCES.contains(&name) || is_huge_pages(name);
        if !standard {
            c.invalid(path, Bad::Str(name), "must be a standard resource type or fully qualified");
        }
        if !STANDARD_CONTAINER_RESOURCES.contains(&name) && !is_huge_pages(name) {
            c.invalid(path, Bad::Str(name), "must be a standard resource for containers");
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        c.invalid(path, Bad::Str(name), "doesn't follow extended resource name standard");
    }
}

/// Checks one quantity of a resource list and returns it when it parses.
fn validate_quantity(c: &mut Causes, resource: &str, raw: &Value, path: &Path) -> Option<Quantity> {
    let text = quantity_text(raw);
    let Some(quantity) = Quantity::parse(&text) else {
        c.invalid(path, Bad::Str(&text), QUANTITY_FORMAT_MSG);
        return None;
    };
    if quantity.is_negative() {
        c.invalid(path, Bad::Str(&quantity.canonical()), NEGATIVE_MSG);
    }
    if is_extended_resource(resource) && !quantity.is_whole() {
        c.invalid(path, Bad::Text(quantity.canonical()), "must be an integer");
    }
    Some(quantity)
}

fn validate_resource_requirements(c: &mut Causes, resources: &Value, path: &Path) {
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    let mut limits: HashMap<&str, Option<Quantity>> = HashMap::new();
    for (name, raw) in object(resources, "limits").into_iter().flatten() {
        let at = limits_path.key(name);
        validate_container_resource_name(c, name, &at);
        limits.insert(name, validate_quantity(c, name, raw, &at));
    }
    for (name, raw) in object(resources, "requests").into_iter().flatten() {
        let at = requests_path.key(name);
        validate_container_resource_name(c, name, &at);
        let request = validate_quantity(c, name, raw, &at);
        match (request, limits.get(name.as_str())) {
            (Some(request), Some(Some(limit))) => {
                let (request, limit) = (request.canonical_pair(), limit.canonical_pair());
                if request.0 != limit.0 && !is_overcommit_allowed(name) {
                    let detail = format!("must be equal to {name} limit of {}", limit.1);
                    c.invalid(&requests_path, Bad::Str(&request.1), &detail);
                } else if request.0 > limit.0 {
                    let detail = format!("must be less than or equal to {name} limit of {}", limit.1);
                    c.invalid(&requests_path, Bad::Str(&request.1), &detail);
                }
            }
            (_, None) if !is_overcommit_allowed(name) => {
                c.required(&limits_path, "Limit must be set for non overcommitable resources");
            }
            _ => {}
        }
    }
    let names_in = |key: &str| object(resources, key).into_iter().flatten().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let all: Vec<String> = names_in("limits").into_iter().chain(names_in("requests")).collect();
    let has_huge_pages = all.iter().any(|n| is_huge_pages(n));
    let has_cpu_or_memory = all.iter().any(|n| n == "cpu" || n == "memory");
    if has_huge_pages && !has_cpu_or_memory {
        c.forbidden(path, "HugePages require cpu or memory");
    }
}

impl Quantity {
    /// The value for comparison with its canonical text, for messages.
    fn canonical_pair(&self) -> (i128, String) {
        (self.nanos, self.canonical())
    }
}

// ---------------------------------------------------------------------------------------------
// Volumes.
// ---------------------------------------------------------------------------------------------

/// Volume source members in the order Kubernetes checks them, with the name it uses when
/// forbidding a second source (two of which are misspelt in Kubernetes itself).
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

const HOST_PATH_TYPES: &[&str] =
    &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];

/// The volumes a pod may mount: name to whether the volume is valid.
struct Volumes<'a> {
    valid: HashSet<&'a str>,
}

fn validate_volumes<'a>(c: &mut Causes, volumes: &'a [Value], path: &Path) -> Volumes<'a> {
    let mut valid = HashSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let at = path.index(i);
        let mut own = Causes::default();
        validate_volume_source(&mut own, volume, &at);
        let name = text(volume, "name");
        if name.is_empty() {
            own.required(&at.child("name"), "");
        } else {
            own.invalid_all(&at.child("name"), name, names::is_dns1123_label(name));
        }
        if valid.contains(name) {
            own.duplicate(&at.child("name"), Bad::Str(name));
        }
        // A volume with problems is left out, so mounts of it are reported as not found too.
        if own.len() == 0 {
            valid.insert(name);
        } else {
            c.0.extend(own.0);
        }
    }
    Volumes { valid }
}

fn validate_volume_source(c: &mut Causes, volume: &Value, path: &Path) {
    let mut count = 0;
    for (key, forbidden_name) in VOLUME_SOURCES {
        let Some(source) = field(volume, key) else { continue };
        if count > 0 {
            c.forbidden(&path.child(forbidden_name), "may not specify more than 1 volume type");
            continue;
        }
        count += 1;
        validate_one_source(c, key, source, path);
    }
    if count == 0 {
        c.required(path, "must specify a volume type");
    }
}

fn validate_one_source(c: &mut Causes, key: &str, source: &Value, path: &Path) {
    let at = path.child(key);
    match key {
        "hostPath" => validate_host_path(c, source, &at),
        "secret" => {
            require_text(c, source, "secretName", &at);
            validate_file_mode(c, source, "defaultMode", &at);
            validate_key_paths(c, items(source, "items"), &at.child("items"));
        }
        "configMap" => {
            require_text(c, source, "name", &at);
            validate_file_mode(c, source, "defaultMode", &at);
            validate_key_paths(c, items(source, "items"), &at.child("items"));
        }
        "persistentVolumeClaim" => require_text(c, source, "claimName", &at),
        "emptyDir" => {
            let negative = field(source, "sizeLimit")
                .and_then(|v| Quantity::parse(&quantity_text(v)))
                .is_some_and(|q| q.is_negative());
            if negative {
                c.forbidden(&at.child("sizeLimit"), "SizeLimit field must be a valid resource quantity");
            }
        }
        "nfs" => {
            require_text(c, source, "server", &at);
            require_text(c, source, "path", &at);
            if !text(source, "path").starts_with('/') {
                c.invalid(&at.child("path"), Bad::Str(text(source, "path")), "must be an absolute path");
            }
        }
        "projected" => {
            validate_file_mode(c, source, "defaultMode", &at);
            validate_projection_sources(c, items(source, "sources"), &at.child("sources"));
        }
        "downwardAPI" => validate_file_mode(c, source, "defaultMode", &at),
        _ => {}
    }
}

fn require_text(c: &mut Causes, value: &Value, key: &str, path: &Path) {
    if text(value, key).is_empty() {
        c.required(&path.child(key), "");
    }
}

fn validate_host_path(c: &mut Causes, source: &Value, path: &Path) {
    let host_path = text(source, "path");
    if host_path.is_empty() {
        c.required(&path.child("path"), "");
        return;
    }
    validate_no_backsteps(c, host_path, &path.child("path"));
    if let Some(kind) = opt_text(source, "type")
        && !HOST_PATH_TYPES.contains(&kind)
    {
        c.not_supported(&path.child("type"), Bad::Str(kind), HOST_PATH_TYPES);
    }
}

fn validate_file_mode(c: &mut Causes, value: &Value, key: &str, path: &Path) {
    if let Some(mode) = int(value, key).filter(|m| !(0..=0o777).contains(m)) {
        c.invalid(&path.child(key), Bad::Int(mode), FILE_MODE_MSG);
    }
}

fn validate_key_paths(c: &mut Causes, entries: &[Value], path: &Path) {
    for (i, entry) in entries.iter().enumerate() {
        let at = path.index(i);
        require_text(c, entry, "key", &at);
        require_text(c, entry, "path", &at);
        validate_local_non_reserved_path(c, text(entry, "path"), &at.child("path"));
        validate_file_mode(c, entry, "mode", &at);
    }
}

fn validate_projection_sources(c: &mut Causes, sources: &[Value], path: &Path) {
    const KINDS: &[&str] = &["secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle"];
    for (i, source) in sources.iter().enumerate() {
        let at = path.index(i);
        let present: Vec<&str> = KINDS.iter().copied().filter(|k| field(source, k).is_some()).collect();
        for kind in ["secret", "configMap"] {
            if let Some(projection) = field(source, kind) {
                require_text(c, projection, "name", &at.child(kind));
                validate_key_paths(c, items(projection, "items"), &at.child(kind).child("items"));
            }
        }
        if let Some(token) = field(source, "serviceAccountToken") {
            let expiry_path = at.child("serviceAccountToken").child("expirationSeconds");
            match int(token, "expirationSeconds") {
                Some(s) if s < 600 => {
                    c.invalid(&expiry_path, Bad::Int(s), "may not specify a duration less than 10 minutes")
                }
                Some(s) if s > 1 << 32 => {
                    c.invalid(&expiry_path, Bad::Int(s), "may not specify a duration larger than 2^32 seconds")
                }
                _ => {}
            }
        }
        if present.len() > 1 {
            c.forbidden(&at, "may not specify more than 1 volume type per source");
        }
    }
}

/// A path that must not climb out of its directory: relative, without `..` elements.
fn validate_local_descending_path(c: &mut Causes, target: &str, path: &Path) {
    if target.starts_with('/') {
        c.invalid(path, Bad::Str(target), "must be a relative path");
    }
    validate_no_backsteps(c, target, path);
}

fn validate_no_backsteps(c: &mut Causes, target: &str, path: &Path) {
    if target.split('/').any(|part| part == "..") {
        c.invalid(path, Bad::Str(target), "must not contain '..'");
    }
}

fn validate_local_non_reserved_path(c: &mut Causes, target: &str, path: &Path) {
    validate_local_descending_path(c, target, path);
    if target.starts_with("..") && !target.starts_with("../") {
        c.invalid(path, Bad::Str(target), "must not start with '..'");
    }
}

// ---------------------------------------------------------------------------------------------
// Containers.
// ---------------------------------------------------------------------------------------------

fn validate_container_common(c: &mut Causes, ctr: &Value, volumes: &Volumes<'_>, path: &Path) {
    let name = text(ctr, "name");
    if name.is_empty() {
        c.required(&path.child("name"), "");
    } else {
        c.invalid_all(&path.child("name"), name, names::is_dns1123_label(name));
    }
    if text(ctr, "image").is_empty() {
        c.required(&path.child("image"), "");
    }
    match text(ctr, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => c.required(&path.child("terminationMessagePolicy"), ""),
        other => c.not_supported(
            &path.child("terminationMessagePolicy"),
            Bad::Str(other),
            &["File", "FallbackToLogsOnError"],
        ),
    }
    validate_container_ports(c, items(ctr, "ports"), &path.child("ports"));
    validate_env(c, items(ctr, "env"), &path.child("env"));
    validate_env_from(c, items(ctr, "envFrom"), &path.child("envFrom"));
    validate_volume_mounts(c, ctr, volumes, &path.child("volumeMounts"));
    match text(ctr, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => c.required(&path.child("imagePullPolicy"), ""),
        other => c.not_supported(&path.child("imagePullPolicy"), Bad::Str(other), &["Always", "IfNotPresent", "Never"]),
    }
    validate_resource_requirements(c, member(ctr, "resources"), &path.child("resources"));
    validate_user_and_group(c, member(ctr, "securityContext"), &path.child("securityContext"));
}

fn validate_container_ports(c: &mut Causes, ports: &[Value], path: &Path) {
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = path.index(i);
        let name = text(port, "name");
        if !name.is_empty() {
            let problems = names::is_valid_port_name(name);
            if !problems.is_empty() {
                c.invalid_all(&at.child("name"), name, problems);
            } else if !seen.insert(name) {
                c.duplicate(&at.child("name"), Bad::Str(name));
            }
        }
        match int(port, "containerPort").unwrap_or(0) {
            0 => c.required(&at.child("containerPort"), ""),
            n => {
                for msg in names::is_valid_port_num(n) {
                    c.invalid(&at.child("containerPort"), Bad::Int(n), &msg);
                }
            }
        }
        if let Some(host_port) = int(port, "hostPort").filter(|p| *p != 0) {
            for msg in names::is_valid_port_num(host_port) {
                c.invalid(&at.child("hostPort"), Bad::Int(host_port), &msg);
            }
        }
        validate_protocol(c, port, &at);
    }
}

fn validate_protocol(c: &mut Causes, port: &Value, path: &Path) {
    match text(port, "protocol") {
        "" => c.required(&path.child("protocol"), ""),
        p if PROTOCOLS.contains(&p) => {}
        p => c.not_supported(&path.child("protocol"), Bad::Str(p), PROTOCOLS),
    }
}

fn validate_env(c: &mut Causes, env: &[Value], path: &Path) {
    for (i, var) in env.iter().enumerate() {
        let at = path.index(i);
        let name = text(var, "name");
        if name.is_empty() {
            c.required(&at.child("name"), "");
        } else {
            c.invalid_all(&at.child("name"), name, names::is_relaxed_env_var_name(name));
        }
        if let Some(from) = field(var, "valueFrom") {
            validate_env_value_from(c, from, !text(var, "value").is_empty(), &at.child("valueFrom"));
        }
    }
}

/// Field paths a container may read through `fieldRef` in an environment variable.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
/// Every field label the downward API knows (a wider set than [`ENV_FIELD_PATHS`]).
const DOWNWARD_API_LABELS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const ENV_RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_env_value_from(c: &mut Causes, from: &Value, has_value: bool, path: &Path) {
    let mut sources = 0;
    if let Some(field_ref) = field(from, "fieldRef") {
        sources += 1;
        validate_object_field_selector(c, field_ref, &path.child("fieldRef"));
    }
    if let Some(resource_ref) = field(from, "resourceFieldRef") {
        sources += 1;
        let resource = text(resource_ref, "resource");
        let at = path.child("resourceFieldRef").child("resource");
        let huge_pages = resource.starts_with("limits.hugepages-") || resource.starts_with("requests.hugepages-");
        if resource.is_empty() {
            c.required(&at, "");
        } else if !ENV_RESOURCE_FIELDS.contains(&resource) && !huge_pages {
            c.not_supported(&at, Bad::Str(resource), ENV_RESOURCE_FIELDS);
        }
    }
    for kind in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(selector) = field(from, kind) {
            sources += 1;
            validate_key_selector(c, selector, &path.child(kind));
        }
    }
    if sources == 0 {
        let detail = "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`";
        c.invalid(path, Bad::Str(""), detail);
    } else if has_value {
        c.invalid(path, Bad::Str(""), "may not be specified when `value` is not empty");
    } else if sources > 1 {
        c.invalid(path, Bad::Str(""), "may not have more than one field specified at a time");
    }
}

fn validate_object_field_selector(c: &mut Causes, selector: &Value, path: &Path) {
    if text(selector, "apiVersion").is_empty() {
        c.required(&path.child("apiVersion"), "");
        return;
    }
    let field_path = text(selector, "fieldPath");
    if field_path.is_empty() {
        c.required(&path.child("fieldPath"), "");
        return;
    }
    let subscripted = ["metadata.labels[", "metadata.annotations["].iter().any(|p| field_path.starts_with(p));
    if subscripted && field_path.ends_with(']') {
        return;
    }
    if !DOWNWARD_API_LABELS.contains(&field_path) {
        let detail = format!("error converting fieldPath: field label not supported: {field_path}");
        c.invalid(&path.child("fieldPath"), Bad::Str(field_path), &detail);
    } else if !ENV_FIELD_PATHS.contains(&field_path) {
        c.not_supported(&path.child("fieldPath"), Bad::Str(field_path), ENV_FIELD_PATHS);
    }
}

fn validate_key_selector(c: &mut Causes, selector: &Value, path: &Path) {
    let name = text(selector, "name");
    c.invalid_all(&path.child("name"), name, names::name_is_dns_subdomain(name, false));
    let key = text(selector, "key");
    if key.is_empty() {
        c.required(&path.child("key"), "");
    } else {
        c.invalid_all(&path.child("key"), key, names::is_config_map_key(key));
    }
}

fn validate_env_from(c: &mut Causes, sources: &[Value], path: &Path) {
    for (i, source) in sources.iter().enumerate() {
        let at = path.index(i);
        let prefix = text(source, "prefix");
        if !prefix.is_empty() {
            c.invalid_all(&at.child("prefix"), prefix, names::is_relaxed_env_var_name(prefix));
        }
        let mut count = 0;
        for kind in ["configMapRef", "secretRef"] {
            if let Some(reference) = field(source, kind) {
                count += 1;
                let name = text(reference, "name");
                if name.is_empty() {
                    c.required(&at.child(kind).child("name"), "");
                } else {
                    c.invalid_all(&at.child(kind).child("name"), name, names::name_is_dns_subdomain(name, true));
                }
            }
        }
        if count == 0 {
            c.invalid(path, Bad::Str(""), "must specify one of: `configMapRef` or `secretRef`");
        } else if count > 1 {
            c.invalid(path, Bad::Str(""), "may not have more than one field specified at a time");
        }
    }
}

fn validate_volume_mounts(c: &mut Causes, ctr: &Value, volumes: &Volumes<'_>, path: &Path) {
    let privileged = boolean(member(ctr, "securityContext"), "privileged");
    let mut mount_points = HashSet::new();
    for (i, mount) in items(ctr, "volumeMounts").iter().enumerate() {
        let at = path.index(i);
        let name = text(mount, "name");
        if name.is_empty() {
            c.required(&at.child("name"), "");
        }
        if !volumes.valid.contains(name) {
            c.not_found(&at.child("name"), Bad::Str(name));
        }
        let mount_path = text(mount, "mountPath");
        if mount_path.is_empty() {
            c.required(&at.child("mountPath"), "");
        }
        if !mount_points.insert(mount_path) {
            c.invalid(&at.child("mountPath"), Bad::Str(mount_path), "must be unique");
        }
        // Kubernetes reports these two at the list's path, without the index.
        let sub_path = text(mount, "subPath");
        if !sub_path.is_empty() {
            validate_local_descending_path(c, sub_path, &path.child("subPath"));
        }
        let sub_path_expr = text(mount, "subPathExpr");
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                let detail = "subPathExpr and subPath are mutually exclusive";
                c.invalid(&at.child("subPathExpr"), Bad::Str(sub_path_expr), detail);
            }
            validate_local_descending_path(c, sub_path_expr, &path.child("subPathExpr"));
        }
        if let Some(propagation) = opt_text(mount, "mountPropagation") {
            validate_mount_propagation(c, propagation, privileged, &path.child("mountPropagation"));
        }
    }
}

fn validate_mount_propagation(c: &mut Causes, propagation: &str, privileged: bool, path: &Path) {
    const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
    if !MODES.contains(&propagation) {
        c.not_supported(path, Bad::Str(propagation), MODES);
    }
    if propagation == "Bidirectional" && !privileged {
        c.forbidden(path, "Bidirectional mount propagation is available only to privileged containers");
    }
}

/// User and group IDs must fit in 32 bits.
fn validate_user_and_group(c: &mut Causes, context: &Value, path: &Path) {
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        if let Some(id) = int(context, key).filter(|id| !(0..=u32::MAX as i64).contains(id)) {
            c.invalid(&path.child(key), Bad::Int(id), &names::inclusive_range_error(0, u32::MAX as i64));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn validate_probe(c: &mut Causes, probe: &Value, kind: ProbeKind, path: &Path) {
    validate_handler(c, probe, &["exec", "httpGet", "tcpSocket", "grpc"], path);
    for key in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        c.non_negative(&path.child(key), int(probe, key));
    }
    let grace = int(probe, "terminationGracePeriodSeconds");
    if let Some(seconds) = grace.filter(|s| *s <= 0) {
        c.invalid(&path.child("terminationGracePeriodSeconds"), Bad::Int(seconds), "must be greater than 0");
    }
    match kind {
        ProbeKind::Liveness | ProbeKind::Startup => {
            let threshold = int(probe, "successThreshold").unwrap_or(0);
            if threshold != 1 {
                c.invalid(&path.child("successThreshold"), Bad::Int(threshold), "must be 1");
            }
        }
        ProbeKind::Readiness => {
            if let Some(seconds) = grace {
                let detail = "must not be set for readinessProbes";
                c.invalid(&path.child("terminationGracePeriodSeconds"), Bad::Int(seconds), detail);
            }
        }
    }
}

/// Exactly one handler of `kinds` must be set; each is checked the way Kubernetes does.
fn validate_handler(c: &mut Causes, handler: &Value, kinds: &[&str], path: &Path) {
    let mut count = 0;
    for kind in kinds {
        let Some(action) = field(handler, kind) else { continue };
        let at = path.child(kind);
        if count > 0 {
            c.forbidden(&at, "may not specify more than 1 handler type");
            continue;
        }
        count += 1;
        match *kind {
            "exec" if items(action, "command").is_empty() => c.required(&at.child("command"), ""),
            "httpGet" => validate_http_get(c, action, &at),
            "tcpSocket" => validate_port_num_or_name(c, member(action, "port"), &at.child("port")),
            "grpc" => validate_port_num_or_name(c, member(action, "port"), &at.child("port")),
            _ => {}
        }
    }
    if count == 0 {
        c.required(path, "must specify a handler type");
    }
}

fn validate_http_get(c: &mut Causes, action: &Value, path: &Path) {
    if text(action, "path").is_empty() {
        c.required(&path.child("path"), "");
    }
    validate_port_num_or_name(c, member(action, "port"), &path.child("port"));
    let scheme = text(action, "scheme");
    if scheme != "HTTP" && scheme != "HTTPS" {
        c.not_supported(&path.child("scheme"), Bad::Str(scheme), &["HTTP", "HTTPS"]);
    }
    for header in items(action, "httpHeaders") {
        let name = text(header, "name");
        c.invalid_all(&path.child("httpHeaders"), name, names::is_http_header_name(name));
    }
}

/// An int-or-string port: a number in 1..=65535 or an IANA service name.
fn validate_port_num_or_name(c: &mut Causes, port: &Value, path: &Path) {
    match port {
        Value::String(name) => c.invalid_all(path, name, names::is_valid_port_name(name)),
        other => {
            let number = other.as_i64().unwrap_or(0);
            for msg in names::is_valid_port_num(number) {
                c.invalid(path, Bad::Int(number), &msg);
            }
        }
    }
}

fn validate_lifecycle(c: &mut Causes, lifecycle: &Value, path: &Path) {
    for hook in ["postStart", "preStop"] {
        if let Some(handler) = field(lifecycle, hook) {
            validate_handler(c, handler, &["exec", "httpGet", "tcpSocket", "sleep"], &path.child(hook));
        }
    }
}

/// Host ports must be unique per protocol and host IP among the given containers.
fn check_host_port_conflicts(c: &mut Causes, containers: &[(usize, &Value)], path: &Path) {
    let mut seen = HashSet::new();
    for (index, ctr) in containers {
        for (j, port) in items(ctr, "ports").iter().enumerate() {
            let host_port = int(port, "hostPort").unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!("{}/{}/{host_port}", text(port, "protocol"), text(port, "hostIP"));
            if !seen.insert(key.clone()) {
                c.duplicate(&path.index(*index).child("ports").index(j).child("hostPort"), Bad::Str(&key));
            }
        }
    }
}

fn validate_containers(c: &mut Causes, containers: &[Value], volumes: &Volumes<'_>, path: &Path) {
    if containers.is_empty() {
        c.required(path, "");
        return;
    }
    let mut seen = HashSet::new();
    for (i, ctr) in containers.iter().enumerate() {
        let at = path.index(i);
        validate_container_common(c, ctr, volumes, &at);
        let name = text(ctr, "name");
        if !seen.insert(name) {
            c.duplicate(&at.child("name"), Bad::Str(name));
        }
        validate_container_hooks(c, ctr, &at);
        if field(ctr, "restartPolicy").is_some() {
            c.forbidden(&at.child("restartPolicy"), "may not be set for non-init containers");
        }
    }
    let all: Vec<(usize, &Value)> = containers.iter().enumerate().collect();
    check_host_port_conflicts(c, &all, path);
}

fn validate_container_hooks(c: &mut Causes, ctr: &Value, path: &Path) {
    if let Some(lifecycle) = field(ctr, "lifecycle") {
        validate_lifecycle(c, lifecycle, &path.child("lifecycle"));
    }
    let probes = [
        ("livenessProbe", ProbeKind::Liveness),
        ("readinessProbe", ProbeKind::Readiness),
        ("startupProbe", ProbeKind::Startup),
    ];
    for (key, kind) in probes {
        if let Some(probe) = field(ctr, key) {
            validate_probe(c, probe, kind, &path.child(key));
        }
    }
}

fn validate_init_containers(c: &mut Causes, inits: &[Value], regular: &[Value], volumes: &Volumes<'_>, path: &Path) {
    let mut seen: HashSet<&str> = regular.iter().map(|ctr| text(ctr, "name")).collect();
    for (i, ctr) in inits.iter().enumerate() {
        let at = path.index(i);
        validate_container_common(c, ctr, volumes, &at);
        let restart_policy = opt_text(ctr, "restartPolicy");
        if let Some(policy) = restart_policy.filter(|p| *p != "Always") {
            c.not_supported(&at.child("restartPolicy"), Bad::Str(policy), &["Always"]);
        }
        let name = text(ctr, "name");
        if seen.contains(name) {
            c.duplicate(&at.child("name"), Bad::Str(name));
        } else if !name.is_empty() {
            seen.insert(name);
        }
        check_host_port_conflicts(c, &[(i, ctr)], path);
        if restart_policy == Some("Always") {
            validate_container_hooks(c, ctr, &at);
            continue;
        }
        for key in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
            if field(ctr, key).is_some() {
                c.forbidden(&at.child(key), "may not be set for init containers without restartPolicy=Always");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pod specs (pods and workload templates).
// ---------------------------------------------------------------------------------------------

/// Whether a pod spec belongs to a pod or to a template inside a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecOwner {
    Pod,
    Template,
}

fn validate_pod_spec(c: &mut Causes, spec: &Value, path: &Path, owner: SpecOwner) {
    if field(spec, "terminationGracePeriodSeconds").is_none() {
        c.required(&path.child("terminationGracePeriodSeconds"), "");
    }
    let volumes = validate_volumes(c, items(spec, "volumes"), &path.child("volumes"));
    let containers = items(spec, "containers");
    validate_containers(c, containers, &volumes, &path.child("containers"));
    validate_init_containers(c, items(spec, "initContainers"), containers, &volumes, &path.child("initContainers"));
    validate_host_network_ports(c, spec, path, owner);
    let restart_policies = ["Always", "OnFailure", "Never"];
    validate_enum(c, spec, "restartPolicy", &restart_policies, &path.child("restartPolicy"));
    let dns_policies = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    validate_enum(c, spec, "dnsPolicy", &dns_policies, &path.child("dnsPolicy"));
    validate_labels(c, object(spec, "nodeSelector"), &path.child("nodeSelector"));
    validate_user_and_group(c, member(spec, "securityContext"), &path.child("securityContext"));
    validate_dns_config(c, spec, &path.child("dnsConfig"));
    for key in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let value = text(spec, key);
        if !value.is_empty() {
            c.invalid_all(&path.child(key), value, names::name_is_dns_subdomain(value, false));
        }
    }
    if let Some(deadline) = int(spec, "activeDeadlineSeconds").filter(|d| !(1..=MAX_INT32).contains(d)) {
        let detail = names::inclusive_range_error(1, MAX_INT32);
        c.invalid(&path.child("activeDeadlineSeconds"), Bad::Int(deadline), &detail);
    }
    for key in ["hostname", "subdomain"] {
        let value = text(spec, key);
        if !value.is_empty() {
            c.invalid_all(&path.child(key), value, names::is_dns1123_label(value));
        }
    }
    validate_tolerations(c, items(spec, "tolerations"), &path.child("tolerations"));
    if let Some(policy) = opt_text(spec, "preemptionPolicy") {
        match policy {
            "PreemptLowerPriority" | "Never" => {}
            "" => c.required(&path.child("preemptionPolicy"), ""),
            other => {
                c.not_supported(&path.child("preemptionPolicy"), Bad::Str(other), &["PreemptLowerPriority", "Never"])
            }
        }
    }
}

/// A required enumeration: missing is `Required`, anything outside `valid` is `Unsupported`.
fn validate_enum(c: &mut Causes, value: &Value, key: &str, valid: &[&str], path: &Path) {
    match text(value, key) {
        "" => c.required(path, ""),
        v if valid.contains(&v) => {}
        v => c.not_supported(path, Bad::Str(v), valid),
    }
}

/// With host networking a pod's host ports must equal its container ports.
fn validate_host_network_ports(c: &mut Causes, spec: &Value, path: &Path, owner: SpecOwner) {
    if !boolean(spec, "hostNetwork") {
        return;
    }
    for (i, ctr) in items(spec, "containers").iter().enumerate() {
        for (j, port) in items(ctr, "ports").iter().enumerate() {
            let host_port = int(port, "hostPort").unwrap_or(0);
            let container_port = int(port, "containerPort").unwrap_or(0);
            if (owner == SpecOwner::Pod || host_port != 0) && host_port != container_port {
                let at = path.child("containers").index(i).child("ports").index(j).child("hostPort");
                c.invalid(&at, Bad::Int(host_port), "must match `containerPort` when `hostNetwork` is true");
            }
        }
    }
}

fn validate_dns_config(c: &mut Causes, spec: &Value, path: &Path) {
    let config = field(spec, "dnsConfig");
    if text(spec, "dnsPolicy") == "None" {
        match config {
            None => return c.required(path, "must provide `dnsConfig` when `dnsPolicy` is None"),
            Some(cfg) if items(cfg, "nameservers").is_empty() => {
                let detail = "must provide at least one DNS nameserver when `dnsPolicy` is None";
                return c.required(&path.child("nameservers"), detail);
            }
            Some(_) => {}
        }
    }
    let Some(config) = config else { return };
    let nameservers = items(config, "nameservers");
    if nameservers.len() > 3 {
        let list: Vec<String> = nameservers.iter().map(scalar_text).collect();
        let bad = go_string_slice(&list.iter().map(String::as_str).collect::<Vec<_>>());
        c.invalid(&path.child("nameservers"), Bad::Text(bad), "must not have more than 3 nameservers");
    }
    for (i, server) in nameservers.iter().enumerate() {
        validate_ip(c, &scalar_text(server), &path.child("nameservers").index(i));
    }
}

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn validate_tolerations(c: &mut Causes, tolerations: &[Value], path: &Path) {
    for (i, toleration) in tolerations.iter().enumerate() {
        let at = path.index(i);
        let key = text(toleration, "key");
        let operator = text(toleration, "operator");
        let effect = text(toleration, "effect");
        if !key.is_empty() {
            c.invalid_all(&at.child("key"), key, names::is_qualified_name(key));
        }
        if key.is_empty() && operator != "Exists" {
            let detail = "operator must be Exists when `key` is empty, which means \"match all values and all keys\"";
            c.invalid(&at.child("operator"), Bad::Str(operator), detail);
        }
        if field(toleration, "tolerationSeconds").is_some() && effect != "NoExecute" {
            c.invalid(
                &at.child("effect"),
                Bad::Str(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        let value = text(toleration, "value");
        match operator {
            "Equal" | "" => {
                let problems = names::is_label_value(value);
                if !problems.is_empty() {
                    c.invalid(&at.child("operator"), Bad::Str(value), &problems.join(";"));
                }
            }
            "Exists" if !value.is_empty() => {
                c.invalid(&at.child("operator"), Bad::Str(value), "value must be empty when `operator` is 'Exists'");
            }
            "Exists" => {}
            other => c.not_supported(&at.child("operator"), Bad::Str(other), &["Equal", "Exists"]),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            c.not_supported(&at.child("effect"), Bad::Str(effect), TAINT_EFFECTS);
        }
    }
}

/// Checks Kubernetes makes only for pods, not for templates, and only on create.
fn validate_pod_only(c: &mut Causes, spec: &Value, path: &Path) {
    for list in ["containers", "initContainers"] {
        for (i, ctr) in items(spec, list).iter().enumerate() {
            let image = text(ctr, "image");
            if image.trim() != image {
                let at = path.child(list).index(i).child("image");
                c.invalid(&at, Bad::Str(image), "must not have leading or trailing whitespace");
            }
        }
    }
}

fn validate_pod(c: &mut Causes, pod: &Value, old: Option<&Value>) {
    validate_object_meta(c, pod, NameRule::Subdomain, true);
    let spec = member(pod, "spec");
    let spec_path = Path::root("spec");
    validate_pod_spec(c, spec, &spec_path, SpecOwner::Pod);
    validate_pod_only(c, spec, &spec_path);
    match old {
        None => {
            if !items(spec, "ephemeralContainers").is_empty() {
                c.forbidden(&spec_path.child("ephemeralContainers"), "cannot be set on create");
            }
            if !text(spec, "nodeName").is_empty() && !items(spec, "schedulingGates").is_empty() {
                c.forbidden(&spec_path.child("nodeName"), "cannot be set until all schedulingGates have been cleared");
            }
        }
        Some(old) => validate_pod_update(c, spec, member(old, "spec"), &spec_path),
    }
}

/// A pod's spec is immutable except for images, a shrinking `activeDeadlineSeconds`, added
/// tolerations (or changed `tolerationSeconds`) and removed scheduling gates.
fn validate_pod_update(c: &mut Causes, new: &Value, old: &Value, path: &Path) {
    for list in ["containers", "initContainers"] {
        if !validate_container_updates(c, items(new, list), items(old, list), &path.child(list)) {
            return;
        }
    }
    let deadline_path = path.child("activeDeadlineSeconds");
    match (int(new, "activeDeadlineSeconds"), int(old, "activeDeadlineSeconds")) {
        (Some(new_deadline), _) if !(0..=MAX_INT32).contains(&new_deadline) => {
            return c.invalid(&deadline_path, Bad::Int(new_deadline), &names::inclusive_range_error(0, MAX_INT32));
        }
        (Some(new_deadline), Some(old_deadline)) if old_deadline < new_deadline => {
            return c.invalid(&deadline_path, Bad::Int(new_deadline), "must be less than or equal to previous value");
        }
        (None, Some(_)) => c.invalid(&deadline_path, Bad::Null, "must not update from a positive integer to nil value"),
        _ => {}
    }
    validate_only_added_tolerations(
        c,
        items(new, "tolerations"),
        items(old, "tolerations"),
        &path.child("tolerations"),
    );
    validate_only_removed_gates(c, items(new, "schedulingGates"), items(old, "schedulingGates"), path);
    let munged = munge_pod_spec(new, old);
    let (munged, old) = (normalized(&munged), normalized(old));
    if munged != old {
        let fields = UPDATABLE_POD_SPEC_FIELDS.join(",");
        let diff = describe_diff(&old, &munged);
        c.forbidden(path, &format!("pod updates may not change fields other than {fields}\n{diff}"));
    }
}

/// Returns false when the container lists differ in length, after which Kubernetes stops.
fn validate_container_updates(c: &mut Causes, new: &[Value], old: &[Value], path: &Path) -> bool {
    if new.len() != old.len() {
        c.forbidden(path, "pod updates may not add or remove containers");
        return false;
    }
    for (i, ctr) in new.iter().enumerate() {
        let image = text(ctr, "image");
        if image.is_empty() {
            c.required(&path.index(i).child("image"), "");
        }
        if image.trim() != image {
            c.invalid(&path.index(i).child("image"), Bad::Str(image), "must not have leading or trailing whitespace");
        }
    }
    true
}

fn validate_only_added_tolerations(c: &mut Causes, new: &[Value], old: &[Value], path: &Path) {
    let without_seconds = |t: &Value| {
        let mut t = normalized(t);
        if let Some(map) = t.as_object_mut() {
            map.remove("tolerationSeconds");
        }
        t
    };
    let new_keys: Vec<Value> = new.iter().map(without_seconds).collect();
    if old.iter().any(|o| !new_keys.contains(&without_seconds(o))) {
        c.forbidden(path, "existing toleration can not be modified except its tolerationSeconds");
        return;
    }
    validate_tolerations(c, new, path);
}

fn validate_only_removed_gates(c: &mut Causes, new: &[Value], old: &[Value], path: &Path) {
    let old_names: HashSet<&str> = old.iter().map(|g| text(g, "name")).collect();
    for (i, gate) in new.iter().enumerate() {
        let name = text(gate, "name");
        if !old_names.contains(name) {
            let detail = format!("only deletion is allowed, but found new scheduling gate '{name}'");
            c.forbidden(&path.child("schedulingGates").index(i).child("name"), &detail);
        }
    }
}

/// The new spec with every field a pod update may change set back to its old value.
fn munge_pod_spec(new: &Value, old: &Value) -> Value {
    let mut munged = new.clone();
    let Some(spec) = munged.as_object_mut() else { return munged };
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for (ctr, old_ctr) in containers.iter_mut().zip(items(old, list)) {
                if let Some(ctr) = ctr.as_object_mut() {
                    restore(ctr, old_ctr, "image");
                }
            }
        }
    }
    for key in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
        restore(spec, old, key);
    }
    let old_grace = int(old, "terminationGracePeriodSeconds");
    if old_grace.is_some_and(|g| g < 0) && int(new, "terminationGracePeriodSeconds") == Some(1) {
        restore(spec, old, "terminationGracePeriodSeconds");
    }
    munged
}

/// Sets `key` of `target` to `source`'s value, or removes it when `source` has none.
fn restore(target: &mut Map<String, Value>, source: &Value, key: &str) {
    match field(source, key) {
        Some(value) => target.insert(key.to_string(), value.clone()),
        None => target.remove(key),
    };
}

/// A copy without nulls, empty lists and empty objects, which Go's semantic equality treats like
/// absent values (empty maps and slices equal nil ones; an empty struct equals its zero value).
/// Defaulting gives old and new objects the same pointer-typed members, so dropping an empty
/// object never hides a real change.
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| (k.clone(), normalized(v))).filter(|(_, v)| !is_empty_value(v)).collect(),
        ),
        Value::Array(list) => Value::Array(list.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(list) => list.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// A short description of how two specs differ: one `-`/`+` pair per changed field (at most ten).
/// Kubernetes prints a Go structural diff here; this is a readable stand-in with the same role.
fn describe_diff(old: &Value, new: &Value) -> String {
    let mut lines = Vec::new();
    collect_diff(old, new, "spec", &mut lines);
    lines.truncate(20);
    lines.join("\n")
}

fn collect_diff(old: &Value, new: &Value, path: &str, lines: &mut Vec<String>) {
    if old == new || lines.len() >= 20 {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let (x, y) = (a.get(key).unwrap_or(&NULL_VALUE), b.get(key).unwrap_or(&NULL_VALUE));
                collect_diff(x, y, &format!("{path}.{key}"), lines);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                collect_diff(x, y, &format!("{path}[{i}]"), lines);
            }
        }
        _ => {
            lines.push(format!("- {path}: {old}"));
            lines.push(format!("+ {path}: {new}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors, deployments and replica sets.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Deployment,
    ReplicaSet,
}

/// How a `spec.selector` selects, once validated.
enum Selection<'a> {
    /// No selector at all: Kubernetes matches nothing, so any template is reported.
    Nothing,
    /// An empty selector: matches everything, no template check.
    Everything,
    /// A valid selector.
    Selector(&'a Value),
    /// A selector Kubernetes cannot build; the template is then not checked at all.
    Unusable,
}

fn validate_label_selector(c: &mut Causes, selector: &Value, path: &Path) {
    validate_labels(c, object(selector, "matchLabels"), &path.child("matchLabels"));
    for (i, expression) in items(selector, "matchExpressions").iter().enumerate() {
        let at = path.child("matchExpressions").index(i);
        let values = items(expression, "values");
        match text(expression, "operator") {
            "In" | "NotIn" if values.is_empty() => {
                c.required(&at.child("values"), "must be specified when `operator` is 'In' or 'NotIn'");
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                let detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'";
                c.forbidden(&at.child("values"), detail);
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => c.invalid(&at.child("operator"), Bad::Str(other), "not a valid selector operator"),
        }
        let key = text(expression, "key");
        c.invalid_all(&at.child("key"), key, names::is_qualified_name(key));
        for (j, value) in values.iter().enumerate() {
            let value = scalar_text(value);
            c.invalid_all(&at.child("values").index(j), &value, names::is_label_value(&value));
        }
    }
}

/// Whether `selector` (already known to be valid) selects an object with `labels`.
fn selector_matches(selector: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(scalar_text);
    let labels_match = object(selector, "matchLabels")
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k).as_deref() == Some(scalar_text(v).as_str()));
    let expressions_match = items(selector, "matchExpressions").iter().all(|expression| {
        let actual = label(text(expression, "key"));
        let listed = |v: &String| items(expression, "values").iter().any(|x| &scalar_text(x) == v);
        match text(expression, "operator") {
            "In" => actual.as_ref().is_some_and(listed),
            "NotIn" => !actual.as_ref().is_some_and(listed),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// Validates `spec.selector` and says how it selects.
fn validate_workload_selector<'a>(c: &mut Causes, spec: &'a Value, path: &Path) -> Selection<'a> {
    let Some(selector) = field(spec, "selector") else {
        c.required(path, "");
        return Selection::Nothing;
    };
    let before = c.len();
    validate_label_selector(c, selector, path);
    let usable = c.len() == before;
    let empty =
        object(selector, "matchLabels").is_none_or(Map::is_empty) && items(selector, "matchExpressions").is_empty();
    if empty {
        c.invalid(path, Bad::Text(go_label_selector(selector)), "empty selector is invalid for deployment");
        return Selection::Everything;
    }
    if !usable {
        c.invalid(path, Bad::Text(go_label_selector(selector)), "invalid label selector");
        return Selection::Unusable;
    }
    Selection::Selector(selector)
}

fn validate_workload(c: &mut Causes, object_value: &Value, old: Option<&Value>, kind: Workload) {
    validate_object_meta(c, object_value, NameRule::Subdomain, true);
    let spec = member(object_value, "spec");
    let spec_path = Path::root("spec");
    c.non_negative(&spec_path.child("replicas"), Some(int(spec, "replicas").unwrap_or(0)));
    if kind == Workload::ReplicaSet {
        c.non_negative(&spec_path.child("minReadySeconds"), int(spec, "minReadySeconds"));
    }
    let selection = validate_workload_selector(c, spec, &spec_path.child("selector"));
    if !matches!(selection, Selection::Unusable) {
        validate_template(c, member(spec, "template"), &selection, &spec_path.child("template"));
    }
    if kind == Workload::Deployment {
        validate_deployment_strategy(c, member(spec, "strategy"), &spec_path.child("strategy"));
        let min_ready = int(spec, "minReadySeconds");
        c.non_negative(&spec_path.child("minReadySeconds"), min_ready);
        c.non_negative(&spec_path.child("revisionHistoryLimit"), int(spec, "revisionHistoryLimit"));
        if let Some(deadline) = int(spec, "progressDeadlineSeconds") {
            let at = spec_path.child("progressDeadlineSeconds");
            c.non_negative(&at, Some(deadline));
            if deadline <= min_ready.unwrap_or(0) {
                c.invalid(&at, Bad::Int(deadline), "must be greater than minReadySeconds");
            }
        }
    }
    if let Some(old) = old {
        let (new_selector, old_selector) = (member(spec, "selector"), member(member(old, "spec"), "selector"));
        if normalized(new_selector) != normalized(old_selector) {
            c.invalid(&spec_path.child("selector"), Bad::Text(go_label_selector(new_selector)), IMMUTABLE_MSG);
        }
    }
}

/// The pod template of a workload: labels must match the selector and pods must always restart.
fn validate_template(c: &mut Causes, template: &Value, selection: &Selection<'_>, path: &Path) {
    let meta = member(template, "metadata");
    let labels = object(meta, "labels");
    let matches = match selection {
        Selection::Nothing => false,
        Selection::Everything | Selection::Unusable => true,
        Selection::Selector(selector) => selector_matches(selector, labels),
    };
    if !matches {
        c.invalid(&path.child("metadata").child("labels"), Bad::Text(go_string_map(labels)), SELECTOR_MISMATCH_MSG);
    }
    // Kubernetes reports template label and annotation problems without the `metadata` step.
    validate_labels(c, labels, &path.child("labels"));
    validate_annotations(c, object(meta, "annotations"), &path.child("annotations"));
    let spec = member(template, "spec");
    let spec_path = path.child("spec");
    validate_pod_spec(c, spec, &spec_path, SpecOwner::Template);
    if !items(spec, "ephemeralContainers").is_empty() {
        c.forbidden(&spec_path.child("ephemeralContainers"), "ephemeral containers not allowed in pod template");
    }
    let restart_policy = text(spec, "restartPolicy");
    if restart_policy != "Always" {
        c.not_supported(&spec_path.child("restartPolicy"), Bad::Str(restart_policy), &["Always"]);
    }
    if field(spec, "activeDeadlineSeconds").is_some() {
        let at = spec_path.child("activeDeadlineSeconds");
        c.forbidden(&at, "activeDeadlineSeconds in ReplicaSet is not Supported");
    }
}

fn validate_deployment_strategy(c: &mut Causes, strategy: &Value, path: &Path) {
    let rolling = field(strategy, "rollingUpdate");
    match text(strategy, "type") {
        "Recreate" => {
            if rolling.is_some() {
                c.forbidden(&path.child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'");
            }
        }
        "RollingUpdate" => match rolling {
            None => c.required(&path.child("rollingUpdate"), "this should be defaulted and never be nil"),
            Some(rolling) => validate_rolling_update(c, rolling, &path.child("rollingUpdate")),
        },
        other => {
            let rolling_text = if rolling.is_some() {
                "&apps.RollingUpdateDeployment{...}"
            } else {
                "(*apps.RollingUpdateDeployment)(nil)"
            };
            let bad = format!("apps.DeploymentStrategy{{Type:{}, RollingUpdate:{rolling_text}}}", go_quote(other));
            c.not_supported(path, Bad::Text(bad), &["Recreate", "RollingUpdate"]);
        }
    }
}

/// An int-or-percent as Kubernetes prints it (its `String()`): `0`, `25%`.
fn int_or_string_text(value: &Value) -> String {
    match value {
        Value::Null => "0".to_string(),
        other => scalar_text(other),
    }
}

/// The number an int-or-percent stands for: the percentage, the integer, or 0.
fn int_or_percent_value(value: &Value) -> i64 {
    match value {
        Value::String(s) => match s.strip_suffix('%') {
            Some(digits) if names::is_valid_percent(s).is_empty() => digits.parse().unwrap_or(0),
            _ => s.parse().unwrap_or(0),
        },
        other => other.as_i64().unwrap_or(0),
    }
}

fn validate_int_or_percent(c: &mut Causes, value: &Value, path: &Path) {
    match value {
        Value::String(s) => {
            for msg in names::is_valid_percent(s) {
                c.invalid(path, Bad::Text(s.clone()), &msg);
            }
        }
        other => c.non_negative(path, other.as_i64()),
    }
}

fn validate_rolling_update(c: &mut Causes, rolling: &Value, path: &Path) {
    let unavailable = member(rolling, "maxUnavailable");
    let surge = member(rolling, "maxSurge");
    validate_int_or_percent(c, unavailable, &path.child("maxUnavailable"));
    validate_int_or_percent(c, surge, &path.child("maxSurge"));
    if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
        let bad = Bad::Text(int_or_string_text(unavailable));
        c.invalid(&path.child("maxUnavailable"), bad, "may not be 0 when `maxSurge` is 0");
    }
    let is_percent = matches!(unavailable, Value::String(s) if names::is_valid_percent(s).is_empty());
    if is_percent && int_or_percent_value(unavailable) > 100 {
        let bad = Bad::Text(int_or_string_text(unavailable));
        c.invalid(&path.child("maxUnavailable"), bad, "must not be greater than 100%");
    }
}

// ---------------------------------------------------------------------------------------------
// IP addresses.
// ---------------------------------------------------------------------------------------------

/// Parses an IP address the way Go's `ParseIPSloppy` does (IPv4 octets may have leading zeros).
fn parse_ip_sloppy(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = text.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut bytes = [0u8; 4];
    for (slot, octet) in bytes.iter_mut().zip(&octets) {
        if octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = octet.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(bytes)))
}

/// Reports `text` when it is not an IP address; returns the address when it is.
fn validate_ip(c: &mut Causes, text: &str, path: &Path) -> Option<IpAddr> {
    let ip = parse_ip_sloppy(text);
    if ip.is_none() {
        c.invalid(path, Bad::Str(text), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)");
    }
    ip
}

fn validate_cidr(c: &mut Causes, text: &str, path: &Path) {
    let valid = text.split_once('/').is_some_and(|(ip, bits)| {
        let max = match parse_ip_sloppy(ip) {
            Some(IpAddr::V4(_)) => 32,
            Some(IpAddr::V6(_)) => 128,
            None => return false,
        };
        bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
    });
    if !valid {
        c.invalid(path, Bad::Str(text), "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)");
    }
}

/// Endpoint and external addresses may not be unspecified, loopback or link-local.
fn validate_non_special_ip(c: &mut Causes, text: &str, path: &Path) {
    let Some(ip) = parse_ip_sloppy(text) else {
        return c.invalid(path, Bad::Str(text), "must be a valid IP address");
    };
    if ip.is_unspecified() {
        c.invalid(path, Bad::Str(text), &format!("may not be unspecified ({text})"));
    }
    if ip.is_loopback() {
        c.invalid(path, Bad::Str(text), "may not be in the loopback range (127.0.0.0/8, ::1/128)");
    }
    let (link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(v6) => (is_v6_link_local(&v6), v6.segments()[0] & 0xff0f == 0xff02),
    };
    if link_local {
        c.invalid(path, Bad::Str(text), "may not be in the link-local range (169.254.0.0/16, fe80::/10)");
    }
    if link_local_multicast {
        c.invalid(path, Bad::Str(text), "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)");
    }
}

fn is_v6_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

// ---------------------------------------------------------------------------------------------
// Services.
// ---------------------------------------------------------------------------------------------

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];

/// The cluster IPs of a service: `clusterIPs`, or `clusterIP` alone before the registry has
/// copied it into the list.
fn cluster_ips(spec: &Value) -> Vec<String> {
    let list: Vec<String> = items(spec, "clusterIPs").iter().map(scalar_text).collect();
    match (list.is_empty(), text(spec, "clusterIP")) {
        (false, _) => list,
        (true, "") => Vec::new(),
        (true, single) => vec![single.to_string()],
    }
}

fn is_headless(spec: &Value) -> bool {
    cluster_ips(spec) == ["None"]
}

fn validate_service(c: &mut Causes, service: &Value, old: Option<&Value>) {
    let spec = member(service, "spec");
    let spec_path = Path::root("spec");
    if let Some(old) = old {
        validate_service_update(c, spec, member(old, "spec"), &spec_path);
    }
    // Kubernetes allocates node ports before validating and stops at an allocation failure.
    if validate_node_port_range(c, spec, &spec_path) {
        return;
    }
    validate_object_meta(c, service, NameRule::Dns1035, true);
    let service_type = text(spec, "type");
    let ports = items(spec, "ports");
    if ports.is_empty() && !is_headless(spec) && service_type != "ExternalName" {
        c.required(&spec_path.child("ports"), "");
    }
    validate_service_type_rules(c, spec, service_type, &spec_path);
    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        validate_service_port(c, port, ports.len() > 1, &mut port_names, &spec_path.child("ports").index(i));
    }
    validate_labels(c, object(spec, "selector"), &spec_path.child("selector"));
    validate_session_affinity(c, spec, &spec_path);
    validate_cluster_ips(c, spec, service_type, &spec_path);
    for (i, ip) in items(spec, "externalIPs").iter().enumerate() {
        let (ip, at) = (scalar_text(ip), spec_path.child("externalIPs").index(i));
        if validate_ip(c, &ip, &at).is_some() {
            validate_non_special_ip(c, &ip, &at);
        }
    }
    validate_enum(c, spec, "type", SERVICE_TYPES, &spec_path.child("type"));
    validate_service_port_uniqueness(c, ports, service_type, &spec_path.child("ports"));
    validate_load_balancer_fields(c, spec, service_type, &spec_path);
    validate_traffic_policies(c, spec, service_type, &spec_path);
}

/// Node ports outside the range are refused by the allocator; returns whether any was.
fn validate_node_port_range(c: &mut Causes, spec: &Value, path: &Path) -> bool {
    if !matches!(text(spec, "type"), "NodePort" | "LoadBalancer") {
        return false;
    }
    let before = c.len();
    for (i, port) in items(spec, "ports").iter().enumerate() {
        let node_port = int(port, "nodePort").unwrap_or(0);
        if node_port != 0 && !(NODE_PORT_MIN..=NODE_PORT_MAX).contains(&node_port) {
            let detail = format!(
                "provided port is not in the valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}"
            );
            c.invalid(&path.child("ports").index(i).child("nodePort"), Bad::Int(node_port), &detail);
        }
    }
    c.len() > before
}

fn validate_service_type_rules(c: &mut Causes, spec: &Value, service_type: &str, path: &Path) {
    match service_type {
        "LoadBalancer" | "NodePort" if is_headless(spec) => {
            let detail = format!("may not be set to 'None' for {service_type} services");
            c.invalid(&path.child("clusterIPs").index(0), Bad::Str("None"), &detail);
        }
        "ExternalName" => {
            if !cluster_ips(spec).is_empty() {
                c.forbidden(&path.child("clusterIPs"), "may not be set for ExternalName services");
            }
            if !items(spec, "ipFamilies").is_empty() {
                c.forbidden(&path.child("ipFamilies"), "may not be set for ExternalName services");
            }
            if field(spec, "ipFamilyPolicy").is_some() {
                c.forbidden(&path.child("ipFamilyPolicy"), "may not be set for ExternalName services");
            }
            let cname = text(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                c.required(&path.child("externalName"), "");
            } else {
                c.invalid_all(&path.child("externalName"), cname, names::is_dns1123_subdomain(cname));
            }
        }
        _ => {}
    }
}

fn validate_service_port<'a>(
    c: &mut Causes,
    port: &'a Value,
    require_name: bool,
    seen: &mut HashSet<&'a str>,
    path: &Path,
) {
    let name = text(port, "name");
    if require_name && name.is_empty() {
        c.required(&path.child("name"), "");
    } else if !name.is_empty() {
        c.invalid_all(&path.child("name"), name, names::is_dns1123_label(name));
        if !seen.insert(name) {
            c.duplicate(&path.child("name"), Bad::Str(name));
        }
    }
    let number = int(port, "port").unwrap_or(0);
    for msg in names::is_valid_port_num(number) {
        c.invalid(&path.child("port"), Bad::Int(number), &msg);
    }
    validate_protocol(c, port, path);
    validate_port_num_or_name(c, member(port, "targetPort"), &path.child("targetPort"));
    if let Some(app_protocol) = opt_text(port, "appProtocol") {
        c.invalid_all(&path.child("appProtocol"), app_protocol, names::is_qualified_name(app_protocol));
    }
}

fn validate_session_affinity(c: &mut Causes, spec: &Value, path: &Path) {
    let affinity = text(spec, "sessionAffinity");
    validate_enum(c, spec, "sessionAffinity", &["ClientIP", "None"], &path.child("sessionAffinity"));
    let config_path = path.child("sessionAffinityConfig");
    let config = field(spec, "sessionAffinityConfig");
    if affinity == "None" && config.is_some() {
        c.forbidden(&config_path, "must not be set when session affinity is None");
    }
    if affinity != "ClientIP" {
        return;
    }
    let when = "when session affinity type is ClientIP";
    let Some(config) = config else { return c.required(&config_path, when) };
    let Some(client_ip) = field(config, "clientIP") else { return c.required(&config_path.child("clientIP"), when) };
    let timeout_path = config_path.child("clientIP").child("timeoutSeconds");
    match int(client_ip, "timeoutSeconds") {
        None => c.required(&timeout_path, when),
        Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => {
            let detail = format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}");
            c.invalid(&timeout_path, Bad::Int(t), &detail);
        }
        Some(_) => {}
    }
}

fn validate_cluster_ips(c: &mut Causes, spec: &Value, service_type: &str, path: &Path) {
    if service_type == "ExternalName" {
        return;
    }
    let ips_path = path.child("clusterIPs");
    let single = text(spec, "clusterIP");
    let listed: Vec<String> = items(spec, "clusterIPs").iter().map(scalar_text).collect();
    if !single.is_empty() && listed.first().is_some_and(|first| first != single) {
        let bad = go_string_slice(&listed.iter().map(String::as_str).collect::<Vec<_>>());
        c.invalid(&ips_path, Bad::Text(bad), "first value must match `clusterIP`");
    }
    let mut seen = HashSet::new();
    for (i, family) in items(spec, "ipFamilies").iter().enumerate() {
        let family = scalar_text(family);
        let at = path.child("ipFamilies").index(i);
        if family != "IPv4" && family != "IPv6" {
            c.not_supported(&at, Bad::Str(&family), &["IPv4", "IPv6"]);
        }
        if !seen.insert(family.clone()) {
            c.duplicate(&at, Bad::Str(&family));
        }
    }
    if let Some(policy) = opt_text(spec, "ipFamilyPolicy").filter(|p| !IP_FAMILY_POLICIES.contains(p)) {
        c.not_supported(&path.child("ipFamilyPolicy"), Bad::Str(policy), IP_FAMILY_POLICIES);
    }
    let ips = cluster_ips(spec);
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                let bad = go_string_slice(&ips.iter().map(String::as_str).collect::<Vec<_>>());
                c.invalid(&ips_path, Bad::Text(bad), "'None' must be the first and only value");
            }
            continue;
        }
        validate_ip(c, ip, &ips_path.index(i));
    }
    if ips.len() > 2 {
        let bad = go_string_slice(&ips.iter().map(String::as_str).collect::<Vec<_>>());
        c.invalid(&ips_path, Bad::Text(bad), "may only hold up to 2 values");
    }
}

fn validate_service_port_uniqueness(c: &mut Causes, ports: &[Value], service_type: &str, path: &Path) {
    if service_type == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int(port, "nodePort").unwrap_or(0) != 0 {
                c.forbidden(&path.index(i).child("nodePort"), "may not be used when `type` is 'ClusterIP'");
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let node_port = int(port, "nodePort").unwrap_or(0);
        if node_port != 0 && !node_ports.insert((text(port, "protocol"), node_port)) {
            c.duplicate(&path.index(i).child("nodePort"), Bad::Int(node_port));
        }
    }
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (protocol, number) = (text(port, "protocol"), int(port, "port").unwrap_or(0));
        if !seen.insert((protocol, number)) {
            let bad = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{number}, \
                 TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                go_quote(protocol)
            );
            c.duplicate(&path.index(i), Bad::Text(bad));
        }
    }
}

fn validate_load_balancer_fields(c: &mut Causes, spec: &Value, service_type: &str, path: &Path) {
    let is_load_balancer = service_type == "LoadBalancer";
    let only_for_lb = "may only be used when `type` is 'LoadBalancer'";
    let ranges = items(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        let ranges_path = path.child("LoadBalancerSourceRanges");
        if !is_load_balancer {
            c.forbidden(&ranges_path, only_for_lb);
        }
        for (i, range) in ranges.iter().enumerate() {
            validate_cidr(c, scalar_text(range).trim(), &ranges_path.index(i));
        }
    }
    let allocate = field(spec, "allocateLoadBalancerNodePorts");
    if allocate.is_some() && !is_load_balancer {
        c.forbidden(&path.child("allocateLoadBalancerNodePorts"), only_for_lb);
    }
    if is_load_balancer && allocate.is_none() {
        // Kubernetes names this field without its `spec` prefix.
        c.required(&Path::root("allocateLoadBalancerNodePorts"), "");
    }
    match opt_text(spec, "loadBalancerClass") {
        Some(class) if is_load_balancer => {
            c.invalid_all(&path.child("loadBalancerClass"), class, names::is_qualified_name(class));
        }
        Some(_) => c.forbidden(&path.child("loadBalancerClass"), only_for_lb),
        None => {}
    }
}

fn validate_traffic_policies(c: &mut Causes, spec: &Value, service_type: &str, path: &Path) {
    let externally_accessible = matches!(service_type, "LoadBalancer" | "NodePort")
        || (service_type == "ClusterIP" && !items(spec, "externalIPs").is_empty());
    let external = text(spec, "externalTrafficPolicy");
    let external_path = path.child("externalTrafficPolicy");
    if !externally_accessible {
        if !external.is_empty() {
            c.invalid(&external_path, Bad::Str(external), "may only be set for externally-accessible services");
        }
    } else {
        validate_enum(c, spec, "externalTrafficPolicy", TRAFFIC_POLICIES, &external_path);
    }
    let needs_health_check = service_type == "LoadBalancer" && external == "Local";
    let health_port = int(spec, "healthCheckNodePort").unwrap_or(0);
    let health_path = path.child("healthCheckNodePort");
    if !needs_health_check && health_port != 0 {
        let detail = "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'";
        c.invalid(&health_path, Bad::Int(health_port), detail);
    } else if needs_health_check && health_port != 0 {
        for msg in names::is_valid_port_num(health_port) {
            c.invalid(&health_path, Bad::Int(health_port), &msg);
        }
    }
    let internal_path = path.child("internalTrafficPolicy");
    match opt_text(spec, "internalTrafficPolicy") {
        None if matches!(service_type, "NodePort" | "LoadBalancer" | "ClusterIP") => c.required(&internal_path, ""),
        Some(policy) if !TRAFFIC_POLICIES.contains(&policy) => {
            c.not_supported(&internal_path, Bad::Str(policy), TRAFFIC_POLICIES);
        }
        _ => {}
    }
}

/// Cluster IPs and IP families may not change once set (an empty new value keeps the old one,
/// which the registry copies over), and a load balancer's class is fixed.
fn validate_service_update(c: &mut Causes, new: &Value, old: &Value, path: &Path) {
    let external_name = text(new, "type") == "ExternalName" || text(old, "type") == "ExternalName";
    let (new_ips, old_ips) = (cluster_ips(new), cluster_ips(old));
    let both_headless = is_headless(new) && is_headless(old);
    if !external_name && !both_headless && !new_ips.is_empty() && !old_ips.is_empty() {
        let bad = go_string_slice(&new_ips.iter().map(String::as_str).collect::<Vec<_>>());
        let changed: Vec<usize> = if new_ips.len() == old_ips.len() {
            new_ips.iter().zip(&old_ips).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect()
        } else if new_ips.first() != old_ips.first() {
            vec![0]
        } else {
            Vec::new()
        };
        for i in changed {
            c.invalid(&path.child("clusterIPs").index(i), Bad::Text(bad.clone()), "may not change once set");
        }
    }
    let (new_families, old_families) = (items(new, "ipFamilies"), items(old, "ipFamilies"));
    let families_fixed = !external_name && is_headless(new) == is_headless(old) && !is_headless(new);
    if families_fixed && !new_families.is_empty() && new_families.len() == old_families.len() {
        let new_list: Vec<String> = new_families.iter().map(scalar_text).collect();
        let bad = format!("[]core.IPFamily{{{}}}", new_list.iter().map(|f| go_quote(f)).collect::<Vec<_>>().join(", "));
        for (a, b) in new_families.iter().zip(old_families) {
            if a != b {
                c.invalid(&path.child("ipFamilies").index(0), Bad::Text(bad.clone()), "may not change once set");
            }
        }
    }
    let both_lb = text(new, "type") == "LoadBalancer" && text(old, "type") == "LoadBalancer";
    let (new_class, old_class) = (opt_text(new, "loadBalancerClass"), opt_text(old, "loadBalancerClass"));
    if both_lb && new_class != old_class {
        let bad = new_class.map_or(Bad::Null, Bad::Str);
        c.invalid(&path.child("loadBalancerClass"), bad, "may not change once set");
    }
}

// ---------------------------------------------------------------------------------------------
// ConfigMaps and Secrets.
// ---------------------------------------------------------------------------------------------

/// Bytes a base64 text decodes to.
fn base64_decoded_len(encoded: &str) -> usize {
    encoded.trim_end_matches('=').len() * 3 / 4
}

/// Checks `immutable: true` on update: it may not be unset and the listed data may not change.
fn validate_immutable_data(c: &mut Causes, new: &Value, old: &Value, data_keys: &[&str]) {
    if !boolean(old, "immutable") {
        return;
    }
    if !boolean(new, "immutable") {
        c.forbidden(&Path::root("immutable"), IMMUTABLE_WHEN_SET_MSG);
    }
    for key in data_keys {
        let unchanged = normalized(member(new, key)) == normalized(member(old, key))
            || (object(new, key).is_none_or(Map::is_empty) && object(old, key).is_none_or(Map::is_empty));
        if !unchanged {
            c.forbidden(&Path::root(key), IMMUTABLE_WHEN_SET_MSG);
        }
    }
}

fn validate_config_map(c: &mut Causes, config_map: &Value, old: Option<&Value>) {
    if let Some(old) = old {
        validate_immutable_data(c, config_map, old, &["data", "binaryData"]);
    }
    validate_object_meta(c, config_map, NameRule::Subdomain, true);
    let binary = object(config_map, "binaryData");
    let mut total = 0usize;
    for (key, value) in object(config_map, "data").into_iter().flatten() {
        let at = Path::root("data").key(key);
        c.invalid_all(&at, key, names::is_config_map_key(key));
        if binary.is_some_and(|b| b.contains_key(key)) {
            c.invalid(&at, Bad::Str(key), "duplicate of key present in binaryData");
        }
        total = total.saturating_add(scalar_text(value).len());
    }
    for (key, value) in binary.into_iter().flatten() {
        c.invalid_all(&Path::root("binaryData").key(key), key, names::is_config_map_key(key));
        total = total.saturating_add(base64_decoded_len(&scalar_text(value)));
    }
    if total > MAX_CONFIG_DATA_BYTES {
        // Kubernetes reports this against the whole object, with an empty field.
        c.too_long(&Path::root(""), MAX_CONFIG_DATA_BYTES);
    }
}

fn validate_secret(c: &mut Causes, secret: &Value, old: Option<&Value>) {
    if let Some(old) = old {
        let (new_type, old_type) = (text(secret, "type"), text(old, "type"));
        if new_type != old_type {
            c.invalid(&Path::root("type"), Bad::Str(new_type), IMMUTABLE_MSG);
        }
        validate_immutable_data(c, secret, old, &["data"]);
    }
    validate_object_meta(c, secret, NameRule::Subdomain, true);
    let data_path = Path::root("data");
    let mut keys: Vec<String> = Vec::new();
    let mut total = 0usize;
    for (key, value) in object(secret, "data").into_iter().flatten() {
        total = total.saturating_add(base64_decoded_len(&scalar_text(value)));
        keys.push(key.clone());
    }
    // `stringData` is merged into `data` before Kubernetes validates, so its keys count as data.
    for (key, value) in object(secret, "stringData").into_iter().flatten() {
        total = total.saturating_add(scalar_text(value).len());
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    for key in &keys {
        c.invalid_all(&data_path.key(key), key, names::is_config_map_key(key));
    }
    if total > MAX_CONFIG_DATA_BYTES {
        c.too_long(&data_path, MAX_CONFIG_DATA_BYTES);
    }
    validate_secret_type(c, secret, &keys, &data_path);
}

fn validate_secret_type(c: &mut Causes, secret: &Value, keys: &[String], data_path: &Path) {
    let has = |key: &str| keys.iter().any(|k| k == key);
    let require = |c: &mut Causes, key: &str| {
        if !has(key) {
            c.required(&data_path.key(key), "");
        }
    };
    match text(secret, "type") {
        "kubernetes.io/service-account-token" => {
            let name_key = "kubernetes.io/service-account.name";
            let annotations = object(member(secret, "metadata"), "annotations");
            if annotations.and_then(|a| a.get(name_key)).map(scalar_text).unwrap_or_default().is_empty() {
                c.required(&Path::root("metadata").child("annotations").key(name_key), "");
            }
        }
        "kubernetes.io/dockercfg" => require(c, ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => require(c, ".dockerconfigjson"),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            require(c, "username");
            require(c, "password");
        }
        "kubernetes.io/ssh-auth" => require(c, "ssh-privatekey"),
        "kubernetes.io/tls" => {
            require(c, "tls.crt");
            require(c, "tls.key");
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Namespaces, nodes, endpoints, endpoint slices, events, leases.
// ---------------------------------------------------------------------------------------------

fn validate_namespace(c: &mut Causes, namespace: &Value) {
    validate_object_meta(c, namespace, NameRule::Label, false);
    let finalizers = items(member(namespace, "spec"), "finalizers");
    validate_finalizers(c, finalizers, &Path::root("spec").child("finalizers"), false);
}

fn validate_node(c: &mut Causes, node: &Value, old: Option<&Value>) {
    validate_object_meta(c, node, NameRule::Subdomain, false);
    let spec = member(node, "spec");
    // Kubernetes reports taints under `metadata`, a long-standing quirk kept for compatibility.
    validate_taints(c, items(spec, "taints"), &Path::root("metadata").child("taints"));
    let cidrs_path = Path::root("spec").child("podCIDRs");
    for (i, cidr) in items(spec, "podCIDRs").iter().enumerate() {
        validate_cidr(c, &scalar_text(cidr), &cidrs_path.index(i));
    }
    let Some(old) = old else { return };
    let old_spec = member(old, "spec");
    let old_cidrs = items(old_spec, "podCIDRs");
    if !old_cidrs.is_empty() && old_cidrs != items(spec, "podCIDRs") {
        c.forbidden(&cidrs_path, "node updates may not change podCIDR except from \"\" to valid");
    }
    let old_provider = text(old_spec, "providerID");
    if !old_provider.is_empty() && old_provider != text(spec, "providerID") {
        let detail = "node updates may not change providerID except from \"\" to valid";
        c.forbidden(&Path::root("spec").child("providerID"), detail);
    }
}

fn validate_taints(c: &mut Causes, taints: &[Value], path: &Path) {
    let mut seen = HashSet::new();
    for (i, taint) in taints.iter().enumerate() {
        let at = path.index(i);
        let (key, value, effect) = (text(taint, "key"), text(taint, "value"), text(taint, "effect"));
        c.invalid_all(&at.child("key"), key, names::is_qualified_name(key));
        let problems = names::is_label_value(value);
        if !problems.is_empty() {
            c.invalid(&at.child("value"), Bad::Str(value), &problems.join(";"));
        }
        match effect {
            "" => c.required(&at.child("effect"), ""),
            e if !TAINT_EFFECTS.contains(&e) => c.not_supported(&at.child("effect"), Bad::Str(e), TAINT_EFFECTS),
            _ => {}
        }
        if !seen.insert((key, effect)) {
            let bad = format!(
                "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:(*v1.Time)(nil)}}",
                go_quote(key),
                go_quote(value),
                go_quote(effect)
            );
            c.duplicate_with_detail(&at, Bad::Text(bad), "taints must be unique by key and effect pair");
        }
    }
}

fn validate_endpoints(c: &mut Causes, endpoints: &Value) {
    validate_object_meta(c, endpoints, NameRule::Subdomain, true);
    for (i, subset) in items(endpoints, "subsets").iter().enumerate() {
        let at = Path::root("subsets").index(i);
        let (ready, not_ready) = (items(subset, "addresses"), items(subset, "notReadyAddresses"));
        if ready.is_empty() && not_ready.is_empty() {
            c.required(&at, "must specify `addresses` or `notReadyAddresses`");
        }
        for (list, key) in [(ready, "addresses"), (not_ready, "notReadyAddresses")] {
            for (j, address) in list.iter().enumerate() {
                validate_endpoint_address(c, address, &at.child(key).index(j));
            }
        }
        let ports = items(subset, "ports");
        for (j, port) in ports.iter().enumerate() {
            let port_path = at.child("ports").index(j);
            let name = text(port, "name");
            if ports.len() > 1 && name.is_empty() {
                c.required(&port_path.child("name"), "");
            } else if !name.is_empty() {
                c.invalid_all(&port_path.child("name"), name, names::is_dns1123_label(name));
            }
            let number = int(port, "port").unwrap_or(0);
            for msg in names::is_valid_port_num(number) {
                c.invalid(&port_path.child("port"), Bad::Int(number), &msg);
            }
            validate_protocol(c, port, &port_path);
        }
    }
}

fn validate_endpoint_address(c: &mut Causes, address: &Value, path: &Path) {
    let ip = text(address, "ip");
    validate_ip(c, ip, &path.child("ip"));
    let hostname = text(address, "hostname");
    if !hostname.is_empty() {
        c.invalid_all(&path.child("hostname"), hostname, names::is_dns1123_label(hostname));
    }
    if let Some(node_name) = opt_text(address, "nodeName") {
        c.invalid_all(&path.child("nodeName"), node_name, names::name_is_dns_subdomain(node_name, false));
    }
    validate_non_special_ip(c, ip, &path.child("ip"));
}

fn validate_endpoint_slice(c: &mut Causes, slice: &Value) {
    validate_object_meta(c, slice, NameRule::Subdomain, true);
    let address_type = text(slice, "addressType");
    validate_enum(c, slice, "addressType", &["FQDN", "IPv4", "IPv6"], &Path::root("addressType"));
    for (i, endpoint) in items(slice, "endpoints").iter().enumerate() {
        let at = Path::root("endpoints").index(i);
        let addresses = items(endpoint, "addresses");
        if addresses.is_empty() {
            c.required(&at.child("addresses"), "must contain at least 1 address");
        }
        for (j, address) in addresses.iter().enumerate() {
            validate_slice_address(c, &scalar_text(address), address_type, &at.child("addresses").index(j));
        }
        if let Some(hostname) = opt_text(endpoint, "hostname") {
            c.invalid_all(&at.child("hostname"), hostname, names::is_dns1123_label(hostname));
        }
    }
    let mut seen = HashSet::new();
    for (i, port) in items(slice, "ports").iter().enumerate() {
        let at = Path::root("ports").index(i);
        let name = text(port, "name");
        if !name.is_empty() {
            c.invalid_all(&at.child("name"), name, names::is_dns1123_label(name));
        }
        if !seen.insert(name) {
            c.duplicate(&at.child("name"), Bad::Str(name));
        }
        validate_protocol(c, port, &at);
        if let Some(app_protocol) = opt_text(port, "appProtocol") {
            c.invalid_all(&at.child("appProtocol"), app_protocol, names::is_qualified_name(app_protocol));
        }
    }
}

fn validate_slice_address(c: &mut Causes, address: &str, address_type: &str, path: &Path) {
    let family_ok = match (address_type, parse_ip_sloppy(address)) {
        ("IPv4", Some(IpAddr::V4(_))) | ("IPv6", Some(IpAddr::V6(_))) => true,
        ("IPv4", _) => {
            c.invalid(path, Bad::Str(address), "must be a valid IPv4 address");
            false
        }
        ("IPv6", _) => {
            c.invalid(path, Bad::Str(address), "must be a valid IPv6 address");
            false
        }
        _ => false,
    };
    if family_ok {
        validate_non_special_ip(c, address, path);
    }
    if address_type == "FQDN" {
        let name = address.strip_suffix('.').unwrap_or(address);
        let problems = names::is_dns1123_subdomain(name);
        if !problems.is_empty() {
            c.invalid(path, Bad::Str(name), &problems.join(","));
        } else if !name.contains('.') {
            c.invalid(path, Bad::Str(name), "should be a domain with at least two segments separated by dots");
        }
    }
}

/// Core/v1 events: an event without `eventTime` must name the namespace it lives in; one with
/// it must say who reported it.
fn validate_event(c: &mut Causes, event: &Value) {
    validate_object_meta(c, event, NameRule::Subdomain, true);
    let namespace = text(member(event, "metadata"), "namespace");
    let involved_namespace = text(member(event, "involvedObject"), "namespace");
    let involved_path = Path::root("involvedObject").child("namespace");
    let mismatch = "does not match event.namespace";
    if field(event, "eventTime").is_none() {
        let ok = if involved_namespace.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == involved_namespace
        };
        if !ok {
            c.invalid(&involved_path, Bad::Str(involved_namespace), mismatch);
        }
        return;
    }
    if involved_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
        c.invalid(&involved_path, Bad::Str(involved_namespace), mismatch);
    }
    let controller = text(event, "reportingComponent");
    if controller.is_empty() {
        c.required(&Path::root("source"), "");
    }
    c.invalid_all(&Path::root("source"), controller, names::is_qualified_name(controller));
    for (key, limit) in [("reportingInstance", 128usize), ("action", 128), ("reason", 128)] {
        let value = text(event, key);
        if value.is_empty() {
            c.required(&Path::root(key), "");
        }
        if value.len() > limit {
            c.invalid(&Path::root(key), Bad::Str(""), &format!("can have at most {limit} characters"));
        }
    }
    if text(event, "message").len() > 1024 {
        c.invalid(&Path::root("message"), Bad::Str(""), "can have at most 1024 characters");
    }
}

fn validate_lease(c: &mut Causes, lease: &Value) {
    validate_object_meta(c, lease, NameRule::Subdomain, true);
    let spec = member(lease, "spec");
    let spec_path = Path::root("spec");
    if let Some(duration) = int(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        c.invalid(&spec_path.child("leaseDurationSeconds"), Bad::Int(duration), "must be greater than 0");
    }
    c.non_negative(&spec_path.child("leaseTransitions"), int(spec, "leaseTransitions"));
}

#[cfg(test)]
mod tests {
    use super::super::defaults::apply_defaults;
    use super::*;
    use serde_json::json;

    use super::super::names::tests::{LABEL_MSG, SUBDOMAIN_MSG};

    type Expected<'a> = &'a [(&'a str, &'a str, &'a str)];

    fn defaulted(resource: &str, object: &Value) -> Value {
        let mut object = object.clone();
        apply_defaults(resource, &mut object);
        object
    }

    /// Validates `object` (and `old`) after defaulting both, as the API server does.
    fn check(resource: &str, object: &Value, old: Option<&Value>, expected: Expected<'_>) {
        let old = old.map(|o| defaulted(resource, o));
        let got = validate(resource, &defaulted(resource, object), old.as_ref());
        let got: Vec<(&str, &str, &str)> =
            got.iter().map(|c| (c.reason, c.field.as_str(), c.message.as_str())).collect();
        assert_eq!(got, expected, "{resource}: {object}");
    }

    /// A copy of `base` with the member at JSON pointer `at` set to `value` (null removes it).
    fn with(base: &Value, at: &str, value: Value) -> Value {
        let mut copy = base.clone();
        let (parent, key) = at.rsplit_once('/').unwrap_or(("", at));
        match copy.pointer_mut(parent) {
            Some(Value::Object(map)) if value.is_null() => drop(map.remove(key)),
            Some(Value::Object(map)) => drop(map.insert(key.to_string(), value)),
            Some(Value::Array(list)) => match key.parse::<usize>() {
                Ok(i) if i < list.len() => list[i] = value,
                _ => list.push(value),
            },
            _ => panic!("no parent at {at}"),
        }
        copy
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default",
            "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                "ports": [{"name": "http", "containerPort": 80}],
                "env": [{"name": "MODE", "value": "prod"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "0.5",
                    "memory": "128Mi"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "livenessProbe": {"httpGet": {"port": "http"}}}],
                "volumes": [{"name": "data", "emptyDir": {}}]}})
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    }

    fn service() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    }

    #[test]
    fn valid_objects_have_no_causes() {
        let objects = [
            ("pods", pod()),
            ("deployments", deployment()),
            ("replicasets", with(&deployment(), "/kind", json!("ReplicaSet"))),
            ("services", service()),
            ("services", json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}}})),
            (
                "services",
                json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com."}}),
            ),
            (
                "services",
                json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80,
                    "nodePort": 30080}]}}),
            ),
            (
                "configmaps",
                json!({"metadata": {"name": "cfg"}, "data": {"app.properties": "a=b"}, "binaryData": {"blob": "AAEC"}}),
            ),
            (
                "secrets",
                json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==",
                    "tls.key": "Yg=="}}),
            ),
            ("secrets", json!({"metadata": {"name": "s"}, "stringData": {"password": "x"}})),
            ("namespaces", json!({"metadata": {"name": "team-a"}})),
            (
                "nodes",
                json!({"metadata": {"name": "node-1.example"}, "spec": {"podCIDRs": ["10.244.1.0/24"],
                "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
            ),
            (
                "endpoints",
                json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.1.2.3"}],
                    "ports": [{"port": 8080}]}]}),
            ),
            (
                "endpointslices",
                json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.1.2.3"]}], "ports": [{"name": "http", "port": 8080}]}),
            ),
            (
                "events",
                json!({"metadata": {"name": "web.1", "namespace": "default"}, "involvedObject": {"kind": "Pod",
                    "namespace": "default"}}),
            ),
            (
                "leases",
                json!({"metadata": {"name": "kube-scheduler"}, "spec": {"leaseDurationSeconds": 15,
                    "leaseTransitions": 0}}),
            ),
            ("serviceaccounts", json!({"metadata": {"name": "default"}})),
            ("pods", with(&pod(), "/metadata", json!({"generateName": "web-"}))),
        ];
        for (resource, object) in objects {
            check(resource, &object, None, &[]);
        }
    }

    #[test]
    fn object_metadata_rules() {
        let cases: &[(&str, Value, Expected<'_>)] = &[
            (
                "/metadata/name",
                json!("Foo"),
                &[("FieldValueInvalid", "metadata.name", &format!("Invalid value: \"Foo\": {SUBDOMAIN_MSG}"))],
            ),
            (
                "/metadata/name",
                Value::Null,
                &[("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")],
            ),
            (
                "/metadata/namespace",
                json!("a.b"),
                &[("FieldValueInvalid", "metadata.namespace", "Invalid value: \"a.b\": must not contain dots")],
            ),
            (
                "/metadata/labels",
                json!({"bad key": "v"}),
                &[(
                    "FieldValueInvalid",
                    "metadata.labels",
                    "Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
                 and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', \
                     regex used for validation \
                 is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                )],
            ),
            (
                "/metadata/labels",
                json!({"app": "x".repeat(64)}),
                &[(
                    "FieldValueInvalid",
                    "metadata.labels",
                    &format!("Invalid value: \"{}\": must be no more than 63 characters", "x".repeat(64)),
                )],
            ),
            (
                "/metadata/annotations",
                json!({"Example.COM/Key": "ok", "/x": "v"}),
                &[(
                    "FieldValueInvalid",
                    "metadata.annotations",
                    "Invalid value: \"/x\": prefix part must be non-empty",
                )],
            ),
            (
                "/metadata/annotations",
                json!({"big": "x".repeat(MAX_ANNOTATIONS_BYTES)}),
                &[("FieldValueTooLong", "metadata.annotations", "Too long: may not be more than 262144 bytes")],
            ),
            (
                "/metadata/finalizers",
                json!(["custom"]),
                &[(
                    "FieldValueInvalid",
                    "metadata.finalizers[0]",
                    "Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified",
                )],
            ),
        ];
        for (at, value, expected) in cases {
            check("configmaps", &with(&json!({"metadata": {"name": "cfg"}}), at, value.clone()), None, expected);
        }
    }

    #[test]
    fn pod_spec_rules() {
        let restart = "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"";
        let dns = "Unsupported value: \"Weird\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"";
        let cases: &[(&str, Value, Expected<'_>)] = &[
            ("/spec/containers", json!([]), &[("FieldValueRequired", "spec.containers", "Required value")]),
            (
                "/spec/containers/0/name",
                json!("Web_1"),
                &[("FieldValueInvalid", "spec.containers[0].name", &format!("Invalid value: \"Web_1\": {LABEL_MSG}"))],
            ),
            (
                "/spec/containers/0/image",
                json!(""),
                &[("FieldValueRequired", "spec.containers[0].image", "Required value")],
            ),
            (
                "/spec/containers/0/image",
                json!(" nginx"),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].image",
                    "Invalid value: \" nginx\": must not have leading or trailing whitespace",
                )],
            ),
            (
                "/spec/containers/0/ports/0/containerPort",
                json!(70000),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].ports[0].containerPort",
                    "Invalid value: 70000: must be between 1 and 65535, inclusive",
                )],
            ),
            (
                "/spec/containers/0/ports/0/protocol",
                json!("HTTP"),
                &[(
                    "FieldValueNotSupported",
                    "spec.containers[0].ports[0].protocol",
                    "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                )],
            ),
            (
                "/spec/containers/0/ports",
                json!([{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}]),
                &[("FieldValueDuplicate", "spec.containers[0].ports[1].name", "Duplicate value: \"http\"")],
            ),
            (
                "/spec/containers/0/ports/0/name",
                json!("8080"),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].ports[0].name",
                    "Invalid value: \"8080\": must contain at least one letter (a-z)",
                )],
            ),
            (
                "/spec/containers/0/env/0/name",
                json!("A=B"),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].env[0].name",
                    "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                )],
            ),
            (
                "/spec/containers/0/volumeMounts/0/name",
                json!("logs"),
                &[("FieldValueNotFound", "spec.containers[0].volumeMounts[0].name", "Not found: \"logs\"")],
            ),
            (
                "/spec/containers/0/volumeMounts/0/mountPath",
                json!(""),
                &[("FieldValueRequired", "spec.containers[0].volumeMounts[0].mountPath", "Required value")],
            ),
            ("/spec/restartPolicy", json!("Sometimes"), &[("FieldValueNotSupported", "spec.restartPolicy", restart)]),
            ("/spec/dnsPolicy", json!("Weird"), &[("FieldValueNotSupported", "spec.dnsPolicy", dns)]),
            (
                "/spec/containers/0/imagePullPolicy",
                json!("Sometimes"),
                &[(
                    "FieldValueNotSupported",
                    "spec.containers[0].imagePullPolicy",
                    "Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                )],
            ),
            (
                "/spec/containers/0/resources",
                json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].resources.requests",
                    "Invalid value: \"2\": must be less than or equal to cpu limit of 1",
                )],
            ),
            (
                "/spec/containers/0/resources",
                json!({"requests": {"memory": "128Mi"}, "limits": {"memory": "0.0625Gi"}}),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].resources.requests",
                    "Invalid value: \"128Mi\": must be less than or equal to memory limit of 64Mi",
                )],
            ),
            (
                "/spec/containers/0/resources",
                json!({"requests": {"cpu": "lots"}}),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].resources.requests[cpu]",
                    "Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )],
            ),
            (
                "/spec/containers/0/resources",
                json!({"requests": {"memory": "-1"}}),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].resources.requests[memory]",
                    "Invalid value: \"-1\": must be greater than or equal to 0",
                )],
            ),
            (
                "/spec/containers/0/resources",
                json!({"requests": {"gpu": "1"}}),
                &[
                    (
                        "FieldValueInvalid",
                        "spec.containers[0].resources.requests[gpu]",
                        "Invalid value: \"gpu\": must be a standard resource type or fully qualified",
                    ),
                    (
                        "FieldValueInvalid",
                        "spec.containers[0].resources.requests[gpu]",
                        "Invalid value: \"gpu\": must be a standard resource for containers",
                    ),
                ],
            ),
            (
                "/spec/containers/0/resources",
                json!({"requests": {"example.com/gpu": "1"}}),
                &[(
                    "FieldValueRequired",
                    "spec.containers[0].resources.limits",
                    "Required value: Limit must be set for non overcommitable resources",
                )],
            ),
            (
                "/spec/containers/0/livenessProbe",
                json!({"periodSeconds": 5}),
                &[(
                    "FieldValueRequired",
                    "spec.containers[0].livenessProbe",
                    "Required value: must specify a handler type",
                )],
            ),
            (
                "/spec/containers/0/livenessProbe",
                json!({"exec": {"command": ["true"]}, "successThreshold": 2}),
                &[(
                    "FieldValueInvalid",
                    "spec.containers[0].livenessProbe.successThreshold",
                    "Invalid value: 2: must be 1",
                )],
            ),
            (
                "/spec/volumes",
                json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]),
                &[("FieldValueDuplicate", "spec.volumes[1].name", "Duplicate value: \"data\"")],
            ),
            (
                "/spec/volumes",
                json!([{"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}}]),
                &[
                    (
                        "FieldValueForbidden",
                        "spec.volumes[0].hostPath",
                        "Forbidden: may not specify more than 1 volume type",
                    ),
                    ("FieldValueNotFound", "spec.containers[0].volumeMounts[0].name", "Not found: \"data\""),
                ],
            ),
            (
                "/spec/volumes",
                json!([{"name": "data", "configMap": {}}]),
                &[
                    ("FieldValueRequired", "spec.volumes[0].configMap.name", "Required value"),
                    ("FieldValueNotFound", "spec.containers[0].volumeMounts[0].name", "Not found: \"data\""),
                ],
            ),
            (
                "/spec/activeDeadlineSeconds",
                json!(0),
                &[(
                    "FieldValueInvalid",
                    "spec.activeDeadlineSeconds",
                    "Invalid value: 0: must be between 1 and 2147483647, inclusive",
                )],
            ),
            (
                "/spec/initContainers",
                json!([{"name": "web", "image": "busybox"}]),
                &[("FieldValueDuplicate", "spec.initContainers[0].name", "Duplicate value: \"web\"")],
            ),
            (
                "/spec/initContainers",
                json!([{"name": "init", "image": "busybox", "readinessProbe": {"exec": {"command": ["x"]}}}]),
                &[(
                    "FieldValueForbidden",
                    "spec.initContainers[0].readinessProbe",
                    "Forbidden: may not be set for init containers without restartPolicy=Always",
                )],
            ),
            (
                "/spec/serviceAccountName",
                json!("Robot"),
                &[(
                    "FieldValueInvalid",
                    "spec.serviceAccountName",
                    &format!("Invalid value: \"Robot\": {SUBDOMAIN_MSG}"),
                )],
            ),
            (
                "/spec/tolerations",
                json!([{"key": "k", "operator": "Exists", "value": "v"}]),
                &[(
                    "FieldValueInvalid",
                    "spec.tolerations[0].operator",
                    "Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
                )],
            ),
            (
                "/spec/ephemeralContainers",
                json!([{"name": "debug", "image": "busybox"}]),
                &[("FieldValueForbidden", "spec.ephemeralContainers", "Forbidden: cannot be set on create")],
            ),
        ];
        for (at, value, expected) in cases {
            check("pods", &with(&pod(), at, value.clone()), None, expected);
        }
    }

    #[test]
    fn pod_fields_defaulting_would_fill_are_required() {
        let raw = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let causes = validate("pods", &raw, None);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.terminationGracePeriodSeconds",
                "spec.containers[0].terminationMessagePolicy",
                "spec.containers[0].imagePullPolicy",
                "spec.restartPolicy",
                "spec.dnsPolicy",
            ]
        );
        assert!(causes.iter().all(|c| c.reason == REASON_REQUIRED && c.message == "Required value"));
    }

    #[test]
    fn host_network_ports_must_match() {
        let spec_pod = with(&pod(), "/spec/hostNetwork", json!(true));
        let mismatched = with(&spec_pod, "/spec/containers/0/ports/0/hostPort", json!(8080));
        check(
            "pods",
            &mismatched,
            None,
            &[(
                "FieldValueInvalid",
                "spec.containers[0].ports[0].hostPort",
                "Invalid value: 8080: must match `containerPort` when `hostNetwork` is true",
            )],
        );
        check("pods", &spec_pod, None, &[]);
    }

    #[test]
    fn pod_updates() {
        let old = pod();
        check("pods", &with(&old, "/spec/containers/0/image", json!("nginx:1.28")), Some(&old), &[]);
        check("pods", &with(&old, "/spec/activeDeadlineSeconds", json!(60)), Some(&old), &[]);
        let tolerated = with(&old, "/spec/tolerations", json!([{"key": "a", "operator": "Exists"}]));
        check("pods", &tolerated, Some(&old), &[]);
        check(
            "pods",
            &old,
            Some(&tolerated),
            &[(
                "FieldValueForbidden",
                "spec.tolerations",
                "Forbidden: existing toleration can not be modified except its tolerationSeconds",
            )],
        );
        let added = with(&old, "/spec/containers/1", json!({"name": "side", "image": "busybox"}));
        check(
            "pods",
            &added,
            Some(&old),
            &[("FieldValueForbidden", "spec.containers", "Forbidden: pod updates may not add or remove containers")],
        );

        let changed = defaulted("pods", &with(&old, "/spec/restartPolicy", json!("Never")));
        let causes = validate("pods", &changed, Some(&defaulted("pods", &old)));
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!((causes[0].reason, causes[0].field.as_str()), (REASON_FORBIDDEN, "spec"));
        let expected_head = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,\
            `spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing \
            tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n";
        assert!(causes[0].message.starts_with(expected_head), "{}", causes[0].message);
        assert!(
            causes[0].message.ends_with("- spec.restartPolicy: \"Always\"\n+ spec.restartPolicy: \"Never\""),
            "{}",
            causes[0].message
        );
    }

    #[test]
    fn deployment_rules() {
        let mismatch = "Invalid value: map[string]string{\"app\":\"web\", \"tier\":\"front\"}: `selector` does not match template `labels`";
        let cases: &[(&str, Value, Expected<'_>)] = &[
            (
                "/spec/selector",
                Value::Null,
                &[
                    ("FieldValueRequired", "spec.selector", "Required value"),
                    ("FieldValueInvalid", "spec.template.metadata.labels", mismatch),
                ],
            ),
            (
                "/spec/selector",
                json!({"matchLabels": {"app": "api"}}),
                &[("FieldValueInvalid", "spec.template.metadata.labels", mismatch)],
            ),
            (
                "/spec/selector",
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
                &[("FieldValueInvalid", "spec.template.metadata.labels", mismatch)],
            ),
            (
                "/spec/selector",
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["back", "front"]}]}),
                &[],
            ),
            (
                "/spec/selector",
                json!({}),
                &[(
                    "FieldValueInvalid",
                    "spec.selector",
                    "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: \
                 empty selector is invalid for deployment",
                )],
            ),
            (
                "/spec/selector",
                json!({"matchExpressions": [{"key": "app", "operator": "Near", "values": ["web"]}]}),
                &[
                    (
                        "FieldValueInvalid",
                        "spec.selector.matchExpressions[0].operator",
                        "Invalid value: \"Near\": not a valid selector operator",
                    ),
                    (
                        "FieldValueInvalid",
                        "spec.selector",
                        "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), \
                 MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", \
                     Operator:\"Near\", \
                 Values:[]string{\"web\"}}}}: invalid label selector",
                    ),
                ],
            ),
            (
                "/spec/replicas",
                json!(-1),
                &[("FieldValueInvalid", "spec.replicas", "Invalid value: -1: must be greater than or equal to 0")],
            ),
            (
                "/spec/strategy",
                json!({"type": "BlueGreen"}),
                &[(
                    "FieldValueNotSupported",
                    "spec.strategy",
                    "Unsupported value: apps.DeploymentStrategy{Type:\"BlueGreen\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: \
                 supported values: \"Recreate\", \"RollingUpdate\"",
                )],
            ),
            (
                "/spec/strategy",
                json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
                &[(
                    "FieldValueInvalid",
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                )],
            ),
            (
                "/spec/strategy",
                json!({"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": "150%"}}),
                &[(
                    "FieldValueInvalid",
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "Invalid value: 150%: must not be greater than 100%",
                )],
            ),
            (
                "/spec/strategy",
                json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
                &[(
                    "FieldValueForbidden",
                    "spec.strategy.rollingUpdate",
                    "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                )],
            ),
            (
                "/spec/template/spec/restartPolicy",
                json!("Never"),
                &[(
                    "FieldValueNotSupported",
                    "spec.template.spec.restartPolicy",
                    "Unsupported value: \"Never\": supported values: \"Always\"",
                )],
            ),
            (
                "/spec/template/spec/containers/0/image",
                json!(""),
                &[("FieldValueRequired", "spec.template.spec.containers[0].image", "Required value")],
            ),
            (
                "/spec/template/spec/activeDeadlineSeconds",
                json!(10),
                &[(
                    "FieldValueForbidden",
                    "spec.template.spec.activeDeadlineSeconds",
                    "Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
                )],
            ),
            ("/spec/progressDeadlineSeconds", json!(5), &[]),
            (
                "/spec/minReadySeconds",
                json!(700),
                &[(
                    "FieldValueInvalid",
                    "spec.progressDeadlineSeconds",
                    "Invalid value: 600: must be greater than minReadySeconds",
                )],
            ),
        ];
        for (at, value, expected) in cases {
            check("deployments", &with(&deployment(), at, value.clone()), None, expected);
        }
    }

    #[test]
    fn workload_selector_is_immutable() {
        let old = deployment();
        let moved = with(
            &with(&old, "/spec/selector/matchLabels/app", json!("web2")),
            "/spec/template/metadata/labels/app",
            json!("web2"),
        );
        let expected: Expected<'_> = &[(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, \
             MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
        )];
        check("deployments", &moved, Some(&old), expected);
        check("replicasets", &moved, Some(&old), expected);
        check("deployments", &with(&old, "/spec/replicas", json!(10)), Some(&old), &[]);
        check("replicasets", &with(&old, "/spec/template/spec/containers/0/image", json!("nginx:2")), Some(&old), &[]);
    }

    #[test]
    fn replica_set_rules() {
        let rs = with(&deployment(), "/kind", json!("ReplicaSet"));
        check(
            "replicasets",
            &with(&rs, "/spec/minReadySeconds", json!(-5)),
            None,
            &[("FieldValueInvalid", "spec.minReadySeconds", "Invalid value: -5: must be greater than or equal to 0")],
        );
        check(
            "replicasets",
            &with(&rs, "/spec/selector/matchLabels/app", json!("x")),
            None,
            &[(
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                "Invalid value: map[string]string{\"app\":\"web\", \"tier\":\"front\"}: `selector` does not match template `labels`",
            )],
        );
    }

    #[test]
    fn service_rules() {
        let two_ports = json!([{"port": 80}, {"port": 443}]);
        let cases: &[(&str, Value, Expected<'_>)] = &[
            ("/spec/ports", Value::Null, &[("FieldValueRequired", "spec.ports", "Required value")]),
            (
                "/spec/ports",
                json!([{"port": 0}]),
                &[
                    (
                        "FieldValueInvalid",
                        "spec.ports[0].port",
                        "Invalid value: 0: must be between 1 and 65535, inclusive",
                    ),
                    (
                        "FieldValueInvalid",
                        "spec.ports[0].targetPort",
                        "Invalid value: 0: must be between 1 and 65535, inclusive",
                    ),
                ],
            ),
            (
                "/spec/ports",
                two_ports,
                &[
                    ("FieldValueRequired", "spec.ports[0].name", "Required value"),
                    ("FieldValueRequired", "spec.ports[1].name", "Required value"),
                ],
            ),
            (
                "/spec/ports",
                json!([{"name": "web", "port": 80}, {"name": "web", "port": 81}]),
                &[("FieldValueDuplicate", "spec.ports[1].name", "Duplicate value: \"web\"")],
            ),
            (
                "/spec/ports",
                json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
                &[(
                    "FieldValueDuplicate",
                    "spec.ports[1]",
                    "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, \
                 TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
                )],
            ),
            (
                "/spec/ports/0/protocol",
                json!("HTTP"),
                &[(
                    "FieldValueNotSupported",
                    "spec.ports[0].protocol",
                    "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                )],
            ),
            (
                "/spec/ports/0/nodePort",
                json!(30001),
                &[(
                    "FieldValueForbidden",
                    "spec.ports[0].nodePort",
                    "Forbidden: may not be used when `type` is 'ClusterIP'",
                )],
            ),
            (
                "/spec/type",
                json!("Magic"),
                &[(
                    "FieldValueNotSupported",
                    "spec.type",
                    "Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                )],
            ),
            (
                "/spec/clusterIP",
                json!("10.0.0.300"),
                &[(
                    "FieldValueInvalid",
                    "spec.clusterIPs[0]",
                    "Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )],
            ),
            (
                "/spec/sessionAffinity",
                json!("Sticky"),
                &[(
                    "FieldValueNotSupported",
                    "spec.sessionAffinity",
                    "Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
                )],
            ),
            (
                "/spec/externalTrafficPolicy",
                json!("Local"),
                &[(
                    "FieldValueInvalid",
                    "spec.externalTrafficPolicy",
                    "Invalid value: \"Local\": may only be set for externally-accessible services",
                )],
            ),
            (
                "/metadata/name",
                json!("1web"),
                &[(
                    "FieldValueInvalid",
                    "metadata.name",
                    "Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with \
                 an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', \
                     regex used for \
                 validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                )],
            ),
        ];
        for (at, value, expected) in cases {
            check("services", &with(&service(), at, value.clone()), None, expected);
        }
        let node_port = json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort",
            "ports": [{"name": "Bad_Name", "port": 80, "nodePort": 80}]}});
        check(
            "services",
            &node_port,
            None,
            &[(
                "FieldValueInvalid",
                "spec.ports[0].nodePort",
                "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            )],
        );
        let external = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName"}});
        check("services", &external, None, &[("FieldValueRequired", "spec.externalName", "Required value")]);
        let headless_lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "None",
            "ports": [{"port": 80}]}});
        check(
            "services",
            &headless_lb,
            None,
            &[(
                "FieldValueInvalid",
                "spec.clusterIPs[0]",
                "Invalid value: \"None\": may not be set to 'None' for LoadBalancer services",
            )],
        );
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let old = with(&service(), "/spec/clusterIP", json!("10.0.0.1"));
        check(
            "services",
            &with(&service(), "/spec/clusterIP", json!("10.0.0.2")),
            Some(&old),
            &[(
                "FieldValueInvalid",
                "spec.clusterIPs[0]",
                "Invalid value: []string{\"10.0.0.2\"}: may not change once set",
            )],
        );
        check("services", &service(), Some(&old), &[]);
        check("services", &old, Some(&old), &[]);
    }

    #[test]
    fn config_map_rules() {
        let base = json!({"metadata": {"name": "cfg"}, "data": {"ok": "v"}});
        check(
            "configmaps",
            &with(&base, "/data", json!({"a b": "v"})),
            None,
            &[(
                "FieldValueInvalid",
                "data[a b]",
                "Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  \
             or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            )],
        );
        check(
            "configmaps",
            &with(&base, "/binaryData", json!({"ok": "AA=="})),
            None,
            &[("FieldValueInvalid", "data[ok]", "Invalid value: \"ok\": duplicate of key present in binaryData")],
        );
        check(
            "configmaps",
            &with(&base, "/data", json!({"big": "x".repeat(MAX_CONFIG_DATA_BYTES + 1)})),
            None,
            &[("FieldValueTooLong", "", "Too long: may not be more than 1048576 bytes")],
        );
        let locked = with(&base, "/immutable", json!(true));
        check(
            "configmaps",
            &with(&locked, "/data", json!({"ok": "changed"})),
            Some(&locked),
            &[("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set")],
        );
        check("configmaps", &with(&base, "/data", json!({"ok": "changed"})), Some(&base), &[]);
    }

    #[test]
    fn secret_rules() {
        let tls = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {}});
        check(
            "secrets",
            &tls,
            None,
            &[
                ("FieldValueRequired", "data[tls.crt]", "Required value"),
                ("FieldValueRequired", "data[tls.key]", "Required value"),
            ],
        );
        check("secrets", &with(&tls, "/stringData", json!({"tls.crt": "c", "tls.key": "k"})), None, &[]);
        let opaque = json!({"metadata": {"name": "s"}, "data": {"key": "dmFsdWU="}});
        check(
            "secrets",
            &with(&opaque, "/type", json!("kubernetes.io/tls")),
            Some(&opaque),
            &[
                ("FieldValueInvalid", "type", "Invalid value: \"kubernetes.io/tls\": field is immutable"),
                ("FieldValueRequired", "data[tls.crt]", "Required value"),
                ("FieldValueRequired", "data[tls.key]", "Required value"),
            ],
        );
        check(
            "secrets",
            &with(&opaque, "/stringData", json!({"bad/key": "x"})),
            None,
            &[(
                "FieldValueInvalid",
                "data[bad/key]",
                "Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. \
             'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            )],
        );
        let token = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"});
        check(
            "secrets",
            &token,
            None,
            &[("FieldValueRequired", "metadata.annotations[kubernetes.io/service-account.name]", "Required value")],
        );
        let huge = "QUFB".repeat(MAX_CONFIG_DATA_BYTES / 3 + 1);
        check(
            "secrets",
            &with(&opaque, "/data", json!({"big": huge})),
            None,
            &[("FieldValueTooLong", "data", "Too long: may not be more than 1048576 bytes")],
        );
    }

    #[test]
    fn cluster_scoped_and_small_resources() {
        check(
            "namespaces",
            &json!({"metadata": {"name": "Team_A"}}),
            None,
            &[("FieldValueInvalid", "metadata.name", &format!("Invalid value: \"Team_A\": {LABEL_MSG}"))],
        );
        check(
            "namespaces",
            &json!({"metadata": {"name": "a.b"}}),
            None,
            &[("FieldValueInvalid", "metadata.name", "Invalid value: \"a.b\": must not contain dots")],
        );
        check(
            "namespaces",
            &json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["bogus"]}}),
            None,
            &[(
                "FieldValueInvalid",
                "spec.finalizers",
                "Invalid value: \"bogus\": name is neither a standard finalizer name nor is it fully qualified",
            )],
        );
        check(
            "nodes",
            &json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Never"}]}}),
            None,
            &[(
                "FieldValueNotSupported",
                "metadata.taints[0].effect",
                "Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            )],
        );
        let old_node = json!({"metadata": {"name": "n"}, "spec": {"providerID": "aws://1"}});
        check(
            "nodes",
            &json!({"metadata": {"name": "n"}, "spec": {"providerID": "aws://2"}}),
            Some(&old_node),
            &[(
                "FieldValueForbidden",
                "spec.providerID",
                "Forbidden: node updates may not change providerID except from \"\" to valid",
            )],
        );
        check(
            "endpoints",
            &json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "127.0.0.1"}]}]}),
            None,
            &[(
                "FieldValueInvalid",
                "subsets[0].addresses[0].ip",
                "Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            )],
        );
        check(
            "endpoints",
            &json!({"metadata": {"name": "e"}, "subsets": [{}]}),
            None,
            &[("FieldValueRequired", "subsets[0]", "Required value: must specify `addresses` or `notReadyAddresses`")],
        );
        check(
            "endpointslices",
            &json!({"metadata": {"name": "s"}, "endpoints": [{"addresses": []}]}),
            None,
            &[
                ("FieldValueRequired", "addressType", "Required value"),
                ("FieldValueRequired", "endpoints[0].addresses", "Required value: must contain at least 1 address"),
            ],
        );
        check(
            "endpointslices",
            &json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": [{"addresses": ["::1"]}]}),
            None,
            &[(
                "FieldValueInvalid",
                "endpoints[0].addresses[0]",
                "Invalid value: \"::1\": must be a valid IPv4 address",
            )],
        );
        check(
            "events",
            &json!({"metadata": {"name": "e", "namespace": "team"}, "involvedObject": {"namespace": "other"}}),
            None,
            &[(
                "FieldValueInvalid",
                "involvedObject.namespace",
                "Invalid value: \"other\": does not match event.namespace",
            )],
        );
        check(
            "leases",
            &json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}),
            None,
            &[("FieldValueInvalid", "spec.leaseDurationSeconds", "Invalid value: 0: must be greater than 0")],
        );
        check(
            "serviceaccounts",
            &json!({"metadata": {"name": "Robot"}}),
            None,
            &[("FieldValueInvalid", "metadata.name", &format!("Invalid value: \"Robot\": {SUBDOMAIN_MSG}"))],
        );
    }

    #[test]
    fn invalid_message_formats() {
        let one = [FieldCause {
            reason: REASON_REQUIRED,
            message: "Required value".into(),
            field: "spec.template.spec.containers[0].image".into(),
        }];
        assert_eq!(
            invalid_message("Deployment.apps", "web", &one),
            "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value"
        );
        let several = [
            FieldCause { reason: REASON_REQUIRED, message: "Required value".into(), field: "spec.selector".into() },
            FieldCause {
                reason: REASON_INVALID,
                message: "Invalid value: \"Foo\": bad".into(),
                field: "metadata.name".into(),
            },
            FieldCause { reason: REASON_REQUIRED, message: "Required value".into(), field: "spec.selector".into() },
        ];
        assert_eq!(
            invalid_message("Deployment.apps", "web", &several),
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, metadata.name: Invalid value: \"Foo\": bad]"
        );
        assert_eq!(invalid_message("Pod", "p", &[]), "Pod \"p\" is invalid");
        let causes = validate(
            "deployments",
            &defaulted("deployments", &with(&deployment(), "/spec/selector", Value::Null)),
            None,
        );
        assert_eq!(
            invalid_message(qualified_kind("deployments").unwrap_or("?"), "web", &causes),
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.template.metadata.labels: Invalid value: \
             map[string]string{\"app\":\"web\", \"tier\":\"front\"}: `selector` does not match template `labels`]"
        );
        assert_eq!(qualified_kind("pods"), Some("Pod"));
        assert_eq!(qualified_kind("leases"), Some("Lease.coordination.k8s.io"));
        assert_eq!(qualified_kind("widgets"), None);
    }

    #[test]
    fn kubectl_bodies_pass_strict_decoding_defaulting_and_validation() {
        let bodies = [
            (
                "deployments",
                r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","creationTimestamp":null,
                "labels":{"app":"web"}},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":
                {"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx",
                "resources":{}}]}},"strategy":{}},"status":{}}"#,
            ),
            (
                "services",
                r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"web","creationTimestamp":null,
                "labels":{"app":"web"}},"spec":{"ports":[{"name":"80-80","protocol":"TCP","port":80,"targetPort":80}],
                "selector":{"app":"web"},"type":"ClusterIP"},"status":{"loadBalancer":{}}}"#,
            ),
            (
                "pods",
                r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","creationTimestamp":null,"labels":{"run":"web"}},
                "spec":{"containers":[{"name":"web","image":"nginx","resources":{}}],"restartPolicy":"Always",
                "dnsPolicy":"ClusterFirst"},"status":{}}"#,
            ),
            (
                "configmaps",
                r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cfg","creationTimestamp":null},
                "data":{"key":"value"}}"#,
            ),
            (
                "namespaces",
                r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"team","creationTimestamp":null},
                "spec":{},"status":{}}"#,
            ),
        ];
        for (resource, body) in bodies {
            let mut object = super::super::strict::decode_strict(resource, body.as_bytes())
                .unwrap_or_else(|e| panic!("{resource}: {}", e.message()));
            apply_defaults(resource, &mut object);
            assert_eq!(validate(resource, &object, None), Vec::new(), "{resource}: {object}");
            assert_eq!(validate(resource, &object, Some(&object)), Vec::new(), "{resource} update: {object}");
        }
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }

    #[test]
    fn quantities_parse_compare_and_print_like_kubernetes() {
        let canonical = [
            ("100m", "100m"),
            ("0.5", "500m"),
            ("1", "1"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1k", "1k"),
            ("1000", "1k"),
            ("64Mi", "64Mi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1e3", "1e3"),
            ("+2", "2"),
            ("-1", "-1"),
            ("0", "0"),
            (".5", "500m"),
            ("1.", "1"),
        ];
        for (input, expected) in canonical {
            let q = Quantity::parse(input).unwrap_or_else(|| panic!("{input} should parse"));
            assert_eq!(q.canonical(), expected, "{input}");
        }
        for bad in ["", "lots", "1.2.3", "1K", "1x", "--1", "1e", "Mi", ".", "1e999", "9".repeat(80).as_str()] {
            assert!(Quantity::parse(bad).is_none(), "{bad:?} should not parse");
        }
        let parse = |s: &str| Quantity::parse(s).unwrap_or_else(|| panic!("{s}"));
        assert!(parse("100m") < parse("0.5"));
        assert!(parse("1Gi") > parse("1G"));
        assert!(parse("1000M") == parse("1G") || parse("1000M").canonical() == parse("1G").canonical());
        assert_eq!(parse("0.0001").round_up_to_milli().canonical(), "1m");
        assert_eq!(parse("-0.0001").round_up_to_milli().canonical(), "-1m");
    }

    #[test]
    fn malformed_objects_do_not_panic() {
        let resources = [
            "pods",
            "deployments",
            "replicasets",
            "services",
            "configmaps",
            "secrets",
            "namespaces",
            "nodes",
            "endpoints",
            "endpointslices",
            "events",
            "leases",
            "serviceaccounts",
            "widgets",
        ];
        let shapes = [
            json!(null),
            json!([]),
            json!(5),
            json!({"spec": []}),
            json!({"metadata": "x", "spec": {"containers": "x"}}),
            json!({"spec": {"containers": [null, 5, {"ports": [null], "resources": {"limits": {"cpu": []}}}],
                "volumes": [5],
                "template": {"spec": 5}, "ports": [5, {"port": "x"}], "selector": 5}}),
        ];
        for resource in resources {
            for shape in &shapes {
                let _ = validate(resource, shape, Some(shape));
            }
        }
    }
}
