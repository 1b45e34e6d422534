//! Media with rsync's delta transfer, from the old host straight to the new one,
//! even though usually only this machine can reach both:
//!
//!   old: rsync -e "ssh -p PORT" --> old 127.0.0.1:PORT  (remote forward on our old-host connection)
//!        --> this machine's unix socket  (local forward on our new-host connection)
//!        --> new 127.0.0.1:22, logging in as the app user with a key made for this step
//!
//! Nothing is stored on this machine. The key is authorised only from the new
//! host's loopback, and key, authorisation and forwards are removed afterwards
//! whether rsync succeeded or not.

use std::time::{Duration, Instant};

use openssh::{ForwardType, Socket};

use super::{Done, StepFailure, StepResult, run_quiet_checked};
use crate::engine::events::Stream;
use crate::engine::{RunCtx, StepIo};
use crate::plan::Plan;
use crate::plan::profile::StepSpec;
use crate::plan::template::Vars;
use crate::remote::{Host, RemoteCommand, RunAs};

struct Relay {
    user: String,
    key: String,
    known_hosts: String,
    comment: String,
    port: u16,
    socket: std::path::PathBuf,
    _socket_dir: tempfile::TempDir,
    target_home: String,
}

const AUTHORIZE: &str = r#"set -e
umask 077
mkdir -p -- "$1/.ssh"
printf '%s\n' "$2" >> "$1/.ssh/authorized_keys""#;

/// Removes only the line carrying this step's unique key comment.
const DEAUTHORIZE: &str = r#"f="$1/.ssh/authorized_keys"
[ -f "$f" ] || exit 0
grep -vF -- "$2" "$f" > "$f.hikkoshi-tmp" || true
cat "$f.hikkoshi-tmp" > "$f"
rm -f -- "$f.hikkoshi-tmp""#;

const WRITE_STDIN: &str = r#"umask 077 && cat > "$1""#;

fn rsync_rsh(relay: &Relay) -> String {
    format!(
        "ssh -F /dev/null -p {} -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=20",
        relay.port, relay.key, relay.known_hosts
    )
}

fn rsync_argv(
    relay: &Relay,
    path: &str,
    delete: bool,
    exclude: &[String],
    dry_run: bool,
) -> Vec<String> {
    let mut argv: Vec<String> = ["rsync", "-a", "-s", "--no-inc-recursive"]
        .map(String::from)
        .to_vec();
    if dry_run {
        argv.extend(["--dry-run", "--itemize-changes"].map(String::from));
    } else {
        argv.push("--info=progress2,stats1".into());
    }
    if delete {
        argv.push("--delete".into());
    }
    for e in exclude {
        argv.push(format!("--exclude={e}"));
    }
    argv.push("-e".into());
    argv.push(rsync_rsh(relay));
    argv.push("--".into());
    argv.push(format!("{path}/"));
    argv.push(format!("{}@127.0.0.1:{path}/", relay.user));
    argv
}

/// A port on the source's loopback for the relay, away from the usual services.
fn random_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    20000 + (r % 30000) as u16
}

/// rsync --info=progress2: "  1,234,567  45%   12.34MB/s    0:00:05 (xfr#12, to-chk=3/456)".
pub fn parse_progress(line: &str) -> Option<(u64, Option<u64>)> {
    let mut parts = line.split_whitespace();
    let bytes: u64 = parts.next()?.replace(',', "").parse().ok()?;
    let pct: u64 = parts.next()?.strip_suffix('%')?.parse().ok()?;
    let total = (pct > 0).then(|| bytes.saturating_mul(100) / pct);
    Some((bytes, total))
}

