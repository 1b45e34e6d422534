//! The engine's decisions, and nothing else: which step comes next, what a
//! command from the front end means at this point, when a failure is retried,
//! skipped or ends the run, whether the old host is brought back, what a
//! resumed run does again. A state machine: each call takes what happened
//! (`Input`) and says what to do next (`Effect`); the driver in `engine/mod.rs`
//! does it and reports back. No I/O, no clock, no async: every rule is tested
//! here with tables.

use std::collections::BTreeSet;

use crate::events::{EngineCommand, RunOutcome, StepOutcome};
use crate::profile::{DowntimeMark, StepKind, StepSpec};

/// What the policy needs to know of a step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape {
    pub id: String,
    pub preflight: bool,
    pub confirm: bool,
    pub optional: bool,
    pub downtime: Option<DowntimeMark>,
    pub undo: bool,
    /// Starts with this earlier step and runs beside it.
    pub beside: Option<String>,
}

impl Shape {
    pub fn of(step: &StepSpec) -> Shape {
        Shape {
            id: step.id.clone(),
            preflight: step.kind() == StepKind::Preflight,
            confirm: step.confirm.is_some(),
            optional: step.optional,
            downtime: step.downtime,
            undo: step.has_undo(),
            beside: step.beside.clone(),
        }
    }
}

/// The instance is down from the step marked `downtime = "start"` until the
/// one marked `"end"` succeeds; only inside that window does a rollback apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    pub started: bool,
    pub ended: bool,
    /// Steps whose undo a rollback runs (newest last), by index.
    pub undoable: Vec<usize>,
}

impl Window {
    /// Why no rollback runs, or `None` when it does.
    pub(crate) fn rollback_skipped(&self, requested: bool) -> Option<&'static str> {
        if !requested {
            Some("not needed")
        } else if !self.started {
            Some("nothing to undo: the old host's services were not stopped")
        } else if self.ended {
            Some("the new host is live: nothing is undone after that")
        } else if self.undoable.is_empty() {
            Some("no step that ran has anything to undo")
        } else {
            None
        }
    }
}

/// What the policy waits for from the front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// A gated run (the wizard) starts each step when told.
    Start,
    /// The step asks for confirmation.
    Confirm,
    /// The step failed: retry, skip (when optional), abort or roll back.
    Failure,
}

/// What happened, as the driver reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The run begins, or the last effect is done.
    Next,
    /// How a step that ran beside another ended (`None`: it did not run beside one).
    Collected(Option<StepOutcome>),
    /// The step's conditions: `Ok(Some(reason))` leaves it out.
    Conditions(Result<Option<String>, String>),
    /// A command from the front end; `None` when every front end has gone.
    Command(Option<EngineCommand>),
    /// The step ran here: its outcome and duration, and whether the operator
    /// stopped it (asking for a rollback or not).
    Ran {
        outcome: StepOutcome,
        ms: u64,
        stopped: Option<bool>,
    },
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Answer with `Collected`: the result of the step if it ran beside another.
    Collect(usize),
    /// Let every step still running beside finish (after a failure).
    WaitForBesides,
    /// Answer with `Conditions`.
    CheckConditions(usize),
    /// Say how the step ended (0 ms: it did not run).
    Report(usize, StepOutcome, u64),
    /// Start the steps that run beside this one.
    StartBeside(usize),
    /// Say the step asks for confirmation.
    AskConfirm(usize),
    /// Answer with `Command`.
    Await(usize, Waiting),
    /// Run the step (starting what runs beside it first, when asked); answer with `Ran`.
    Run { step: usize, start_beside: bool },
    /// End what the failed step left running, and reconnect a lost host.
    AfterFailure(usize),
    /// A line of the step's output on stderr.
    Say(usize, String),
    /// The run is over: wait for steps beside, roll back if asked (and the
    /// window allows), run the `finally` steps if asked, report the outcome.
    End {
        outcome: RunOutcome,
        rollback: bool,
        window: Window,
        run_finally: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// At step `i`, nothing done yet.
    Enter,
    Collected,
    Conditions,
    /// The skipped step was reported; what runs beside it starts anyway.
    SkippedReported,
    Gate,
    ConfirmAsked,
    Confirm,
    Running,
    /// The failure was handled on the hosts; now say how the step ended.
    AfterFailureDone,
    FailureReported,
    Deciding,
    /// A step that ran beside failed: the others are waited for first.
    BesideFailed,
    /// Reported a step's end and moves on.
    Advance,
    /// A step that could not even start (its condition is broken) was reported.
    FailedBeforeRun,
    Over,
}

