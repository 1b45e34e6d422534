//! Redis on both hosts: reachable, its version, where its dump file lives.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass};
use crate::remote::{Role, Shell};
use crate::runtime::cache;
use crate::steps::StepFailure;

pub(super) async fn check_redis<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    port: &str,
    r: &mut Report<'_>,
) -> Result<(Option<String>, Option<String>), StepFailure> {
    let mut rdbs = Vec::new();
    let mut versions = Vec::new();
    for h in [src, dst] {
        if s.service_later(h.role(), "redis") {
            r.note(
                h.name(),
                "redis",
                Pass,
                "the stack's Redis service does not run yet: its data goes into the storage its compose file gives it",
            );
            rdbs.push(None);
            versions.push(None);
            continue;
        }
        let (ok, pong) = cache::ping(h, &s.rt(h.role()).cache, port).await?;
        if !ok {
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
        let info = cache::info(h, &s.rt(h.role()).cache, port).await?;
        let version = info.version.clone();
        if info.appendonly && h.role() == Role::Target {
            r.note(h.name(), "redis", Fail, "appendonly is on: Redis would ignore the copied dump.rdb and start empty; set 'appendonly no' on the new host for the move");
        } else {
            r.note(
                h.name(),
                "redis",
                Pass,
                format!(
                    "{}, data in {}",
                    version.clone().unwrap_or_default(),
                    info.dump_file.clone().unwrap_or_default()
                ),
            );
        }
        rdbs.push(info.dump_file);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::preflight::fake::{self, Checks, FakeHost};

    fn redis(host: FakeHost, version: &str, aof: &str) -> FakeHost {
        host.on("PING", 0, "PONG\n")
            .on("CONFIG GET dir", 0, "dir\n/var/lib/redis\n")
            .on("CONFIG GET dbfilename", 0, "dbfilename\ndump.rdb\n")
            .on("CONFIG GET appendonly", 0, &format!("appendonly\n{aof}\n"))
            .on(
                "INFO server",
                0,
                &format!("# Server\nredis_version:{version}\n"),
            )
    }

    #[tokio::test]
    async fn both_redis_found_with_their_dump_files() {
        let c = Checks::new();
        let mut r = c.report();
        let (a, b) = check_redis(
            &redis(FakeHost::source(), "7.0.15", "no"),
            &redis(FakeHost::target(), "7.2.4", "no"),
            &fake::mastodon(),
            "6379",
            &mut r,
        )
        .await
        .expect("runs");
        assert_eq!(a.as_deref(), Some("/var/lib/redis/dump.rdb"));
        assert_eq!(b.as_deref(), Some("/var/lib/redis/dump.rdb"));
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert_eq!(
            c.said()[0],
            "old redis ok: 7.0.15, data in /var/lib/redis/dump.rdb"
        );
    }

    #[rstest::rstest]
    #[case::not_running(FakeHost::target().on("PING", 1, "Could not connect to Redis at 127.0.0.1:6379: Connection refused"), "is Redis running?")]
    #[case::password(FakeHost::target().on("PING", 0, "NOAUTH Authentication required."), "requires a password")]
    #[tokio::test]
    async fn a_target_redis_that_cannot_take_the_dump(#[case] dst: FakeHost, #[case] says: &str) {
        let c = Checks::new();
        let mut r = c.report();
        let (_, b) = check_redis(
            &redis(FakeHost::source(), "7.0.15", "no"),
            &dst,
            &fake::mastodon(),
            "6379",
            &mut r,
        )
        .await
        .expect("runs");
        assert_eq!(b, None);
        assert!(r.failed.iter().any(|f| f.contains(says)), "{:?}", r.failed);
        let _ = c.said();
    }

    #[tokio::test]
    async fn appendonly_or_an_older_redis_on_the_target_fail() {
        let c = Checks::new();
        let mut r = c.report();
        let target = FakeHost::target()
            .on("PING", 0, "PONG\n")
            .on("CONFIG GET appendonly", 0, "appendonly\nyes\n")
            .on("CONFIG GET", 0, "x\n/x\n")
            .on("INFO server", 0, "redis_version:6.2.0\n");
        check_redis(
            &redis(FakeHost::source(), "7.0.15", "no"),
            &target,
            &fake::mastodon(),
            "6379",
            &mut r,
        )
        .await
        .expect("runs");
        assert_eq!(r.failed.len(), 2, "{:?}", r.failed);
        assert!(r.failed[0].contains("appendonly is on"));
        assert!(r.failed[1].contains("older than the source's 7.0.15"));
        let _ = c.said();
    }
}
