//! A host reached over SSH through the system's ssh (openssh crate, native
//! multiplexing): ~/.ssh/config, agents, ProxyJump and known_hosts behave as the
//! admin expects, and host keys are always checked strictly.
//!
//! Every argument goes through openssh's `.arg()`, which quotes it for the
//! remote shell; the only shell scripts sent are constants that take their
//! values as positional parameters.

mod command;
pub mod lines;

pub use command::*;

use std::path::Path;
use std::time::Duration;

use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Socket, Stdio};
use tokio::io::AsyncWriteExt;

use crate::events::Stream;
use lines::LineSplitter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "host key of '{dest}' is not known, and host keys are always checked strictly.{offer}\n  Check the fingerprint on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add the key to your known_hosts, for example: {accept}"
    )]
    HostKeyUnknown {
        dest: String,
        offer: String,
        accept: String,
    },
    #[error(
        "host key of '{dest}' has CHANGED since it was recorded in known_hosts: either the host was reinstalled or someone is in the middle.\n{detail}\n  If the change is expected, remove the old key (ssh-keygen -R <host>) and add the new one after checking its fingerprint on the host."
    )]
    HostKeyChanged { dest: String, detail: String },
    #[error("cannot connect to '{dest}': {message}")]
    Connect { dest: String, message: String },
    #[error("on {host}: could not run '{command}': {message}")]
    Spawn {
        host: String,
        command: String,
        message: String,
    },
    #[error("on {host}: lost the connection while running '{command}'")]
    Disconnected { host: String, command: String },
    #[error("on {host}: port forwarding failed: {message}")]
    Forward { host: String, message: String },
}

/// What a finished remote command left behind. A non-zero exit is data here,
/// not an error: the step decides what it means.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr_tail: Vec<String>,
    pub first_error: Option<String>,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The exit code as people read it: a number, or "by signal".
    pub(crate) fn exit_text(&self) -> String {
        self.exit_code
            .map_or_else(|| "by signal".into(), |c| c.to_string())
    }

    /// Why it failed, in one line: the first error line, else the last line of stderr.
    pub fn cause(&self) -> String {
        self.first_error
            .clone()
            .or_else(|| self.stderr_tail.last().cloned())
            .unwrap_or_default()
    }
}

/// What a check needs of a host: its name, its role in the move, and to run
/// a command there. `Host` is the real one over ssh; tests give checks a fake
/// that answers from a table, so each check is tested without a host.
pub trait Shell: Sync {
    fn name(&self) -> &str;
    fn role(&self) -> Role;
    fn run_with_input(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        sink: &mut (dyn FnMut(Stream, String) + Send),
    ) -> impl std::future::Future<Output = Result<Finished, RemoteError>> + Send;

    /// Runs without passing output on: for commands whose output is a secret
    /// or only meant for parsing.
    fn run_quiet(
        &self,
        cmd: &RemoteCommand,
    ) -> impl std::future::Future<Output = Result<Finished, RemoteError>> + Send {
        async move { self.run_with_input(cmd, None, &mut |_, _| {}).await }
    }

    fn run(
        &self,
        cmd: &RemoteCommand,
        sink: &mut (dyn FnMut(Stream, String) + Send),
    ) -> impl std::future::Future<Output = Result<Finished, RemoteError>> + Send {
        self.run_with_input(cmd, None, sink)
    }
}

impl Shell for Host {
    fn name(&self) -> &str {
        &self.dest
    }

    fn role(&self) -> Role {
        self.role
    }

    fn run_with_input(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        sink: &mut (dyn FnMut(Stream, String) + Send),
    ) -> impl std::future::Future<Output = Result<Finished, RemoteError>> + Send {
        Host::run_with_input(self, cmd, input, sink)
    }
}

const STDERR_TAIL: usize = 30;
const STDOUT_CAPTURE: usize = 64 * 1024 * 1024;

pub struct Host {
    pub role: Role,
    pub dest: String,
    pub login: String,
    pub is_root: bool,
    /// Set in every command's environment (HIKKOSHI_RUN=...), so that what a
    /// run left running on the host can be found and stopped.
    tag: Option<String>,
    session: Session,
}

