//! The configuration's parsing, defaults and validation.

use super::*;

const MINIMAL: &str = r#"
        [groups]
        sre = ["slack:UALICE", "slack:UBOB"]
        [services.payment-api]
        groups = ["sre"]
        [services.payment-api.kubernetes]
        namespace = "production"
        name = "prod-payment-deploy"
    "#;

fn problems(text: &str) -> Vec<String> {
    Config::parse(text)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_minimal_config_resolves_groups_and_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    let services = c.services();
    let s = &services[&ServiceName::parse("payment-api").unwrap()];
    assert_eq!(s.required, 2);
    assert_eq!(s.approvers.len(), 2);
    assert_eq!(s.expires_after, Duration::from_secs(1800));
    assert_eq!(
        s.target.to_string(),
        "deployment production/prod-payment-deploy"
    );
}

#[test]
fn unknown_keys_are_named() {
    let p = problems(&format!(
        "{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n"
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("server.lisen: unknown field `lisen`"),
        "{p:?}"
    );
}

#[test]
fn the_shutdown_grace_defaults_below_kubernetes_and_is_checked() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!(c.server.shutdown_grace(), Duration::from_secs(25));
    let c = Config::parse(&format!("{MINIMAL}\n[server]\nshutdown_grace = \"10s\"\n")).unwrap();
    assert_eq!(c.server.shutdown_grace(), Duration::from_secs(10));
    for bad in ["soon", "0s"] {
        let p = problems(&format!(
            "{MINIMAL}\n[server]\nshutdown_grace = \"{bad}\"\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("server.shutdown_grace: "), "{p:?}");
    }
}

#[test]
fn single_approver_needs_the_opt_in() {
    let text = MINIMAL.replace(
        "groups = [\"sre\"]",
        "groups = [\"sre\"]\nrequired_approvals = 1",
    );
    assert_eq!(
        problems(&text),
        [
            "services.payment-api.required_approvals: 1 breaks the two-person rule; set allow_single_approver = true for this service to opt in explicitly"
        ]
    );
    let ok = text.replace(
        "required_approvals = 1",
        "required_approvals = 1\nallow_single_approver = true",
    );
    let c = Config::parse(&ok).unwrap();
    assert!(
        c.services()
            .values()
            .all(|s| s.single_approver && s.required == 1)
    );
}

#[test]
fn inline_secrets_are_refused() {
    let text = format!(
        "{MINIMAL}\n[slack]\nbot_token = \"xoxb-123\"\nsigning_secret = {{ env = \"S\" }}\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("slack.bot_token: inline secrets are not allowed"),
        "{p:?}"
    );
}

#[test]
fn alert_routes_and_webhook_auth_are_checked_with_key_paths() {
    let text = format!(
        r#"{MINIMAL}
            [[alerts.routes]]
            matchers = ["service=payment-api"]
            service = "payment-api"
            for_duration = "5m"
            [[alerts.routes]]
            matchers = ["alertname"]
            service = "checkout"
            severities = ["spicy"]
            for_duration = "soon"
            [alerts.alertmanager]
            bearer_token = "inline-token"
            [alerts.generic]
            [alerts.grafana]
            hmac_secret = {{ env = "GRAFANA_HMAC" }}
            [alerts.pagerduty]
            signing_secret = {{ file = "/run/secrets/pd" }}
            "#
    );
    let p = problems(&text);
    let paths: Vec<_> = p.iter().map(|p| p.split(": ").next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "alerts.routes[1].matchers[0]",
            "alerts.routes[1].service",
            "alerts.alertmanager.bearer_token",
            "alerts.generic",
        ],
        "{p:#?}"
    );
    assert!(
        p[1].contains("\"checkout\" is not defined under [services] (defined: payment-api)"),
        "{p:?}"
    );
    assert!(p[3].contains("no credentials"), "{p:?}");
    let ok = text
        .replace("\"alertname\"", "\"alertname=X\"")
        .replace("\"checkout\"", "\"payment-api\"")
        .replace("[\"spicy\"]", "[\"P1\"]")
        .replace("\"soon\"", "\"1h30m\"")
        .replace("\"inline-token\"", "{ env = \"AM_TOKEN\" }")
        .replace("[alerts.generic]\n", "");
    let c = Config::parse(&ok).unwrap();
    assert_eq!(c.alerts.unwrap().routes.len(), 2);
}

#[test]
fn slack_group_members_are_checked_and_listed_per_service() {
    let slack = "[slack]\nbot_token = { env = \"B\" }\nsigning_secret = { env = \"S\" }\n";
    let text = MINIMAL.replace(
            "sre = [\"slack:UALICE\", \"slack:UBOB\"]",
            "sre = [\"slack:UALICE\", \"slack-group:S0SRE\"]\nleads = [\"slack-group:@leads\", \"slack-group:\"]",
        );
    let p = problems(&text);
    assert_eq!(
        p,
        [
            "groups.leads[0]: \"@leads\" is not a Slack user group id; write slack-group:S0123ABCD with the group's id (S…), not its @handle or name",
            "groups.leads[1]: \"\" is not a Slack user group id; write slack-group:S0123ABCD with the group's id (S…), not its @handle or name",
            "groups.sre[1]: a slack-group member is read from Slack; add a [slack] section whose bot token has the usergroups:read scope",
        ]
    );
    let ok = format!(
        "{}\n{slack}",
        text.replace(
            "\"slack-group:@leads\", \"slack-group:\"",
            "\"slack-group:S0LEADS\""
        )
    );
    let c = Config::parse(&ok).unwrap();
    let payment = ServiceName::parse("payment-api").unwrap();
    assert_eq!(
        c.slack_user_groups(),
        BTreeMap::from([(
            payment.clone(),
            BTreeSet::from([SlackGroupRef {
                id: "S0SRE".into(),
                at: "groups.sre[1]".into()
            }])
        )])
    );
    // The group is not a person: only UALICE is a configured approver.
    let services = c.services();
    let approvers: Vec<_> = services[&payment]
        .approvers
        .iter()
        .map(UserId::as_str)
        .collect();
    assert_eq!(approvers, ["slack:UALICE"]);
}

#[test]
fn a_service_has_exactly_one_target_table() {
    let none = MINIMAL.replace("[services.payment-api.kubernetes]", "[other]");
    let none = none.replace(
        "[other]\n        namespace = \"production\"\n        name = \"prod-payment-deploy\"",
        "",
    );
    assert_eq!(
        problems(&none),
        [
            "services.payment-api: no rollback target; add one target table, e.g. [services.payment-api.kubernetes] with namespace and name"
        ]
    );
    let several = format!("{MINIMAL}\n[services.payment-api.custom]\nkind = \"nomad\"\n");
    assert_eq!(
        problems(&several),
        [
            "services.payment-api: 2 rollback targets (kubernetes, custom); a service rolls back exactly one target, so keep one of these tables and give the other its own service"
        ]
    );
    let custom = several.replace(
            "[services.payment-api.kubernetes]\n        namespace = \"production\"\n        name = \"prod-payment-deploy\"",
            "",
        );
    let c = Config::parse(&format!(
        "{custom}[services.payment-api.custom.settings]\njob = \"payment\"\n"
    ))
    .unwrap();
    let s = c.services().into_values().next().unwrap();
    assert_eq!(s.target.kind(), "nomad");
    assert_eq!(s.target.to_string(), r#"nomad {"job":"payment"}"#);
    for (kind, message) in [
        ("kubernetes", "\"kubernetes\" is built in"),
        ("Nomad!", "\"Nomad!\" is not an executor kind"),
        ("", "\"\" is not an executor kind"),
    ] {
        let p = problems(&custom.replace("\"nomad\"", &format!("{kind:?}")));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(&format!("services.payment-api.custom.kind: {message}")),
            "{p:?}"
        );
    }
    let p = problems(&format!("{custom}settings = 3\n"));
    assert!(
        p[0].starts_with("services.payment-api.custom.settings: must be a table"),
        "{p:?}"
    );
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let text = r#"
            locale = "fr"
            [approval]
            required = 1
            expires_after = "soon"
            [services.Bad]
            approvers = ["UALICE"]
            groups = ["nosuch"]
        "#;
    let p = problems(text);
    insta::assert_yaml_snapshot!(p);
}

#[test]
fn verify_sections_resolve_and_bad_ones_are_named() {
    let good = format!(
        "[prometheus]\nurl = \"http://prom:9090\"\n{MINIMAL}\n[services.payment-api.verify]\nwindow = \"2m\"\ninterval = \"5s\"\n[[services.payment-api.verify.prometheus]]\nname = \"rate\"\nquery = \"up\"\nop = \">=\"\nthreshold = 1\n"
    );
    let c = Config::parse(&good).unwrap();
    let s = c.services().into_values().next().unwrap();
    let v = s.verify.unwrap();
    assert_eq!(v.window, Duration::from_secs(120));
    assert_eq!(v.prometheus[0].op, Comparison::Ge);
    assert_eq!(v.prometheus_url.as_deref(), Some("http://prom:9090"));
    assert_eq!(s.progress_interval, Duration::from_secs(5));

    let bad = format!(
        "{MINIMAL}\n[services.payment-api.verify]\nwindow = \"2m\"\ninterval = \"5m\"\n[[services.payment-api.verify.http]]\nname = \"h\"\nurl = \"payment/health\"\njson_field = \"version\"\n[[services.payment-api.verify.prometheus]]\nname = \"h\"\nquery = \"up\"\nop = \">=\"\nthreshold = 1\n"
    );
    assert_eq!(
        problems(&bad),
        [
            "services.payment-api.verify.interval: 5m is longer than the window 2m; checks would run only once",
            "services.payment-api.verify.http[0].url: \"payment/health\" is not an http(s) URL like http://prometheus:9090",
            "services.payment-api.verify.http[0].json_field: json_field and json_equals go together; set both or neither",
            "services.payment-api.verify.prometheus[0].name: check name \"h\" is used twice",
            "services.payment-api.verify.prometheus: Prometheus checks need a [prometheus] section with the server's url",
        ]
    );
    let op = good.replace("op = \">=\"", "op = \"=>\"");
    assert!(problems(&op)[0].contains("services.payment-api.verify.prometheus[0].op"));
}

#[test]
fn a_discord_section_is_checked_key_by_key() {
    let good = format!(
        "{MINIMAL}\n[discord]\nbot_token = {{ env = \"DISCORD_BOT_TOKEN\" }}\napplication_id = \"775799577604522054\"\npublic_key = {{ file = \"/run/secrets/discord-key\" }}\nguild_id = \"290926798626357999\"\n"
    );
    let c = Config::parse(&good).unwrap();
    let d = c.discord.unwrap();
    assert!(d.gateway && d.is_discord());
    assert_eq!(
        (d.approve_emoji.as_str(), d.reject_emoji.as_str()),
        ("✅", "❌")
    );
    let p = problems(&format!(
        "{MINIMAL}\n[discord]\nbot_token = \"inline\"\napplication_id = \"my-app\"\npublic_key = \"d75a98\"\nguild_id = \"0\"\napi_url = \"discord.com\"\napprove_emoji = \"yes\"\nreject_emoji = \"yes\"\n"
    ));
    let at = |key: &str| p.iter().any(|l| l.starts_with(&format!("discord.{key}:")));
    for key in [
        "bot_token",
        "application_id",
        "public_key",
        "guild_id",
        "api_url",
        "approve_emoji",
        "reject_emoji",
    ] {
        assert!(at(key), "{key}: {p:#?}");
    }
    // Without the gateway only the endpoint is left, which needs the key.
    let p = problems(&format!(
        "{MINIMAL}\n[discord]\nbot_token = {{ env = \"T\" }}\napplication_id = \"1\"\ngateway = false\n"
    ));
    assert!(
        p.len() == 1 && p[0].starts_with("discord.public_key:"),
        "{p:#?}"
    );
}

#[test]
fn discord_roles_approve_and_discord_channels_are_ids() {
    let c = Config::parse(
        r#"
        [groups]
        sre = ["discord:1001", "discord-role:539082325061836999"]
        [services.payment-api]
        groups = ["sre"]
        approvers = ["discord-role:42"]
        channel = "discord:645027906669510667"
        [services.payment-api.kubernetes]
        namespace = "production"
        name = "prod-payment-deploy"
    "#,
    )
    .unwrap();
    let s = &c.services()[&ServiceName::parse("payment-api").unwrap()];
    assert_eq!(
        s.approver_roles
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["discord-role:42", "discord-role:539082325061836999"]
    );
    assert_eq!(s.approvers.len(), 1);
    let p = problems(
        r#"
        [groups]
        sre = ["discord-role:@oncall"]
        [services.payment-api]
        groups = ["sre"]
        approvers = ["discord-role:"]
        channel = "discord:#incidents"
        [services.payment-api.kubernetes]
        namespace = "production"
        name = "prod-payment-deploy"
    "#,
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with("groups.sre[0]:") && p[0].contains("Copy Role ID"),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("services.payment-api.approvers[0]:")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(
            |l| l.starts_with("services.payment-api.channel:") && l.contains("Copy Channel ID")
        ),
        "{p:#?}"
    );
}

#[test]
fn the_store_cache_defaults_and_is_checked() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!(c.store.cache_mib, crate::store::DEFAULT_CACHE_MIB);
    let c = Config::parse(&format!("[store]\ncache_mib = 8\n{MINIMAL}")).unwrap();
    assert_eq!(c.store.cache_mib, 8);
    let p = problems(&format!("[store]\ncache_mib = 0\n{MINIMAL}"));
    assert!(
        p.iter()
            .any(|p| p.contains("store.cache_mib") && p.contains("between 4 and 65536")),
        "{p:?}"
    );
}
