//! A rehearsal's estimates for what it must not do: the real run's downtime
//! steps that stop or start services, move Redis or ask the new host's health
//! are measured here without touching anything. systemd remembers how long
//! each unit's last start and stop took; Redis says how long its last save
//! took; the link was measured by preflight; one health request is asked of
//! the app where it runs now. The rehearsal's own steps are measured by
//! running them; [`crate::prediction`] puts both together.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::prediction::{Estimate, WindowStep};
use crate::profile::{CommandBody, HealthBody, HostSel, Rehearsal, ServicesBody, StepBody};
use crate::remote::{Host, RemoteCommand, RunAs};
use crate::runtime::services::Manager;
use crate::runtime::{cache, services};
use crate::steps::ctx::{RunCtx, StepIo};

const STAMPS: [&str; 4] = [
    "InactiveExitTimestampMonotonic",
    "ActiveEnterTimestampMonotonic",
    "ActiveExitTimestampMonotonic",
    "InactiveEnterTimestampMonotonic",
];

/// How long each unit's last start and stop took, from `systemctl show`'s
/// monotonic timestamps (microseconds); `None` for what systemd has no
/// record of since boot.
pub(crate) fn transitions(show: &str) -> Vec<(Option<u64>, Option<u64>)> {
    show.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let v: BTreeMap<&str, u64> = block
                .lines()
                .filter_map(|l| l.split_once('='))
                .filter_map(|(k, v)| Some((k.trim(), v.trim().parse().ok()?)))
                .collect();
            let span = |from: &str, to: &str| match (v.get(from), v.get(to)) {
                (Some(&a), Some(&b)) if a > 0 && b >= a => Some((b - a) / 1000),
                _ => None,
            };
            (span(STAMPS[0], STAMPS[1]), span(STAMPS[2], STAMPS[3]))
        })
        .collect()
}

/// What `systemctl start|stop UNITS` took last time on `host`: the slowest
/// unit (systemd runs the jobs together); `None` if any unit has no record.
async fn last_transition(host: &Host, units: &[String], stop: bool) -> Option<u64> {
    let out = host.run_quiet(&services::show(&STAMPS, units)).await.ok()?;
    if !out.success() {
        return None;
    }
    let t = transitions(&out.stdout);
    if t.len() != units.len() {
        return None;
    }
    t.iter()
        .map(|(start, stop_ms)| if stop { *stop_ms } else { *start })
        .collect::<Option<Vec<u64>>>()?
        .into_iter()
        .max()
}

/// One remote command's cost on `host` (ssh round trip and the tool's own
/// start), timed with a harmless `systemctl is-enabled`; the faster of two.
async fn call_cost(host: &Host, units: &[String]) -> u64 {
    let cmd = services::is_enabled(units);
    let mut best = u64::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        let _ = host.run_quiet(&cmd).await;
        best = best.min(ms(t));
    }
    best
}

/// Seconds with a tenth; the front ends format durations their own way.
fn short(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The units in `systemctl VERB [OPTIONS] UNITS`.
fn units_of(argv: &[String]) -> Vec<String> {
    argv.iter()
        .skip(2)
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect()
}

struct Measurer<'a> {
    ctx: &'a RunCtx,
    source: &'a Host,
    target: &'a Host,
    /// Per host: what one remote command costs.
    cost: BTreeMap<String, u64>,
}

impl<'a> Measurer<'a> {
    async fn cost_on(&mut self, host: &Host, units: &[String]) -> u64 {
        if let Some(c) = self.cost.get(host.name()) {
            return *c;
        }
        let c = call_cost(host, units).await;
        self.cost.insert(host.name().to_string(), c);
        c
    }

