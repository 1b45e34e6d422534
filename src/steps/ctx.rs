//! What a step works with while a run goes on: the plan and its settings, the
//! connections to both hosts, the facts preflight found, the run's options,
//! and its line to the outside (output, progress, checks). The engine makes
//! them and hands them to each step; steps never reach into the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::events::{CheckStatus, EngineEvent, Stream};
use crate::plan::Plan;
use crate::profile::template::Vars;
use crate::redact::Redactor;
use crate::remote::{Host, RemoteError, Role};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub run_id: String,
    /// Recorded in the journal.
    pub mode: crate::events::RunMode,
    pub ssh_config: Option<PathBuf>,
    /// The config's [dns]: what the cutover waits for, and where it asks.
    pub dns: Option<crate::config::DnsConfig>,
    /// Wait for `Start` before each step: the wizard runs step by step. The wait
    /// leaves no trace in the journal, so a gated run's journal reads like any other.
    pub gated: bool,
    /// Clear another run's lock on the old host (the admin knows it is stale).
    pub break_lock: bool,
    /// Leave the dump files in place when the run does not succeed.
    pub keep_dump: bool,
    /// Drop a target database an earlier hikkoshi run created (by its marker).
    pub reset_target: bool,
    /// Resuming: the steps the earlier attempts finished, not run again.
    pub resume_done: std::collections::BTreeSet<String>,
    /// A rehearsal restores this backup on the old host instead of a fresh dump.
    pub from_backup: Option<String>,
    /// A real run: what the last rehearsal of the same move predicted.
    pub prediction: Option<crate::prediction::RehearsalPrediction>,
    /// A rehearsal: the real run's [dns] (never used to touch DNS), so the
    /// forecast knows whether the pinned check will run.
    pub run_dns: Option<crate::config::DnsConfig>,
}

pub struct Hosts {
    pub source: Host,
    pub target: Host,
}

impl Hosts {
    pub fn get(&self, role: Role) -> &Host {
        match role {
            Role::Source => &self.source,
            Role::Target => &self.target,
        }
    }
}

/// Everything a step may read or change while the run goes on.
pub struct RunCtx {
    pub plan: Plan,
    /// The plan's settings plus `run_id` and the facts preflight found.
    pub vars: Vars,
    /// Shared with the steps that run beside another one (`beside` in the profile).
    pub hosts: Option<Arc<Hosts>>,
    pub facts: super::facts::Facts,
    pub redactor: Redactor,
    pub opts: RunOptions,
    /// The work directory (on the old host) whose lock this run holds.
    pub lock: Option<(String, String)>,
}

impl RunCtx {
    /// How the host in `role` runs the move's tools, from the plan's settings.
    pub fn runtime(&self, role: Role) -> crate::runtime::Runtime {
        let at = match role {
            Role::Source => 0,
            Role::Target => 1,
        };
        if let Some(st) = &self.facts.stacks[at] {
            return crate::runtime::Runtime::compose(&st.project, &st.roles, &st.restart);
        }
        let admin = self
            .vars
            .text("db_admin")
            .unwrap_or_else(|_| "postgres".into());
        let user = self.vars.text("user").unwrap_or_else(|_| "root".into());
        crate::runtime::Runtime::systemd(&admin, &user)
    }

    /// The compose project a host runs, whose containers a step's tools may
    /// have been left running in.
    fn projects(&self, role: Role) -> Vec<String> {
        let at = match role {
            Role::Source => 0,
            Role::Target => 1,
        };
        self.facts.stacks[at]
            .iter()
            .map(|st| st.project.name.clone())
            .collect()
    }

    /// Connects both hosts on first use. Preflight connects itself, to report
    /// each host as a check; other steps only get here on a profile without preflight.
    pub async fn connect(&mut self) -> Result<(), RemoteError> {
        if self.hosts.is_none() {
            let cfg = self.opts.ssh_config.as_deref();
            let (source, target) = tokio::join!(
                Host::connect(Role::Source, &self.plan.source, cfg),
                Host::connect(Role::Target, &self.plan.target, cfg),
            );
            let (mut source, mut target) = (source?, target?);
            source.set_tag(&self.opts.run_id);
            target.set_tag(&self.opts.run_id);
            self.hosts = Some(Arc::new(Hosts { source, target }));
        }
        Ok(())
    }

