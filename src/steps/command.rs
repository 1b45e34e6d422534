//! A `command` step: the profile's argv lists, run in order on the step's host(s).

use super::{Done, StepResult, run_as, run_checked};
use crate::engine::events::Stream;
use crate::engine::{RunCtx, StepIo};
use crate::plan::Plan;
use crate::plan::profile::{CommandSpec, HostSel, StepSpec};
use crate::plan::template::{TemplateError, Vars};
use crate::remote::{RemoteCommand, Role};

fn roles(step: &StepSpec) -> Vec<Role> {
    match step.host {
        Some(HostSel::Source) => vec![Role::Source],
        Some(HostSel::Target) => vec![Role::Target],
        Some(HostSel::Both) | None => vec![Role::Source, Role::Target],
    }
}

fn build(step: &StepSpec, c: &CommandSpec, vars: &Vars) -> Result<RemoteCommand, TemplateError> {
    let mut cmd = RemoteCommand::new(run_as(step, vars)?, vars.render_argv(c.argv())?);
    cmd.cwd = step.cwd.as_ref().map(|d| vars.render(d)).transpose()?;
    cmd.env = step
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), vars.render(v)?)))
        .collect::<Result<_, TemplateError>>()?;
    cmd.umask = step.umask.clone();
    Ok(cmd)
}

pub async fn run(step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    ctx.connect().await?;
    let hosts = ctx.connected()?;
    for role in roles(step) {
        let host = hosts.get(role);
        for c in &step.commands {
            if let Some(w) = c.when()
                && !ctx.vars.condition(w)?
            {
                io.output(
                    Stream::Stdout,
                    format!(
                        "{}: not running '{}' (only if {w})",
                        host.name(),
                        c.argv().join(" ")
                    ),
                );
                continue;
            }
            let cmd = build(step, c, &ctx.vars)?;
            io.output(
                Stream::Stdout,
                format!("{}$ {}", host.name(), cmd.display()),
            );
            run_checked(host, &cmd, io).await?;
        }
    }
    Ok(Done::Completed)
}

pub fn describe(step: &StepSpec, plan: &Plan, vars: &Vars, user: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for role in roles(step) {
        let host = match role {
            Role::Source => &plan.source,
            Role::Target => &plan.target,
        };
        for c in &step.commands {
            let mut cmd = RemoteCommand::new(
                crate::remote::RunAs::Login,
                vars.render_argv_lenient(c.argv()),
            );
            cmd.cwd = step.cwd.as_ref().map(|d| vars.render_lenient(d));
            cmd.env = step
                .env
                .iter()
                .map(|(k, v)| (k.clone(), vars.render_lenient(v)))
                .collect();
            cmd.umask = step.umask.clone();
            let cond = c
                .when()
                .map(|w| format!("   (only if {w})"))
                .unwrap_or_default();
            lines.push(format!("{host} as {user}: {}{cond}", cmd.display()));
        }
    }
    lines
}
