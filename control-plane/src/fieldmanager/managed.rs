//! `metadata.managedFields`: decoding, checking and encoding the entries, one per manager.
//!
//! A manager is identified as Kubernetes identifies it: by name, operation and subresource, and,
//! for `Update` entries only, by the API version it wrote with (an applier keeps one entry whatever
//! version it applies with). Entries are written in Kubernetes' order: `Apply` before `Update`,
//! then by time (to the second), name, API version and subresource. An entry owning nothing is
//! never written, and no more than [`MAX_UPDATE_ENTRIES`] `Update` entries are kept: the oldest are
//! folded into one `ancient-changes` entry per API version.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fieldpath::{FieldSet, FieldsError};

/// The most `Update` entries kept (Kubernetes' `DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_ENTRIES: usize = 10;

/// The name the oldest `Update` entries are folded into.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// The most entries decoded from one object (bounds work on hostile `managedFields`; a real
/// object has at most the appliers plus [`MAX_UPDATE_ENTRIES`]).
pub const MAX_ENTRIES: usize = 1024;

/// The two operations that record ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Every other write (create, update, patch, subresource writes).
    Update,
}

impl Operation {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who owns an entry's fields.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// The API version of an `Update` entry; empty for `Apply` entries.
    pub api_version: String,
    /// `status`, `scale`, or empty for the main resource.
    pub subresource: String,
}

impl ManagerId {
    #[must_use]
    pub fn apply(manager: &str, subresource: &str) -> ManagerId {
        ManagerId {
            manager: manager.to_string(),
            operation: Operation::Apply,
            api_version: String::new(),
            subresource: subresource.to_string(),
        }
    }

    #[must_use]
    pub fn update(manager: &str, api_version: &str, subresource: &str) -> ManagerId {
        ManagerId {
            manager: manager.to_string(),
            operation: Operation::Update,
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
        }
    }

    /// Kubernetes' identifier string (the entry's JSON without fields, time and, for appliers,
    /// version), by which it sorts managers in conflict messages.
    #[must_use]
    pub fn identifier(&self) -> String {
        let mut map = Vec::new();
        if !self.manager.is_empty() {
            map.push(format!("\"manager\":{}", Value::from(self.manager.as_str())));
        }
        map.push(format!("\"operation\":\"{}\"", self.operation.as_str()));
        if !self.api_version.is_empty() {
            map.push(format!("\"apiVersion\":{}", Value::from(self.api_version.as_str())));
        }
        if !self.subresource.is_empty() {
            map.push(format!("\"subresource\":{}", Value::from(self.subresource.as_str())));
        }
        format!("{{{}}}", map.join(","))
    }

    /// How Kubernetes names the manager in a conflict: `"alice"`, or `"bob" using v1` for an
    /// updater, with `with subresource "scale"` when there is one.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut text = Value::from(self.manager.as_str()).to_string();
        if !self.subresource.is_empty() {
            text = format!("{text} with subresource {}", Value::from(self.subresource.as_str()));
        }
        if self.operation == Operation::Update {
            text = format!("{text} using {}", self.api_version);
        }
        text
    }
}

/// What one manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub fields: FieldSet,
    /// The API version the fields are expressed in.
    pub api_version: String,
    /// When the manager last changed the object (RFC 3339), if known.
    pub time: Option<String>,
}

/// Every manager's entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managers {
    pub entries: BTreeMap<ManagerId, Entry>,
}

/// A `managedFields` list Kubernetes would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedError {
    #[error("managedFields must be a list")]
    NotAList,
    #[error("managed fields entry {0} is not an object")]
    NotAnObject(usize),
    #[error("operation must be `Apply` or `Update`")]
    BadOperation,
    #[error("apiVersion must not be empty")]
    NoApiVersion,
    #[error("missing fieldsType in managed fields entry {0}")]
    NoFieldsType(usize),
    #[error("invalid fieldsType {1:?} in managed fields entry {0}")]
    BadFieldsType(usize, String),
    #[error("invalid time {1:?} in managed fields entry {0}")]
    BadTime(usize, String),
    #[error("error decoding set of managed fields entry {0}: {1}")]
    Fields(usize, FieldsError),
    #[error("more than {MAX_ENTRIES} managed fields entries")]
    TooMany,
}

