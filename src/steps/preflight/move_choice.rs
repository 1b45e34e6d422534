//! How the database moves: measured (cores, link through this machine), chosen and explained.

use super::capacity::dump_size_estimate;
use super::{Report, Settings};
use crate::config::DbMove;
use crate::events::CheckStatus::Pass;
use crate::remote::{Host, Role, RunAs};
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
        stacks: (s.is_compose(Role::Source), s.is_compose(Role::Target)),
    });
    let stack_target = s.is_compose(Role::Target);
    let said = explain(
        stack_target,
        &mut choice,
        forced,
        from_backup,
        db_size,
        (source_cores, target_cores),
        link,
    );
    r.note(dst.name(), "database move", Pass, said);
    Ok((choice, link))
}

/// The choice in one line: what runs, on what was measured. A compression
/// level the config gives replaces the measured one.
fn explain(
    stack_target: bool,
    choice: &mut db_move::Choice,
    forced: Option<u8>,
    from_backup: bool,
    db_size: u64,
    (source_cores, target_cores): (u32, u32),
    link: Option<f64>,
) -> String {
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
                "file: pg_dump -Fc -Z {}, moved with sha256 checks, pg_restore {}",
                choice.compress,
                if choice.restore_jobs > 1 || !stack_target {
                    format!("-j {}", choice.restore_jobs)
                } else {
                    "reading it through its stdin in the database's container".to_string()
                }
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
    format!(
        "{how} ({}; {source_cores} and {target_cores} cores; {link_words}: {compression}; {})",
        human_bytes(db_size),
        choice.why
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use db_move::{Choice, Mode};

    fn choice(mode: Mode, compress: u8) -> Choice {
        Choice {
            mode,
            dump_jobs: 2,
            restore_jobs: 4,
            compress,
            why: "measured".into(),
        }
    }

    #[rstest::rstest]
    #[case::file(
        choice(Mode::File, 0),
        None,
        false,
        "file: pg_dump -Fc -Z 0, moved with sha256 checks, pg_restore -j 4 (1.0 GiB; 2 and 4 cores; link 112.0 MiB/s: no compression; measured)"
    )]
    #[case::stream(
        choice(Mode::Stream, 1),
        None,
        false,
        "stream: pg_dump -Fc -Z 1 straight into pg_restore"
    )]
    #[case::parallel(
        choice(Mode::Parallel, 6),
        None,
        false,
        "parallel: pg_dump -Fd -j 2 -Z 6, the directory moved, pg_restore -j 4"
    )]
    #[case::config_level(choice(Mode::File, 0), Some(9), false, "pg_dump -Fc -Z 9, moved")]
    #[case::backup(
        choice(Mode::Stream, 1),
        None,
        true,
        "the backup is moved as a file, pg_restore -j 4"
    )]
    fn the_database_move_is_said_as_it_will_run(
        #[case] mut c: Choice,
        #[case] forced: Option<u8>,
        #[case] from_backup: bool,
        #[case] says: &str,
    ) {
        let said = explain(
            false,
            &mut c,
            forced,
            from_backup,
            1 << 30,
            (2, 4),
            Some(117_440_512.0),
        );
        assert!(said.contains(says), "{said}");
        if let Some(z) = forced {
            assert_eq!(c.compress, z, "the config's level is the one used");
            assert!(said.contains("as the config says"), "{said}");
        }
    }

    #[test]
    fn an_unmeasured_link_is_said() {
        let said = explain(
            false,
            &mut choice(Mode::File, 6),
            None,
            false,
            0,
            (1, 1),
            None,
        );
        assert!(said.contains("the link could not be measured"), "{said}");
    }
}
