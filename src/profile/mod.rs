//! Profiles: an app's migration checklist as data (assets/profiles/*.toml).
//! A user's own profile file goes through exactly the same loading and checks
//! as a built-in one.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub mod template;

use template::{TemplateError, placeholders};

const BUILTIN: &[(&str, &str)] = &[
    (
        "mastodon",
        include_str!("../../assets/profiles/mastodon.toml"),
    ),
    (
        "misskey",
        include_str!("../../assets/profiles/misskey.toml"),
    ),
    (
        "generic",
        include_str!("../../assets/profiles/generic.toml"),
    ),
    (
        "pleasanter",
        include_str!("../../assets/profiles/pleasanter.toml"),
    ),
];

pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ProfileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

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
        when: Option<String>,
        /// The command's stdin: another command's stdout on the other host,
        /// streamed through this machine.
        input: Option<PipeInput>,
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

    pub fn when(&self) -> Option<&str> {
        match self {
            CommandSpec::Detailed { when, .. } => when.as_deref(),
            _ => None,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One step as the profile states it. Which keys apply depends on `kind`;
/// `validate` refuses keys that would be silently ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
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
    /// Between the downtime marks of the real run (set when the profile is
    /// loaded): what a rehearsal measures to predict the downtime.
    #[serde(skip)]
    pub in_downtime: bool,
    // command
    #[serde(default)]
    pub commands: Vec<CommandSpec>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub umask: Option<String>,
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

impl StepSpec {
    pub fn conditions(&self) -> Vec<String> {
        self.when.as_ref().map(OneOrMany::items).unwrap_or_default()
    }

    /// Every template string in the step, for placeholder validation.
    fn templates(&self) -> Vec<&str> {
        let mut t: Vec<&str> = Vec::new();
        for c in &self.commands {
            t.extend(c.argv().iter().map(String::as_str));
            if let Some(i) = c.input() {
                t.extend(i.argv.iter().map(String::as_str));
                t.extend(i.user.iter().map(String::as_str));
                t.extend(i.env.values().map(String::as_str));
            }
        }
        let singles = [
            &self.cache,
            &self.cache_note,
            &self.user,
            &self.confirm,
            &self.cwd,
            &self.from,
            &self.to,
            &self.owner,
            &self.service,
            &self.url,
            &self.env_file,
            &self.version_file,
            &self.otherwise,
            &self.misskey_config,
        ];
        t.extend(singles.into_iter().flatten().map(String::as_str));
        t.extend(self.env.values().map(String::as_str));
        t.extend(self.paths.iter().map(String::as_str));
        t.extend(self.media.iter().map(String::as_str));
        t.extend(self.files.iter().map(String::as_str));
        if let Some(u) = &self.undo {
            t.extend(u.user.iter().map(String::as_str));
            for c in &u.commands {
                t.extend(c.argv().iter().map(String::as_str));
            }
        }
        t
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: String,
    /// A built-in profile whose phases, steps and vars this one takes; its
    /// own [vars] replace the base's, its own [[steps]] (if any) all of them.
    extends: Option<Spanned<String>>,
    defaults: RawDefaults,
    #[serde(default)]
    vars: BTreeMap<String, VarSpec>,
    #[serde(default)]
    phases: Vec<PhaseSpec>,
    #[serde(default)]
    steps: Vec<Spanned<StepSpec>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub user: String,
    pub dir: String,
    pub database: String,
    pub db_user: String,
    #[serde(default)]
    pub services: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub origin: String,
    pub defaults: RawDefaults,
    pub vars: BTreeMap<String, VarSpec>,
    pub phases: Vec<PhaseSpec>,
    pub steps: Vec<StepSpec>,
}

/// Facts preflight provides to the profile as placeholders (the typed
/// `steps::facts::Facts` carries what steps need typed).
pub const FACTS: &[&str] = &[
    "schema_args",
    "has_extra_schemas",
    "extra_schemas_sql",
    "restore_jobs",
    "dump_jobs",
    "dump_compress",
    "restore_pgoptions",
    "db_file",
    "db_stream",
    "db_parallel",
    "dump_is_file",
    "target_db_exists",
    "es_enabled",
    "redis_local",
    "object_storage",
    "app_port",
    "from_backup",
    "backup_path",
    "backup_dir",
    "backup_plain",
    "backup_gzip",
    "restore_archive",
];

/// Names the engine and preflight provide; a profile may use them without defining them.
pub const PROVIDED: &[&str] = &[
    "source",
    "target",
    "domain",
    "user",
    "dir",
    "database",
    "db_user",
    "services",
    "run_id",
    "db_move",
    "db_compress",
    "media_cache_skipped",
];

impl Profile {
    pub fn load_builtin(name: &str) -> Result<Profile, ProfileError> {
        let text = builtin(name).ok_or_else(|| ProfileError {
            file: format!("profile '{name}'"),
            line: 0,
            column: 0,
            message: format!(
                "no built-in profile '{name}'; built-in profiles: {}",
                builtin_names().join(", ")
            ),
        })?;
        Profile::parse(&format!("assets/profiles/{name}.toml"), text)
    }

    pub fn load_file(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read the profile: {e}"),
        })?;
        Profile::parse(&path.display().to_string(), &text)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Profile, ProfileError> {
        let err = |span: Range<usize>, message: String| {
            let before = &text[..span.start.min(text.len())];
            ProfileError {
                file: origin.to_string(),
                line: before.matches('\n').count() + 1,
                column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                message,
            }
        };
        let mut raw: RawProfile = toml::from_str(text)
            .map_err(|e| err(e.span().unwrap_or(0..0), e.message().trim_end().to_string()))?;

        let base = match &raw.extends {
            None => None,
            Some(name) => {
                let Some(base_text) = builtin(name.get_ref()) else {
                    return Err(err(
                        name.span(),
                        format!(
                            "extends '{}', which is no built-in profile; built-in profiles: {}",
                            name.get_ref().escape_debug(),
                            builtin_names().join(", ")
                        ),
                    ));
                };
                let base = Profile::parse(
                    &format!("assets/profiles/{}.toml", name.get_ref()),
                    base_text,
                )?;
                for (k, v) in &raw.vars {
                    if let Some(b) = base.vars.get(k)
                        && !b.accepts(v)
                    {
                        return Err(err(
                            name.span(),
                            format!(
                                "[vars] {k} is {} in profile '{}', not {}",
                                b.kind(),
                                base.name,
                                v.kind()
                            ),
                        ));
                    }
                }
                let own = std::mem::take(&mut raw.vars);
                raw.vars = base.vars.clone();
                raw.vars.extend(own);
                match (raw.phases.is_empty(), raw.steps.is_empty()) {
                    (true, true) => raw.phases = base.phases.clone(),
                    (false, false) => {}
                    _ => {
                        return Err(err(
                            name.span(),
                            "a profile that extends another takes its [[phases]] and [[steps]] together, or gives both".into(),
                        ));
                    }
                }
                Some(base)
            }
        };
        if raw.phases.is_empty() || (raw.steps.is_empty() && base.is_none()) {
            return Err(err(
                0..0,
                "a profile needs [[phases]] and [[steps]], or 'extends' naming a built-in profile to take them from".into(),
            ));
        }

        let mut known: Vec<String> = PROVIDED.iter().map(|s| s.to_string()).collect();
        known.extend(FACTS.iter().map(|s| s.to_string()));
        known.extend(raw.vars.keys().cloned());

        for (name, value) in &raw.vars {
            for s in value.strings() {
                check_placeholders(s, &known)
                    .map_err(|m| err(0..0, format!("[vars] {name}: {m}")))?;
            }
        }

        let mut seen = std::collections::HashSet::new();
        for spanned in &raw.steps {
            let step = spanned.get_ref();
            let here = |m: String| err(spanned.span(), format!("step '{}': {m}", step.id));
            if !seen.insert(step.id.clone()) {
                return Err(here("a step with this id already exists".into()));
            }
            if !raw.phases.iter().any(|p| p.id == step.phase) {
                return Err(here(format!(
                    "phase '{}' is not one of the profile's [[phases]]",
                    step.phase
                )));
            }
            validate_kind(step).map_err(here)?;
            for c in &step.commands {
                if let CommandSpec::Each(t) = c {
                    let is_commands = c.each().and_then(|n| raw.vars.get(n)).is_some_and(|v| {
                        matches!(v, VarSpec::Commands(_))
                            || matches!(v, VarSpec::List(l) if l.is_empty())
                    });
                    if !is_commands {
                        return Err(here(format!(
                            "command '{t}' is neither an argv list nor '{{name}}' of a [vars] list of commands"
                        )));
                    }
                }
            }
            if step.otherwise.is_some() && step.when.is_none() {
                return Err(here(
                    "'otherwise' says why a step is left out; it needs 'when'".into(),
                ));
            }
            for t in step.templates() {
                check_placeholders(t, &known).map_err(here)?;
            }
            let command_conditions = step
                .commands
                .iter()
                .filter_map(|c| c.when().map(String::from));
            for c in step.conditions().into_iter().chain(command_conditions) {
                let name = c.trim_start_matches('!').trim();
                if !known.iter().any(|k| k == name) {
                    return Err(here(format!("condition '{c}' names no setting or fact")));
                }
            }
            if let Some(t) = &step.timeout
                && crate::units::parse_duration(t).is_none()
            {
                return Err(here(format!("timeout '{t}' is not a duration")));
            }
            if let Some(b) = &step.beside {
                let leader = raw.steps.iter().position(|s| s.get_ref().id == *b);
                let me = raw.steps.iter().position(|s| s.get_ref().id == step.id);
                if !matches!((leader, me), (Some(l), Some(m)) if l < m) {
                    return Err(here(format!(
                        "beside '{b}', which is no earlier step of this profile"
                    )));
                }
                if step.confirm.is_some()
                    || step.downtime.is_some()
                    || step.finally
                    || step.kind == StepKind::Preflight
                    || step.kind == StepKind::Dns
                {
                    return Err(here(
                        "a step that runs 'beside' another cannot ask for confirmation, mark the downtime, be 'finally', or be preflight or dns"
                            .into(),
                    ));
                }
            }
            for r in &step.resets {
                if !raw.steps.iter().any(|s| s.get_ref().id == *r) {
                    return Err(here(format!(
                        "resets '{r}', which is no step of this profile"
                    )));
                }
            }
        }

        let steps = match base {
            Some(b) if raw.steps.is_empty() => b.steps,
            _ => mark_downtime(raw.steps.into_iter().map(Spanned::into_inner).collect()),
        };
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            origin: origin.to_string(),
            defaults: raw.defaults,
            vars: raw.vars,
            phases: raw.phases,
            steps,
        })
    }
}