/// Stops every process whose environment carries HIKKOSHI_RUN=$1, children
/// included (they inherit it): the only reliable way to end what a dropped
/// or timed-out command left behind, since closing an ssh channel does not.
const KILL_TAGGED: &str = r#"tag="HIKKOSHI_RUN=$1"
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  if tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qxF -- "$tag"; then
    kill -TERM "$p" 2>/dev/null && echo "$p"
  fi
done
exit 0"#;

/// The same, inside each running container of the compose projects given
/// after the tag and the killer: a tool a step runs in a container carries
/// the tag there, in a PID namespace the host's /proc may not show.
pub(crate) const KILL_TAGGED_IN_CONTAINERS: &str = r#"tag=$1 kill=$2; shift 2
for project do
  for c in $(docker ps -q --filter "label=com.docker.compose.project=$project"); do
    docker exec -u 0 "$c" sh -c "$kill" hikkoshi "$tag" 2>/dev/null
  done
done
exit 0"#;

impl Host {
    pub async fn connect(
        role: Role,
        dest: &str,
        ssh_config: Option<&Path>,
    ) -> Result<Host, RemoteError> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .connect_timeout(Duration::from_secs(20))
            .server_alive_interval(Duration::from_secs(15));
        if let Some(f) = ssh_config {
            b.config_file(f);
        }
        let session = match b.connect_mux(dest).await {
            Ok(s) => s,
            Err(e) => return Err(connect_error(dest, ssh_config, &e).await),
        };
        let mut host = Host {
            role,
            dest: dest.to_string(),
            login: String::new(),
            is_root: false,
            tag: None,
            session,
        };
        let id = host
            .run_quiet(&RemoteCommand::new(RunAs::Login, ["id", "-un"]))
            .await?;
        host.login = id.stdout.trim().to_string();
        host.is_root = host.login == "root";
        Ok(host)
    }

    pub fn name(&self) -> &str {
        &self.dest
    }

    pub(crate) fn full_argv(&self, cmd: &RemoteCommand) -> Vec<String> {
        wrap_argv(&self.login, cmd, self.tag.as_deref())
    }

    pub(crate) async fn alive(&self) -> bool {
        self.session.check().await.is_ok()
    }

    pub(crate) fn set_tag(&mut self, tag: &str) {
        self.tag = Some(tag.to_string());
    }

    /// Stops what this run still has running on the host (after a timeout,
    /// an abort or a lost connection), also inside the containers of the
    /// compose `projects`; returns how many processes were told to stop.
    pub(crate) async fn stop_leftovers(&self, projects: &[String]) -> Result<usize, RemoteError> {
        let Some(tag) = &self.tag else {
            return Ok(0);
        };
        let mut n = self
            .kill(RemoteCommand::script(
                RunAs::Root,
                KILL_TAGGED,
                &[tag.as_str()],
            ))
            .await?;
        if !projects.is_empty() {
            let mut args = vec![tag.as_str(), KILL_TAGGED];
            args.extend(projects.iter().map(String::as_str));
            n += self
                .kill(RemoteCommand::script(
                    RunAs::Root,
                    KILL_TAGGED_IN_CONTAINERS,
                    &args,
                ))
                .await?;
        }
        Ok(n)
    }

    /// Runs a killer script untagged; how many processes it named.
    async fn kill(&self, cmd: RemoteCommand) -> Result<usize, RemoteError> {
        // The killer itself must not carry the tag.
        let argv = wrap_argv(&self.login, &cmd, None);
        let out = self
            .session
            .command(argv[0].as_str())
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| RemoteError::Spawn {
                host: self.dest.clone(),
                command: cmd.display(),
                message: error_chain(&e),
            })?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().count())
    }

    /// An openssh command with all arguments attached; the caller picks stdio.
    pub fn command(&self, cmd: &RemoteCommand) -> openssh::OwningCommand<&Session> {
        let argv = self.full_argv(cmd);
        let mut c = self.session.command(argv[0].as_str());
        c.args(&argv[1..]);
        c
    }

    pub async fn run(
        &self,
        cmd: &RemoteCommand,
        sink: &mut (dyn FnMut(Stream, String) + Send),
    ) -> Result<Finished, RemoteError> {
        self.run_with_input(cmd, None, sink).await
    }

    /// Runs without passing output on: for commands whose output is a secret or
    /// only meant for parsing.
    pub async fn run_quiet(&self, cmd: &RemoteCommand) -> Result<Finished, RemoteError> {
        self.run_with_input(cmd, None, &mut |_, _| {}).await
    }

    pub(crate) async fn run_with_input(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        sink: &mut (dyn FnMut(Stream, String) + Send),
    ) -> Result<Finished, RemoteError> {
        let display = cmd.display();
        let spawn_err = |e: openssh::Error| RemoteError::Spawn {
            host: self.dest.clone(),
            command: display.clone(),
            message: error_chain(&e),
        };
        let mut child = self
            .command(cmd)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(spawn_err)?;

        let stdin = child.stdin().take();
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        let feed = async move {
            if let (Some(mut w), Some(data)) = (stdin, input) {
                // A command that exits without reading all input is judged by its exit code.
                let _ = w.write_all(data).await;
                let _ = w.shutdown().await;
            }
        };

        let mut out = LineSplitter::new(stdout);
        let mut err = LineSplitter::new(stderr);
        let mut finished = Finished::default();
        let mut tail = std::collections::VecDeque::new();
        let (mut strong, mut weak) = (None, None);
        let read = async {
            let (mut out_done, mut err_done) = (false, false);
            while !(out_done && err_done) {
                tokio::select! {
                    line = out.next_line(), if !out_done => match line {
                        Some(l) => {
                            if finished.stdout.len() < STDOUT_CAPTURE {
                                finished.stdout.push_str(&l);
                                finished.stdout.push('\n');
                            }
                            sink(Stream::Stdout, l);
                        }
                        None => out_done = true,
                    },
                    line = err.next_line(), if !err_done => match line {
                        Some(l) => {
                            match error_strength(&l) {
                                2 if strong.is_none() => strong = Some(l.clone()),
                                1 if weak.is_none() => weak = Some(l.clone()),
                                _ => {}
                            }
                            tail.push_back(l.clone());
                            if tail.len() > STDERR_TAIL {
                                tail.pop_front();
                            }
                            sink(Stream::Stderr, l);
                        }
                        None => err_done = true,
                    },
                }
            }
        };
        tokio::join!(feed, read);
        finished.stderr_tail = tail.into_iter().collect();
        finished.first_error = strong.or(weak);
        match child.wait().await {
            Ok(status) => {
                finished.exit_code = status.code();
                Ok(finished)
            }
            Err(openssh::Error::RemoteProcessTerminated) => {
                // Killed by a signal on the host; the connection may or may not be alive.
                if self.session.check().await.is_err() {
                    return Err(RemoteError::Disconnected {
                        host: self.dest.clone(),
                        command: display,
                    });
                }
                finished.exit_code = None;
                Ok(finished)
            }
            Err(openssh::Error::Disconnected) => Err(RemoteError::Disconnected {
                host: self.dest.clone(),
                command: display,
            }),
            Err(e) => Err(spawn_err(e)),
        }
    }

    pub(crate) async fn forward(
        &self,
        kind: ForwardType,
        listen: Socket<'_>,
        connect: Socket<'_>,
    ) -> Result<(), RemoteError> {
        self.session
            .request_port_forward(kind, listen, connect)
            .await
            .map_err(|e| self.forward_error(&e))
    }

    fn forward_error(&self, e: &openssh::Error) -> RemoteError {
        RemoteError::Forward {
            host: self.dest.clone(),
            message: error_chain(e),
        }
    }

    pub(crate) async fn close_forward(
        &self,
        kind: ForwardType,
        listen: Socket<'_>,
        connect: Socket<'_>,
    ) -> Result<(), RemoteError> {
        self.session
            .close_port_forward(kind, listen, connect)
            .await
            .map_err(|e| self.forward_error(&e))
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}

