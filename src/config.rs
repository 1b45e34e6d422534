//! The user's migration.toml: parsed strictly (unknown keys are errors), every
//! problem reported as `file:line:column: message`, and every value that later
//! reaches a remote command line checked here, before anything is touched.

use std::net::IpAddr;

use crate::units::parse_duration;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod compose;
pub use compose::{ComposeConfig, Install};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the config: {cause}")]
    Read { file: String, cause: std::io::Error },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Where the checklist comes from: a profile shipped inside the binary, or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileRef {
    Builtin(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub profile: ProfileRef,
    pub source: String,
    pub target: String,
    /// How the app runs on each host: systemd units or a compose stack.
    pub source_install: Install,
    pub target_install: Install,
    pub ssh_config: Option<PathBuf>,
    pub app: AppConfig,
    pub dns: Option<DnsConfig>,
    pub moving: MoveConfig,
    /// `[vars]`: values for the profile's own settings, checked against the
    /// profile when the plan is built.
    pub vars: Vec<ConfigVar>,
    /// Where `[app]` starts, for a setting the profile needs there.
    pub app_at: (usize, usize),
}

/// One `[vars]` entry, with where it was written for error messages.
#[derive(Debug, Clone)]
pub struct ConfigVar {
    pub name: String,
    pub value: crate::profile::VarSpec,
    pub line: usize,
    pub column: usize,
}

impl Config {
    /// An error about a `[vars]` entry, pointing at its line.
    pub(crate) fn var_error(&self, var: &ConfigVar, message: impl Into<String>) -> ConfigError {
        self.error_at((var.line, var.column), message)
    }

    pub(crate) fn error_at(
        &self,
        (line, column): (usize, usize),
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.display().to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// How the data moves: `[move]` in the config.
#[derive(Debug, Clone, Default)]
pub struct MoveConfig {
    pub database: DbMove,
    pub media_cache: MediaCache,
    /// pg_dump's -Z level instead of the one chosen from the measured link.
    pub compress: Option<u8>,
}

/// How the database moves; `auto` lets preflight choose from the database's
/// size, the hosts' cores and the link it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbMove {
    #[default]
    Auto,
    /// pg_dump -Fc to a file, moved and checked with sha256, pg_restore -j N.
    File,
    /// pg_dump straight into pg_restore through this machine: no file anywhere.
    Stream,
    /// pg_dump -Fd -j N, the directory moved, pg_restore -j N.
    Parallel,
}

impl DbMove {
    pub fn name(self) -> &'static str {
        match self {
            DbMove::Auto => "auto",
            DbMove::File => "file",
            DbMove::Stream => "stream",
            DbMove::Parallel => "parallel",
        }
    }
}

/// Whether the media copy includes the cache of remote media (Mastodon's
/// public/system/cache), which the instance can fetch again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaCache {
    #[default]
    Copy,
    Skip,
}

/// Settings the profile has defaults for; `None` means "the profile decides".
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    pub domain: String,
    pub user: Option<String>,
    pub dir: Option<String>,
    pub database: Option<String>,
    pub db_user: Option<String>,
    pub services: Option<Vec<String>>,
    pub work_dir: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub expect: Vec<IpAddr>,
    pub resolvers: Vec<String>,
    pub wait: Duration,
    /// A CA certificate (PEM) the pinned HTTPS check trusts instead of the
    /// system's, for a staging or private certificate.
    pub ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    profile: Option<Spanned<String>>,
    source: RawHost,
    target: RawHost,
    ssh: Option<RawSsh>,
    app: RawApp,
    dns: Option<RawDns>,
    #[serde(rename = "move")]
    moving: Option<RawMove>,
    vars: Option<std::collections::BTreeMap<String, Spanned<crate::profile::VarSpec>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMove {
    database: Option<DbMove>,
    media_cache: Option<MediaCache>,
    compress: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    ssh: Spanned<String>,
    compose: Option<Spanned<String>>,
    compose_file: Option<Spanned<compose::Files>>,
    compose_project: Option<Spanned<String>>,
    compose_services: Option<Spanned<std::collections::BTreeMap<String, String>>>,
}

