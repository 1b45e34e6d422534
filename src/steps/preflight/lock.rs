//! The run's lock on the old host: `check` only looks, `run` takes it once every other check passed.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass, Warn};
use crate::events::RunMode;
use crate::remote::Shell;
use crate::steps::StepFailure;
use crate::steps::ctx::RunCtx;

/// A `check` only says whether another run holds the lock; a `run` takes it,
/// once everything else has passed (a refused run holds nothing).
pub(super) async fn check_lock(
    ctx: &mut RunCtx,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let Some(hosts) = ctx.hosts.as_ref() else {
        return Ok(());
    };
    let (mode, run_id, break_lock) = (ctx.opts.mode, &ctx.opts.run_id, ctx.opts.break_lock);
    if lock_on(&hosts.source, mode, s, run_id, break_lock, r).await? {
        ctx.lock = Some((s.work_dir.clone(), s.user.clone()));
    }
    Ok(())
}

/// Looks at (a check) or takes (anything else) the lock on `src`; whether
/// this run now holds it.
async fn lock_on<S: Shell>(
    src: &S,
    mode: RunMode,
    s: &Settings,
    run_id: &str,
    break_lock: bool,
    r: &mut Report<'_>,
) -> Result<bool, StepFailure> {
    let dir = &s.work_dir;
    if mode == RunMode::Check {
        match crate::steps::lock::holder(src, dir, &s.user).await? {
            None => r.note(src.name(), "lock", Pass, "no other run holds this instance"),
            Some(h) => r.note(
                src.name(),
                "lock",
                Warn,
                format!("{dir}/hikkoshi.lock is held by {}; a run will refuse to start unless given --break-lock", h.describe()),
            ),
        }
        return Ok(false);
    }
    match crate::steps::lock::take(src, dir, &s.user, run_id, break_lock).await {
        Ok(broken) => {
            if let Some(h) = broken {
                r.note(
                    src.name(),
                    "lock",
                    Warn,
                    format!("cleared the lock of {} (--break-lock)", h.describe()),
                );
            }
            r.note(
                src.name(),
                "lock",
                Pass,
                format!("{dir}/hikkoshi.lock taken for this run"),
            );
            Ok(true)
        }
        Err(f) => {
            r.note(src.name(), "lock", Fail, f.message);
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::preflight::fake::{self, Checks, FakeHost};

    const OTHER: &str =
        "run_id=other-run\noperator=admin@laptop\npid=1\nsince=2026-12-01T00:00:00Z\n";

    #[tokio::test]
    async fn a_check_only_looks_at_the_lock() {
        let c = Checks::new();
        let mut r = c.report();
        let src = FakeHost::source().on("hikkoshi.lock", 0, OTHER);
        let held = lock_on(&src, RunMode::Check, &fake::mastodon(), "r1", false, &mut r)
            .await
            .expect("runs");
        assert!(!held);
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        let said = c.said();
        assert!(
            said[0].starts_with("old lock WARN: /home/mastodon/hikkoshi-work/hikkoshi.lock is held by run 'other-run' from admin@laptop"),
            "{said:?}"
        );
        // Nothing but the reading script ran: a check writes nothing.
        let asked = src.asked.lock().expect("asked").clone();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert!(
            asked[0].contains("cat -- \"$1/hikkoshi.lock\""),
            "{asked:?}"
        );
    }

    #[tokio::test]
    async fn a_run_refused_by_another_runs_lock_holds_nothing() {
        let c = Checks::new();
        let mut r = c.report();
        let src = FakeHost::source().on("set -C", 1, OTHER);
        let held = lock_on(&src, RunMode::Run, &fake::mastodon(), "r1", false, &mut r)
            .await
            .expect("runs");
        assert!(!held);
        assert_eq!(r.failed.len(), 1);
        assert!(
            r.failed[0].contains("another hikkoshi run holds the lock"),
            "{:?}",
            r.failed
        );
        assert!(r.failed[0].contains("--break-lock"), "{:?}", r.failed);
        let _ = c.said();
    }

    #[tokio::test]
    async fn a_run_takes_a_free_lock() {
        let c = Checks::new();
        let mut r = c.report();
        let src = FakeHost::source().on("set -C", 0, "");
        let held = lock_on(&src, RunMode::Run, &fake::mastodon(), "r1", false, &mut r)
            .await
            .expect("runs");
        assert!(held);
        assert_eq!(
            c.said(),
            ["old lock ok: /home/mastodon/hikkoshi-work/hikkoshi.lock taken for this run"]
        );
    }
}
