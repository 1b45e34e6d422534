//! `hikkoshi init`: the config written from what runs on the old host.
//!
//! `probe` reads the old host (only reads, as `check` does), `detect` decides
//! from what it read which apps run there and with which settings (pure), and
//! `render` writes the commented config (pure). The command's questions and
//! the file itself are the front end's (`ui::init`).

pub mod detect;
pub mod parse;
pub mod probe;
pub mod render;

use crate::profile::{Profile, StepBody};
use crate::remote::{Host, RemoteCommand, RunAs};
use crate::runtime::{Place, database};
pub use detect::{App, Kind};
pub use probe::ProbeError;

/// What init found on the hosts.
#[derive(Debug, Clone)]
pub struct Survey {
    pub apps: Vec<App>,
    /// What could not be read, and units looked at and left out.
    pub notes: Vec<String>,
}

/// Reads the old host and decides which apps run there.
pub(crate) async fn survey(source: &Host) -> Result<Survey, ProbeError> {
    let probe = probe::probe(source).await?;
    let (mut apps, skipped) = detect::apps(&probe);
    for app in &mut apps {
        if let Some(note) = object_storage_in_db(source, app).await {
            app.notes.push(note);
        }
    }
    let mut notes = probe.notes;
    notes.extend(skipped);
    Ok(Survey { apps, notes })
}

/// Misskey keeps its object storage switch in the database: the profile's own
/// query answers it, as preflight asks it.
async fn object_storage_in_db(source: &Host, app: &App) -> Option<String> {
    let profile = Profile::load_builtin(app.kind.profile()).ok()?;
    let sql = profile.steps.iter().find_map(|s| match &s.body {
        StepBody::Preflight(p) => p.object_storage_sql.clone(),
        _ => None,
    })?;
    let db = app.database.value.as_ref()?;
    let files = format!("{}/files", app.dir);
    Some(
        match database::answers_true(source, &Place::Host(RunAs::User(app.user.clone())), db, &sql).await {
            Ok(true) => {
                "Media: the database says the files live in object storage (useObjectStorage): nothing to copy, the media steps are left out".to_string()
            }
            Ok(false) => format!(
                "Media: the database says object storage is not used, so {files} is copied with rsync (before and during the downtime)"
            ),
            Err(e) => format!("Media: whether object storage is used could not be asked: {e}"),
        },
    )
}

/// The address the ssh connection reached a host at (the server's side of
/// `$SSH_CONNECTION`): a hint for `[dns] expect`, never used unasked.
pub(crate) async fn seen_at(host: &Host) -> Option<String> {
    let cmd = RemoteCommand::script(RunAs::Login, "printf '%s\\n' \"$SSH_CONNECTION\"", &[]);
    let done = host.run_quiet(&cmd).await.ok()?;
    let addr = done.stdout.split_whitespace().nth(2)?.to_string();
    addr.parse::<std::net::IpAddr>().ok().map(|_| addr)
}