impl Profile {
    /// Whether any step or setting refers to `{name}`.
    pub fn uses(&self, name: &str) -> bool {
        let refers = |t: &str| placeholders(t).is_ok_and(|p| p.iter().any(|n| n == name));
        self.steps
            .iter()
            .any(|s| s.templates().into_iter().any(refers))
            || self
                .vars
                .values()
                .any(|v| v.strings().into_iter().any(refers))
    }
}

fn mark_downtime(mut steps: Vec<StepSpec>) -> Vec<StepSpec> {
    let mut inside = false;
    for s in steps
        .iter_mut()
        .filter(|s| !matches!(s.rehearsal, Some(Rehearsal::Only | Rehearsal::OnlyWeb)))
    {
        if s.downtime == Some(DowntimeMark::Start) {
            inside = true;
        }
        s.in_downtime = inside;
        if s.downtime == Some(DowntimeMark::End) {
            inside = false;
        }
    }
    steps
}

fn check_placeholders(template: &str, known: &[String]) -> Result<(), String> {
    let names = placeholders(template).map_err(|e: TemplateError| e.to_string())?;
    for n in names {
        if !known.contains(&n) {
            return Err(format!("unknown placeholder '{{{n}}}' in '{template}'"));
        }
    }
    Ok(())
}

fn validate_kind(step: &StepSpec) -> Result<(), String> {
    let kind = step.kind;
    let present: Vec<(&str, bool)> = vec![
        ("host", step.host.is_some()),
        ("commands", !step.commands.is_empty()),
        ("cwd", step.cwd.is_some()),
        ("env", !step.env.is_empty()),
        ("umask", step.umask.is_some()),
        ("from", step.from.is_some()),
        ("to", step.to.is_some()),
        ("mode", step.mode.is_some()),
        ("owner", step.owner.is_some()),
        ("backup", step.backup),
        ("paths", !step.paths.is_empty()),
        ("delete", step.delete),
        ("exclude", !step.exclude.is_empty()),
        ("cache", step.cache.is_some()),
        ("cache_note", step.cache_note.is_some()),
        ("nice", step.nice.is_some()),
        ("service", step.service.is_some()),
        ("url", step.url.is_some()),
        ("pinned", step.pinned),
        ("env_file", step.env_file.is_some()),
        ("domain_key", step.domain_key.is_some()),
        ("version_file", step.version_file.is_some()),
        ("media", !step.media.is_empty()),
        ("files", !step.files.is_empty()),
        ("misskey_config", step.misskey_config.is_some()),
        ("object_storage_env", step.object_storage_env.is_some()),
        ("object_storage_sql", step.object_storage_sql.is_some()),
        ("user", step.user.is_some()),
    ];
    let (allowed, required): (&[&str], &[&str]) = match kind {
        StepKind::Command => (
            &["host", "commands", "cwd", "env", "umask", "user"],
            &["host", "commands"],
        ),
        StepKind::Preflight => (
            &[
                "env_file",
                "domain_key",
                "version_file",
                "media",
                "files",
                "misskey_config",
                "object_storage_env",
                "object_storage_sql",
            ],
            &[],
        ),
        StepKind::Transfer => (
            &["from", "to", "files", "mode", "owner", "backup", "user"],
            &["mode", "user"],
        ),
        StepKind::Rsync => (
            &[
                "paths",
                "delete",
                "exclude",
                "cache",
                "cache_note",
                "nice",
                "user",
            ],
            &["paths", "user"],
        ),
        StepKind::Verify | StepKind::Dns => (&[], &[]),
        StepKind::Redis => (&["service"], &["service"]),
        StepKind::Health => (&["url", "pinned"], &["url"]),
    };
    for (key, is_set) in &present {
        if *is_set && !allowed.contains(key) {
            return Err(format!(
                "'{key}' does not apply to a '{}' step",
                kind.name()
            ));
        }
    }
    for key in required {
        if !present.iter().any(|(k, set)| k == key && *set) {
            return Err(format!("a '{}' step needs '{key}'", kind.name()));
        }
    }
    if kind == StepKind::Transfer {
        let pair = step.from.is_some() && step.to.is_some();
        let one = step.from.is_some() || step.to.is_some();
        if pair != step.files.is_empty() || (one && !pair) {
            return Err(
                "a 'transfer' step copies 'from' to 'to', or each of 'files' to the same path; it needs one of the two"
                    .into(),
            );
        }
    }
    if step.object_storage_env.is_some() && step.env_file.is_none() {
        return Err("'object_storage_env' names a setting of 'env_file', which is not set".into());
    }
    if let Some(m) = &step.mode
        && !(m.len() == 4 && m.starts_with('0') && m.chars().all(|c| ('0'..='7').contains(&c)))
    {
        return Err(format!("mode '{m}' is not an octal file mode like 0600"));
    }
    if let Some(n) = step.nice
        && n > 19
    {
        return Err(format!("nice '{n}' is not a niceness from 0 to 19"));
    }
    if let Some(u) = &step.umask
        && !(u.len() == 3 && u.chars().all(|c| ('0'..='7').contains(&c)))
    {
        return Err(format!("umask '{u}' is not an octal umask like 077"));
    }
    for c in &step.commands {
        if c.argv().is_empty() || c.input().is_some_and(|i| i.argv.is_empty()) {
            return Err("a command needs at least a program".into());
        }
        if c.input().is_some() && !matches!(step.host, Some(HostSel::Source | HostSel::Target)) {
            return Err(
                "a command with 'input' runs on one host ('source' or 'target'); its input comes from the other"
                    .into(),
            );
        }
    }
    for key in step.env.keys() {
        let ok = key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && !key.is_empty();
        if !ok {
            return Err(format!("'{key}' is not an environment variable name"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_are_valid() {
        for name in builtin_names() {
            let p = Profile::load_builtin(name).expect("valid built-in profile");
            assert_eq!(p.name, name);
            assert!(p.steps.iter().any(|s| s.id == "restore"), "{name}");
            assert!(p.steps.iter().any(|s| s.kind == StepKind::Verify), "{name}");
        }
    }

    #[test]
    fn a_profile_extends_a_builtin_one() {
        let p = Profile::load_builtin("pleasanter").expect("valid");
        let generic = Profile::load_builtin("generic").expect("valid");
        assert_eq!(p.steps.len(), generic.steps.len());
        assert_eq!(p.defaults.database, "Implem.Pleasanter");
        assert_eq!(
            p.vars.get("post_dir"),
            Some(&VarSpec::Text("{dir}/Implem.CodeDefiner".into()))
        );
        assert!(p.vars.contains_key("run_dir"), "the base's vars stay");

        let head = "name = \"mine\"\nextends = \"generic\"\n[defaults]\nuser = \"u\"\ndir = \"/d\"\ndatabase = \"db\"\ndb_user = \"u\"\n";
        let refused = |text: &str| Profile::parse("mine.toml", text).unwrap_err().to_string();
        let e = refused(&format!("{head}[vars]\nfiles = \"/d/x\"\n"));
        assert!(e.starts_with("mine.toml:2:11: [vars] files is a list of strings in profile 'generic', not a string"), "{e}");
        let e = refused(&head.replace("\"generic\"", "\"wordpress\""));
        assert!(
            e.contains("extends 'wordpress', which is no built-in profile"),
            "{e}"
        );
        let e = refused(&head.replace("extends = \"generic\"\n", ""));
        assert!(
            e.contains("a profile needs [[phases]] and [[steps]]"),
            "{e}"
        );
    }

    #[test]
    fn step_shapes_that_cannot_work_are_refused() {
        let cases = [
            (
                "kind = \"transfer\"\nuser = \"u\"\nmode = \"0600\"\nfrom = \"/a\"\n",
                "a 'transfer' step copies 'from' to 'to', or each of 'files'",
            ),
            (
                "kind = \"transfer\"\nuser = \"u\"\nmode = \"0600\"\nfrom = \"/a\"\nto = \"/a\"\nfiles = [\"/b\"]\n",
                "a 'transfer' step copies 'from' to 'to', or each of 'files'",
            ),
            (
                "host = \"target\"\ncommands = [\"{user}\"]\n",
                "command '{user}' is neither an argv list nor '{name}' of a [vars] list of commands",
            ),
            (
                "kind = \"verify\"\notherwise = \"nothing\"\n",
                "'otherwise' says why a step is left out; it needs 'when'",
            ),
        ];
        for (body, want) in cases {
            let text = with_step(&format!(
                "[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\n{body}"
            ));
            let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    fn with_step(step: &str) -> String {
        format!(
            "name = \"t\"\n[defaults]\nuser = \"u\"\ndir = \"/d\"\ndatabase = \"db\"\ndb_user = \"u\"\n\n[[phases]]\nid = \"p\"\ntitle = \"P\"\n\n{step}"
        )
    }

    #[test]
    fn profile_errors_name_file_line_and_step() {
        let text = with_step(
            "[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\nhost = \"source\"\ncommands = [[\"echo\", \"{nope}\"]]\n",
        );
        let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
        assert!(
            e.starts_with("my.toml:12:1: step 's': unknown placeholder '{nope}'"),
            "{e}"
        );
    }

    #[test]
    fn keys_that_do_not_apply_are_refused() {
        let text = with_step(
            "[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\nkind = \"verify\"\npaths = [\"/x\"]\n",
        );
        let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
        assert!(
            e.contains("'paths' does not apply to a 'verify' step"),
            "{e}"
        );
    }

    #[test]
    fn unknown_phase_and_unknown_key() {
        let text =
            with_step("[[steps]]\nid = \"s\"\nphase = \"q\"\ntitle = \"S\"\nkind = \"verify\"\n");
        let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
        assert!(e.contains("phase 'q' is not one of"), "{e}");
        let text =
            with_step("[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\nkidn = \"verify\"\n");
        let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
        assert!(e.contains("unknown field `kidn`"), "{e}");
    }
}
