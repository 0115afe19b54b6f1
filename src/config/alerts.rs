//! `[alerts]`: alert webhook sources, their authentication, and routes.

use super::*;

/// `[alerts]`: which webhook sources are enabled, how each authenticates,
/// and how alerts are routed to services. A source without its table is
/// disabled (its route answers 404).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// `[[alerts.routes]]`, first match wins (see [`crate::alerts::routing`]).
    #[serde(default)]
    pub routes: Vec<crate::alerts::RouteConfig>,
    /// `POST /webhooks/alertmanager`.
    pub alertmanager: Option<WebhookAuthConfig>,
    /// `POST|PUT /webhooks/grafana`.
    pub grafana: Option<GrafanaWebhookConfig>,
    /// `POST /webhooks/generic`.
    pub generic: Option<WebhookAuthConfig>,
    /// `POST /webhooks/pagerduty` (V3 webhook subscriptions).
    pub pagerduty: Option<PagerDutyWebhookConfig>,
}

/// Credentials a sender must present: exactly one of a bearer token or
/// basic auth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuthConfig {
    /// Expected `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// Expected `Authorization: Basic …`.
    pub basic_auth: Option<BasicAuthConfig>,
}

/// Username and password for HTTP basic auth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    pub password: Secret,
}

/// Grafana: an optional HMAC signature and/or an `Authorization` header; at
/// least one must be configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrafanaWebhookConfig {
    pub bearer_token: Option<Secret>,
    pub basic_auth: Option<BasicAuthConfig>,
    /// Grafana's "HMAC signature" secret; requests must then be signed.
    pub hmac_secret: Option<Secret>,
    /// Header carrying the signature; Grafana's default if absent.
    pub signature_header: Option<String>,
    /// Header carrying the signed timestamp, when Grafana is set to send one.
    pub timestamp_header: Option<String>,
}

/// PagerDuty V3: every delivery is signed with the subscription's secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyWebhookConfig {
    pub signing_secret: Secret,
}

impl Config {
    pub(super) fn check_alerts(
        &self,
        alerts: &AlertsConfig,
        problem: &mut impl FnMut(String, String),
    ) {
        use crate::alerts::RouteConfigError as E;
        use crate::alerts::routing::Route;
        for (i, route) in alerts.routes.iter().enumerate() {
            let at = format!("alerts.routes[{i}]");
            match Route::from_config(i, route) {
                Ok(_) => {}
                Err(E::InvalidMatcher { index, source, .. }) => {
                    problem(format!("{at}.matchers[{index}]"), source.to_string())
                }
                Err(E::EmptyService { .. }) => problem(
                    format!("{at}.service"),
                    "must name the service to roll back, e.g. \"payment-api\"".into(),
                ),
                Err(E::UnknownSeverity { index, source, .. }) => {
                    problem(format!("{at}.severities[{index}]"), source.to_string())
                }
                Err(E::InvalidDuration { value, reason, .. }) => problem(
                    format!("{at}.for_duration"),
                    format!("invalid duration {value:?}: {reason}"),
                ),
            }
            let service = route.service.trim();
            if !service.is_empty() && !self.services.contains_key(service) {
                let known: Vec<_> = self.services.keys().map(String::as_str).collect();
                problem(
                    format!("{at}.service"),
                    format!(
                        "service {service:?} is not defined under [services] (defined: {}); add [services.{service}] or fix the name",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        if let Some(am) = &alerts.alertmanager {
            check_webhook_auth(
                "alerts.alertmanager",
                &am.bearer_token,
                &am.basic_auth,
                false,
                problem,
            );
        }
        if let Some(generic) = &alerts.generic {
            check_webhook_auth(
                "alerts.generic",
                &generic.bearer_token,
                &generic.basic_auth,
                false,
                problem,
            );
        }
        if let Some(g) = &alerts.grafana {
            if let Some(secret) = &g.hmac_secret {
                check_secret(secret, "alerts.grafana.hmac_secret", problem);
            }
            check_webhook_auth(
                "alerts.grafana",
                &g.bearer_token,
                &g.basic_auth,
                g.hmac_secret.is_some(),
                problem,
            );
            for (key, value) in [
                ("signature_header", &g.signature_header),
                ("timestamp_header", &g.timestamp_header),
            ] {
                if let Some(h) = value
                    && axum::http::HeaderName::from_bytes(h.as_bytes()).is_err()
                {
                    problem(
                        format!("alerts.grafana.{key}"),
                        format!("{h:?} is not a valid HTTP header name"),
                    );
                }
            }
        }
        if let Some(pd) = &alerts.pagerduty {
            check_secret(
                &pd.signing_secret,
                "alerts.pagerduty.signing_secret",
                problem,
            );
        }
    }
}

/// A webhook's credentials: at most one `Authorization` kind, none inline,
/// and some authentication unless the source signs its requests.
pub(super) fn check_webhook_auth(
    path: &str,
    bearer: &Option<Secret>,
    basic: &Option<BasicAuthConfig>,
    signed: bool,
    problem: &mut impl FnMut(String, String),
) {
    if let Some(token) = bearer {
        check_secret(token, &format!("{path}.bearer_token"), problem);
    }
    if let Some(basic) = basic {
        check_secret(
            &basic.password,
            &format!("{path}.basic_auth.password"),
            problem,
        );
        if basic.username.is_empty() {
            problem(
                format!("{path}.basic_auth.username"),
                "must not be empty".into(),
            );
        }
    }
    if bearer.is_some() && basic.is_some() {
        problem(
            path.into(),
            "set either bearer_token or basic_auth, not both: a sender sends one Authorization header".into(),
        );
    }
    if bearer.is_none() && basic.is_none() && !signed {
        problem(
            path.into(),
            "no credentials: set bearer_token = { env = \"VAR\" } or a basic_auth table, so only your sender can open proposals".into(),
        );
    }
}
