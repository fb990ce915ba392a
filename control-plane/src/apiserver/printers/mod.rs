//! Server-side table printing: the columns and cells `kubectl get` shows.
//!
//! Unmodified `kubectl get` asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints
//! whatever columns the server returns, upper-casing their names ("Nominated Node" becomes
//! `NOMINATED NODE`). This module is Keel's counterpart of kube-apiserver's built-in printers: for
//! each resource it declares the column definitions ([`columns`]) and turns one stored object into
//! one row of cells ([`cells`]). Resources without a printer get kube-apiserver's default table,
//! `Name` and `Created At`.
//!
//! # Layout
//! - this file: [`Column`], the per-resource registry, the default table, [`human_duration`] and
//!   the small JSON and time helpers every printer shares.
//! - `pods`: pods, including kubectl's status summary (`CrashLoopBackOff`, `Init:0/1`, ...).
//! - `workloads`: deployments and replicasets.
//! - `services`: services, endpoints and endpointslices.
//! - `core`: namespaces, nodes, configmaps, secrets, serviceaccounts, events and leases.
//!
//! # Invariants
//! - `cells(r, o, now).len() == columns(r).len()` for every resource `r` and every JSON value `o`.
//! - Printers never panic: a missing or ill-typed field prints the way kube-apiserver prints an
//!   unset field (`""`, `0`, `<none>`, `<unknown>`).
//! - Priority-1 columns are always filled in: kube-apiserver renders every table "wide" and kubectl
//!   drops priority-1 columns unless `-o wide` is given.
//! - Pure: no I/O, and the current time is an argument, so rows are reproducible in tests.
//!
//! # API boundary
//! This module knows nothing about HTTP, content negotiation or the `Table` envelope; the caller
//! wraps [`Column::definition`] and [`cells`] into a `meta.k8s.io/v1` `Table`.

mod core;
mod pods;
mod services;
mod workloads;

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

/// One column of a server-side table (`metav1.TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header as kube-apiserver spells it; kubectl upper-cases it when printing.
    pub name: &'static str,
    /// OpenAPI type of the column: "string", "integer", "date", ... (kube-apiserver's choice, which
    /// is sometimes "string" for a column whose cells are numbers).
    pub type_: &'static str,
    /// "name" for the column that identifies the object, so clients can find it; "" otherwise.
    pub format: &'static str,
    /// One sentence a client may show as help for the column.
    pub description: &'static str,
    /// 0 for the default view, 1 for columns kubectl shows only with `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The column as a `metav1.TableColumnDefinition` JSON object.
    pub fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column shown by default.
const fn column(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

/// A column shown only with `-o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 1 }
}

/// The first column of almost every table: the object's name.
const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name of the object, unique within its namespace and resource.",
    priority: 0,
};

/// Time since the object was created, in kubectl's short form.
const AGE: Column = column("Age", "string", "Time elapsed since the object was created.");

/// Columns of kube-apiserver's default table, used for resources without a printer.
const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        type_: "date",
        format: "",
        description: "When the object was created, in RFC 3339 form.",
        priority: 0,
    },
];

/// What Go prints for a zero `time.Time` in RFC 3339: the default table's value for an object
/// without a creation timestamp.
const ZERO_TIME_RFC3339: &str = "0001-01-01T00:00:00Z";

/// A resource's printer: its columns and the function filling one row.
struct Printer {
    /// Plural resource name, as in the request path.
    resource: &'static str,
    /// The column definitions, in display order.
    columns: &'static [Column],
    /// Fills one row; must return exactly one cell per entry of `columns`.
    cells: fn(&Value, Timestamp) -> Vec<Value>,
}

