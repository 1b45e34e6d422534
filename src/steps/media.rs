//! Media with rsync's delta transfer, from the old host straight to the new one,
//! even though usually only this machine can reach both:
//!
//!   old: rsync -e "ssh -p PORT" --> old 127.0.0.1:PORT  (remote forward on our old-host connection)
//!        --> this machine's unix socket  (local forward on our new-host connection)
//!        --> new's sshd where it listens (127.0.0.1:22, another port, or only its
//!            own address: preflight reads it from `sshd -T`), logging in as the
//!            app user with a key made for this step
//!
//! Nothing is stored on this machine. The key is authorised only from the new
//! host itself (the address its sshd sees the relay come from), and key,
//! authorisation and forwards are removed afterwards whether rsync succeeded or not.

use std::time::{Duration, Instant};

use openssh::{ForwardType, Socket};

use super::{Done, StepFailure, StepResult, run_quiet_checked};
use crate::events::Stream;
use crate::plan::Plan;
use crate::profile::template::{TemplateError, Vars};
use crate::profile::{RsyncBody, StepSpec};
use crate::remote::{Host, RemoteCommand, RunAs};
use crate::steps::ctx::{RunCtx, StepIo};

struct Relay {
    user: String,
    key: String,
    known_hosts: String,
    comment: String,
    port: u16,
    socket: std::path::PathBuf,
    _socket_dir: tempfile::TempDir,
    target_home: String,
    /// The target's sshd, as the target reaches it.
    sshd: (String, u16),
    forwarded_local: bool,
    /// The key only runs `rrsync -wo <dir>`: the client names the directory as ".".
    restricted: bool,
    /// Both rsyncs run with this niceness (the step's `nice`).
    nice: Option<u8>,
}

/// Where the relay's connection comes from, as the target's sshd sees it:
/// the loopback, or the address it connects to when sshd listens only there
/// (a host's connection to one of its own addresses comes from that address).
fn from_addresses(sshd_addr: &str) -> String {
    if sshd_addr.starts_with("127.") || sshd_addr == "::1" {
        "127.0.0.1,::1".to_string()
    } else {
        format!("127.0.0.1,::1,{sshd_addr}")
    }
}

/// `nice -n N ` before a command, for the forced command and --rsync-path.
fn nice_prefix(nice: Option<u8>) -> String {
    nice.map_or_else(String::new, |n| format!("nice -n {n} "))
}

const AUTHORIZE: &str = r#"set -e
umask 077
mkdir -p -- "$1/.ssh"
printf '%s\n' "$2" >> "$1/.ssh/authorized_keys""#;

/// Removes only the line carrying the key's unique comment. The new file is
/// written beside the old one and renamed over it, so a full disk or a grep
/// error leaves authorized_keys as it was.
const DEAUTHORIZE: &str = r#"set -e
umask 077
f="$1/.ssh/authorized_keys"
[ -f "$f" ] || exit 0
rc=0
grep -vF -- "$2" "$f" > "$f.hikkoshi-tmp" || rc=$?
if [ "$rc" -gt 1 ]; then rm -f -- "$f.hikkoshi-tmp"; exit "$rc"; fi
mv -f -- "$f.hikkoshi-tmp" "$f""#;

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
    let mut argv: Vec<String> = Vec::new();
    if let Some(n) = relay.nice {
        argv.extend(["nice".to_string(), "-n".to_string(), n.to_string()]);
    }
    argv.extend(["rsync", "-a", "--no-inc-recursive"].map(String::from));
    if !relay.restricted {
        // rrsync pins the directory itself; otherwise the remote path must not
        // be split or expanded by the remote shell.
        argv.push("-s".into());
        if relay.nice.is_some() {
            argv.push(format!("--rsync-path={}rsync", nice_prefix(relay.nice)));
        }
    }
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
    if relay.restricted {
        argv.push(format!("{}@127.0.0.1:./", relay.user));
    } else {
        argv.push(format!("{}@127.0.0.1:{path}/", relay.user));
    }
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
pub(crate) fn parse_progress(line: &str) -> Option<(u64, Option<u64>)> {
    let mut parts = line.split_whitespace();
    let bytes: u64 = parts.next()?.replace(',', "").parse().ok()?;
    let pct: u64 = parts.next()?.strip_suffix('%')?.parse().ok()?;
    let total = (pct > 0).then(|| bytes.saturating_mul(100) / pct);
    Some((bytes, total))
}

