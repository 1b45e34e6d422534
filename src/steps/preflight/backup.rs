//! `rehearse --from-backup`: what kind of backup the path on the old host holds.

use super::Report;
use crate::events::CheckStatus::{Fail, Pass};
use crate::remote::{RemoteCommand, RunAs, Shell};
use crate::steps::StepFailure;

/// What `rehearse --from-backup` found at the path on the old host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    /// pg_dump -Fc or -Ft: pg_restore reads it.
    Archive,
    /// pg_dump -Fd: a directory with toc.dat.
    Directory,
    /// Plain SQL, for psql.
    Plain,
    /// Plain SQL compressed with gzip.
    Gzip,
}

/// Reads the first bytes of "$1" (or says it is a directory), as root: backups
/// are seldom readable by the app's user.
pub(super) const PEEK_BACKUP: &str = r#"p=$1
if [ -d "$p" ]; then
  if [ -f "$p/toc.dat" ]; then echo directory; else echo not-a-dump-directory; fi
  exit 0
fi
if [ ! -f "$p" ]; then echo missing; exit 0; fi
echo file
head -c 512 -- "$p" | od -An -tx1 -v"#;

pub(super) fn backup_kind(peek: &str) -> Result<BackupKind, String> {
    let mut lines = peek.lines();
    match lines.next().map(str::trim) {
        Some("directory") => return Ok(BackupKind::Directory),
        Some("file") => {}
        Some("not-a-dump-directory") => {
            return Err(
                "is a directory without toc.dat, so not a pg_dump directory-format backup".into(),
            );
        }
        _ => return Err("does not exist on the old host".into()),
    }
    let bytes: Vec<u8> = lines
        .flat_map(str::split_whitespace)
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    if bytes.starts_with(b"PGDMP") || bytes.get(257..262) == Some(b"ustar".as_slice()) {
        Ok(BackupKind::Archive)
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        Ok(BackupKind::Gzip)
    } else if bytes.is_empty() {
        Err("is empty".into())
    } else if std::str::from_utf8(&bytes).is_ok() || bytes.iter().all(u8::is_ascii) {
        Ok(BackupKind::Plain)
    } else {
        Err("is neither a pg_dump archive (custom, tar or directory format) nor plain SQL (.sql or .sql.gz)".into())
    }
}

pub(super) async fn check_backup<S: Shell>(
    src: &S,
    path: &str,
    r: &mut Report<'_>,
) -> Result<Option<BackupKind>, StepFailure> {
    let out = crate::steps::run_quiet_checked(
        src,
        &RemoteCommand::script(RunAs::Root, PEEK_BACKUP, &[path]),
    )
    .await?;
    match backup_kind(&out.stdout) {
        Ok(kind) => {
            let what = match kind {
                BackupKind::Archive => "a pg_dump archive (custom or tar format): pg_restore",
                BackupKind::Directory => "a pg_dump directory: packed, moved, pg_restore",
                BackupKind::Plain => "plain SQL: psql as the app's role",
                BackupKind::Gzip => "gzip-compressed SQL: gunzip, then psql as the app's role",
            };
            r.note(src.name(), "backup", Pass, format!("'{path}' is {what}"));
            Ok(Some(kind))
        }
        Err(why) => {
            r.note(src.name(), "backup", Fail, format!("'{path}' {why}"));
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `od -An -tx1` of the first bytes, as PEEK_BACKUP prints them.
    fn peek(bytes: &[u8]) -> String {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("file\n {}\n", hex.join(" "))
    }

    #[rstest::rstest]
    #[case::custom(peek(b"PGDMP\x01\x0e\x00"), Ok(BackupKind::Archive))]
    #[case::gzip(peek(&[0x1f, 0x8b, 0x08, 0x00]), Ok(BackupKind::Gzip))]
    #[case::plain(peek(b"--\n-- PostgreSQL database dump\n"), Ok(BackupKind::Plain))]
    #[case::directory("directory\n".to_string(), Ok(BackupKind::Directory))]
    #[case::directory_without_toc("not-a-dump-directory\n".to_string(), Err("is a directory without toc.dat"))]
    #[case::missing("missing\n".to_string(), Err("does not exist"))]
    #[case::empty("file\n".to_string(), Err("is empty"))]
    #[case::binary(peek(&[0x7f, b'E', b'L', b'F', 0xff, 0xfe]), Err("is neither a pg_dump archive"))]
    fn what_a_backup_path_holds(#[case] peek: String, #[case] want: Result<BackupKind, &str>) {
        match (backup_kind(&peek), want) {
            (Ok(got), Ok(w)) => assert_eq!(got, w),
            (Err(got), Err(w)) => assert!(got.starts_with(w), "{got}"),
            (got, w) => panic!("{got:?}, wanted {w:?}"),
        }
    }

    #[test]
    fn a_tar_archive_is_known_by_its_header() {
        let mut bytes = vec![0u8; 300];
        bytes[257..262].copy_from_slice(b"ustar");
        assert_eq!(backup_kind(&peek(&bytes)), Ok(BackupKind::Archive));
    }
}