/// pg_restore, psql and friends say "error:" / "ERROR:" / "FATAL:"; the first
/// such line is the cause, the rest usually consequences. Weaker words count
/// only when no line says error outright.
fn error_strength(line: &str) -> u8 {
    let l = line.to_ascii_lowercase();
    if l.contains("error") || l.contains("fatal") {
        2
    } else if l.contains("failed")
        || l.contains("denied")
        || l.contains("cannot")
        || l.contains("could not")
    {
        1
    } else {
        0
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = inner.source();
    }
    s
}

async fn connect_error(dest: &str, ssh_config: Option<&Path>, e: &openssh::Error) -> RemoteError {
    let message = error_chain(e).replace('\r', "");
    if message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        let detail = message
            .lines()
            .filter(|l| {
                l.contains("fingerprint") || l.starts_with("SHA256:") || l.contains("Offending")
            })
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        return RemoteError::HostKeyChanged {
            dest: dest.to_string(),
            detail,
        };
    }
    if message.contains("Host key verification failed") || message.contains("host key is known") {
        let (offer, accept) = describe_unknown_key(dest, ssh_config).await;
        return RemoteError::HostKeyUnknown {
            dest: dest.to_string(),
            offer,
            accept,
        };
    }
    RemoteError::Connect {
        dest: dest.to_string(),
        message: message.trim().to_string(),
    }
}

