//! Which app runs on the old host, and how, decided from what the probe read
//! there. Pure: every rule is tested without a host.

use std::collections::{BTreeMap, BTreeSet};

use super::parse::{RdsOwner, Site};
use crate::steps::misskey::{MisskeyConfig, Search, is_local};

/// A systemd service as `systemctl show` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unit {
    /// Without the `.service` suffix, as the config's `services` names it.
    pub name: String,
    pub user: String,
    pub dir: String,
    pub active: bool,
    pub enabled: bool,
    pub main_pid: u32,
}

/// A file whose presence in a unit's working directory says which app it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signature {
    MastodonEnv,
    MisskeyConfig,
    PleasanterRds,
}

impl Signature {
    pub(crate) const ALL: [Signature; 3] = [
        Signature::MastodonEnv,
        Signature::MisskeyConfig,
        Signature::PleasanterRds,
    ];

    /// The file, relative to the working directory.
    pub fn file(self) -> &'static str {
        match self {
            Signature::MastodonEnv => ".env.production",
            Signature::MisskeyConfig => ".config/default.yml",
            Signature::PleasanterRds => "App_Data/Parameters/Rds.json",
        }
    }
}

/// Everything read on the old host, as read.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub units: Vec<Unit>,
    /// (working directory, file) pairs that exist.
    pub signatures: BTreeSet<(String, Signature)>,
    /// The few settings of each .env.production that say where things are
    /// (never a password), by working directory.
    pub mastodon_env: BTreeMap<String, BTreeMap<String, String>>,
    pub misskey: BTreeMap<String, Result<MisskeyConfig, String>>,
    pub rds: BTreeMap<String, Result<RdsOwner, String>>,
    /// (database, owner)
    pub databases: Vec<(String, String)>,
    /// (role, database) of the sessions open now.
    pub sessions: Vec<(String, String)>,
    /// (pid, port) of every listening TCP socket.
    pub listeners: Vec<(u32, u16)>,
    /// (pid, parent pid) of every process.
    pub parents: Vec<(u32, u32)>,
    pub sites: Vec<Site>,
    /// What could not be read, said in the written config.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mastodon,
    Misskey,
    Pleasanter,
    Generic,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::Mastodon => "Mastodon",
            Kind::Misskey => "Misskey",
            Kind::Pleasanter => "Pleasanter",
            Kind::Generic => "an app without a profile of its own (generic)",
        }
    }

    /// The built-in profile for it.
    pub fn profile(self) -> &'static str {
        match self {
            Kind::Mastodon => "mastodon",
            Kind::Misskey => "misskey",
            Kind::Pleasanter => "pleasanter",
            Kind::Generic => "generic",
        }
    }
}

/// A setting and where it came from, or why it could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: Option<String>,
    pub why: String,
}

impl Found {
    fn some(value: impl Into<String>, why: impl Into<String>) -> Found {
        Found {
            value: Some(value.into()),
            why: why.into(),
        }
    }

    fn none(why: impl Into<String>) -> Found {
        Found {
            value: None,
            why: why.into(),
        }
    }
}

/// An app on the old host with what the config needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub kind: Kind,
    pub user: String,
    pub dir: String,
    /// Why the kind: the file that says so.
    pub evidence: String,
    pub services: Vec<Unit>,
    pub domain: Found,
    pub database: Found,
    pub db_user: Found,
    /// The ports its processes listen on.
    pub ports: BTreeSet<u16>,
    /// Said in the config as comments: Redis, media, search, what to check.
    pub notes: Vec<String>,
}

impl App {
    /// How the admin names it on the command line (`--app`): the profile, or
    /// for a generic app its first unit.
    pub fn handle(&self) -> String {
        match self.kind {
            Kind::Generic => self
                .services
                .first()
                .map_or_else(|| "generic".into(), |u| u.name.clone()),
            k => k.profile().to_string(),
        }
    }

    /// One line for a list of what was found.
    pub fn summary(&self) -> String {
        let units: Vec<&str> = self.services.iter().map(|u| u.name.as_str()).collect();
        format!(
            "{}: {} as '{}' in {}{}",
            self.kind.title(),
            units.join(", "),
            self.user,
            self.dir,
            self.domain
                .value
                .as_ref()
                .map(|d| format!(", {d}"))
                .unwrap_or_default()
        )
    }
}

