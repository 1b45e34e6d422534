//! "What happened": the fold of journal records into a run's state. The headless
//! output, the TUI and `review` all read this; none keeps its own account.

use std::collections::VecDeque;

use serde::Serialize;

use crate::events::{CheckStatus, EngineEvent, RunOutcome, StepOutcome, Stream};
use crate::journal::Record;
use crate::plan::StepInfo;
use crate::profile::{DowntimeMark, StepKind};

/// Lines kept per step; older ones are counted, not kept, so a noisy command
/// never grows memory without bound. The journal keeps everything.
pub(crate) const OUTPUT_LINES: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    AwaitingConfirm,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckRecord {
    pub host: String,
    pub name: String,
    pub status: CheckStatus,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputLog {
    pub lines: VecDeque<(Stream, String)>,
    pub dropped: u64,
}

impl OutputLog {
    fn push(&mut self, stream: Stream, line: String) {
        if self.lines.len() == OUTPUT_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back((stream, line));
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepState {
    pub info: StepInfo,
    pub status: StepStatus,
    pub commands: Vec<String>,
    pub checks: Vec<CheckRecord>,
    pub output: OutputLog,
    pub progress: Option<(u64, Option<u64>)>,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: Option<jiff::Timestamp>,
    pub duration_ms: Option<u64>,
    pub outcome: Option<StepOutcome>,
    /// Outcomes of earlier attempts (a failure before a retry or a skip).
    pub earlier: Vec<StepOutcome>,
    pub attempts: u32,
    pub bytes_moved: u64,
    /// The latest round of a DNS step: seconds into the wait, and the table.
    pub propagation: Option<(u64, crate::dns::Report)>,
}

/// What the run waits for, read from the events alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// No RunStarted yet.
    NotStarted,
    /// Between steps; with a gated engine, for the go-ahead to run this one.
    Next(String),
    Running(String),
    Confirmation(String),
    /// A step failed: retry, skip (if optional) or abort.
    Decision(String),
    Finished,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunState {
    pub run_id: String,
    pub mode: crate::events::RunMode,
    pub profile: String,
    pub domain: String,
    pub source: String,
    pub target: String,
    pub steps: Vec<StepState>,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: Option<jiff::Timestamp>,
    pub duration_ms: Option<u64>,
    pub outcome: Option<RunOutcome>,
    /// (step, prompt) while the engine waits for a decision.
    pub awaiting: Option<(String, String)>,
    pub downtime_started: Option<jiff::Timestamp>,
    pub downtime_ended: Option<jiff::Timestamp>,
    /// The step whose success showed the new host serving, which ended the
    /// downtime: the profile's `downtime = "end"` step, or, when that one did
    /// not run (no `[dns] expect` for a pinned check), the last health check
    /// that answered before it.
    pub downtime_end_step: Option<String>,
    /// The last health check that answered while the instance was down.
    #[serde(skip)]
    serving_proof: Option<(jiff::Timestamp, String)>,
    /// How many times the run was resumed (same run id, same journal).
    pub resumes: u32,
    /// A rehearsal's account of the real run's downtime window.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forecast: Vec<crate::prediction::WindowStep>,
    /// The database move the rehearsal's preflight chose, with its forecast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_db_move: Option<String>,
    /// A real run's copy of the last rehearsal's prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rehearsal_prediction: Option<RehearsalPrediction>,
}

pub use crate::prediction::RehearsalPrediction;

impl RunState {
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> RunState {
        let mut s = RunState::default();
        for r in records {
            s.apply(r);
        }
        s
    }

    pub fn waiting(&self) -> Waiting {
        if self.outcome.is_some() {
            return Waiting::Finished;
        }
        if self.steps.is_empty() {
            return Waiting::NotStarted;
        }
        if let Some((step, _)) = &self.awaiting {
            return Waiting::Confirmation(step.clone());
        }
        if let Some(s) = self.steps.iter().find(|s| s.status == StepStatus::Running) {
            return Waiting::Running(s.info.id.clone());
        }
        // The engine stops at a failure once it reaches the failed step's
        // place: every step before it has run, and none after it started
        // since it failed. (A step that ran beside another can fail early,
        // while the steps before its place go on.)
        if let Some(i) = self.steps.iter().enumerate().position(|(i, f)| {
            f.status == StepStatus::Failed
                && self.steps[..i]
                    .iter()
                    .all(|s| s.status != StepStatus::Pending)
                && !self.steps[i + 1..]
                    .iter()
                    .any(|s| s.started_at.is_some() && s.started_at > f.finished_at)
        }) {
            return Waiting::Decision(self.steps[i].info.id.clone());
        }
        match self.steps.iter().find(|s| s.status == StepStatus::Pending) {
            Some(s) => Waiting::Next(s.info.id.clone()),
            None => Waiting::Finished,
        }
    }

    /// The run has begun and not ended: quitting now needs a second thought.
    pub(crate) fn in_progress(&self) -> bool {
        !matches!(self.waiting(), Waiting::NotStarted | Waiting::Finished)
            && self.steps.iter().any(|s| s.status != StepStatus::Pending)
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.info.id == id)
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut StepState> {
        self.steps.iter_mut().find(|s| s.info.id == id)
    }

    pub(crate) fn bytes_moved(&self) -> u64 {
        self.steps.iter().map(|s| s.bytes_moved).sum()
    }

    /// Downtime so far (to `now` while it lasts).
    pub fn downtime(&self, now: jiff::Timestamp) -> Option<jiff::SignedDuration> {
        let start = self.downtime_started?;
        let end = self.downtime_ended.or(self.finished_at).unwrap_or(now);
        Some(end.duration_since(start))
    }

    /// The rollback brought the old host back: it serves again.
    pub(crate) fn brought_back(&self) -> bool {
        self.step(crate::plan::ROLLBACK)
            .is_some_and(|s| s.status == StepStatus::Succeeded)
    }

    /// Of the finished downtime, the time no step was running: in the wizard,
    /// the time the admin took to answer and to go on; a few milliseconds
    /// headless. (A retried step counts with its last attempt only.)
    pub(crate) fn downtime_idle_ms(&self) -> Option<u64> {
        let (start, end) = (self.downtime_started?, self.downtime_ended?);
        let mut spans: Vec<(jiff::Timestamp, jiff::Timestamp)> = self
            .steps
            .iter()
            .filter_map(|s| Some((s.started_at?.max(start), s.finished_at?.min(end))))
            .filter(|(a, b)| a < b)
            .collect();
        spans.sort();
        let mut busy = jiff::SignedDuration::ZERO;
        let mut reach = start;
        for (a, b) in spans {
            if b > reach {
                busy += b.duration_since(a.max(reach));
                reach = b;
            }
        }
        let idle = end.duration_since(start) - busy;
        Some(u64::try_from(idle.as_millis()).unwrap_or(0))
    }

    /// The downtime ends with the first step that proves the new host
    /// serves: the profile's end step when it succeeds; when that step does
    /// not run (skipped by its condition, by itself or by the operator), the
    /// last health check that answered before it.
    fn end_downtime(
        &mut self,
        step: &str,
        outcome: &StepOutcome,
        mark: Option<DowntimeMark>,
        proves_serving: bool,
        ts: jiff::Timestamp,
    ) {
        if self.downtime_started.is_none() || self.downtime_ended.is_some() {
            return;
        }
        let succeeded = matches!(outcome, StepOutcome::Succeeded);
        match mark {
            Some(DowntimeMark::End) if succeeded => {
                self.downtime_ended = Some(ts);
                self.downtime_end_step = Some(step.to_string());
            }
            Some(DowntimeMark::End) if matches!(outcome, StepOutcome::Skipped { .. }) => {
                if let Some((at, proof)) = self.serving_proof.take() {
                    self.downtime_ended = Some(at);
                    self.downtime_end_step = Some(proof);
                }
            }
            _ if succeeded && proves_serving => {
                self.serving_proof = Some((ts, step.to_string()));
            }
            _ => {}
        }
    }

    /// A run begins, or a resumed one goes on in the same journal: what
    /// earlier attempts finished stays as they left it.
    fn run_started(&mut self, ts: jiff::Timestamp, event: &EngineEvent) {
        let EngineEvent::RunStarted {
            run_id,
            mode,
            profile,
            domain,
            source,
            target,
            steps,
            resumed,
        } = event
        else {
            return;
        };
        // A resumed run goes on in the same journal: what earlier
        // attempts finished stays as they left it.
        let earlier = if *run_id == self.run_id {
            std::mem::take(&mut self.steps)
        } else {
            Vec::new()
        };
        let (downtime_started, downtime_ended, end_step, proof) = (
            self.downtime_started,
            self.downtime_ended,
            self.downtime_end_step.take(),
            self.serving_proof.take(),
        );
        let first_started = self.started_at;
        let prior_resumes = self.resumes;
        *self = RunState {
            run_id: run_id.clone(),
            mode: *mode,
            profile: profile.clone(),
            domain: domain.clone(),
            source: source.clone(),
            target: target.clone(),
            started_at: Some(ts),
            steps: steps
                .iter()
                .map(|info| StepState {
                    info: info.clone(),
                    status: StepStatus::Pending,
                    commands: info.commands.clone(),
                    checks: Vec::new(),
                    output: OutputLog::default(),
                    progress: None,
                    started_at: None,
                    finished_at: None,
                    duration_ms: None,
                    outcome: None,
                    earlier: Vec::new(),
                    attempts: 0,
                    bytes_moved: 0,
                    propagation: None,
                })
                .collect(),
            ..RunState::default()
        };
        if !earlier.is_empty() {
            self.resumes = prior_resumes + 1;
            self.started_at = first_started;
            for old in earlier {
                let Some(s) = self.step_mut(&old.info.id) else {
                    continue;
                };
                if resumed.contains(&old.info.id) {
                    *s = old;
                } else {
                    // Attempts that did not finish stay on record.
                    s.earlier = old.earlier;
                    s.earlier.extend(old.outcome);
                    s.attempts = old.attempts;
                }
            }
            let kept_start = resumed.iter().any(|id| {
                self.step(id)
                    .is_some_and(|s| s.info.downtime == Some(DowntimeMark::Start))
            });
            if kept_start {
                self.downtime_started = downtime_started;
                self.downtime_ended = downtime_ended;
                self.downtime_end_step = end_step;
                self.serving_proof = proof;
            }
        }
    }

    fn step_finished(
        &mut self,
        ts: jiff::Timestamp,
        step: &str,
        outcome: &StepOutcome,
        duration_ms: u64,
    ) {
        self.awaiting = None;
        let mut mark = None;
        let mut proves_serving = false;
        if let Some(s) = self.step_mut(step) {
            s.status = match outcome {
                StepOutcome::Succeeded => StepStatus::Succeeded,
                StepOutcome::Failed { .. } => StepStatus::Failed,
                StepOutcome::Skipped { .. } => StepStatus::Skipped,
            };
            s.finished_at = Some(ts);
            if let Some(o) = s.outcome.take() {
                s.earlier.push(o);
            } else {
                s.duration_ms = Some(duration_ms);
            }
            s.outcome = Some(outcome.clone());
            if outcome.is_success()
                && let Some((bytes, _)) = s.progress
            {
                s.bytes_moved += bytes;
            }
            mark = s.info.downtime;
            proves_serving = s.info.kind == StepKind::Health;
        }
        self.end_downtime(step, outcome, mark, proves_serving, ts);
    }

    pub fn apply(&mut self, record: &Record) {
        let ts = record.ts;
        match &record.event {
            EngineEvent::RunStarted { .. } => self.run_started(ts, &record.event),
            EngineEvent::StepStarted { step, commands } => {
                self.awaiting = None;
                let mut starts_downtime = false;
                if let Some(s) = self.step_mut(step) {
                    s.status = StepStatus::Running;
                    if let Some(o) = s.outcome.take() {
                        s.earlier.push(o);
                    }
                    s.started_at = Some(ts);
                    s.attempts += 1;
                    s.progress = None;
                    if !commands.is_empty() {
                        s.commands = commands.clone();
                    }
                    starts_downtime = s.info.downtime == Some(DowntimeMark::Start);
                }
                if starts_downtime && self.downtime_started.is_none() {
                    self.downtime_started = Some(ts);
                }
            }
            EngineEvent::Output {
                step,
                stream,
                lines,
            } => {
                if let Some(s) = self.step_mut(step) {
                    for l in lines {
                        s.output.push(*stream, l.clone());
                    }
                }
            }
            EngineEvent::Progress { step, bytes, total } => {
                if let Some(s) = self.step_mut(step) {
                    s.progress = Some((*bytes, *total));
                }
            }
            EngineEvent::Check {
                step,
                host,
                name,
                status,
                message,
            } => {
                if let Some(s) = self.step_mut(step) {
                    s.checks.push(CheckRecord {
                        host: host.clone(),
                        name: name.clone(),
                        status: *status,
                        message: message.clone(),
                    });
                }
            }
            EngineEvent::Propagation {
                step,
                elapsed_s,
                report,
            } => {
                if let Some(s) = self.step_mut(step) {
                    s.propagation = Some((*elapsed_s, report.clone()));
                }
            }
            EngineEvent::AwaitingConfirm { step, prompt } => {
                if let Some(s) = self.step_mut(step) {
                    s.status = StepStatus::AwaitingConfirm;
                }
                self.awaiting = Some((step.clone(), prompt.clone()));
            }
            EngineEvent::StepFinished {
                step,
                outcome,
                duration_ms,
            } => self.step_finished(ts, step, outcome, *duration_ms),
            EngineEvent::RunFinished {
                outcome,
                duration_ms,
            } => {
                self.awaiting = None;
                self.outcome = Some(outcome.clone());
                self.finished_at = Some(ts);
                self.duration_ms = Some(*duration_ms);
            }
            EngineEvent::Forecast {
                window, db_move, ..
            } => {
                self.forecast = window.clone();
                self.forecast_db_move = Some(db_move.clone());
            }
            EngineEvent::Predicted(p) => {
                self.rehearsal_prediction = Some(p.clone());
            }
        }
    }
}

pub use crate::prediction::Prediction;

impl RunState {
    /// What a rehearsal predicts for the real night's downtime: its window
    /// walked with the durations measured here and the estimates made for
    /// what a rehearsal must not do (see [`crate::prediction`]). A journal
    /// from before forecasts had only the sum of the measured steps.
    pub fn predicted_downtime(&self) -> Option<Prediction> {
        use crate::prediction::{Basis, Part, Seen, predict};
        if self.mode != crate::events::RunMode::Rehearse {
            return None;
        }
        if !self.forecast.is_empty() {
            let seen = |id: &str| match self.step(id) {
                Some(s) if s.status == StepStatus::Succeeded => {
                    s.duration_ms.map_or(Seen::NotRun, Seen::Ran)
                }
                Some(s) if s.status == StepStatus::Skipped => Seen::Skipped,
                _ => Seen::NotRun,
            };
            return Some(predict(&self.forecast, seen, self.forecast_db_move.clone()));
        }
        let parts: Vec<Part> = self
            .steps
            .iter()
            .filter(|s| s.info.in_downtime && s.status == StepStatus::Succeeded)
            .filter_map(|s| {
                let ms = s.duration_ms?;
                Some(Part {
                    step: s.info.id.clone(),
                    ms,
                    basis: Basis::Measured,
                    beside: None,
                    adds_ms: ms,
                })
            })
            .collect();
        if parts.is_empty() {
            return None;
        }
        Some(Prediction {
            total_ms: parts.iter().map(|p| p.ms).sum(),
            parts,
            db_move: None,
        })
    }
}

/// Where a resumed run picks up, read from the earlier attempts' journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub run_id: String,
    /// Steps not run again.
    pub done: std::collections::BTreeSet<String>,
    /// The first step that runs (after preflight, which always runs again).
    pub first: String,
}

/// Finished steps are not repeated, except: preflight (facts and checks are
/// needed again), `finally` steps (they belong to the end), everything from the
/// downtime's start when a rollback brought the old host back (it has served
/// since, so the data must be moved again), and what a `finally` step removed.
pub fn resume_point(
    state: &RunState,
    steps: &[crate::profile::StepSpec],
) -> Result<ResumePoint, String> {
    use crate::profile::StepKind;
    if state.run_id.is_empty() {
        return Err("the journal holds no run".into());
    }
    if state.outcome == Some(RunOutcome::Succeeded) {
        return Err(format!(
            "run '{}' finished successfully; there is nothing to resume",
            state.run_id
        ));
    }
    let finished = |id: &str| {
        state
            .step(id)
            .is_some_and(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped))
    };
    let mut done: std::collections::BTreeSet<String> = steps
        .iter()
        .filter(|s| s.kind() != StepKind::Preflight && !s.finally && finished(&s.id))
        .map(|s| s.id.clone())
        .collect();
    if state.brought_back()
        && let Some(start) = steps
            .iter()
            .position(|s| s.downtime == Some(DowntimeMark::Start))
    {
        for s in &steps[start..] {
            done.remove(&s.id);
        }
    }
    for s in steps.iter().filter(|s| s.finally) {
        // Even a cleanup that failed halfway may have removed some of it.
        if state
            .step(&s.id)
            .is_some_and(|st| st.status != StepStatus::Pending)
        {
            for r in &s.resets {
                done.remove(r);
            }
        }
    }
    let first = steps
        .iter()
        .find(|s| s.kind() != StepKind::Preflight && !done.contains(&s.id))
        .map(|s| s.id.clone())
        .ok_or_else(|| {
            format!(
                "every step of run '{}' has finished; there is nothing to resume",
                state.run_id
            )
        })?;
    Ok(ResumePoint {
        run_id: state.run_id.clone(),
        done,
        first,
    })
}

#[cfg(test)]
mod tests;
