//! Redis, as the current official guide moves it: SAVE on the old host, stop
//! Redis on both (a Redis still running on the new host would overwrite the
//! copied file when it stops), copy dump.rdb, start it on the new host, and
//! check that it loaded as many keys as the old one had.

use std::time::{Duration, Instant};

use super::transfer::{CopySpec, copy_file};
use super::{Done, StepFailure, StepResult, run_checked, run_quiet_checked};
use crate::events::Stream;
use crate::plan::Plan;
use crate::profile::RedisBody;
use crate::profile::template::{TemplateError, Vars};
use crate::remote::{Host, RemoteCommand, Role, RunAs};
use crate::runtime::services::Manager;
use crate::runtime::{Place, Runtime, cache};
use crate::steps::ctx::{RunCtx, StepIo};

async fn cli(h: &Host, at: &Place, port: &str, args: &[&str]) -> Result<String, StepFailure> {
    Ok(run_quiet_checked(h, &cache::cli(at, port, args))
        .await?
        .stdout
        .trim()
        .to_string())
}

/// (all keys, keys without an expiry) over every database, from INFO keyspace.
/// Keys with a TTL (caches, locks, rate limits) may expire during the copy;
/// the ones without must all arrive.
pub(crate) fn keyspace(info: &str) -> (u64, u64) {
    let mut all = 0;
    let mut persistent = 0;
    for line in info.lines().filter(|l| l.starts_with("db")) {
        let field = |name: &str| {
            line.split([':', ','])
                .find_map(|kv| {
                    kv.strip_prefix(name)?
                        .strip_prefix('=')?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        let (keys, expires) = (field("keys"), field("expires"));
        all += keys;
        persistent += keys.saturating_sub(expires);
    }
    (all, persistent)
}

async fn key_counts(h: &Host, at: &Place, port: &str) -> Result<(u64, u64), StepFailure> {
    Ok(keyspace(&cli(h, at, port, &["INFO", "keyspace"]).await?))
}

/// Redis answers before it has read its dump file: waits (two minutes at
/// most) until INFO says it is no longer loading.
async fn wait_loaded(dst: &Host, at: &Place, port: &str) -> Result<(), StepFailure> {
    let started = Instant::now();
    loop {
        let loading = cli(dst, at, port, &["INFO", "persistence"])
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
    Ok(())
}

/// Redis's service on a host: the profile's unit, or the stack's Redis.
fn names(
    step: &RedisBody,
    rt: &Runtime,
    render: impl Fn(&str) -> Result<String, TemplateError>,
) -> Result<Vec<String>, TemplateError> {
    Ok(match rt.services {
        Manager::Systemd => vec![render(&step.service)?],
        Manager::Compose(..) => rt.roles.get("redis").cloned().into_iter().collect(),
    })
}

/// Stops or starts Redis on a host through whatever runs it there.
async fn stop_or_start(
    h: &Host,
    rt: &Runtime,
    names: &[String],
    stop: bool,
    io: &StepIo,
) -> Result<(), StepFailure> {
    let cmds = if stop {
        rt.services.stop(names)
    } else {
        rt.services.start(names)
    };
    for cmd in cmds {
        io.output(Stream::Stdout, format!("{}$ {}", h.name(), cmd.display()));
        run_checked(h, &cmd, io).await?;
    }
    Ok(())
}

pub async fn run(step: &RedisBody, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let (src_rt, dst_rt) = (ctx.runtime(Role::Source), ctx.runtime(Role::Target));
    let (src_names, dst_names) = (
        names(step, &src_rt, |t| ctx.vars.render(t))?,
        names(step, &dst_rt, |t| ctx.vars.render(t))?,
    );
    let (src_at, dst_at) = (src_rt.cache.clone(), dst_rt.cache.clone());
    ctx.connect().await?;
    let facts = ctx.facts.clone();
    let hosts = ctx.connected()?;
    let (src, dst) = (&hosts.source, &hosts.target);
    let port = facts.redis_port.as_str();
    // A new stack's Redis did not run at preflight: its storage is known now.
    let target_rdb = match facts.target_rdb {
        Some(t) => Some(t),
        None => cache::info(dst, &dst_at, port)
            .await
            .ok()
            .and_then(|i| i.dump_file),
    };
    let (Some(from), Some(to)) = (facts.source_rdb, target_rdb) else {
        return Err(StepFailure::new(
            "preflight did not find where Redis keeps its data on both hosts",
        ));
    };

    let (keys, persistent) = key_counts(src, &src_at, port).await?;
    let saved = cli(src, &src_at, port, &["SAVE"]).await?;
    if saved != "OK" {
        return Err(StepFailure::on(
            src,
            format!("on {}: redis-cli SAVE answered '{saved}'", src.name()),
        ));
    }
    io.output(
        Stream::Stdout,
        format!(
            "{}: SAVE done, {keys} keys ({persistent} without expiry)",
            src.name()
        ),
    );
    stop_or_start(src, &src_rt, &src_names, true, io).await?;
    stop_or_start(dst, &dst_rt, &dst_names, true, io).await?;
    // A container's Redis owns its file by number (the image's uid), which
    // need not have a name on the host; a host's Redis by its user's name.
    let format = if matches!(dst_rt.services, Manager::Compose(..)) {
        "%a %u:%g"
    } else {
        "%a %U:%G"
    };
    let owner = run_quiet_checked(
        src,
        &RemoteCommand::new(RunAs::Root, ["stat", "-c", format, "--", from.as_str()]),
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
    stop_or_start(dst, &dst_rt, &dst_names, false, io).await?;

    wait_loaded(dst, &dst_at, port).await?;
    let (loaded, loaded_persistent) = key_counts(dst, &dst_at, port).await?;
    if loaded_persistent != persistent {
        return Err(StepFailure::on(
            dst,
            format!(
                "on {}: Redis loaded {loaded_persistent} keys without expiry, the old host had {persistent}; Sidekiq's queues may be incomplete. Is appendonly on, or did something write to it? Do not start the services before this is understood.",
                dst.name()
            ),
        ));
    }
    io.output(
        Stream::Stdout,
        format!(
            "{}: Redis up with {loaded} keys ({loaded_persistent} without expiry, as on {})",
            dst.name(),
            src.name()
        ),
    );
    Ok(Done::Completed)
}

/// Each host's stop or start of Redis, as the plan shows it.
fn planned(step: &RedisBody, plan: &Plan, vars: &Vars, source: bool, stop: bool) -> String {
    let rt = Runtime::planned(plan, source);
    let names = names(step, &rt, |t| Ok(vars.render_lenient(t))).unwrap_or_default();
    let cmds = if stop {
        rt.services.stop(&names)
    } else {
        rt.services.start(&names)
    };
    cmds.iter()
        .map(RemoteCommand::display)
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn describe(step: &RedisBody, plan: &Plan, vars: &Vars) -> Vec<String> {
    let (stop_src, stop_dst) = (
        planned(step, plan, vars, true, true),
        planned(step, plan, vars, false, true),
    );
    let stops = if stop_src == stop_dst {
        vec![format!("{} and {}: {stop_src}", plan.source, plan.target)]
    } else {
        vec![
            format!("{}: {stop_src}", plan.source),
            format!("{}: {stop_dst}", plan.target),
        ]
    };
    let mut lines = vec![format!(
        "{}: redis-cli INFO keyspace; redis-cli SAVE",
        plan.source
    )];
    lines.extend(stops);
    lines.push(format!(
        "dump.rdb {} -> {} through this machine, sha256 compared",
        plan.source, plan.target
    ));
    lines.push(format!(
        "{}: {}; every key without an expiry must be there",
        plan.target,
        planned(step, plan, vars, false, false)
    ));
    lines
}

/// What a rollback runs for the step: Redis started on both hosts.
pub(crate) fn describe_undo(id: &str, step: &RedisBody, plan: &Plan, vars: &Vars) -> Vec<String> {
    if !step.undo {
        return Vec::new();
    }
    [(true, &plan.source), (false, &plan.target)]
        .into_iter()
        .map(|(source, host)| {
            format!(
                "{host} as root: {}   (undoes '{id}')",
                planned(step, plan, vars, source, false)
            )
        })
        .collect()
}

/// Starts Redis on both hosts again; returns what failed.
pub(crate) async fn undo(id: &str, step: &RedisBody, ctx: &RunCtx, io: &StepIo) -> Vec<String> {
    if !step.undo {
        return Vec::new();
    }
    let Ok(hosts) = ctx.connected() else {
        return vec!["not connected to the hosts: nothing could be undone".into()];
    };
    let mut problems = Vec::new();
    for role in [Role::Source, Role::Target] {
        let h = hosts.get(role);
        let rt = ctx.runtime(role);
        let names = match names(step, &rt, |t| ctx.vars.render(t)) {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("undoing '{id}': {e}"));
                continue;
            }
        };
        super::run_undo(h, &rt.services.start(&names), id, io, &mut problems).await;
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_counts_every_database() {
        let info = "# Keyspace\r\ndb0:keys=60,expires=3,avg_ttl=1000\r\ndb2:keys=5,expires=0,avg_ttl=0\r\n";
        assert_eq!(keyspace(info), (65, 62));
        assert_eq!(keyspace("# Keyspace\r\n"), (0, 0));
    }
}
