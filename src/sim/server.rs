//! The HTTP front of the simulator: discovery, CRUD, subresources, patches,
//! Tables and watches, answering the way kube-apiserver does for the
//! requests kubectl and kube-rs make.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::authz::{Attributes, Denial, authorize};
use super::faults::FaultOn;
use super::selector::Selector;
use super::smp;
use super::store::{EventType, Kind, Store, StoreError, WatchEvent, WriteMode, name_of};
use super::table::{TABLE_CONTENT_TYPE, table};

/// One request the simulator received, for test assertions (e.g. "no PATCH
/// was sent").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// `Content-Type` of the request, if any.
    pub content_type: Option<String>,
    /// When the request arrived (before it was handled), for measuring
    /// how long a client took to get here.
    pub at: std::time::Instant,
}

/// Shared state of the HTTP handlers.
pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub version: String,
    pub addr: SocketAddr,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub metrics: super::metrics::Metrics,
    /// The seed's `forbid` rules.
    pub forbid: Vec<super::seed::ForbidRule>,
    /// Armed failures (tests).
    pub faults: super::faults::Faults,
}

/// An error answered as a `Status` object.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// What kube-apiserver answers when a request fails inside it (an
    /// etcd timeout, a restart): `500` with reason `InternalError`.
    fn injected() -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: injected fault (rollbot simulator)",
        );
        e.details = Some(json!({"causes": [{"message": "injected fault (rollbot simulator)"}]}));
        e
    }

    fn not_found_path() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    fn invalid(kind: Kind, name: &str, causes: &[String]) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{}.{} \"{name}\" is invalid: {}",
                kind.kind(),
                kind.group(),
                causes.join(", ")
            )
            .replace(". \"", " \""),
        );
        e.details = Some(json!({"name": name, "group": kind.group(), "kind": kind.kind()}));
        e
    }

    fn forbidden(d: Denial) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "Forbidden", d.message);
        e.details = Some(d.details);
        e
    }

    fn from_store(kind: Kind, e: StoreError) -> Self {
        let (code, reason, name) = match &e {
            StoreError::NotFound { name, .. } => (StatusCode::NOT_FOUND, "NotFound", name.clone()),
            StoreError::AlreadyExists { name, .. } => {
                (StatusCode::CONFLICT, "AlreadyExists", name.clone())
            }
            StoreError::Conflict { name, .. } => (StatusCode::CONFLICT, "Conflict", name.clone()),
            StoreError::NoName => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid", String::new()),
        };
        let mut err = Self::new(code, reason, e.to_string());
        err.details = Some(json!({"name": name, "group": kind.group(), "kind": kind.plural()}));
        err
    }

    fn status_body(&self) -> Value {
        let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code.as_u16()});
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.code, &self.status_body())
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

type ApiResult = Result<Response, ApiError>;

/// Prometheus answers errors with 400 and the error object.
fn prometheus(result: Result<Value, Value>) -> Response {
    match result {
        Ok(v) => ok(&v),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &e),
    }
}

/// The router serving every path.
pub(crate) fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