impl Relay {
    async fn open(
        src: &Host,
        dst: &Host,
        ctx: &RunCtx,
        step: &StepSpec,
        user: &str,
    ) -> Result<Relay, StepFailure> {
        let run_dir = ctx.vars.text("run_dir")?;
        if !crate::config::is_simple_abs_path(&run_dir) {
            return Err(StepFailure::new(format!(
                "run_dir '{run_dir}' must be an absolute path of letters, digits and . _ - / only (it is part of rsync's -e option)"
            )));
        }
        let run_id = ctx.vars.text("run_id")?;
        let comment = format!("hikkoshi-relay-{run_id}-{}", step.id);
        let key = format!("{run_dir}/relay-{}", step.id);
        let known_hosts = format!("{run_dir}/relay-{}-known_hosts", step.id);
        let as_user = RunAs::User(user.to_string());
        let target_home = ctx.facts.target_home.clone();
        if target_home.is_empty() || ctx.facts.target_host_keys.is_empty() {
            return Err(StepFailure::new(
                "the media relay needs preflight's findings (the app user's home and the target's host keys); run preflight first",
            ));
        }

        run_quiet_checked(
            src,
            &RemoteCommand::new(
                as_user.clone(),
                ["mkdir", "-p", "-m", "700", "--", run_dir.as_str()],
            ),
        )
        .await?;
        run_quiet_checked(
            src,
            &RemoteCommand::new(
                as_user.clone(),
                ["rm", "-f", "--", key.as_str(), &format!("{key}.pub")],
            ),
        )
        .await?;
        run_quiet_checked(
            src,
            &RemoteCommand::new(
                as_user.clone(),
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    comment.as_str(),
                    "-f",
                    key.as_str(),
                ],
            ),
        )
        .await?;
        let public = run_quiet_checked(
            src,
            &RemoteCommand::new(as_user.clone(), ["cat", "--", &format!("{key}.pub")]),
        )
        .await?;
        let line = format!("restrict,from=\"127.0.0.1,::1\" {}", public.stdout.trim());
        run_quiet_checked(
            dst,
            &RemoteCommand::script(as_user.clone(), AUTHORIZE, &[&target_home, &line]),
        )
        .await?;

