//! Moves one file from the source to the target, streamed through this machine
//! (the old host usually cannot reach the new one), never stored here, and
//! checked with sha256 on the source, in flight and on the target.

use std::time::{Duration, Instant};

use openssh::Stdio;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Done, StepFailure, StepResult, free_space, run_quiet_checked};
use crate::events::Stream;
use crate::plan::Plan;
use crate::profile::template::Vars;
use crate::profile::{StepSpec, TransferBody};
use crate::remote::{Host, RemoteCommand, RunAs};
use crate::steps::ctx::{RunCtx, StepIo};
use crate::units::human_bytes;

pub struct CopySpec {
    pub from: String,
    pub to: String,
    pub read_as: RunAs,
    pub write_as: RunAs,
    /// Octal, applied before the file appears under its name.
    pub mode: String,
    /// `user:group`, applied by the writer (which must then be root).
    pub owner: Option<String>,
    /// Keep an existing target file beside it with this suffix.
    pub backup_suffix: Option<String>,
}

/// Writes stdin to "$1" (the part file), mode and owner set before anything
/// else can read it. The real name is only given once the part file's sha256
/// matches the source's: a cut connection looks like a short, clean end of input.
const WRITE_SCRIPT: &str = r#"set -e
umask 077
cat > "$1"
chmod "$2" "$1"
if [ -n "$3" ]; then chown -- "$3" "$1"; fi"#;

/// Gives the checked part file "$1" its real name "$2", keeping an existing
/// file as "$2.$3" when a backup suffix is given.
const FINISH_SCRIPT: &str = r#"set -e
if [ -n "$3" ] && [ -e "$2" ]; then cp -p -- "$2" "$2.$3"; fi
mv -f -- "$1" "$2""#;

const HASH_SCRIPT: &str = r#"set -e
stat -c %s -- "$1"
sha256sum -- "$1" | cut -d' ' -f1"#;

async fn size_and_hash(
    host: &Host,
    run_as: RunAs,
    path: &str,
) -> Result<(u64, String), StepFailure> {
    let f = run_quiet_checked(host, &RemoteCommand::script(run_as, HASH_SCRIPT, &[path])).await?;
    let mut lines = f.stdout.lines();
    let size = lines.next().and_then(|l| l.trim().parse().ok());
    let hash = lines.next().map(|l| l.trim().to_string());
    match (size, hash) {
        (Some(s), Some(h)) if h.len() == 64 => Ok((s, h)),
        _ => Err(StepFailure::on(
            host,
            format!("cannot read size and sha256 of '{path}'"),
        )),
    }
}

const CHUNK: usize = 256 * 1024;
/// Less free space than this after a failed write: the disk filled up.
const FULL: u64 = 1024 * 1024;

/// One end of a relay, for the failure message: the host, its command, and
/// what it was doing ("reading '/path'").
pub struct End<'a> {
    pub host: &'a Host,
    pub cmd: &'a RemoteCommand,
    pub doing: &'a str,
}

/// What a relay between two hosts ended with.
pub struct Relayed {
    pub moved: u64,
    pub sha256: String,
    read_ok: bool,
    read_status: Option<i32>,
    read_msg: String,
    write_ok: bool,
    write_status: Option<i32>,
    write_msg: String,
    /// The pipe itself broke, or the writer stopped before the reader was done.
    pipe_error: Option<String>,
    writer_ended_early: bool,
}

impl Relayed {
    pub fn ok(&self) -> bool {
        self.read_ok && self.write_ok && self.pipe_error.is_none()
    }

    fn write_failed(&self) -> bool {
        !self.write_ok || self.pipe_error.is_some()
    }

    /// The failure, blaming the end that failed first: a reader cut off
    /// because the writer stopped (SIGPIPE) is a consequence. `extra` adds
    /// what the caller found out about the writing end.
    pub fn failure(self, reader: End<'_>, writer: End<'_>, extra: Option<String>) -> StepFailure {
        let (src, read_cmd, reading) = (reader.host, reader.cmd, reader.doing);
        let (dst, write_cmd, writing) = (writer.host, writer.cmd, writer.doing);
        // A reader killed by SIGPIPE (141 through a shell, or the signal
        // itself) only tells that the writer went first.
        let broken_pipe = matches!(self.read_status, Some(141) | None);
        let reader_not_to_blame =
            self.read_ok || self.writer_ended_early || (self.write_failed() && broken_pipe);
        let reader_first = !reader_not_to_blame;
        if reader_first {
            return StepFailure {
                host: Some(src.name().to_string()),
                command: Some(read_cmd.display()),
                exit_code: self.read_status,
                stderr_tail: tail(&self.read_msg),
                ..StepFailure::on(
                    src,
                    format!(
                        "on {}: {reading} failed: {}",
                        src.name(),
                        self.read_msg.trim()
                    ),
                )
            };
        }
        let mut cause = match (self.pipe_error, self.write_msg.trim()) {
            (Some(p), "") => p,
            (Some(p), said) => format!("{p}: {said}"),
            (None, said) => said.to_string(),
        };
        if let Some(extra) = extra.filter(|e| !cause.contains(e.as_str())) {
            cause = if cause.is_empty() {
                extra
            } else {
                format!("{cause}; {extra}")
            };
        }
        if cause.is_empty() {
            cause = format!(
                "it exited with {} and said nothing",
                self.write_status
                    .map_or("a signal".to_string(), |c| c.to_string())
            );
        }
        StepFailure {
            host: Some(dst.name().to_string()),
            command: Some(write_cmd.display()),
            exit_code: self.write_status,
            stderr_tail: tail(&self.write_msg),
            ..StepFailure::on(dst, format!("on {}: {writing} failed: {cause}", dst.name()))
        }
    }
}