impl Managers {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decodes `metadata.managedFields` (absent or `null`: no entries).
    pub fn decode(value: Option<&Value>) -> Result<Managers, ManagedError> {
        let items = match value {
            None | Some(Value::Null) => return Ok(Managers::default()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(ManagedError::NotAList),
        };
        if items.len() > MAX_ENTRIES {
            return Err(ManagedError::TooMany);
        }
        let mut managers = Managers::default();
        for (index, item) in items.iter().enumerate() {
            let (id, entry) = decode_entry(index, item)?;
            // As in Kubernetes, a later entry with the same identity replaces an earlier one.
            managers.entries.insert(id, entry);
        }
        Ok(managers)
    }

    /// The `managedFields` list, in Kubernetes' order; `None` when there is no entry.
    #[must_use]
    pub fn encode(&self) -> Option<Value> {
        if self.entries.is_empty() {
            return None;
        }
        let mut entries: Vec<(&ManagerId, &Entry)> = self.entries.iter().collect();
        entries.sort_by(|(a, ea), (b, eb)| {
            a.operation
                .cmp(&b.operation)
                .then_with(|| seconds(ea.time.as_deref()).cmp(&seconds(eb.time.as_deref())))
                .then_with(|| a.manager.cmp(&b.manager))
                .then_with(|| ea.api_version.cmp(&eb.api_version))
                .then_with(|| a.subresource.cmp(&b.subresource))
        });
        let encoded = entries.into_iter().map(|(id, entry)| encode_entry(id, entry)).collect();
        Some(Value::Array(encoded))
    }

    /// Every field anyone owns.
    #[must_use]
    pub fn all_fields(&self) -> FieldSet {
        self.entries.values().fold(FieldSet::new(), |all, entry| all.union(&entry.fields))
    }

    /// Drops the entries that own nothing.
    pub fn drop_empty(&mut self) {
        self.entries.retain(|_, entry| !entry.fields.is_empty());
    }

    /// Folds the oldest `Update` entries into `ancient-changes` entries (one per API version)
    /// until at most `max` `Update` entries remain, as Kubernetes does after every update.
    pub fn cap_updates(&mut self, max: usize) {
        let mut updaters: Vec<ManagerId> =
            self.entries.keys().filter(|id| id.operation == Operation::Update).cloned().collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|a, b| {
            let time = |id: &ManagerId| seconds(self.entries.get(id).and_then(|e| e.time.as_deref()));
            time(a).cmp(&time(b)).then_with(|| a.identifier().cmp(&b.identifier()))
        });
        let mut remaining = updaters.len();
        let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        for id in updaters {
            if remaining <= max {
                break;
            }
            let Some(entry) = self.entries.get(&id).cloned() else { continue };
            let bucket = ManagerId::update(ANCIENT_CHANGES, &entry.api_version, "");
            match first_of_version.get(&entry.api_version) {
                None => {
                    first_of_version.insert(entry.api_version.clone(), id);
                }
                Some(first) => {
                    if !self.entries.contains_key(&bucket)
                        && let Some(first_entry) = self.entries.remove(first)
                    {
                        self.entries.insert(bucket.clone(), first_entry);
                    }
                    self.entries.remove(&id);
                    if let Some(folded) = self.entries.get_mut(&bucket) {
                        folded.fields = entry.fields.union(&folded.fields);
                        // The bucket takes the time of the newest update folded into it.
                        folded.time = entry.time.clone();
                    }
                    remaining -= 1;
                }
            }
        }
    }
}

/// A `managedFields` list that asks to reset: an empty list, or one empty entry.
#[must_use]
pub fn is_reset(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Array(items)) => match items.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

fn decode_entry(index: usize, item: &Value) -> Result<(ManagerId, Entry), ManagedError> {
    let Value::Object(map) = item else { return Err(ManagedError::NotAnObject(index)) };
    let text = |field: &str| map.get(field).and_then(Value::as_str).unwrap_or("").to_string();
    let operation = match text("operation").as_str() {
        "Apply" => Operation::Apply,
        "Update" => Operation::Update,
        _ => return Err(ManagedError::BadOperation),
    };
    let api_version = text("apiVersion");
    if api_version.is_empty() {
        return Err(ManagedError::NoApiVersion);
    }
    match text("fieldsType").as_str() {
        "FieldsV1" => {}
        "" => return Err(ManagedError::NoFieldsType(index)),
        other => return Err(ManagedError::BadFieldsType(index, other.to_string())),
    }
    let fields = match map.get("fieldsV1") {
        None | Some(Value::Null) => FieldSet::new(),
        Some(fields) => FieldSet::from_fields_v1(fields).map_err(|e| ManagedError::Fields(index, e))?,
    };
    let time = match map.get("time") {
        None | Some(Value::Null) => None,
        Some(Value::String(time)) if time.parse::<jiff::Timestamp>().is_ok() => Some(time.clone()),
        Some(other) => return Err(ManagedError::BadTime(index, other.to_string())),
    };
    let manager = text("manager");
    let subresource = text("subresource");
    let id = match operation {
        Operation::Apply => ManagerId::apply(&manager, &subresource),
        Operation::Update => ManagerId::update(&manager, &api_version, &subresource),
    };
    Ok((id, Entry { fields, api_version, time }))
}

fn encode_entry(id: &ManagerId, entry: &Entry) -> Value {
    let mut encoded = json!({
        "manager": id.manager,
        "operation": id.operation.as_str(),
        "apiVersion": entry.api_version,
        "fieldsType": "FieldsV1",
        "fieldsV1": entry.fields.to_fields_v1(),
    });
    if let Some(time) = &entry.time {
        encoded["time"] = json!(time);
    }
    if !id.subresource.is_empty() {
        encoded["subresource"] = json!(id.subresource);
    }
    encoded
}

