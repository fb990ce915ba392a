//! `meta.k8s.io/v1` Table responses: the server picks the columns (kubectl prints them), and
//! each row carries the object's metadata for `-A` and `--show-labels`.

use serde_json::{Value, json};

use super::printers;
use super::resources::Resource;

/// The content type of a Table answer.
pub const CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn row(resource: &Resource, object: &Value, now: jiff::Timestamp) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({
        "cells": printers::cells(resource.plural, object, now),
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
        },
    })
}

fn column_definitions(resource: &Resource) -> Vec<Value> {
    printers::columns(resource.plural).iter().map(printers::Column::definition).collect()
}

/// A Table of `objects`. `with_columns` false leaves out the column definitions (watch events
/// after the first).
pub fn table(resource: &Resource, objects: &[Value], metadata: Value, with_columns: bool) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects.iter().map(|object| row(resource, object, now)).collect();
    let columns = if with_columns { column_definitions(resource) } else { Vec::new() };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources;

    #[test]
    fn rows_carry_cells_and_partial_metadata() {
        let pods = resources::find("", "v1", "pods").expect("pods");
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}}, "spec": {}, "status": {}});
        let table = table(pods, &[pod], json!({"resourceVersion": "7"}), true);
        assert_eq!(table["rows"][0]["cells"][0], "p");
        assert_eq!(table["rows"][0]["object"]["metadata"]["labels"]["a"], "b");
        assert_eq!(table["columnDefinitions"][0]["name"], "Name");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
    }
}
