//! The journal: one JSON object per line, each event written and fsynced before
//! any front end sees it, so a crash at any moment leaves a readable record.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::EngineEvent;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub ts: jiff::Timestamp,
    #[serde(flatten)]
    pub event: EngineEvent,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal '{path}': {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("journal '{path}' line {line}: not a hikkoshi event: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    pub fn create(path: &Path) -> Result<Journal, JournalError> {
        let io = |cause| JournalError::Io {
            path: path.display().to_string(),
            cause,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // A resumed run appends: a line a crash cut short must not swallow the next one.
        let len = file.metadata().map_err(io)?.len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io)?;
            }
        }
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, line: &str) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Reads a journal back. A last line cut short by a crash is ignored; any
    /// other unreadable line is an error naming it.
    pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
        let file = File::open(path).map_err(|cause| JournalError::Io {
            path: path.display().to_string(),
            cause,
        })?;
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|cause| JournalError::Io {
                path: path.display().to_string(),
                cause,
            })?;
        let mut records = Vec::with_capacity(lines.len());
        let last = lines.len();
        for (n, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(r) => records.push(r),
                Err(_) if n + 1 == last => break,
                // Cut short by a crash, then a resumed run went on after it.
                Err(_) if !line.trim_end().ends_with('}') => continue,
                Err(e) => {
                    return Err(JournalError::Parse {
                        path: path.display().to_string(),
                        line: n + 1,
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(records)
    }
}

/// `$XDG_STATE_HOME/hikkoshi/runs/<utc-timestamp>-<domain>.jsonl`.
/// The newest journal in the default place for `domain`: what `--resume` continues.
pub fn newest(domain: &str) -> Option<PathBuf> {
    let dir = default_path(domain, jiff::Timestamp::now())
        .parent()?
        .to_path_buf();
    let suffix = format!("-{domain}.jsonl");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
        .collect();
    // The names start with a UTC timestamp, so they sort by time.
    found.sort();
    found.pop()
}

/// Every journal in `also` (any name ending in `.jsonl`) and in the default
/// place for `domain`, newest first by modification time.
pub fn for_domain(domain: &str, also: Option<&std::path::Path>) -> Vec<PathBuf> {
    let default_dir = default_path(domain, jiff::Timestamp::now())
        .parent()
        .map(std::path::Path::to_path_buf);
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for dir in also
        .map(std::path::Path::to_path_buf)
        .into_iter()
        .chain(default_dir)
    {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "jsonl")
                && !found.iter().any(|(_, p)| *p == path)
                && let Ok(modified) = e.metadata().and_then(|m| m.modified())
            {
                found.push((modified, path));
            }
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

pub fn default_path(domain: &str, now: jiff::Timestamp) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    let stamp = now.strftime("%Y%m%dT%H%M%SZ");
    state
        .join("hikkoshi")
        .join("runs")
        .join(format!("{stamp}-{domain}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{StepOutcome, Stream};

    #[test]
    fn round_trip_and_truncated_last_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runs/x.jsonl");
        let mut j = Journal::create(&path).expect("create");
        let events = [
            EngineEvent::Output {
                step: "dump".into(),
                stream: Stream::Stderr,
                lines: vec!["pg_dump: warning".into()],
            },
            EngineEvent::StepFinished {
                step: "dump".into(),
                outcome: StepOutcome::Succeeded,
                duration_ms: 12,
            },
        ];
        for e in &events {
            let r = Record {
                ts: jiff::Timestamp::UNIX_EPOCH,
                event: e.clone(),
            };
            j.append(&serde_json::to_string(&r).expect("json"))
                .expect("append");
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"ts\":\"2026-"))
            .expect("write partial line");
        let back = Journal::read(&path).expect("read");
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].event, events[1]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn default_path_uses_xdg_state_home() {
        let ts: jiff::Timestamp = "2026-11-21T01:02:03Z".parse().expect("ts");
        let p = default_path("social.example.net", ts);
        assert!(
            p.ends_with("hikkoshi/runs/20261121T010203Z-social.example.net.jsonl"),
            "{}",
            p.display()
        );
    }
}
