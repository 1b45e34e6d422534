//! config + profile -> Plan: the ordered steps with every setting filled in.
//! Facts that only preflight can know (which schemas hold data, whether the
//! target database exists) stay visible as `{name}` until the run fills them.

mod settle;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Install, ProfileRef};
use crate::profile::template::{Value, Vars};
use crate::profile::{
    DowntimeMark, HostSel, PhaseSpec, Profile, ProfileError, StepBody, StepKind, StepSpec, VarSpec,
};
use std::collections::BTreeMap;

fn load_profile(config: &Config) -> Result<Profile, ProfileError> {
    match &config.profile {
        ProfileRef::Builtin(name) => Profile::load_builtin(name),
        ProfileRef::File(path) => Profile::load_file(path),
    }
}

/// A profile without a default for an [app] setting it uses (the generic one)
/// needs it from the config.
fn check_required(profile: &Profile, config: &Config) -> Result<(), crate::config::ConfigError> {
    let d = &profile.defaults;
    let app = &config.app;
    let missing: Vec<&str> = [
        ("user", d.user.is_empty() && app.user.is_none()),
        ("dir", d.dir.is_empty() && app.dir.is_none()),
        ("database", d.database.is_empty() && app.database.is_none()),
        ("db_user", d.db_user.is_empty() && app.db_user.is_none()),
        ("services", d.services.is_empty() && app.services.is_none()),
    ]
    .into_iter()
    .filter_map(|(k, miss)| (miss && profile.uses(k)).then_some(k))
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(config.error_at(
        config.app_at,
        format!(
            "profile '{}' has no default for {}: set {} in [app]",
            profile.name,
            missing
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ),
    ))
}