/// How a command is read while the policy waits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Stop { rollback: bool },
    Go,
    Decline,
    SkipFailed,
    NotOptional,
    Ignore,
}

fn decide(waiting: Waiting, cmd: Option<EngineCommand>, optional: bool) -> Decision {
    use EngineCommand as C;
    match (waiting, cmd) {
        (_, None | Some(C::Abort)) => Decision::Stop { rollback: false },
        (_, Some(C::Rollback)) => Decision::Stop { rollback: true },
        (Waiting::Start, Some(C::Start)) => Decision::Go,
        (Waiting::Confirm, Some(C::Confirm)) => Decision::Go,
        (Waiting::Confirm, Some(C::Skip)) => Decision::Decline,
        (Waiting::Failure, Some(C::Retry)) => Decision::Go,
        (Waiting::Failure, Some(C::Skip)) if optional => Decision::SkipFailed,
        (Waiting::Failure, Some(C::Skip | C::Confirm | C::Start)) => Decision::NotOptional,
        _ => Decision::Ignore,
    }
}

pub struct Policy {
    steps: Vec<Shape>,
    gated: bool,
    keep_dump: bool,
    resume_done: BTreeSet<String>,
    i: usize,
    phase: Phase,
    window: Window,
    /// What the last run of the current step returned, until it is reported.
    last: Option<(StepOutcome, u64, Option<bool>)>,
    beside_started: bool,
    failed_optional: Vec<String>,
    changed_anything: bool,
    /// How the run ended, said again if the policy is asked after the end.
    ended: Option<Effect>,
}

impl Policy {
    pub fn new(
        steps: Vec<Shape>,
        gated: bool,
        keep_dump: bool,
        resume_done: BTreeSet<String>,
    ) -> Policy {
        Policy {
            steps,
            gated,
            keep_dump,
            resume_done,
            i: 0,
            phase: Phase::Enter,
            window: Window::default(),
            last: None,
            beside_started: false,
            failed_optional: Vec::new(),
            changed_anything: false,
            ended: None,
        }
    }

    fn step(&self) -> &Shape {
        &self.steps[self.i]
    }

    /// The steps that start with step `i`, and are not done already.
    fn companions(&self, i: usize) -> Vec<usize> {
        let id = &self.steps[i].id;
        (0..self.steps.len())
            .filter(|&j| {
                self.steps[j].beside.as_ref() == Some(id)
                    && !self.resume_done.contains(&self.steps[j].id)
            })
            .collect()
    }

    fn start_beside(&mut self, i: usize) {
        for j in self.companions(i) {
            if self.steps[j].undo {
                self.window.undoable.push(j);
            }
        }
    }

    fn end(&mut self, outcome: RunOutcome, rollback: bool) -> Effect {
        self.phase = Phase::Over;
        let run_finally =
            outcome != RunOutcome::Succeeded && self.changed_anything && !self.keep_dump;
        let outcome = if outcome == RunOutcome::Succeeded && !self.failed_optional.is_empty() {
            RunOutcome::Incomplete {
                failed: self.failed_optional.clone(),
            }
        } else {
            outcome
        };
        let end = Effect::End {
            outcome,
            rollback,
            window: self.window.clone(),
            run_finally,
        };
        self.ended = Some(end.clone());
        end
    }

    fn advance(&mut self) -> Effect {
        self.i += 1;
        self.phase = Phase::Enter;
        self.beside_started = false;
        self.last = None;
        self.enter()
    }

