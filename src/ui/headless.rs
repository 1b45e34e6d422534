//! The headless front end: a fold over the engine's records into plain lines
//! (and an indicatif bar for byte transfers when stdout is a terminal). Failure
//! details go to stderr, so a script sees step, host, command and cause there.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::EngineHandle;
use crate::events::{CheckStatus, EngineCommand, EngineEvent, RunOutcome, StepOutcome, Stream};
use crate::run_state::RunState;
use crate::ui::short_duration;
use crate::units::human_bytes;

pub struct HeadlessOptions {
    /// Confirm every step that asks, without asking.
    pub yes: bool,
    /// Stopping while the instance is down brings the old host back.
    pub rollback: bool,
}

struct Printer {
    bar: Option<ProgressBar>,
    tty: bool,
    /// For plain progress lines: the last tenth reported per step.
    last_tenth: Option<(String, u64)>,
}

impl Printer {
    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        }
    }

    fn error(&self, text: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn finish_bar(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    fn progress(&mut self, step: &str, bytes: u64, total: Option<u64>) {
        if self.tty {
            let bar = self.bar.get_or_insert_with(|| {
                let b = ProgressBar::new(total.unwrap_or(0));
                b.set_style(
                    ProgressStyle::with_template(
                        "  {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            });
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(bytes);
            return;
        }
        let Some(total) = total.filter(|t| *t > 0) else {
            return;
        };
        let tenth = bytes.saturating_mul(10) / total;
        let same_step = self.last_tenth.as_ref().is_some_and(|(s, _)| s == step);
        let last = self.last_tenth.as_ref().map_or(0, |(_, t)| *t);
        if !same_step || tenth > last {
            self.last_tenth = Some((step.to_string(), tenth));
            if tenth > 0 || !same_step {
                self.line(&format!(
                    "  {} of {} ({}%)",
                    human_bytes(bytes),
                    human_bytes(total),
                    bytes.saturating_mul(100) / total
                ));
            }
        }
    }
}

/// Asks on the terminal; anything but y/yes declines.
async fn ask(prompt: String) -> bool {
    tokio::task::spawn_blocking(move || {
        eprint!("{prompt} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    })
    .await
    .unwrap_or(false)
}

/// What to tell an admin whose instance is down because the run stopped midway.
fn down_advice(state: &RunState) -> String {
    let stop = state
        .steps
        .iter()
        .find(|s| s.info.downtime == Some(crate::profile::DowntimeMark::Start));
    let what = stop
        .map(|s| {
            format!(
                "step '{}' stopped services on {} ({})",
                s.info.id,
                state.source,
                s.commands.join("; ")
            )
        })
        .unwrap_or_else(|| format!("services on {} are stopped", state.source));
    format!(
        "hikkoshi: {} is DOWN: {what}, and {} is not live yet.\n  To bring {} back now, start what that step stopped there.\n  To go on from where the run stopped: hikkoshi run --resume (with the same --config; a database this run partly restored on {} is dropped by its marker and restored again).",
        state.domain, state.target, state.source, state.target
    )
}

/// A run that finished without any step showing that the new host serves
/// (a profile whose health checks all had nothing to ask).
fn unproven_advice(state: &RunState) -> String {
    let why: Vec<String> = state
        .steps
        .iter()
        .filter(|s| s.info.kind == crate::profile::StepKind::Health)
        .filter_map(|s| match &s.outcome {
            Some(StepOutcome::Skipped { reason }) => Some(format!("'{}': {reason}", s.info.id)),
            _ => None,
        })
        .collect();
    format!(
        "hikkoshi: every step finished, but no health check showed that {} serves {}{}.\n  Check it yourself before DNS sends anyone there; the downtime clock ran until the end of the run.",
        state.target,
        state.domain,
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join("; "))
        }
    )
}

/// A run that stopped after it began creating the target database leaves it
/// in place (with hikkoshi's marker): say so, and how to go on.
fn partial_database(state: &RunState) -> Option<String> {
    if matches!(state.outcome, Some(RunOutcome::Succeeded) | None) {
        return None;
    }
    let restore = state
        .steps
        .iter()
        .find(|s| s.status != crate::run_state::StepStatus::Pending && s.info.creates_database)?;
    let verified = state.steps.iter().any(|s| {
        s.info.kind == crate::profile::StepKind::Verify
            && s.status == crate::run_state::StepStatus::Succeeded
    });
    (!verified).then(|| {
        format!(
            "hikkoshi: the database that step '{}' creates on {} stays there if it got that far, unverified and marked with this run's id: 'hikkoshi run --resume' drops it and restores again; a new run or rehearsal refuses it unless given --reset-target",
            restore.info.id, state.target
        )
    })
}

/// Runs the engine to the end and returns what happened.
pub async fn run(mut handle: EngineHandle, opts: HeadlessOptions) -> (RunState, Option<String>) {
    let mut state = RunState::default();
    let mut p = Printer {
        bar: None,
        tty: std::io::stdout().is_terminal(),
        last_tenth: None,
    };
    let interactive = std::io::stdin().is_terminal();
    let stop = if opts.rollback {
        EngineCommand::Rollback
    } else {
        EngineCommand::Abort
    };
    let interrupt = on_interrupt(handle.commands.clone(), stop);
    // With steps running beside each other, a line from a step other than the
    // one whose header came last names its step.
    let mut header = String::new();
    while let Some(record) = handle.records.recv().await {
        state.apply(&record);
        let reply = match &record.event {
            EngineEvent::AwaitingConfirm { step, prompt } => {
                Some(confirm(&mut p, &opts, interactive, stop, step, prompt).await)
            }
            EngineEvent::StepFinished {
                step,
                outcome,
                duration_ms,
            } => step_finished(&mut p, &state, &opts, stop, step, outcome, *duration_ms),
            EngineEvent::RunFinished {
                outcome,
                duration_ms,
            } => {
                run_finished(&mut p, &state, outcome, *duration_ms);
                None
            }
            other => {
                show(&mut p, &state, &mut header, other);
                None
            }
        };
        if let Some(decision) = reply {
            let _ = handle.commands.send(decision);
        }
    }
    interrupt.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut handle.task).await;
    let journal_error = handle.pipeline.await.ok().flatten();
    (state, journal_error)
}

/// Ctrl-C or SIGTERM stops the running step and ends the run (rolling back
/// when that is what a failure would do).
fn on_interrupt(
    commands: tokio::sync::mpsc::UnboundedSender<EngineCommand>,
    stop: EngineCommand,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        eprintln!("hikkoshi: interrupted; stopping the running step and ending the run");
        let _ = commands.send(stop);
    })
}

/// Every event that only prints.
fn show(p: &mut Printer, state: &RunState, header: &mut String, event: &EngineEvent) {
    match event {
        EngineEvent::RunStarted {
            run_id,
            mode,
            domain,
            source,
            target,
            steps,
            ..
        } => {
            p.line(&format!(
                "hikkoshi {mode} {run_id}: {domain}, {source} -> {target}, {} step{}",
                steps.len(),
                if steps.len() == 1 { "" } else { "s" }
            ));
        }
        EngineEvent::StepStarted { step, .. } => {
            p.finish_bar();
            header.clone_from(step);
            if let Some(s) = state.step(step) {
                let again = if s.attempts > 1 {
                    format!(" (attempt {})", s.attempts)
                } else {
                    String::new()
                };
                p.line(&format!(
                    "==> {} / {}: {}{again}",
                    s.info.phase_title, s.info.id, s.info.title
                ));
            }
        }
        EngineEvent::Check {
            step,
            host,
            name,
            status,
            message,
        } => {
            let host = if step == header {
                host.clone()
            } else {
                format!("[{step}] {host}")
            };
            let mark = match status {
                CheckStatus::Pass => "ok  ",
                CheckStatus::Warn => "WARN",
                CheckStatus::Fail => "FAIL",
            };
            let message = message.replace('\n', "\n         ");
            p.line(&format!("  [{mark}] {host}: {name}: {message}"));
        }
        EngineEvent::Output {
            step,
            lines,
            stream,
        } => {
            let from = if step == header {
                String::new()
            } else {
                format!("[{step}] ")
            };
            for l in lines {
                let prefix = if *stream == Stream::Stderr {
                    "  ! "
                } else {
                    "  | "
                };
                p.line(&format!("{prefix}{from}{l}"));
            }
        }
        EngineEvent::Progress { step, bytes, total } => p.progress(step, *bytes, *total),
        EngineEvent::Forecast { window, .. } => {
            for w in window {
                if let Some(e) = &w.estimate {
                    let figure = e.ms.map_or_else(
                        || "not measured".to_string(),
                        |ms| format!("~{}", short_duration(ms)),
                    );
                    p.line(&format!(
                        "  estimate for the real run: {} {figure}: {}",
                        w.id, e.how
                    ));
                }
            }
        }
        EngineEvent::Predicted(r) => p.line(&format!(
            "the last rehearsal ({}, {}) predicted a downtime of {}",
            r.rehearsal,
            r.journal,
            short_duration(r.prediction.total_ms)
        )),
        EngineEvent::Propagation {
            elapsed_s, report, ..
        } => p.line(&format!(
            "  [{elapsed_s:>4}s] {}",
            crate::dns::summary(report)
        )),
        _ => {}
    }
}

/// --yes confirms, a terminal asks, anything else stops the run.
async fn confirm(
    p: &mut Printer,
    opts: &HeadlessOptions,
    interactive: bool,
    stop: EngineCommand,
    step: &str,
    prompt: &str,
) -> EngineCommand {
    p.finish_bar();
    if opts.yes {
        p.line(&format!("  confirm: {prompt} (yes: --yes)"));
        EngineCommand::Confirm
    } else if interactive {
        if ask(format!("  {step}: {prompt}\n  go ahead?")).await {
            EngineCommand::Confirm
        } else {
            p.line("  declined");
            stop
        }
    } else {
        p.error(&format!(
            "hikkoshi: step '{step}' needs confirmation ({prompt}) and there is no terminal to ask; pass --yes to confirm every step"
        ));
        stop
    }
}

/// Says how a step ended; a failure is answered: headless has nobody to ask,
/// so optional steps are passed over (with --yes) and anything else ends the run.
fn step_finished(
    p: &mut Printer,
    state: &RunState,
    opts: &HeadlessOptions,
    stop: EngineCommand,
    step: &str,
    outcome: &StepOutcome,
    duration_ms: u64,
) -> Option<EngineCommand> {
    p.finish_bar();
    match outcome {
        StepOutcome::Succeeded => {
            p.line(&format!(
                "    done: {step} ({})",
                short_duration(duration_ms)
            ));
            None
        }
        StepOutcome::Skipped { reason } => {
            p.line(&format!("    skipped: {step}: {reason}"));
            None
        }
        StepOutcome::Failed {
            message,
            host,
            command,
            exit_code,
            first_error,
            stderr_tail,
        } => {
            let mut text = format!(
                "hikkoshi: step '{step}' failed after {}",
                short_duration(duration_ms)
            );
            if let Some(h) = host {
                text.push_str(&format!(" on {h}"));
            }
            text.push_str(&format!(":\n  {}", message.replace('\n', "\n  ")));
            if let Some(c) = command {
                text.push_str(&format!("\n  command: {c}"));
            }
            if let Some(code) = exit_code {
                text.push_str(&format!("\n  exit code: {code}"));
            }
            if let Some(f) = first_error
                && !message.contains(f.as_str())
            {
                text.push_str(&format!("\n  first error: {f}"));
            }
            if !stderr_tail.is_empty() {
                text.push_str("\n  last lines:");
                for l in stderr_tail.iter().rev().take(10).rev() {
                    text.push_str(&format!("\n    {l}"));
                }
            }
            p.error(&text);
            let optional = state.step(step).is_some_and(|s| s.info.optional);
            if optional && opts.yes {
                p.line(&format!("    {step} is optional: going on without it"));
                Some(EngineCommand::Skip)
            } else {
                Some(stop)
            }
        }
    }
}

/// The run's end: its outcome, the downtime, what moved, and what to do when
/// the instance is still down.
fn run_finished(p: &mut Printer, state: &RunState, outcome: &RunOutcome, duration_ms: u64) {
    p.finish_bar();
    let downtime = state
        .downtime(jiff::Timestamp::now())
        .map(|d| {
            format!(
                ", downtime {}{}",
                short_duration(u64::try_from(d.as_millis()).unwrap_or(0)),
                state
                    .downtime_end_step
                    .as_ref()
                    .map(|s| format!(" (over at step '{s}')"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let moved = match state.bytes_moved() {
        0 => String::new(),
        b => format!(", {} moved", human_bytes(b)),
    };
    let total = short_duration(duration_ms);
    match outcome {
        RunOutcome::Succeeded => {
            p.line(&format!(
                "finished: every step succeeded in {total}{downtime}{moved}"
            ));
            if let Some(line) = crate::ui::review::predicted_and_measured(state) {
                p.line(&line);
            }
        }
        RunOutcome::Incomplete { failed } => p.error(&format!(
            "hikkoshi: finished in {total}{downtime}, but optional step{} {} failed",
            if failed.len() == 1 { "" } else { "s" },
            failed.join(", ")
        )),
        RunOutcome::Failed { step } => p.error(&format!(
            "hikkoshi: stopped at step '{step}' after {total}{downtime}"
        )),
        RunOutcome::Aborted { step } => p.error(&format!(
            "hikkoshi: aborted{} after {total}{downtime}",
            step.as_ref()
                .map(|s| format!(" at step '{s}'"))
                .unwrap_or_default()
        )),
    }
    let brought_back = state.brought_back();
    let finished = matches!(
        outcome,
        RunOutcome::Succeeded | RunOutcome::Incomplete { .. }
    );
    if state.downtime_started.is_some() && state.downtime_ended.is_none() && !brought_back {
        if finished {
            p.error(&unproven_advice(state));
        } else {
            p.error(&down_advice(state));
        }
    }
    if let Some(note) = partial_database(state) {
        p.error(&note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunMode;
    use crate::journal::Record;

    fn record(event: EngineEvent) -> Record {
        Record {
            ts: jiff::Timestamp::from_second(0).expect("valid"),
            event,
        }
    }

    /// A Mastodon run that failed at `failed`, after the steps before it succeeded.
    fn failed_at(failed: &str) -> RunState {
        let config = crate::config::Config::parse(
            std::path::Path::new("/x/migration.toml"),
            "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n",
        )
        .expect("config");
        let plan = crate::plan::Plan::build(&config).expect("plan");
        let infos = crate::steps::describe::infos(&plan);
        let mut records = vec![record(EngineEvent::RunStarted {
            run_id: "r".into(),
            mode: RunMode::Run,
            profile: "mastodon".into(),
            domain: "a.example".into(),
            source: "old".into(),
            target: "new".into(),
            steps: infos.clone(),
            resumed: Vec::new(),
        })];
        for info in &infos {
            records.push(record(EngineEvent::StepStarted {
                step: info.id.clone(),
                commands: vec![],
            }));
            let outcome = if info.id == failed {
                StepOutcome::Failed {
                    message: "exit 1".into(),
                    host: None,
                    command: None,
                    exit_code: Some(1),
                    first_error: None,
                    stderr_tail: vec![],
                }
            } else {
                StepOutcome::Succeeded
            };
            records.push(record(EngineEvent::StepFinished {
                step: info.id.clone(),
                outcome,
                duration_ms: 1,
            }));
            if info.id == failed {
                break;
            }
        }
        records.push(record(EngineEvent::RunFinished {
            outcome: RunOutcome::Failed {
                step: failed.into(),
            },
            duration_ms: 1,
        }));
        // Front ends see what the journal holds: each record as it comes
        // back from JSON.
        let records: Vec<Record> = records
            .iter()
            .map(|r| {
                let line = serde_json::to_string(r).expect("serialises");
                serde_json::from_str(&line).expect("reads back")
            })
            .collect();
        RunState::from_records(&records)
    }

    #[test]
    fn the_database_left_behind_is_named_by_the_step_that_creates_it() {
        let note = partial_database(&failed_at("restore")).expect("a note");
        assert!(note.contains("step 'restore' creates on new"), "{note}");
        assert_eq!(partial_database(&failed_at("dump")), None);
        // Once verified, the database is no longer a half-made one.
        assert_eq!(partial_database(&failed_at("final-media")), None);
    }
}