impl RawHost {
    fn split(self) -> (Spanned<String>, compose::RawCompose) {
        (
            self.ssh,
            compose::RawCompose {
                compose: self.compose,
                compose_file: self.compose_file,
                compose_project: self.compose_project,
                compose_services: self.compose_services,
            },
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    config_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    domain: Spanned<String>,
    user: Option<Spanned<String>>,
    dir: Option<Spanned<String>>,
    database: Option<Spanned<String>>,
    db_user: Option<Spanned<String>>,
    services: Option<Spanned<Vec<Spanned<String>>>>,
    work_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    expect: Spanned<Vec<Spanned<String>>>,
    resolvers: Option<Vec<Spanned<String>>>,
    wait: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
}

struct Source<'a> {
    file: String,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// serde quotes names and values in backticks, and a string it did not expect
/// in double quotes; every other message here uses single quotes, and one
/// style is easier to read and to search for.
fn single_quoted(message: &str) -> String {
    let m = message.trim_end().replace('`', "'");
    match m
        .strip_prefix("invalid type: string \"")
        .and_then(|rest| rest.rsplit_once("\", expected "))
    {
        Some((value, expected)) => format!("invalid type: string '{value}', expected {expected}"),
        None => m,
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            file: path.display().to_string(),
            cause,
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let src = Source {
            file: path.display().to_string(),
            text,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| src.error(e.span().unwrap_or(0..0), single_quoted(e.message())))?;
        let base = path.parent().unwrap_or(Path::new("."));

        let profile = match raw.profile {
            None => ProfileRef::Builtin("mastodon".into()),
            Some(p) => {
                profile_ref(p.get_ref(), base).map_err(|message| src.error(p.span(), message))?
            }
        };

        let target_span = raw.target.ssh.span();
        let (source_ssh, source_compose) = raw.source.split();
        let (target_ssh, target_compose) = raw.target.split();
        let source = check_ssh_destination(&src, source_ssh)?;
        let target = check_ssh_destination(&src, target_ssh)?;
        let source_install = compose::parse_install(&src, "source", source_compose)?;
        let target_install = compose::parse_install(&src, "target", target_compose)?;
        if source == target {
            return Err(src.error(
                target_span,
                format!("[source] and [target] both name '{source}'; a migration needs two hosts"),
            ));
        }

        let ssh_config = raw
            .ssh
            .and_then(|s| s.config_file)
            .map(|f| existing_file(&src, base, &f, "ssh config file"))
            .transpose()?;

        let app = parse_app(&src, &raw.app)?;

        let dns = match raw.dns {
            None => None,
            Some(d) => Some(parse_dns(&src, base, d)?),
        };

        let vars = parse_vars(&src, text, raw.vars)?;

        let app_line = text
            .lines()
            .position(|l| l.trim_start().starts_with("[app]"))
            .map_or(1, |n| n + 1);
        Ok(Config {
            path: path.to_path_buf(),
            app_at: (app_line, 1),
            vars,
            profile,
            source,
            target,
            source_install,
            target_install,
            ssh_config,
            app,
            dns,
            moving: parse_move(&src, raw.moving.as_ref())?,
        })
    }
}

/// [app]: every value that later reaches a remote command, checked.
fn parse_app(src: &Source<'_>, app: &RawApp) -> Result<AppConfig, ConfigError> {
    let domain = app.domain.get_ref().clone();
    if is_placeholder(&domain) {
        return Err(src.error(
            app.domain.span(),
            "[app] 'domain' is still the placeholder `hikkoshi init` wrote: put the app's public domain name there (the comment above it says why it was not found)",
        ));
    }
    if !is_domain(&domain) {
        return Err(src.error(
            app.domain.span(),
            format!(
                "'{}' is not a domain name (letters, digits, '-' and '.', like social.example.net)",
                domain.escape_debug()
            ),
        ));
    }
    let user = check_opt(src, "user", &app.user, is_unix_user, "a unix user name")?;
    let db_user = check_opt(
        src,
        "db_user",
        &app.db_user,
        is_pg_name,
        "a PostgreSQL role name (letters, digits, '_', '.')",
    )?;
    let database = check_opt(
        src,
        "database",
        &app.database,
        is_pg_name,
        "a PostgreSQL database name (letters, digits, '_', '.')",
    )?;
    let dir = check_opt(
        src,
        "dir",
        &app.dir,
        is_plain_abs_path,
        "an absolute path (other than '/', with no trailing '/' or control characters)",
    )?;
    // work_dir ends up inside rsync's -e option, which rsync splits on blanks.
    let work_dir = check_opt(
        src,
        "work_dir",
        &app.work_dir,
        is_simple_abs_path,
        "an absolute path of letters, digits and . _ - / only, without '..'",
    )?;
    let services = match &app.services {
        None => None,
        // The steps would run `systemctl stop` with no unit at all.
        Some(list) if list.get_ref().is_empty() => {
            return Err(src.error(
                list.span(),
                "[app] 'services' is empty: name the app's units, or leave it out for the profile's",
            ));
        }
        Some(list) => {
            let mut out = Vec::new();
            for s in list.get_ref() {
                if !is_unit_name(s.get_ref()) {
                    return Err(src.error(
                        s.span(),
                        format!(
                            "'{}' is not a systemd unit name",
                            s.get_ref().escape_debug()
                        ),
                    ));
                }
                out.push(s.get_ref().clone());
            }
            Some(out)
        }
    };
    Ok(AppConfig {
        domain,
        user,
        dir,
        database,
        db_user,
        services,
        work_dir,
    })
}

/// [vars]: settings of the profile's own, as written (the plan checks them
/// against the profile).
fn parse_vars(
    src: &Source<'_>,
    text: &str,
    raw: Option<std::collections::BTreeMap<String, Spanned<crate::profile::VarSpec>>>,
) -> Result<Vec<ConfigVar>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in raw.into_iter().flatten() {
        let span = value.span();
        let here = |m: String| src.error(span.clone(), m);
        let settable = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && name.starts_with(|c: char| c.is_ascii_lowercase());
        if !settable {
            return Err(here(format!(
                "[vars] '{}' is not a setting name (lowercase letters, digits, '_')",
                name.escape_debug()
            )));
        }
        if crate::profile::PROVIDED.contains(&name.as_str())
            || crate::profile::FACTS.contains(&name.as_str())
        {
            return Err(here(format!(
                "[vars] '{name}' is not the profile's to set: it comes from [app], [move] or what preflight finds"
            )));
        }
        let v = value.into_inner();
        if let crate::profile::VarSpec::Commands(c) = &v
            && c.iter().any(Vec::is_empty)
        {
            return Err(here(format!(
                "[vars] '{name}': a command needs at least a program"
            )));
        }
        if let Some(bad) = v
            .strings()
            .into_iter()
            .find(|s| s.is_empty() || s.chars().any(char::is_control))
        {
            return Err(here(format!(
                "[vars] '{name}': '{}' is empty or holds control characters",
                bad.escape_debug()
            )));
        }
        let (line, column) = line_column(text, span.start);
        vars.push(ConfigVar {
            name,
            value: v,
            line,
            column,
        });
    }
    Ok(vars)
}

/// [move]: how the data moves.
fn parse_move(src: &Source<'_>, moving: Option<&RawMove>) -> Result<MoveConfig, ConfigError> {
    Ok(MoveConfig {
        compress: match moving.and_then(|m| m.compress.as_ref()) {
            None => None,
            Some(z) => Some(
                u8::try_from(*z.get_ref())
                    .ok()
                    .filter(|z| *z <= 9)
                    .ok_or_else(|| {
                        src.error(
                            z.span(),
                            format!(
                                "[move] compress '{}' is not a pg_dump compression level (0 to 9)",
                                z.get_ref()
                            ),
                        )
                    })?,
            ),
        },
        database: moving.and_then(|m| m.database).unwrap_or_default(),
        media_cache: moving.and_then(|m| m.media_cache).unwrap_or_default(),
    })
}

fn parse_dns(src: &Source<'_>, base: &Path, d: RawDns) -> Result<DnsConfig, ConfigError> {
    let mut expect = Vec::new();
    for e in d.expect.get_ref() {
        let ip: IpAddr = e.get_ref().parse().map_err(|_| {
            let message = if is_placeholder(e.get_ref()) {
                "[dns] 'expect' is still the placeholder `hikkoshi init` wrote: put the new host's public address(es) there, or remove [dns] to leave DNS to yourself".to_string()
            } else {
                format!("'{}' is not an IP address", e.get_ref().escape_debug())
            };
            src.error(e.span(), message)
        })?;
        expect.push(ip);
    }
    if expect.is_empty() {
        return Err(src.error(
            d.expect.span(),
            "[dns] 'expect' is empty: it needs the new host's public address(es)",
        ));
    }
    let mut resolvers = Vec::new();
    for r in d.resolvers.iter().flatten() {
        let value = r.get_ref();
        let ok = value.parse::<IpAddr>().is_ok() || value.parse::<std::net::SocketAddr>().is_ok();
        if !ok {
            return Err(src.error(
                r.span(),
                format!(
                    "'{}' is not a resolver address (IP or IP:PORT)",
                    value.escape_debug()
                ),
            ));
        }
        resolvers.push(value.clone());
    }
    let wait = match &d.wait {
        None => Duration::from_secs(30 * 60),
        Some(w) => parse_duration(w.get_ref()).ok_or_else(|| {
            src.error(
                w.span(),
                format!(
                    "'{}' is not a duration (like 90s, 30m or 1h)",
                    w.get_ref().escape_debug()
                ),
            )
        })?,
    };
    let ca_file = d
        .ca_file
        .as_ref()
        .map(|f| existing_file(src, base, f, "CA certificate file"))
        .transpose()?;
    Ok(DnsConfig {
        expect,
        resolvers,
        wait,
        ca_file,
    })
}

/// A file named relative to the config file, which must exist.
/// A built-in profile's name, or a path to a profile file (one with a '/' or
/// ending in .toml), relative to `base`.
fn profile_ref(value: &str, base: &Path) -> Result<ProfileRef, String> {
    if value.contains('/') || value.ends_with(".toml") {
        let p = base.join(value);
        if p.is_file() {
            Ok(ProfileRef::File(p))
        } else {
            Err(format!(
                "profile file '{}' does not exist",
                p.display().to_string().escape_debug()
            ))
        }
    } else if crate::profile::builtin(value).is_some() {
        Ok(ProfileRef::Builtin(value.to_string()))
    } else {
        Err(format!(
            "unknown profile '{}'; built-in profiles: {}; or give a path to a profile file",
            value.escape_debug(),
            crate::profile::builtin_names().join(", ")
        ))
    }
}

impl Config {
    /// A config for showing a profile's checklist with no hosts
    /// (`hikkoshi plan --profile NAME`): hosts and domain stay placeholders.
    pub fn for_profile(name: &str) -> Result<Config, String> {
        Ok(Config {
            path: PathBuf::from(name),
            profile: profile_ref(name, Path::new(""))?,
            source: "{source}".into(),
            target: "{target}".into(),
            source_install: Install::Systemd,
            target_install: Install::Systemd,
            ssh_config: None,
            app: AppConfig {
                domain: "{domain}".into(),
                ..AppConfig::default()
            },
            dns: None,
            moving: MoveConfig::default(),
            vars: Vec::new(),
            app_at: (1, 1),
        })
    }
}

fn existing_file(
    src: &Source<'_>,
    base: &Path,
    f: &Spanned<String>,
    what: &str,
) -> Result<PathBuf, ConfigError> {
    let p = base.join(f.get_ref());
    if p.is_file() {
        Ok(p)
    } else {
        Err(src.error(
            f.span(),
            format!(
                "{what} '{}' does not exist",
                p.display().to_string().escape_debug()
            ),
        ))
    }
}

fn check_ssh_destination(src: &Source<'_>, dest: Spanned<String>) -> Result<String, ConfigError> {
    let value = dest.get_ref();
    if !is_ssh_destination(value) {
        return Err(src.error(
            dest.span(),
            format!(
                "'{}' is not an ssh destination (a Host alias, [user@]host or ssh://[user@]host[:port]; no spaces, none of {}, no part starting with '-')",
                value.escape_debug(),
                SHELL_CHARS.chars().map(String::from).collect::<Vec<_>>().join(" ")
            ),
        ));
    }
    Ok(value.clone())
}

/// What OpenSSH 9.6 and later refuse in a host or user name given on the
/// command line, because `%h` and `%r` in ProxyCommand or Match exec hand them
/// to a shell; older versions pass them on.
const SHELL_CHARS: &str = "'`\"$\\;&<>|(){}";

/// ssh takes an argument starting with '-' as an option, and the openssh crate
/// turns ssh://[user@]host[:port] into `-p port -l user host`: so neither the
/// value (after the scheme) nor the host after the user may start with '-'.
pub(crate) fn is_ssh_destination(s: &str) -> bool {
    let rest = s.strip_prefix("ssh://").unwrap_or(s);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    !host.is_empty()
        && !rest.starts_with('-')
        && !host.starts_with('-')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || SHELL_CHARS.contains(c))
}