    /// At the start of a step: a step an earlier attempt finished is not run
    /// again but still counts for the window (preflight always runs again).
    fn enter(&mut self) -> Effect {
        while self.i < self.steps.len() {
            let s = self.step().clone();
            if !self.resume_done.contains(&s.id) || s.preflight {
                break;
            }
            if s.downtime == Some(DowntimeMark::Start) {
                self.window.started = true;
            }
            if s.downtime == Some(DowntimeMark::End) {
                self.window.ended = true;
            }
            if s.undo {
                self.window.undoable.push(self.i);
            }
            self.i += 1;
        }
        if self.i >= self.steps.len() {
            return self.end(RunOutcome::Succeeded, false);
        }
        if self.step().beside.is_some() {
            self.phase = Phase::Collected;
            Effect::Collect(self.i)
        } else {
            self.collected(None)
        }
    }

    fn collected(&mut self, result: Option<StepOutcome>) -> Effect {
        match result {
            // It ran beside another and reported itself.
            Some(r) if !matches!(r, StepOutcome::Failed { .. }) => self.advance(),
            // Its failure is handled here, as if it had just run at its place.
            Some(r) => {
                self.last = Some((r, 0, None));
                self.phase = Phase::BesideFailed;
                Effect::WaitForBesides
            }
            None => {
                if !self.step().preflight {
                    self.changed_anything = true;
                }
                self.phase = Phase::Conditions;
                Effect::CheckConditions(self.i)
            }
        }
    }

    fn armed(&mut self) -> Effect {
        if self.step().downtime == Some(DowntimeMark::Start) {
            self.window.started = true;
        }
        // Before it runs: a step that fails halfway is undone too.
        if self.step().undo {
            self.window.undoable.push(self.i);
        }
        self.run()
    }

    fn run(&mut self) -> Effect {
        let start_beside = !self.beside_started;
        if start_beside {
            self.beside_started = true;
            self.start_beside(self.i);
        }
        self.phase = Phase::Running;
        Effect::Run {
            step: self.i,
            start_beside,
        }
    }

    fn after_confirm_check(&mut self) -> Effect {
        if self.step().confirm {
            self.phase = Phase::ConfirmAsked;
            Effect::AskConfirm(self.i)
        } else {
            self.armed()
        }
    }

    fn stopped(&mut self, rollback: bool, failed: bool) -> Effect {
        let step = self.step().id.clone();
        let outcome = if failed {
            RunOutcome::Failed { step }
        } else {
            RunOutcome::Aborted { step: Some(step) }
        };
        self.end(outcome, rollback)
    }

    /// The next effect, given what happened since the last one.
    pub fn next(&mut self, input: Input) -> Effect {
        match (self.phase, input) {
            (Phase::Over, _) => match &self.ended {
                Some(end) => end.clone(),
                None => self.end(RunOutcome::Succeeded, false),
            },
            (Phase::FailedBeforeRun, _) => self.stopped(false, true),
            (Phase::Enter, _) => self.enter(),
            (Phase::Collected, Input::Collected(r)) => self.collected(r),
            (Phase::Conditions, Input::Conditions(c)) => self.on_conditions(c),
            (Phase::SkippedReported, _) => {
                // What runs beside a skipped step starts at its place anyway.
                self.start_beside(self.i);
                self.phase = Phase::Advance;
                Effect::StartBeside(self.i)
            }
            (Phase::Gate, Input::Command(c)) => match decide(Waiting::Start, c, false) {
                Decision::Stop { rollback } => self.stopped(rollback, false),
                Decision::Go => self.after_confirm_check(),
                _ => Effect::Await(self.i, Waiting::Start),
            },
            (Phase::ConfirmAsked, _) => {
                self.phase = Phase::Confirm;
                Effect::Await(self.i, Waiting::Confirm)
            }
            (Phase::Confirm, Input::Command(c)) => self.on_confirm(c),
            (
                Phase::Running,
                Input::Ran {
                    outcome,
                    ms,
                    stopped,
                },
            ) => self.on_ran(outcome, ms, stopped),
            (Phase::BesideFailed, _) => {
                self.phase = Phase::FailureReported;
                Effect::AfterFailure(self.i)
            }
            (Phase::AfterFailureDone, _) => {
                let (outcome, ms) = match &self.last {
                    Some((o, ms, _)) => (o.clone(), *ms),
                    None => (StepOutcome::failed("the step failed"), 0),
                };
                self.phase = Phase::FailureReported;
                Effect::Report(self.i, outcome, ms)
            }
            (Phase::FailureReported, _) => {
                if let Some(rollback) = self.last.as_ref().and_then(|l| l.2) {
                    return self.stopped(rollback, false);
                }
                self.phase = Phase::Deciding;
                Effect::Await(self.i, Waiting::Failure)
            }
            (Phase::Deciding, Input::Command(c)) => self.on_failure_command(c),
            (Phase::Advance, _) => self.advance(),
            // Anything else (a line was said, an answer the phase did not ask
            // for): ask again for what the phase needs.
            (phase, _) => self.again(phase),
        }
    }