/// Users that run the host's own services, never an app's.
const SYSTEM_USERS: &[&str] = &[
    "root",
    "postgres",
    "redis",
    "www-data",
    "nobody",
    "bind",
    "named",
    "nginx",
    "messagebus",
    "sshd",
    "_apt",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "meilisearch",
    "elasticsearch",
    "opensearch",
];

/// Units that could be an app's: run as a user of their own from a directory.
pub(crate) fn candidate_units(units: &[Unit]) -> Vec<&Unit> {
    units
        .iter()
        .filter(|u| {
            !u.user.is_empty()
                && !u.dir.is_empty()
                && !SYSTEM_USERS.contains(&u.user.as_str())
                && !u.user.starts_with("systemd-")
        })
        .collect()
}

/// Every app found, in the order of their first unit's name.
pub fn apps(p: &Probe) -> (Vec<App>, Vec<String>) {
    let mut groups: Vec<((String, String), Vec<Unit>)> = Vec::new();
    for u in candidate_units(&p.units) {
        let key = (u.user.clone(), u.dir.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(u.clone()),
            None => groups.push((key, vec![u.clone()])),
        }
    }
    let mut found = Vec::new();
    let mut notes = Vec::new();
    for ((user, dir), units) in groups {
        let ports = ports_of(p, &units);
        let has = |s: Signature| p.signatures.contains(&(dir.clone(), s));
        let app = if has(Signature::MastodonEnv) {
            Some(mastodon(p, &user, &dir, units, ports))
        } else if has(Signature::MisskeyConfig) {
            Some(misskey(p, &user, &dir, units, ports))
        } else if has(Signature::PleasanterRds) && dir.ends_with("/Implem.Pleasanter") {
            Some(pleasanter(p, &user, &dir, units, ports))
        } else {
            generic(p, &user, &dir, units, ports, &mut notes)
        };
        found.extend(app);
    }
    (found, notes)
}

fn order_services(mut units: Vec<Unit>, first: &[&str]) -> Vec<Unit> {
    units.sort_by_key(|u| {
        (
            first
                .iter()
                .position(|f| *f == u.name)
                .unwrap_or(first.len()),
            u.name.clone(),
        )
    });
    units
}

fn mastodon(p: &Probe, user: &str, dir: &str, units: Vec<Unit>, ports: BTreeSet<u16>) -> App {
    let env = p.mastodon_env.get(dir).cloned().unwrap_or_default();
    let file = format!("{dir}/.env.production");
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let domain = match get("LOCAL_DOMAIN") {
        Some(d) => Found::some(d, format!("LOCAL_DOMAIN in {file}")),
        None => Found::none(format!("LOCAL_DOMAIN is not set in {file}")),
    };
    let database = match get("DB_NAME") {
        Some(d) => Found::some(d, format!("DB_NAME in {file}")),
        None => Found::some(
            "mastodon_production",
            "Mastodon's default: DB_NAME is not set",
        ),
    };
    let db_user = match get("DB_USER") {
        Some(d) => Found::some(
            d,
            "DB_USER in .env.production: the role the app connects as, which must own everything on new",
        ),
        None => Found::some(
            user,
            "DB_USER is not set, so Mastodon connects as its unix user; that role must own everything on new",
        ),
    };
    let mut notes = Vec::new();
    if let Some(h) = get("DB_HOST").filter(|h| !is_local(h)) {
        notes.push(format!(
            "DB_HOST={h}: the database is not on the old host itself; hikkoshi moves a database that is (check says so)"
        ));
    }
    let redis = get("REDIS_HOST").unwrap_or_else(|| "localhost".into());
    notes.push(if is_local(&redis) {
        format!(
            "Redis: REDIS_HOST={redis}, on the old host itself: saved, copied and compared by the 'redis' step"
        )
    } else {
        format!(
            "Redis: REDIS_HOST={redis} is another machine: not moved; the new host must reach it"
        )
    });
    notes.push(
        if get("S3_ENABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            "Media: S3_ENABLED=true, the files live in object storage: nothing to copy, the media steps are left out".to_string()
        } else {
            format!(
                "Media: S3_ENABLED is not true, so {dir}/public/system is copied with rsync (before and during the downtime)"
            )
        },
    );
    if get("ES_ENABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        notes.push(
            "Search: ES_ENABLED=true: the index is rebuilt on the new host after the move"
                .to_string(),
        );
    }
    check_database(p, &database, &db_user, &mut notes);
    App {
        kind: Kind::Mastodon,
        user: user.into(),
        dir: dir.into(),
        evidence: format!("{file} in the units' working directory"),
        services: order_services(
            units,
            &["mastodon-web", "mastodon-sidekiq", "mastodon-streaming"],
        ),
        domain,
        database,
        db_user,
        ports,
        notes,
    }
}

