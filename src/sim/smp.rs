//! Strategic merge patch (`application/strategic-merge-patch+json`) for the
//! workload fields kubectl touches.
//!
//! Maps merge recursively and `null` deletes a key. Lists with a patch merge
//! key merge element by element (containers, volumes and env by `name`,
//! volumeMounts by `mountPath`, ports by `containerPort`, conditions by
//! `type`); other lists are replaced. Directives: `$patch: replace|delete`
//! (on maps and list elements), `$retainKeys`,
//! `$deleteFromPrimitiveList/<list>`; `$setElementOrder/<list>` only orders
//! elements and is ignored, which is safe because it never adds or removes
//! any.

use serde_json::{Map, Value};

/// A patch that cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmpError {
    /// The patch document is not a JSON object.
    #[error("strategic merge patch must be a JSON object")]
    NotAnObject,
    /// An unknown `$patch` directive.
    #[error("unknown patch type: {0}")]
    UnknownDirective(String),
}

/// The merge key of a list field, by field name.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "env"
        | "resourceClaims" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "ports" => Some("containerPort"),
        "conditions" => Some("type"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        _ => None,
    }
}

/// Applies a strategic merge patch to `original`.
///
/// # Errors
/// `NotAnObject` for a non-object patch, `UnknownDirective` for a `$patch`
/// value other than `replace`, `merge` or `delete`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, SmpError> {
    let Value::Object(p) = patch else {
        return Err(SmpError::NotAnObject);
    };
    let orig = original.as_object().cloned().unwrap_or_default();
    Ok(merge_map(orig, p)?.map_or(Value::Null, Value::Object))
}

/// Merges a patch map into a map. `None` means "delete the map".
fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, SmpError> {
    match patch.get("$patch").and_then(Value::as_str) {
        None | Some("merge") => {}
        Some("replace") => {
            let mut out = patch.clone();
            out.remove("$patch");
            return Ok(Some(strip_directives(out)));
        }
        Some("delete") => return Ok(None),
        Some(other) => return Err(SmpError::UnknownDirective(other.to_owned())),
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Value::Array(del)) = (orig.get_mut(list), v) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        match v {
            Value::Null => {
                orig.remove(k);
            }
            Value::Object(pm) => {
                let base = match orig.remove(k) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                if let Some(m) = merge_map(base, pm)? {
                    orig.insert(k.clone(), Value::Object(m));
                }
            }
            Value::Array(pl) => {
                let base = match orig.remove(k) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                orig.insert(k.clone(), Value::Array(merge_list(base, pl, merge_key(k))?));
            }
            other => {
                orig.insert(k.clone(), other.clone());
            }
        }
    }
    Ok(Some(orig))
}

fn strip_directives(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|k, _| !k.starts_with('$'));
    for v in m.values_mut() {
        strip_value(v);
    }
    m
}

fn strip_value(v: &mut Value) {
    match v {
        Value::Object(m) => {
            *m = strip_directives(std::mem::take(m));
        }
        Value::Array(a) => a.iter_mut().for_each(strip_value),
        _ => {}
    }
}

fn merge_list(
    orig: Vec<Value>,
    patch: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, SmpError> {
    // `[{"$patch":"replace"}, ...]` replaces the whole list with the rest.
    let replace = patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"));
    if replace {
        return Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .cloned()
            .map(|mut v| {
                strip_value(&mut v);
                v
            })
            .collect());
    }
    let Some(key) = key else {
        let mut out: Vec<Value> = patch.to_vec();
        out.iter_mut().for_each(strip_value);
        return Ok(out);
    };
    let mut out = orig;
    for pe in patch {
        let Some(pm) = pe.as_object() else {
            out.push(pe.clone());
            continue;
        };
        let id = pm.get(key);
        let pos = id.and_then(|id| out.iter().position(|e| e.get(key) == Some(id)));
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                out.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => {
                let base = out[i].as_object().cloned().unwrap_or_default();
                match merge_map(base, pm)? {
                    Some(m) => out[i] = Value::Object(m),
                    None => {
                        out.remove(i);
                    }
                }
            }
            None => {
                if let Some(m) = merge_map(Map::new(), pm)? {
                    out.push(Value::Object(m));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> Value {
        json!({"metadata":{"name":"web","annotations":{"a":"1"}},
            "spec":{"replicas":2,"template":{"metadata":{"labels":{"app":"web"}},
            "spec":{"containers":[
                {"name":"web","image":"nginx:1","env":[{"name":"A","value":"1"}]},
                {"name":"side","image":"envoy:1"}]}}}})
    }

    #[test]
    fn set_image_merges_containers_by_name() {
        let patch = json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"web"},{"name":"side"}],
            "containers":[{"image":"nginx:2","name":"web"}]}}}});
        let out = apply(&deploy(), &patch).unwrap();
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["image"], "nginx:2");
        assert_eq!(cs[0]["env"][0]["value"], "1");
        assert_eq!(cs[1]["image"], "envoy:1");
        assert!(out.to_string().find("$setElementOrder").is_none());
    }

    #[test]
    fn restart_adds_annotation_and_null_deletes() {
        let patch = json!({"metadata":{"annotations":{"a":null,"b":"2"}},
            "spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"now"}}}}});
        let out = apply(&deploy(), &patch).unwrap();
        assert_eq!(out["metadata"]["annotations"], json!({"b":"2"}));
        assert_eq!(
            out["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "now"
        );
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn patch_replace_replaces_the_template() {
        let patch = json!({"spec":{"template":{"$patch":"replace",
            "metadata":{"creationTimestamp":null,"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"web","image":"nginx:0","resources":{}}]}}}});
        let out = apply(&deploy(), &patch).unwrap();
        let t = &out["spec"]["template"];
        assert_eq!(t["spec"]["containers"].as_array().unwrap().len(), 1);
        assert!(t.get("$patch").is_none());
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn element_delete_and_primitive_list_delete() {
        let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"side","$patch":"delete"}]}},
            "list":[1], "$deleteFromPrimitiveList/fin":["x"]}});
        let mut orig = deploy();
        orig["spec"]["fin"] = json!(["x", "y"]);
        let out = apply(&orig, &patch).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(out["spec"]["fin"], json!(["y"]));
        assert_eq!(out["spec"]["list"], json!([1]));
    }

    #[test]
    fn rejects_unknown_directive_and_non_objects() {
        assert_eq!(apply(&deploy(), &json!([])), Err(SmpError::NotAnObject));
        assert!(matches!(
            apply(&deploy(), &json!({"spec":{"$patch":"bogus"}})),
            Err(SmpError::UnknownDirective(_))
        ));
    }
}