    fn on_conditions(&mut self, c: Result<Option<String>, String>) -> Effect {
        match c {
            Ok(None) if self.gated => {
                self.phase = Phase::Gate;
                Effect::Await(self.i, Waiting::Start)
            }
            Ok(None) => self.after_confirm_check(),
            Ok(Some(reason)) => {
                self.phase = Phase::SkippedReported;
                Effect::Report(self.i, StepOutcome::Skipped { reason }, 0)
            }
            Err(message) => {
                // Said first; the run ends on the next call.
                self.phase = Phase::FailedBeforeRun;
                Effect::Report(self.i, StepOutcome::failed(message), 0)
            }
        }
    }

    fn on_confirm(&mut self, c: Option<EngineCommand>) -> Effect {
        match decide(Waiting::Confirm, c, false) {
            Decision::Stop { rollback } => self.stopped(rollback, false),
            Decision::Go => self.armed(),
            Decision::Decline => {
                self.phase = Phase::Advance;
                Effect::Report(
                    self.i,
                    StepOutcome::Skipped {
                        reason: "declined by the operator".into(),
                    },
                    0,
                )
            }
            _ => Effect::Await(self.i, Waiting::Confirm),
        }
    }

    fn on_ran(&mut self, outcome: StepOutcome, ms: u64, stopped: Option<bool>) -> Effect {
        if matches!(outcome, StepOutcome::Failed { .. }) {
            self.last = Some((outcome, ms, stopped));
            self.phase = Phase::AfterFailureDone;
            Effect::AfterFailure(self.i)
        } else {
            if self.step().downtime == Some(DowntimeMark::End) {
                self.window.ended = true;
            }
            self.phase = Phase::Advance;
            Effect::Report(self.i, outcome, ms)
        }
    }

    fn on_failure_command(&mut self, c: Option<EngineCommand>) -> Effect {
        match decide(Waiting::Failure, c, self.step().optional) {
            Decision::Stop { rollback } => self.stopped(rollback, true),
            Decision::Go => self.run(),
            Decision::SkipFailed => {
                self.failed_optional.push(self.step().id.clone());
                self.phase = Phase::Advance;
                Effect::Report(
                    self.i,
                    StepOutcome::Skipped {
                        reason: "failed; skipped by the operator (the step is optional)".into(),
                    },
                    0,
                )
            }
            Decision::NotOptional => Effect::Say(
                self.i,
                format!(
                    "step '{}' is not optional: retry it or abort",
                    self.step().id
                ),
            ),
            _ => Effect::Await(self.i, Waiting::Failure),
        }
    }

    fn again(&mut self, phase: Phase) -> Effect {
        match phase {
            Phase::Collected => Effect::Collect(self.i),
            Phase::Conditions => Effect::CheckConditions(self.i),
            Phase::Gate => Effect::Await(self.i, Waiting::Start),
            Phase::Confirm => Effect::Await(self.i, Waiting::Confirm),
            Phase::Deciding => Effect::Await(self.i, Waiting::Failure),
            // Running waits only for `Ran`; the driver sends nothing else then.
            Phase::Running => Effect::Run {
                step: self.i,
                start_beside: false,
            },
            _ => self.enter(),
        }
    }
}

#[cfg(test)]
mod tests;
