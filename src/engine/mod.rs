//! Runs a plan: `EngineCommand`s in, `EngineEvent`s out, nothing else. The
//! engine knows no terminal; a failed remote command becomes a step outcome.
//! Its decisions are `policy`, a state machine without I/O; this file does
//! what the policy says (runs steps, waits for commands) and reports back.

pub mod policy;

use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::journal::{Journal, Record};
use crate::plan::Plan;
use crate::profile::template::Vars;
use crate::profile::{StepKind, StepSpec};
use crate::redact::Redactor;

use crate::events::{EngineCommand, EngineEvent, RunOutcome, StepOutcome, Stream};
use crate::steps::ctx::close;
pub use crate::steps::ctx::{Hosts, RunCtx, RunOptions, StepIo};
use policy::{Effect, Input, Policy, Shape, Window};

pub struct EngineHandle {
    pub commands: UnboundedSender<EngineCommand>,
    pub records: UnboundedReceiver<Record>,
    pub task: JoinHandle<RunOutcome>,
    pub pipeline: JoinHandle<Option<String>>,
}

pub fn start(plan: Plan, opts: RunOptions, journal: Option<Journal>) -> EngineHandle {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (rec_tx, rec_rx) = mpsc::unbounded_channel();
    let redactor = Redactor::new();
    let pipeline = tokio::spawn(pipeline(ev_rx, rec_tx, journal, redactor.clone()));
    let mut vars = plan.vars.clone();
    vars.set("run_id", opts.run_id.as_str());
    let ctx = RunCtx {
        plan,
        vars,
        hosts: None,
        facts: Default::default(),
        lock: None,
        redactor,
        opts,
    };
    let task = tokio::spawn(run(ctx, cmd_rx, ev_tx));
    EngineHandle {
        commands: cmd_tx,
        records: rec_rx,
        task,
        pipeline,
    }
}

