//! Step kinds. `command` steps are pure profile data; the kinds here that need
//! logic (preflight, transfer, rsync, verify, redis, health, dns) are Rust.

pub mod command;
pub mod ctx;
pub mod db_move;
pub mod describe;
pub mod dns;
pub mod facts;
pub mod forecast;
pub mod health;
pub mod lock;
pub mod media;
pub mod misskey;
pub mod preflight;
pub mod redis;
pub mod services;
pub mod stack;
pub mod transfer;
pub mod verify;

use crate::events::StepOutcome;
use crate::profile::template::{TemplateError, Vars};
use crate::profile::{StepBody, StepSpec};
use crate::remote::{Finished, RemoteCommand, RemoteError, RunAs, Shell};
use crate::runtime::ToolError;
use crate::runtime::database::PsqlError;
use crate::steps::ctx::{RunCtx, StepIo};

/// Why a step failed, with what a person needs to act on it.
#[derive(Debug, Clone, Default)]
pub struct StepFailure {
    pub message: String,
    pub host: Option<String>,
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    pub first_error: Option<String>,
    pub stderr_tail: Vec<String>,
}

impl StepFailure {
    pub fn new(message: impl Into<String>) -> Self {
        StepFailure {
            message: message.into(),
            ..Default::default()
        }
    }

    pub fn on<S: Shell>(host: &S, message: impl Into<String>) -> Self {
        StepFailure {
            message: message.into(),
            host: Some(host.name().to_string()),
            ..Default::default()
        }
    }

    pub(crate) fn from_finished<S: Shell>(host: &S, cmd: &RemoteCommand, f: &Finished) -> Self {
        let how = f.exit_code.map_or_else(
            || "was killed by a signal".to_string(),
            |c| format!("exited with {c}"),
        );
        let cause = f
            .first_error
            .clone()
            .or_else(|| f.stderr_tail.last().cloned())
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        StepFailure {
            message: format!("on {}: '{}' {how}{cause}", host.name(), cmd.display()),
            host: Some(host.name().to_string()),
            command: Some(cmd.display()),
            exit_code: f.exit_code,
            first_error: f.first_error.clone(),
            stderr_tail: f.stderr_tail.clone(),
        }
    }
}

impl From<RemoteError> for StepFailure {
    fn from(e: RemoteError) -> Self {
        let host = match &e {
            RemoteError::HostKeyUnknown { dest, .. }
            | RemoteError::HostKeyChanged { dest, .. }
            | RemoteError::Connect { dest, .. } => Some(dest.clone()),
            RemoteError::Spawn { host, .. }
            | RemoteError::Disconnected { host, .. }
            | RemoteError::Forward { host, .. } => Some(host.clone()),
        };
        let command = match &e {
            RemoteError::Spawn { command, .. } | RemoteError::Disconnected { command, .. } => {
                Some(command.clone())
            }
            _ => None,
        };
        StepFailure {
            message: e.to_string(),
            host,
            command,
            ..Default::default()
        }
    }
}

impl From<ToolError> for StepFailure {
    fn from(e: ToolError) -> Self {
        match e {
            ToolError::Remote(r) => r.into(),
            ToolError::Failed {
                ref host,
                ref command,
                ..
            } => StepFailure {
                host: Some(host.clone()),
                command: Some(command.clone()),
                message: e.to_string(),
                ..Default::default()
            },
        }
    }
}

impl From<PsqlError> for StepFailure {
    fn from(e: PsqlError) -> Self {
        match e {
            PsqlError::Remote(r) => r.into(),
            PsqlError::Tool(t) => t.into(),
            PsqlError::Failed { ref host, .. } => StepFailure {
                host: Some(host.clone()),
                message: e.to_string(),
                ..Default::default()
            },
        }
    }
}

impl From<TemplateError> for StepFailure {
    fn from(e: TemplateError) -> Self {
        StepFailure::new(format!("the profile's step cannot be filled in: {e}"))
    }
}

impl From<StepFailure> for StepOutcome {
    fn from(f: StepFailure) -> Self {
        StepOutcome::Failed {
            message: f.message,
            host: f.host,
            command: f.command,
            exit_code: f.exit_code,
            first_error: f.first_error,
            stderr_tail: f.stderr_tail,
        }
    }
}

pub enum Done {
    Completed,
    Skipped(String),
}

pub type StepResult = Result<Done, StepFailure>;