async fn handle(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let at = std::time::Instant::now();
    if let Ok(mut r) = st.requests.lock() {
        r.push(RequestRecord {
            at,
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            content_type: content_type.clone(),
        });
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let req = Req {
        method,
        q,
        accept,
        content_type: content_type.unwrap_or_default(),
        body,
    };
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let res = match segs.as_slice() {
        ["version"] => Ok(ok(&version(&st.version))),
        ["healthz" | "readyz" | "livez"] => Ok("ok".into_response()),
        ["api", "v1", "query"] => Ok(prometheus(st.metrics.query(&st.store, &req.params()))),
        ["api", "v1", "query_range"] => Ok(prometheus(st.metrics.query_range(&req.params()))),
        ["api"] => Ok(ok(&json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": st.addr.to_string()}]}))),
        ["apis"] => Ok(ok(&api_groups())),
        ["api", "v1"] => Ok(ok(&resource_list("", "v1"))),
        ["apis", g, v] if served(g, v) => Ok(ok(&resource_list(g, v))),
        ["api", "v1", rest @ ..] => resource(&st, "", rest, req).await,
        ["apis", g, v, rest @ ..] if served(g, v) => resource(&st, g, rest, req).await,
        _ => Err(ApiError::not_found_path()),
    };
    res.unwrap_or_else(IntoResponse::into_response)
}

struct Req {
    method: Method,
    q: HashMap<String, String>,
    accept: String,
    content_type: String,
    body: Bytes,
}

impl Req {
    /// Query parameters plus, for a form POST, the body's fields (Prometheus
    /// clients may use either).
    fn params(&self) -> HashMap<String, String> {
        let mut all = self.q.clone();
        if self
            .content_type
            .starts_with("application/x-www-form-urlencoded")
            && let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&self.body)
        {
            all.extend(form);
        }
        all
    }

    fn dry_run(&self) -> bool {
        self.q.get("dryRun").is_some_and(|v| v == "All")
    }
    fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }
    fn flag(&self, k: &str) -> bool {
        self.q.get(k).is_some_and(|v| v == "true" || v == "1")
    }
}

fn version(git: &str) -> Value {
    let trimmed = git.trim_start_matches('v');
    let mut parts = trimmed.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("33");
    json!({"major": major, "minor": minor, "gitVersion": git, "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0",
        "compiler": "gc", "platform": "linux/amd64"})
}

/// Whether the simulator serves version `v` of API group `g`.
fn served(g: &str, v: &str) -> bool {
    Kind::groups().contains(&(g, v))
}

fn api_groups() -> Value {
    let groups: Vec<Value> = Kind::groups()
        .into_iter()
        .map(|(name, v)| {
            json!({"name": name, "versions": [{"groupVersion": format!("{name}/{v}"), "version": v}],
                "preferredVersion": {"groupVersion": format!("{name}/{v}"), "version": v}})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for k in Kind::ALL.into_iter().filter(|k| k.group() == group) {
        let mut r = json!({"name": k.plural(), "singularName": k.singular(), "namespaced": k.namespaced(),
            "kind": k.kind(), "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]});
        if !k.short_names().is_empty() {
            r["shortNames"] = json!(k.short_names());
        }
        if matches!(
            k,
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet
        ) {
            r["categories"] = json!(["all"]);
        }
        resources.push(r);
        if k.has_status() || k == Kind::Namespace {
            resources.push(json!({"name": format!("{}/status", k.plural()), "singularName": "",
                "namespaced": k.namespaced(), "kind": k.kind(), "verbs": ["get", "patch", "update"]}));
        }
        if matches!(k, Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet) {
            resources.push(
                json!({"name": format!("{}/scale", k.plural()), "singularName": "",
                "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

async fn resource(st: &Arc<AppState>, group: &str, rest: &[&str], req: Req) -> ApiResult {
    let (ns, tail): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(*ns), tail),
        _ => (None, rest),
    };
    let Some((plural, tail)) = tail.split_first() else {
        return Err(ApiError::not_found_path());
    };
    let kind = Kind::from_group_plural(group, plural).ok_or_else(ApiError::not_found_path)?;
    // The API server authorizes before it looks at the object, so a refused
    // request is refused even if the object does not exist.
    let field_selector = req.q.get("fieldSelector").map(String::as_str);
    if let Some(attrs) = Attributes::of(
        &req.method,
        kind,
        ns,
        tail,
        req.flag("watch"),
        field_selector,
    ) {
        authorize(&st.forbid, &attrs).map_err(ApiError::forbidden)?;
    }
    if kind.namespaced() != ns.is_some()
        && !(kind.namespaced() && tail.is_empty() && req.method == Method::GET)
    {
        return Err(ApiError::not_found_path());
    }
    let ns_str = ns.unwrap_or("");
    match (tail, req.method.clone()) {
        ([], Method::GET) => {
            let on = if req.flag("watch") {
                FaultOn::Watch
            } else {
                FaultOn::List
            };
            if st.faults.take(kind, on) {
                return Err(ApiError::injected());
            }
            if on == FaultOn::Watch {
                let cut = st.faults.take(kind, FaultOn::WatchCut);
                watch(st, kind, ns, &req, cut)
            } else {
                list(st, kind, ns, &req)
            }
        }
        ([], Method::POST) => create(st, kind, ns_str, &req),
        ([name], Method::GET) => {
            let obj = get(st, kind, ns_str, name)?;
            if req.wants_table() {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                Ok(table_response(&table(kind, &[obj], rv)))
            } else {
                Ok(ok(&obj))
            }
        }
        ([name], Method::PUT) => {
            let obj = parse_body(&req)?;
            write(st, kind, ns_str, name, obj, WriteMode::Main, &req)
        }
        ([name], Method::PATCH) => {
            let cur = get(st, kind, ns_str, name)?;
            let obj = apply_patch(&cur, &req)?;
            write(st, kind, ns_str, name, obj, WriteMode::Main, &req)
        }
        ([name], Method::DELETE) => delete(st, kind, ns_str, name, &req),
        ([name, "status"], m) if kind.has_status() || kind == Kind::Namespace => {
            let cur = get(st, kind, ns_str, name)?;
            match m {
                Method::GET => Ok(ok(&cur)),
                Method::PUT => write(
                    st,
                    kind,
                    ns_str,
                    name,
                    parse_body(&req)?,
                    WriteMode::Status,
                    &req,
                ),
                Method::PATCH => {
                    let obj = apply_patch(&cur, &req)?;
                    write(st, kind, ns_str, name, obj, WriteMode::Status, &req)
                }
                _ => Err(method_not_allowed()),
            }
        }
        ([name, "scale"], m)
            if matches!(
                kind,
                Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet
            ) =>
        {
            let cur = get(st, kind, ns_str, name)?;
            let scale = scale_of(&cur);
            let new_scale = match m {
                Method::GET => return Ok(ok(&scale)),
                Method::PUT => parse_body(&req)?,
                Method::PATCH => apply_patch(&scale, &req)?,
                _ => return Err(method_not_allowed()),
            };
            let replicas = new_scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    ApiError::invalid(kind, name, &["spec.replicas: Required value".into()])
                })?;
            let mut obj = cur;
            obj["spec"]["replicas"] = json!(replicas);
            obj["metadata"]["resourceVersion"] = new_scale
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            validate(kind, name, &obj)?;
            let stored = st
                .store
                .update(kind, obj, WriteMode::Main, req.dry_run())
                .map_err(|e| ApiError::from_store(kind, e))?;
            Ok(ok(&scale_of(&stored)))
        }
        _ => Err(ApiError::not_found_path()),
    }
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

fn table_response(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, TABLE_CONTENT_TYPE)],
        v.to_string(),
    )
        .into_response()
}

fn get(st: &AppState, kind: Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
    st.store.get(kind, ns, name).ok_or_else(|| {
        ApiError::from_store(
            kind,
            StoreError::NotFound {
                kind: kind.qualified(),
                name: name.to_owned(),
            },
        )
    })
}

fn parse_body(req: &Req) -> Result<Value, ApiError> {
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn selectors(req: &Req) -> Result<(Selector, Selector), ApiError> {
    let labels = Selector::parse(req.q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = Selector::parse_fields(req.q.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

fn list(st: &AppState, kind: Kind, ns: Option<&str>, req: &Req) -> ApiResult {
    let (labels, fields) = selectors(req)?;
    let (items, rv) = st.store.list(kind, ns);
    let items: Vec<Value> = items
        .into_iter()
        .filter(|o| labels.matches_object(o) && fields.matches_fields(o))
        .collect();
    if req.wants_table() {
        return Ok(table_response(&table(kind, &items, rv)));
    }
    Ok(ok(
        &json!({"kind": format!("{}List", kind.kind()), "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    ))
}

fn create(st: &AppState, kind: Kind, ns: &str, req: &Req) -> ApiResult {
    let mut obj = parse_body(req)?;
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
            m.remove(f);
        }
    }
    if kind.namespaced() {
        if let Some(body_ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if st.store.get(Kind::Namespace, "", ns).is_none() {
            return Err(ApiError::from_store(
                Kind::Namespace,
                StoreError::NotFound {
                    kind: "namespaces".into(),
                    name: ns.to_owned(),
                },
            ));
        }
        obj["metadata"]["namespace"] = json!(ns);
    }
    apply_defaults(kind, &mut obj);
    validate(kind, name_of(&obj), &obj)?;
    let created = st
        .store
        .create(kind, obj, req.dry_run())
        .map_err(|e| ApiError::from_store(kind, e))?;
    Ok(json_response(StatusCode::CREATED, &created))
}

fn write(
    st: &AppState,
    kind: Kind,
    ns: &str,
    name: &str,
    mut obj: Value,
    mode: WriteMode,
    req: &Req,
) -> ApiResult {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if name_of(&obj) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            name_of(&obj)
        )));
    }
    if kind.namespaced() {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if mode == WriteMode::Main {
        apply_defaults(kind, &mut obj);
        validate(kind, name, &obj)?;
    }
    let stored = st
        .store
        .update(kind, obj, mode, req.dry_run())
        .map_err(|e| ApiError::from_store(kind, e))?;
    Ok(ok(&stored))
}

fn delete(st: &AppState, kind: Kind, ns: &str, name: &str, req: &Req) -> ApiResult {
    let obj = st
        .store
        .delete(kind, ns, name, req.dry_run())
        .map_err(|e| ApiError::from_store(kind, e))?;
    if !req.dry_run() {
        // Garbage collection of dependants (background propagation).
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for child in [Kind::ReplicaSet, Kind::ControllerRevision] {
            let (items, _) = st.store.list(child, Some(ns));
            for c in items
                .iter()
                .filter(|c| super::controller::controlled_by(c, &uid))
            {
                let _ = st.store.delete(child, ns, name_of(c), false);
            }
        }
    }
    Ok(ok(&obj))
}

/// The `autoscaling/v1` Scale of a workload.
fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": super::controller::int_at(obj, "/status/replicas"),
            "selector": super::controller::selector_string(obj)},
    })
}

fn apply_patch(cur: &Value, req: &Req) -> Result<Value, ApiError> {
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let parse = || -> Result<Value, ApiError> { parse_body(req) };
    match ct {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut doc = cur.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| match e.kind {
                json_patch::PatchErrorKind::TestFailed => ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("the server rejected our request due to an error in our request: {e}"),
                ),
                _ => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                ),
            })?;
            Ok(doc)
        }
        "application/merge-patch+json" => {
            let p = parse()?;
            let mut doc = cur.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" => {
            let p = parse()?;
            smp::apply(cur, &p).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
            ),
        )),
    }
}