/// The config's `[vars]` must name settings the profile has, with the same
/// shape; a list a step uses as paths must hold absolute paths.
fn check_config_vars(profile: &Profile, config: &Config) -> Result<(), crate::config::ConfigError> {
    for cv in &config.vars {
        let Some(declared) = profile.vars.get(&cv.name) else {
            let names: Vec<&str> = profile.vars.keys().map(String::as_str).collect();
            return Err(config.var_error(
                cv,
                format!(
                    "[vars] '{}' is not a setting of profile '{}'; its settings: {}",
                    cv.name,
                    profile.name,
                    names.join(", ")
                ),
            ));
        };
        if !declared.accepts(&cv.value) {
            return Err(config.var_error(
                cv,
                format!(
                    "[vars] '{}' is {} in profile '{}', not {}",
                    cv.name,
                    declared.kind(),
                    profile.name,
                    cv.value.kind()
                ),
            ));
        }
        let as_path = profile.steps.iter().any(|s| {
            s.paths()
                .iter()
                .any(|p| crate::profile::template::whole_placeholder(p) == Some(cv.name.as_str()))
        });
        if as_path
            && let Some(bad) =
                cv.value.strings().into_iter().find(|p| {
                    !crate::config::is_plain_abs_path(p) || p.split('/').any(|c| c == "..")
                })
        {
            return Err(config.var_error(
                cv,
                format!(
                    "[vars] '{}': '{}' is not an absolute path (other than '/', without '..' or a trailing '/')",
                    cv.name,
                    bad.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub profile_name: String,
    pub profile_origin: String,
    pub source: String,
    pub target: String,
    pub domain: String,
    pub phases: Vec<PhaseSpec>,
    pub steps: Vec<StepSpec>,
    /// The kinds of step in the whole profile; `check` runs preflight alone but
    /// must still check what the later steps will need.
    pub kinds: Vec<StepKind>,
    pub vars: Vars,
    /// The config's [dns] expect: where the domain will point after the move.
    pub dns_expect: Vec<std::net::IpAddr>,
    /// The URLs the pinned health checks will ask; preflight tries them early.
    pub pinned_urls: Vec<String>,
    /// Every step of the profile, rehearsal-only ones included.
    pub all_steps: Vec<StepSpec>,
    /// The [app] settings the config gives; the others are the profile's
    /// defaults, which preflight may fill from the app's own config file.
    pub configured: Vec<String>,
    /// How the app runs on each host (the config's `compose` keys).
    pub source_install: Install,
    pub target_install: Install,
    /// The profile's service names by role (`[compose]`).
    pub compose_roles: BTreeMap<String, String>,
}

/// What a reader of a plan or a journal needs to know about a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    pub id: String,
    pub phase: String,
    pub phase_title: String,
    pub title: String,
    pub why: String,
    pub kind: StepKind,
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime: Option<DowntimeMark>,
    /// Inside the real run's downtime window; a rehearsal measures these.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_downtime: bool,
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<String>,
    /// What is said instead when `when` leaves the step out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
    pub commands: Vec<String>,
    /// The step creates the target database (the profile says so): the
    /// journal keeps it, so every fold of a run knows which step that is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creates_database: bool,
}

/// The id of the rollback step in events and journals.
pub(crate) const ROLLBACK: &str = "rollback";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Plan {
    pub fn build(config: &Config) -> Result<Plan, PlanError> {
        let profile = load_profile(config)?;
        check_config_vars(&profile, config)?;
        check_required(&profile, config)?;
        Ok(Plan::from_profile(profile, config))
    }

    /// A plan to look at only (`plan --profile`): settings the profile leaves
    /// to the config stay visible as `{name}`.
    pub fn build_for_showing(config: &Config) -> Result<Plan, PlanError> {
        Ok(Plan::from_profile(load_profile(config)?, config))
    }

    pub(crate) fn from_profile(mut profile: Profile, config: &Config) -> Plan {
        let app = &config.app;
        let vars = settings(&profile, config);
        profile.steps = settle::settle(std::mem::take(&mut profile.steps), &settled(config));
        let configured = [
            ("user", app.user.is_some()),
            ("dir", app.dir.is_some()),
            ("database", app.database.is_some()),
            ("db_user", app.db_user.is_some()),
            ("services", app.services.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| k.to_string())
        .collect();
        Plan {
            configured,
            source_install: config.source_install.clone(),
            target_install: config.target_install.clone(),
            compose_roles: profile.compose.clone(),
            profile_name: profile.name,
            profile_origin: profile.origin,
            source: config.source.clone(),
            target: config.target.clone(),
            domain: app.domain.clone(),
            phases: profile.phases,
            kinds: profile.steps.iter().map(StepSpec::kind).collect(),
            pinned_urls: profile
                .steps
                .iter()
                .filter_map(|s| match &s.body {
                    StepBody::Health(h) if h.pinned => Some(h.url.clone()),
                    _ => None,
                })
                .collect(),
            steps: profile
                .steps
                .iter()
                .filter(|s| {
                    !matches!(
                        s.rehearsal,
                        Some(crate::profile::Rehearsal::Only | crate::profile::Rehearsal::OnlyWeb)
                    )
                })
                .cloned()
                .collect(),
            all_steps: profile.steps,
            vars,
            dns_expect: config
                .dns
                .as_ref()
                .map(|d| d.expect.clone())
                .unwrap_or_default(),
        }
    }

    /// The rehearsal: only the steps the profile puts in one (with --start-web
    /// also those that start and check the web service), and no downtime
    /// clock, since the old host keeps serving.
    pub fn for_rehearsal(&self, start_web: bool) -> Plan {
        use crate::profile::Rehearsal::{Only, OnlyWeb, Run, Web};
        let mut p = self.clone();
        p.steps = self
            .all_steps
            .iter()
            .filter(|s| match s.rehearsal {
                Some(Run | Only) => true,
                Some(Web | OnlyWeb) => start_web,
                None => false,
            })
            .cloned()
            .map(|mut s| {
                s.downtime = None;
                s.without_undo()
            })
            .collect();
        p
    }

    /// How the app runs on the source (`true`) or the target host.
    pub fn install(&self, source: bool) -> &Install {
        if source {
            &self.source_install
        } else {
            &self.target_install
        }
    }

    /// A compose host's service for each role: the profile's names, with
    /// the config's `compose_services` over them.
    pub fn service_roles(&self, source: bool) -> BTreeMap<String, String> {
        let mut roles = self.compose_roles.clone();
        if let Install::Compose(c) = self.install(source) {
            roles.extend(c.services.clone());
        }
        roles
    }

    /// Only the preflight steps: what `hikkoshi check` runs.
    pub fn preflight_only(&self) -> Plan {
        let mut p = self.clone();
        p.steps.retain(|s| s.kind() == StepKind::Preflight);
        p
    }

    pub(crate) fn phase_title(&self, id: &str) -> String {
        self.phases
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_string(), |p| p.title.clone())
    }

    pub(crate) fn host_names(&self, sel: Option<HostSel>) -> Vec<String> {
        match sel {
            Some(HostSel::Source) => vec![self.source.clone()],
            Some(HostSel::Target) => vec![self.target.clone()],
            Some(HostSel::Both) | None => vec![self.source.clone(), self.target.clone()],
        }
    }
}

/// Quotes an argument for display so that what a reader copies into a shell is
/// exactly what hikkoshi passed. Never used to build a command that runs.
/// What the config alone answers: whether each host runs a compose stack.
fn settled(config: &Config) -> [(&'static str, bool); 2] {
    [
        (
            "source_compose",
            matches!(config.source_install, Install::Compose(_)),
        ),
        (
            "target_compose",
            matches!(config.target_install, Install::Compose(_)),
        ),
    ]
}

pub(crate) fn shell_quote(arg: &str) -> String {
    // Braces are left bare for placeholders still to be filled in (`{run_id}`):
    // bash only expands them around a comma or `..`.
    let braces_inert = !(arg.contains('{') && (arg.contains(',') || arg.contains("..")));
    let safe = !arg.is_empty()
        && braces_inert
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=/,.+:@%{}".contains(c));
    if safe {
        return arg.to_string();
    }
    if arg.chars().any(|c| c.is_control()) {
        let mut s = String::from("$'");
        for c in arg.chars() {
            match c {
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\\' => s.push_str("\\\\"),
                '\'' => s.push_str("\\'"),
                c if c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('\'');
        return s;
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plan's settings: the config's hosts and app, the profile's defaults
/// where the config is silent, the move's options, the profile's [vars] (as
/// templates) and the config's (literal).
fn settings(profile: &Profile, config: &Config) -> Vars {
    let app = &config.app;
    let d = &profile.defaults;
    let mut vars = Vars::new();
    vars.set("source", config.source.as_str());
    vars.set("target", config.target.as_str());
    vars.set("domain", app.domain.as_str());
    // An empty default is one the config must give; until then it shows as {name}.
    let or_default = |set: &Option<String>, default: &str, name: &str| {
        set.clone().unwrap_or_else(|| {
            if default.is_empty() {
                format!("{{{name}}}")
            } else {
                default.to_string()
            }
        })
    };
    // A compose stack's files belong to the containers' users, and its
    // directory is the project's: root works there, unless the config says.
    let (user, dir) = match &config.source_install {
        Install::Compose(c) => ("root".to_string(), c.dir.clone()),
        Install::Systemd => (d.user.clone(), d.dir.clone()),
    };
    vars.set("user", or_default(&app.user, &user, "user"));
    vars.set("dir", or_default(&app.dir, &dir, "dir"));
    vars.set(
        "database",
        or_default(&app.database, &d.database, "database"),
    );
    vars.set("db_user", or_default(&app.db_user, &d.db_user, "db_user"));
    // A stack's app services are its web, worker and streaming services.
    let stack_services: Vec<String> = match &config.source_install {
        Install::Compose(c) => ["web", "worker", "streaming"]
            .iter()
            .filter_map(|r| c.services.get(*r).or(profile.compose.get(*r)).cloned())
            .collect(),
        Install::Systemd => Vec::new(),
    };
    vars.set(
        "services",
        app.services.clone().unwrap_or_else(|| {
            if !stack_services.is_empty() {
                stack_services.clone()
            } else if d.services.is_empty() {
                vec!["{services}".to_string()]
            } else {
                d.services.clone()
            }
        }),
    );
    for (name, value) in settled(config) {
        vars.set(name, value);
    }
    vars.set("db_move", config.moving.database.name());
    vars.set(
        "db_compress",
        config
            .moving
            .compress
            .map_or_else(String::new, |z| z.to_string()),
    );
    vars.set(
        "media_cache_skipped",
        config.moving.media_cache == crate::config::MediaCache::Skip,
    );
    for (k, v) in &profile.vars {
        match v {
            VarSpec::Text(t) => vars.set_template(k.as_str(), t),
            VarSpec::List(l) => vars.set(k.as_str(), Value::Templates(l.clone())),
            VarSpec::Commands(c) => vars.set(k.as_str(), Value::TemplateCommands(c.clone())),
        }
    }
    // root's home is /root, not /home/root (preflight asks the hosts anyway).
    if vars.text("user").is_ok_and(|u| u == "root") && vars.contains("home") {
        vars.set("home", "/root");
    }
    // The config's values are literal, like every other config value.
    for cv in &config.vars {
        let value = match &cv.value {
            VarSpec::Text(t) => Value::Text(t.clone()),
            VarSpec::List(l) => Value::List(l.clone()),
            VarSpec::Commands(c) => Value::Commands(c.clone()),
        };
        vars.set(cv.name.as_str(), value);
    }
    if let Some(w) = &app.work_dir {
        vars.set("work_dir", w.as_str());
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn display_quoting_round_trips_through_a_shell() {
        let hostile = [
            "plain",
            "with space",
            "it's",
            "$(touch /tmp/x)",
            "a\nb",
            "`id`",
            "-rf",
            "",
            "日本語",
            "{a,b}",
            "x{1..3}",
            "/w/{run_id}/db.dump",
        ];
        for arg in hostile {
            let quoted = shell_quote(arg);
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("printf %s {quoted}"))
                .output()
                .expect("bash runs");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                arg,
                "quoted as {quoted}"
            );
        }
    }

    fn build(text: &str) -> Result<Plan, PlanError> {
        let config = Config::parse(Path::new("/lab/migration.toml"), text).expect("valid config");
        Plan::build(&config)
    }

    const GENERIC: &str = "profile = \"generic\"\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"app.example\"\nuser = \"app\"\ndir = \"/srv/app\"\ndatabase = \"app\"\ndb_user = \"app\"\nservices = [\"app\"]\n";

    #[test]
    fn generic_profile_needs_the_app_settings() {
        let text = "profile = \"generic\"\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"app.example\"\nuser = \"app\"\n";
        let e = build(text).unwrap_err().to_string();
        assert_eq!(
            e,
            "/lab/migration.toml:6:1: profile 'generic' has no default for 'dir', 'database', 'db_user', 'services': set them in [app]"
        );
    }

    #[test]
    fn config_vars_are_checked_against_the_profile() {
        let cases = [
            (
                "[vars]\nsync_dir = [\"/x\"]\n",
                "/lab/migration.toml:14:12: [vars] 'sync_dir' is not a setting of profile 'generic'; its settings: ",
            ),
            (
                "[vars]\nfiles = \"/srv/app/a.json\"\n",
                "/lab/migration.toml:14:9: [vars] 'files' is a list of strings in profile 'generic', not a string",
            ),
            (
                "[vars]\nsync_dirs = [\"uploads\"]\n",
                "/lab/migration.toml:14:13: [vars] 'sync_dirs': 'uploads' is not an absolute path",
            ),
            (
                "[vars]\nfiles = [\"/srv/../etc/shadow\"]\n",
                "/lab/migration.toml:14:9: [vars] 'files': '/srv/../etc/shadow' is not an absolute path",
            ),
            (
                "[vars]\npost_commands = [[\"a\"], []]\n",
                "/lab/migration.toml:14:17: [vars] 'post_commands': a command needs at least a program",
            ),
            (
                "[vars]\nhealth_url = \"http://x/\\n\"\n",
                "/lab/migration.toml:14:14: [vars] 'health_url': 'http://x/\\n' is empty or holds control characters",
            ),
            (
                "[vars]\ndatabase = \"other\"\n",
                "/lab/migration.toml:14:12: [vars] 'database' is not the profile's to set",
            ),
        ];
        for (vars, want) in cases {
            let text = format!("{GENERIC}{vars}");
            let e = match Config::parse(Path::new("/lab/migration.toml"), &text) {
                Err(e) => e.to_string(),
                Ok(c) => Plan::build(&c)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            };
            assert!(e.starts_with(want), "{vars}: got '{e}'");
        }
    }
}