/// A fresh key pair for the relay in the run's directory on the old host,
/// made by the app's user; returns the public key.
async fn make_key(
    src: &Host,
    as_user: &RunAs,
    run_dir: &str,
    key: &str,
    comment: &str,
) -> Result<String, StepFailure> {
    let pubkey = format!("{key}.pub");
    for argv in [
        vec!["mkdir", "-p", "-m", "700", "--", run_dir],
        vec!["rm", "-f", "--", key, &pubkey],
        vec![
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            key,
        ],
    ] {
        run_quiet_checked(src, &RemoteCommand::new(as_user.clone(), argv)).await?;
    }
    Ok(run_quiet_checked(
        src,
        &RemoteCommand::new(as_user.clone(), ["cat", "--", &pubkey]),
    )
    .await?
    .stdout)
}

impl Relay {
    /// Everything after the key is authorised happens with the relay in hand,
    /// so any failure from there on still removes the key.
    async fn open(
        src: &Host,
        dst: &Host,
        ctx: &RunCtx,
        name: &str,
        user: &str,
        path: &str,
        nice: Option<u8>,
    ) -> Result<Relay, StepFailure> {
        let run_dir = ctx.vars.text("run_dir")?;
        if !crate::config::is_simple_abs_path(&run_dir) {
            return Err(StepFailure::new(format!(
                "run_dir '{run_dir}' must be an absolute path of letters, digits and . _ - / only (it is part of rsync's -e option)"
            )));
        }
        let run_id = ctx.vars.text("run_id")?;
        let target_home = ctx.facts.target_home.clone();
        if target_home.is_empty() || ctx.facts.target_host_keys.is_empty() {
            return Err(StepFailure::new(
                "the media relay needs what preflight finds (the app user's home on the target and the target's host keys); run preflight first",
            ));
        }
        let as_user = RunAs::User(user.to_string());
        let key = format!("{run_dir}/relay-{name}");
        let comment = format!("hikkoshi-relay-{run_id}-{name}");

        let public = make_key(src, &as_user, &run_dir, &key, &comment).await?;
        // sshd hands the forced command to the target's shell: only a plain path goes in it.
        let restricted = ctx.facts.target_rrsync && crate::config::is_simple_abs_path(path);
        let sshd = ctx
            .facts
            .target_sshd
            .clone()
            .unwrap_or_else(|| ("127.0.0.1".to_string(), 22));
        let from = from_addresses(&sshd.0);
        let options = if restricted {
            format!(
                "command=\"{}rrsync -wo {path}\",restrict,from=\"{from}\"",
                nice_prefix(nice)
            )
        } else {
            format!("restrict,from=\"{from}\"")
        };
        let line = format!("{options} {}", public.trim());

        let socket_dir = crate::remote::operator_socket_dir().map_err(|e| {
            StepFailure::new(format!(
                "cannot create a private directory on this machine for the relay socket: {e}"
            ))
        })?;
        let mut relay = Relay {
            user: user.to_string(),
            known_hosts: format!("{key}-known_hosts"),
            key,
            comment,
            port: 0,
            socket: socket_dir.path().join("relay.sock"),
            _socket_dir: socket_dir,
            target_home,
            sshd,
            forwarded_local: false,
            restricted,
            nice,
        };
        let authorize =
            RemoteCommand::script(as_user.clone(), AUTHORIZE, &[&relay.target_home, &line]);
        if let Err(e) = run_quiet_checked(dst, &authorize).await {
            relay.close(src, dst).await;
            return Err(e);
        }
        if let Err(e) = relay.connect(src, dst, ctx, &as_user).await {
            for p in relay.close(src, dst).await {
                tracing::warn!("relay cleanup: {p}");
            }
            return Err(e);
        }
        Ok(relay)
    }