/// `SetDefaults_*` for the workloads.
fn apply_defaults(kind: Kind, obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        if !kind.has_generation() {
            return;
        }
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    // The real server decodes into Go structs and re-encodes, so templates
    // come back with `creationTimestamp: null` and `resources: {}` whether
    // or not the client sent them.
    if let Some(t) = spec.get("template").filter(|t| t.is_object()) {
        spec["template"] = super::semantic::go_template(t);
    }
    let set = |spec: &mut Value, k: &str, v: Value| {
        if spec.get(k).is_none_or(Value::is_null) {
            spec[k] = v;
        }
    };
    match kind {
        Kind::Deployment => {
            set(spec, "replicas", json!(1));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "progressDeadlineSeconds", json!(600));
            set(spec, "strategy", json!({"type": "RollingUpdate"}));
            if spec["strategy"]["type"] == "RollingUpdate" {
                set(&mut spec["strategy"], "rollingUpdate", json!({}));
                set(
                    &mut spec["strategy"]["rollingUpdate"],
                    "maxSurge",
                    json!("25%"),
                );
                set(
                    &mut spec["strategy"]["rollingUpdate"],
                    "maxUnavailable",
                    json!("25%"),
                );
            }
        }
        Kind::StatefulSet => {
            set(spec, "replicas", json!(1));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "podManagementPolicy", json!("OrderedReady"));
            set(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
        }
        Kind::DaemonSet => {
            set(spec, "revisionHistoryLimit", json!(10));
            set(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
            );
        }
        Kind::ReplicaSet => set(spec, "replicas", json!(1)),
        _ => {}
    }
}