    fn hosts_of(&self, sel: HostSel) -> Vec<&'a Host> {
        match sel {
            HostSel::Source => vec![self.source],
            HostSel::Target => vec![self.target],
            HostSel::Both => vec![self.source, self.target],
        }
    }

    /// A command step the rehearsal does not run: systemctl's verbs from
    /// systemd's record (a start on the new host as long as the old host's
    /// last start), anything else unknown.
    async fn command(&mut self, step: &CommandBody) -> Estimate {
        let vars = &self.ctx.vars;
        let mut argvs = Vec::new();
        for c in &step.commands {
            if !vars.all_hold(&c.conditions()).unwrap_or(true) {
                continue;
            }
            let Ok(argv) = vars.render_argv(c.argv()) else {
                return unknown(format!("'{}' cannot be rendered yet", c.argv().join(" ")));
            };
            if c.each().is_some() || !services::is_service_command(&argv) {
                return unknown(format!(
                    "the rehearsal does not run '{}', and nothing tells how long it takes",
                    argv.join(" ")
                ));
            }
            argvs.push(argv);
        }
        self.systemctl(step.host, &argvs).await
    }

    /// A `services` step the rehearsal does not run: on systemd hosts as the
    /// same systemctl commands; a compose stack keeps no such record.
    async fn services(&mut self, step: &ServicesBody) -> Estimate {
        let mut argvs = Vec::new();
        for role in super::services::roles_of(step.host) {
            let rt = self.ctx.runtime(role);
            if !matches!(rt.services, Manager::Systemd) {
                return unknown(format!(
                    "a compose stack keeps no record of how long its services take to {}",
                    step.action.name()
                ));
            }
            match super::services::commands(step, &rt, &self.ctx.vars, false) {
                Ok(cmds) => argvs.extend(cmds.into_iter().map(|c| c.argv)),
                Err(e) => return unknown(format!("the services cannot be named yet: {e}")),
            }
        }
        self.systemctl(step.host, &argvs).await
    }

    /// `systemctl VERB UNITS` commands on the hosts of `sel`: each verb as
    /// long as systemd's record of its last run on the old host.
    async fn systemctl(&mut self, sel: HostSel, argvs: &[Vec<String>]) -> Estimate {
        let hosts = self.hosts_of(sel);
        let mut total = 0;
        let mut how = Vec::new();
        for argv in argvs {
            let verb = argv.get(1).map(String::as_str).unwrap_or_default();
            let units = units_of(argv);
            for host in &hosts {
                let call = self.cost_on(host, &units).await;
                total += call;
                let record = match verb {
                    "stop" => last_transition(self.source, &units, true).await,
                    "start" | "restart" => last_transition(self.source, &units, false).await,
                    _ => Some(0),
                };
                match record {
                    Some(t) => {
                        total += t;
                        if t > 0 {
                            how.push(format!(
                                "the last {verb} of {} on {} took {}",
                                units.join(" "),
                                self.source.name(),
                                short(t)
                            ));
                        }
                    }
                    None => {
                        return unknown(format!(
                            "systemd on {} has no record of a {verb} of {} since it booted",
                            self.source.name(),
                            units.join(" ")
                        ));
                    }
                }
            }
        }
        how.push(format!(
            "plus {} per command on {}",
            short(*self.cost.values().max().unwrap_or(&0)),
            hosts
                .iter()
                .map(|h| h.name())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
        Estimate {
            ms: Some(total),
            how: format!("systemd's record: {}", how.join("; ")),
            at_least: false,
        }
    }

    /// SAVE as long as Redis's last background save, dump.rdb through this
    /// machine at the link preflight measured, and the step's dozen commands.
    async fn redis(&mut self) -> Estimate {
        let facts = &self.ctx.facts;
        let Some(rdb) = facts.source_rdb.clone() else {
            return unknown("preflight found no dump.rdb on the old host".into());
        };
        let info = self
            .source
            .run_quiet(&cache::cli(
                &self.ctx.runtime(crate::remote::Role::Source).cache,
                &facts.redis_port,
                &["INFO", "persistence"],
            ))
            .await
            .map(|o| o.stdout)
            .unwrap_or_default();
        let last_save_s = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("rdb_last_bgsave_time_sec:"))
            .and_then(|v| v.trim().parse::<i64>().ok());
        let size = self
            .source
            .run_quiet(&RemoteCommand::new(
                RunAs::Root,
                ["stat", "-c", "%s", "--", rdb.as_str()],
            ))
            .await
            .ok()
            .and_then(|o| o.stdout.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let save_ms = match last_save_s {
            Some(s) if s >= 0 => u64::try_from(s).unwrap_or(0) * 1000,
            // No save yet to go by: write speed of a modest disk.
            _ => size / 200_000,
        };
        let copy_ms = match facts.link_bps {
            Some(bps) if bps > 0.0 => (size as f64 / bps * 1000.0) as u64,
            _ => size / 50_000,
        };
        let source_units = [self
            .ctx
            .vars
            .text("redis_service")
            .unwrap_or_else(|_| "redis-server".into())];
        let call = self.cost_on(self.source, &source_units).await;
        let restart = last_transition(self.source, &source_units, false)
            .await
            .unwrap_or(0)
            + last_transition(self.source, &source_units, true)
                .await
                .unwrap_or(0);
        // INFO, SAVE, stop on both, stat, the copy's two ends, start, INFO twice.
        let calls = 10 * call;
        Estimate {
            at_least: false,
            ms: Some(save_ms + copy_ms + restart + calls),
            how: format!(
                "SAVE as long as Redis's last save ({}), dump.rdb ({}) through this machine in {}, Redis's last stop and start on {} ({}), and 10 commands at {} each",
                short(save_ms),
                crate::units::human_bytes(size),
                short(copy_ms),
                self.source.name(),
                short(restart),
                short(call)
            ),
        }
    }

    /// One request of the health URL where the app serves now, the old host:
    /// what the check costs once the new host's app is up. Its boot time is
    /// not in it: only a start measures that (`rehearse --start-web`).
    async fn health(&mut self, step: &HealthBody) -> Estimate {
        let Ok(url) = self.ctx.vars.render(&step.url) else {
            return unknown("its URL is not known yet".into());
        };
        let t = Instant::now();
        let asked = self
            .source
            .run_quiet(&RemoteCommand::new(
                RunAs::Login,
                [
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "10",
                    "-w",
                    "%{http_code}",
                    "--",
                    url.as_str(),
                ],
            ))
            .await;
        let took = ms(t);
        match asked {
            Ok(o) if o.stdout.trim() == "200" => Estimate {
                // Until it has booted, the new host's app does not answer.
                at_least: true,
                ms: Some(took),
                how: format!(
                    "{url} answered on {} in {}; the app's boot on the new host is not in it (rehearse --start-web measures it where the profile can start the web alone)",
                    self.source.name(),
                    short(took)
                ),
            },
            _ => unknown(format!(
                "{url} did not answer 200 on {}, so nothing tells how long the check takes",
                self.source.name()
            )),
        }
    }
}

fn unknown(how: String) -> Estimate {
    Estimate {
        ms: None,
        how,
        at_least: false,
    }
}

/// The real run's downtime window, each step the rehearsal does not run with
/// its estimate; reported as one `Forecast` event.
pub(crate) async fn forecast(ctx: &RunCtx, io: &StepIo, db_move: &str) {
    let Ok(hosts) = ctx.connected() else {
        return;
    };
    let rehearsed: Vec<&str> = ctx.plan.steps.iter().map(|s| s.id.as_str()).collect();
    let mut m = Measurer {
        ctx,
        source: &hosts.source,
        target: &hosts.target,
        cost: BTreeMap::new(),
    };
    let mut window = Vec::new();
    let mut health_ms = None;
    for step in ctx.plan.all_steps.iter().filter(|s| {
        s.in_downtime && !matches!(s.rehearsal, Some(Rehearsal::Only | Rehearsal::OnlyWeb))
    }) {
        let estimate = if rehearsed.contains(&step.id.as_str()) {
            None
        } else {
            let e = match &step.body {
                StepBody::Command(c) => m.command(c).await,
                StepBody::Services(sv) => m.services(sv).await,
                StepBody::Redis(_) => m.redis().await,
                StepBody::Health(h) if h.pinned => match (&ctx.opts.run_dns, health_ms) {
                    (None, _) => Estimate {
                        at_least: false,
                        ms: Some(0),
                        how: "no [dns] expect in the config: the run skips it".into(),
                    },
                    (Some(_), Some(ms)) => Estimate {
                        at_least: false,
                        ms: Some(ms),
                        how: "one request from this machine, as long as the local check's".into(),
                    },
                    (Some(_), None) => unknown("one request from this machine, not timed".into()),
                },
                StepBody::Health(h) => {
                    let e = m.health(h).await;
                    health_ms = e.ms;
                    e
                }
                _ => unknown(format!(
                    "a '{}' step the rehearsal does not run",
                    step.kind().name()
                )),
            };
            Some(e)
        };
        window.push(WindowStep {
            id: step.id.clone(),
            beside: step.beside.clone(),
            estimate,
        });
    }
    io.forecast(window, db_move);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_records_give_each_units_last_start_and_stop() {
        let show = "InactiveExitTimestampMonotonic=1000000\nActiveEnterTimestampMonotonic=1600000\nActiveExitTimestampMonotonic=500000\nInactiveEnterTimestampMonotonic=700000\n\n\
InactiveExitTimestampMonotonic=0\nActiveEnterTimestampMonotonic=0\nActiveExitTimestampMonotonic=0\nInactiveEnterTimestampMonotonic=0\n";
        assert_eq!(
            transitions(show),
            vec![(Some(600), Some(200)), (None, None)]
        );
    }

    #[test]
    fn units_leave_options_out() {
        let argv: Vec<String> = ["systemctl", "disable", "--now", "a", "b"]
            .map(String::from)
            .to_vec();
        assert_eq!(units_of(&argv), ["a", "b"]);
    }
}
