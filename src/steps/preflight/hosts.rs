//! Both hosts as such: the tools a move needs, and the app's unix user and its home.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass};
use crate::remote::{RemoteCommand, RunAs, Shell};
use crate::runtime::cache;
use crate::runtime::database::{self};
use crate::steps::StepFailure;

pub(super) async fn check_tools<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    use crate::remote::Role::{Source, Target};
    // In a compose stack the database's and Redis's tools are in their
    // containers (their versions are asked there); the host needs docker.
    let mut src_tools = if s.is_compose(Source) {
        vec!["docker"]
    } else {
        database::DUMP_TOOLS.to_vec()
    };
    src_tools.extend(["sha256sum", "cat", "df", "du"]);
    let mut dst_tools = if s.is_compose(Target) {
        vec!["docker"]
    } else {
        database::RESTORE_TOOLS.to_vec()
    };
    dst_tools.extend(["sha256sum", "curl", "df"]);
    if s.has_rsync {
        src_tools.extend(["rsync", "ssh", "ssh-keygen"]);
        dst_tools.extend(["rsync", "ssh-keyscan"]);
    }
    if s.has_redis {
        if !s.is_compose(Source) {
            src_tools.push(cache::TOOL);
        }
        if !s.is_compose(Target) {
            dst_tools.push(cache::TOOL);
        }
    }
    for (h, tools) in [(src, src_tools), (dst, dst_tools)] {
        let mut cmd = RemoteCommand::script(
            RunAs::Login,
            "for t do command -v \"$t\" >/dev/null 2>&1 || printf '%s\\n' \"$t\"; done",
            &tools,
        );
        cmd.run_as = RunAs::Root;
        let out = h.run_quiet(&cmd).await?;
        let missing: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
        if missing.is_empty() && out.success() {
            r.note(h.name(), "tools", Pass, tools.join(", "));
        } else {
            r.note(
                h.name(),
                "tools",
                Fail,
                format!("missing: {} (install them, e.g. apt-get install postgresql-client rsync redis-tools curl)", missing.join(", ")),
            );
        }
    }
    Ok(())
}

pub(super) async fn check_app_user<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(String, String), StepFailure> {
    let mut homes = Vec::new();
    for h in [src, dst] {
        let out = h
            .run_quiet(&RemoteCommand::new(
                RunAs::Login,
                ["getent", "passwd", s.user.as_str()],
            ))
            .await?;
        let home = out
            .stdout
            .trim()
            .split(':')
            .nth(5)
            .unwrap_or("")
            .to_string();
        if out.success() && !home.is_empty() {
            r.note(
                h.name(),
                "app user",
                Pass,
                format!("'{}' (home {home})", s.user),
            );
        } else {
            r.note(
                h.name(),
                "app user",
                Fail,
                format!(
                    "no unix user '{}'; create it as in the app's install guide",
                    s.user
                ),
            );
        }
        homes.push(home);
    }
    let target = homes.pop().unwrap_or_default();
    let source = homes.pop().unwrap_or_default();
    Ok((source, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::preflight::fake::{Checks, FakeHost, mastodon};

    #[tokio::test]
    async fn missing_tools_are_named_with_what_to_install() {
        let src = FakeHost::source().on("command -v", 0, "");
        let dst = FakeHost::target().on("command -v", 0, "pg_restore\nrsync\n");
        let c = Checks::new();
        let mut r = c.report();
        check_tools(&src, &dst, &mastodon(), &mut r)
            .await
            .expect("runs");
        let said = c.said();
        assert_eq!(
            said[0],
            "old tools ok: pg_dump, psql, sha256sum, cat, df, du, rsync, ssh, ssh-keygen, redis-cli"
        );
        assert!(
            said[1].starts_with("new tools FAIL: missing: pg_restore, rsync (install them"),
            "{said:?}"
        );
        assert_eq!(r.failed.len(), 1);
    }
}
