//! Front ends: headless lines, the wizard, and review. All read the same events.

pub mod headless;
pub mod init;
pub mod plan;
pub mod review;
pub mod tui;

/// `mm:ss`, or `h:mm:ss` from an hour on.
pub(crate) fn clock(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

/// `4.2s` under a minute, a clock above.
pub(crate) fn short_duration(ms: u64) -> String {
    if ms >= 60_000 {
        clock(jiff::SignedDuration::from_millis(
            i64::try_from(ms).unwrap_or(i64::MAX),
        ))
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}
