//! The shipped deployment files agree with the code.

#[test]
fn the_configmap_in_deploy_is_a_valid_config() {
    let text = std::fs::read_to_string("deploy/configmap.yaml").unwrap();
    let cm: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let toml = cm["data"]["rollbot.toml"]
        .as_str()
        .expect("data.rollbot.toml");
    rollbot::config::Config::parse(toml).unwrap_or_else(|p| panic!("deploy/configmap.yaml: {p:?}"));
}

#[test]
fn the_image_healthcheck_uses_the_binarys_own_probe() {
    let dockerfile = std::fs::read_to_string("Dockerfile").unwrap();
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/rollbot", "healthcheck""#));
    // Everything the build embeds (templates, seed and demo config, font) is copied in.
    for dir in ["src", "templates", "config", "assets"] {
        assert!(dockerfile.contains(&format!("COPY {dir} ./{dir}")), "{dir}");
    }
}

/// The documents of a multi-document YAML file.
fn documents(path: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn configmap_config() -> rollbot::config::Config {
    let cm = &documents("deploy/configmap.yaml")[0];
    rollbot::config::Config::parse(cm["data"]["rollbot.toml"].as_str().unwrap()).unwrap()
}

#[test]
fn the_pod_is_killed_only_after_the_shutdown_grace() {
    let docs = documents("deploy/deployment.yaml");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    // Kubernetes' default when the field is absent.
    let kill_after = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let grace = configmap_config().server.shutdown_grace();
    // A few seconds to flush the store and exit after the grace.
    assert!(
        grace.as_secs() + 3 <= kill_after,
        "server.shutdown_grace ({grace:?}) must end at least 3 s before terminationGracePeriodSeconds ({kill_after})"
    );
    // No shell in front of rollbot to swallow SIGTERM.
    let container = &pod["containers"][0];
    assert!(container.get("command").is_none(), "{container}");
    // The image ships the example config; its grace fits the default 30 s too.
    let example = std::fs::read_to_string("config/rollbot.example.toml").unwrap();
    let example = rollbot::config::Config::parse(&example).unwrap();
    assert!(example.server.shutdown_grace().as_secs() + 3 <= 30);
}

#[test]
fn the_image_delivers_sigterm_to_rollbot_itself() {
    let dockerfile = std::fs::read_to_string("Dockerfile").unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    assert!(lines.contains(&"STOPSIGNAL SIGTERM"), "STOPSIGNAL SIGTERM");
    // Exec form: `/bin/sh -c` would be PID 1 and not pass the signal on.
    for instruction in ["ENTRYPOINT", "CMD"] {
        let found: Vec<_> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{instruction} ")))
            .collect();
        assert!(!found.is_empty(), "{instruction}");
        for l in found {
            let form = l[instruction.len()..].trim_start();
            assert!(form.starts_with('['), "{instruction} in shell form: {l}");
        }
    }
    assert!(lines.contains(&r#"ENTRYPOINT ["/usr/local/bin/rollbot"]"#));
}
