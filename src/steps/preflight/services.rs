//! The app's services: systemd units on both hosts, and whether they run on the source.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass, Warn};
use crate::remote::Shell;
use crate::runtime::services;
use crate::steps::StepFailure;

pub(super) async fn check_units<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let mut units = s.services.clone();
    if s.has_redis
        && let Some(rs) = &s.redis_service
    {
        units.push(rs.clone());
    }
    // A compose host's services are its stack's (preflight's stack check).
    for h in [src, dst].into_iter().filter(|h| !s.is_compose(h.role())) {
        let mut missing = Vec::new();
        let mut masked = Vec::new();
        for u in &units {
            let out = h.run_quiet(&services::load_state(u)).await?;
            match out.stdout.trim() {
                "loaded" => {}
                // A rehearsal masks what must never run on a copy; the real
                // run unmasks it on the target as it starts the services.
                "masked" if std::ptr::eq(h, dst) => masked.push(u.clone()),
                _ => missing.push(u.clone()),
            }
        }
        if !masked.is_empty() {
            r.note(
                h.name(),
                "units",
                Warn,
                format!("{} masked (a rehearsal's quarantine?); a run unmasks it when it starts the services there", masked.join(", ")),
            );
        }
        if missing.is_empty() {
            r.note(h.name(), "units", Pass, units.join(", "));
        } else {
            r.note(h.name(), "units", Fail, format!("systemd does not know {}: install the unit files as in the app's install guide", missing.join(", ")));
        }
    }
    if s.is_compose(src.role()) {
        // Which of the stack's containers run, preflight's stack check said.
        return Ok(());
    }
    let mut inactive = Vec::new();
    for u in &s.services {
        let out = src.run_quiet(&services::verb("is-active", u)).await?;
        if out.stdout.trim() != "active" {
            inactive.push(u.clone());
        }
    }
    if !inactive.is_empty() {
        r.note(
            src.name(),
            "services",
            Warn,
            format!("not running on the source now: {}", inactive.join(", ")),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::preflight::fake::{Checks, FakeHost, mastodon};

    #[tokio::test]
    async fn units_missing_masked_or_stopped() {
        let src = FakeHost::source()
            .on("LoadState --value", 0, "loaded\n")
            .on("is-active mastodon-web", 0, "active\n")
            .on("is-active mastodon-sidekiq", 3, "inactive\n");
        let dst = FakeHost::target()
            .on("LoadState --value mastodon-web", 0, "masked\n")
            .on("LoadState --value mastodon-sidekiq", 0, "not-found\n")
            .on("LoadState --value", 0, "loaded\n");
        let c = Checks::new();
        let mut r = c.report();
        check_units(&src, &dst, &mastodon(), &mut r)
            .await
            .expect("runs");
        assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
        assert_eq!(
            c.said(),
            [
                "old units ok: mastodon-web, mastodon-sidekiq, redis-server",
                "new units WARN: mastodon-web masked (a rehearsal's quarantine?); a run unmasks it when it starts the services there",
                "new units FAIL: systemd does not know mastodon-sidekiq: install the unit files as in the app's install guide",
                "old services WARN: not running on the source now: mastodon-sidekiq",
            ]
        );
        // Only asked, never told.
        let asked = src.asked.lock().expect("asked").clone();
        assert!(
            asked
                .iter()
                .all(|a| a.starts_with("systemctl show") || a.starts_with("systemctl is-active")),
            "{asked:?}"
        );
    }
}
