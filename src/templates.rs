//! Every user-facing message, rendered from `templates/<locale>/` with
//! minijinja.
//!
//! Templates are compiled into the binary and all parsed when
//! [`Templates::load`] runs at start-up (and in `check-config`), and every
//! locale must provide every template English has — so a broken or missing
//! template fails before an incident, not during one.

use chrono::{DateTime, Utc};
use include_dir::{Dir, include_dir};
use minijinja::Environment;
use serde::Serialize;

use crate::config::LOCALES;

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// A template problem, naming the template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name} is broken: {source}")]
    Broken {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("locale {locale} lacks template {name} (every locale needs what en has)")]
    Missing { locale: String, name: String },
    #[error("rendering {name} failed: {source}")]
    Render {
        name: String,
        #[source]
        source: minijinja::Error,
    },
}

/// The compiled templates. Build once, share (cheap to clone behind an `Arc`).
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles every embedded template and checks every locale is complete.
    ///
    /// # Errors
    /// [`TemplateError`] naming the first broken or missing template.
    pub fn load() -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_filter("utc", utc);
        env.add_filter("minutes", minutes);
        let mut names = Vec::new();
        for file in all_files(&TEMPLATES) {
            let path = file.path().to_string_lossy().replace('\\', "/");
            let Some(name) = path.strip_suffix(".j2") else {
                continue;
            };
            let source = file.contents_utf8().unwrap_or_default();
            env.add_template_owned(name.to_string(), source.to_string())
                .map_err(|source| TemplateError::Broken {
                    name: path.clone(),
                    source,
                })?;
            names.push(name.to_string());
        }
        for name in names.iter().filter_map(|n| n.strip_prefix("en/")) {
            for locale in LOCALES {
                let full = format!("{locale}/{name}");
                if !names.contains(&full) {
                    return Err(TemplateError::Missing {
                        locale: locale.to_string(),
                        name: name.to_string(),
                    });
                }
            }
        }
        Ok(Self { env })
    }

    /// Renders `name` (e.g. `vote_refused.txt`) in `locale`, falling back to
    /// English for a locale rollbot does not have.
    ///
    /// # Errors
    /// [`TemplateError::Render`] when the context lacks what the template uses.
    pub fn render(
        &self,
        locale: &str,
        name: &str,
        ctx: impl Serialize,
    ) -> Result<String, TemplateError> {
        let locale = if LOCALES.contains(&locale) {
            locale
        } else {
            "en"
        };
        let full = format!("{locale}/{name}");
        let render_err = |source| TemplateError::Render {
            name: full.clone(),
            source,
        };
        self.env
            .get_template(&full)
            .map_err(render_err)?
            .render(minijinja::Value::from(minijinja::value::Serde(ctx)))
            .map_err(render_err)
    }

    /// Names of all templates, for tests that render each one.
    pub fn names(&self) -> Vec<String> {
        self.env.templates().map(|(n, _)| n.to_string()).collect()
    }
}

fn all_files<'a>(dir: &'a Dir<'a>) -> Vec<&'a include_dir::File<'a>> {
    let mut out: Vec<_> = dir.files().collect();
    for d in dir.dirs() {
        out.extend(all_files(d));
    }
    out
}

/// `{{ at | utc }}` → `2025-03-14 14:30:00 UTC`: timestamps always name their zone.
fn utc(value: String) -> Result<String, minijinja::Error> {
    let t: DateTime<Utc> = value.parse().map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("not an RFC 3339 timestamp: {value:?} ({e})"),
        )
    })?;
    Ok(t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// `{{ seconds | minutes }}` → `5 min` / `1 h 5 min` / `40 s`.
fn minutes(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Refusal, State};

    #[test]
    fn every_locale_renders_every_refusal() {
        let t = Templates::load().unwrap();
        let refusals = [
            Refusal::Closed {
                state: State::Executing,
            },
            Refusal::Expired,
            Refusal::Bot,
            Refusal::NotAuthorised {
                service: "payment-api".into(),
            },
            Refusal::SelfApproval,
        ];
        let mut out = Vec::new();
        for locale in LOCALES {
            for r in &refusals {
                let text = t
                    .render(
                        locale,
                        "vote_refused.txt",
                        minijinja::context! { id => "RB-7K3M9Q", refusal => minijinja::value::Serde(r) },
                    )
                    .unwrap();
                assert!(!text.trim().is_empty(), "{locale} {r:?}");
                out.push(format!("{locale}: {text}"));
            }
        }
        insta::assert_yaml_snapshot!(out);
    }

    #[test]
    fn timestamps_name_their_zone() {
        assert_eq!(
            utc("2025-03-14T14:30:00Z".into()).unwrap(),
            "2025-03-14 14:30:00 UTC"
        );
        assert_eq!(
            utc("2025-03-14T23:30:00+09:00".into()).unwrap(),
            "2025-03-14 14:30:00 UTC"
        );
        assert_eq!(minutes(30), "30 s");
        assert_eq!(minutes(1800), "30 min");
        assert_eq!(minutes(3900), "1 h 5 min");
    }
}
