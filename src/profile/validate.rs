//! What makes a step of a profile one that can work: the keys its kind takes,
//! the placeholders it names, and where the downtime lies.

use super::template::{TemplateError, placeholders};
use std::collections::BTreeMap;

use super::{
    CommandSpec, DowntimeMark, HostSel, PhaseSpec, RawStep, Rehearsal, StepKind, StepSpec, VarSpec,
};

pub(super) fn mark_downtime(mut steps: Vec<StepSpec>) -> Vec<StepSpec> {
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

pub(super) fn check_placeholders(template: &str, known: &[String]) -> Result<(), String> {
    let names = placeholders(template).map_err(|e: TemplateError| e.to_string())?;
    for n in names {
        if !known.contains(&n) {
            return Err(format!("unknown placeholder '{{{n}}}' in '{template}'"));
        }
    }
    Ok(())
}

pub(super) fn validate_kind(step: &RawStep) -> Result<(), String> {
    let kind = step.kind;
    let present = keys_set(step);
    let (allowed, required) = keys_of(kind);
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
    check_values(step)
}

/// Every key a step can have, and whether this one sets it.
fn keys_set(step: &RawStep) -> Vec<(&'static str, bool)> {
    vec![
        ("host", step.host.is_some()),
        ("commands", !step.commands.is_empty()),
        ("cwd", step.cwd.is_some()),
        ("env", !step.env.is_empty()),
        ("umask", step.umask.is_some()),
        ("creates_database", step.creates_database),
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
        ("action", step.action.is_some()),
        ("services", step.services.is_some()),
    ]
}

/// The keys a kind of step takes, and those it needs.
fn keys_of(kind: StepKind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        StepKind::Command => (
            &[
                "host",
                "commands",
                "cwd",
                "env",
                "umask",
                "user",
                "creates_database",
            ],
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
        StepKind::Verify | StepKind::Dns | StepKind::Stack => (&[], &[]),
        StepKind::Redis => (&["service"], &["service"]),
        StepKind::Health => (&["url", "pinned"], &["url"]),
        StepKind::Services => (
            &["host", "action", "services", "user"],
            &["host", "action", "services"],
        ),
    }
}

/// The values that must have a shape: modes, niceness, umask, commands, env names.
fn check_values(step: &RawStep) -> Result<(), String> {
    let kind = step.kind;
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
    if let Some(a) = &step.action
        && super::ServiceAction::parse(a).is_none()
    {
        return Err(format!(
            "action '{a}' is not one of {}",
            super::ServiceAction::NAMES.join(", ")
        ));
    }
    if let Some(w) = &step.services
        && super::Which::parse(w).is_none()
    {
        return Err(format!(
            "services '{w}' is not one of {}",
            super::Which::NAMES.join(", ")
        ));
    }
    if step.kind == StepKind::Services && step.undo.is_some() {
        return Err("a 'services' step is undone by its action's reverse (a stop by a start); it takes no 'undo'".into());
    }
    if step.kind == StepKind::Redis && step.undo.is_some() {
        return Err(
            "a 'redis' step is undone by starting Redis again on both hosts; it takes no 'undo'"
                .into(),
        );
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
        if let Some(at) = c.at().or(c.input().and_then(|i| i.at.as_deref()))
            && !super::ROLES.contains(&at)
        {
            return Err(format!(
                "at '{at}' is not a role a service can play; roles: {}",
                super::ROLES.join(", ")
            ));
        }
        match (c.files(), c.input()) {
            ((Some(_), Some(_)), _) => {
                return Err("a command takes 'stdin' or 'stdout' from a file, not both".into());
            }
            ((Some(_), _), Some(_)) => {
                return Err(
                    "a command with 'input' already has its stdin; 'stdin' names another".into(),
                );
            }
            _ => {}
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

/// Everything a step must be to work, beside the keys its kind takes: its
/// phase exists, its commands and conditions name known settings, its
/// timeout is a duration, what it runs beside or resets exists.
pub(super) fn check_step(
    step: &StepSpec,
    steps: &[&StepSpec],
    phases: &[PhaseSpec],
    vars: &BTreeMap<String, VarSpec>,
    known: &[String],
) -> Result<(), String> {
    if !phases.iter().any(|p| p.id == step.phase) {
        return Err(format!(
            "phase '{}' is not one of the profile's [[phases]]",
            step.phase
        ));
    }
    for c in step.commands() {
        if let CommandSpec::Each(t) = c {
            let is_commands = c.each().and_then(|n| vars.get(n)).is_some_and(|v| {
                matches!(v, VarSpec::Commands(_)) || matches!(v, VarSpec::List(l) if l.is_empty())
            });
            if !is_commands {
                return Err(format!(
                    "command '{t}' is neither an argv list nor '{{name}}' of a [vars] list of commands"
                ));
            }
        }
    }
    if step.otherwise.is_some() && step.when.is_none() {
        return Err("'otherwise' says why a step is left out; it needs 'when'".into());
    }
    for t in step.templates() {
        check_placeholders(t, known)?;
    }
    let command_conditions = step.commands().iter().flat_map(CommandSpec::conditions);
    for c in step.conditions().into_iter().chain(command_conditions) {
        let name = c.trim_start_matches('!').trim();
        if !known.iter().any(|k| k == name) {
            return Err(format!("condition '{c}' names no setting or fact"));
        }
    }
    if let Some(t) = &step.timeout
        && crate::units::parse_duration(t).is_none()
    {
        return Err(format!("timeout '{t}' is not a duration"));
    }
    if let Some(b) = &step.beside {
        let leader = steps.iter().position(|s| s.id == *b);
        let me = steps.iter().position(|s| s.id == step.id);
        if !matches!((leader, me), (Some(l), Some(m)) if l < m) {
            return Err(format!(
                "beside '{b}', which is no earlier step of this profile"
            ));
        }
        if step.confirm.is_some()
            || step.downtime.is_some()
            || step.finally
            || step.kind() == StepKind::Preflight
            || step.kind() == StepKind::Dns
        {
            return Err("a step that runs 'beside' another cannot ask for confirmation, mark the downtime, be 'finally', or be preflight or dns".into());
        }
    }
    for r in &step.resets {
        if !steps.iter().any(|s| s.id == *r) {
            return Err(format!("resets '{r}', which is no step of this profile"));
        }
    }
    Ok(())
}
