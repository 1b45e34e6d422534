//! Redis on both hosts: reachable, its version, where its dump file lives.

use super::Report;
use crate::events::CheckStatus::{Fail, Pass};
use crate::remote::{Host, Role};
use crate::runtime::cache;
use crate::steps::StepFailure;

pub(super) async fn redis_cli(
    h: &Host,
    port: &str,
    args: &[&str],
) -> Result<(bool, String), StepFailure> {
    let out = h.run_quiet(&cache::cli(port, args)).await?;
    Ok((out.success(), out.stdout.trim().to_string()))
}

pub(super) async fn check_redis(
    src: &Host,
    dst: &Host,
    port: &str,
    r: &mut Report<'_>,
) -> Result<(Option<String>, Option<String>), StepFailure> {
    let mut rdbs = Vec::new();
    let mut versions = Vec::new();
    for h in [src, dst] {
        let (ok, pong) = redis_cli(h, port, &["PING"]).await?;
        if !ok || pong != "PONG" {
            let why = if pong.contains("NOAUTH") {
                "Redis requires a password, which hikkoshi does not support yet".to_string()
            } else {
                format!("redis-cli -p {port} PING answered '{pong}'; is Redis running?")
            };
            r.note(h.name(), "redis", Fail, why);
            rdbs.push(None);
            versions.push(None);
            continue;
        }
        let (_, dir) = redis_cli(h, port, &["CONFIG", "GET", "dir"]).await?;
        let (_, file) = redis_cli(h, port, &["CONFIG", "GET", "dbfilename"]).await?;
        let (_, aof) = redis_cli(h, port, &["CONFIG", "GET", "appendonly"]).await?;
        let (_, info) = redis_cli(h, port, &["INFO", "server"]).await?;
        let second = |s: &str| s.lines().nth(1).map(str::trim).unwrap_or("").to_string();
        let (dir, file, aof) = (second(&dir), second(&file), second(&aof));
        let version = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("redis_version:"))
            .map(str::to_string);
        if aof == "yes" && h.role == Role::Target {
            r.note(h.name(), "redis", Fail, "appendonly is on: Redis would ignore the copied dump.rdb and start empty; set 'appendonly no' on the new host for the move");
        } else {
            r.note(
                h.name(),
                "redis",
                Pass,
                format!(
                    "{}, data in {dir}/{file}",
                    version.clone().unwrap_or_default()
                ),
            );
        }
        rdbs.push((!dir.is_empty() && !file.is_empty()).then(|| format!("{dir}/{file}")));
        versions.push(version);
    }
    if let (Some(Some(a)), Some(Some(b))) = (versions.first(), versions.get(1)) {
        let key = |v: &str| {
            v.split('.')
                .map(|p| p.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        };
        if key(b) < key(a) {
            r.note(dst.name(), "redis", Fail, format!("the target's Redis {b} is older than the source's {a} and may not load its dump.rdb; install {a} or newer"));
        }
    }
    let target = rdbs.pop().flatten();
    let source = rdbs.pop().flatten();
    Ok((source, target))
}
