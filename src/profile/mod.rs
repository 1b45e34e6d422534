//! Profiles: an app's migration checklist as data (assets/profiles/*.toml).
//! A user's own profile file goes through exactly the same loading and checks
//! as a built-in one.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

mod spec;
mod step;
pub mod template;
mod validate;

pub use spec::*;
pub use step::*;
use validate::{check_placeholders, check_step, mark_downtime, validate_kind};

use template::placeholders;

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

pub(crate) fn builtin_names() -> Vec<&'static str> {
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
    /// `[compose]`: the stack's service for each role, as the app's own
    /// compose file names it.
    #[serde(default)]
    compose: BTreeMap<String, String>,
    #[serde(default)]
    vars: BTreeMap<String, VarSpec>,
    #[serde(default)]
    phases: Vec<PhaseSpec>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
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
    /// Service names by role in the app's compose file (`[compose]`).
    pub compose: BTreeMap<String, String>,
    pub vars: BTreeMap<String, VarSpec>,
    pub phases: Vec<PhaseSpec>,
    pub steps: Vec<StepSpec>,
}

/// The roles a service of a compose stack can play in a move.
pub const ROLES: [&str; 5] = ["database", "redis", "web", "worker", "streaming"];

/// Facts preflight provides to the profile as placeholders (the typed
/// `steps::facts::Facts` carries what steps need typed).
pub(crate) const FACTS: &[&str] = &[
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
pub(crate) const PROVIDED: &[&str] = &[
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
    "source_compose",
    "target_compose",
];

impl Profile {
    pub(crate) fn load_builtin(name: &str) -> Result<Profile, ProfileError> {
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

    pub(crate) fn load_file(path: &Path) -> Result<Profile, ProfileError> {
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

        let base = match raw.extends.clone() {
            None => None,
            Some(name) => Some(take_base(&mut raw, &name, &err)?),
        };
        for (role, service) in &raw.compose {
            if !ROLES.contains(&role.as_str()) || service.is_empty() {
                return Err(err(
                    0..0,
                    format!(
                        "[compose] '{role}' is not a role a service can play; roles: {}",
                        ROLES.join(", ")
                    ),
                ));
            }
        }
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

        let own_steps = !raw.steps.is_empty();
        let mut seen = std::collections::HashSet::new();
        let mut steps: Vec<(Range<usize>, StepSpec)> = Vec::new();
        for spanned in std::mem::take(&mut raw.steps) {
            let span = spanned.span();
            let step = spanned.into_inner();
            let here = |m: String| err(span.clone(), format!("step '{}': {m}", step.id));
            if !seen.insert(step.id.clone()) {
                return Err(here("a step with this id already exists".into()));
            }
            validate_kind(&step).map_err(here)?;
            steps.push((span, StepSpec::from_raw(step)));
        }
        let all: Vec<&StepSpec> = steps.iter().map(|(_, s)| s).collect();
        for (span, step) in &steps {
            check_step(step, &all, &raw.phases, &raw.vars, &known)
                .map_err(|m| err(span.clone(), format!("step '{}': {m}", step.id)))?;
        }

        let steps = match base {
            Some(b) if !own_steps => b.steps,
            _ => mark_downtime(steps.into_iter().map(|(_, s)| s).collect()),
        };
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            origin: origin.to_string(),
            defaults: raw.defaults,
            compose: raw.compose,
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

/// `extends`: the built-in profile's vars under the profile's own, and its
/// phases and steps unless the profile gives both.
fn take_base(
    raw: &mut RawProfile,
    name: &Spanned<String>,
    err: &dyn Fn(Range<usize>, String) -> ProfileError,
) -> Result<Profile, ProfileError> {
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
    let own = std::mem::take(&mut raw.compose);
    raw.compose = base.compose.clone();
    raw.compose.extend(own);
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
    Ok(base)
}

#[cfg(test)]
mod tests;
