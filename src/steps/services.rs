//! A `services` step: stop, start, go live, disable or mask the app's
//! services on a host, through whatever runs them there (systemd units, or a
//! compose stack's services, never removed). A rollback runs the action's
//! reverse: a stop is undone by a start, going live by stopping again.

use super::{Done, StepResult, run_checked};
use crate::events::Stream;
use crate::plan::Plan;
use crate::profile::template::{TemplateError, Vars};
use crate::profile::{HostSel, ServicesBody, StepSpec, Which};
use crate::remote::{RemoteCommand, Role};
use crate::runtime::Runtime;
use crate::runtime::services::Manager;
use crate::steps::ctx::{RunCtx, StepIo};

pub(crate) fn roles_of(host: HostSel) -> Vec<Role> {
    match host {
        HostSel::Source => vec![Role::Source],
        HostSel::Target => vec![Role::Target],
        HostSel::Both => vec![Role::Source, Role::Target],
    }
}

/// The profile's setting that names a systemd install's services of a kind.
fn setting(which: Which) -> &'static str {
    match which {
        Which::App => "{services}",
        Which::Web => "{web_services}",
        Which::Worker => "{worker_services}",
        Which::Redis => "{redis_service}",
    }
}

/// A compose stack's services of a kind, by role.
fn compose_roles(which: Which) -> &'static [&'static str] {
    match which {
        Which::App => &["web", "worker", "streaming"],
        Which::Web => &["web"],
        Which::Worker => &["worker"],
        Which::Redis => &["redis"],
    }
}

/// The services a step acts on at a host: the profile's unit names, or the
/// stack's services for the roles.
fn names(
    which: Which,
    rt: &Runtime,
    render: impl Fn(&[String]) -> Result<Vec<String>, TemplateError>,
) -> Result<Vec<String>, TemplateError> {
    match rt.services {
        Manager::Systemd => render(&[setting(which).to_string()]),
        Manager::Compose(..) => Ok(compose_roles(which)
            .iter()
            .filter_map(|r| rt.roles.get(*r).cloned())
            .collect()),
    }
}

pub(crate) fn commands(
    body: &ServicesBody,
    rt: &Runtime,
    vars: &Vars,
    reverse: bool,
) -> Result<Vec<RemoteCommand>, TemplateError> {
    let names = names(body.which, rt, |a| vars.render_argv(a))?;
    Ok(if reverse {
        rt.services.reverse(body.action, &names)
    } else {
        rt.services.act(body.action, &names)
    })
}

fn planned(
    body: &ServicesBody,
    plan: &Plan,
    vars: &Vars,
    role: Role,
    reverse: bool,
) -> Vec<String> {
    let rt = Runtime::planned(plan, role == Role::Source);
    let names = names(body.which, &rt, |a| Ok(vars.render_argv_lenient(a))).unwrap_or_default();
    let cmds = if reverse {
        rt.services.reverse(body.action, &names)
    } else {
        rt.services.act(body.action, &names)
    };
    cmds.iter().map(RemoteCommand::display).collect()
}

fn host_of(plan: &Plan, role: Role) -> &str {
    match role {
        Role::Source => &plan.source,
        Role::Target => &plan.target,
    }
}

pub async fn run(body: &ServicesBody, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    ctx.connect().await?;
    let hosts = ctx.connected()?;
    for role in roles_of(body.host) {
        let host = hosts.get(role);
        let cmds = commands(body, &ctx.runtime(role), &ctx.vars, false)?;
        if cmds.is_empty() {
            io.output(
                Stream::Stdout,
                format!("{}: no services to act on", host.name()),
            );
        }
        for cmd in cmds {
            io.output(
                Stream::Stdout,
                format!("{}$ {}", host.name(), cmd.display()),
            );
            run_checked(host, &cmd, io).await?;
        }
    }
    Ok(Done::Completed)
}

pub(crate) fn describe(body: &ServicesBody, plan: &Plan, vars: &Vars, user: &str) -> Vec<String> {
    roles_of(body.host)
        .into_iter()
        .flat_map(|role| {
            planned(body, plan, vars, role, false)
                .into_iter()
                .map(move |cmd| format!("{} as {user}: {cmd}", host_of(plan, role)))
        })
        .collect()
}

