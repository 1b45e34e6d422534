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
            preflight: step.kind == StepKind::Preflight,
            confirm: step.confirm.is_some(),
            optional: step.optional,
            downtime: step.downtime,
            undo: step.undo.is_some(),
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
    pub fn rollback_skipped(&self, requested: bool) -> Option<&'static str> {
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
        Effect::End {
            outcome,
            rollback,
            window: self.window.clone(),
            run_finally,
        }
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
            (Phase::Over, _) => self.end(RunOutcome::Succeeded, false),
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
mod tests {
    use super::*;
    use EngineCommand as C;

    fn shape(id: &str) -> Shape {
        Shape {
            id: id.into(),
            ..Shape::default()
        }
    }

    /// preflight, stop (downtime starts, undoable), dump, restore (asks),
    /// media (optional), health (downtime ends), disable.
    fn checklist() -> Vec<Shape> {
        vec![
            Shape {
                preflight: true,
                ..shape("preflight")
            },
            Shape {
                downtime: Some(DowntimeMark::Start),
                undo: true,
                ..shape("stop")
            },
            shape("dump"),
            Shape {
                confirm: true,
                ..shape("restore")
            },
            Shape {
                optional: true,
                ..shape("media")
            },
            Shape {
                downtime: Some(DowntimeMark::End),
                ..shape("health")
            },
            shape("disable"),
        ]
    }

    fn ok() -> StepOutcome {
        StepOutcome::Succeeded
    }

    fn failed() -> StepOutcome {
        StepOutcome::failed("exit 1")
    }

    /// What the driver answers for each effect, given the scripted parts:
    /// how each step runs (in order of runs) and each command awaited.
    struct Script {
        runs: Vec<(usize, StepOutcome, Option<bool>)>,
        commands: Vec<Option<EngineCommand>>,
        beside: Vec<(usize, StepOutcome)>,
        skip: Vec<usize>,
    }

    /// Drives the policy to its end, answering as the script says; returns
    /// every effect, shortened to text, and the end.
    fn drive(p: &mut Policy, mut sc: Script) -> (Vec<String>, Effect) {
        let mut input = Input::Next;
        let mut seen = Vec::new();
        for _ in 0..200 {
            let e = p.next(input);
            input = match &e {
                Effect::End { .. } => return (seen, e),
                Effect::Collect(i) => {
                    seen.push(format!("collect {i}"));
                    let r = sc
                        .beside
                        .iter()
                        .position(|(j, _)| j == i)
                        .map(|k| sc.beside.remove(k).1);
                    Input::Collected(r)
                }
                Effect::WaitForBesides => {
                    seen.push("wait besides".into());
                    Input::Next
                }
                Effect::CheckConditions(i) => Input::Conditions(if sc.skip.contains(i) {
                    Ok(Some("only runs if x".into()))
                } else {
                    Ok(None)
                }),
                Effect::Report(i, o, _) => {
                    let what = match o {
                        StepOutcome::Succeeded => "ok".to_string(),
                        StepOutcome::Skipped { reason } => format!("skipped ({reason})"),
                        StepOutcome::Failed { .. } => "failed".to_string(),
                    };
                    seen.push(format!("{i} {what}"));
                    Input::Next
                }
                Effect::StartBeside(i) => {
                    seen.push(format!("beside of {i}"));
                    Input::Next
                }
                Effect::AskConfirm(i) => {
                    seen.push(format!("ask {i}"));
                    Input::Next
                }
                Effect::Await(i, w) => {
                    seen.push(format!("await {i} {w:?}"));
                    Input::Command(sc.commands.remove(0))
                }
                Effect::Run { step, start_beside } => {
                    seen.push(format!(
                        "run {step}{}",
                        if *start_beside { "" } else { " again" }
                    ));
                    let k = sc
                        .runs
                        .iter()
                        .position(|(j, ..)| j == step)
                        .expect("a scripted run");
                    let (_, outcome, stopped) = sc.runs.remove(k);
                    Input::Ran {
                        outcome,
                        ms: 5,
                        stopped,
                    }
                }
                Effect::AfterFailure(i) => {
                    seen.push(format!("after failure {i}"));
                    Input::Next
                }
                Effect::Say(i, line) => {
                    seen.push(format!("say {i}: {line}"));
                    Input::Next
                }
            };
        }
        panic!("the policy never ended: {seen:?}");
    }

