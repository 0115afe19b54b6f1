//! The simulator's stand-in for RBAC: the seed's `forbid` rules, and the
//! `403 Forbidden` Status kube-apiserver answers a refused request with.
//!
//! A request is described the way the API server's authorizer sees it
//! (verb, resource, subresource, namespace, name; `RequestInfo` in
//! `k8s.io/apiserver`), so a rule written like an RBAC rule refuses exactly
//! the requests the missing grant would. The message follows kube-apiserver's
//! `forbiddenMessage` and `NewForbidden`:
//! `deployments.apps "web" is forbidden: User "…" cannot patch resource
//! "deployments" in API group "apps" in the namespace "shop"`, without the
//! name for a collection, and ending `at the cluster scope` for a request
//! with no namespace. kubectl prints it after `Error from server
//! (Forbidden): ` (or inside its own message, as `rollout undo` does for
//! the patch); kube-rs returns it as `kube::Error::Api` with code 403.

use axum::http::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::selector::{Op, Selector};
use super::store::Kind;

/// Who every request is made as: rollbot's service account, as in
/// `deploy/rbac.yaml`. The simulator has no authentication, so it names the
/// identity rollbot runs as in a cluster.
pub const USER: &str = "system:serviceaccount:rollbot:rollbot";

/// The verbs of resource requests, as RBAC rules name them.
pub const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Subresources the simulator serves.
const SUBRESOURCES: [&str; 2] = ["status", "scale"];

/// A resource request as the authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// Kubernetes verb (one of [`VERBS`]).
    pub verb: &'static str,
    /// The resource.
    pub kind: Kind,
    /// `status` or `scale`, if the path names one.
    pub subresource: Option<&'a str>,
    /// Namespace of the request; `None` for cluster-scoped requests.
    pub namespace: Option<&'a str>,
    /// Object name; `None` for a collection.
    pub name: Option<String>,
}

impl<'a> Attributes<'a> {
    /// Describes a request for `kind`: `ns` from the path, `tail` the path
    /// after the resource (`[name]`, `[name, subresource]` or empty),
    /// `watch` whether `?watch=true`, `field_selector` the raw
    /// `fieldSelector`. `None` for a method that maps to no verb.
    ///
    /// As in the API server, a list or watch whose field selector requires
    /// `metadata.name=X` is authorized as a request for `X`, and a request
    /// for one Namespace is in that namespace.
    pub fn of(
        method: &Method,
        kind: Kind,
        ns: Option<&'a str>,
        tail: &[&'a str],
        watch: bool,
        field_selector: Option<&str>,
    ) -> Option<Self> {
        let verb = verb(method, !tail.is_empty(), watch)?;
        let mut name = tail.first().map(|n| (*n).to_owned());
        if name.is_none() && matches!(verb, "list" | "watch") {
            name = field_selector.and_then(exact_name);
        }
        let namespace = match (kind, tail.first()) {
            (Kind::Namespace, Some(n)) => Some(*n),
            _ => ns,
        };
        Some(Attributes {
            verb,
            kind,
            subresource: tail.get(1).copied(),
            namespace,
            name,
        })
    }

    /// `deployments` or `deployments/scale`, as RBAC rules name it.
    fn resource(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.kind.plural()),
            None => self.kind.plural().to_owned(),
        }
    }
}

/// The verb of a request, from its method and whether the path names an
/// object (`RequestInfoFactory.NewRequestInfo`).
pub fn verb(method: &Method, has_name: bool, watch: bool) -> Option<&'static str> {
    let v = match *method {
        Method::GET | Method::HEAD if has_name => "get",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => return None,
    };
    Some(v)
}

/// `X` when the field selector requires `metadata.name=X`.
fn exact_name(field_selector: &str) -> Option<String> {
    Selector::parse_fields(field_selector)
        .ok()?
        .requirements
        .into_iter()
        .find_map(|r| match r.op {
            Op::Eq(v) if r.key == "metadata.name" => Some(v),
            _ => None,
        })
}

/// A refused request: what goes into the `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Denial {
    /// `Status.message`.
    pub message: String,
    /// `Status.details`.
    pub details: Value,
}