        let socket_dir = crate::remote::operator_socket_dir().map_err(|e| {
            StepFailure::new(format!(
                "cannot create a private directory on this machine for the relay socket: {e}"
            ))
        })?;
        let socket = socket_dir.path().join("relay.sock");
        dst.forward(
            ForwardType::Local,
            Socket::UnixSocket {
                path: socket.clone().into(),
            },
            Socket::new("127.0.0.1", 22),
        )
        .await?;
        let mut port = 0;
        let mut last_err = None;
        for _ in 0..10 {
            let candidate = random_port();
            match src
                .forward(
                    ForwardType::Remote,
                    Socket::new("127.0.0.1", candidate),
                    Socket::UnixSocket {
                        path: socket.clone().into(),
                    },
                )
                .await
            {
                Ok(()) => {
                    port = candidate;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let relay = Relay {
            user: user.to_string(),
            key,
            known_hosts,
            comment,
            port,
            socket,
            _socket_dir: socket_dir,
            target_home,
        };
        if port == 0 {
            relay.close(src, dst).await;
            return Err(last_err.map_or_else(
                || StepFailure::new("no free port on the source for the relay"),
                StepFailure::from,
            ));
        }
        let keys: String = ctx
            .facts
            .target_host_keys
            .iter()
            .filter_map(|l| {
                let mut parts = l.split_whitespace().skip(1);
                Some(format!(
                    "[127.0.0.1]:{port} {} {}\n",
                    parts.next()?,
                    parts.next()?
                ))
            })
            .collect();
        let write = RemoteCommand::script(as_user, WRITE_STDIN, &[&relay.known_hosts]);
        let f = src
            .run_with_input(&write, Some(keys.as_bytes()), &mut |_, _| {})
            .await?;
        if !f.success() {
            relay.close(src, dst).await;
            return Err(StepFailure::from_finished(src, &write, &f));
        }
        Ok(relay)
    }

    /// Best effort, and always called: a failure here is reported, not hidden.
    async fn close(&self, src: &Host, dst: &Host) -> Vec<String> {
        let mut problems = Vec::new();
        if self.port != 0
            && let Err(e) = src
                .close_forward(
                    ForwardType::Remote,
                    Socket::new("127.0.0.1", self.port),
                    Socket::UnixSocket {
                        path: self.socket.clone().into(),
                    },
                )
                .await
        {
            problems.push(e.to_string());
        }
        if let Err(e) = dst
            .close_forward(
                ForwardType::Local,
                Socket::UnixSocket {
                    path: self.socket.clone().into(),
                },
                Socket::new("127.0.0.1", 22),
            )
            .await
        {
            problems.push(e.to_string());
        }
        let as_user = RunAs::User(self.user.clone());
        let deauth = RemoteCommand::script(
            as_user.clone(),
            DEAUTHORIZE,
            &[&self.target_home, &self.comment],
        );
        match dst.run_quiet(&deauth).await {
            Ok(f) if f.success() => {}
            Ok(f) => problems.push(StepFailure::from_finished(dst, &deauth, &f).message),
            Err(e) => problems.push(e.to_string()),
        }
        let rm = RemoteCommand::new(
            as_user,
            [
                "rm",
                "-f",
                "--",
                self.key.as_str(),
                &format!("{}.pub", self.key),
                self.known_hosts.as_str(),
            ],
        );
        match src.run_quiet(&rm).await {
            Ok(f) if f.success() => {}
            Ok(f) => problems.push(StepFailure::from_finished(src, &rm, &f).message),
            Err(e) => problems.push(e.to_string()),
        }
        problems
    }
}

async fn sync_path(
    src: &Host,
    dst: &Host,
    relay: &Relay,
    step: &StepSpec,
    path: &str,
    io: &StepIo,
) -> Result<(), StepFailure> {
    let as_user = RunAs::User(relay.user.clone());
    let exists = src
        .run_quiet(&RemoteCommand::new(as_user.clone(), ["test", "-d", path]))
        .await?
        .success();
    if !exists {
        io.output(
            Stream::Stdout,
            format!("{}: '{path}' does not exist; nothing to copy", src.name()),
        );
        return Ok(());
    }
    run_quiet_checked(
        dst,
        &RemoteCommand::new(as_user.clone(), ["mkdir", "-p", "--", path]),
    )
    .await?;
    let cmd = RemoteCommand::new(
        as_user.clone(),
        rsync_argv(relay, path, step.delete, &step.exclude, false),
    );
    io.output(Stream::Stdout, format!("{}$ {}", src.name(), cmd.display()));
    let mut last = Instant::now() - Duration::from_secs(1);
    let mut sink = |stream: Stream, line: String| {
        if let Some((bytes, total)) = parse_progress(&line) {
            if last.elapsed() >= Duration::from_millis(250) {
                io.progress(bytes, total);
                last = Instant::now();
            }
        } else if !line.trim().is_empty() {
            io.output(stream, line);
        }
    };
    let f = src.run(&cmd, &mut sink).await?;
    match f.exit_code {
        Some(0) => {}
        // Files vanished while the instance was live (cache churn): the final pass catches up.
        Some(24) if !step.delete => io.output(
            Stream::Stderr,
            "some files vanished during the copy; the pass during downtime picks up the rest"
                .into(),
        ),
        _ => return Err(StepFailure::from_finished(src, &cmd, &f)),
    }
    if step.delete {
        // After the final pass the two trees must agree: rsync lists anything still different.
        let check = RemoteCommand::new(as_user, rsync_argv(relay, path, true, &step.exclude, true));
        let f = run_quiet_checked(src, &check).await?;
        let differences: Vec<&str> = f.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        if !differences.is_empty() {
            return Err(StepFailure {
                stderr_tail: differences.iter().take(30).map(|s| s.to_string()).collect(),
                ..StepFailure::on(
                    dst,
                    format!(
                        "after the copy, {} entries of '{path}' still differ between the hosts; first: {}",
                        differences.len(),
                        differences[0]
                    ),
                )
            });
        }
        io.output(
            Stream::Stdout,
            format!("verified: '{path}' is identical on both hosts"),
        );
    }
    Ok(())
}

pub async fn run(step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let user = ctx.vars.render(step.user.as_deref().unwrap_or("root"))?;
    let paths: Vec<String> = step
        .paths
        .iter()
        .map(|p| ctx.vars.render(p))
        .collect::<Result<_, _>>()?;
    ctx.hosts().await?;
    let Some(hosts) = ctx.hosts.as_ref() else {
        return Err(StepFailure::new("not connected"));
    };
    let (src, dst) = (&hosts.source, &hosts.target);
    let relay = Relay::open(src, dst, ctx, step, &user).await?;
    let mut result = Ok(());
    for p in &paths {
        result = sync_path(src, dst, &relay, step, p, io).await;
        if result.is_err() {
            break;
        }
    }
    let problems = relay.close(src, dst).await;
    for p in &problems {
        io.output(Stream::Stderr, format!("cleaning up the relay: {p}"));
    }
    result?;
    if !problems.is_empty() {
        return Err(StepFailure::new(format!(
            "media copied, but the relay could not be fully removed: {}",
            problems.join("; ")
        )));
    }
    Ok(Done::Completed)
}

pub fn describe(step: &StepSpec, plan: &Plan, vars: &Vars, user: &str) -> Vec<String> {
    step.paths
        .iter()
        .map(|p| {
            let p = vars.render_lenient(p);
            format!(
                "{} as {user}: rsync -a{} {p}/ -> {} as {user}:{p}/  (relayed through this machine, per-run key){}",
                plan.source,
                if step.delete { " --delete" } else { "" },
                plan.target,
                if step.delete { "; then a dry run must list no differences" } else { "" }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_progress_lines() {
        assert_eq!(
            parse_progress("      1,234,567  50%   12.34MB/s    0:00:05 (xfr#12, to-chk=3/456)"),
            Some((1_234_567, Some(2_469_134)))
        );
        assert_eq!(
            parse_progress("              0   0%    0.00kB/s    0:00:00"),
            Some((0, None))
        );
        assert_eq!(parse_progress("sending incremental file list"), None);
        assert_eq!(parse_progress("Number of files: 12"), None);
    }
}