/// What a rollback runs for the step, as its checklist lists it.
pub(crate) fn describe_undo(
    step: &StepSpec,
    body: &ServicesBody,
    plan: &Plan,
    vars: &Vars,
) -> Vec<String> {
    if !body.undo {
        return Vec::new();
    }
    let user = step
        .user
        .as_ref()
        .map_or_else(|| "login user".into(), |u| vars.render_lenient(u));
    roles_of(body.host)
        .into_iter()
        .flat_map(|role| {
            planned(body, plan, vars, role, true)
                .into_iter()
                .map(|cmd| {
                    format!(
                        "{} as {user}: {cmd}   (undoes '{}')",
                        host_of(plan, role),
                        step.id
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs the reverse of the step's action on its hosts; keeps going past
/// failures and returns what failed.
pub(crate) async fn undo(
    step: &StepSpec,
    body: &ServicesBody,
    ctx: &RunCtx,
    io: &StepIo,
) -> Vec<String> {
    if !body.undo {
        return Vec::new();
    }
    let Ok(hosts) = ctx.connected() else {
        return vec!["not connected to the hosts: nothing could be undone".into()];
    };
    let mut problems = Vec::new();
    for role in roles_of(body.host) {
        let host = hosts.get(role);
        let cmds = match commands(body, &ctx.runtime(role), &ctx.vars, true) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("undoing '{}': {e}", step.id));
                continue;
            }
        };
        super::run_undo(host, &cmds, &step.id, io, &mut problems).await;
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::profile::StepBody;
    use std::path::Path;

    fn plan(source: &str, target: &str) -> Plan {
        let text = format!(
            "profile = \"mastodon\"\n[source]\nssh = \"old\"\n{source}[target]\nssh = \"new\"\n{target}[app]\ndomain = \"m.example\"\n"
        );
        let config = Config::parse(Path::new("/m.toml"), &text).expect("valid config");
        Plan::build(&config).expect("plan")
    }

    fn step<'a>(plan: &'a Plan, id: &str) -> (&'a StepSpec, &'a ServicesBody) {
        let step = plan
            .all_steps
            .iter()
            .find(|s| s.id == id)
            .expect("the profile has the step");
        let StepBody::Services(body) = &step.body else {
            panic!("'{id}' is a services step");
        };
        (step, body)
    }

    const COMPOSE: &str = "compose = \"/srv/mastodon\"\n";

    #[test]
    fn a_systemd_host_gets_the_units_of_its_profile() {
        let p = plan("", "");
        let (s, b) = step(&p, "stop-source");
        assert_eq!(
            describe(b, &p, &p.vars, "root"),
            ["old as root: systemctl stop mastodon-web mastodon-sidekiq mastodon-streaming"]
        );
        assert_eq!(
            describe_undo(s, b, &p, &p.vars),
            [
                "old as root: systemctl start mastodon-web mastodon-sidekiq mastodon-streaming   (undoes 'stop-source')"
            ]
        );
        let (s, b) = step(&p, "start-target");
        assert_eq!(
            describe_undo(s, b, &p, &p.vars),
            [
                "new as root: systemctl disable --now mastodon-web mastodon-sidekiq mastodon-streaming   (undoes 'start-target')"
            ]
        );
        let (_, b) = step(&p, "quarantine");
        assert_eq!(
            describe(b, &p, &p.vars, "root"),
            ["new as root: systemctl mask mastodon-sidekiq"]
        );
    }

    #[test]
    fn a_compose_stack_is_stopped_so_that_it_stays_stopped_and_never_removed() {
        let p = plan(COMPOSE, COMPOSE);
        let (s, b) = step(&p, "stop-source");
        let base = "docker compose --project-directory /srv/mastodon -p mastodon";
        assert_eq!(
            describe(b, &p, &p.vars, "root"),
            [
                "old as root: docker update --restart=no $(docker ps -aq --filter label=com.docker.compose.project=mastodon)".to_string(),
                format!("old as root: {base} stop web sidekiq streaming"),
            ]
        );
        // The restart policies preflight found are put back; the plan does
        // not know them yet.
        assert_eq!(
            describe_undo(s, b, &p, &p.vars),
            [format!(
                "old as root: {base} start web sidekiq streaming   (undoes 'stop-source')"
            )]
        );
        let (_, b) = step(&p, "start-target");
        assert_eq!(
            describe(b, &p, &p.vars, "root"),
            [format!("new as root: {base} up -d web sidekiq streaming")]
        );
        let (_, b) = step(&p, "quarantine");
        assert_eq!(
            describe(b, &p, &p.vars, "root"),
            [
                "new as root: docker update --restart=no $(docker ps -aq --filter label=com.docker.compose.project=mastodon --filter label=com.docker.compose.service=sidekiq)".to_string(),
                format!("new as root: {base} stop sidekiq"),
            ]
        );
        for line in p.all_steps.iter().flat_map(|s| match &s.body {
            StepBody::Services(b) => [
                describe(b, &p, &p.vars, "root"),
                describe_undo(s, b, &p, &p.vars),
            ]
            .concat(),
            _ => Vec::new(),
        }) {
            for never in [" rm ", " down", "volume", "prune", " kill"] {
                assert!(!line.contains(never), "never{never}: {line}");
            }
        }
    }

    #[test]
    fn a_rollback_puts_back_each_services_restart_policy() {
        let p = plan(COMPOSE, "");
        let (_, b) = step(&p, "stop-source");
        let project = crate::runtime::planned_project(&p, true).expect("compose");
        let restart = [
            ("db", "always"),
            ("web", "always"),
            ("sidekiq", "unless-stopped"),
            ("x", "no"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .into();
        let rt = Runtime::compose(&project, &p.service_roles(true), &restart);
        let shown: Vec<String> = commands(b, &rt, &p.vars, true)
            .expect("commands")
            .iter()
            .map(RemoteCommand::display)
            .collect();
        let filter = "docker ps -aq --filter label=com.docker.compose.project=mastodon --filter label=com.docker.compose.service";
        assert_eq!(
            shown,
            [
                format!("docker update --restart=always $({filter}=db) $({filter}=web)"),
                format!("docker update --restart=unless-stopped $({filter}=sidekiq)"),
                "docker compose --project-directory /srv/mastodon -p mastodon start web sidekiq streaming".into(),
            ]
        );
    }

    #[test]
    fn a_target_stack_keeps_the_sources_project_name() {
        let p = plan(COMPOSE, "compose = \"/home/m/live\"\n");
        let project = crate::runtime::planned_project(&p, false).expect("compose");
        assert_eq!(
            (project.dir.as_str(), project.name.as_str()),
            ("/home/m/live", "mastodon")
        );
        let p = plan("", "compose = \"/home/m/live\"\n");
        let project = crate::runtime::planned_project(&p, false).expect("compose");
        assert_eq!(project.name, "live");
    }
}