    /// After a step failed, timed out or was stopped: ends what it left
    /// running on either host, and forgets a connection that died so the next
    /// attempt connects again. Says what it did, as output of `io`'s step.
    pub(crate) async fn after_failure(&mut self, io: &StepIo) {
        let Some(hosts) = self.hosts.take() else {
            return;
        };
        let (s, t) = tokio::join!(hosts.source.alive(), hosts.target.alive());
        if !(s && t) {
            let dead: Vec<&str> = [(s, hosts.source.name()), (t, hosts.target.name())]
                .iter()
                .filter(|(alive, _)| !alive)
                .map(|(_, n)| *n)
                .collect();
            io.output(
                Stream::Stderr,
                format!(
                    "the connection to {} was lost; the next attempt connects again",
                    dead.join(" and ")
                ),
            );
        }
        for (alive, host) in [(s, &hosts.source), (t, &hosts.target)] {
            if !alive {
                continue;
            }
            match host.stop_leftovers(&self.projects(host.role)).await {
                Ok(0) => {}
                Ok(n) => io.output(
                    Stream::Stderr,
                    format!(
                        "on {}: stopped {n} process(es) the step left running",
                        host.name()
                    ),
                ),
                Err(e) => io.output(
                    Stream::Stderr,
                    format!(
                        "on {}: could not stop what the step left running: {e}",
                        host.name()
                    ),
                ),
            }
        }
        if s && t {
            self.hosts = Some(hosts);
        } else {
            close(hosts).await;
            // Connecting again now also ends what the dead connection left
            // running; if the host stays unreachable, the next attempt tries again.
            if self.connect().await.is_ok()
                && let Some(h) = &self.hosts
            {
                let again = if s { &h.target } else { &h.source };
                if let Ok(n) = again.stop_leftovers(&self.projects(again.role)).await
                    && n > 0
                {
                    io.output(
                        Stream::Stderr,
                        format!(
                            "on {}: stopped {n} process(es) the step left running",
                            again.name()
                        ),
                    );
                }
            }
        }
    }

    /// A context for a step that runs beside the current one: the same
    /// connections and settings; what it changes stays its own.
    pub(crate) fn beside(&self) -> RunCtx {
        RunCtx {
            plan: self.plan.clone(),
            vars: self.vars.clone(),
            hosts: self.hosts.clone(),
            facts: self.facts.clone(),
            redactor: self.redactor.clone(),
            opts: self.opts.clone(),
            lock: None,
        }
    }

    pub fn connected(&self) -> Result<&Hosts, RemoteError> {
        self.hosts.as_deref().ok_or_else(|| self.not_connected())
    }

    /// The connections, for a step to hold while it also changes the context.
    pub(crate) fn shared_hosts(&self) -> Result<Arc<Hosts>, RemoteError> {
        self.hosts.clone().ok_or_else(|| self.not_connected())
    }

    fn not_connected(&self) -> RemoteError {
        RemoteError::Connect {
            dest: format!("{} and {}", self.plan.source, self.plan.target),
            message: "connecting failed earlier in this run".into(),
        }
    }
}

/// A step's line to the outside: its output, progress and check results.
#[derive(Clone)]
pub struct StepIo {
    pub step: String,
    tx: UnboundedSender<EngineEvent>,
}

impl StepIo {
    pub fn new(step: impl Into<String>, tx: UnboundedSender<EngineEvent>) -> StepIo {
        StepIo {
            step: step.into(),
            tx,
        }
    }

    pub fn output(&self, stream: Stream, line: String) {
        let _ = self.tx.send(EngineEvent::Output {
            step: self.step.clone(),
            stream,
            lines: vec![line],
        });
    }

    pub(crate) fn progress(&self, bytes: u64, total: Option<u64>) {
        let _ = self.tx.send(EngineEvent::Progress {
            step: self.step.clone(),
            bytes,
            total,
        });
    }

    pub fn check(&self, host: &str, name: &str, status: CheckStatus, message: impl Into<String>) {
        let _ = self.tx.send(EngineEvent::Check {
            step: self.step.clone(),
            host: host.to_string(),
            name: name.to_string(),
            status,
            message: message.into(),
        });
    }

    pub fn propagation(&self, elapsed: Duration, report: &crate::dns::Report) {
        let _ = self.tx.send(EngineEvent::Propagation {
            step: self.step.clone(),
            elapsed_s: elapsed.as_secs(),
            report: report.clone(),
        });
    }

    pub(crate) fn forecast(&self, window: Vec<crate::prediction::WindowStep>, db_move: &str) {
        let _ = self.tx.send(EngineEvent::Forecast {
            step: self.step.clone(),
            window,
            db_move: db_move.to_string(),
        });
    }

    pub(crate) fn sink(&self) -> impl FnMut(Stream, String) + Send + '_ {
        move |stream, line| self.output(stream, line)
    }
}

pub(crate) async fn close(hosts: Arc<Hosts>) {
    if let Ok(h) = Arc::try_unwrap(hosts) {
        tokio::join!(h.source.close(), h.target.close());
    }
}
