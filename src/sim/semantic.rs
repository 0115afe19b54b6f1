//! Semantic comparison, hashing and Go-style canonical encoding of pod
//! templates.
//!
//! The deployment controller and kubectl compare templates with
//! `apiequality.Semantic.DeepEqual` on typed Go structs, where a missing
//! field, `null`, `{}` and `[]` are all the same. kubectl sends
//! `creationTimestamp: null` and `resources: {}` in its undo patch, so a
//! plain JSON comparison would wrongly see a new template and create a
//! duplicate ReplicaSet.

use serde_json::{Map, Value};

/// Label the deployment controller adds to ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The alphabet of `rand.SafeEncodeString` (no vowels, no confusable digits).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Drops `null`, empty strings, `{}` and `[]` recursively. Returns `None`
/// when the value itself is empty.
pub fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            // Elements keep their position; an empty element is kept as `{}`
            // so that `[{}, x]` and `[x]` stay different.
            let out: Vec<Value> = a
                .iter()
                .map(|v| normalize(v).unwrap_or(Value::Object(Map::new())))
                .collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// Removes the `pod-template-hash` label from a template.
pub fn strip_hash_label(template: &mut Value) {
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
}

/// `equalIgnoreHash`: semantic equality of two pod templates, ignoring the
/// `pod-template-hash` label.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    strip_hash_label(&mut a);
    strip_hash_label(&mut b);
    normalize(&a) == normalize(&b)
}

/// Encodes JSON with object keys sorted at every level and no whitespace,
/// like Go's `json.Marshal` of a `map[string]interface{}`. Done by hand so
/// the result does not depend on serde_json's `preserve_order` feature.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        // Go escapes <, > and & in strings; serde_json does not. Templates
        // rarely contain them, and both decode to the same value.
        other => out.push_str(&other.to_string()),
    }
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// A pod template as kubectl would re-marshal it from Go structs: `null`s
/// dropped (nil pointers are omitted), `metadata.creationTimestamp: null`
/// present (a struct, never omitted) and `resources: {}` on every container.
pub fn go_template(template: &Value) -> Value {
    let mut t = template.clone();
    drop_nulls(&mut t);
    if !t.is_object() {
        t = Value::Object(Map::new());
    }
    if !t.get("metadata").is_some_and(Value::is_object) {
        t["metadata"] = Value::Object(Map::new());
    }
    t["metadata"]["creationTimestamp"] = Value::Null;
    if !t.get("spec").is_some_and(Value::is_object) {
        t["spec"] = Value::Object(Map::new());
    }
    if t["spec"].get("containers").is_none() {
        t["spec"]["containers"] = Value::Null;
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = t["spec"].get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if c.get("resources").is_none() {
                    c["resources"] = Value::Object(Map::new());
                }
            }
        }
    }
    t
}

/// The ControllerRevision `data` (and kubectl's DS/STS undo patch) for a
/// template: `{"spec":{"template":{…,"$patch":"replace"}}}`, keys sorted,
/// compact.
pub fn revision_data(template: &Value) -> String {
    let mut t = go_template(template);
    t["$patch"] = Value::String("replace".into());
    let mut spec = Map::new();
    spec.insert("template".into(), t);
    let mut root = Map::new();
    root.insert("spec".into(), Value::Object(spec));
    canonical_json(&Value::Object(root))
}

/// 32-bit FNV-1a.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `rand.SafeEncodeString`: maps each byte onto the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// `ComputeHash`: a stable hash of a template (hash label ignored,
/// semantically normalized) and the collision count, safe-encoded.
pub fn compute_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut t = template.clone();
    strip_hash_label(&mut t);
    let mut bytes = canonical_json(&normalize(&t).unwrap_or(Value::Null)).into_bytes();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubectl_artefacts_are_semantically_equal() {
        let stored = json!({"metadata":{"labels":{"app":"web","pod-template-hash":"abc"}},
            "spec":{"containers":[{"name":"web","image":"nginx:1.24"}]}});
        let from_kubectl = json!({"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"web","image":"nginx:1.24","resources":{}}]}});
        assert!(equal_ignore_hash(&stored, &from_kubectl));
        let other = json!({"metadata":{"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"web","image":"nginx:1.25"}]}});
        assert!(!equal_ignore_hash(&stored, &other));
    }

    #[test]
    fn hash_is_stable_uses_safe_alphabet_and_ignores_hash_label() {
        let a = json!({"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"w","image":"x"}]}});
        let mut b = a.clone();
        b["metadata"]["labels"]["pod-template-hash"] = json!("zzz");
        let h = compute_hash(&a, None);
        assert_eq!(h, compute_hash(&b, None));
        assert_ne!(h, compute_hash(&a, Some(1)));
        assert!(h.bytes().all(|c| SAFE_ALPHABET.contains(&c)));
        assert!(!h.is_empty());
    }

    #[test]
    fn revision_data_matches_go_marshalling() {
        let t = json!({"metadata":{"labels":{"app":"db"}},"spec":{"containers":[{"name":"db","image":"pg:16"}]}});
        assert_eq!(
            revision_data(&t),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"db"}},"spec":{"containers":[{"image":"pg:16","name":"db","resources":{}}]}}}}"#
        );
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
    }
}
