//! Room for the move: media size, and free disk for the dump, media and database.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass, Warn};
use crate::remote::{RemoteCommand, RunAs, Shell};
use crate::runtime::{Place, database};
use crate::steps::{StepFailure, free_space};
use crate::units::human_bytes;
use std::collections::BTreeMap;

pub(super) async fn check_media<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<u64, StepFailure> {
    let mut total = 0;
    for m in &s.media {
        let out = src
            .run_quiet(&RemoteCommand::script(
                RunAs::User(s.user.clone()),
                "[ -d \"$1\" ] || exit 3; du -sb -- \"$1\"",
                &[m],
            ))
            .await?;
        match out.exit_code {
            Some(0) => {
                let bytes: u64 = out
                    .stdout
                    .split_whitespace()
                    .next()
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0);
                total += bytes;
                r.note(
                    src.name(),
                    "media",
                    Pass,
                    format!("'{m}': {}", human_bytes(bytes)),
                );
            }
            Some(3) => r.note(
                src.name(),
                "media",
                Warn,
                format!("'{m}' does not exist: nothing to copy"),
            ),
            _ => r.note(
                src.name(),
                "media",
                Fail,
                format!(
                    "cannot read '{m}' as '{}': {}",
                    s.user,
                    out.stderr_tail.join(" ")
                ),
            ),
        }
        let out = dst
            .run_quiet(&RemoteCommand::script(
                RunAs::User(s.user.clone()),
                "[ -d \"$1\" ] || exit 0; find \"$1\" -type f | head -n 1000 | wc -l",
                &[m],
            ))
            .await?;
        let n: u64 = out.stdout.trim().parse().unwrap_or(0);
        if n > 0 {
            r.note(
                dst.name(),
                "media",
                Warn,
                format!("'{m}' on the target already holds files; it becomes an exact copy of the source's (files only on the target are removed)"),
            );
        }
    }
    Ok(total)
}

/// A dump leaves out indexes; compressed, half the database's size is a safe
/// ceiling for real instances, and uncompressed about two thirds.
pub(super) fn dump_size_estimate(db_size: u64, compress: u8) -> u64 {
    if compress == 0 {
        db_size / 3 * 2
    } else {
        db_size / 2
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn check_disk<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    db_size: u64,
    dump_estimate: u64,
    media_bytes: u64,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let user = RunAs::User(s.user.clone());
    if dump_estimate > 0
        && let Some((avail, mount)) = free_space(src, user.clone(), &s.work_dir).await?
    {
        let need = dump_estimate + dump_estimate / 10;
        if avail < need {
            r.note(
                src.name(),
                "disk",
                Fail,
                format!(
                    "{} free on {mount} for the dump in '{}', about {} needed",
                    human_bytes(avail),
                    s.work_dir,
                    human_bytes(need)
                ),
            );
        } else {
            r.note(
                src.name(),
                "disk",
                Pass,
                format!(
                    "{} free on {mount} for a dump of about {}",
                    human_bytes(avail),
                    human_bytes(dump_estimate)
                ),
            );
        }
    }
    let admin = s.rt(dst.role()).db_admin;
    // A new stack's database keeps its data beside its compose file (the
    // persistent storage preflight asks for) until it runs and can say.
    let data_dir = if s.database_later(dst.role()) {
        crate::runtime::HostPath {
            path: s.dir.clone(),
            storage: crate::runtime::Storage::Host,
        }
    } else {
        database::data_directory(dst, &admin).await?
    };
    // Who may look at the path on the host: the admin on the host, root
    // for a container's storage.
    let data_reader = match &admin {
        Place::Host(who) => who.clone(),
        Place::Service(_) => RunAs::Root,
    };
    let mut needs: BTreeMap<String, (u64, u64, Vec<&str>)> = BTreeMap::new();
    for (path, bytes, what, run_as) in [
        (s.work_dir.as_str(), dump_estimate, "dump", user.clone()),
        (data_dir.path.as_str(), db_size, "database", data_reader),
        (s.dir.as_str(), media_bytes, "media", user.clone()),
    ] {
        if bytes == 0 && what == "dump" {
            continue;
        }
        if let Some((avail, mount)) = free_space(dst, run_as, path).await? {
            let e = needs.entry(mount).or_insert((avail, 0, Vec::new()));
            e.1 += bytes;
            e.2.push(what);
        }
    }
    for (mount, (avail, need, what)) in needs {
        let need = need + need / 10;
        if avail < need {
            r.note(
                dst.name(),
                "disk",
                Fail,
                format!(
                    "{} free on {mount}, about {} needed for {}",
                    human_bytes(avail),
                    human_bytes(need),
                    what.join(" + ")
                ),
            );
        } else {
            r.note(
                dst.name(),
                "disk",
                Pass,
                format!(
                    "{} free on {mount} for {} (about {})",
                    human_bytes(avail),
                    what.join(" + "),
                    human_bytes(need)
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::preflight::fake::{Checks, FakeHost, mastodon};

    #[tokio::test]
    async fn the_dump_and_the_database_need_room_on_their_filesystems() {
        // old: 1 GiB free for a 2 GiB dump; new: dump, database and media on one
        // filesystem with 10 GiB free for 2 + 8 + 1 GiB (+10%).
        let gib = 1024 * 1024 * 1024_u64;
        let src = FakeHost::source().on("df -B1", 0, &format!("{gib} /home\n"));
        let dst = FakeHost::target()
            .on("SHOW data_directory", 0, "/var/lib/postgresql/15/main\n")
            .on("df -B1", 0, &format!("{} /\n", 10 * gib));
        let c = Checks::new();
        let mut r = c.report();
        check_disk(&src, &dst, &mastodon(), 8 * gib, 2 * gib, gib, &mut r)
            .await
            .expect("runs");
        assert_eq!(
            c.said(),
            [
                "old disk FAIL: 1.0 GiB free on /home for the dump in '/home/mastodon/hikkoshi-work', about 2.2 GiB needed",
                "new disk FAIL: 10.0 GiB free on /, about 12.1 GiB needed for dump + database + media",
            ]
        );
    }
}
