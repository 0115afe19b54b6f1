//! Secrets: read from an environment variable or a file, never inline.

use super::*;

/// A secret's location. Inline values are refused by validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

impl Secret {
    /// Checks a secret's location, at `at`: never inline.
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        check_secret(self, at, &mut push(problems));
    }

    /// Reads the secret's value.
    ///
    /// # Errors
    /// Says which variable or file is missing and how to provide it.
    pub fn read(&self, key: &str) -> Result<String, String> {
        match self {
            Secret::Inline(_) => Err(format!(
                "{key}: inline secrets are not allowed; use {{ env = \"VAR\" }} or {{ file = \"/path\" }}"
            )),
            Secret::Env { env } => std::env::var(env)
                .map(|v| v.trim().to_string())
                .map_err(|_| format!("{key}: environment variable {env} is not set; export it before starting rollbot")),
            Secret::File { file } => std::fs::read_to_string(file)
                .map(|v| v.trim().to_string())
                .map_err(|e| format!("{key}: cannot read secret file {}: {e}", file.display())),
        }
    }
}

pub(super) fn check_secret(s: &Secret, path: &str, problem: &mut impl FnMut(String, String)) {
    match s {
        Secret::Inline(_) => problem(
            path.into(),
            "inline secrets are not allowed in the config file; use { env = \"VAR\" } or { file = \"/run/secrets/...\" }".into(),
        ),
        Secret::Env { env } if env.is_empty() => {
            problem(path.into(), "env must name an environment variable".into())
        }
        _ => {}
    }
}