/// Coalesces output bursts, stamps, redacts, writes and fsyncs each record,
/// then hands it to the front end. Returns the first journal write error.
async fn pipeline(
    mut events: UnboundedReceiver<EngineEvent>,
    records: UnboundedSender<Record>,
    mut journal: Option<Journal>,
    redactor: Redactor,
) -> Option<String> {
    let mut journal_error = None;
    let mut pending: Option<EngineEvent> = None;
    loop {
        let next = match pending.take() {
            Some(e) => e,
            None => match events.recv().await {
                Some(e) => e,
                None => break,
            },
        };
        let mut event = next;
        // Lines already queued for the same step and stream share one record
        // (and one fsync): a noisy rsync must not turn into thousands of syncs.
        if let EngineEvent::Output {
            step,
            stream,
            lines,
        } = &mut event
        {
            while lines.len() < 500 {
                match events.try_recv() {
                    Ok(EngineEvent::Output {
                        step: s,
                        stream: st,
                        lines: more,
                    }) if s == *step && st == *stream => lines.extend(more),
                    Ok(other) => {
                        pending = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        let record = Record {
            ts: jiff::Timestamp::now(),
            event,
        };
        let (record, line) = match redactor.redact_record(&record) {
            Ok(r) => r,
            Err(e) => {
                // Never pass on what could not be redacted.
                tracing::error!("an event was withheld: {e}");
                continue;
            }
        };
        if let Some(j) = journal.as_mut()
            && let Err(e) = j.append(&line)
            && journal_error.is_none()
        {
            tracing::error!("journal write failed: {e}");
            journal_error = Some(format!("{}: {e}", j.path().display()));
        }
        let _ = records.send(record);
    }
    journal_error
}

fn emit(tx: &UnboundedSender<EngineEvent>, e: EngineEvent) {
    let _ = tx.send(e);
}

/// How long a step may run before the engine stops it. Health and DNS steps
/// use their timeout as the window they keep asking in, and end by themselves.
fn step_limit(step: &StepSpec) -> Option<Duration> {
    use crate::profile::StepKind;
    match step.kind() {
        StepKind::Health | StepKind::Dns => None,
        _ => step
            .timeout
            .as_deref()
            .and_then(crate::units::parse_duration),
    }
}

async fn sleep_or_forever(limit: Option<Duration>) {
    match limit {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// What may end a running step from outside.
enum Interruption {
    /// Abort or Rollback (true).
    Stop { rollback: bool },
    /// Skip, for a step that only waits (DNS): the operator moves on.
    MoveOn,
}

/// Resolves only when a stop (Abort or Rollback), or a Skip of a step that
/// only waits, arrives while the step runs; other commands mean nothing then.
async fn interrupted(cmds: &mut UnboundedReceiver<EngineCommand>, waits: bool) -> Interruption {
    loop {
        match cmds.recv().await {
            Some(EngineCommand::Abort) => return Interruption::Stop { rollback: false },
            Some(EngineCommand::Rollback) => return Interruption::Stop { rollback: true },
            Some(EngineCommand::Skip) if waits => return Interruption::MoveOn,
            Some(_) => continue,
            None => std::future::pending::<()>().await,
        }
    }
}

/// The rollback step: undoes, newest first, what the steps that ran can undo,
/// but only while the instance is down (old stopped, new not live).
async fn roll_back(
    ctx: &mut RunCtx,
    tx: &UnboundedSender<EngineEvent>,
    requested: bool,
    window: &Window,
    steps: &[StepSpec],
) {
    let Some(info) = crate::steps::describe::rollback_info(&ctx.plan, &ctx.vars) else {
        return;
    };
    let finish = |outcome: StepOutcome, ms: u64| {
        emit(
            tx,
            EngineEvent::StepFinished {
                step: info.id.clone(),
                outcome,
                duration_ms: ms,
            },
        )
    };
    let undoable: Vec<&StepSpec> = window
        .undoable
        .iter()
        .filter_map(|&i| steps.get(i))
        .collect();
    if let Some(reason) = window.rollback_skipped(requested) {
        finish(
            StepOutcome::Skipped {
                reason: reason.into(),
            },
            0,
        );
        return;
    }
    let started = Instant::now();
    let commands = undoable
        .iter()
        .rev()
        .flat_map(|s| crate::steps::describe_undo(s, &ctx.plan, &ctx.vars))
        .collect();
    emit(
        tx,
        EngineEvent::StepStarted {
            step: info.id.clone(),
            commands,
        },
    );
    let io = StepIo::new(info.id.clone(), tx.clone());
    // A connection lost in the failure is made again: the old host must come back.
    if let Err(e) = ctx.connect().await {
        io.output(Stream::Stderr, format!("connecting again: {e}"));
    }
    let mut problems = Vec::new();
    for step in undoable.iter().rev() {
        problems.extend(crate::steps::undo(step, ctx, &io).await);
    }
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if problems.is_empty() {
        finish(StepOutcome::Succeeded, ms);
    } else {
        finish(
            StepOutcome::Failed {
                message: format!(
                    "the old host could not be fully brought back: {}; finish by hand",
                    problems.join("; ")
                ),
                host: Some(ctx.plan.source.clone()),
                command: None,
                exit_code: None,
                first_error: problems.first().cloned(),
                stderr_tail: problems,
            },
            ms,
        );
    }
}

/// Steps that run beside an earlier one: started with it, each on its own
/// task with its own events; the run collects them at their own places.
#[derive(Default)]
struct Beside {
    running: Vec<(String, JoinHandle<StepOutcome>)>,
    done: Vec<(String, StepOutcome)>,
}

impl Beside {
    fn start(
        &mut self,
        leader: &StepSpec,
        steps: &[StepSpec],
        ctx: &RunCtx,
        tx: &UnboundedSender<EngineEvent>,
        io: &StepIo,
    ) {
        let companions: Vec<&StepSpec> = steps
            .iter()
            .filter(|s| s.beside.as_deref() == Some(leader.id.as_str()))
            .filter(|s| !ctx.opts.resume_done.contains(&s.id))
            .collect();
        if companions.is_empty() {
            return;
        }
        io.output(
            Stream::Stdout,
            format!(
                "beside this step: {}",
                companions
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        for step in companions {
            let mut ctx = ctx.beside();
            let tx = tx.clone();
            let step = step.clone();
            let id = step.id.clone();
            let task = tokio::spawn(async move {
                let io = StepIo::new(step.id.clone(), tx.clone());
                let started = Instant::now();
                let result = match conditions_hold(&step, &ctx.vars) {
                    Ok(Some(reason)) => StepOutcome::Skipped { reason },
                    Err(message) => StepOutcome::failed(message),
                    Ok(None) => {
                        say_started(&tx, &ctx.plan, &step, &ctx.vars);
                        let run = crate::steps::execute(&step, &mut ctx, &io);
                        match step_limit(&step) {
                            None => run.await,
                            Some(limit) => tokio::time::timeout(limit, run)
                                .await
                                .unwrap_or_else(|_| timed_out(&step, &ctx.plan)),
                        }
                    }
                };
                emit(
                    &tx,
                    EngineEvent::StepFinished {
                        step: step.id.clone(),
                        outcome: result.clone(),
                        duration_ms: u64::try_from(started.elapsed().as_millis())
                            .unwrap_or(u64::MAX),
                    },
                );
                result
            });
            self.running.push((id, task));
        }
    }

    /// How a step that ran beside another ended, waiting for it if needed;
    /// `None` for a step that did not run beside anything.
    async fn result_of(&mut self, id: &str) -> Option<StepOutcome> {
        if let Some(i) = self.done.iter().position(|(d, _)| d == id) {
            return Some(self.done.remove(i).1);
        }
        let i = self.running.iter().position(|(r, _)| r == id)?;
        let (_, task) = self.running.remove(i);
        Some(joined(id, task.await))
    }

    /// Lets every step still running beside finish, keeping its result. After
    /// a failure their remote processes were stopped, so they end soon; one
    /// that does not is cut off.
    async fn wait_all(&mut self) {
        for (id, mut task) in std::mem::take(&mut self.running) {
            let result = match tokio::time::timeout(Duration::from_secs(60), &mut task).await {
                Ok(r) => joined(&id, r),
                Err(_) => {
                    task.abort();
                    StepOutcome::failed(format!(
                        "step '{id}' did not end within a minute of the run stopping; it was cut off"
                    ))
                }
            };
            self.done.push((id, result));
        }
    }
}

fn timed_out(step: &StepSpec, plan: &Plan) -> StepOutcome {
    let hosts = crate::steps::describe::hosts_of(step, plan).join(" and ");
    StepOutcome::Failed {
        message: format!(
            "on {hosts}: step '{}' did not finish within {} (its timeout in the profile); what it still ran there is stopped",
            step.id,
            step.timeout.as_deref().unwrap_or_default()
        ),
        host: Some(hosts),
        command: None,
        exit_code: None,
        first_error: None,
        stderr_tail: Vec::new(),
    }
}

fn joined(id: &str, r: Result<StepOutcome, tokio::task::JoinError>) -> StepOutcome {
    r.unwrap_or_else(|e| StepOutcome::failed(format!("step '{id}' ended unexpectedly: {e}")))
}

fn conditions_hold(step: &StepSpec, vars: &Vars) -> Result<Option<String>, String> {
    for c in step.conditions() {
        match vars.condition(&c) {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Some(match &step.otherwise {
                    Some(note) => vars.render(note).map_err(|e| format!("'otherwise': {e}"))?,
                    None => format!("only runs if {c}"),
                }));
            }
            Err(e) => return Err(format!("condition '{c}': {e}")),
        }
    }
    Ok(None)
}

async fn run(
    ctx: RunCtx,
    cmds: UnboundedReceiver<EngineCommand>,
    tx: UnboundedSender<EngineEvent>,
) -> RunOutcome {
    let run_start = Instant::now();
    emit(&tx, run_started(&ctx));
    if let Some(p) = &ctx.opts.prediction {
        emit(&tx, EngineEvent::Predicted(p.clone()));
    }
    let steps = ctx.plan.steps.clone();
    let mut policy = Policy::new(
        steps.iter().map(Shape::of).collect(),
        ctx.opts.gated,
        ctx.opts.keep_dump,
        ctx.opts.resume_done.clone(),
    );
    let mut d = Driver {
        ctx,
        cmds,
        tx,
        steps,
        beside: Beside::default(),
    };
    let mut input = Input::Next;
    let (outcome, rollback, window, finally) = loop {
        input = match policy.next(input) {
            Effect::End {
                outcome,
                rollback,
                window,
                run_finally,
            } => break (outcome, rollback, window, run_finally),
            effect => d.perform(effect).await,
        };
    };
    let Driver {
        mut ctx,
        tx,
        steps,
        mut beside,
        ..
    } = d;
    // What still runs beside a step that failed has had its remote processes
    // stopped with that failure; it ends before anything is rolled back.
    beside.wait_all().await;
    roll_back(&mut ctx, &tx, rollback, &window, &steps).await;
    if finally {
        run_finally(&mut ctx, &tx, &steps).await;
    }
    emit(
        &tx,
        EngineEvent::RunFinished {
            outcome: outcome.clone(),
            duration_ms: u64::try_from(run_start.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
    );
    release_lock(&mut ctx, &tx).await;
    if let Some(h) = ctx.hosts.take() {
        close(h).await;
    }
    outcome
}

fn run_started(ctx: &RunCtx) -> EngineEvent {
    EngineEvent::RunStarted {
        run_id: ctx.opts.run_id.clone(),
        mode: ctx.opts.mode,
        profile: ctx.plan.profile_name.clone(),
        domain: ctx.plan.domain.clone(),
        source: ctx.plan.source.clone(),
        target: ctx.plan.target.clone(),
        steps: crate::steps::describe::infos(&ctx.plan),
        resumed: ctx
            .plan
            .steps
            .iter()
            .filter(|s| ctx.opts.resume_done.contains(&s.id))
            .map(|s| s.id.clone())
            .collect(),
    }
}

/// Does what the policy says, and tells it what happened.
struct Driver {
    ctx: RunCtx,
    cmds: UnboundedReceiver<EngineCommand>,
    tx: UnboundedSender<EngineEvent>,
    steps: Vec<StepSpec>,
    /// Steps running beside an earlier one (`beside`), and their results once
    /// a failure made the engine wait for all of them.
    beside: Beside,
}

impl Driver {
    fn io(&self, i: usize) -> StepIo {
        StepIo::new(self.steps[i].id.clone(), self.tx.clone())
    }

    async fn perform(&mut self, effect: Effect) -> Input {
        let steps = &self.steps;
        match effect {
            Effect::Collect(i) => Input::Collected(self.beside.result_of(&steps[i].id).await),
            Effect::WaitForBesides => {
                self.beside.wait_all().await;
                Input::Next
            }
            Effect::CheckConditions(i) => {
                Input::Conditions(conditions_hold(&steps[i], &self.ctx.vars))
            }
            Effect::Report(i, outcome, duration_ms) => {
                emit(
                    &self.tx,
                    EngineEvent::StepFinished {
                        step: steps[i].id.clone(),
                        outcome,
                        duration_ms,
                    },
                );
                Input::Next
            }
            Effect::StartBeside(i) => {
                let io = self.io(i);
                self.beside
                    .start(&steps[i], steps, &self.ctx, &self.tx, &io);
                Input::Next
            }
            Effect::AskConfirm(i) => {
                let prompt = steps[i].confirm.as_deref().unwrap_or_default();
                emit(
                    &self.tx,
                    EngineEvent::AwaitingConfirm {
                        step: steps[i].id.clone(),
                        prompt: self.ctx.vars.render_lenient(prompt),
                    },
                );
                Input::Next
            }
            Effect::Await(..) => Input::Command(self.cmds.recv().await),
            Effect::Run { step, start_beside } => {
                run_step(
                    steps,
                    step,
                    start_beside,
                    &mut self.ctx,
                    &mut self.cmds,
                    &self.tx,
                    &mut self.beside,
                )
                .await
            }
            Effect::AfterFailure(i) => {
                let io = self.io(i);
                self.ctx.after_failure(&io).await;
                Input::Next
            }
            Effect::Say(i, line) => {
                self.io(i).output(Stream::Stderr, line);
                Input::Next
            }
            // The run loop ends on it before asking the driver.
            Effect::End { .. } => Input::Next,
        }
    }
}

/// Runs one step at its place: says it started, starts what runs beside it,
/// and stops it on its timeout or when the operator stops the run.
async fn run_step(
    steps: &[StepSpec],
    i: usize,
    start_beside: bool,
    ctx: &mut RunCtx,
    cmds: &mut UnboundedReceiver<EngineCommand>,
    tx: &UnboundedSender<EngineEvent>,
    beside: &mut Beside,
) -> Input {
    let step = &steps[i];
    let io = StepIo::new(step.id.clone(), tx.clone());
    let started = Instant::now();
    say_started(tx, &ctx.plan, step, &ctx.vars);
    if start_beside {
        beside.start(step, steps, ctx, tx, &io);
    }
    let waits = step.kind() == StepKind::Dns;
    let limit = step_limit(step);
    let mut stopped = None;
    let outcome = tokio::select! {
        o = crate::steps::execute(step, ctx, &io) => o,
        () = sleep_or_forever(limit) => timed_out(step, &ctx.plan),
        why = interrupted(cmds, waits) => match why {
            Interruption::Stop { rollback } => {
                stopped = Some(rollback);
                StepOutcome::failed("stopped by the operator while the step was running")
            }
            Interruption::MoveOn => StepOutcome::Skipped {
                reason: "the operator moved on before every resolver answered the new address".into(),
            },
        },
    };
    Input::Ran {
        outcome,
        ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stopped,
    }
}

/// After a run that stopped early: the steps marked `finally` (removing the
/// dump, which holds every private message) run anyway, unless --keep-dump.
async fn run_finally(ctx: &mut RunCtx, tx: &UnboundedSender<EngineEvent>, steps: &[StepSpec]) {
    for step in steps.iter().filter(|s| s.finally) {
        let io = StepIo::new(step.id.clone(), tx.clone());
        let started = Instant::now();
        say_started(tx, &ctx.plan, step, &ctx.vars);
        io.output(
            Stream::Stdout,
            "the run stopped early; this step runs anyway (--keep-dump keeps the files)".into(),
        );
        let result = crate::steps::execute(step, ctx, &io).await;
        if matches!(result, StepOutcome::Failed { .. }) {
            ctx.after_failure(&io).await;
        }
        emit(
            tx,
            EngineEvent::StepFinished {
                step: step.id.clone(),
                outcome: result,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
        );
    }
}

/// The lock goes whatever the outcome: a resumed run takes it again.
async fn release_lock(ctx: &mut RunCtx, tx: &UnboundedSender<EngineEvent>) {
    let Some((dir, user)) = ctx.lock.take() else {
        return;
    };
    if ctx.connect().await.is_err() {
        return;
    }
    let Ok(hosts) = ctx.connected() else {
        return;
    };
    if let Err(e) = crate::steps::lock::release(&hosts.source, &dir, &user, &ctx.opts.run_id).await
    {
        let io = StepIo::new("preflight", tx.clone());
        io.output(
            Stream::Stderr,
            format!(
                "could not release the lock {dir}/hikkoshi.lock on {}: {}; the next run will need --break-lock",
                hosts.source.name(),
                e.message
            ),
        );
    }
}

/// Says a step started, with its commands as they will run.
fn say_started(tx: &UnboundedSender<EngineEvent>, plan: &Plan, step: &StepSpec, vars: &Vars) {
    let info = crate::steps::describe::step_info(plan, step, vars);
    emit(
        tx,
        EngineEvent::StepStarted {
            step: step.id.clone(),
            commands: info.commands,
        },
    );
}
