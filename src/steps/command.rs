//! A `command` step: the profile's argv lists, run in order on the step's host(s).

use super::transfer::End;
use super::{Done, StepResult, run_as, run_checked};
use crate::events::Stream;
use crate::plan::Plan;
use crate::profile::template::{TemplateError, Vars};
use crate::profile::{CommandBody, CommandSpec, HostSel, PipeInput, StepSpec};
use crate::remote::{Redirect, RemoteCommand, Role, RunAs};
use crate::runtime::{Place, Runtime};
use crate::steps::ctx::{RunCtx, StepIo};

fn roles_of(host: HostSel) -> Vec<Role> {
    match host {
        HostSel::Source => vec![Role::Source],
        HostSel::Target => vec![Role::Target],
        HostSel::Both => vec![Role::Source, Role::Target],
    }
}

/// A profile command as it runs on a host: as the step's user there, or, when
/// it names a role and the host runs a compose stack, in that service's
/// container (without the step's directory, which is the host's).
fn build(
    step: &StepSpec,
    body: &CommandBody,
    spec: Option<&CommandSpec>,
    argv: Vec<String>,
    (vars, rt): (&Vars, &Runtime),
) -> Result<RemoteCommand, TemplateError> {
    let who = run_as(step, vars)?;
    assemble(body, spec, argv, rt, who, |t| vars.render(t))
}

/// The command a profile entry makes at its place, its strings rendered by
/// `render` (strictly for a run, leniently for a plan).
fn assemble(
    body: &CommandBody,
    spec: Option<&CommandSpec>,
    argv: Vec<String>,
    rt: &Runtime,
    who: RunAs,
    render: impl Fn(&str) -> Result<String, TemplateError>,
) -> Result<RemoteCommand, TemplateError> {
    let place = match spec.and_then(CommandSpec::at) {
        Some(role) => rt.place_for(role, who),
        None => Place::Host(who),
    };
    let mut cmd = place.command(argv);
    if matches!(place, Place::Host(_)) {
        cmd.cwd = body.cwd.as_deref().map(&render).transpose()?;
    }
    match spec.map(CommandSpec::files) {
        Some((Some(f), _)) => cmd.redirect = Some(Redirect::In(render(f)?)),
        Some((_, Some(f))) => cmd.redirect = Some(Redirect::Out(render(f)?)),
        _ => {}
    }
    cmd.env = body
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), render(v)?)))
        .collect::<Result<_, TemplateError>>()?;
    cmd.umask = body.umask.clone();
    Ok(cmd)
}

fn build_input(
    input: &PipeInput,
    vars: &Vars,
    rt: &Runtime,
) -> Result<RemoteCommand, TemplateError> {
    let run_as = input
        .user
        .as_ref()
        .map(|u| vars.render(u))
        .transpose()?
        .map_or(RunAs::Login, |u| RunAs::from_profile(&u));
    let argv = vars.render_argv(&input.argv)?;
    let mut cmd = match &input.at {
        Some(role) => rt.place_for(role, run_as).command(argv),
        None => RemoteCommand::new(run_as, argv),
    };
    cmd.env = input
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), vars.render(v)?)))
        .collect::<Result<_, TemplateError>>()?;
    Ok(cmd)
}

fn other(role: Role) -> Role {
    match role {
        Role::Source => Role::Target,
        Role::Target => Role::Source,
    }
}

