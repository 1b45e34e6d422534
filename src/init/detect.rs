//! Which app runs on the old host, and how, decided from what the probe read
//! there. Pure: every rule is tested without a host.

use std::collections::{BTreeMap, BTreeSet};

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
    pub const ALL: [Signature; 3] = [
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

/// The two values hikkoshi needs from Pleasanter's Rds.json; the passwords
/// beside them are never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsOwner {
    pub database: String,
    pub user: String,
}

/// A web server's site: its names and the local ports it passes requests to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Site {
    pub names: Vec<String>,
    pub ports: BTreeSet<u16>,
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
pub fn candidate_units(units: &[Unit]) -> Vec<&Unit> {
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

/// Database and UID of the owner's connection string in Rds.json.
pub fn parse_rds(text: &str) -> Result<RdsOwner, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let conn = v
        .get("OwnerConnectionString")
        .and_then(|c| c.as_str())
        .ok_or("it has no OwnerConnectionString")?;
    let mut database = None;
    let mut user = None;
    for part in conn.split(';') {
        let Some((k, val)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "database" => database = Some(val.trim().to_string()),
            "uid" | "user id" | "userid" | "username" | "user name" => {
                user = Some(val.trim().to_string())
            }
            _ => {}
        }
    }
    Ok(RdsOwner {
        database: database.ok_or("OwnerConnectionString has no Database")?,
        user: user.ok_or("OwnerConnectionString has no UID")?,
    })
}

/// The sites of an `nginx -T` dump: each server block's names and the local
/// ports it proxies to (directly or through an upstream block).
pub fn parse_nginx(text: &str) -> Vec<Site> {
    // Tokens: words, '{', '}', ';'; comments and quotes handled the simple way.
    let mut tokens: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut word = String::new();
        for c in line.chars() {
            match c {
                '{' | '}' | ';' => {
                    if !word.is_empty() {
                        tokens.push(std::mem::take(&mut word));
                    }
                    tokens.push(c.to_string());
                }
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        tokens.push(std::mem::take(&mut word));
                    }
                }
                '"' | '\'' => {}
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            tokens.push(word);
        }
    }
    // Statements with the block path they are in.
    let mut upstreams: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut sites = Vec::new();
    let mut stack: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<(Vec<String>, Vec<String>)> = None; // (names, proxy targets)
    let mut server_depth = None;
    let mut stmt: Vec<String> = Vec::new();
    for t in tokens {
        match t.as_str() {
            "{" => {
                let name = stmt.first().cloned().unwrap_or_default();
                let args = stmt.drain(..).skip(1).collect::<Vec<_>>();
                if name == "server" && stack.last().is_some_and(|(n, _)| n == "http") {
                    current = Some((Vec::new(), Vec::new()));
                    server_depth = Some(stack.len());
                }
                stack.push((name, args));
            }
            "}" => {
                stmt.clear();
                stack.pop();
                if server_depth == Some(stack.len())
                    && let Some((names, targets)) = current.take()
                {
                    server_depth = None;
                    sites.push((names, targets));
                }
            }
            ";" => {
                let name = stmt.first().cloned().unwrap_or_default();
                let args: Vec<String> = stmt.drain(..).skip(1).collect();
                if let Some((names, targets)) = current.as_mut() {
                    match name.as_str() {
                        "server_name" => names.extend(args),
                        "proxy_pass" | "fastcgi_pass" | "uwsgi_pass" | "grpc_pass" => {
                            targets.extend(args.into_iter().take(1))
                        }
                        _ => {}
                    }
                } else if name == "server"
                    && let Some((block, bargs)) = stack.last()
                    && block == "upstream"
                    && let (Some(up), Some(addr)) = (bargs.first(), args.first())
                    && let Some(port) = local_port(addr)
                {
                    upstreams.entry(up.clone()).or_default().insert(port);
                }
            }
            _ => stmt.push(t),
        }
    }
    sites
        .into_iter()
        .map(|(names, targets)| {
            let mut ports = BTreeSet::new();
            for t in targets {
                let rest = t.split_once("://").map_or(t.as_str(), |(_, r)| r);
                let hostport = rest.split('/').next().unwrap_or("");
                if let Some(port) = local_port(hostport) {
                    ports.insert(port);
                } else if let Some(up) = upstreams.get(hostport) {
                    ports.extend(up.iter().copied());
                }
            }
            Site { names, ports }
        })
        .collect()
}

/// The port of a `127.0.0.1:3000`, `localhost:3000` or `[::1]:3000` address.
fn local_port(addr: &str) -> Option<u16> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (is_local(host) || host == "0.0.0.0")
        .then(|| port.parse().ok())
        .flatten()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn unit(name: &str, user: &str, dir: &str, pid: u32) -> Unit {
        Unit {
            name: name.into(),
            user: user.into(),
            dir: dir.into(),
            active: pid > 0,
            enabled: true,
            main_pid: pid,
        }
    }

    const NGINX: &str = r#"
