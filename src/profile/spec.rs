//! The shape of a profile's steps, as written in assets/profiles/*.toml.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    #[default]
    Command,
    Preflight,
    Transfer,
    Rsync,
    Verify,
    Redis,
    Health,
    Dns,
    Services,
    Stack,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Command => "command",
            StepKind::Preflight => "preflight",
            StepKind::Transfer => "transfer",
            StepKind::Rsync => "rsync",
            StepKind::Verify => "verify",
            StepKind::Redis => "redis",
            StepKind::Health => "health",
            StepKind::Dns => "dns",
            StepKind::Services => "services",
            StepKind::Stack => "stack",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostSel {
    Source,
    Target,
    Both,
}

/// Whether a step belongs to a rehearsal (`hikkoshi rehearse`), where the old
/// host keeps serving and the copy on the new one must never act as the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rehearsal {
    /// In the real run and in a rehearsal.
    Run,
    /// In the real run; in a rehearsal only with --start-web.
    Web,
    /// Only in a rehearsal.
    Only,
    /// Only in a rehearsal with --start-web.
    OnlyWeb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DowntimeMark {
    /// The downtime clock starts when this step starts.
    Start,
    /// The downtime clock stops when this step succeeds.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CommandSpec {
    Argv(Vec<String>),
    /// `"{name}"`: the commands a setting holds (a list of argv lists), each
    /// run like one written here; none when the list is empty.
    Each(String),
    Detailed {
        argv: Vec<String>,
        /// Runs only when every condition holds.
        when: Option<OneOrMany>,
        /// The command's stdin: another command's stdout on the other host,
        /// streamed through this machine.
        input: Option<PipeInput>,
        /// A role (`database`, `web`, ...): on a compose host the command runs
        /// in that service's container; on a systemd host as the step says.
        at: Option<String>,
        /// A file on the host as the command's stdin, or its stdout.
        stdin: Option<String>,
        stdout: Option<String>,
    },
}

/// A command on the other host whose output feeds a step's command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipeInput {
    pub user: Option<String>,
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A role: on a compose host the feeding command runs in its service.
    pub at: Option<String>,
}

impl CommandSpec {
    /// The argv as written; for `Each`, the one placeholder naming the commands.
    pub fn argv(&self) -> &[String] {
        match self {
            CommandSpec::Argv(a) | CommandSpec::Detailed { argv: a, .. } => a,
            CommandSpec::Each(name) => std::slice::from_ref(name),
        }
    }

    /// The setting an `Each` entry names.
    pub fn each(&self) -> Option<&str> {
        match self {
            CommandSpec::Each(t) => template::whole_placeholder(t),
            _ => None,
        }
    }

    /// What must hold for it to run; empty: always.
    pub fn conditions(&self) -> Vec<String> {
        match self {
            CommandSpec::Detailed { when: Some(w), .. } => w.items(),
            _ => Vec::new(),
        }
    }

    /// The role whose service runs it on a compose host.
    pub fn at(&self) -> Option<&str> {
        match self {
            CommandSpec::Detailed { at, .. } => at.as_deref(),
            _ => None,
        }
    }

    /// The host files it reads from or writes to: (stdin, stdout).
    pub fn files(&self) -> (Option<&str>, Option<&str>) {
        match self {
            CommandSpec::Detailed { stdin, stdout, .. } => (stdin.as_deref(), stdout.as_deref()),
            _ => (None, None),
        }
    }

    pub fn input(&self) -> Option<&PipeInput> {
        match self {
            CommandSpec::Detailed { input, .. } => input.as_ref(),
            _ => None,
        }
    }
}

/// A profile's `[vars]` value, and a config's `[vars]` override of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum VarSpec {
    Text(String),
    List(Vec<String>),
    Commands(Vec<Vec<String>>),
}

