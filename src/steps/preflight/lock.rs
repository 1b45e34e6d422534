//! The run's lock on the old host: `check` only looks, `run` takes it once every other check passed.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass, Warn};
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
    let src = &hosts.source;
    let dir = &s.work_dir;
    if ctx.opts.mode == crate::events::RunMode::Check {
        match crate::steps::lock::holder(src, dir, &s.user).await? {
            None => r.note(src.name(), "lock", Pass, "no other run holds this instance"),
            Some(h) => r.note(
                src.name(),
                "lock",
                Warn,
                format!("{dir}/hikkoshi.lock is held by {}; a run will refuse to start unless given --break-lock", h.describe()),
            ),
        }
        return Ok(());
    }
    match crate::steps::lock::take(src, dir, &s.user, &ctx.opts.run_id, ctx.opts.break_lock).await {
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
            ctx.lock = Some((dir.clone(), s.user.clone()));
        }
        Err(f) => r.note(src.name(), "lock", Fail, f.message),
    }
    Ok(())
}