/// The validation rules that matter for rollouts.
fn validate(kind: Kind, name: &str, obj: &Value) -> Result<(), ApiError> {
    if !matches!(
        kind,
        Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::ReplicaSet
    ) {
        return Ok(());
    }
    let mut causes = Vec::new();
    if obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .is_some_and(|r| r < 0)
    {
        causes.push("spec.replicas: Invalid value: must be greater than or equal to 0".to_owned());
    }
    let selector = obj.pointer("/spec/selector");
    match selector {
        None | Some(Value::Null) => causes.push("spec.selector: Required value".into()),
        Some(sel) => {
            let s = Selector::from_label_selector(sel);
            if s.requirements.is_empty() {
                causes.push(
                    "spec.selector: Invalid value: empty selector is invalid for deployment".into(),
                );
            } else if !s.matches_labels(obj.pointer("/spec/template/metadata/labels")) {
                causes.push("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`".into());
            }
        }
    }
    match obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
    {
        None => causes.push("spec.template.spec.containers: Required value".into()),
        Some(cs) if cs.is_empty() => {
            causes.push("spec.template.spec.containers: Required value".into())
        }
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    causes.push(format!(
                        "spec.template.spec.containers[{i}].name: Required value"
                    ));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    causes.push(format!(
                        "spec.template.spec.containers[{i}].image: Required value"
                    ));
                }
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, name, &causes))
    }
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": event_type, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn expired_line(rv: u64) -> Bytes {
    event_line(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {rv}"), "reason": "Expired", "code": 410}),
    )
}