/// A request the simulated RBAC refuses (see the module documentation).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForbidRule {
    /// Kubernetes verb, e.g. `patch`.
    pub verb: String,
    /// Plural resource, optionally with a subresource: `deployments`,
    /// `deployments/scale`.
    pub resource: String,
    /// Namespace the rule applies in; everywhere when unset.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Whether `rule` refuses `req`. A rule for one namespace also refuses the
/// cluster-wide request: it stands for a missing grant, and a grant that
/// covers all namespaces would cover that one.
fn refuses(rule: &ForbidRule, req: &Attributes<'_>) -> bool {
    rule.verb == req.verb
        && rule.resource == req.resource()
        && match (&rule.namespace, req.namespace) {
            (None, _) | (Some(_), None) => true,
            (Some(rule_ns), Some(ns)) => rule_ns == ns,
        }
}

/// Checks `req` against the rules.
///
/// # Errors
/// The [`Denial`] to answer with when a rule refuses the request.
pub fn authorize(rules: &[ForbidRule], req: &Attributes<'_>) -> Result<(), Denial> {
    if rules.iter().any(|r| refuses(r, req)) {
        Err(denial(req))
    } else {
        Ok(())
    }
}

/// kube-apiserver's message and details for a refused request.
fn denial(req: &Attributes<'_>) -> Denial {
    let group = req.kind.group();
    let scope = match req.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_owned(),
    };
    let why = format!(
        "User {USER:?} cannot {} resource {:?} in API group {group:?} {scope}",
        req.verb,
        req.resource()
    );
    let qualified = req.kind.qualified();
    let message = match &req.name {
        Some(name) => format!("{qualified} {name:?} is forbidden: {why}"),
        None => format!("{qualified} is forbidden: {why}"),
    };
    // `StatusDetails` omits empty fields.
    let mut details = Map::new();
    if let Some(name) = &req.name {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    details.insert("kind".into(), json!(req.kind.plural()));
    Denial {
        message,
        details: Value::Object(details),
    }
}