fn check_opt(
    src: &Source<'_>,
    key: &str,
    value: &Option<Spanned<String>>,
    valid: fn(&str) -> bool,
    what: &str,
) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if valid(v.get_ref()) => Ok(Some(v.get_ref().clone())),
        Some(v) if is_placeholder(v.get_ref()) => Err(src.error(
            v.span(),
            format!(
                "[app] '{key}' is still the placeholder `hikkoshi init` wrote: put {what} there (the comment above it says why it was not found)"
            ),
        )),
        Some(v) => Err(src.error(
            v.span(),
            format!("'{}' is not {what}", v.get_ref().escape_debug()),
        )),
    }
}

/// What `hikkoshi init` writes where it could not find a value: refused by
/// name, so a config is never used with a guess in it.
pub(crate) const PLACEHOLDER: &str = "FILL IN";

fn is_placeholder(value: &str) -> bool {
    value.starts_with(PLACEHOLDER)
}

pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

pub(crate) fn is_unix_user(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Database and role names end up as positional arguments of pg_dump and createdb,
/// where anything with '=' would be read as a connection string and a leading '-'
/// as an option; the safe set is what Rails and every install guide use anyway.
/// PostgreSQL names as apps use them, '.' included (Pleasanter's database is
/// 'Implem.Pleasanter'); they reach commands as single arguments and SQL only
/// as quoted identifiers or psql variables.
pub(crate) fn is_pg_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

pub fn is_plain_abs_path(s: &str) -> bool {
    s.starts_with('/') && s.len() > 1 && !s.ends_with('/') && !s.chars().any(|c| c.is_control())
}

pub(crate) fn is_simple_abs_path(s: &str) -> bool {
    is_plain_abs_path(s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !s.split('/').any(|part| part == "..")
}

pub(crate) fn is_unit_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '@' | '-' | '\\'))
}

#[cfg(test)]
mod tests;
