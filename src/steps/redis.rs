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
use crate::profile::template::Vars;
use crate::remote::{Host, RemoteCommand, Role, RunAs};
use crate::runtime::Place;
use crate::runtime::{cache, services};
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

pub async fn run(step: &RedisBody, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let service = ctx.vars.render(&step.service)?;
    let (src_at, dst_at) = (
        ctx.runtime(Role::Source).cache,
        ctx.runtime(Role::Target).cache,
    );
    ctx.connect().await?;
    let facts = ctx.facts.clone();
    let hosts = ctx.connected()?;
    let (src, dst) = (&hosts.source, &hosts.target);
    let (Some(from), Some(to)) = (facts.source_rdb, facts.target_rdb) else {
        return Err(StepFailure::new(
            "preflight did not find where Redis keeps its data on both hosts",
        ));
    };
    let port = facts.redis_port.as_str();

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
    for h in [src, dst] {
        let stop = services::verb("stop", &service);
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
    let start = services::verb("start", &service);
    io.output(
        Stream::Stdout,
        format!("{}$ {}", dst.name(), start.display()),
    );
    run_checked(dst, &start, io).await?;

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

pub(crate) fn describe(step: &RedisBody, plan: &Plan, vars: &Vars) -> Vec<String> {
    let service = vars.render_lenient(&step.service);
    vec![
        format!("{}: redis-cli INFO keyspace; redis-cli SAVE", plan.source),
        format!(
            "{} and {}: {}",
            plan.source,
            plan.target,
            services::verb("stop", &service).display()
        ),
        format!(
            "dump.rdb {} -> {} through this machine, sha256 compared",
            plan.source, plan.target
        ),
        format!(
            "{}: {}; every key without an expiry must be there",
            plan.target,
            services::verb("start", &service).display()
        ),
    ]
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
