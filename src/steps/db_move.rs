//! How the database moves, chosen in preflight from what it measured: the
//! database's size, each host's cores and memory, the link through this
//! machine and the free disk. The profile's steps read the choice as facts
//! (`db_file`, `db_stream`, `db_parallel`, `dump_jobs`, `restore_jobs`,
//! `dump_compress`, `restore_pgoptions`).

use std::time::{Duration, Instant};

use super::StepFailure;
use super::transfer::relay;
use crate::config::DbMove;
use crate::remote::{Host, RemoteCommand, RunAs, Shell};

/// What the link test sends: random, so ssh compression cannot flatter it.
const PROBE_BYTES: u64 = 32 * 1024 * 1024;
/// A link slower than this is "slow" without waiting for the whole probe.
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// Below this a single stream is done before parallel workers pay off, and
/// the dump can stay on the old host until the restore is verified.
const SMALL_DB: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// pg_dump -Fc to a file, moved with sha256 on both ends, pg_restore -j N.
    File,
    /// pg_dump | pg_restore through this machine; nothing written to disk.
    Stream,
    /// pg_dump -Fd -j N, the directory moved, pg_restore -j N.
    Parallel,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::File => "file",
            Mode::Stream => "stream",
            Mode::Parallel => "parallel",
        }
    }
}

/// What the choice is made from.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub asked: DbMove,
    pub db_size: u64,
    pub source_cores: u32,
    pub target_cores: u32,
    /// Bytes per second through this machine; `None` when the probe failed.
    pub link: Option<f64>,
    /// Whether both hosts have room for a dump of the database.
    pub room_for_dump: bool,
    /// Which hosts run compose stacks: their tools run in containers, which
    /// cannot write a dump directory on the host, and a restore there reads
    /// the dump through its stdin, with one job.
    pub stacks: (bool, bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub mode: Mode,
    pub dump_jobs: u32,
    pub restore_jobs: u32,
    /// pg_dump's -Z level.
    pub compress: u8,
    pub why: String,
}

/// Compression pays only when the link is slower than pg_dump: none on a
/// fast link, the cheapest level on a middling one, pg_dump's default on a slow one.
pub(crate) fn compression_for(link: Option<f64>) -> u8 {
    match link {
        Some(bps) if bps >= 100e6 => 0,
        Some(bps) if bps >= 20e6 => 1,
        _ => 6,
    }
}

pub(crate) fn decide(m: &Measured) -> Choice {
    let compress = compression_for(m.link);
    let stack = m.stacks.0 || m.stacks.1;
    let (mode, why) = match m.asked {
        DbMove::File => (Mode::File, "as the config says".to_string()),
        DbMove::Stream => (Mode::Stream, "as the config says".to_string()),
        DbMove::Parallel if stack => (
            Mode::File,
            "the config asks for parallel, which needs a dump directory on the host that a compose stack's tools cannot write: a file instead".to_string(),
        ),
        DbMove::Parallel => (Mode::Parallel, "as the config says".to_string()),
        DbMove::Auto if !m.room_for_dump => (
            Mode::Stream,
            "no room for a dump on both hosts; a stream needs none".to_string(),
        ),
        DbMove::Auto if m.db_size < SMALL_DB => (
            Mode::File,
            "a small database: the dump stays on the old host until the restore is verified"
                .to_string(),
        ),
        DbMove::Auto if stack => (
            Mode::Stream,
            "a large database and a compose stack, whose tools cannot dump or restore in parallel: a stream overlaps dump and restore".to_string(),
        ),
        DbMove::Auto if m.target_cores < 2 => (
            Mode::Stream,
            "one core on the new host: a parallel restore cannot help, a stream overlaps dump and restore"
                .to_string(),
        ),
        DbMove::Auto => (
            Mode::Parallel,
            "a large database and cores on both hosts: parallel dump and restore".to_string(),
        ),
    };
    let jobs = |cores: u32| cores.clamp(1, 8);
    Choice {
        mode,
        dump_jobs: if mode == Mode::Parallel {
            jobs(m.source_cores)
        } else {
            1
        },
        restore_jobs: if mode == Mode::Stream || m.stacks.1 {
            1
        } else {
            jobs(m.target_cores)
        },
        compress,
        why,
    }
}

/// Session settings for the restore only (nothing changes on the server):
/// more memory for index builds, split between the parallel workers, and no
/// wait for each commit to reach the disk; a failed restore is redone anyway.
pub(crate) fn restore_pgoptions(mem_available: u64, jobs: u32) -> String {
    let per_worker = mem_available / 4 / u64::from(jobs.max(1));
    let mib = (per_worker / (1024 * 1024)).clamp(64, 2048);
    format!("-c maintenance_work_mem={mib}MB -c synchronous_commit=off")
}

pub(crate) async fn cores<S: Shell>(h: &S) -> Result<u32, StepFailure> {
    Ok(h.run_quiet(&RemoteCommand::new(RunAs::Login, ["nproc"]))
        .await?
        .stdout
        .trim()
        .parse::<u32>()
        .unwrap_or(1))
}

