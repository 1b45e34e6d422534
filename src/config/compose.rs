//! A host's install kind: systemd units (no `compose` key), or a Docker
//! Compose stack (`compose = "/project/dir"`, with an optional file list,
//! project name and service names by role). Source and target are read alone,
//! so a move may go from one kind to the other.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source, is_placeholder, is_plain_abs_path};

/// How the app runs on one host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Install {
    #[default]
    Systemd,
    Compose(ComposeConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeConfig {
    /// The project directory (`--project-directory`).
    pub dir: String,
    /// Compose files (`-f`), as given: relative ones are relative to `dir`.
    /// None: compose's own default in `dir`.
    pub files: Vec<String>,
    /// The project name (`-p`). None: the name the running stack carries
    /// (source), or the source's (target): volume names start with it.
    pub project: Option<String>,
    /// Service names by role, where they differ from the profile's.
    pub services: BTreeMap<String, String>,
}

pub use crate::profile::ROLES;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Files {
    One(String),
    Many(Vec<String>),
}

/// The `compose*` keys of `[source]` or `[target]`, as TOML gives them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCompose {
    pub compose: Option<Spanned<String>>,
    pub compose_file: Option<Spanned<Files>>,
    pub compose_project: Option<Spanned<String>>,
    pub compose_services: Option<Spanned<BTreeMap<String, String>>>,
}

/// A compose project name as compose itself accepts it.
pub(crate) fn is_project_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A compose service name: what `exec`, `stop` and `ps` take as an argument.
pub(crate) fn is_service_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_compose_file(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('/')
        && !s.chars().any(char::is_control)
        && !s.split('/').any(|p| p == "..")
}

pub(super) fn parse_install(
    src: &Source<'_>,
    table: &str,
    raw: RawCompose,
) -> Result<Install, ConfigError> {
    let Some(dir) = raw.compose else {
        let stray = [
            raw.compose_file
                .as_ref()
                .map(|f| ("compose_file", f.span())),
            raw.compose_project
                .as_ref()
                .map(|p| ("compose_project", p.span())),
            raw.compose_services
                .as_ref()
                .map(|s| ("compose_services", s.span())),
        ];
        if let Some((key, span)) = stray.into_iter().flatten().next() {
            return Err(src.error(
                span,
                format!("[{table}] '{key}' belongs to a Docker Compose install: add 'compose = \"/the/project/directory\"' (without it the host is a systemd install)"),
            ));
        }
        return Ok(Install::Systemd);
    };
    let d = dir.get_ref();
    if is_placeholder(d) {
        return Err(src.error(
            dir.span(),
            format!("[{table}] 'compose' is still the placeholder `hikkoshi init` wrote: put the compose project's directory there"),
        ));
    }
    if !is_plain_abs_path(d) || d.split('/').any(|p| p == "..") {
        return Err(src.error(
            dir.span(),
            format!(
                "[{table}] 'compose' is '{}': the project directory as an absolute path without '..' or a trailing '/', like /home/mastodon/live",
                d.escape_debug()
            ),
        ));
    }
    let files = match raw.compose_file {
        None => Vec::new(),
        Some(f) => {
            let span = f.span();
            let list = match f.into_inner() {
                Files::One(one) => vec![one],
                Files::Many(many) => many,
            };
            if list.is_empty() {
                return Err(src.error(span, format!("[{table}] 'compose_file' is an empty list: name a file, or leave the key out for compose's default")));
            }
            if let Some(bad) = list.iter().find(|f| !is_compose_file(f)) {
                return Err(src.error(
                    span,
                    format!(
                        "[{table}] 'compose_file' '{}' is not a file name (relative to the project directory or absolute, without '..', not starting with '-')",
                        bad.escape_debug()
                    ),
                ));
            }
            list
        }
    };
    let project = match raw.compose_project {
        None => None,
        Some(p) if is_project_name(p.get_ref()) => Some(p.into_inner()),
        Some(p) => {
            return Err(src.error(
                p.span(),
                format!(
                    "[{table}] 'compose_project' '{}' is not a compose project name (lowercase letters, digits, '_' and '-', starting with a letter or digit)",
                    p.get_ref().escape_debug()
                ),
            ));
        }
    };
    let services = parse_services(src, table, raw.compose_services)?;
    Ok(Install::Compose(ComposeConfig {
        dir: d.clone(),
        files,
        project,
        services,
    }))
}

/// `compose_services = { role = "service" }`: known roles, plain names.
fn parse_services(
    src: &Source<'_>,
    table: &str,
    raw: Option<Spanned<BTreeMap<String, String>>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut services = BTreeMap::new();
    if let Some(s) = raw {
        let span = s.span();
        for (role, name) in s.into_inner() {
            if !ROLES.contains(&role.as_str()) {
                return Err(src.error(
                    span,
                    format!(
                        "[{table}] compose_services: '{}' is not a role; roles: {}",
                        role.escape_debug(),
                        ROLES.join(", ")
                    ),
                ));
            }
            if !is_service_name(&name) {
                return Err(src.error(
                    span,
                    format!(
                        "[{table}] compose_services: '{}' is not a compose service name (letters, digits, '_', '.' and '-')",
                        name.escape_debug()
                    ),
                ));
            }
            services.insert(role, name);
        }
    }
    Ok(services)
}