    async fn connect(
        &mut self,
        src: &Host,
        dst: &Host,
        ctx: &RunCtx,
        as_user: &RunAs,
    ) -> Result<(), StepFailure> {
        dst.forward(
            ForwardType::Local,
            Socket::UnixSocket {
                path: self.socket.clone().into(),
            },
            Socket::new(self.sshd.0.as_str(), self.sshd.1),
        )
        .await?;
        self.forwarded_local = true;
        let mut last_err = None;
        for _ in 0..10 {
            let candidate = random_port();
            match src
                .forward(
                    ForwardType::Remote,
                    Socket::new("127.0.0.1", candidate),
                    Socket::UnixSocket {
                        path: self.socket.clone().into(),
                    },
                )
                .await
            {
                Ok(()) => {
                    self.port = candidate;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if self.port == 0 {
            return Err(last_err.map_or_else(
                || {
                    StepFailure::on(
                        src,
                        format!(
                            "on {}: no free port on 127.0.0.1 for the media relay",
                            src.name()
                        ),
                    )
                },
                StepFailure::from,
            ));
        }
        let port = self.port;
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
        let write = RemoteCommand::script(as_user.clone(), WRITE_STDIN, &[&self.known_hosts]);
        let f = src
            .run_with_input(&write, Some(keys.as_bytes()), &mut |_, _| {})
            .await?;
        if !f.success() {
            return Err(StepFailure::from_finished(src, &write, &f));
        }
        Ok(())
    }

    /// Always called once the key exists; returns what could not be undone.
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
        if self.forwarded_local
            && let Err(e) = dst
                .close_forward(
                    ForwardType::Local,
                    Socket::UnixSocket {
                        path: self.socket.clone().into(),
                    },
                    Socket::new(self.sshd.0.as_str(), self.sshd.1),
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
            Ok(f) => problems.push(format!(
                "{} (remove the line ending in '{}' from {}/.ssh/authorized_keys on {} by hand)",
                StepFailure::from_finished(dst, &deauth, &f).message,
                self.comment,
                self.target_home,
                dst.name()
            )),
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

/// The step's excludes, plus its re-fetchable cache when the config says
/// `[move] media_cache = "skip"`. Anchored at the copied directory, so only
/// that cache is left out.
fn excludes(step: &RsyncBody, vars: &Vars) -> Result<Vec<String>, TemplateError> {
    let mut out = step.exclude.clone();
    if let Some(cache) = &step.cache
        && vars.condition("media_cache_skipped")?
    {
        out.push(format!("/{}/", vars.render(cache)?.trim_matches('/')));
    }
    Ok(out)
}

async fn sync_path(
    src: &Host,
    dst: &Host,
    relay: &Relay,
    step: &RsyncBody,
    exclude: &[String],
    path: &str,
    io: &StepIo,
) -> Result<(), StepFailure> {
    let as_user = RunAs::User(relay.user.clone());
    let cmd = RemoteCommand::new(
        as_user.clone(),
        rsync_argv(relay, path, step.delete, exclude, false),
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
        // After the final pass the trees must agree by name, size and time: rsync lists anything else.
        let check = RemoteCommand::new(as_user, rsync_argv(relay, path, true, exclude, true));
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
            format!("checked: rsync finds no difference in '{path}' (names, sizes, times)"),
        );
    }
    Ok(())
}

pub async fn run(spec: &StepSpec, step: &RsyncBody, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let user = ctx.vars.render(spec.user.as_deref().unwrap_or("root"))?;
    let paths = ctx.vars.render_argv(&step.paths)?;
    let exclude = excludes(step, &ctx.vars)?;
    if exclude.len() > step.exclude.len()
        && let Some(note) = &step.cache_note
    {
        io.output(Stream::Stdout, ctx.vars.render(note)?);
    }
    ctx.connect().await?;
    let hosts = ctx.connected()?;
    let (src, dst) = (&hosts.source, &hosts.target);
    let as_user = RunAs::User(user.clone());
    for (n, path) in paths.iter().enumerate() {
        let exists = src
            .run_quiet(&RemoteCommand::new(
                as_user.clone(),
                ["test", "-d", path.as_str()],
            ))
            .await?
            .success();
        if !exists {
            io.output(
                Stream::Stdout,
                format!("{}: '{path}' does not exist; nothing to copy", src.name()),
            );
            continue;
        }
        run_quiet_checked(
            dst,
            &RemoteCommand::new(as_user.clone(), ["mkdir", "-p", "--", path.as_str()]),
        )
        .await?;
        let name = format!("{}-{n}", spec.id);
        let relay = Relay::open(src, dst, ctx, &name, &user, path, step.nice).await?;
        let result = sync_path(src, dst, &relay, step, &exclude, path, io).await;
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
    }
    Ok(Done::Completed)
}

pub(crate) fn describe(step: &RsyncBody, plan: &Plan, vars: &Vars, user: &str) -> Vec<String> {
    let left_out: String = excludes(step, vars)
        .unwrap_or_else(|_| step.exclude.clone())
        .iter()
        .map(|e| format!(" --exclude={e}"))
        .collect();
    vars.render_argv_lenient(&step.paths)
        .into_iter()
        .map(|p| {
            format!(
                "{} as {user}: rsync -a{}{left_out} {p}/ -> {} as {user}:{p}/  (relayed through this machine, key made for the step){}",
                plan.source,
                if step.delete { " --delete" } else { "" },
                plan.target,
                if step.delete { "; then a dry run must find no difference" } else { "" }
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
