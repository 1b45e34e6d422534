//! The database side of a host: SQL through `psql -XAtq` over SSH (the database
//! is usually only reachable from its own host), and the PostgreSQL client
//! tools a move needs. Values travel as psql variables (`-v name=value`, used
//! as :'name' in the SQL), so none is ever part of the SQL text.

use super::{HostPath, Place, ToolError};
use crate::remote::{Finished, RemoteError, Shell};

/// The client tools the old host needs to dump, and the new one to restore.
pub(crate) const DUMP_TOOLS: [&str; 2] = ["pg_dump", "psql"];
pub(crate) const RESTORE_TOOLS: [&str; 3] = ["pg_restore", "psql", "createdb"];

/// The tools whose versions decide whether a dump can be made and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Dump,
    Restore,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Dump => "pg_dump",
            Tool::Restore => "pg_restore",
        }
    }

    /// `pg_dump --version`: any user may ask.
    pub fn version(self, at: &Place) -> crate::remote::RemoteCommand {
        at.command([self.name(), "--version"])
    }
}

/// "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> 15.
pub(crate) fn major_from_version(text: &str) -> Option<u32> {
    let v = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    v.split('.').next()?.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum PsqlError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("on {host}: psql on database '{database}' failed (exit {exit}): {message}")]
    Failed {
        host: String,
        database: String,
        exit: String,
        message: String,
    },
}

/// An SQL identifier, quoted.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub(crate) async fn query<S: Shell>(
    host: &S,
    at: &Place,
    database: &str,
    sql: &str,
    vars: &[(&str, &str)],
) -> Result<Vec<String>, PsqlError> {
    let mut argv: Vec<String> = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database]
        .map(String::from)
        .to_vec();
    for (k, v) in vars {
        argv.push("-v".into());
        argv.push(format!("{k}={v}"));
    }
    let cmd = at.command(argv);
    let done: Finished = host
        .run_with_input(&cmd, Some(sql.as_bytes()), &mut |_, _| {})
        .await?;
    if !done.success() {
        return Err(PsqlError::Failed {
            host: host.name().to_string(),
            database: database.to_string(),
            exit: done.exit_text(),
            message: done.cause(),
        });
    }
    Ok(done
        .stdout
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Whether a query's first row is PostgreSQL's true (`t`), as a profile's
/// question to the app's database is answered (Misskey's object storage switch).
pub async fn answers_true(
    h: &impl Shell,
    at: &Place,
    database: &str,
    sql: &str,
) -> Result<bool, PsqlError> {
    let rows = query(h, at, database, sql, &[]).await?;
    Ok(matches!(
        rows.first().map(String::as_str),
        Some("t" | "true")
    ))
}

/// Where the database's files live on the host's filesystem: the server's
/// own `data_directory`, found on the host through the container's mounts
/// when the server runs in one. The disk check measures the filesystem that
/// holds it.
pub(crate) async fn data_directory(h: &impl Shell, admin: &Place) -> Result<HostPath, PsqlError> {
    let dir = query(h, admin, "postgres", "SHOW data_directory", &[])
        .await?
        .first()
        .cloned()
        .unwrap_or_else(|| "/var/lib/postgresql".into());
    Ok(admin.host_path(h, &dir).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_tool_versions() {
        assert_eq!(
            major_from_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(major_from_version("pg_restore (PostgreSQL) 17.2"), Some(17));
    }
}