/// Seconds since the epoch of an entry's time (0 when it has none), the precision Kubernetes
/// orders entries by.
fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| t.parse::<jiff::Timestamp>().ok()).map_or(0, |t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, operation: &str, api_version: &str, time: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": operation, "apiVersion": api_version, "time": time,
               "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    #[test]
    fn the_documented_configmap_entries_round_trip() {
        // The two-manager ConfigMap of Kubernetes' "Server-Side Apply" page.
        let documented = json!([
            entry(
                "kubectl",
                "Apply",
                "v1",
                "2019-03-30T15:00:00Z",
                json!({"f:metadata": {"f:labels": {"f:test-label": {}}}})
            ),
            entry("kube-controller-manager", "Update", "v1", "2019-03-30T16:00:00Z", json!({"f:data": {"f:key": {}}})),
        ]);
        let managers = Managers::decode(Some(&documented)).expect("decodes");
        assert_eq!(managers.entries.len(), 2);
        assert_eq!(managers.encode(), Some(documented));
    }

    #[test]
    fn entries_sort_apply_first_then_by_time_then_name() {
        let list = json!([
            entry("z", "Update", "v1", "2020-01-01T00:00:02Z", json!({"f:a": {}})),
            entry("b", "Update", "v1", "2020-01-01T00:00:01Z", json!({"f:b": {}})),
            entry("a", "Update", "v1", "2020-01-01T00:00:01Z", json!({"f:c": {}})),
            entry("late-applier", "Apply", "v1", "2030-01-01T00:00:00Z", json!({"f:d": {}})),
        ]);
        let encoded = Managers::decode(Some(&list)).expect("decodes").encode().expect("entries");
        let names: Vec<&str> = encoded.as_array().into_iter().flatten().filter_map(|e| e["manager"].as_str()).collect();
        assert_eq!(names, vec!["late-applier", "a", "b", "z"]);
    }

    #[test]
    fn identity_includes_the_version_only_for_updates() {
        let list = json!([
            entry("m", "Apply", "v1", "2020-01-01T00:00:00Z", json!({"f:a": {}})),
            entry("m", "Apply", "v2", "2020-01-01T00:00:00Z", json!({"f:b": {}})),
            entry("m", "Update", "v1", "2020-01-01T00:00:00Z", json!({"f:c": {}})),
            entry("m", "Update", "v2", "2020-01-01T00:00:00Z", json!({"f:d": {}})),
        ]);
        let managers = Managers::decode(Some(&list)).expect("decodes");
        assert_eq!(managers.entries.len(), 3, "the second Apply entry replaces the first");
        let scaler = ManagerId::update("hpa", "apps/v1", "scale");
        assert_eq!(scaler.describe(), "\"hpa\" with subresource \"scale\" using apps/v1");
        assert_eq!(
            scaler.identifier(),
            r#"{"manager":"hpa","operation":"Update","apiVersion":"apps/v1","subresource":"scale"}"#
        );
        assert_eq!(ManagerId::apply("alice", "").describe(), "\"alice\"");
    }

    #[test]
    fn invalid_entries_are_refused_with_kubernetes_texts() {
        let cases = [
            (
                json!([{"manager": "m", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
                "operation must be `Apply` or `Update`",
            ),
            (json!([{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV1"}]), "apiVersion must not be empty"),
            (
                json!([{"manager": "m", "operation": "Apply", "apiVersion": "v1"}]),
                "missing fieldsType in managed fields entry 0",
            ),
            (
                json!([{"manager": "m", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
                "invalid fieldsType \"FieldsV2\" in managed fields entry 0",
            ),
        ];
        for (list, message) in cases {
            assert_eq!(Managers::decode(Some(&list)).expect_err(message).to_string(), message);
        }
        assert!(Managers::decode(Some(&json!({}))).is_err());
        assert!(Managers::decode(None).expect("absent").is_empty());
    }

    #[test]
    fn resets_are_an_empty_list_or_one_empty_entry() {
        assert!(is_reset(Some(&json!([]))));
        assert!(is_reset(Some(&json!([{}]))));
        assert!(!is_reset(None));
        assert!(!is_reset(Some(&json!([{}, {}]))));
    }

    #[test]
    fn old_update_entries_fold_into_ancient_changes() {
        let list: Vec<Value> = (0..12)
            .map(|i| {
                entry(
                    &format!("m{i:02}"),
                    "Update",
                    "v1",
                    &format!("2020-01-01T00:00:{i:02}Z"),
                    json!({ format!("f:k{i}"): {} }),
                )
            })
            .collect();
        let mut managers = Managers::decode(Some(&Value::Array(list))).expect("decodes");
        managers.cap_updates(MAX_UPDATE_ENTRIES);
        assert_eq!(managers.entries.len(), MAX_UPDATE_ENTRIES);
        let bucket = &managers.entries[&ManagerId::update(ANCIENT_CHANGES, "v1", "")];
        assert_eq!(bucket.fields.to_fields_v1(), json!({"f:k0": {}, "f:k1": {}, "f:k2": {}}));
        assert_eq!(bucket.time.as_deref(), Some("2020-01-01T00:00:02Z"));
        assert!(!managers.entries.contains_key(&ManagerId::update("m00", "v1", "")));
        assert!(managers.entries.contains_key(&ManagerId::update("m03", "v1", "")));
    }
}
