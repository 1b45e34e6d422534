//! Asks the new host's web service for its health URL, from the new host itself,
//! until it answers 200 or the step's time is up.

use std::time::{Duration, Instant};

use super::{Done, StepFailure, StepResult};
use crate::engine::events::Stream;
use crate::engine::{RunCtx, StepIo};
use crate::plan::profile::StepSpec;
use crate::remote::{RemoteCommand, RunAs};

pub async fn run(step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let url = ctx.vars.render(step.url.as_deref().unwrap_or_default())?;
    let limit = step
        .timeout
        .as_deref()
        .and_then(crate::config::parse_duration)
        .unwrap_or(Duration::from_secs(120));
    ctx.connect().await?;
    let hosts = ctx.connected()?;
    let dst = &hosts.target;
    let cmd = RemoteCommand::new(
        RunAs::Login,
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--",
            url.as_str(),
        ],
    );
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        let f = dst.run_quiet(&cmd).await?;
        let mut lines: Vec<&str> = f.stdout.lines().collect();
        let code = lines.pop().unwrap_or("").trim().to_string();
        let body: String = lines.join(" ").chars().take(200).collect();
        if f.success() && code == "200" {
            io.output(
                Stream::Stdout,
                format!(
                    "{}: {url} answered 200 after {:.1}s",
                    dst.name(),
                    started.elapsed().as_secs_f64()
                ),
            );
            return Ok(Done::Completed);
        }
        let why = if f.success() {
            format!("HTTP {code} {body}")
        } else {
            f.stderr_tail
                .last()
                .cloned()
                .unwrap_or_else(|| "no answer".into())
        };
        if started.elapsed() + wait > limit {
            return Err(StepFailure {
                command: Some(cmd.display()),
                ..StepFailure::on(
                    dst,
                    format!(
                        "on {}: {url} did not answer 200 within {}s; last answer: {why}; check the web service and its log on the new host",
                        dst.name(),
                        limit.as_secs()
                    ),
                )
            });
        }
        io.output(Stream::Stdout, format!("not yet: {why}"));
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
