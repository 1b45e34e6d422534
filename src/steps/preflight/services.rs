//! The app's services: systemd units on both hosts, and whether they run on the source.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass, Warn};
use crate::remote::Host;
use crate::runtime::services;
use crate::steps::StepFailure;

pub(super) async fn check_units(
    src: &Host,
    dst: &Host,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let mut units = s.services.clone();
    if s.has_redis
        && let Some(rs) = &s.redis_service
    {
        units.push(rs.clone());
    }
    for h in [src, dst] {
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
