//! Every user-facing message: its facts defined once (a Rust type such as
//! [`ThreadNote`](crate::ports::ThreadNote) or `Reply`), laid out once per
//! platform, worded once per locale.
//!
//! # Layouts and catalogues
//!
//! - **Layouts** (`templates/<platform>/<message>.<ext>.j2`) hold structure
//!   only: Slack Block Kit JSON under `slack/`, plain text for the console
//!   (and any chat without a richer layout) under `text/`, the Markdown
//!   incident report under `markdown/`. They contain no sentence in any
//!   language; every word comes from a catalogue through `t(key, ...)`.
//! - **Catalogues** (`templates/locales/<locale>.toml`) hold the wording:
//!   one entry per sentence or phrase, keyed like `thread.started`. Each
//!   entry is a small minijinja template of its own, rendered with the
//!   named arguments the layout passes (`t("thread.started", service=…)`),
//!   so word order, plural forms and punctuation belong to the language.
//!   The locale is the `locale` variable every render gets.
//!
//! We use minijinja for the catalogues rather than Fluent: it is already
//! how the layouts are written (no new crate, one syntax to learn), it
//! inserts no Unicode isolation marks into Slack JSON or terminals, and
//! entries can use the same filters (`utc`, `minutes`) as the layouts.
//!
//! # Checked at start-up
//!
//! [`Templates::load`] runs at start-up (and in `check-config`) and fails,
//! naming the file and key, when a layout or an entry does not parse, when
//! a locale lacks an entry English has (or has one English lacks, i.e. a
//! typo), or when a layout names a key (`t("…")` with a literal key) that no
//! catalogue has. Keys built at render time (`t("state." ~ p.state)`) are
//! checked by the tests that render every value.
//!
//! Escaping is the layout's job: `.json` layouts escape every `{{ … }}` as
//! JSON (so a catalogue entry is never pasted into JSON unescaped); what
//! people typed is escaped for the platform before it reaches a layout.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use include_dir::{Dir, include_dir};
use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, State};
use serde::Serialize;

use crate::config::LOCALES;

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The locale every other locale is checked against.
const REFERENCE: &str = "en";

/// A template problem, naming the template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name} is broken: {source}")]
    Broken {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("catalogue templates/locales/{locale}.toml is broken: {reason}")]
    Catalogue { locale: String, reason: String },
    #[error(
        "catalogue templates/locales/{locale}.toml lacks `{key}` (every locale needs every key en has); add it"
    )]
    Missing { locale: String, key: String },
    #[error(
        "catalogue templates/locales/{locale}.toml has `{key}`, which en lacks; fix the key's spelling or add it to en"
    )]
    Unexpected { locale: String, key: String },
    #[error("{template} uses t(\"{key}\"), which templates/locales/en.toml lacks; add it")]
    UnknownKey { template: String, key: String },
    #[error("rendering {name} failed: {source}")]
    Render {
        name: String,
        #[source]
        source: minijinja::Error,
    },
}

/// The compiled layouts and catalogues. Build once, share (cheap to clone
/// behind an `Arc`).
pub struct Templates {
    env: Environment<'static>,
    layouts: Vec<String>,
}

