//! `hikkoshi review --format markdown`: the report an admin pastes into a
//! maintenance log, folded from the journal like every other view.

use crate::events::{RunOutcome, StepOutcome};
use crate::run_state::{RunState, StepStatus};
use crate::ui::{clock, short_duration};
use crate::units::human_bytes;

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
    use crate::prediction::Basis;
    let parts: Vec<String> = p
        .parts
        .iter()
        .filter(|part| part.basis != Basis::Skipped)
        .map(|part| {
            let mut w = format!("{} {}", part.step, short_duration(part.ms));
            if let Some(l) = &part.beside {
                if part.adds_ms == 0 {
                    w.push_str(&format!(" beside {l}, hidden by it"));
                } else {
                    w.push_str(&format!(
                        " beside {l}, adding {}",
                        short_duration(part.adds_ms)
                    ));
                }
            }
            match &part.basis {
                Basis::Estimated { how, at_least } => w.push_str(&format!(
                    " ({}estimated: {how})",
                    if *at_least { "at least; " } else { "" }
                )),
                Basis::Unknown { how } => {
                    w = format!("{} not counted ({how})", part.step);
                }
                Basis::Measured | Basis::Skipped => {}
            }
            w
        })
        .collect();
    let unknown = if !p.open_ended() {
        String::new()
    } else {
        " at least".to_string()
    };
    format!(
        "predicted downtime for the real run:{unknown} {}{} = {}; the final media pass grows with what is uploaded between the pre-sync and the stop",
        short_duration(p.total_ms),
        p.db_move
            .as_ref()
            .map(|m| format!(" (database move: {m})"))
            .unwrap_or_default(),
        parts.join(", ")
    )
}

/// A real run's measured downtime beside what its last rehearsal predicted.
pub(crate) fn predicted_and_measured(run: &RunState) -> Option<String> {
    let r = run.rehearsal_prediction.as_ref()?;
    let predicted = r.prediction.total_ms;
    let at_least = if !r.prediction.open_ended() {
        ""
    } else {
        "at least "
    };
    let measured = run.downtime_ended.and_then(|end| {
        let d = end.duration_since(run.downtime_started?);
        u64::try_from(d.as_millis()).ok()
    });
    // The prediction has no time for answering questions: a wizard's run is
    // compared without it.
    let idle = run.downtime_idle_ms().unwrap_or(0);
    Some(match measured {
        Some(ms) if predicted > 0 && idle >= 1000 => {
            let worked = ms.saturating_sub(idle);
            let off = (worked as f64 - predicted as f64) / predicted as f64 * 100.0;
            format!(
                "downtime {} measured, {} of it waiting for your answers; rehearsal {} predicted {at_least}{} for the rest, {} ({off:+.0}%)",
                short_duration(ms),
                short_duration(idle),
                r.rehearsal,
                short_duration(predicted),
                short_duration(worked),
            )
        }
        Some(ms) if predicted > 0 => {
            let off = (ms as f64 - predicted as f64) / predicted as f64 * 100.0;
            format!(
                "downtime {} measured; rehearsal {} predicted {at_least}{} ({off:+.0}%)",
                short_duration(ms),
                r.rehearsal,
                short_duration(predicted),
            )
        }
        _ => format!(
            "rehearsal {} predicted a downtime of {at_least}{}",
            r.rehearsal,
            short_duration(predicted)
        ),
    })
}

/// What a line of the end-of-run summary is, for its style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Heading,
    Plain,
}

/// What an admin wants when a run has ended: the result, the downtime, what
/// moved, what is left to do by hand, and where the journal is.
pub(crate) fn end_summary(run: &RunState, journal: Option<&str>) -> Vec<(Tone, String)> {
    use crate::events::CheckStatus;
    let mut out = Vec::new();
    let succeeded = matches!(
        run.outcome,
        Some(RunOutcome::Succeeded | RunOutcome::Incomplete { .. })
    );
    let total = run.duration_ms.map(short_duration).unwrap_or_default();
    out.push((
        if succeeded { Tone::Good } else { Tone::Bad },
        format!("{}: {} in {total}", run.domain, result_words(run)),
    ));
    let brought_back = run.brought_back();
    downtime_lines(run, succeeded, brought_back, &mut out);
    // The first failure that ended the run, as the step said it.
    if !succeeded
        && let Some(message) = run.steps.iter().find_map(|s| match &s.outcome {
            Some(StepOutcome::Failed { message, .. }) if s.info.id != crate::plan::ROLLBACK => {
                Some(format!("step '{}': {message}", s.info.id))
            }
            _ => None,
        })
    {
        out.push((Tone::Bad, message));
    }
    let mut moved = Vec::new();
    if run.bytes_moved() > 0 {
        moved.push(format!(
            "{} through this machine",
            human_bytes(run.bytes_moved())
        ));
    }
    for s in &run.steps {
        for c in s
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Pass && c.name == "row counts")
        {
            moved.push(format!("database: {}", c.message));
        }
    }
    if !moved.is_empty() {
        out.push((Tone::Plain, format!("moved: {}", moved.join("; "))));
    }
    left_by_hand(run, succeeded, brought_back, &mut out);
    if let Some(j) = journal {
        out.push((Tone::Heading, "journal".into()));
        out.push((Tone::Plain, j.to_string()));
        out.push((
            Tone::Plain,
            format!("review it: hikkoshi review {j} --format markdown"),
        ));
    }
    out
}