/// Every resource with its own table. Kept as one list so columns and cells cannot drift apart.
const PRINTERS: &[Printer] = &[
    Printer { resource: "pods", columns: pods::COLUMNS, cells: pods::cells },
    Printer { resource: "deployments", columns: workloads::DEPLOYMENT_COLUMNS, cells: workloads::deployment_cells },
    Printer { resource: "replicasets", columns: workloads::REPLICA_SET_COLUMNS, cells: workloads::replica_set_cells },
    Printer { resource: "services", columns: services::SERVICE_COLUMNS, cells: services::service_cells },
    Printer { resource: "endpoints", columns: services::ENDPOINTS_COLUMNS, cells: services::endpoints_cells },
    Printer {
        resource: "endpointslices",
        columns: services::ENDPOINT_SLICE_COLUMNS,
        cells: services::endpoint_slice_cells,
    },
    Printer { resource: "namespaces", columns: core::NAMESPACE_COLUMNS, cells: core::namespace_cells },
    Printer { resource: "nodes", columns: core::NODE_COLUMNS, cells: core::node_cells },
    Printer { resource: "configmaps", columns: core::CONFIG_MAP_COLUMNS, cells: core::config_map_cells },
    Printer { resource: "secrets", columns: core::SECRET_COLUMNS, cells: core::secret_cells },
    Printer { resource: "serviceaccounts", columns: core::SERVICE_ACCOUNT_COLUMNS, cells: core::service_account_cells },
    Printer { resource: "events", columns: core::EVENT_COLUMNS, cells: core::event_cells },
    Printer { resource: "leases", columns: core::LEASE_COLUMNS, cells: core::lease_cells },
];

/// The default printer, for resources not in [`PRINTERS`].
const DEFAULT_PRINTER: Printer = Printer { resource: "", columns: DEFAULT_COLUMNS, cells: default_cells };

fn printer(resource: &str) -> &'static Printer {
    PRINTERS.iter().find(|printer| printer.resource == resource).unwrap_or(&DEFAULT_PRINTER)
}

/// The column definitions kube-apiserver returns for `resource` (a plural such as "pods").
/// Unknown resources get the default table: `Name` and `Created At`.
pub fn columns(resource: &str) -> &'static [Column] {
    printer(resource).columns
}

/// One table row for `object`, a stored object of kind `resource`, one cell per column of
/// [`columns`] in the same order. Strings are JSON strings and counts are JSON numbers, as
/// kube-apiserver sends them; ages are measured up to `now`.
pub fn cells(resource: &str, object: &Value, now: Timestamp) -> Vec<Value> {
    let printer = printer(resource);
    let row = (printer.cells)(object, now);
    debug_assert_eq!(row.len(), printer.columns.len(), "printer for {resource:?} broke its column count");
    row
}

/// Cells of the default table: the name and the creation time in RFC 3339 (UTC, whole seconds).
fn default_cells(object: &Value, _now: Timestamp) -> Vec<Value> {
    let created = timestamp_at(object, &["metadata", "creationTimestamp"])
        .map(|created| created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ZERO_TIME_RFC3339.to_owned());
    vec![name(object).into(), created.into()]
}

/// kubectl's age format (Kubernetes' `duration.HumanDuration`): about two significant figures,
/// "59s", "119s", "2m3s", "10m", "179m", "3h", "7h59m", "47h", "2d", "7d23h", "729d", "2y", "3y120d",
/// "8y".
pub fn human_duration(duration: Duration) -> String {
    human_seconds(duration.as_secs())
}