/// What the copy loop ended with.
struct Pumped {
    moved: u64,
    hasher: Sha256,
    pipe_error: Option<String>,
    /// A write failed while the reader still had data.
    write_broke: bool,
    /// The writer ended before the copy did: what it said on stderr.
    early_msg: Option<String>,
}

/// Moves the bytes in fixed chunks, hashing them if asked and reporting
/// progress, until the reader ends, a side fails, or the writer goes away.
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    writer_gone: &mut tokio::task::JoinHandle<String>,
    (src, dst): (&str, &str),
    hash: bool,
    io: Option<&StepIo>,
    expected: Option<u64>,
) -> Pumped
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut early_msg: Option<String> = None;
    let mut hasher = Sha256::new();
    let mut moved: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    let mut last_report = Instant::now();
    let mut pipe_error = None;
    let mut write_broke = false;
    loop {
        let read = tokio::select! {
            r = from.read(&mut buf) => r,
            t = &mut *writer_gone => {
                early_msg = Some(t.unwrap_or_default());
                break;
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                pipe_error = Some(format!("reading from {src}: {e}"));
                break;
            }
        };
        if hash {
            hasher.update(&buf[..n]);
        }
        let written = tokio::select! {
            w = to.write_all(&buf[..n]) => w,
            t = &mut *writer_gone => {
                early_msg = Some(t.unwrap_or_default());
                break;
            }
        };
        if let Err(e) = written {
            pipe_error = Some(format!("writing to {dst}: {e}"));
            write_broke = true;
            break;
        }
        moved += n as u64;
        if let Some(io) = io
            && last_report.elapsed() >= Duration::from_millis(250)
        {
            io.progress(moved, expected.map(|e| e.max(moved)));
            last_report = Instant::now();
        }
    }
    Pumped {
        moved,
        hasher,
        pipe_error,
        write_broke,
        early_msg,
    }
}

/// The reading end on `src` and the writing end on `dst`, both started.
async fn spawn_ends<'a>(
    src: &'a Host,
    read_cmd: &RemoteCommand,
    dst: &'a Host,
    write_cmd: &RemoteCommand,
) -> Result<
    (
        openssh::Child<&'a openssh::Session>,
        openssh::Child<&'a openssh::Session>,
    ),
    StepFailure,
