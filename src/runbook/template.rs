//! The runbook's templates: `{variable}` in an argument, a URL or a body
//! string, filled from the plan and the proposal. `{{` and `}}` stand for
//! literal braces. Deliberately tiny — no expressions, no filters — so a
//! step's configuration reads like the command it runs.

/// Fills `text`'s `{name}`s with `value(name)`.
///
/// # Errors
/// A sentence naming an unknown variable (one `value` answers `None` for)
/// or an unclosed brace.
pub fn render(text: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "{text:?} has a lone \"}}\"; write \"}}}}\" for a literal brace"
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!(
                "{text:?} opens a \"{{\" it never closes; write \"{{{{\" for a literal brace"
            ));
        };
        let name = &tail[1..end];
        match value(name) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "{text:?} uses {{{name}}}, which is not a variable here"
                ));
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "service" => Some("payment-api".into()),
            "to" => Some("v1.2.9; rm -rf /".into()),
            _ => None,
        }
    }

    #[test]
    fn fills_variables_and_keeps_literal_braces() {
        assert_eq!(
            render("/releases/{to}", &vars).unwrap(),
            "/releases/v1.2.9; rm -rf /"
        );
        assert_eq!(
            render("{{\"s\": \"{service}\"}}", &vars).unwrap(),
            "{\"s\": \"payment-api\"}"
        );
        assert_eq!(render("plain", &vars).unwrap(), "plain");
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(render("{servce}", &vars).unwrap_err().contains("{servce}"));
        assert!(
            render("{service", &vars)
                .unwrap_err()
                .contains("never closes")
        );
        assert!(render("a}b", &vars).unwrap_err().contains("lone"));
    }
}
