//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for (without
//! them it prints only NAME and AGE). Columns follow the server-side
//! printers of kube-apiserver.

use serde_json::{Value, json};

use super::controller::{int_at, selector_string};
use super::store::{Kind, name_of};

/// `Content-Type` of a Table response.
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// `duration.HumanDuration`, as used for the AGE column.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 60 * 2 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        };
    }
    if m < 60 * 3 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let rem = m % 60;
        return if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        let rem = h % 24;
        let d = h / 24;
        return if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        let y = h / (24 * 365);
        let d = (h % (24 * 365)) / 24;
        return if d == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{d}d")
        };
    }
    format!("{}y", h / (24 * 365))
}

fn age(obj: &Value) -> String {
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    match created {
        Some(t) => {
            human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
        }
        None => "<unknown>".into(),
    }
}

fn col(name: &str, type_: &str, priority: i64, format: &str) -> Value {
    json!({"name": name, "type": type_, "format": format, "priority": priority, "description": ""})
}

fn containers_and_images(obj: &Value) -> (String, String) {
    let cs = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), images.join(","))
}

fn columns_and_cells(kind: Kind, obj: &Value) -> (Vec<Value>, Vec<Value>) {
    let name = json!(name_of(obj));
    let age_cell = json!(age(obj));
    match kind {
        Kind::Deployment => {
            let (c, i) = containers_and_images(obj);
            let spec = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            (
                vec![
                    col("Name", "string", 0, "name"),
                    col("Ready", "string", 0, ""),
                    col("Up-to-date", "integer", 0, ""),
                    col("Available", "integer", 0, ""),
                    col("Age", "string", 0, ""),
                    col("Containers", "string", 1, ""),
                    col("Images", "string", 1, ""),
                    col("Selector", "string", 1, ""),
                ],
                vec![
                    name,
                    json!(format!("{}/{}", int_at(obj, "/status/readyReplicas"), spec)),
                    json!(int_at(obj, "/status/updatedReplicas")),
                    json!(int_at(obj, "/status/availableReplicas")),
                    age_cell,
                    json!(c),
                    json!(i),
                    json!(selector_string(obj)),
                ],
            )
        }
        Kind::ReplicaSet => {
            let (c, i) = containers_and_images(obj);
            (
                vec![
                    col("Name", "string", 0, "name"),
                    col("Desired", "integer", 0, ""),
                    col("Current", "integer", 0, ""),
                    col("Ready", "integer", 0, ""),
                    col("Age", "string", 0, ""),
                    col("Containers", "string", 1, ""),
                    col("Images", "string", 1, ""),
                    col("Selector", "string", 1, ""),
                ],
                vec![
                    name,
                    json!(int_at(obj, "/spec/replicas")),
                    json!(int_at(obj, "/status/replicas")),
                    json!(int_at(obj, "/status/readyReplicas")),
                    age_cell,
                    json!(c),
                    json!(i),
                    json!(selector_string(obj)),
                ],
            )
        }
        Kind::StatefulSet => {
            let (c, i) = containers_and_images(obj);
            let spec = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            (
                vec![
                    col("Name", "string", 0, "name"),
                    col("Ready", "string", 0, ""),
                    col("Age", "string", 0, ""),
                    col("Containers", "string", 1, ""),
                    col("Images", "string", 1, ""),
                ],
                vec![
                    name,
                    json!(format!("{}/{}", int_at(obj, "/status/readyReplicas"), spec)),
                    age_cell,
                    json!(c),
                    json!(i),
                ],
            )
        }
        Kind::DaemonSet => {
            let (c, i) = containers_and_images(obj);
            let node_sel = obj
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into());
            (
                vec![
                    col("Name", "string", 0, "name"),
                    col("Desired", "integer", 0, ""),
                    col("Current", "integer", 0, ""),
                    col("Ready", "integer", 0, ""),
                    col("Up-to-date", "integer", 0, ""),
                    col("Available", "integer", 0, ""),
                    col("Node Selector", "string", 0, ""),
                    col("Age", "string", 0, ""),
                    col("Containers", "string", 1, ""),
                    col("Images", "string", 1, ""),
                ],
                vec![
                    name,
                    json!(int_at(obj, "/status/desiredNumberScheduled")),
                    json!(int_at(obj, "/status/currentNumberScheduled")),
                    json!(int_at(obj, "/status/numberReady")),
                    json!(int_at(obj, "/status/updatedNumberScheduled")),
                    json!(int_at(obj, "/status/numberAvailable")),
                    json!(node_sel),
                    age_cell,
                    json!(c),
                    json!(i),
                ],
            )
        }
        Kind::ControllerRevision => {
            let owner = obj
                .pointer("/metadata/ownerReferences/0")
                .map(|o| {
                    format!(
                        "{}.{}/{}",
                        o["kind"].as_str().unwrap_or_default().to_lowercase(),
                        o["apiVersion"]
                            .as_str()
                            .unwrap_or_default()
                            .split('/')
                            .next()
                            .unwrap_or_default(),
                        o["name"].as_str().unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            (
                vec![
                    col("Name", "string", 0, "name"),
                    col("Controller", "string", 0, ""),
                    col("Revision", "integer", 0, ""),
                    col("Age", "string", 0, ""),
                ],
                vec![
                    name,
                    json!(owner),
                    json!(int_at(obj, "/revision")),
                    age_cell,
                ],
            )
        }
        Kind::Namespace => (
            vec![
                col("Name", "string", 0, "name"),
                col("Status", "string", 0, ""),
                col("Age", "string", 0, ""),
            ],
            vec![
                name,
                obj.pointer("/status/phase")
                    .cloned()
                    .unwrap_or(json!("Active")),
                age_cell,
            ],
        ),
        // The CRDs' additionalPrinterColumns (Argo CD, Flux), abridged.
        Kind::Application => (
            vec![
                col("Name", "string", 0, "name"),
                col("Sync Status", "string", 0, ""),
                col("Health Status", "string", 0, ""),
            ],
            vec![
                name,
                obj.pointer("/status/sync/status")
                    .cloned()
                    .unwrap_or(json!("")),
                obj.pointer("/status/health/status")
                    .cloned()
                    .unwrap_or(json!("")),
            ],
        ),
        Kind::Kustomization | Kind::HelmRelease => (
            vec![
                col("Name", "string", 0, "name"),
                col("Age", "string", 0, ""),
                col("Suspended", "boolean", 0, ""),
            ],
            vec![
                name,
                age_cell,
                obj.pointer("/spec/suspend")
                    .cloned()
                    .unwrap_or(json!(false)),
            ],
        ),
        Kind::Lease => (
            vec![
                col("Name", "string", 0, "name"),
                col("Holder", "string", 0, ""),
                col("Age", "string", 0, ""),
            ],
            vec![
                name,
                obj.pointer("/spec/holderIdentity")
                    .cloned()
                    .unwrap_or(json!("")),
                age_cell,
            ],
        ),
    }
}

/// A Table of `objs` (which may be empty) at resourceVersion `rv`.
pub fn table(kind: Kind, objs: &[Value], rv: u64) -> Value {
    let columns = columns_and_cells(kind, &json!({})).0;
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let cells = columns_and_cells(kind, o).1;
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"].clone()}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(300), "5m");
        assert_eq!(human_duration(310), "5m10s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
    }

    #[test]
    fn deployment_rows_have_real_numbers() {
        let d = json!({"metadata":{"name":"web"},"spec":{"replicas":3,
            "selector":{"matchLabels":{"app":"web"}},
            "template":{"spec":{"containers":[{"name":"web","image":"nginx"}]}}},
            "status":{"readyReplicas":2,"updatedReplicas":3,"availableReplicas":2}});
        let t = table(Kind::Deployment, &[d], 7);
        assert_eq!(t["rows"][0]["cells"][1], "2/3");
        assert_eq!(t["rows"][0]["cells"][2], 3);
        assert_eq!(t["rows"][0]["cells"][7], "app=web");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
