//! Label and field selectors (the `labels.Parse` grammar of apimachinery).
//!
//! Supported: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`
//! (exists), `!k` (does not exist); terms are joined by commas and all must
//! hold. Field selectors use the same equality forms on `metadata.name` and
//! `metadata.namespace`.

use serde_json::Value;

/// A selector that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// The term is not in the grammar.
    #[error("unable to parse requirement: {0:?}")]
    BadTerm(String),
    /// A field selector names an unsupported field.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// The operator of one requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `k=v` / `k==v`
    Eq(String),
    /// `k!=v` (true when the key is missing too)
    NotEq(String),
    /// `k in (..)`
    In(Vec<String>),
    /// `k notin (..)` (true when the key is missing too)
    NotIn(Vec<String>),
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
}

/// One requirement on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// Label key or field path.
    pub key: String,
    /// What must hold for the key.
    pub op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Eq(want), Some(v)) => v == want,
            (Op::Eq(_), None) => false,
            (Op::NotEq(want), v) => v != Some(want.as_str()),
            (Op::In(set), Some(v)) => set.iter().any(|s| s == v),
            (Op::In(_), None) => false,
            (Op::NotIn(set), v) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
        }
    }
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// All must hold.
    pub requirements: Vec<Requirement>,
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_term(term: &str) -> Result<Requirement, SelectorError> {
    let t = term.trim();
    let bad = || SelectorError::BadTerm(t.to_owned());
    if let Some(key) = t.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(Requirement {
                key: key.to_owned(),
                op: Op::DoesNotExist,
            })
        } else {
            Err(bad())
        };
    }
    if let Some(open) = t.find('(') {
        let close = t.rfind(')').ok_or_else(bad)?;
        if close != t.len() - 1 || close < open {
            return Err(bad());
        }
        let head: Vec<&str> = t[..open].split_whitespace().collect();
        let [key, op] = head.as_slice() else {
            return Err(bad());
        };
        let values: Vec<String> = t[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_owned())
            .collect();
        if !valid_key(key) || values.iter().any(|v| !valid_value(v)) {
            return Err(bad());
        }
        let op = match *op {
            "in" => Op::In(values),
            "notin" => Op::NotIn(values),
            _ => return Err(bad()),
        };
        return Ok(Requirement {
            key: (*key).to_owned(),
            op,
        });
    }
    let (key, op) = if let Some((k, v)) = t.split_once("!=") {
        (k, Op::NotEq(v.trim().to_owned()))
    } else if let Some((k, v)) = t.split_once("==") {
        (k, Op::Eq(v.trim().to_owned()))
    } else if let Some((k, v)) = t.split_once('=') {
        (k, Op::Eq(v.trim().to_owned()))
    } else {
        (t, Op::Exists)
    };
    let key = key.trim();
    let value_ok = match &op {
        Op::Eq(v) | Op::NotEq(v) => valid_value(v),
        _ => true,
    };
    if !valid_key(key) || !value_ok {
        return Err(bad());
    }
    Ok(Requirement {
        key: key.to_owned(),
        op,
    })
}

impl Selector {
    /// Parses a label selector string; the empty string selects everything.
    ///
    /// # Errors
    /// `BadTerm` naming the first term outside the grammar.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        if s.trim().is_empty() {
            return Ok(Selector::default());
        }
        let requirements = split_top_level(s)
            .into_iter()
            .map(parse_term)
            .collect::<Result<_, _>>()?;
        Ok(Selector { requirements })
    }

    /// Parses a field selector; only `metadata.name` and
    /// `metadata.namespace` with `=`, `==`, `!=` are supported.
    ///
    /// # Errors
    /// `BadTerm` or `UnsupportedField`.
    pub fn parse_fields(s: &str) -> Result<Selector, SelectorError> {
        let sel = Selector::parse(s)?;
        for r in &sel.requirements {
            if !matches!(r.op, Op::Eq(_) | Op::NotEq(_)) {
                return Err(SelectorError::BadTerm(r.key.clone()));
            }
            if r.key != "metadata.name" && r.key != "metadata.namespace" {
                return Err(SelectorError::UnsupportedField(r.key.clone()));
            }
        }
        Ok(sel)
    }

    /// Converts a `LabelSelector` JSON object (`matchLabels`,
    /// `matchExpressions`) into a selector, as `LabelSelectorAsSelector`.
    pub fn from_label_selector(ls: &Value) -> Selector {
        let mut requirements = Vec::new();
        if let Some(m) = ls.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq(v.as_str().unwrap_or_default().to_owned()),
                });
            }
        }
        if let Some(exprs) = ls.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e["key"].as_str().unwrap_or_default().to_owned();
                let values: Vec<String> = e["values"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e["operator"].as_str().unwrap_or_default() {
                    "In" => Op::In(values),
                    "NotIn" => Op::NotIn(values),
                    "Exists" => Op::Exists,
                    _ => Op::DoesNotExist,
                };
                requirements.push(Requirement { key, op });
            }
        }
        Selector { requirements }
    }

    /// Whether a label map (JSON object or missing) satisfies the selector.
    pub fn matches_labels(&self, labels: Option<&Value>) -> bool {
        self.requirements.iter().all(|r| {
            let v = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            r.matches(v)
        })
    }

    /// Whether an object's labels satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches_labels(obj.pointer("/metadata/labels"))
    }

    /// Whether an object's fields satisfy a field selector.
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let path = format!("/{}", r.key.replace('.', "/"));
            r.matches(obj.pointer(&path).and_then(Value::as_str))
        })
    }
}

impl std::fmt::Display for Selector {
    /// Renders like `labels.Selector.String()`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match &r.op {
                Op::Eq(v) => format!("{}={}", r.key, v),
                Op::NotEq(v) => format!("{}!={}", r.key, v),
                Op::In(vs) => format!("{} in ({})", r.key, vs.join(",")),
                Op::NotIn(vs) => format!("{} notin ({})", r.key, vs.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_operator() {
        let s = Selector::parse("app=web, tier==fe,env!=prod,zone in (a, b),x notin (c),has,!gone")
            .unwrap();
        assert_eq!(s.requirements.len(), 7);
        assert_eq!(
            s.to_string(),
            "app=web,tier=fe,env!=prod,zone in (a,b),x notin (c),has,!gone"
        );
        let ok = json!({"app":"web","tier":"fe","env":"dev","zone":"b","has":""});
        assert!(s.matches_labels(Some(&ok)));
        let bad = json!({"app":"web","tier":"fe","zone":"b","has":"","gone":"1"});
        assert!(!s.matches_labels(Some(&bad)));
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(Selector::parse("").unwrap().matches_labels(None));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Selector::parse("a in b").is_err());
        assert!(Selector::parse("=x").is_err());
        assert!(Selector::parse("a=(b)").is_err());
        assert!(matches!(
            Selector::parse_fields("spec.replicas=1"),
            Err(SelectorError::UnsupportedField(_))
        ));
    }

    #[test]
    fn field_selector_matches_metadata() {
        let f = Selector::parse_fields("metadata.name=web").unwrap();
        assert!(f.matches_fields(&json!({"metadata":{"name":"web"}})));
        assert!(!f.matches_fields(&json!({"metadata":{"name":"api"}})));
    }

    #[test]
    fn label_selector_object_converts() {
        let ls = json!({"matchLabels":{"app":"web"},
            "matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]},
                                {"key":"x","operator":"DoesNotExist"}]});
        let s = Selector::from_label_selector(&ls);
        assert_eq!(s.to_string(), "app=web,tier in (a,b),!x");
    }
}
