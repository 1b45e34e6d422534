//! SQL on a host, through `psql -XAtq` over SSH: the database is usually only
//! reachable from its own host. Values travel as psql variables (`-v name=value`,
//! used as :'name' in the SQL), so none is ever part of the SQL text.

use super::{Finished, Host, RemoteCommand, RemoteError, RunAs};

#[derive(Debug, thiserror::Error)]
pub enum PsqlError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("on {host}: psql on database '{database}' failed (exit {exit}): {message}")]
    Failed {
        host: String,
        database: String,
        exit: String,
        message: String,
    },
}

pub async fn query(
    host: &Host,
    run_as: &RunAs,
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
    let cmd = RemoteCommand::new(run_as.clone(), argv);
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
