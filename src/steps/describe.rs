//! What each step will do, as people read it: the checklist the plan
//! command prints, the wizard shows and the journal keeps (`StepInfo`).

use super::{command, dns, health, media, redis, services, stack, transfer};
use crate::config::Install;
use crate::plan::{Plan, ROLLBACK, StepInfo};
use crate::profile::template::Vars;
use crate::profile::{HostSel, PreflightBody, StepBody, StepKind, StepSpec};

pub(crate) fn hosts_of(step: &StepSpec, plan: &Plan) -> Vec<String> {
    match &step.body {
        StepBody::Command(c) => plan.host_names(Some(c.host)),
        StepBody::Services(s) => plan.host_names(Some(s.host)),
        StepBody::Stack => plan.host_names(Some(HostSel::Target)),
        StepBody::Health(h) if h.pinned => Vec::new(),
        StepBody::Health(_) => plan.host_names(Some(HostSel::Target)),
        StepBody::Dns => Vec::new(),
        _ => plan.host_names(Some(HostSel::Both)),
    }
}

/// What the step will do, as lines a person can read and check; with facts
/// not yet known shown as `{name}`.
pub(crate) fn describe(step: &StepSpec, plan: &Plan, vars: &Vars) -> Vec<String> {
    let user = step
        .user
        .as_ref()
        .map_or_else(|| "login user".into(), |u| vars.render_lenient(u));
    match &step.body {
        StepBody::Command(c) => command::describe(c, plan, vars, &user),
        StepBody::Preflight(p) => describe_preflight(p, plan, vars),
        StepBody::Transfer(t) => transfer::describe(t, plan, vars, &user),
        StepBody::Rsync(r) => media::describe(r, plan, vars, &user),
        StepBody::Verify => vec![format!(
            "on {} and {}: exact row count of every table in every schema, sequence values, and ownership of every object by {}",
            plan.source,
            plan.target,
            vars.render_lenient("{db_user}")
        )],
        StepBody::Redis(r) => redis::describe(r, plan, vars),
        StepBody::Health(h) => health::describe(step, h, plan, vars),
        StepBody::Dns => dns::describe(plan),
        StepBody::Services(s) => services::describe(s, plan, vars, &user),
        StepBody::Stack => stack::describe(plan),
    }
}

fn describe_preflight(step: &PreflightBody, plan: &Plan, vars: &Vars) -> Vec<String> {
    let mut lines = vec![format!(
        "on {} and {}: ssh, tools, PostgreSQL versions, disk space, target database and role, app directory, {} and app versions, {}{}",
        plan.source,
        plan.target,
        step.env_file
            .as_deref()
            .map_or_else(|| "config".into(), |f| vars.render_lenient(f)),
        match (plan.install(true), plan.install(false)) {
            (Install::Systemd, Install::Systemd) => "systemd units",
            (Install::Compose(_), Install::Compose(_)) => {
                "the compose stacks (services, storage, restart policies, images)"
            }
            _ => "systemd units and the compose stack",
        },
        if plan.kinds.contains(&StepKind::Redis) {
            ", Redis"
        } else {
            ""
        }
    )];
    if let Some(f) = &step.misskey_config {
        lines.push(format!(
            "on {}: reads {} for the url, database and role (unless the config names them), Redis, port, id method and search",
            plan.source,
            vars.render_lenient(f)
        ));
    }
    let files = vars.render_argv_lenient(&step.files);
    if !files.is_empty() {
        lines.push(format!(
            "on {}: {} readable (contents never shown)",
            plan.source,
            files.join(", ")
        ));
    }
    if let Some(k) = &step.object_storage_env {
        lines.push(format!(
            "object storage when {k}=true: media steps left out"
        ));
    }
    if step.object_storage_sql.is_some() {
        lines.push(
            "object storage when the instance's settings say so: media steps left out".into(),
        );
    }
    lines
}

pub(crate) fn step_info(plan: &Plan, step: &StepSpec, vars: &Vars) -> StepInfo {
    StepInfo {
        id: step.id.clone(),
        phase: step.phase.clone(),
        phase_title: plan.phase_title(&step.phase),
        title: step.title.clone(),
        why: step.why.clone(),
        kind: step.kind(),
        hosts: hosts_of(step, plan),
        user: step.user.as_ref().map(|u| vars.render_lenient(u)),
        confirm: step.confirm.as_ref().map(|c| vars.render_lenient(c)),
        downtime: step.downtime,
        in_downtime: step.in_downtime,
        optional: step.optional,
        when: step.conditions(),
        otherwise: step.otherwise.as_ref().map(|o| vars.render_lenient(o)),
        commands: describe(step, plan, vars),
        creates_database: step.creates_database(),
    }
}

pub(crate) fn infos(plan: &Plan) -> Vec<StepInfo> {
    infos_with(plan, &plan.vars)
}

pub(crate) fn infos_with(plan: &Plan, vars: &Vars) -> Vec<StepInfo> {
    let mut infos: Vec<StepInfo> = plan
        .steps
        .iter()
        .map(|s| step_info(plan, s, vars))
        .collect();
    infos.extend(rollback_info(plan, vars));
    infos
}

/// The rollback, as a step of its own at the end: it runs only when a run
/// stops while the instance is down, and says so either way.
pub(crate) fn rollback_info(plan: &Plan, vars: &Vars) -> Option<StepInfo> {
    let commands: Vec<String> = plan
        .steps
        .iter()
        .rev()
        .filter(|s| s.has_undo())
        .flat_map(|s| super::describe_undo(s, plan, vars))
        .collect();
    if commands.is_empty() {
        return None;
    }
    Some(StepInfo {
        id: ROLLBACK.into(),
        phase: ROLLBACK.into(),
        phase_title: "Rollback".into(),
        title: format!("Bring {} back", plan.source),
        why: format!(
            "Only when a run stops after the services on {} were stopped and before {} went live: undoes, in reverse, what the steps that ran can undo, so the instance comes back.",
            plan.source, plan.target
        ),
        kind: StepKind::Command,
        hosts: plan.host_names(Some(HostSel::Both)),
        user: None,
        confirm: None,
        downtime: None,
        in_downtime: false,
        optional: false,
        when: Vec::new(),
        otherwise: None,
        commands,
        creates_database: false,
    })
}
