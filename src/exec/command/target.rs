//! `[services.NAME.command]`: what a command rollback runs, read by the
//! config and stored in proposals; the executor is in [`super`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The kind of command targets.
pub const COMMAND: &str = "command";

/// `[services.NAME.command]`: the rollback itself as commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandTarget {
    /// Prints the current and target version as JSON (see README,
    /// "Command rollbacks"); read-only.
    pub plan: Vec<String>,
    /// Rolls back; exit 0 means rolled back. Its output streams as progress.
    pub rollback: Vec<String>,
    /// Each command's limit, e.g. `"10m"`.
    pub timeout: String,
    pub dir: Option<PathBuf>,
    /// Plain environment values (secrets belong in the scripts' own files).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}