pub async fn run(step: &StepSpec, body: &CommandBody, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    ctx.connect().await?;
    let hosts = ctx.connected()?;
    for role in roles_of(body.host) {
        let host = hosts.get(role);
        let rt = ctx.runtime(role);
        for c in &body.commands {
            let conds = c.conditions();
            if !ctx.vars.all_hold(&conds)? {
                io.output(
                    Stream::Stdout,
                    format!(
                        "{}: not running '{}' (only if {})",
                        host.name(),
                        c.argv().join(" "),
                        conds.join(" and ")
                    ),
                );
                continue;
            }
            if let Some(name) = c.each() {
                let all = ctx.vars.commands(name)?;
                if all.is_empty() {
                    io.output(
                        Stream::Stdout,
                        format!("{}: no commands in '{name}'", host.name()),
                    );
                }
                for argv in all {
                    let cmd = build(step, body, None, argv, (&ctx.vars, &rt))?;
                    io.output(
                        Stream::Stdout,
                        format!("{}$ {}", host.name(), cmd.display()),
                    );
                    run_checked(host, &cmd, io).await?;
                }
                continue;
            }
            let cmd = build(
                step,
                body,
                Some(c),
                ctx.vars.render_argv(c.argv())?,
                (&ctx.vars, &rt),
            )?;
            let Some(input) = c.input() else {
                io.output(
                    Stream::Stdout,
                    format!("{}$ {}", host.name(), cmd.display()),
                );
                run_checked(host, &cmd, io).await?;
                continue;
            };
            let feeder = hosts.get(other(role));
            let feed = build_input(input, &ctx.vars, &ctx.runtime(other(role)))?;
            io.output(
                Stream::Stdout,
                format!(
                    "{}$ {} | {}$ {}",
                    feeder.name(),
                    feed.display(),
                    host.name(),
                    cmd.display()
                ),
            );
            let relayed =
                super::transfer::relay(feeder, &feed, host, &cmd, Some(io), None, false).await?;
            if !relayed.ok() {
                return Err(relayed.failure(
                    End {
                        host: feeder,
                        cmd: &feed,
                        doing: &format!("'{}'", feed.display()),
                    },
                    End {
                        host,
                        cmd: &cmd,
                        doing: &format!("'{}'", cmd.display()),
                    },
                    None,
                ));
            }
            io.output(
                Stream::Stdout,
                format!(
                    "{} streamed from {} to {} through this machine",
                    crate::units::human_bytes(relayed.moved),
                    feeder.name(),
                    host.name()
                ),
            );
        }
    }
    Ok(Done::Completed)
}

pub(crate) fn describe(step: &CommandBody, plan: &Plan, vars: &Vars, user: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for role in roles_of(step.host) {
        let host = match role {
            Role::Source => &plan.source,
            Role::Target => &plan.target,
        };
        let rt = Runtime::planned(plan, role == Role::Source);
        let argvs = step.commands.iter().flat_map(|c| {
            let each = c.each().and_then(|n| vars.commands_lenient(n));
            match each {
                Some(all) => all.into_iter().map(|a| (c, None, a)).collect(),
                None => vec![(c, Some(c), vars.render_argv_lenient(c.argv()))],
            }
        });
        for (c, spec, argv) in argvs {
            let Ok(cmd) = assemble(step, spec, argv, &rt, RunAs::Login, |t| {
                Ok(vars.render_lenient(t))
            }) else {
                continue;
            };
            let conds = c.conditions();
            let cond = if conds.is_empty() {
                String::new()
            } else {
                format!("   (only if {})", conds.join(" and "))
            };
            let feed = c.input().map(|i| {
                let from = match role {
                    Role::Source => &plan.target,
                    Role::Target => &plan.source,
                };
                let as_user = i
                    .user
                    .as_deref()
                    .map_or_else(|| "login user".into(), |u| vars.render_lenient(u));
                let argv = vars.render_argv_lenient(&i.argv);
                let other = Runtime::planned(plan, role != Role::Source);
                let feed = match &i.at {
                    Some(r) => other.place_for(r, RunAs::Login).command(argv),
                    None => RemoteCommand::new(RunAs::Login, argv),
                };
                format!("{from} as {as_user}: {} | ", feed.display())
            });
            lines.push(format!(
                "{}{host} as {user}: {}{cond}",
                feed.unwrap_or_default(),
                cmd.display()
            ));
        }
    }
    lines
}

/// The undo commands of a step, as the rollback step lists them.
pub(crate) fn describe_undo(step: &StepSpec, plan: &Plan, vars: &Vars) -> Vec<String> {
    let Some(undo) = &step.undo else {
        return Vec::new();
    };
    let user = undo
        .user
        .as_deref()
        .map_or_else(|| "login user".into(), |u| vars.render_lenient(u));
    let mut lines = Vec::new();
    for role in roles_of(undo.host) {
        let host = match role {
            Role::Source => &plan.source,
            Role::Target => &plan.target,
        };
        for c in &undo.commands {
            let cmd = RemoteCommand::new(
                crate::remote::RunAs::Login,
                vars.render_argv_lenient(c.argv()),
            );
            lines.push(format!(
                "{host} as {user}: {}   (undoes '{}')",
                cmd.display(),
                step.id
            ));
        }
    }
    lines
}