impl Templates {
    /// Compiles every embedded layout and catalogue entry and checks every
    /// locale is complete.
    ///
    /// # Errors
    /// [`TemplateError`] naming the first broken layout, broken or
    /// incomplete catalogue, or unknown key.
    pub fn load() -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // Only the Block Kit layouts are JSON; catalogue entries are
        // rendered raw and escaped where the layout prints them.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".json") {
                AutoEscape::Json
            } else {
                AutoEscape::None
            }
        });
        env.add_filter("utc", utc);
        env.add_filter("minutes", minutes);
        env.add_filter("code", code);
        env.add_filter("code_block", code_block);
        env.add_filter("sentence", sentence);
        env.add_function("t", translate);

        let mut layouts = Vec::new();
        let mut sources = Vec::new();
        for file in all_files(&TEMPLATES) {
            let path = file.path().to_string_lossy().replace('\\', "/");
            let Some(name) = path.strip_suffix(".j2") else {
                continue;
            };
            let source = file.contents_utf8().unwrap_or_default().to_string();
            env.add_template_owned(name.to_string(), source.clone())
                .map_err(|source| TemplateError::Broken {
                    name: path.clone(),
                    source,
                })?;
            layouts.push(name.to_string());
            sources.push((path, source));
        }

        let mut catalogues = BTreeMap::new();
        for locale in LOCALES {
            let entries = catalogue(locale)?;
            for (key, text) in &entries {
                env.add_template_owned(entry_name(locale, key), text.clone())
                    .map_err(|source| TemplateError::Broken {
                        name: format!("templates/locales/{locale}.toml `{key}`"),
                        source,
                    })?;
                sources.push((
                    format!("templates/locales/{locale}.toml `{key}`"),
                    text.clone(),
                ));
            }
            catalogues.insert(*locale, entries);
        }
        check(&catalogues, &sources)?;
        Ok(Self { env, layouts })
    }

    /// Renders the layout `name` (e.g. `text/resolved.txt`) in `locale`,
    /// falling back to English for a locale rollbot does not have.
    ///
    /// # Errors
    /// [`TemplateError::Render`] when the context lacks what the layout uses.
    pub fn render(
        &self,
        locale: &str,
        name: &str,
        ctx: impl Serialize,
    ) -> Result<String, TemplateError> {
        let locale = known_locale(locale);
        let render_err = |source| TemplateError::Render {
            name: format!("{name} ({locale})"),
            source,
        };
        let ctx = minijinja::context! { locale => locale, ..minijinja::Value::from(minijinja::value::Serde(ctx)) };
        self.env
            .get_template(name)
            .map_err(render_err)?
            .render(ctx)
            .map_err(render_err)
    }

    /// One catalogue entry in `locale`, for words outside any layout (e.g. a
    /// file name).
    ///
    /// # Errors
    /// [`TemplateError::Render`] for an unknown key or missing argument.
    pub fn text(
        &self,
        locale: &str,
        key: &str,
        args: impl Serialize,
    ) -> Result<String, TemplateError> {
        let name = entry_name(known_locale(locale), key);
        let render_err = |source| TemplateError::Render {
            name: name.clone(),
            source,
        };
        self.env
            .get_template(&name)
            .map_err(render_err)?
            .render(minijinja::Value::from(minijinja::value::Serde(args)))
            .map_err(render_err)
    }

    /// Names of all layouts, for tests that render each one.
    pub fn names(&self) -> Vec<String> {
        self.layouts.clone()
    }
}

/// Every locale has exactly the reference's keys, and every literal key a
/// layout or entry names (see [`keys_used`]) exists in the reference.
fn check(
    catalogues: &BTreeMap<&str, BTreeMap<String, String>>,
    sources: &[(String, String)],
) -> Result<(), TemplateError> {
    let empty = BTreeMap::new();
    let reference = catalogues.get(REFERENCE).unwrap_or(&empty);
    for (locale, entries) in catalogues {
        if let Some(key) = reference.keys().find(|k| !entries.contains_key(*k)) {
            return Err(TemplateError::Missing {
                locale: locale.to_string(),
                key: key.clone(),
            });
        }
        if let Some(key) = entries.keys().find(|k| !reference.contains_key(*k)) {
            return Err(TemplateError::Unexpected {
                locale: locale.to_string(),
                key: key.clone(),
            });
        }
    }
    for (template, source) in sources {
        for (key, prefix) in keys_used(source) {
            let known = if prefix {
                reference.keys().any(|k| k.starts_with(&key))
            } else {
                reference.contains_key(&key)
            };
            if !known {
                return Err(TemplateError::UnknownKey {
                    template: template.clone(),
                    key,
                });
            }
        }
    }
    Ok(())
}

fn known_locale(locale: &str) -> &str {
    LOCALES
        .iter()
        .find(|l| **l == locale)
        .copied()
        .unwrap_or(REFERENCE)
}

fn entry_name(locale: &str, key: &str) -> String {
    format!("locales/{locale}/{key}")
}

