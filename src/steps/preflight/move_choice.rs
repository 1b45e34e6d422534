//! How the database moves: measured (cores, link through this machine), chosen and explained.

use super::capacity::dump_size_estimate;
use super::{Report, Settings};
use crate::config::DbMove;
use crate::events::CheckStatus::Pass;
use crate::remote::{Host, RunAs};
use crate::steps::db_move;
use crate::steps::{StepFailure, free_space};
use crate::units::human_bytes;

/// Measures what the choice of the database move depends on, makes it and
/// says why.
pub(super) async fn choose_db_move(
    src: &Host,
    dst: &Host,
    s: &Settings,
    (asked, forced): (DbMove, Option<u8>),
    db_size: u64,
    from_backup: bool,
    r: &mut Report<'_>,
) -> Result<(db_move::Choice, Option<f64>), StepFailure> {
    let (a, b) = tokio::join!(db_move::cores(src), db_move::cores(dst));
    let (source_cores, target_cores) = (a?, b?);
    let link = db_move::measure_link(src, dst).await;
    let user = RunAs::User(s.user.clone());
    let need = dump_size_estimate(db_size, db_move::compression_for(link));
    let (a, b) = tokio::join!(
        free_space(src, user.clone(), &s.work_dir),
        free_space(dst, user, &s.work_dir)
    );
    let room = |f: Result<Option<(u64, String)>, StepFailure>| matches!(f, Ok(Some((avail, _))) if avail > need + need / 10);
    let room_for_dump = room(a) && room(b);
    let mut choice = db_move::decide(&db_move::Measured {
        asked,
        db_size,
        source_cores,
        target_cores,
        link,
        room_for_dump,
    });
    let link_words = link.map_or_else(
        || "the link could not be measured".to_string(),
        |bps| format!("link {}/s", human_bytes(bps as u64)),
    );
    let mut compression = match choice.compress {
        0 => "no compression".to_string(),
        z => format!("compression level {z}"),
    };
    if let Some(z) = forced {
        choice.compress = z;
        compression = format!("compression level {z}, as the config says");
    }
    let how = if from_backup {
        format!(
            "the backup is moved as a file, pg_restore -j {}",
            choice.restore_jobs
        )
    } else {
        match choice.mode {
            db_move::Mode::File => format!(
                "file: pg_dump -Fc -Z {}, moved with sha256 checks, pg_restore -j {}",
                choice.compress, choice.restore_jobs
            ),
            db_move::Mode::Stream => format!(
                "stream: pg_dump -Fc -Z {} straight into pg_restore through this machine, no dump file",
                choice.compress
            ),
            db_move::Mode::Parallel => format!(
                "parallel: pg_dump -Fd -j {} -Z {}, the directory moved, pg_restore -j {}",
                choice.dump_jobs, choice.compress, choice.restore_jobs
            ),
        }
    };
    r.note(
        dst.name(),
        "database move",
        Pass,
        format!(
            "{how} ({}; {source_cores} and {target_cores} cores; {link_words}: {compression}; {})",
            human_bytes(db_size),
            choice.why
        ),
    );
    Ok((choice, link))
}
