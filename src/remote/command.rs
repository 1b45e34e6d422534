//! A command on a host as an argument vector: who runs it, its environment,
//! directory and umask, or the compose service it runs in; and the argv that
//! really runs, with every value an argument and none in shell text.

use crate::plan::shell_join;

/// Whom a remote command runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// The ssh login user, whoever that is.
    Login,
    /// root: the login itself when it is root, else through `sudo -n`.
    Root,
    /// A named user: `runuser -u` when logged in as root, else `sudo -n -u`.
    User(String),
}

impl RunAs {
    /// Profiles write `root` or a user name.
    pub(crate) fn from_profile(user: &str) -> RunAs {
        if user == "root" {
            RunAs::Root
        } else {
            RunAs::User(user.to_string())
        }
    }
}

/// A Docker Compose service whose container a command runs in: the
/// container is found by compose from the project and the service, never by
/// its name (compose v1 calls it `proj_db_1`, v2 `proj-db-1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InService {
    /// The compose command and the project's options, e.g. `docker compose
    /// --project-directory DIR -p NAME` or `docker-compose -f FILE -p NAME`.
    pub compose: Vec<String>,
    pub service: String,
    /// The user inside the container; none: the image's own.
    pub user: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RemoteCommand {
    /// Who runs the command on the host (for a command inside a service: who
    /// runs the compose client, usually root).
    pub run_as: RunAs,
    pub argv: Vec<String>,
    /// Set in the process that does the work: inside the container when the
    /// command runs in one.
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub umask: Option<String>,
    /// Run inside this compose service's container instead of on the host.
    pub inside: Option<InService>,
    /// A file on the host as the command's stdin or stdout: how a tool in a
    /// container reads or writes the host's files.
    pub redirect: Option<Redirect>,
    /// What a person would type for a constant script: the command line the
    /// script stands for, shown in the plan, events and errors.
    pub shown: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    In(String),
    Out(String),
}

impl Redirect {
    fn script(&self) -> (&'static str, &str) {
        match self {
            Redirect::In(f) => (REDIRECT_IN, f),
            Redirect::Out(f) => (REDIRECT_OUT, f),
        }
    }

    fn shown(&self) -> String {
        match self {
            Redirect::In(f) => format!(" < {}", shell_join(std::slice::from_ref(f))),
            Redirect::Out(f) => format!(" > {}", shell_join(std::slice::from_ref(f))),
        }
    }
}

/// Scripts that see the file as "$0" and the command as "$@".
pub(super) const REDIRECT_IN: &str = "exec \"$@\" <\"$0\"";
pub(super) const REDIRECT_OUT: &str = "exec \"$@\" >\"$0\"";

impl RemoteCommand {
    pub fn new(run_as: RunAs, argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        RemoteCommand {
            run_as,
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            shown: None,
            umask: None,
            inside: None,
            redirect: None,
        }
    }

    /// The same command with a host file as its stdin or stdout.
    pub fn redirect(mut self, r: Redirect) -> Self {
        self.redirect = Some(r);
        self
    }

    /// The same command, run inside a compose service's container.
    pub fn inside(mut self, service: InService) -> Self {
        self.inside = Some(service);
        self
    }

