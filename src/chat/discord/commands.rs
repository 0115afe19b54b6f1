//! The `/rollback` application command as Discord registers it: one
//! command with a subcommand per verb and typed options (the service with
//! autocomplete from the configured services, `to_revision` as an integer
//! or an `image`, the reason, a proposal id, `stats`' days), described in
//! every locale rollbot speaks.
//!
//! It is registered at start-up by a bulk overwrite, which is idempotent:
//! in `discord.guild_id` when set (it appears at once), else globally
//! (Discord may take up to an hour to show a new global command).
//! Inbound, [`super::inbound::command_text`] turns the options back into
//! the command line every platform's parser reads.

use serde_json::{Value, json};

use super::rest::Rest;
use crate::config::{DiscordConfig, LOCALES};
use crate::templates::Templates;

/// Discord's locale codes for each of rollbot's non-English locales.
fn discord_locales(locale: &str) -> &'static [&'static str] {
    match locale {
        "zh" => &["zh-CN", "zh-TW"],
        "ja" => &["ja"],
        _ => &[],
    }
}

/// A description from the catalogue: English, and the others as
/// Discord's `description_localizations`. Discord allows 100 characters.
fn described(t: &Templates, key: &str) -> Result<(String, Value), String> {
    let text = |locale: &str| {
        t.text(locale, key, ())
            .map(|s| s.chars().take(100).collect::<String>())
            .map_err(|e| e.to_string())
    };
    let mut localized = serde_json::Map::new();
    for locale in LOCALES.iter().filter(|l| **l != "en") {
        let words = text(locale)?;
        for code in discord_locales(locale) {
            localized.insert((*code).to_string(), json!(words));
        }
    }
    Ok((text("en")?, Value::Object(localized)))
}

/// The `/rollback` command definition.
///
/// # Errors
/// A catalogue entry that does not render (a template bug).
pub fn definition(t: &Templates) -> Result<Value, String> {
    let opt = |kind: u8, name: &str, key: &str, required: bool, autocomplete: bool| {
        let (description, localized) = described(t, key)?;
        let mut o = json!({
            "type": kind, "name": name, "description": description,
            "description_localizations": localized, "required": required,
        });
        if autocomplete {
            o["autocomplete"] = json!(true);
        }
        if kind == 4 {
            o["min_value"] = json!(1);
        }
        Ok::<_, String>(o)
    };
    let service = |required| opt(3, "service", "discord.option.service", required, true);
    let reason = || opt(3, "reason", "discord.option.reason", false, false);
    let id = |required| opt(3, "id", "discord.option.id", required, false);
    let sub = |name: &str, options: Vec<Value>| {
        let (description, localized) = described(t, &format!("reply.help.{name}"))?;
        Ok::<_, String>(json!({
            "type": 1, "name": name, "description": description,
            "description_localizations": localized, "options": options,
        }))
    };
    let described_sub = |name: &str, key: &str, options: Vec<Value>| {
        let (description, localized) = described(t, key)?;
        Ok::<_, String>(json!({
            "type": 1, "name": name, "description": description,
            "description_localizations": localized, "options": options,
        }))
    };
    let (description, localized) = described(t, "discord.command")?;
    Ok(json!({
        "name": "rollback",
        "type": 1,
        "description": description,
        "description_localizations": localized,
        "options": [
            sub("propose", vec![
                service(true)?,
                opt(4, "to_revision", "discord.option.to_revision", false, false)?,
                opt(3, "image", "discord.option.image", false, false)?,
                reason()?,
            ])?,
            sub("status", vec![id(false)?])?,
            sub("list", vec![])?,
            sub("history", vec![service(true)?])?,
            sub("cancel", vec![id(true)?])?,
            sub("drill", vec![service(true)?, reason()?])?,
            described_sub("stats", "stats.help", vec![
                service(false)?,
                opt(4, "days", "discord.option.days", false, false)?,
            ])?,
            described_sub("resume-sync", "gitops.help", vec![service(true)?])?,
            sub("help", vec![])?,
        ],
    }))
}

/// Registers `/rollback` (a bulk overwrite, so only rollbot's command
/// remains), retrying while Discord cannot answer.
///
/// # Errors
/// Discord refused (wrong application id, missing scope), worded.
pub async fn register(rest: &Rest, t: &Templates, config: &DiscordConfig) -> Result<(), String> {
    let body = json!([definition(t)?]);
    let app = &config.application_id;
    let path = match &config.guild_id {
        Some(g) => format!("/applications/{app}/guilds/{g}/commands"),
        None => format!("/applications/{app}/commands"),
    };
    super::persist("registering /rollback", || {
        rest.call::<Value>(reqwest::Method::PUT, &path, Some(&body))
    })
    .await?;
    tracing::info!(guild = ?config.guild_id, "Discord /rollback command registered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_has_every_verb_described_in_every_locale() {
        let t = Templates::load().unwrap();
        let d = definition(&t).unwrap();
        let subs: Vec<&str> = d["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            subs,
            [
                "propose",
                "status",
                "list",
                "history",
                "cancel",
                "drill",
                "stats",
                "resume-sync",
                "help"
            ]
        );
        let propose = &d["options"][0];
        assert_eq!(propose["options"][0]["autocomplete"], true);
        assert_eq!(propose["options"][1]["type"], 4);
        for o in d["options"].as_array().unwrap() {
            let desc = o["description"].as_str().unwrap();
            assert!(!desc.is_empty() && desc.chars().count() <= 100, "{o}");
            for code in ["zh-CN", "ja"] {
                let l = o["description_localizations"][code].as_str().unwrap();
                assert!(!l.is_empty() && l != desc, "{code}: {o}");
            }
        }
    }
}