impl VarSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            VarSpec::Text(_) => "a string",
            VarSpec::List(_) => "a list of strings",
            VarSpec::Commands(_) => "a list of commands (argv lists)",
        }
    }

    /// Whether `other` may replace this value: same shape, and an empty list
    /// stands for either kind of list.
    pub fn accepts(&self, other: &VarSpec) -> bool {
        match (self, other) {
            (VarSpec::Text(_), VarSpec::Text(_)) => true,
            (VarSpec::List(_), VarSpec::List(_)) => true,
            (VarSpec::Commands(_), VarSpec::Commands(_)) => true,
            (VarSpec::List(l), VarSpec::Commands(_)) => l.is_empty(),
            (VarSpec::Commands(_), VarSpec::List(l)) => l.is_empty(),
            _ => false,
        }
    }

    pub fn strings(&self) -> Vec<&str> {
        match self {
            VarSpec::Text(t) => vec![t.as_str()],
            VarSpec::List(l) => l.iter().map(String::as_str).collect(),
            VarSpec::Commands(c) => c.iter().flatten().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One step as the profile writes it: every key of every kind, flat, as TOML
/// has it. `validate` refuses keys its kind does not take (they would be
/// silently ignored); then it becomes a `StepSpec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    pub id: String,
    pub phase: String,
    pub title: String,
    #[serde(default)]
    pub why: String,
    /// What brings the old host back if the run stops after this step began
    /// and before the new host went live.
    pub undo: Option<UndoSpec>,
    #[serde(default)]
    pub kind: StepKind,
    pub host: Option<HostSel>,
    pub user: Option<String>,
    pub confirm: Option<String>,
    pub downtime: Option<DowntimeMark>,
    #[serde(default)]
    pub optional: bool,
    pub when: Option<OneOrMany>,
    pub timeout: Option<String>,
    /// Also runs when a run stops early (like `finally`), unless --keep-dump.
    #[serde(default)]
    pub finally: bool,
    /// Steps whose results this one removes: a resumed run does them again.
    #[serde(default)]
    pub resets: Vec<String>,
    /// Starts together with this earlier step and runs beside it (and the
    /// steps after it) until the run reaches this step's own place.
    pub beside: Option<String>,
    /// Left out of a rehearsal unless said otherwise: nothing runs against a
    /// live instance by default.
    pub rehearsal: Option<Rehearsal>,
    /// Said instead when `when` leaves the step out (media in object storage).
    pub otherwise: Option<String>,
    // command
    #[serde(default)]
    pub commands: Vec<CommandSpec>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub umask: Option<String>,
    /// The step that creates the target database and restores into it.
    #[serde(default)]
    pub creates_database: bool,
    // transfer
    pub from: Option<String>,
    pub to: Option<String>,
    pub mode: Option<String>,
    pub owner: Option<String>,
    #[serde(default)]
    pub backup: bool,
    /// transfer: files copied each to the same path on the target;
    /// preflight: files that must be readable on the source.
    #[serde(default)]
    pub files: Vec<String>,
    // rsync
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub delete: bool,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A directory inside each path holding what the app can fetch again
    /// (remote media): left out when the config says `[move] media_cache = "skip"`.
    pub cache: Option<String>,
    /// Said when the cache is left out: what to run afterwards.
    pub cache_note: Option<String>,
    /// Run both rsyncs with this niceness (0-19), so a copy beside the
    /// database move leaves the CPU to the restore.
    pub nice: Option<u8>,
    // redis
    pub service: Option<String>,
    // services
    pub action: Option<String>,
    pub services: Option<String>,
    // health
    pub url: Option<String>,
    /// Ask from this machine with the URL's host pinned to each [dns] expect
    /// address (curl --resolve): the new host as visitors will reach it.
    #[serde(default)]
    pub pinned: bool,
    // preflight
    pub env_file: Option<String>,
    pub domain_key: Option<String>,
    pub version_file: Option<String>,
    #[serde(default)]
    pub media: Vec<String>,
    /// Misskey's .config/default.yml: read for the database, Redis, url, id
    /// method, search and port.
    pub misskey_config: Option<String>,
    /// Object storage is on when this env_file setting is "true" (Mastodon's
    /// S3_ENABLED) ...
    pub object_storage_env: Option<String>,
    /// ... or when this query on the source database answers true (Misskey
    /// keeps the switch in its `meta` table).
    pub object_storage_sql: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndoSpec {
    pub host: HostSel,
    pub user: Option<String>,
    pub commands: Vec<CommandSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub id: String,
    pub title: String,
}