/// How long the instance was down, and how it ended (or that it has not).
fn downtime_lines(
    run: &RunState,
    succeeded: bool,
    brought_back: bool,
    out: &mut Vec<(Tone, String)>,
) {
    let now = run.finished_at.unwrap_or_else(jiff::Timestamp::now);
    match (run.downtime(now), run.downtime_ended) {
        (None, _) => out.push((
            Tone::Plain,
            format!(
                "{} kept serving: its services were never stopped",
                run.source
            ),
        )),
        (Some(d), Some(_)) => {
            let by = run
                .downtime_end_step
                .as_ref()
                .map(|s| format!(", over when '{s}' showed {} serving", run.target))
                .unwrap_or_default();
            out.push((Tone::Good, format!("downtime {}{by}", clock(d))));
            if let Some(p) = predicted_and_measured(run) {
                out.push((Tone::Plain, p));
            }
        }
        (Some(d), None) if brought_back => out.push((
            Tone::Plain,
            format!(
                "{} serves again: the rollback brought it back after {} down",
                run.source,
                clock(d)
            ),
        )),
        (Some(d), None) if succeeded => out.push((
            Tone::Bad,
            format!(
                "down {} until the run ended: no health check showed {} serving; check it yourself",
                clock(d),
                run.target
            ),
        )),
        (Some(d), None) => out.push((
            Tone::Bad,
            format!(
                "{} is DOWN ({} so far): {} is stopped and {} is not live",
                run.domain,
                clock(d),
                run.source,
                run.target
            ),
        )),
    }
}

/// What the admin still has to do, by outcome.
fn left_by_hand(
    run: &RunState,
    succeeded: bool,
    brought_back: bool,
    out: &mut Vec<(Tone, String)>,
) {
    out.push((Tone::Heading, "left to do by hand".into()));
    if succeeded {
        out.push((
            Tone::Plain,
            format!(
                "- {} keeps all its data (database, media, config): nothing there was deleted; remove it yourself once you are sure",
                run.source
            ),
        ));
        out.push((
            Tone::Plain,
            format!(
                "- TLS certificates: renewal (certbot or the like) must run on {} from now on, and no longer on {}",
                run.target, run.source
            ),
        ));
        let dns = run
            .steps
            .iter()
            .find(|s| s.info.kind == crate::profile::StepKind::Dns);
        out.push((
            Tone::Plain,
            match dns.map(|s| (&s.status, &s.outcome)) {
                Some((StepStatus::Succeeded, _)) => format!(
                    "- DNS: every resolver asked answers with {}'s address; others follow as their caches expire",
                    run.target
                ),
                Some((_, Some(StepOutcome::Skipped { reason }))) => {
                    format!("- DNS: {reason}")
                }
                _ => format!(
                    "- DNS: point {} at {} if it does not yet",
                    run.domain, run.target
                ),
            },
        ));
    } else if brought_back || run.downtime_started.is_none() {
        out.push((
            Tone::Plain,
            format!(
                "- nothing on {} changed; fix the cause above, then run again (hikkoshi run --resume goes on from where it stopped)",
                run.source
            ),
        ));
    } else {
        out.push((
            Tone::Bad,
            format!(
                "- to go on: hikkoshi run --resume with the same --config; to bring {} back now, start what stop-source stopped there",
                run.source
            ),
        ));
    }
}

pub fn markdown(run: &RunState) -> String {
    let mut out = format!(
        "# {} of {}: {} -> {}\n\n",
        if run.mode == crate::events::RunMode::Rehearse {
            "Rehearsal"
        } else {
            "Migration"
        },
        run.domain,
        run.source,
        run.target
    );
    let rows = summary_rows(run, downtime_words(run));
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
    let failures = failures_text(run);
    if !failures.is_empty() {
        out.push_str("\n## Failures\n");
        out.push_str(&failures);
    }
    out
}

/// The downtime as the report says it.
fn downtime_words(run: &RunState) -> String {
    let now = run
        .finished_at
        .or(run.started_at)
        .unwrap_or_else(jiff::Timestamp::now);
    match (run.downtime(now), run.downtime_ended) {
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
    }
}

/// The run's key figures, for the report's first table.
fn summary_rows(run: &RunState, downtime: String) -> Vec<(&'static str, String)> {
    vec![
        ("run", run.run_id.clone()),
        ("mode", run.mode.to_string()),
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
                .map(|p| prediction_words(&p))
                .or_else(|| {
                    let r = run.rehearsal_prediction.as_ref()?;
                    Some(format!(
                        "{} (journal {})",
                        predicted_and_measured(run)?,
                        r.journal
                    ))
                })
                .unwrap_or_else(|| "-".into()),
        ),
    ]
}

/// Every failure of every attempt, with its command, exit and last lines.
fn failures_text(run: &RunState) -> String {
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
    failures
}