fn misskey(p: &Probe, user: &str, dir: &str, units: Vec<Unit>, ports: BTreeSet<u16>) -> App {
    let file = format!("{dir}/.config/default.yml");
    let mut notes = Vec::new();
    let (domain, database, db_user) = match p.misskey.get(dir) {
        Some(Ok(m)) => {
            let domain = match m.url_host() {
                Some(h) => Found::some(h, format!("the host of 'url' in {file}")),
                None => Found::none(format!("'url' in {file} has no host")),
            };
            if !is_local(&m.db_host) {
                notes.push(format!(
                    "db.host: {}: the database is not on the old host itself; hikkoshi moves a database that is (check says so)",
                    m.db_host
                ));
            }
            notes.push(if is_local(&m.redis_host) {
                format!(
                    "Redis: redis.host {}, on the old host itself: saved, copied and compared by the 'redis' step",
                    m.redis_host
                )
            } else {
                format!(
                    "Redis: redis.host {} is another machine: not moved; the new host must reach it",
                    m.redis_host
                )
            });
            match &m.search {
                Search::Meilisearch { host } => notes.push(format!(
                    "Search: Meilisearch at '{host}': its index does not move with the database; rebuild it on the new host"
                )),
                Search::Pgroonga => notes.push(
                    "Search: sqlPgroonga: the new host's PostgreSQL needs the PGroonga extension (check says so)".into(),
                ),
                Search::Sql => {}
            }
            (
                domain,
                Found::some(&m.db_name, format!("db.db in {file}")),
                Found::some(
                    &m.db_user,
                    format!(
                        "db.user in {file}: the role Misskey connects as, which must own everything on new (types included)"
                    ),
                ),
            )
        }
        Some(Err(e)) => {
            let why = format!("{file} could not be read: {e}");
            (
                Found::none(why.clone()),
                Found::none(why.clone()),
                Found::none(why),
            )
        }
        None => {
            let why = format!("{file} was not read");
            (
                Found::none(why.clone()),
                Found::none(why.clone()),
                Found::none(why),
            )
        }
    };
    check_database(p, &database, &db_user, &mut notes);
    App {
        kind: Kind::Misskey,
        user: user.into(),
        dir: dir.into(),
        evidence: format!("{file} in the unit's working directory"),
        services: order_services(units, &["misskey"]),
        domain,
        database,
        db_user,
        ports,
        notes,
    }
}

fn pleasanter(p: &Probe, user: &str, wd: &str, units: Vec<Unit>, ports: BTreeSet<u16>) -> App {
    let dir = wd.trim_end_matches("/Implem.Pleasanter").to_string();
    let file = format!("{wd}/App_Data/Parameters/Rds.json");
    let mut notes = Vec::new();
    let (database, db_user) = match p.rds.get(wd) {
        Some(Ok(r)) => (
            Found::some(
                &r.database,
                format!("Database in OwnerConnectionString of {file}"),
            ),
            Found::some(
                &r.user,
                format!(
                    "UID in OwnerConnectionString of {file}: the owner role, which must own everything on new"
                ),
            ),
        ),
        Some(Err(e)) => {
            let why = format!("{file} could not be read: {e}");
            (Found::none(why.clone()), Found::none(why))
        }
        None => {
            let why = format!("{file} was not read");
            (Found::none(why.clone()), Found::none(why))
        }
    };
    notes.push(format!(
        "Attachments: {dir}/BinaryStorage is copied with rsync when BinaryStorage.json keeps them on disk"
    ));
    check_database(p, &database, &db_user, &mut notes);
    App {
        kind: Kind::Pleasanter,
        user: user.into(),
        dir,
        evidence: format!("{file} in the unit's working directory"),
        services: order_services(units, &["pleasanter"]),
        domain: domain_from_sites(p, &ports),
        database,
        db_user,
        ports,
        notes,
    }
}