    fn all_ok(n: usize) -> Vec<(usize, StepOutcome, Option<bool>)> {
        (0..n).map(|i| (i, ok(), None)).collect()
    }

    fn end_of(e: &Effect) -> (RunOutcome, bool, Window, bool) {
        match e {
            Effect::End {
                outcome,
                rollback,
                window,
                run_finally,
            } => (outcome.clone(), *rollback, window.clone(), *run_finally),
            other => panic!("not an end: {other:?}"),
        }
    }

    fn policy(steps: Vec<Shape>, gated: bool, done: &[&str]) -> Policy {
        Policy::new(
            steps,
            gated,
            false,
            done.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn a_run_that_goes_well_confirms_and_succeeds() {
        let mut p = policy(checklist(), false, &[]);
        let (seen, end) = drive(
            &mut p,
            Script {
                runs: all_ok(7),
                commands: vec![Some(C::Confirm)],
                beside: vec![],
                skip: vec![],
            },
        );
        assert_eq!(
            seen.join(" | "),
            "run 0 | 0 ok | run 1 | 1 ok | run 2 | 2 ok | ask 3 | await 3 Confirm | run 3 | 3 ok | run 4 | 4 ok | run 5 | 5 ok | run 6 | 6 ok"
        );
        let (outcome, rollback, window, finally) = end_of(&end);
        assert_eq!(outcome, RunOutcome::Succeeded);
        assert!(!rollback && !finally);
        assert!(window.started && window.ended);
        assert_eq!(
            window.rollback_skipped(true),
            Some("the new host is live: nothing is undone after that")
        );
    }

    /// After a failure: every command read the one way, in a table.
    #[rstest::rstest]
    #[case::retry_then_success(2, vec![Some(C::Retry)], "Succeeded", false)]
    #[case::abort(2, vec![Some(C::Abort)], "Failed", false)]
    #[case::rollback(2, vec![Some(C::Rollback)], "Failed", true)]
    #[case::front_end_gone(2, vec![None], "Failed", false)]
    #[case::skip_of_a_required_step_is_refused(2, vec![Some(C::Skip), Some(C::Confirm), Some(C::Abort)], "Failed", false)]
    #[case::skip_of_an_optional_step(4, vec![Some(C::Skip)], "Incomplete", false)]
    fn a_failed_step_waits_for_the_operator(
        #[case] failing: usize,
        #[case] commands: Vec<Option<EngineCommand>>,
        #[case] want: &str,
        #[case] want_rollback: bool,
    ) {
        let mut p = policy(checklist(), false, &[]);
        let mut runs = all_ok(7);
        runs.insert(failing, (failing, failed(), None));
        let mut commands = commands;
        // restore asks first.
        commands.insert(
            if failing < 3 { commands.len() } else { 0 },
            Some(C::Confirm),
        );
        let (seen, end) = drive(
            &mut p,
            Script {
                runs,
                commands,
                beside: vec![],
                skip: vec![],
            },
        );
        let (outcome, rollback, window, finally) = end_of(&end);
        let name = format!("{outcome:?}");
        assert!(name.starts_with(want), "{name}: {seen:?}");
        assert_eq!(rollback, want_rollback);
        assert!(
            seen.contains(&format!("after failure {failing}")),
            "{seen:?}"
        );
        assert!(seen.contains(&format!("{failing} failed")), "{seen:?}");
        if want == "Failed" {
            // Inside the downtime: a rollback would undo the stop.
            assert!(window.started && !window.ended);
            assert_eq!(window.undoable, vec![1]);
            assert!(finally, "the dump is removed after a failed run");
            assert_eq!(
                window.rollback_skipped(rollback),
                if rollback { None } else { Some("not needed") }
            );
        }
        if want == "Incomplete" {
            assert!(seen.contains(
                &"4 skipped (failed; skipped by the operator (the step is optional))".to_string()
            ));
        }
        if seen.iter().any(|s| s.contains("Skip")) || seen.iter().any(|s| s.starts_with("say")) {
            assert!(
                seen.contains(&format!(
                    "say {failing}: step 'dump' is not optional: retry it or abort"
                )),
                "{seen:?}"
            );
        }
    }

    #[test]
    fn a_retry_runs_the_step_again_without_its_companions() {
        let mut p = policy(checklist(), false, &[]);
        let mut runs = all_ok(7);
        runs.insert(2, (2, failed(), None));
        let (seen, end) = drive(
            &mut p,
            Script {
                runs,
                commands: vec![Some(C::Retry), Some(C::Confirm)],
                beside: vec![],
                skip: vec![],
            },
        );
        assert_eq!(end_of(&end).0, RunOutcome::Succeeded);
        let s = seen.join(" | ");
        assert!(
            s.contains("run 2 | after failure 2 | 2 failed | await 2 Failure | run 2 again | 2 ok"),
            "{s}"
        );
    }

    #[test]
    fn no_rollback_before_the_downtime_or_once_the_new_host_is_live() {
        // Preflight fails: nothing stopped, nothing to undo.
        let mut p = policy(checklist(), false, &[]);
        let (_, end) = drive(
            &mut p,
            Script {
                runs: vec![(0, failed(), None)],
                commands: vec![Some(C::Rollback)],
                beside: vec![],
                skip: vec![],
            },
        );
        let (_, rollback, window, finally) = end_of(&end);
        assert!(rollback);
        assert_eq!(
            window.rollback_skipped(true),
            Some("nothing to undo: the old host's services were not stopped")
        );
        assert!(!finally, "nothing changed: nothing to clean up");
        // disable fails after health: live, nothing is undone.
        let mut p = policy(checklist(), false, &[]);
        let mut runs = all_ok(6);
        runs.push((6, failed(), None));
        let (_, end) = drive(
            &mut p,
            Script {
                runs,
                commands: vec![Some(C::Confirm), Some(C::Rollback)],
                beside: vec![],
                skip: vec![],
            },
        );
        assert_eq!(
            end_of(&end).2.rollback_skipped(true),
            Some("the new host is live: nothing is undone after that")
        );
    }

    #[test]
    fn stopped_while_running_ends_the_run_as_aborted() {
        let mut p = policy(checklist(), false, &[]);
        let (seen, end) = drive(
            &mut p,
            Script {
                runs: vec![(0, ok(), None), (1, ok(), None), (2, failed(), Some(true))],
                commands: vec![],
                beside: vec![],
                skip: vec![],
            },
        );
        let (outcome, rollback, window, _) = end_of(&end);
        assert_eq!(
            outcome,
            RunOutcome::Aborted {
                step: Some("dump".into())
            }
        );
        assert!(rollback);
        assert_eq!(window.rollback_skipped(true), None);
        assert_eq!(seen.last().map(String::as_str), Some("2 failed"));
    }

    #[test]
    fn a_gated_run_starts_each_step_when_told_and_a_declined_step_is_skipped() {
        let steps = vec![
            shape("a"),
            Shape {
                confirm: true,
                ..shape("b")
            },
            shape("c"),
        ];
        let mut p = policy(steps, true, &[]);
        let (seen, end) = drive(
            &mut p,
            Script {
                runs: vec![(0, ok(), None), (2, ok(), None)],
                commands: vec![
                    Some(C::Confirm),
                    Some(C::Start),
                    Some(C::Start),
                    Some(C::Skip),
                    Some(C::Start),
                ],
                beside: vec![],
                skip: vec![],
            },
        );
        assert_eq!(end_of(&end).0, RunOutcome::Succeeded);
        assert_eq!(
            seen.join(" | "),
            "await 0 Start | await 0 Start | run 0 | 0 ok | await 1 Start | ask 1 | await 1 Confirm | 1 skipped (declined by the operator) | await 2 Start | run 2 | 2 ok"
        );
        // Abort while waiting to start preflight: aborted there, nothing changed.
        let mut p = policy(
            vec![Shape {
                preflight: true,
                ..shape("a")
            }],
            true,
            &[],
        );
        let (_, end) = drive(
            &mut p,
            Script {
                runs: vec![],
                commands: vec![Some(C::Abort)],
                beside: vec![],
                skip: vec![],
            },
        );
        assert_eq!(
            end_of(&end).0,
            RunOutcome::Aborted {
                step: Some("a".into())
            }
        );
        assert!(!end_of(&end).3, "nothing changed before the first step");
        // At a step that may change something, the finally steps clean up.
        let mut p = policy(vec![shape("a")], true, &[]);
        let (_, end) = drive(
            &mut p,
            Script {
                runs: vec![],
                commands: vec![Some(C::Rollback)],
                beside: vec![],
                skip: vec![],
            },
        );
        assert!(end_of(&end).1 && end_of(&end).3);
    }

    #[test]
    fn steps_beside_another_start_with_it_and_fail_at_their_own_place() {
        let steps = vec![
            Shape {
                downtime: Some(DowntimeMark::Start),
                undo: true,
                ..shape("stop")
            },
            shape("dump"),
            Shape {
                beside: Some("dump".into()),
                undo: true,
                ..shape("env")
            },
            shape("restore"),
            Shape {
                beside: Some("dump".into()),
                ..shape("redis")
            },
        ];
        // env ran beside and succeeded; redis failed beside: handled at its place.
        let mut p = policy(steps.clone(), false, &[]);
        let (seen, end) = drive(
            &mut p,
            Script {
                runs: vec![
                    (0, ok(), None),
                    (1, ok(), None),
                    (3, ok(), None),
                    (4, ok(), None),
                ],
                commands: vec![Some(C::Retry)],
                beside: vec![(2, ok()), (4, failed())],
                skip: vec![],
            },
        );
        assert_eq!(end_of(&end).0, RunOutcome::Succeeded);
        assert_eq!(
            seen.join(" | "),
            "run 0 | 0 ok | run 1 | 1 ok | collect 2 | run 3 | 3 ok | collect 4 | wait besides | after failure 4 | await 4 Failure | run 4 | 4 ok"
        );
        // Its undo counts from its start: a rollback after restore fails undoes env too.
        let mut p = policy(steps.clone(), false, &[]);
        let (_, end) = drive(
            &mut p,
            Script {
                runs: vec![(0, ok(), None), (1, ok(), None), (3, failed(), None)],
                commands: vec![Some(C::Rollback)],
                beside: vec![(2, ok()), (4, ok())],
                skip: vec![],
            },
        );
        assert_eq!(end_of(&end).2.undoable, vec![0, 2]);
        // A skipped leader still starts its companions at its place.
        let mut p = policy(steps, false, &[]);
        let (seen, _) = drive(
            &mut p,
            Script {
                runs: vec![(0, ok(), None), (3, ok(), None)],
                commands: vec![],
                beside: vec![(2, ok()), (4, ok())],
                skip: vec![1],
            },
        );
        assert!(
            seen.join(" | ")
                .contains("1 skipped (only runs if x) | beside of 1"),
            "{seen:?}"
        );
    }

    #[test]
    fn a_resumed_run_goes_on_at_the_first_unfinished_step() {
        // stop and dump were done: not run again, but the window knows the
        // downtime started and the stop can be undone; preflight runs again.
        let mut p = policy(checklist(), false, &["preflight", "stop", "dump"]);
        let (seen, end) = drive(
            &mut p,
            Script {
                runs: vec![(0, ok(), None), (3, failed(), None)],
                commands: vec![Some(C::Confirm), Some(C::Rollback)],
                beside: vec![],
                skip: vec![],
            },
        );
        assert!(seen[0] == "run 0" && seen[2] == "ask 3", "{seen:?}");
        let (outcome, rollback, window, _) = end_of(&end);
        assert_eq!(
            outcome,
            RunOutcome::Failed {
                step: "restore".into()
            }
        );
        assert!(rollback);
        assert_eq!(window.undoable, vec![1]);
        assert_eq!(window.rollback_skipped(true), None);
        // Everything done but the last step: the window is already over.
        let done = ["preflight", "stop", "dump", "restore", "media", "health"];
        let mut p = policy(checklist(), false, &done);
        let (_, end) = drive(
            &mut p,
            Script {
                runs: vec![(0, ok(), None), (6, ok(), None)],
                commands: vec![],
                beside: vec![],
                skip: vec![],
            },
        );
        let window = end_of(&end).2;
        assert!(window.started && window.ended);
    }

    #[test]
    fn a_broken_condition_fails_the_run_before_the_step() {
        let mut p = policy(vec![shape("a"), shape("b")], false, &[]);
        let e = p.next(Input::Next);
        assert_eq!(e, Effect::CheckConditions(0));
        let e = p.next(Input::Conditions(Err("condition 'x': unknown".into())));
        assert!(matches!(
            e,
            Effect::Report(0, StepOutcome::Failed { .. }, 0)
        ));
        let (outcome, ..) = end_of(&p.next(Input::Next));
        assert_eq!(outcome, RunOutcome::Failed { step: "a".into() });
    }
}
