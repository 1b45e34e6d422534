//! The engine's vocabulary: commands in, events out. The journal, the headless
//! output, the TUI and `review` all consume exactly these types.

use serde::{Deserialize, Serialize};

use crate::plan::StepInfo;

/// What a front end may ask of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineCommand {
    /// Run the next step, when the engine waits before each one (the wizard).
    Start,
    /// Go ahead with the step that is awaiting confirmation.
    Confirm,
    /// Skip the step awaiting confirmation, or a failed step marked optional.
    Skip,
    /// Run the failed step again.
    Retry,
    /// Stop the run; a running step is cancelled.
    Abort,
    /// Stop the run, and if the old host was stopped and the new one is not
    /// live yet, undo what the steps that ran can undo, so the instance comes back.
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    /// `first_error` is the first line that looked like an error: with pg_restore the
    /// last lines are usually a cascade of consequences, the first one is the cause.
    Failed {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_error: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stderr_tail: Vec<String>,
    },
    Skipped {
        reason: String,
    },
}

impl StepOutcome {
    pub fn failed(message: impl Into<String>) -> Self {
        StepOutcome::Failed {
            message: message.into(),
            host: None,
            command: None,
            exit_code: None,
            first_error: None,
            stderr_tail: Vec::new(),
        }
    }

    pub(crate) fn is_success(&self) -> bool {
        matches!(self, StepOutcome::Succeeded)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    /// Reached the end, but optional steps failed and were skipped.
    Incomplete {
        failed: Vec<String>,
    },
    Failed {
        step: String,
    },
    Aborted {
        step: Option<String>,
    },
}

/// What a run is for: it decides what preflight takes (the lock), whether
/// the restored copy is treated as live, and which front-end words apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// The move itself.
    #[default]
    Run,
    /// Preflight only.
    Check,
    /// A staging copy on the new host while the old one keeps serving.
    Rehearse,
}

impl RunMode {
    pub fn name(self) -> &'static str {
        match self {
            RunMode::Run => "run",
            RunMode::Check => "check",
            RunMode::Rehearse => "rehearse",
        }
    }
}

impl std::fmt::Display for RunMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of the journal. Every field a reader needs later (titles, hosts,
/// rendered commands) travels in the events themselves, so a journal can be
/// reviewed without the config or profile that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum EngineEvent {
    RunStarted {
        run_id: String,
        mode: RunMode,
        profile: String,
        domain: String,
        source: String,
        target: String,
        steps: Vec<StepInfo>,
        /// A resumed run: the steps earlier attempts finished, not run again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resumed: Vec<String>,
    },
    StepStarted {
        step: String,
        /// The commands as they run, with facts from preflight filled in and secrets redacted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        commands: Vec<String>,
    },
    Output {
        step: String,
        stream: Stream,
        lines: Vec<String>,
    },
    Progress {
        step: String,
        bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    Check {
        step: String,
        host: String,
        name: String,
        status: CheckStatus,
        message: String,
    },
    /// One round of asking resolvers for the domain: the table as it stands.
    Propagation {
        step: String,
        elapsed_s: u64,
        report: crate::dns::Report,
    },
    AwaitingConfirm {
        step: String,
        prompt: String,
    },
    StepFinished {
        step: String,
        outcome: StepOutcome,
        duration_ms: u64,
    },
    RunFinished {
        outcome: RunOutcome,
        duration_ms: u64,
    },
    /// A rehearsal's account of the real run's downtime window: its steps in
    /// order, with an estimate for each one a rehearsal must not run.
    Forecast {
        step: String,
        window: Vec<crate::prediction::WindowStep>,
        /// How preflight chose to move the database ("file", "stream",
        /// "parallel", or "from a backup"): the run chooses the same way.
        db_move: String,
    },
    /// The real run's copy of the last rehearsal's prediction, so that its
    /// journal alone says what was expected.
    Predicted(crate::prediction::RehearsalPrediction),
}

impl EngineEvent {
    pub fn step(&self) -> Option<&str> {
        match self {
            EngineEvent::StepStarted { step, .. }
            | EngineEvent::Output { step, .. }
            | EngineEvent::Progress { step, .. }
            | EngineEvent::Check { step, .. }
            | EngineEvent::Propagation { step, .. }
            | EngineEvent::AwaitingConfirm { step, .. }
            | EngineEvent::StepFinished { step, .. }
            | EngineEvent::Forecast { step, .. } => Some(step),
            EngineEvent::RunStarted { .. }
            | EngineEvent::RunFinished { .. }
            | EngineEvent::Predicted(_) => None,
        }
    }
}