/// Reads `templates/locales/<locale>.toml` into dotted keys → entries.
fn catalogue(locale: &str) -> Result<BTreeMap<String, String>, TemplateError> {
    let broken = |reason: String| TemplateError::Catalogue {
        locale: locale.to_string(),
        reason,
    };
    let file = TEMPLATES
        .get_file(format!("locales/{locale}.toml"))
        .ok_or_else(|| broken("the file is missing".into()))?;
    let text = file
        .contents_utf8()
        .ok_or_else(|| broken("not UTF-8".into()))?;
    let table: toml::Table = text.parse().map_err(|e| broken(format!("{e}")))?;
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out).map_err(broken)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (k, v) in table {
        let key = format!("{prefix}{k}");
        match v {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => flatten(&format!("{key}."), t, out)?,
            other => {
                return Err(format!(
                    "`{key}` is a {}, not a string; quote it",
                    other.type_str()
                ));
            }
        }
    }
    Ok(())
}

/// The keys a template names literally: `t("a.b", …)` gives `("a.b",
/// false)`; `t("a." ~ x)` gives the prefix `("a.", true)`.
fn keys_used(source: &str) -> Vec<(String, bool)> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r#"\bt\(\s*"([A-Za-z0-9_.]+)"\s*(~|,|\))"#).expect("valid regex")
    });
    re.captures_iter(source)
        .map(|c| (c[1].to_string(), &c[2] == "~"))
        .collect()
}

/// `t("key", name=value, …)`: the catalogue entry `key` in the render's
/// locale, rendered with the named arguments.
fn translate(state: &State, key: &str, args: Kwargs) -> Result<String, minijinja::Error> {
    let mut ctx = BTreeMap::new();
    for name in args.args() {
        ctx.insert(name.to_string(), args.get::<Value>(name)?);
    }
    entry(state, key, ctx)
}

/// The catalogue entry `key` in the render's locale, rendered with `ctx`.
fn entry(
    state: &State,
    key: &str,
    ctx: BTreeMap<String, Value>,
) -> Result<String, minijinja::Error> {
    let locale = state
        .lookup("locale")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| REFERENCE.to_string());
    let entry = state
        .env()
        .get_template(&entry_name(known_locale(&locale), key))
        .map_err(|e| {
            minijinja::Error::new(
                minijinja::ErrorKind::TemplateNotFound,
                format!("no catalogue entry `{key}` in {locale}: {e}"),
            )
        })?;
    entry.render(ctx)
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

/// `{{ seconds | minutes }}` → `40 s` / `5 min` / `1 h 5 min`, with the
/// units of the render's locale (the catalogue's `units` table).
fn minutes(state: &State, seconds: i64) -> Result<String, minijinja::Error> {
    let n = |v: i64| Value::from(v);
    let (key, ctx) = match seconds {
        s if s < 60 => ("units.seconds", BTreeMap::from([("n".to_string(), n(s))])),
        s if s < 3600 => (
            "units.minutes",
            BTreeMap::from([("n".to_string(), n(s / 60))]),
        ),
        s => (
            "units.hours_minutes",
            BTreeMap::from([
                ("h".to_string(), n(s / 3600)),
                ("m".to_string(), n((s % 3600) / 60)),
            ]),
        ),
    };
    entry(state, key, ctx)
}

/// `{{ output | code }}` → `` `output` ``: program output and identifiers
/// quoted as code in every language (a backtick inside becomes `'` so the
/// span cannot end early).
fn code(value: String) -> String {
    format!("`{}`", value.replace('`', "'"))
}

/// `{{ output | code_block }}`: multi-line program output as a fenced
/// block (a fence inside is broken up so the block cannot end early).
fn code_block(value: String) -> String {
    format!("```\n{}\n```", value.replace("```", "'''"))
}

