//! Redis, as the current official guide moves it: SAVE on the old host, stop
//! Redis on both (a Redis still running on the new host would overwrite the
//! copied file when it stops), copy dump.rdb, start it on the new host, and
//! check that it loaded as many keys as the old one had.

use std::time::{Duration, Instant};

use super::transfer::{CopySpec, copy_file};
use super::{Done, StepFailure, StepResult, run_checked, run_quiet_checked};
use crate::engine::events::Stream;
use crate::engine::{RunCtx, StepIo};
use crate::plan::Plan;
use crate::plan::profile::StepSpec;
use crate::plan::template::Vars;
use crate::remote::{Host, RemoteCommand, RunAs};

async fn cli(h: &Host, port: &str, args: &[&str]) -> Result<String, StepFailure> {
    let mut argv = vec!["redis-cli", "-p", port];
    argv.extend_from_slice(args);
    Ok(run_quiet_checked(h, &RemoteCommand::new(RunAs::Root, argv))
        .await?
        .stdout
        .trim()
        .to_string())
}

async fn dbsize(h: &Host, port: &str) -> Result<u64, StepFailure> {
    let out = cli(h, port, &["DBSIZE"]).await?;
    out.parse().map_err(|_| {
        StepFailure::on(
            h,
            format!("on {}: redis-cli DBSIZE answered '{out}'", h.name()),
        )
    })
}

pub async fn run(step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let service = ctx
        .vars
        .render(step.service.as_deref().unwrap_or("redis-server"))?;
    ctx.hosts().await?;
    let facts = ctx.facts.clone();
    let Some(hosts) = ctx.hosts.as_ref() else {
        return Err(StepFailure::new("not connected"));
    };
    let (src, dst) = (&hosts.source, &hosts.target);
    let (Some(from), Some(to)) = (facts.source_rdb, facts.target_rdb) else {
        return Err(StepFailure::new(
            "preflight did not find where Redis keeps its data on both hosts",
        ));
    };
    let port = facts.redis_port.as_str();

    let keys = dbsize(src, port).await?;
    let saved = cli(src, port, &["SAVE"]).await?;
    if saved != "OK" {
        return Err(StepFailure::on(
            src,
            format!("on {}: redis-cli SAVE answered '{saved}'", src.name()),
        ));
    }
    io.output(
        Stream::Stdout,
        format!("{}: SAVE done, {keys} keys", src.name()),
    );
    for h in [src, dst] {
        let stop = RemoteCommand::new(RunAs::Root, ["systemctl", "stop", service.as_str()]);
        io.output(Stream::Stdout, format!("{}$ {}", h.name(), stop.display()));
        run_checked(h, &stop, io).await?;
    }
    let owner = run_quiet_checked(
        src,
        &RemoteCommand::new(RunAs::Root, ["stat", "-c", "%a %U:%G", "--", from.as_str()]),
    )
    .await?
    .stdout;
    let mut parts = owner.split_whitespace();
    let mode = format!("0{}", parts.next().unwrap_or("660").trim_start_matches('0'));
    let owner = parts.next().map(str::to_string);
    copy_file(
        src,
        dst,
        &CopySpec {
            from,
            to,
            read_as: RunAs::Root,
            write_as: RunAs::Root,
            mode,
            owner,
            backup_suffix: None,
        },
        io,
    )
    .await?;
    let start = RemoteCommand::new(RunAs::Root, ["systemctl", "start", service.as_str()]);
    io.output(
        Stream::Stdout,
        format!("{}$ {}", dst.name(), start.display()),
    );
    run_checked(dst, &start, io).await?;

    let started = Instant::now();
    loop {
        let loading = cli(dst, port, &["INFO", "persistence"])
            .await
            .unwrap_or_default();
        if loading.lines().any(|l| l.trim() == "loading:0") {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(StepFailure::on(
                dst,
                format!(
                    "on {}: Redis did not finish loading its data within 120s",
                    dst.name()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let loaded = dbsize(dst, port).await?;
    if loaded != keys {
        return Err(StepFailure::on(
            dst,
            format!(
                "on {}: Redis loaded {loaded} keys, the old host had {keys}; is appendonly on, or did something write to it?",
                dst.name()
            ),
        ));
    }
    io.output(
        Stream::Stdout,
        format!(
            "{}: Redis up with {loaded} keys, as on {}",
            dst.name(),
            src.name()
        ),
    );
    Ok(Done::Completed)
}

pub fn describe(step: &StepSpec, plan: &Plan, vars: &Vars) -> Vec<String> {
    let service = vars.render_lenient(step.service.as_deref().unwrap_or("redis-server"));
    vec![
        format!("{}: redis-cli DBSIZE; redis-cli SAVE", plan.source),
        format!(
            "{} and {}: systemctl stop {service}",
            plan.source, plan.target
        ),
        format!(
            "dump.rdb {} -> {} through this machine, sha256 compared",
            plan.source, plan.target
        ),
        format!(
            "{}: systemctl start {service}; DBSIZE must equal the old host's",
            plan.target
        ),
    ]
}
