//! A host for the checks' unit tests: answers each command from a table
//! (first rule whose text appears in the command line, or in the SQL it is
//! given), records what was asked, and fails anything it has no answer for.

use std::sync::Mutex;

use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::{Report, Settings};
use crate::events::{CheckStatus, EngineEvent, Stream};
use crate::remote::{Finished, RemoteCommand, RemoteError, Role, Shell};
use crate::steps::ctx::StepIo;

pub(super) struct FakeHost {
    name: String,
    role: Role,
    rules: Vec<(String, i32, String)>,
    pub(super) asked: Mutex<Vec<String>>,
}

impl FakeHost {
    pub(super) fn source() -> FakeHost {
        FakeHost::new("old", Role::Source)
    }

    pub(super) fn target() -> FakeHost {
        FakeHost::new("new", Role::Target)
    }

    fn new(name: &str, role: Role) -> FakeHost {
        FakeHost {
            name: name.into(),
            role,
            rules: Vec::new(),
            asked: Mutex::new(Vec::new()),
        }
    }

    /// Commands containing `text` exit with `exit` and print `stdout`.
    pub(super) fn on(mut self, text: &str, exit: i32, stdout: &str) -> FakeHost {
        self.rules.push((text.into(), exit, stdout.into()));
        self
    }
}

impl Shell for FakeHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn role(&self) -> Role {
        self.role
    }

    fn run_with_input(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        _sink: &mut (dyn FnMut(Stream, String) + Send),
    ) -> impl std::future::Future<Output = Result<Finished, RemoteError>> + Send {
        let line = format!(
            "{}{}",
            cmd.display(),
            input
                .map(|i| format!(" <<< {}", String::from_utf8_lossy(i)))
                .unwrap_or_default()
        );
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(line.clone());
        }
        let answer = self
            .rules
            .iter()
            .find(|(text, ..)| line.contains(text.as_str()));
        let finished = match answer {
            Some((_, exit, stdout)) => Finished {
                exit_code: Some(*exit),
                stdout: stdout.clone(),
                ..Finished::default()
            },
            None => Finished {
                exit_code: Some(127),
                first_error: Some(format!("fake: no answer for '{line}'")),
                ..Finished::default()
            },
        };
        std::future::ready(Ok(finished))
    }
}

/// A report whose checks can be read back.
pub(super) struct Checks {
    rx: Mutex<UnboundedReceiver<EngineEvent>>,
    pub(super) io: StepIo,
}

impl Checks {
    pub(super) fn new() -> Checks {
        let (tx, rx) = mpsc::unbounded_channel();
        Checks {
            rx: Mutex::new(rx),
            io: StepIo::new("preflight", tx),
        }
    }

    pub(super) fn report(&self) -> Report<'_> {
        Report {
            io: &self.io,
            failed: Vec::new(),
            drop_target: None,
        }
    }

    /// "host name STATUS: message" for each check said so far.
    pub(super) fn said(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(mut rx) = self.rx.lock() else {
            return out;
        };
        while let Ok(e) = rx.try_recv() {
            if let EngineEvent::Check {
                host,
                name,
                status,
                message,
                ..
            } = e
            {
                let status = match status {
                    CheckStatus::Pass => "ok",
                    CheckStatus::Warn => "WARN",
                    CheckStatus::Fail => "FAIL",
                };
                out.push(format!("{host} {name} {status}: {message}"));
            }
        }
        out
    }
}

/// Settings as the Mastodon profile makes them.
pub(super) fn mastodon() -> Settings {
    Settings {
        user: "mastodon".into(),
        dir: "/home/mastodon/live".into(),
        database: "mastodon_production".into(),
        db_user: "mastodon".into(),
        db_admin: "postgres".into(),
        domain: "social.example.net".into(),
        services: vec!["mastodon-web".into(), "mastodon-sidekiq".into()],
        work_dir: "/home/mastodon/hikkoshi-work".into(),
        redis_service: Some("redis-server".into()),
        has_rsync: true,
        has_redis: true,
        ..Settings::default()
    }
}