# configuration file /etc/nginx/nginx.conf:
http {
  upstream backend { server 127.0.0.1:3000 fail_timeout=0; }
  upstream streaming { server 127.0.0.1:4000 fail_timeout=0; }
  server {
    listen 443 ssl;
    server_name social.example.net;   # the instance
    location / { proxy_pass http://backend; }
    location /api/v1/streaming { proxy_pass http://streaming; }
  }
  server {
    listen 80;
    server_name pleasanter.example.net www.pleasanter.example.net;
    location / { proxy_pass http://127.0.0.1:5000/; }
  }
  server { listen 80 default_server; server_name _; root /var/www/html; }
}
"#;

    /// The lab's old host, as the probe reads it.
    pub fn lab_probe() -> Probe {
        let mut p = Probe {
            units: vec![
                unit("mastodon-sidekiq", "mastodon", "/home/mastodon/live", 30),
                unit("mastodon-streaming", "mastodon", "/home/mastodon/live", 31),
                unit("mastodon-web", "mastodon", "/home/mastodon/live", 32),
                unit("misskey", "misskey", "/home/misskey/misskey", 45),
                unit("nginx", "", "", 47),
                unit(
                    "pleasanter",
                    "pleasanter",
                    "/web/pleasanter/Implem.Pleasanter",
                    46,
                ),
                unit("postgresql", "postgres", "", 10),
                unit("redis-server", "redis", "/var/lib/redis", 11),
            ],
            databases: vec![
                ("postgres".into(), "postgres".into()),
                ("mastodon_production".into(), "mastodon".into()),
                ("misskey_db".into(), "misskey".into()),
                ("Implem.Pleasanter".into(), "pleasanter".into()),
            ],
            listeners: vec![(46, 5000), (45, 3001), (33, 3000), (47, 443)],
            parents: vec![(33, 32), (48, 47)],
            sites: parse_nginx(NGINX),
            ..Probe::default()
        };
        for (dir, s) in [
            ("/home/mastodon/live", Signature::MastodonEnv),
            ("/home/misskey/misskey", Signature::MisskeyConfig),
            (
                "/web/pleasanter/Implem.Pleasanter",
                Signature::PleasanterRds,
            ),
        ] {
            p.signatures.insert((dir.into(), s));
        }
        p.mastodon_env.insert(
            "/home/mastodon/live".into(),
            [
                ("LOCAL_DOMAIN", "social.example.net"),
                ("DB_NAME", "mastodon_production"),
                ("DB_USER", "mastodon"),
                ("DB_HOST", "/var/run/postgresql"),
                ("REDIS_HOST", "localhost"),
                ("S3_ENABLED", "false"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        p.misskey.insert(
            "/home/misskey/misskey".into(),
            MisskeyConfig::parse(
                "url: https://misskey.example.net/\nport: 3001\ndb:\n  host: localhost\n  port: 5432\n  db: misskey_db\n  user: misskey\n  pass: s3cret-pass\nredis:\n  host: localhost\n  port: 6379\n",
            ),
        );
        p.rds.insert(
            "/web/pleasanter/Implem.Pleasanter".into(),
            parse_rds(r#"{"OwnerConnectionString": "Server=localhost;Port=5432;Database=Implem.Pleasanter;UID=pleasanter;PWD=xyzzy-secret"}"#),
        );
        p
    }

    #[test]
    fn the_labs_three_apps_are_told_apart() {
        let (apps, skipped) = apps(&lab_probe());
        assert!(skipped.is_empty(), "{skipped:?}");
        type Row<'a> = (
            Kind,
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let got: Vec<Row<'_>> = apps
            .iter()
            .map(|a| {
                (
                    a.kind,
                    a.user.as_str(),
                    a.dir.as_str(),
                    a.domain.value.as_deref(),
                    a.database.value.as_deref(),
                    a.db_user.value.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Kind::Mastodon,
                    "mastodon",
                    "/home/mastodon/live",
                    Some("social.example.net"),
                    Some("mastodon_production"),
                    Some("mastodon")
                ),
                (
                    Kind::Misskey,
                    "misskey",
                    "/home/misskey/misskey",
                    Some("misskey.example.net"),
                    Some("misskey_db"),
                    Some("misskey")
                ),
                (
                    Kind::Pleasanter,
                    "pleasanter",
                    "/web/pleasanter",
                    Some("pleasanter.example.net"),
                    Some("Implem.Pleasanter"),
                    Some("pleasanter")
                ),
            ]
        );
        let names: Vec<&str> = apps[0].services.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            ["mastodon-web", "mastodon-sidekiq", "mastodon-streaming"]
        );
        // puma's worker (pid 33, a child of the unit's main pid) holds the port.
        assert_eq!(apps[0].ports, BTreeSet::from([3000]));
    }

    #[test]
    fn an_unknown_app_with_a_database_of_its_own_is_generic() {
        let mut p = lab_probe();
        p.units = vec![
            unit("shop-web", "shop", "/srv/shop", 70),
            unit("shop-worker", "shop", "/srv/shop", 71),
            unit("backup-agent", "backup", "/opt/backup", 72),
        ];
        p.databases.push(("shopdb".into(), "shop".into()));
        p.listeners.push((70, 8080));
        p.sites.push(Site {
            names: vec!["shop.example.org".into()],
            ports: BTreeSet::from([8080]),
        });
        let (apps, skipped) = apps(&p);
        assert_eq!(apps.len(), 1);
        let a = &apps[0];
        assert_eq!(a.kind, Kind::Generic);
        assert_eq!(a.handle(), "shop-web");
        assert_eq!(a.database.value.as_deref(), Some("shopdb"));
        assert_eq!(a.db_user.value.as_deref(), Some("shop"));
        assert_eq!(a.domain.value.as_deref(), Some("shop.example.org"));
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].starts_with("backup-agent runs as 'backup'"));
    }

    #[test]
    fn a_generic_app_found_by_its_open_sessions_or_left_to_the_admin() {
        let mut p = lab_probe();
        p.units = vec![unit("wiki", "wiki", "/srv/wiki", 0)];
        p.sessions.push(("wiki".into(), "wikidb".into()));
        p.databases.push(("wikidb".into(), "postgres".into()));
        let (apps, _) = apps(&p);
        assert_eq!(apps[0].database.value.as_deref(), Some("wikidb"));
        assert_eq!(apps[0].db_user.value.as_deref(), Some("wiki"));
        assert!(
            apps[0]
                .notes
                .iter()
                .any(|n| n.contains("owned by 'postgres'"))
        );
        assert_eq!(apps[0].domain.value, None);
        assert!(apps[0].domain.why.contains("not running"));

        p.databases.push(("wiki_a".into(), "wiki".into()));
        p.databases.push(("wiki_b".into(), "wiki".into()));
        let (again, _) = super::apps(&p);
        assert_eq!(again[0].database.value, None);
        assert!(
            again[0].database.why.contains("wiki_a, wiki_b, wikidb"),
            "{}",
            again[0].database.why
        );
    }

    #[test]
    fn mastodon_defaults_and_elsewhere_services_are_said() {
        let mut p = lab_probe();
        p.mastodon_env.insert(
            "/home/mastodon/live".into(),
            [
                ("LOCAL_DOMAIN", "m.example"),
                ("REDIS_HOST", "10.0.0.5"),
                ("S3_ENABLED", "true"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let (apps, _) = apps(&p);
        let m = &apps[0];
        assert_eq!(m.database.value.as_deref(), Some("mastodon_production"));
        assert!(m.database.why.contains("default"));
        assert_eq!(m.db_user.value.as_deref(), Some("mastodon"));
        assert!(m.notes.iter().any(|n| n.contains("another machine")));
        assert!(m.notes.iter().any(|n| n.contains("object storage")));
    }

    #[test]
    fn nginx_sites_with_upstreams_and_direct_proxies() {
        let sites = parse_nginx(NGINX);
        assert_eq!(sites.len(), 3);
        assert_eq!(sites[0].names, ["social.example.net"]);
        assert_eq!(sites[0].ports, BTreeSet::from([3000, 4000]));
        assert_eq!(sites[1].ports, BTreeSet::from([5000]));
        assert!(sites[2].ports.is_empty());
    }

    #[test]
    fn two_sites_for_one_port_leave_the_domain_to_the_admin() {
        let mut p = lab_probe();
        p.sites.push(Site {
            names: vec!["other.example.com".into()],
            ports: BTreeSet::from([5000]),
        });
        let (apps, _) = apps(&p);
        let pl = apps
            .iter()
            .find(|a| a.kind == Kind::Pleasanter)
            .expect("pleasanter");
        assert_eq!(pl.domain.value, None);
        assert!(
            pl.domain
                .why
                .contains("other.example.com, pleasanter.example.net")
        );
    }

    #[test]
    fn rds_json_gives_the_owner_and_never_the_password() {
        let r = parse_rds(r#"{"OwnerConnectionString": "Server=db;Database=Implem.Pleasanter;User Id=Implem.Pleasanter_Owner;Password=p"}"#)
            .expect("parses");
        assert_eq!(r.database, "Implem.Pleasanter");
        assert_eq!(r.user, "Implem.Pleasanter_Owner");
        assert!(parse_rds("{}").is_err());
        assert!(parse_rds("not json").is_err());
    }
}
