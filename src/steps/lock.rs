//! One run at a time per instance: a lock file in the work directory on the
//! old host, holding the run id, the operator's machine and process, and the
//! time. Taken when preflight has passed (a `run`), released when the run ends;
//! a lock left by a crash stays until the admin clears it (`--break-lock`).

use super::StepFailure;
use crate::remote::{RemoteCommand, RunAs, Shell};

/// Takes the lock unless another run holds it; exit 1 prints the holder.
const TAKE: &str = r#"dir=$1; run=$2; shift 2
mkdir -p -m 700 -- "$dir" || exit 3
if (set -C; printf '%s\n' "$@" >"$dir/hikkoshi.lock") 2>/dev/null; then exit 0; fi
if grep -qxF -- "run_id=$run" "$dir/hikkoshi.lock" 2>/dev/null; then
  printf '%s\n' "$@" >"$dir/hikkoshi.lock.new" && mv -f -- "$dir/hikkoshi.lock.new" "$dir/hikkoshi.lock" && exit 0
fi
cat -- "$dir/hikkoshi.lock" 2>/dev/null
exit 1"#;

/// Removes the lock only if this run holds it, then the work directory if empty.
const RELEASE: &str = r#"dir=$1; run=$2
if grep -qxF -- "run_id=$run" "$dir/hikkoshi.lock" 2>/dev/null; then rm -f -- "$dir/hikkoshi.lock"; fi
rmdir --ignore-fail-on-non-empty -- "$dir" 2>/dev/null
exit 0"#;

const READ: &str = r#"cat -- "$1/hikkoshi.lock" 2>/dev/null; exit 0"#;

const BREAK: &str = r#"rm -f -- "$1/hikkoshi.lock""#;

/// Who holds a lock, as its file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub run_id: String,
    pub operator: String,
    pub pid: String,
    pub since: String,
}

impl Holder {
    fn parse(text: &str) -> Holder {
        let mut h = Holder::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("run_id", v)) => h.run_id = v.to_string(),
                Some(("operator", v)) => h.operator = v.to_string(),
                Some(("pid", v)) => h.pid = v.to_string(),
                Some(("since", v)) => h.since = v.to_string(),
                _ => {}
            }
        }
        h
    }

    fn lines(&self) -> Vec<String> {
        vec![
            format!("run_id={}", self.run_id),
            format!("operator={}", self.operator),
            format!("pid={}", self.pid),
            format!("since={}", self.since),
        ]
    }

    /// Held from this machine by a process that is gone: surely left by a crash.
    pub(crate) fn is_stale(&self) -> bool {
        self.operator == operator_name()
            && !self.pid.is_empty()
            && !std::path::Path::new("/proc").join(&self.pid).exists()
    }

    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "run '{}' from {} (pid {}) since {}",
            self.run_id, self.operator, self.pid, self.since
        );
        if self.is_stale() {
            s.push_str("; that process is gone, so the lock was left by a crash");
        }
        s
    }

    pub(crate) fn ours(run_id: &str) -> Holder {
        Holder {
            run_id: run_id.to_string(),
            operator: operator_name(),
            pid: std::process::id().to_string(),
            since: jiff::Timestamp::now().to_string(),
        }
    }
}

/// This machine's name, as the lock records the operator.
pub(crate) fn operator_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    match std::env::var("USER") {
        Ok(u) if !u.is_empty() => format!("{u}@{host}"),
        _ => host,
    }
}

pub(crate) async fn holder<S: Shell>(
    host: &S,
    dir: &str,
    user: &str,
) -> Result<Option<Holder>, StepFailure> {
    let out = host
        .run_quiet(&RemoteCommand::script(
            RunAs::from_profile(user),
            READ,
            &[dir],
        ))
        .await?;
    Ok((!out.stdout.trim().is_empty()).then(|| Holder::parse(&out.stdout)))
}

/// Takes the lock for `run_id`, first removing another holder's lock when the
/// admin said so (`break_lock`); the previous holder is returned for the record.
pub async fn take<S: Shell>(
    host: &S,
    dir: &str,
    user: &str,
    run_id: &str,
    break_lock: bool,
) -> Result<Option<Holder>, StepFailure> {
    let run_as = RunAs::from_profile(user);
    let mut broken = None;
    if break_lock
        && let Some(h) = holder(host, dir, user).await?
        && h.run_id != run_id
    {
        let cmd = RemoteCommand::script(run_as.clone(), BREAK, &[dir]);
        super::run_quiet_checked(host, &cmd).await?;
        broken = Some(h);
    }
    let lines = Holder::ours(run_id).lines();
    let mut args: Vec<&str> = vec![dir, run_id];
    args.extend(lines.iter().map(String::as_str));
    let cmd = RemoteCommand::script(run_as, TAKE, &args);
    let out = host.run_quiet(&cmd).await?;
    match out.exit_code {
        Some(0) => Ok(broken),
        Some(1) => {
            let h = Holder::parse(&out.stdout);
            Err(StepFailure {
                command: Some(cmd.display()),
                ..StepFailure::on(
                    host,
                    format!(
                        "on {}: another hikkoshi run holds the lock {dir}/hikkoshi.lock: {}. Two runs must never move one instance at once. If no such run is going any more, clear the lock with --break-lock",
                        host.name(),
                        h.describe()
                    ),
                )
            })
        }
        _ => Err(StepFailure::from_finished(host, &cmd, &out)),
    }
}

pub(crate) async fn release<S: Shell>(
    host: &S,
    dir: &str,
    user: &str,
    run_id: &str,
) -> Result<(), StepFailure> {
    let cmd = RemoteCommand::script(RunAs::from_profile(user), RELEASE, &[dir, run_id]);
    super::run_quiet_checked(host, &cmd).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_reads_back() {
        let ours = Holder::ours("20261121T000000Z-abcd");
        let back = Holder::parse(&ours.lines().join("\n"));
        assert_eq!(back, ours);
        assert!(!back.is_stale(), "this process is alive");
        let gone = Holder {
            pid: "999999999".into(),
            ..ours
        };
        assert!(gone.is_stale());
        assert!(gone.describe().contains("left by a crash"));
    }
}