/// Turns a logged event into what a filtered watch sees: label changes in
/// and out of the selector become ADDED / DELETED, like the real server.
fn filter_event(
    e: &WatchEvent,
    ns: Option<&str>,
    labels: &Selector,
    fields: &Selector,
) -> Option<Bytes> {
    let matches = |o: &Value| {
        ns.is_none_or(|n| super::store::namespace_of(o) == n)
            && labels.matches_object(o)
            && fields.matches_fields(o)
    };
    let now = matches(&e.object);
    let before = e.previous.as_ref().is_some_and(matches);
    let t = match e.event_type {
        EventType::Added | EventType::Deleted => now.then_some(e.event_type.as_str()),
        EventType::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }?;
    Some(event_line(t, &e.object))
}

/// The longest watch served: a day (the apiserver ends watches far sooner).
const MAX_WATCH_SECONDS: u64 = 86_400;

/// A watch. With `cut`, the connection is broken after the first event
/// line, as when the apiserver instance serving it goes away.
fn watch(st: &Arc<AppState>, kind: Kind, ns: Option<&str>, req: &Req, cut: bool) -> ApiResult {
    let (labels, fields) = selectors(req)?;
    let timeout = req
        .q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        // Any u64 parses; a deadline must still fit in an Instant.
        .map_or(1800, |t| t.min(MAX_WATCH_SECONDS));
    let send_initial = req.flag("sendInitialEvents");
    let rv_param = req.q.get("resourceVersion").cloned().unwrap_or_default();
    let ns = ns.map(str::to_owned);
    let mut changed = st.store.subscribe();
    let mut initial: Vec<Bytes> = Vec::new();
    let mut expired = false;
    let from_rv = if send_initial || rv_param.is_empty() || rv_param == "0" {
        let (items, rv) = st.store.list(kind, ns.as_deref());
        for o in items
            .iter()
            .filter(|o| labels.matches_object(o) && fields.matches_fields(o))
        {
            initial.push(event_line("ADDED", o));
        }
        if send_initial {
            initial.push(event_line(
                "BOOKMARK",
                &json!({"kind": kind.kind(), "apiVersion": kind.api_version(),
                "metadata": {"resourceVersion": rv.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"}}}),
            ));
        }
        rv
    } else {
        let rv = rv_param
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?;
        if st.store.events_since(kind, rv).is_none() {
            initial.push(expired_line(rv));
            expired = true;
        }
        rv
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let store = st.store.clone();
    let mut shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        // Sends one line; with `cut`, then breaks the connection (an error
        // in the body stream makes the server abort the response).
        let send = |line: Bytes| {
            let tx = tx.clone();
            async move {
                if tx.send(Ok(line)).await.is_err() {
                    return false;
                }
                if cut {
                    let _ = tx
                        .send(Err(std::io::Error::other("watch cut (injected fault)")))
                        .await;
                    return false;
                }
                true
            }
        };
        for line in initial {
            if !send(line).await {
                return;
            }
        }
        if expired {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut last = from_rv;
        loop {
            let Some(events) = store.events_since(kind, last) else {
                let _ = send(expired_line(last)).await;
                return;
            };
            for e in &events {
                last = e.rv;
                if let Some(line) = filter_event(e, ns.as_deref(), &labels, &fields)
                    && !send(line).await
                {
                    return;
                }
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}