/// `{{ phrase | sentence }}`: the first letter upper-cased, the rest kept
/// (unlike `capitalize`, which would turn `UTC` into `utc`).
fn sentence(value: String) -> String {
    let mut chars = value.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => value,
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
                        "text/private.txt",
                        minijinja::context! { id => "RB-7K3M9Q", drill => false, note => minijinja::context! { note => "vote_refused", refusal => minijinja::Value::from(minijinja::value::Serde(r)) } },
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
    }

    #[test]
    fn durations_take_the_units_of_the_locale() {
        let t = Templates::load().unwrap();
        let render = |locale: &str, seconds: i64| {
            let env = &t.env;
            let tmpl = env.template_from_str("{{ s | minutes }}").unwrap();
            tmpl.render(minijinja::context! { locale => locale, s => seconds })
                .unwrap()
        };
        assert_eq!(render("en", 30), "30 s");
        assert_eq!(render("en", 1800), "30 min");
        assert_eq!(render("en", 3900), "1 h 5 min");
        assert_eq!(render("zh", 3900), "1 小时 5 分钟");
        assert_eq!(render("ja", 1800), "30 分");
        assert_eq!(render("ja", 30), "30 秒");
    }

    #[test]
    fn literal_and_prefix_keys_are_found() {
        let used = keys_used(r#"{{ t("a.b", x=1) }} {{ t("c") }} {{ t("state." ~ s) }}"#);
        assert_eq!(
            used,
            vec![
                ("a.b".to_string(), false),
                ("c".to_string(), false),
                ("state.".to_string(), true)
            ]
        );
    }

    #[test]
    fn a_missing_extra_or_unknown_key_fails_the_check() {
        let cat = |keys: &[&str]| -> BTreeMap<String, String> {
            keys.iter()
                .map(|k| (k.to_string(), "x".to_string()))
                .collect()
        };
        let layout = |src: &str| vec![("slack/x.json".to_string(), src.to_string())];
        let ok = BTreeMap::from([("en", cat(&["a.b", "c"])), ("zh", cat(&["a.b", "c"]))]);
        check(&ok, &layout(r#"{{ t("a.b") }} {{ t("a." ~ x) }}"#)).unwrap();

        let missing = BTreeMap::from([("en", cat(&["a.b", "c"])), ("zh", cat(&["a.b"]))]);
        let e = check(&missing, &[]).unwrap_err();
        assert!(
            matches!(&e, TemplateError::Missing { locale, key } if locale == "zh" && key == "c"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("templates/locales/zh.toml lacks `c`"),
            "{e}"
        );

        let extra = BTreeMap::from([("en", cat(&["a.b"])), ("ja", cat(&["a.b", "a.bb"]))]);
        let e = check(&extra, &[]).unwrap_err();
        assert!(
            matches!(&e, TemplateError::Unexpected { key, .. } if key == "a.bb"),
            "{e}"
        );

        let e = check(&ok, &layout(r#"{{ t("a.c", n=1) }}"#)).unwrap_err();
        assert!(
            matches!(&e, TemplateError::UnknownKey { key, .. } if key == "a.c"),
            "{e}"
        );
        let e = check(&ok, &layout(r#"{{ t("d." ~ x) }}"#)).unwrap_err();
        assert!(
            matches!(&e, TemplateError::UnknownKey { key, .. } if key == "d."),
            "{e}"
        );
    }

    #[test]
    fn every_locale_has_exactly_the_keys_of_en() {
        let en = catalogue("en").unwrap();
        assert!(en.len() > 50, "the catalogue holds every sentence");
        for locale in LOCALES {
            let keys: Vec<_> = catalogue(locale).unwrap().into_keys().collect();
            assert_eq!(keys, en.keys().cloned().collect::<Vec<_>>(), "{locale}");
        }
    }

    #[test]
    fn an_entry_renders_with_its_arguments_in_the_asked_locale() {
        let t = Templates::load().unwrap();
        let en = t
            .text(
                "en",
                "proposal.title",
                minijinja::context! { id => "RB-1", service => "s" },
            )
            .unwrap();
        let zh = t
            .text(
                "zh",
                "proposal.title",
                minijinja::context! { id => "RB-1", service => "s" },
            )
            .unwrap();
        assert!(en.contains("RB-1") && zh.contains("RB-1"));
        assert_ne!(en, zh);
        // An unknown locale reads English.
        let fr = t
            .text(
                "fr",
                "proposal.title",
                minijinja::context! { id => "RB-1", service => "s" },
            )
            .unwrap();
        assert_eq!(en, fr);
    }
}
