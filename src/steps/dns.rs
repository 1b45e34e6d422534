//! The DNS cutover: waits until resolvers answer the new host's address, as
//! `hikkoshi dns --wait` does, with the config's [dns] settings. Without [dns]
//! the step says plainly that nothing was checked.

use super::{Done, StepFailure, StepResult};
use crate::dns;
use crate::events::CheckStatus;
use crate::events::Stream;
use crate::plan::Plan;
use crate::profile::StepSpec;
use crate::steps::ctx::{RunCtx, StepIo};

/// The resolvers a run asks: the config's, or the public list.
pub fn servers(config: &crate::config::DnsConfig) -> Vec<dns::Server> {
    if config.resolvers.is_empty() {
        return dns::public_resolvers();
    }
    config
        .resolvers
        .iter()
        .filter_map(|r| dns::parse_server(r))
        .map(|addr| dns::Server {
            addr,
            provider: "configured".into(),
            region: "-".into(),
        })
        .collect()
}

pub async fn run(_step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let domain = ctx.plan.domain.clone();
    let Some(config) = ctx.opts.dns.clone() else {
        io.output(
            Stream::Stdout,
            format!("no [dns] in the config: point {domain} at the new host's address yourself and watch it propagate (hikkoshi dns {domain} --expect IP --wait 30m)"),
        );
        return Ok(Done::Skipped(format!(
            "no [dns] in the config; {domain} was not checked"
        )));
    };
    let servers = servers(&config);
    let expect: Vec<String> = config.expect.iter().map(ToString::to_string).collect();
    io.output(
        Stream::Stdout,
        format!(
            "waiting up to {}s for {} resolvers to answer {domain} with {}",
            config.wait.as_secs(),
            servers.len(),
            expect.join(", ")
        ),
    );
    let report = dns::wait(
        &domain,
        &config.expect,
        &servers,
        &dns::Options::default(),
        config.wait,
        |r, elapsed| io.propagation(elapsed, r),
    )
    .await
    .map_err(|e| StepFailure::new(format!("checking DNS for {domain}: {e}")))?;
    for line in dns::render_text(&report).lines() {
        io.output(Stream::Stdout, line.to_string());
    }
    if report.complete() {
        io.check(
            "dns",
            "propagation",
            CheckStatus::Pass,
            dns::summary(&report),
        );
        Ok(Done::Completed)
    } else {
        Err(StepFailure::new(format!(
            "{domain} has not propagated within {}s: {}. The new host is live; resolvers still sending visitors to the old address will catch up as their caches expire. Check again with: hikkoshi dns {domain} --expect {} --wait 30m",
            config.wait.as_secs(),
            dns::summary(&report),
            expect.join(" --expect ")
        )))
    }
}

pub(crate) fn describe(plan: &Plan) -> Vec<String> {
    vec![format!(
        "ask the zone's nameservers and the [dns] resolvers for {} until every one answers the new address (or [dns] wait runs out)",
        plan.domain
    )]
}
