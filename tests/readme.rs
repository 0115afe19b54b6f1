//! README.md stays true: every section of the annotated example config is in
//! its configuration reference, and the example passes validation.

#[test]
fn every_example_config_section_is_in_the_readme_reference() {
    let example = std::fs::read_to_string("config/rollbot.example.toml").unwrap();
    let readme = std::fs::read_to_string("README.md").unwrap();
    let mut sections = Vec::new();
    for line in example.lines() {
        // Active and commented-out (optional) section headers alike.
        let line = line.trim_start_matches('#').trim();
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some(end) = rest.find(']') else {
            continue;
        };
        let (double, name) = match rest.strip_prefix('[') {
            Some(inner) => (true, &inner[..inner.find(']').unwrap_or(inner.len())]),
            None => (false, &rest[..end]),
        };
        if name.is_empty() || name.contains(' ') {
            continue;
        }
        let name = name
            .split('.')
            .enumerate()
            .map(|(i, part)| {
                // services.<name>.… is written services.NAME in the reference.
                if i == 1 && name.starts_with("services.") {
                    "NAME"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join(".");
        sections.push(if double {
            format!("[[{name}]]")
        } else {
            format!("[{name}]")
        });
    }
    assert!(sections.len() > 10, "parsed too few sections: {sections:?}");
    let missing: Vec<_> = sections
        .iter()
        .filter(|s| !readme.contains(&format!("`{s}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's configuration reference lacks {missing:?}"
    );
}

#[test]
fn the_example_config_is_valid() {
    rollbot::config::Config::load("config/rollbot.example.toml".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
}