/// [`human_duration`] of a whole number of seconds. Working on whole seconds gives the same result
/// as Kubernetes' nanosecond arithmetic because every unit is a multiple of a second.
fn human_seconds(seconds: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    const YEAR: u64 = 365 * DAY;
    if seconds < 2 * MINUTE {
        return format!("{seconds}s");
    }
    let minutes = seconds / MINUTE;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % MINUTE, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / HOUR;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 8 * 24 {
        return with_remainder(hours / 24, "d", hours % 24, "h");
    }
    if seconds < 2 * YEAR {
        return format!("{}d", seconds / DAY);
    }
    let days = seconds / DAY;
    if seconds < 8 * YEAR {
        return with_remainder(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

/// "2m3s", or just "2m" when the smaller unit is zero.
fn with_remainder(major: u64, major_unit: &str, minor: u64, minor_unit: &str) -> String {
    if minor == 0 { format!("{major}{major_unit}") } else { format!("{major}{major_unit}{minor}{minor_unit}") }
}

/// Time elapsed from `then` to `now` as kubectl shows it; `<unknown>` when there is no timestamp.
/// A timestamp up to one second in the future reads "0s" (clock skew between machines); one
/// further ahead reads `<invalid>`, as in Kubernetes.
fn since(then: Option<Timestamp>, now: Timestamp) -> String {
    let Some(then) = then else {
        return "<unknown>".to_owned();
    };
    let elapsed_seconds = now.duration_since(then).as_secs();
    match u64::try_from(elapsed_seconds) {
        Ok(seconds) => human_seconds(seconds),
        Err(_) if elapsed_seconds >= -1 => "0s".to_owned(),
        Err(_) => "<invalid>".to_owned(),
    }
}

/// The object's age, from `metadata.creationTimestamp`.
fn age(object: &Value, now: Timestamp) -> String {
    since(timestamp_at(object, &["metadata", "creationTimestamp"]), now)
}

/// The value at `path`; `None` when any step is missing, is not an object, or holds `null`
/// (a Go pointer left nil serializes as an absent field or `null`; both mean "unset").
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for key in path {
        current = current.as_object()?.get(*key)?;
    }
    (!current.is_null()).then_some(current)
}

/// The string at `path`, or "" when unset or not a string (Go's zero value).
fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`. Accepts integral floats, since JSON does not distinguish them.
fn int_at(value: &Value, path: &[&str]) -> Option<i64> {
    let number = at(value, path)?;
    number.as_i64().or_else(|| {
        let float = number.as_f64()?;
        // In range and integral: the cast cannot truncate.
        (float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
    })
}

/// The boolean at `path`, false when unset (Go's zero value).
fn bool_at(value: &Value, path: &[&str]) -> bool {
    at(value, path).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `path`, empty when unset or not an array.
fn array_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// Number of entries in the map at `path` (`data`, `binaryData`, ...), 0 when unset.
fn map_len(value: &Value, path: &[&str]) -> usize {
    at(value, path).and_then(Value::as_object).map_or(0, |map| map.len())
}

/// The RFC 3339 timestamp at `path`; `None` when unset or unparsable.
fn timestamp_at(value: &Value, path: &[&str]) -> Option<Timestamp> {
    str_at(value, path).parse().ok()
}

/// `metadata.name`.
fn name(object: &Value) -> String {
    str_at(object, &["metadata", "name"]).to_owned()
}

/// `text`, or `<none>` when it is empty.
fn or_none(text: &str) -> String {
    if text.is_empty() { "<none>".to_owned() } else { text.to_owned() }
}

/// The CONTAINERS and IMAGES cells of a pod template: names and images, comma separated.
fn containers_and_images(pod_spec: &Value) -> (String, String) {
    let containers = array_at(pod_spec, &["containers"]);
    let names: Vec<&str> = containers.iter().map(|container| str_at(container, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|container| str_at(container, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// A map of strings as `k1=v1,k2=v2` in key order (Kubernetes' `labels.Set.String`); non-string
/// values are skipped.
fn format_string_map(value: &Value, path: &[&str]) -> String {
    let Some(map) = at(value, path).and_then(Value::as_object) else {
        return String::new();
    };
    let mut pairs: Vec<(&String, &str)> = map.iter().filter_map(|(key, value)| Some((key, value.as_str()?))).collect();
    pairs.sort_unstable();
    pairs.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instant every printer test measures ages against.
    pub(super) fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().expect("valid test timestamp")
    }

    /// Shorthand for expected rows: every cell a string unless written as a number.
    pub(super) fn row(cells: &[Value]) -> Vec<Value> {
        cells.to_vec()
    }

    #[test]
    fn human_duration_matches_kubernetes() {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        const YEAR: u64 = 365 * DAY;
        let table: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (90, "90s"),
            (119, "119s"),
            (120, "2m"),
            (123, "2m3s"),
            (9 * MINUTE + 59, "9m59s"),
            (10 * MINUTE, "10m"),
            (10 * MINUTE + 59, "10m"),
            (179 * MINUTE + 59, "179m"),
            (3 * HOUR, "3h"),
            (3 * HOUR + 30 * MINUTE, "3h30m"),
            (7 * HOUR + 59 * MINUTE + 59, "7h59m"),
            (8 * HOUR, "8h"),
            (47 * HOUR + 59 * MINUTE, "47h"),
            (48 * HOUR, "2d"),
            (49 * HOUR, "2d1h"),
            (7 * DAY + 23 * HOUR + 59 * MINUTE, "7d23h"),
            (8 * DAY, "8d"),
            (729 * DAY, "729d"),
            (2 * YEAR, "2y"),
            (2 * YEAR + DAY, "2y1d"),
            (7 * YEAR + 364 * DAY, "7y364d"),
            (8 * YEAR, "8y"),
            (123 * YEAR + 100 * DAY, "123y"),
        ];
        for &(seconds, expected) in table {
            assert_eq!(human_duration(Duration::from_secs(seconds)), expected, "{seconds}s");
        }
        assert_eq!(human_duration(Duration::from_millis(1_999)), "1s", "sub-second parts are truncated");
        assert_eq!(human_duration(Duration::MAX), format!("{}y", u64::MAX / YEAR));
    }

    #[test]
    fn since_handles_missing_and_future_timestamps() {
        let now = now();
        let at = |text: &str| Some(text.parse::<Timestamp>().expect("valid timestamp"));
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(at("2026-11-23T09:57:57Z"), now), "2m3s");
        assert_eq!(since(at("2026-11-23T10:00:01Z"), now), "0s", "one second of clock skew reads as now");
        assert_eq!(since(at("2026-11-23T10:00:01.900Z"), now), "0s");
        assert_eq!(since(at("2026-11-23T10:00:02Z"), now), "<invalid>");
    }

    #[test]
    fn unknown_resources_get_the_default_table() {
        let names: Vec<&str> = columns("widgets").iter().map(|column| column.name).collect();
        assert_eq!(names, ["Name", "Created At"]);
        assert_eq!(columns("widgets")[1].type_, "date");
        assert_eq!(columns("widgets")[0].format, "name");
        let object = json!({"metadata": {"name": "w1", "creationTimestamp": "2026-11-20T08:30:00.250Z"}});
        assert_eq!(cells("widgets", &object, now()), row(&["w1".into(), "2026-11-20T08:30:00Z".into()]));
        assert_eq!(cells("widgets", &json!({}), now()), row(&["".into(), ZERO_TIME_RFC3339.into()]));
    }

    #[test]
    fn column_definition_has_the_metav1_shape() {
        let definition = pods::COLUMNS[5].definition();
        assert_eq!(definition["name"], "IP");
        assert_eq!(definition["type"], "string");
        assert_eq!(definition["format"], "");
        assert_eq!(definition["priority"], 1);
        assert!(definition["description"].as_str().is_some_and(|text| !text.is_empty()));
    }

    #[test]
    fn every_printer_fills_every_column_for_any_json_shape() {
        let shapes = [
            json!(null),
            json!(7),
            json!("pod"),
            json!([1, 2]),
            json!({}),
            json!({"metadata": null, "spec": null, "status": null}),
            json!({"metadata": 1, "spec": "x", "status": [], "subsets": {}, "endpoints": 3, "ports": "80"}),
            json!({"spec": {"containers": [1, null, {"name": 5}], "ports": [null, {"port": "80"}]},
                   "status": {"containerStatuses": [null, {"state": 1}], "initContainerStatuses": [{"state": {"terminated": 3}}],
                              "conditions": "Ready", "addresses": [7]},
                   "subsets": [{"addresses": [1], "ports": [{"port": null}]}], "endpoints": [{"addresses": [null]}]}),
        ];
        let resources = PRINTERS.iter().map(|printer| printer.resource).chain(["widgets"]);
        for resource in resources {
            for shape in &shapes {
                let row = cells(resource, shape, now());
                assert_eq!(row.len(), columns(resource).len(), "{resource} with {shape}");
                assert!(row.iter().all(|cell| cell.is_string() || cell.is_i64()), "{resource} with {shape}");
            }
        }
    }

    #[test]
    fn every_table_has_one_name_column_and_known_priorities() {
        for printer in PRINTERS {
            assert_eq!(
                printer.columns.iter().filter(|column| column.format == "name").count(),
                1,
                "{}",
                printer.resource
            );
            assert!(
                printer.columns.iter().all(|column| column.priority == 0 || column.priority == 1),
                "{}",
                printer.resource
            );
        }
    }
}
