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