/// Asks ssh how it would reach `dest` and the host which key it offers, so the
/// message can show the fingerprint to compare. Nothing is written anywhere.
async fn describe_unknown_key(dest: &str, ssh_config: Option<&Path>) -> (String, String) {
    let mut g = tokio::process::Command::new("ssh");
    if let Some(f) = ssh_config {
        g.arg("-F").arg(f);
    }
    g.arg("-G").arg("--").arg(dest);
    let Ok(out) = g.output().await else {
        return (
            String::new(),
            format!("ssh-keyscan <host> >> ~/.ssh/known_hosts (for '{dest}')"),
        );
    };
    let conf = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        conf.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .map(str::to_string)
    };
    let hostname = get("hostname").unwrap_or_else(|| dest.to_string());
    let port = get("port").unwrap_or_else(|| "22".into());
    let known = get("userknownhostsfile")
        .and_then(|f| f.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "~/.ssh/known_hosts".into());
    let accept = format!("ssh-keyscan -p {port} {hostname} >> {known}");
    let proxied = get("proxyjump").is_some_and(|p| p != "none")
        || get("proxycommand").is_some_and(|p| p != "none");
    if proxied {
        return (String::new(), accept);
    }
    let scan = tokio::process::Command::new("ssh-keyscan")
        .args(["-T", "5", "-p", &port, "--", &hostname])
        .stderr(std::process::Stdio::null())
        .output()
        .await;
    let Ok(scan) = scan else {
        return (String::new(), accept);
    };
    let mut keygen = match tokio::process::Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(k) => k,
        Err(_) => return (String::new(), accept),
    };
    if let Some(mut stdin) = keygen.stdin.take() {
        let _ = stdin.write_all(&scan.stdout).await;
    }
    let Ok(fp) = keygen.wait_with_output().await else {
        return (String::new(), accept);
    };
    let prints: Vec<String> = String::from_utf8_lossy(&fp.stdout)
        .lines()
        .map(|l| {
            // "256 SHA256:xxx host (ED25519)" -> "ED25519 SHA256:xxx"
            let parts: Vec<&str> = l.split_whitespace().collect();
            match (parts.get(1), parts.last()) {
                (Some(fp), Some(kind)) => format!("{} {fp}", kind.trim_matches(['(', ')'])),
                _ => l.to_string(),
            }
        })
        .collect();
    if prints.is_empty() {
        return (String::new(), accept);
    }
    (
        format!("\n  {hostname} port {port} offers: {}", prints.join(", ")),
        accept,
    )
}

/// A private directory on this machine for the relay's unix socket.
pub(crate) fn operator_socket_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("hikkoshi-")
        .tempdir_in(std::env::temp_dir())
}

#[cfg(test)]
mod tests;
