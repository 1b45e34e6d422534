//! The DNS cutover. Checking propagation across resolvers is its own piece of
//! work; until it lands this step says plainly that it did nothing, so the
//! journal never claims DNS was checked.

use super::{Done, StepResult};
use crate::engine::events::Stream;
use crate::engine::{RunCtx, StepIo};
use crate::plan::Plan;
use crate::plan::profile::StepSpec;

pub async fn run(_step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let domain = &ctx.plan.domain;
    io.output(
        Stream::Stdout,
        format!(
            "hikkoshi does not check DNS yet: point {domain} at the new host's address and watch it propagate before announcing the move"
        ),
    );
    Ok(Done::Skipped(format!(
        "DNS propagation check not implemented yet; point {domain} at the new host by hand"
    )))
}

pub fn describe(plan: &Plan) -> Vec<String> {
    vec![format!(
        "not automated yet: point {} at the new host by hand",
        plan.domain
    )]
}