/// MemAvailable in bytes (0 when unknown).
pub(crate) async fn mem_available<S: Shell>(h: &S) -> Result<u64, StepFailure> {
    let out = h
        .run_quiet(&RemoteCommand::new(
            RunAs::Login,
            ["grep", "^MemAvailable:", "/proc/meminfo"],
        ))
        .await?;
    Ok(out
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024))
}

/// Sends random bytes from the old host to the new one the way the dump
/// travels (through this machine) and times it. A one-byte probe first
/// measures what starting the commands costs, which a dump pays only once.
pub(crate) async fn measure_link(src: &Host, dst: &Host) -> Option<f64> {
    let (setup, _) = probe(src, dst, 1).await?;
    let (took, moved) = probe(src, dst, PROBE_BYTES).await?;
    let transfer = took.saturating_sub(setup).as_secs_f64().max(1e-3);
    Some(moved as f64 / transfer)
}

async fn probe(src: &Host, dst: &Host, bytes: u64) -> Option<(Duration, u64)> {
    let read = RemoteCommand::new(
        RunAs::Login,
        [
            "head".to_string(),
            "-c".to_string(),
            bytes.to_string(),
            "/dev/urandom".to_string(),
        ],
    );
    let write = RemoteCommand::new(
        RunAs::Login,
        ["dd", "of=/dev/null", "bs=256k", "status=none"],
    );
    let started = Instant::now();
    let relayed = tokio::time::timeout(
        PROBE_LIMIT,
        relay(src, &read, dst, &write, None, None, false),
    )
    .await
    .ok()?
    .ok()?;
    (relayed.ok() && relayed.moved == bytes).then(|| (started.elapsed(), relayed.moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(asked: DbMove, db_mib: u64, cores: u32, link_mbs: f64, room: bool) -> Measured {
        Measured {
            stacks: (false, false),
            asked,
            db_size: db_mib * 1024 * 1024,
            source_cores: cores,
            target_cores: cores,
            link: Some(link_mbs * 1e6),
            room_for_dump: room,
        }
    }

    #[rstest::rstest]
    #[case::small_db_keeps_its_dump((DbMove::Auto, 60, 4, 500.0, true), (Mode::File, 1, 4, 0))]
    #[case::large_db_goes_parallel((DbMove::Auto, 20_000, 4, 500.0, true), (Mode::Parallel, 4, 4, 0))]
    #[case::one_core_streams((DbMove::Auto, 20_000, 1, 500.0, true), (Mode::Stream, 1, 1, 0))]
    #[case::no_room_streams((DbMove::Auto, 20_000, 4, 50.0, false), (Mode::Stream, 1, 1, 1))]
    #[case::slow_link_compresses((DbMove::Auto, 20_000, 16, 5.0, true), (Mode::Parallel, 8, 8, 6))]
    #[case::config_wins((DbMove::Stream, 20_000, 4, 500.0, true), (Mode::Stream, 1, 1, 0))]
    #[case::config_parallel_small((DbMove::Parallel, 10, 2, 500.0, true), (Mode::Parallel, 2, 2, 0))]
    fn choices(
        #[case] given: (DbMove, u64, u32, f64, bool),
        #[case] expected: (Mode, u32, u32, u8),
    ) {
        let (asked, db_mib, cores, link_mbs, room) = given;
        let c = decide(&measured(asked, db_mib, cores, link_mbs, room));
        assert_eq!(
            (c.mode, c.dump_jobs, c.restore_jobs, c.compress),
            expected,
            "{}",
            c.why
        );
    }

    /// A compose stack's tools run in containers: never a dump directory,
    /// and a restore in one reads the dump through stdin with one job.
    #[rstest::rstest]
    #[case::small_db_into_a_stack((DbMove::Auto, 60), (true, true), (Mode::File, 1, 1))]
    #[case::small_db_from_a_stack((DbMove::Auto, 60), (true, false), (Mode::File, 1, 4))]
    #[case::large_db_streams((DbMove::Auto, 20_000), (false, true), (Mode::Stream, 1, 1))]
    #[case::parallel_asked_is_a_file((DbMove::Parallel, 20_000), (true, true), (Mode::File, 1, 1))]
    fn stacks_never_go_parallel(
        #[case] given: (DbMove, u64),
        #[case] stacks: (bool, bool),
        #[case] expected: (Mode, u32, u32),
    ) {
        let mut m = measured(given.0, given.1, 4, 500.0, true);
        m.stacks = stacks;
        let c = decide(&m);
        assert_eq!((c.mode, c.dump_jobs, c.restore_jobs), expected, "{}", c.why);
    }

    #[test]
    fn no_link_measure_means_compress() {
        assert_eq!(compression_for(None), 6);
    }

    #[test]
    fn restore_memory_is_split_between_workers_and_bounded() {
        let gib = 1024 * 1024 * 1024;
        assert_eq!(
            restore_pgoptions(8 * gib, 2),
            "-c maintenance_work_mem=1024MB -c synchronous_commit=off"
        );
        assert_eq!(
            restore_pgoptions(gib / 2, 8),
            "-c maintenance_work_mem=64MB -c synchronous_commit=off"
        );
        assert_eq!(
            restore_pgoptions(256 * gib, 1),
            "-c maintenance_work_mem=2048MB -c synchronous_commit=off"
        );
    }
}
