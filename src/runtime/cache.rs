//! The cache side of a host: Redis, through `redis-cli` as root.

use super::{Place, ToolError};
use crate::remote::{RemoteCommand, RemoteError, Shell};

/// The tool the cache side needs on both hosts.
pub(crate) const TOOL: &str = "redis-cli";

/// `redis-cli -p PORT ARGS...`.
pub fn cli(at: &Place, port: &str, args: &[&str]) -> RemoteCommand {
    let mut argv = vec![TOOL, "-p", port];
    argv.extend_from_slice(args);
    at.command(argv)
}

/// What the move needs to know of a Redis.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheInfo {
    pub version: Option<String>,
    /// Where its dump file lives on the host's filesystem (its own `dir`,
    /// found through the container's mounts when Redis runs in one).
    pub dump_file: Option<String>,
    /// With the append-only file on, Redis ignores a copied dump.rdb.
    pub appendonly: bool,
}

/// `PING`: whether it answered `PONG`, and what it said.
pub(crate) async fn ping(
    h: &impl Shell,
    at: &Place,
    port: &str,
) -> Result<(bool, String), RemoteError> {
    let out = h.run_quiet(&cli(at, port, &["PING"])).await?;
    let said = out.stdout.trim().to_string();
    Ok((out.success() && said == "PONG", said))
}

/// Version, dump file and append-only mode, from CONFIG GET and INFO.
pub async fn info(h: &impl Shell, at: &Place, port: &str) -> Result<CacheInfo, ToolError> {
    let mut answers = Vec::new();
    for args in [
        &["CONFIG", "GET", "dir"][..],
        &["CONFIG", "GET", "dbfilename"],
        &["CONFIG", "GET", "appendonly"],
        &["INFO", "server"],
    ] {
        answers.push(h.run_quiet(&cli(at, port, args)).await?.stdout);
    }
    // CONFIG GET answers the name, then the value.
    let second = |s: &str| s.lines().nth(1).map(str::trim).unwrap_or("").to_string();
    let (dir, file) = (second(&answers[0]), second(&answers[1]));
    Ok(CacheInfo {
        version: answers[3]
            .lines()
            .find_map(|l| l.trim().strip_prefix("redis_version:"))
            .map(str::to_string),
        dump_file: match (dir.is_empty(), file.is_empty()) {
            (false, false) => Some(format!("{}/{file}", at.host_path(h, &dir).await?.path)),
            _ => None,
        },
        appendonly: second(&answers[2]) == "yes",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;

    #[test]
    fn commands_as_today() {
        assert_eq!(
            cli(
                &Runtime::systemd("postgres", "mastodon").cache,
                "6379",
                &["INFO", "keyspace"]
            )
            .display(),
            "redis-cli -p 6379 INFO keyspace"
        );
        assert_eq!(
            cli(&Runtime::systemd("postgres", "mastodon").cache, "6379", &[]).run_as,
            crate::remote::RunAs::Root
        );
    }
}
