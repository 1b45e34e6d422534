//! `hikkoshi review --format markdown`: the report an admin pastes into a
//! maintenance log, folded from the journal like every other view.

use crate::engine::events::{RunOutcome, StepOutcome};
use crate::run_state::{RunState, StepStatus};
use crate::steps::preflight::human_bytes;
use crate::ui::tui::view::{clock, short_duration};

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn time(ts: Option<jiff::Timestamp>) -> String {
    ts.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn result_words(run: &RunState) -> String {
    match &run.outcome {
        None => "not finished (the run crashed or is still going)".into(),
        Some(RunOutcome::Succeeded) => "every step succeeded".into(),
        Some(RunOutcome::Incomplete { failed }) => {
            format!("finished, but optional steps failed: {}", failed.join(", "))
        }
        Some(RunOutcome::Failed { step }) => format!("FAILED at step '{step}'"),
        Some(RunOutcome::Aborted { step: Some(s) }) => format!("aborted at step '{s}'"),
        Some(RunOutcome::Aborted { step: None }) => "aborted".into(),
    }
}

/// One line for the end of a rehearsal, and for its report.
pub fn prediction_words(p: &crate::run_state::Prediction) -> String {
    let parts: Vec<String> = p
        .parts
        .iter()
        .map(|(id, ms)| format!("{id} {}", short_duration(*ms)))
        .collect();
    format!(
        "predicted downtime for the real run: {} ({}), plus stopping and starting the services and moving Redis, which a rehearsal leaves alone; the final media pass grows with what is uploaded between the pre-sync and the stop",
        short_duration(p.total_ms),
        parts.join(", ")
    )
}

pub fn markdown(run: &RunState) -> String {
    let mut out = format!(
        "# {} of {}: {} -> {}\n\n",
        if run.mode == "rehearse" {
            "Rehearsal"
        } else {
            "Migration"
        },
        run.domain,
        run.source,
        run.target
    );
    let now = run
        .finished_at
        .or(run.started_at)
        .unwrap_or_else(jiff::Timestamp::now);
    let downtime = match (run.downtime(now), run.downtime_ended) {
        (None, _) => "none (the old host's services were not stopped)".to_string(),
        (Some(d), Some(_)) => match &run.downtime_end_step {
            Some(step) => format!(
                "{} (over when step '{step}' showed the new host serving)",
                clock(d)
            ),
            None => clock(d),
        },
        (Some(d), None)
            if matches!(
                run.outcome,
                Some(RunOutcome::Succeeded | RunOutcome::Incomplete { .. })
            ) =>
        {
            format!(
                "{} until the run ended: no health check showed the new host serving",
                clock(d)
            )
        }
        (Some(d), None) => format!("{} and not over when the journal ends", clock(d)),
    };
    let rows = [
        ("run", run.run_id.clone()),
        ("mode", run.mode.clone()),
        ("profile", run.profile.clone()),
        ("started", time(run.started_at)),
        ("finished", time(run.finished_at)),
        ("result", result_words(run)),
        (
            "total time",
            run.duration_ms
                .map(short_duration)
                .unwrap_or_else(|| "-".into()),
        ),
        ("downtime", downtime),
        ("data moved", human_bytes(run.bytes_moved())),
        (
            "predicted downtime",
            run.predicted_downtime()
                .map_or_else(|| "-".into(), |p| prediction_words(&p)),
        ),
    ];
    out.push_str("| | |\n|---|---|\n");
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {} |\n", cell(&v)));
    }
    out.push_str("\n## Steps\n\n| phase | step | host | started | duration | result |\n|---|---|---|---|---|---|\n");
    for s in &run.steps {
        let result = match (&s.status, &s.outcome) {
            (StepStatus::Succeeded, _) => "ok".to_string(),
            (
                StepStatus::Failed,
                Some(StepOutcome::Failed {
                    exit_code: Some(c), ..
                }),
            ) => format!("FAILED (exit {c})"),
            (StepStatus::Failed, _) => "FAILED".into(),
            (StepStatus::Skipped, Some(StepOutcome::Skipped { reason })) => {
                format!("skipped: {reason}")
            }
            (StepStatus::Skipped, _) => "skipped".into(),
            (StepStatus::Running, _) => "running when the journal ends".into(),
            (StepStatus::AwaitingConfirm, _) => "waiting for confirmation".into(),
            (StepStatus::Pending, _) => "not run".into(),
        };
        let retried = if s.attempts > 1 {
            format!(" after {} attempts", s.attempts)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}{} |\n",
            cell(&s.info.phase_title),
            cell(&s.info.id),
            cell(&s.info.hosts.join(", ")),
            s.started_at
                .map(|t| t.strftime("%H:%M:%S").to_string())
                .unwrap_or_default(),
            s.duration_ms.map(short_duration).unwrap_or_default(),
            cell(&result),
            retried
        ));
    }
    let mut failures = String::new();
    for s in &run.steps {
        for outcome in s.earlier.iter().chain(s.outcome.iter()) {
            let StepOutcome::Failed {
                message,
                host,
                command,
                exit_code,
                first_error,
                stderr_tail,
            } = outcome
            else {
                continue;
            };
            let on = host
                .as_ref()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default();
            failures.push_str(&format!("\n### {}{on}\n\n{message}\n", s.info.id));
            if let Some(c) = command {
                failures.push_str(&format!("\n- command: `{}`", c.replace('`', "'")));
            }
            if let Some(code) = exit_code {
                failures.push_str(&format!("\n- exit code: {code}"));
            }
            if let Some(f) = first_error {
                failures.push_str(&format!("\n- first error: {f}"));
            }
            if !stderr_tail.is_empty() {
                failures.push_str(&format!("\n\n```\n{}\n```", stderr_tail.join("\n")));
            }
            failures.push('\n');
        }
    }
    if !failures.is_empty() {
        out.push_str("\n## Failures\n");
        out.push_str(&failures);
    }
    out
}
