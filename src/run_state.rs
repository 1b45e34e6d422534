//! "What happened": the fold of journal records into a run's state. The headless
//! output, the TUI and `review` all read this; none keeps its own account.

use std::collections::VecDeque;

use serde::Serialize;

use crate::engine::events::{CheckStatus, EngineEvent, RunOutcome, StepOutcome, Stream};
use crate::journal::Record;
use crate::plan::StepInfo;
use crate::plan::profile::DowntimeMark;

/// Lines kept per step; older ones are counted, not kept, so a noisy command
/// never grows memory without bound. The journal keeps everything.
pub const OUTPUT_LINES: usize = 2000;

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
    pub mode: String,
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
}

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
        // The engine stops at a failure, so a failed step with nothing started
        // after it is the one awaiting a decision.
        if let Some(last) = self
            .steps
            .iter()
            .rev()
            .find(|s| s.status != StepStatus::Pending)
            && last.status == StepStatus::Failed
        {
            return Waiting::Decision(last.info.id.clone());
        }
        match self.steps.iter().find(|s| s.status == StepStatus::Pending) {
            Some(s) => Waiting::Next(s.info.id.clone()),
            None => Waiting::Finished,
        }
    }

    /// The run has begun and not ended: quitting now needs a second thought.
    pub fn in_progress(&self) -> bool {
        !matches!(self.waiting(), Waiting::NotStarted | Waiting::Finished)
            && self.steps.iter().any(|s| s.status != StepStatus::Pending)
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.info.id == id)
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut StepState> {
        self.steps.iter_mut().find(|s| s.info.id == id)
    }

    pub fn bytes_moved(&self) -> u64 {
        self.steps.iter().map(|s| s.bytes_moved).sum()
    }

    /// Downtime so far (to `now` while it lasts).
    pub fn downtime(&self, now: jiff::Timestamp) -> Option<jiff::SignedDuration> {
        let start = self.downtime_started?;
        let end = self.downtime_ended.or(self.finished_at).unwrap_or(now);
        Some(end.duration_since(start))
    }

    pub fn apply(&mut self, record: &Record) {
        let ts = record.ts;
        match &record.event {
            EngineEvent::RunStarted {
                run_id,
                mode,
                profile,
                domain,
                source,
                target,
                steps,
            } => {
                *self = RunState {
                    run_id: run_id.clone(),
                    mode: mode.clone(),
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
            }
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
            } => {
                self.awaiting = None;
                let mut ends_downtime = false;
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
                        s.duration_ms = Some(*duration_ms);
                    }
                    s.outcome = Some(outcome.clone());
                    if outcome.is_success()
                        && let Some((bytes, _)) = s.progress
                    {
                        s.bytes_moved += bytes;
                    }
                    ends_downtime =
                        outcome.is_success() && s.info.downtime == Some(DowntimeMark::End);
                }
                if ends_downtime && self.downtime_started.is_some() && self.downtime_ended.is_none()
                {
                    self.downtime_ended = Some(ts);
                }
            }
            EngineEvent::RunFinished {
                outcome,
                duration_ms,
            } => {
                self.awaiting = None;
                self.outcome = Some(outcome.clone());
                self.finished_at = Some(ts);
                self.duration_ms = Some(*duration_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::profile::StepKind;

    fn info(id: &str, downtime: Option<DowntimeMark>) -> StepInfo {
        StepInfo {
            id: id.into(),
            phase: "downtime".into(),
            phase_title: "Downtime".into(),
            title: id.into(),
            why: String::new(),
            kind: StepKind::Command,
            hosts: vec!["old".into()],
            user: None,
            confirm: None,
            downtime,
            optional: false,
            when: vec![],
            commands: vec![],
        }
    }

    fn at(secs: i64, event: EngineEvent) -> Record {
        Record {
            ts: jiff::Timestamp::from_second(secs).expect("valid"),
            event,
        }
    }

    #[test]
    fn downtime_runs_from_stop_to_health() {
        let records = vec![
            at(
                0,
                EngineEvent::RunStarted {
                    run_id: "r".into(),
                    mode: "run".into(),
                    profile: "mastodon".into(),
                    domain: "d".into(),
                    source: "old".into(),
                    target: "new".into(),
                    steps: vec![
                        info("stop", Some(DowntimeMark::Start)),
                        info("move", None),
                        info("health", Some(DowntimeMark::End)),
                    ],
                },
            ),
            at(
                10,
                EngineEvent::StepStarted {
                    step: "stop".into(),
                    commands: vec![],
                },
            ),
            at(
                11,
                EngineEvent::StepFinished {
                    step: "stop".into(),
                    outcome: StepOutcome::Succeeded,
                    duration_ms: 1000,
                },
            ),
            at(
                12,
                EngineEvent::StepStarted {
                    step: "move".into(),
                    commands: vec![],
                },
            ),
            at(
                13,
                EngineEvent::Progress {
                    step: "move".into(),
                    bytes: 500,
                    total: Some(500),
                },
            ),
            at(
                14,
                EngineEvent::StepFinished {
                    step: "move".into(),
                    outcome: StepOutcome::Succeeded,
                    duration_ms: 2000,
                },
            ),
            at(
                15,
                EngineEvent::StepStarted {
                    step: "health".into(),
                    commands: vec![],
                },
            ),
            at(
                70,
                EngineEvent::StepFinished {
                    step: "health".into(),
                    outcome: StepOutcome::Succeeded,
                    duration_ms: 55000,
                },
            ),
            at(
                80,
                EngineEvent::RunFinished {
                    outcome: RunOutcome::Succeeded,
                    duration_ms: 80000,
                },
            ),
        ];
        let s = RunState::from_records(&records);
        assert_eq!(
            s.downtime(jiff::Timestamp::now()),
            Some(jiff::SignedDuration::from_secs(60))
        );
        assert_eq!(s.bytes_moved(), 500);
        assert_eq!(
            s.step("health").map(|x| x.status),
            Some(StepStatus::Succeeded)
        );
        assert_eq!(s.outcome, Some(RunOutcome::Succeeded));
    }

    #[test]
    fn output_is_bounded() {
        let mut log = OutputLog::default();
        for i in 0..(OUTPUT_LINES + 5) {
            log.push(Stream::Stdout, i.to_string());
        }
        assert_eq!(log.lines.len(), OUTPUT_LINES);
        assert_eq!(log.dropped, 5);
        assert_eq!(log.lines.front().map(|l| l.1.as_str()), Some("5"));
    }
}