fn generic(
    p: &Probe,
    user: &str,
    dir: &str,
    units: Vec<Unit>,
    ports: BTreeSet<u16>,
    skipped: &mut Vec<String>,
) -> Option<App> {
    let owned: Vec<&(String, String)> = p.databases.iter().filter(|(_, o)| o == user).collect();
    let used: BTreeSet<&(String, String)> = p.sessions.iter().filter(|(r, _)| r == user).collect();
    let names: Vec<String> = units.iter().map(|u| u.name.clone()).collect();
    let (database, db_user) = match (owned.as_slice(), used.len()) {
        ([(db, owner)], _) => (
            Found::some(
                db,
                format!(
                    "the only database owned by the role '{owner}', named like the units' user"
                ),
            ),
            Found::some(
                owner,
                "owner of that database, named like the units' user: it must own everything on new",
            ),
        ),
        ([], 1) => {
            let (role, db) = used.first().map(|x| (*x).clone())?;
            (
                Found::some(
                    &db,
                    format!("the database the role '{role}' has sessions open on now"),
                ),
                Found::some(
                    role,
                    "the role the app's sessions connect as now: it must own everything on new",
                ),
            )
        }
        ([], 0) => {
            skipped.push(format!(
                "{} runs as '{user}' in {dir}, but no database is owned by or open to a role '{user}': not taken for an app",
                names.join(", ")
            ));
            return None;
        }
        _ => {
            let mut all: Vec<&str> = owned.iter().map(|(d, _)| d.as_str()).collect();
            all.extend(used.iter().map(|(_, d)| d.as_str()));
            all.sort_unstable();
            all.dedup();
            let why = format!(
                "the role '{user}' owns or uses several databases ({}); write the app's",
                all.join(", ")
            );
            (Found::none(why), Found::some(user, "the units' user"))
        }
    };
    let mut notes = Vec::new();
    check_database(p, &database, &db_user, &mut notes);
    Some(App {
        kind: Kind::Generic,
        user: user.into(),
        dir: dir.into(),
        evidence: format!(
            "{} run as '{user}' from {dir}, and a database of theirs; no Mastodon, Misskey or Pleasanter file there",
            names.join(", ")
        ),
        services: units,
        domain: domain_from_sites(p, &ports),
        database,
        db_user,
        ports,
        notes,
    })
}

fn check_database(p: &Probe, database: &Found, db_user: &Found, notes: &mut Vec<String>) {
    let (Some(db), Some(role)) = (&database.value, &db_user.value) else {
        return;
    };
    if p.databases.is_empty() {
        return;
    }
    match p.databases.iter().find(|(d, _)| d == db) {
        None => notes.push(format!(
            "CHECK: there is no database '{db}' in the old host's PostgreSQL (check will say more)"
        )),
        Some((_, owner)) if owner != role => notes.push(format!(
            "Database '{db}' is owned by '{owner}' on old; on new everything will be owned by '{role}'"
        )),
        Some(_) => {}
    }
}

/// The ports the units' processes (and their children) listen on.
fn ports_of(p: &Probe, units: &[Unit]) -> BTreeSet<u16> {
    let mut tree: BTreeSet<u32> = units
        .iter()
        .map(|u| u.main_pid)
        .filter(|&x| x > 0)
        .collect();
    loop {
        let before = tree.len();
        for (pid, ppid) in &p.parents {
            if tree.contains(ppid) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    p.listeners
        .iter()
        .filter(|(pid, _)| tree.contains(pid))
        .map(|(_, port)| *port)
        .collect()
}

fn is_site_name(n: &str) -> bool {
    n.contains('.')
        && crate::config::is_domain(n)
        && n.parse::<std::net::IpAddr>().is_err()
        && !n.starts_with("localhost")
}

fn domain_from_sites(p: &Probe, ports: &BTreeSet<u16>) -> Found {
    if ports.is_empty() {
        return Found::none(
            "the app is not running, so no web server site could be matched to its port",
        );
    }
    let list = |ports: &BTreeSet<u16>| {
        ports
            .iter()
            .map(|x| format!("127.0.0.1:{x}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sites: Vec<&Site> = p
        .sites
        .iter()
        .filter(|s| !s.ports.is_disjoint(ports))
        .collect();
    let mut firsts: Vec<&str> = sites
        .iter()
        .filter_map(|s| s.names.iter().find(|n| is_site_name(n)).map(String::as_str))
        .collect();
    firsts.sort_unstable();
    firsts.dedup();
    match firsts.as_slice() {
        [one] => Found::some(
            *one,
            format!(
                "server_name of the nginx site that passes requests to {}",
                list(ports)
            ),
        ),
        [] => Found::none(format!(
            "no nginx site with a server_name passes requests to {}",
            list(ports)
        )),
        many => Found::none(format!(
            "several nginx sites pass requests to {}: {}",
            list(ports),
            many.join(", ")
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests;