/// Checks a seed rule names a known verb and resource.
///
/// # Errors
/// A message naming the bad value and the accepted ones.
pub fn check_rule(rule: &ForbidRule) -> Result<(), String> {
    if !VERBS.contains(&rule.verb.as_str()) {
        return Err(format!(
            "unknown verb {:?}; use one of {}",
            rule.verb,
            VERBS.join(", ")
        ));
    }
    let (plural, sub) = match rule.resource.split_once('/') {
        Some((p, s)) => (p, Some(s)),
        None => (rule.resource.as_str(), None),
    };
    let known = Kind::ALL.iter().any(|k| k.plural() == plural);
    if !known || sub.is_some_and(|s| !SUBRESOURCES.contains(&s)) {
        let plurals: Vec<&str> = Kind::ALL.iter().map(|k| k.plural()).collect();
        return Err(format!(
            "unknown resource {:?}; use one of {}, optionally with /status or /scale",
            rule.resource,
            plurals.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verb: &str, resource: &str, namespace: Option<&str>) -> ForbidRule {
        ForbidRule {
            verb: verb.into(),
            resource: resource.into(),
            namespace: namespace.map(str::to_owned),
        }
    }

    fn attrs<'a>(
        method: Method,
        kind: Kind,
        ns: Option<&'a str>,
        tail: &[&'a str],
        query: (bool, Option<&str>),
    ) -> Attributes<'a> {
        Attributes::of(&method, kind, ns, tail, query.0, query.1).unwrap()
    }

    #[test]
    fn methods_map_to_kubernetes_verbs() {
        let cases = [
            (Method::GET, true, false, "get"),
            (Method::GET, false, false, "list"),
            (Method::GET, false, true, "watch"),
            (Method::PATCH, true, false, "patch"),
            (Method::PUT, true, false, "update"),
            (Method::POST, false, false, "create"),
            (Method::DELETE, true, false, "delete"),
            (Method::DELETE, false, false, "deletecollection"),
        ];
        for (method, has_name, watch, want) in cases {
            assert_eq!(verb(&method, has_name, watch), Some(want), "{method}");
        }
        assert_eq!(verb(&Method::OPTIONS, true, false), None);
    }

    #[test]
    fn a_refused_patch_reads_like_kube_apiserver() {
        let req = attrs(
            Method::PATCH,
            Kind::Deployment,
            Some("production"),
            &["prod-payment-deploy"],
            (false, None),
        );
        let d = authorize(&[rule("patch", "deployments", Some("production"))], &req).unwrap_err();
        assert_eq!(
            d.message,
            r#"deployments.apps "prod-payment-deploy" is forbidden: User "system:serviceaccount:rollbot:rollbot" cannot patch resource "deployments" in API group "apps" in the namespace "production""#
        );
        assert_eq!(
            d.details,
            json!({"name": "prod-payment-deploy", "group": "apps", "kind": "deployments"})
        );
    }

    #[test]
    fn a_refused_list_has_no_name_and_cluster_scope_says_so() {
        let rules = [rule("list", "deployments", Some("production"))];
        let req = attrs(
            Method::GET,
            Kind::Deployment,
            Some("production"),
            &[],
            (false, Some("")),
        );
        let d = authorize(&rules, &req).unwrap_err();
        assert_eq!(
            d.message,
            r#"deployments.apps is forbidden: User "system:serviceaccount:rollbot:rollbot" cannot list resource "deployments" in API group "apps" in the namespace "production""#
        );
        assert_eq!(d.details, json!({"group": "apps", "kind": "deployments"}));
        // Listing in all namespaces needs the grant the rule withholds.
        let all = attrs(Method::GET, Kind::Deployment, None, &[], (false, None));
        assert!(authorize(&rules, &all).unwrap_err().message.ends_with(
            r#"cannot list resource "deployments" in API group "apps" at the cluster scope"#
        ));
        // Another namespace is not affected.
        let other = attrs(
            Method::GET,
            Kind::Deployment,
            Some("shop"),
            &[],
            (false, None),
        );
        assert_eq!(authorize(&rules, &other), Ok(()));
    }

    #[test]
    fn a_watch_for_one_name_is_authorized_for_that_name() {
        let req = attrs(
            Method::GET,
            Kind::Deployment,
            Some("production"),
            &[],
            (true, Some("metadata.name=web")),
        );
        assert_eq!(req.verb, "watch");
        let d = authorize(&[rule("watch", "deployments", None)], &req).unwrap_err();
        assert!(
            d.message
                .starts_with(r#"deployments.apps "web" is forbidden: "#),
            "{}",
            d.message
        );
        assert_eq!(d.details["name"], "web");
    }

    #[test]
    fn subresources_and_the_core_group_are_named_like_rbac() {
        let scale = attrs(
            Method::PATCH,
            Kind::Deployment,
            Some("production"),
            &["web", "scale"],
            (false, None),
        );
        // A rule for the main resource does not cover its subresources.
        assert_eq!(
            authorize(&[rule("patch", "deployments", None)], &scale),
            Ok(())
        );
        let d = authorize(&[rule("patch", "deployments/scale", None)], &scale).unwrap_err();
        assert!(
            d.message
                .contains(r#"cannot patch resource "deployments/scale" in API group "apps""#),
            "{}",
            d.message
        );
        assert_eq!(d.details["kind"], "deployments");
        let ns = attrs(
            Method::GET,
            Kind::Namespace,
            None,
            &["production"],
            (false, None),
        );
        let d = authorize(&[rule("get", "namespaces", Some("production"))], &ns).unwrap_err();
        assert_eq!(
            d.message,
            r#"namespaces "production" is forbidden: User "system:serviceaccount:rollbot:rollbot" cannot get resource "namespaces" in API group "" in the namespace "production""#
        );
        assert_eq!(
            d.details,
            json!({"name": "production", "kind": "namespaces"})
        );
    }

    #[test]
    fn rules_must_name_known_verbs_and_resources() {
        assert_eq!(check_rule(&rule("patch", "deployments", None)), Ok(()));
        assert_eq!(check_rule(&rule("get", "deployments/scale", None)), Ok(()));
        let bad_verb = check_rule(&rule("edit", "deployments", None)).unwrap_err();
        assert!(
            bad_verb.contains("\"edit\"") && bad_verb.contains("patch"),
            "{bad_verb}"
        );
        for bad in ["deployment", "pods", "deployments/logs"] {
            let e = check_rule(&rule("get", bad, None)).unwrap_err();
            assert!(e.contains(bad) && e.contains("replicasets"), "{e}");
        }
    }
}