    /// A constant shell script that sees its values only as "$1", "$2"...;
    /// the way to use a pipe or redirection without putting a value in shell text.
    pub fn script(run_as: RunAs, body: &str, args: &[&str]) -> Self {
        let mut argv = vec![
            "sh".to_string(),
            "-c".into(),
            body.into(),
            "hikkoshi".into(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        RemoteCommand::new(run_as, argv)
    }

    /// Shown as `line` (a script's equivalent command line) instead of its argv.
    pub fn shown_as(mut self, line: String) -> Self {
        self.shown = Some(line);
        self
    }

    pub fn umask(mut self, mask: &str) -> Self {
        self.umask = Some(mask.to_string());
        self
    }

    /// The command as a person would type it, for events and error messages.
    pub fn display(&self) -> String {
        if let Some(line) = &self.shown {
            return line.clone();
        }
        let redirect = self
            .redirect
            .as_ref()
            .map(Redirect::shown)
            .unwrap_or_default();
        if let Some(inside) = &self.inside {
            return shell_join(&in_service_argv(inside, self, None)) + &redirect;
        }
        let mut s = String::new();
        if let Some(c) = &self.cwd {
            s.push_str(&format!("cd {} && ", shell_join(std::slice::from_ref(c))));
        }
        if let Some(m) = &self.umask {
            s.push_str(&format!("umask {m} && "));
        }
        for (k, v) in &self.env {
            s.push_str(&format!("{k}={} ", shell_join(std::slice::from_ref(v))));
        }
        s.push_str(&shell_join(&self.argv));
        s.push_str(&redirect);
        s
    }
}

/// A script that only ever sees its values as "$@": sets the umask, then runs the command.
pub(super) const UMASK_EXEC: &str = "umask \"$0\" && exec \"$@\"";

/// `COMPOSE exec -T [-u USER] [-w DIR] [-e K=V]... SERVICE ARGV`: the run tag,
/// the environment, the directory and the umask go into the container's
/// process, which is what a timeout or an abort must find and stop.
fn in_service_argv(inside: &InService, cmd: &RemoteCommand, tag: Option<&str>) -> Vec<String> {
    let mut argv = inside.compose.clone();
    argv.extend(["exec".into(), "-T".into()]);
    if let Some(u) = &inside.user {
        argv.extend(["-u".into(), u.clone()]);
    }
    if let Some(c) = &cmd.cwd {
        argv.extend(["-w".into(), c.clone()]);
    }
    let tag = tag.map(|t| ("HIKKOSHI_RUN".to_string(), t.to_string()));
    for (k, v) in tag.iter().chain(&cmd.env) {
        argv.extend(["-e".into(), format!("{k}={v}")]);
    }
    argv.push(inside.service.clone());
    if let Some(m) = &cmd.umask {
        argv.extend(["sh".into(), "-c".into(), UMASK_EXEC.into(), m.clone()]);
    }
    argv.extend(cmd.argv.iter().cloned());
    argv
}

/// The argv that actually runs on a host where `login` is the ssh user:
/// privilege change, environment, directory and umask as fixed prefixes, the
/// command's own arguments untouched.
pub(crate) fn wrap_argv(login: &str, cmd: &RemoteCommand, tag: Option<&str>) -> Vec<String> {
    let is_root = login == "root";
    let mut argv: Vec<String> = Vec::new();
    match &cmd.run_as {
        RunAs::Login => {}
        RunAs::Root if is_root => {}
        RunAs::Root => argv.extend(["sudo", "-n", "--"].map(String::from)),
        RunAs::User(u) if u == login => {}
        RunAs::User(u) if is_root => {
            argv.extend(["runuser", "-u", u.as_str(), "--"].map(String::from))
        }
        RunAs::User(u) => argv.extend(["sudo", "-n", "-u", u.as_str(), "--"].map(String::from)),
    }
    let switched = !argv.is_empty();
    if let Some(inside) = &cmd.inside {
        // The compose client carries the tag too, so a stop finds it with the
        // process it waits for.
        if let Some(t) = tag {
            argv.extend(["env".into(), format!("HIKKOSHI_RUN={t}")]);
        }
        if let Some(r) = &cmd.redirect {
            // The file is the host's: its umask is the host shell's.
            if let (Some(m), Redirect::Out(_)) = (&cmd.umask, r) {
                argv.extend(["sh".into(), "-c".into(), UMASK_EXEC.into(), m.clone()]);
            }
            let (script, file) = r.script();
            argv.extend(["sh".into(), "-c".into(), script.into(), file.to_string()]);
        }
        argv.extend(in_service_argv(inside, cmd, tag));
        return argv;
    }
    // Another user usually may not enter the login's home, and PostgreSQL's tools
    // complain about it on every call: run from / unless told otherwise.
    let cwd = cmd
        .cwd
        .clone()
        .or_else(|| switched.then(|| "/".to_string()));
    let mut env: Vec<String> = Vec::new();
    if let Some(c) = cwd {
        env.push("-C".into());
        env.push(c);
    }
    // After sudo/runuser, which may reset the environment.
    if let Some(t) = tag {
        env.push(format!("HIKKOSHI_RUN={t}"));
    }
    env.extend(cmd.env.iter().map(|(k, v)| format!("{k}={v}")));
    if !env.is_empty() {
        argv.push("env".into());
        argv.extend(env);
    }
    if let Some(m) = &cmd.umask {
        argv.extend(["sh".into(), "-c".into(), UMASK_EXEC.into(), m.clone()]);
    }
    if let Some(r) = &cmd.redirect {
        let (script, file) = r.script();
        argv.extend(["sh".into(), "-c".into(), script.into(), file.to_string()]);
    }
    argv.extend(cmd.argv.iter().cloned());
    argv
}