> {
    let spawn_err = |h: &Host, c: &RemoteCommand, e: openssh::Error| {
        StepFailure::on(
            h,
            format!(
                "on {}: cannot start '{}': {}",
                h.name(),
                c.display(),
                crate::remote::error_chain(&e)
            ),
        )
    };
    let reader = src
        .command(read_cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await
        .map_err(|e| spawn_err(src, read_cmd, e))?;
    let writer = dst
        .command(write_cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .await
        .map_err(|e| spawn_err(dst, write_cmd, e))?;
    Ok((reader, writer))
}

/// Streams `read_cmd`'s stdout on `src` into `write_cmd`'s stdin on `dst`
/// through this machine, in fixed chunks (memory stays flat whatever the
/// size), reporting progress against `expected`. With `hash`, the sha256 of
/// what passed (a copy compares it; a pipe into pg_restore has no use for it).
pub async fn relay(
    src: &Host,
    read_cmd: &RemoteCommand,
    dst: &Host,
    write_cmd: &RemoteCommand,
    io: Option<&StepIo>,
    expected: Option<u64>,
    hash: bool,
) -> Result<Relayed, StepFailure> {
    let (mut reader, mut writer) = spawn_ends(src, read_cmd, dst, write_cmd).await?;
    let (Some(mut from), Some(mut to)) = (reader.stdout().take(), writer.stdin().take()) else {
        return Err(StepFailure::new(format!(
            "could not open the pipes from {} to {} through this machine; run the step again",
            src.name(),
            dst.name()
        )));
    };
    let mut read_err = reader.stderr().take();
    // The writer's stderr closes when it exits: if that happens while data
    // still flows (a full disk), nobody reads our end any more and a write
    // would wait forever, so the copy watches for it.
    let mut write_err = writer.stderr().take();
    let mut writer_gone = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(s) = write_err.as_mut() {
            let _ = s.read_to_string(&mut text).await;
        }
        text
    });
    let Pumped {
        moved,
        hasher,
        mut pipe_error,
        write_broke,
        mut early_msg,
    } = pump(
        &mut from,
        &mut to,
        &mut writer_gone,
        (src.name(), dst.name()),
        hash,
        io,
        expected,
    )
    .await;
    let _ = to.shutdown().await;
    drop(to);
    // The reader on the source may still have data for us: it stops on a closed pipe.
    drop(from);
    // The copy stopped on a failed write while the reader still had data:
    // whatever the reader dies of once its pipe is gone (SIGPIPE, or a
    // 'Broken pipe' error and exit 1 from a tool that ignores the signal) is
    // a consequence, never the cause.
    let writer_ended_early = early_msg.is_some() || write_broke;
    if write_broke
        && !dst.alive().await
        && let Some(e) = pipe_error.take()
    {
        pipe_error = Some(format!(
            "lost the connection to {} during the copy ({e})",
            dst.name()
        ));
    }
    if early_msg.is_some() && pipe_error.is_none() {
        pipe_error = Some(if dst.alive().await {
            format!(
                "the writing end on {} stopped before the copy was complete",
                dst.name()
            )
        } else {
            format!("lost the connection to {} during the copy", dst.name())
        });
    }
    let write_msg = async {
        match early_msg.take() {
            Some(text) => text,
            None => (&mut writer_gone).await.unwrap_or_default(),
        }
    };
    let stderr_text = |s: &mut Option<openssh::ChildStderr>| {
        let taken = s.take();
        async move {
            let mut text = String::new();
            if let Some(mut s) = taken {
                let _ = s.read_to_string(&mut text).await;
            }
            text
        }
    };
    let (read_status, write_status, read_msg, write_msg) = tokio::join!(
        reader.wait(),
        writer.wait(),
        stderr_text(&mut read_err),
        write_msg
    );
    if let Some(io) = io {
        io.progress(moved, Some(expected.map_or(moved, |e| e.max(moved))));
    }
    let ok =
        |s: &Result<std::process::ExitStatus, openssh::Error>| matches!(s, Ok(st) if st.success());
    let code = |s: &Result<std::process::ExitStatus, openssh::Error>| {
        s.as_ref().ok().and_then(std::process::ExitStatus::code)
    };
    Ok(Relayed {
        moved,
        sha256: hex(&hasher.finalize()),
        read_ok: ok(&read_status),
        read_status: code(&read_status),
        read_msg,
        write_ok: ok(&write_status),
        write_status: code(&write_status),
        write_msg,
        pipe_error,
        writer_ended_early,
    })
}

pub(crate) async fn copy_file(
    src: &Host,
    dst: &Host,
    spec: &CopySpec,
    io: &StepIo,
) -> Result<u64, StepFailure> {
    let stat = run_quiet_checked(
        src,
        &RemoteCommand::new(
            spec.read_as.clone(),
            ["stat", "-c", "%s", "--", spec.from.as_str()],
        ),
    )
    .await?;
    let expected = stat.stdout.trim().parse::<u64>().ok();
    io.progress(0, expected);

    let part = format!("{}.hikkoshi-part", spec.to);
    let read_cmd = RemoteCommand::new(spec.read_as.clone(), ["cat", "--", spec.from.as_str()]);
    let write_cmd = RemoteCommand::script(
        spec.write_as.clone(),
        WRITE_SCRIPT,
        &[&part, &spec.mode, spec.owner.as_deref().unwrap_or("")],
    );
    // The source's own sha256 is read while the copy runs, not before it.
    let (hashed, relayed) = tokio::join!(
        size_and_hash(src, spec.read_as.clone(), &spec.from),
        relay(src, &read_cmd, dst, &write_cmd, Some(io), expected, true)
    );
    let relayed = relayed?;
    if !relayed.ok() {
        // What the writer said can be lost with its connection; a full disk
        // is the usual cause, so look before the partial copy is removed.
        let mut full = None;
        if relayed.write_failed()
            && let Ok(Some((avail, mount))) = free_space(dst, spec.write_as.clone(), &part).await
            && avail < FULL
        {
            full = Some(format!(
                "No space left on device: '{mount}' on {} has {} free",
                dst.name(),
                human_bytes(avail)
            ));
        }
        discard(dst, &spec.write_as, &part).await;
        return Err(relayed.failure(
            End {
                host: src,
                cmd: &read_cmd,
                doing: &format!("reading '{}'", spec.from),
            },
            End {
                host: dst,
                cmd: &write_cmd,
                doing: &format!("writing '{}'", spec.to),
            },
            full,
        ));
    }
    let (size, source_hash) = match hashed {
        Ok(h) => h,
        Err(e) => {
            discard(dst, &spec.write_as, &part).await;
            return Err(e);
        }
    };
    let (moved, streamed_hash) = (relayed.moved, relayed.sha256);
    let (target_size, target_hash) = size_and_hash(dst, spec.write_as.clone(), &part).await?;
    if moved != size
        || streamed_hash != source_hash
        || target_hash != source_hash
        || target_size != size
    {
        discard(dst, &spec.write_as, &part).await;
        return Err(StepFailure::on(
            dst,
            format!(
                "on {}: the copy of '{}' did not arrive intact (source {size} bytes sha256 {source_hash}; streamed {moved} bytes {streamed_hash}; written {target_size} bytes {target_hash}); the partial copy was removed and '{}' left as it was. Run the step again.",
                dst.name(),
                spec.from,
                spec.to
            ),
        ));
    }
    let finish = RemoteCommand::script(
        spec.write_as.clone(),
        FINISH_SCRIPT,
        &[&part, &spec.to, spec.backup_suffix.as_deref().unwrap_or("")],
    );
    super::run_quiet_checked(dst, &finish).await?;
    io.output(
        Stream::Stdout,
        format!("{} bytes, sha256 {source_hash} on both hosts", size),
    );
    Ok(size)
}