/// Runs a step's undo commands; keeps going past failures, since each one
/// brings back a part of the old host, and returns what failed.
pub(crate) async fn undo(step: &StepSpec, ctx: &RunCtx, io: &StepIo) -> Vec<String> {
    let Some(undo) = &step.undo else {
        return Vec::new();
    };
    let Ok(hosts) = ctx.connected() else {
        return vec!["not connected to the hosts: nothing could be undone".into()];
    };
    let mut problems = Vec::new();
    let run_as = match undo.user.as_ref().map(|u| ctx.vars.render(u)).transpose() {
        Ok(u) => u.map_or(crate::remote::RunAs::Login, |u| {
            crate::remote::RunAs::from_profile(&u)
        }),
        Err(e) => return vec![e.to_string()],
    };
    for role in roles_of(undo.host) {
        let host = hosts.get(role);
        for c in &undo.commands {
            let argv = match ctx.vars.render_argv(c.argv()) {
                Ok(a) => a,
                Err(e) => {
                    problems.push(format!("undoing '{}': {e}", step.id));
                    continue;
                }
            };
            let cmd = RemoteCommand::new(run_as.clone(), argv);
            super::run_undo(host, &[cmd], &step.id, io, &mut problems).await;
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, StepBody};
    use crate::runtime::compose::{Cli, Project};

    const PROFILE: &str = r#"name = "t"
[defaults]
user = "mastodon"
dir = "/home/mastodon/live"
database = "db1"
db_user = "mastodon"
[[phases]]
id = "p"
title = "P"
[[steps]]
id = "dump"
phase = "p"
title = "Dump"
host = "source"
user = "{user}"
cwd = "{dir}"
umask = "077"
commands = [
  { argv = ["pg_dump", "-Fc", "-U", "{db_user}", "{database}"], at = "database", stdout = "/w/{database}.dump" },
]
"#;

    fn dump() -> (StepSpec, CommandBody, CommandSpec) {
        let p = Profile::parse("t.toml", PROFILE).expect("valid");
        let step = p.steps[0].clone();
        let StepBody::Command(body) = step.body.clone() else {
            panic!("a command step");
        };
        let c = body.commands[0].clone();
        (step, body, c)
    }

    fn vars() -> Vars {
        let mut v = Vars::new();
        for (k, val) in [
            ("user", "mastodon"),
            ("dir", "/home/mastodon/live"),
            ("database", "db1"),
            ("db_user", "mastodon"),
        ] {
            v.set(k, val);
        }
        v
    }

    #[test]
    fn a_command_at_a_role_runs_in_its_service_on_a_compose_host_only() {
        let (step, body, c) = dump();
        let v = vars();
        let argv = v.render_argv(c.argv()).expect("renders");
        let systemd = Runtime::systemd("postgres", "mastodon");
        let on_host = build(&step, &body, Some(&c), argv.clone(), (&v, &systemd)).expect("builds");
        assert_eq!(
            on_host.display(),
            "cd /home/mastodon/live && umask 077 && pg_dump -Fc -U mastodon db1 > /w/db1.dump"
        );
        assert_eq!(on_host.run_as, RunAs::User("mastodon".into()));
        let project = Project {
            cli: Cli::V1,
            dir: "/srv/m".into(),
            files: vec![],
            name: "m".into(),
        };
        let roles = [("database".to_string(), "postgres-db".to_string())].into();
        let stack = Runtime::compose(&project, &roles, &std::collections::BTreeMap::new());
        let inside = build(&step, &body, Some(&c), argv, (&v, &stack)).expect("builds");
        assert_eq!(
            inside.run_as,
            RunAs::Root,
            "the compose client runs as root"
        );
        assert_eq!(
            inside.display(),
            "docker-compose --project-directory /srv/m -p m exec -T -u postgres postgres-db sh -c 'umask \"$0\" && exec \"$@\"' 077 pg_dump -Fc -U mastodon db1 > /w/db1.dump"
        );
    }

    #[test]
    fn a_role_that_is_not_one_is_refused_with_the_roles() {
        let bad = PROFILE.replace("at = \"database\"", "at = \"postgres\"");
        let e = Profile::parse("t.toml", &bad)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("at 'postgres' is not a role a service can play; roles: database, redis, web, worker, streaming"), "{e}");
        let both = PROFILE.replace("stdout = ", "stdin = \"/x\", stdout = ");
        let e = Profile::parse("t.toml", &both)
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("'stdin' or 'stdout' from a file, not both"),
            "{e}"
        );
    }
}