pub(crate) async fn execute(step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepOutcome {
    let result = match &step.body {
        StepBody::Command(c) => command::run(step, c, ctx, io).await,
        StepBody::Preflight(p) => preflight::run(p, ctx, io).await,
        StepBody::Transfer(t) => transfer::run(step, t, ctx, io).await,
        StepBody::Rsync(r) => media::run(step, r, ctx, io).await,
        StepBody::Verify => verify::run(step, ctx, io).await,
        StepBody::Redis(r) => redis::run(r, ctx, io).await,
        StepBody::Health(h) => health::run(step, h, ctx, io).await,
        StepBody::Dns => dns::run(step, ctx, io).await,
        StepBody::Services(s) => services::run(s, ctx, io).await,
        StepBody::Stack => stack::run(ctx, io).await,
    };
    match result {
        Ok(Done::Completed) => StepOutcome::Succeeded,
        Ok(Done::Skipped(reason)) => StepOutcome::Skipped { reason },
        Err(f) => f.into(),
    }
}

/// What a rollback runs for `step`, as its checklist lists it.
pub(crate) fn describe_undo(step: &StepSpec, plan: &crate::plan::Plan, vars: &Vars) -> Vec<String> {
    match &step.body {
        StepBody::Services(s) => services::describe_undo(step, s, plan, vars),
        StepBody::Redis(r) => redis::describe_undo(&step.id, r, plan, vars),
        _ => command::describe_undo(step, plan, vars),
    }
}

/// Undoes `step` in a rollback; returns what failed.
pub(crate) async fn undo(step: &StepSpec, ctx: &RunCtx, io: &StepIo) -> Vec<String> {
    match &step.body {
        StepBody::Services(s) => services::undo(step, s, ctx, io).await,
        StepBody::Redis(r) => redis::undo(&step.id, r, ctx, io).await,
        _ => command::undo(step, ctx, io).await,
    }
}

/// Runs a rollback's commands for step `id` on a host, past failures (each
/// brings back a part of the old host); what failed goes into `problems`.
pub(crate) async fn run_undo(
    host: &crate::remote::Host,
    cmds: &[RemoteCommand],
    id: &str,
    io: &StepIo,
    problems: &mut Vec<String>,
) {
    for cmd in cmds {
        io.output(
            crate::events::Stream::Stdout,
            format!("{}$ {}   (undoes '{id}')", host.name(), cmd.display()),
        );
        if let Err(f) = run_checked(host, cmd, io).await {
            problems.push(f.message);
        }
    }
}

/// Runs a command and turns a non-zero exit into a failure naming host and command.
pub(crate) async fn run_checked<S: Shell>(
    host: &S,
    cmd: &RemoteCommand,
    io: &StepIo,
) -> Result<Finished, StepFailure> {
    let f = host.run(cmd, &mut io.sink()).await?;
    if f.success() {
        Ok(f)
    } else {
        Err(StepFailure::from_finished(host, cmd, &f))
    }
}

/// Like `run_checked`, but the output is for parsing only and never shown.
pub(crate) async fn run_quiet_checked<S: Shell>(
    host: &S,
    cmd: &RemoteCommand,
) -> Result<Finished, StepFailure> {
    let f = host.run_quiet(cmd).await?;
    if f.success() {
        Ok(f)
    } else {
        Err(StepFailure::from_finished(host, cmd, &f))
    }
}

pub fn run_as(step: &StepSpec, vars: &Vars) -> Result<RunAs, TemplateError> {
    Ok(match &step.user {
        Some(u) => RunAs::from_profile(&vars.render(u)?),
        None => RunAs::Login,
    })
}

/// Free bytes and mount point of the filesystem holding `path` (or its nearest existing parent).
pub(crate) async fn free_space<S: Shell>(
    h: &S,
    run_as: RunAs,
    path: &str,
) -> Result<Option<(u64, String)>, StepFailure> {
    let out = h
        .run_quiet(&RemoteCommand::script(
            run_as,
            "d=$1; while [ ! -e \"$d\" ]; do d=$(dirname -- \"$d\"); done; df -B1 --output=avail,target -- \"$d\" | tail -n 1",
            &[path],
        ))
        .await?;
    let line = out.stdout.trim();
    let mut parts = line.splitn(2, char::is_whitespace);
    let avail = parts.next().and_then(|a| a.parse::<u64>().ok());
    let target = parts.next().map(|t| t.trim().to_string());
    match avail.zip(target) {
        Some(found) => Ok(Some(found)),
        // A check that cannot read the number must not pass silently.
        None => Err(StepFailure::on(
            h,
            format!(
                "on {}: cannot read the free space for '{path}' from df: '{}' {}",
                h.name(),
                line.escape_debug(),
                out.stderr_tail.join(" ")
            ),
        )),
    }
}
