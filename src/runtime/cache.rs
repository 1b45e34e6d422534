//! The cache side of a host: Redis, through `redis-cli` as root.

use crate::remote::{RemoteCommand, RunAs};

/// The tool the cache side needs on both hosts.
pub const TOOL: &str = "redis-cli";

/// `redis-cli -p PORT ARGS...`.
pub fn cli(port: &str, args: &[&str]) -> RemoteCommand {
    let mut argv = vec![TOOL, "-p", port];
    argv.extend_from_slice(args);
    RemoteCommand::new(RunAs::Root, argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_today() {
        assert_eq!(
            cli("6379", &["INFO", "keyspace"]).display(),
            "redis-cli -p 6379 INFO keyspace"
        );
        assert_eq!(cli("6379", &[]).run_as, RunAs::Root);
    }
}