/// Best effort: a part file left behind is named in the failure anyway.
async fn discard(dst: &Host, run_as: &RunAs, part: &str) {
    let _ = dst
        .run_quiet(&RemoteCommand::new(
            run_as.clone(),
            ["rm", "-f", "--", part],
        ))
        .await;
}

fn tail(text: &str) -> Vec<String> {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let start = lines.len().saturating_sub(30);
    lines[start..].to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn run(
    spec: &StepSpec,
    step: &TransferBody,
    ctx: &mut RunCtx,
    io: &StepIo,
) -> StepResult {
    let v = &ctx.vars;
    let user = RunAs::from_profile(&v.render(spec.user.as_deref().unwrap_or("root"))?);
    let pairs: Vec<(String, String)> = if step.files.is_empty() {
        vec![(
            v.render(step.from.as_deref().unwrap_or_default())?,
            v.render(step.to.as_deref().unwrap_or_default())?,
        )]
    } else {
        v.render_argv(&step.files)?
            .into_iter()
            .map(|f| (f.clone(), f))
            .collect()
    };
    let specs = pairs
        .into_iter()
        .map(|(from, to)| {
            Ok(CopySpec {
                from,
                to,
                read_as: user.clone(),
                write_as: user.clone(),
                mode: step.mode.clone(),
                owner: step.owner.as_ref().map(|o| v.render(o)).transpose()?,
                backup_suffix: step
                    .backup
                    .then(|| format!("hikkoshi-{}", v.text("run_id").unwrap_or_default())),
            })
        })
        .collect::<Result<Vec<_>, crate::profile::template::TemplateError>>()?;
    ctx.connect().await?;
    let hosts = ctx.connected()?;
    for spec in &specs {
        if specs.len() > 1 {
            io.output(
                crate::events::Stream::Stdout,
                format!("copying '{}'", spec.from),
            );
        }
        copy_file(&hosts.source, &hosts.target, spec, io).await?;
    }
    Ok(Done::Completed)
}

pub(crate) fn describe(step: &TransferBody, plan: &Plan, vars: &Vars, user: &str) -> Vec<String> {
    let pairs: Vec<(String, String)> = if step.files.is_empty() {
        vec![(
            vars.render_lenient(step.from.as_deref().unwrap_or_default()),
            vars.render_lenient(step.to.as_deref().unwrap_or_default()),
        )]
    } else {
        vars.render_argv_lenient(&step.files)
            .into_iter()
            .map(|f| (f.clone(), f))
            .collect()
    };
    let q = crate::plan::shell_quote;
    let mut lines: Vec<String> = pairs
        .iter()
        .map(|(from, to)| {
            let (from, to) = (q(from), q(to));
            format!(
                "{} as {user}: cat -- {from}  | through this machine |  {} as {user}: write {to} (mode {}{})",
                plan.source,
                plan.target,
                step.mode,
                if step.backup {
                    ", an existing file kept as a backup"
                } else {
                    ""
                }
            )
        })
        .collect();
    lines.push("sha256 compared on the source, in flight and on the target".into());
    lines
}
