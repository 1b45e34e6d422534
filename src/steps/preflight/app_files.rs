//! The app's own files: its directory, the secrets file (.env.production),
//! Misskey's default.yml, files the profile copies, versions, object storage.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass, Warn};
use crate::redact::is_secret_key;
use crate::remote::{RemoteCommand, Role, RunAs, Shell};
use crate::runtime::database::{self, query};
use crate::steps::StepFailure;
use crate::steps::ctx::RunCtx;
use serde_json::Value as Json;
use std::collections::BTreeMap;

pub(super) async fn check_app_dirs<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    for h in [src, dst] {
        let ok = h
            .run_quiet(&RemoteCommand::new(
                RunAs::User(s.user.clone()),
                ["test", "-d", s.dir.as_str()],
            ))
            .await?
            .success();
        if ok {
            r.note(h.name(), "app directory", Pass, s.dir.clone());
        } else if h.role() == Role::Target && s.is_compose(Role::Target) {
            r.note(
                h.name(),
                "app directory",
                Pass,
                format!(
                    "'{}' does not exist yet: it is made for the stack's files",
                    s.dir
                ),
            );
        } else if h.role() == Role::Target {
            r.note(h.name(), "app directory", Fail, format!("'{}' is missing or not readable by '{}': install the same app version on the new host first", s.dir, s.user));
        } else {
            r.note(
                h.name(),
                "app directory",
                Fail,
                format!("'{}' is missing or not readable by '{}'", s.dir, s.user),
            );
        }
    }
    Ok(())
}

/// Parses an env file (KEY=value lines); values are kept in memory only.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        // As the dotenv gem reads them: single quotes literal, double quotes
        // with backslash escapes, which is the form the app (and its logs) see.
        let value = if let Some(inner) = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            let mut s = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some('n')) => {
                        s.push('\n');
                        chars.next();
                    }
                    ('\\', Some(e @ ('"' | '\\' | '$'))) => {
                        s.push(e);
                        chars.next();
                    }
                    _ => s.push(c),
                }
            }
            s
        } else if let Some(inner) = v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
            inner.to_string()
        } else {
            v.to_string()
        };
        out.insert(k.trim().to_string(), value);
    }
    out
}

pub(super) async fn read_env<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    file: &str,
    ctx: &RunCtx,
    r: &mut Report<'_>,
) -> Result<BTreeMap<String, String>, StepFailure> {
    let Some(text) = read_app_file(src, s, file, "secrets file", r).await? else {
        return Ok(BTreeMap::new());
    };
    let env = parse_env(&text);
    for (k, v) in &env {
        for secret in crate::redact::secrets_in(k, v) {
            ctx.redactor.add(&secret);
        }
    }
    // The file's raw lines too: a value's escaped form is what a tool would echo.
    for line in text.lines() {
        if let Some((k, raw)) = line.trim().trim_start_matches("export ").split_once('=')
            && is_secret_key(k.trim())
        {
            ctx.redactor.add(raw.trim());
            ctx.redactor.add(raw.trim().trim_matches(['"', '\'']));
        }
    }
    r.note(
        src.name(),
        "secrets file",
        Pass,
        format!("'{file}' ({} settings; values never shown)", env.len()),
    );
    if let Some(key) = &s.domain_key {
        match env.get(key) {
            Some(d) if *d == s.domain => {
                r.note(src.name(), "domain", Pass, format!("{key}={d}"));
            }
            Some(d) => r.note(
                src.name(),
                "domain",
                Fail,
                format!("{key} in '{file}' is '{d}' but the config says '{}'; the domain of an instance can never change", s.domain),
            ),
            None => r.note(src.name(), "domain", Warn, format!("'{file}' sets no {key}")),
        }
    }
    for (key, want) in [("DB_NAME", &s.database), ("DB_USER", &s.db_user)] {
        if let Some(have) = env.get(key)
            && have != want
        {
            r.note(
                src.name(),
                "database settings",
                Fail,
                format!("{key} in '{file}' is '{have}' but the config says '{want}': the app on the new host would use '{have}'; make them agree"),
            );
        }
    }
    note_replaced(dst, s, file, "secrets file", r).await?;
    Ok(env)
}

/// A file on the source, read as the app's user; unreadable is a failed check.
pub(super) async fn read_app_file<S: Shell>(
    src: &S,
    s: &Settings,
    file: &str,
    check: &str,
    r: &mut Report<'_>,
) -> Result<Option<String>, StepFailure> {
    let out = src
        .run_quiet(&RemoteCommand::new(
            RunAs::User(s.user.clone()),
            ["cat", "--", file],
        ))
        .await?;
    if out.success() {
        return Ok(Some(out.stdout));
    }
    r.note(
        src.name(),
        check,
        Fail,
        format!("cannot read '{file}' as '{}'", s.user),
    );
    Ok(None)
}

/// Warns that a file the move copies already exists on the target.
pub(super) async fn note_replaced<S: Shell>(
    dst: &S,
    s: &Settings,
    file: &str,
    check: &str,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let exists = dst
        .run_quiet(&RemoteCommand::new(
            RunAs::User(s.user.clone()),
            ["test", "-e", file],
        ))
        .await?
        .success();
    if exists {
        r.note(
            dst.name(),
            check,
            Warn,
            format!("'{file}' exists on the target and is replaced by the old host's; the profile's copy step says whether the new host's own is kept as a backup"),
        );
    }
    Ok(())
}

/// Misskey's default.yml: checked against the config and the hosts; the
/// database and role come from it unless the config names them.
pub(super) async fn read_misskey<S: Shell>(
    src: &S,
    dst: &S,
    s: &mut Settings,
    file: &str,
    (configured, redactor, vars): (
        &[String],
        &crate::redact::Redactor,
        &mut crate::profile::template::Vars,
    ),
    r: &mut Report<'_>,
) -> Result<Option<crate::steps::misskey::MisskeyConfig>, StepFailure> {
    use crate::steps::misskey::{MisskeyConfig, is_local};
    let Some(text) = read_app_file(src, s, file, "config file", r).await? else {
        return Ok(None);
    };
    let cfg = match MisskeyConfig::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            r.note(src.name(), "config file", Fail, format!("'{file}': {e}"));
            return Ok(None);
        }
    };
    for secret in &cfg.secrets {
        redactor.add(secret);
    }
    r.note(
        src.name(),
        "config file",
        Pass,
        format!("'{file}' (passwords and keys never shown)"),
    );
    match cfg.url_host() {
        Some(h) if h == s.domain => r.note(
            src.name(),
            "url",
            Warn,
            format!(
                "url '{}' and id '{}' must never change: other servers know the instance by its url, and the id method is how every stored id was made; the file is copied byte for byte, do not edit them on the new host",
                cfg.url, cfg.id
            ),
        ),
        other => r.note(
            src.name(),
            "url",
            Fail,
            format!(
                "url in '{file}' is '{}' ({}) but the config says '{}'; the url of an instance can never change",
                cfg.url,
                other.map_or_else(|| "no host in it".into(), |h| format!("host '{h}'")),
                s.domain
            ),
        ),
    }
    if !is_local(&cfg.db_host) || cfg.db_port != 5432 {
        r.note(
            src.name(),
            "database settings",
            Fail,
            format!(
                "'{file}' has the database at '{}' port {}: hikkoshi moves a database that runs on the old host at PostgreSQL's default port 5432",
                cfg.db_host, cfg.db_port
            ),
        );
    }
    for (key, have, setting) in [
        ("db.db", &cfg.db_name, &mut s.database),
        ("db.user", &cfg.db_user, &mut s.db_user),
    ] {
        let name = if key == "db.db" {
            "database"
        } else {
            "db_user"
        };
        if have == setting {
            continue;
        }
        if configured.iter().any(|c| c == name) {
            r.note(
                src.name(),
                "database settings",
                Fail,
                format!("{key} in '{file}' is '{have}' but the config says {name} = '{setting}': the app on the new host would use '{have}'; make them agree"),
            );
        } else if !crate::config::is_pg_name(have) {
            r.note(
                src.name(),
                "database settings",
                Fail,
                format!("{key} in '{file}' is '{}', which hikkoshi does not take as a PostgreSQL name; set {name} in [app]", have.escape_debug()),
            );
        } else {
            setting.clone_from(have);
            vars.set(name, have.as_str());
        }
    }
    r.note(
        src.name(),
        "database settings",
        Pass,
        format!(
            "database '{}', role '{}' (from '{file}' unless the config names them)",
            s.database, s.db_user
        ),
    );
    check_search(src, dst, s, &cfg.search, r).await?;
    note_replaced(dst, s, file, "config file", r).await?;
    Ok(Some(cfg))
}

/// Misskey's search: a Meilisearch index does not move; PGroonga must be
/// installed in the target's PostgreSQL.
async fn check_search<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    search: &crate::steps::misskey::Search,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    use crate::steps::misskey::Search;
    match search {
        Search::Sql => {}
        Search::Meilisearch { host } => r.note(
            src.name(),
            "search",
            Warn,
            format!(
                "full-text search uses Meilisearch at '{host}': its index is not in the database and is not moved; the new host must reach a Meilisearch, and the index must be rebuilt there after the move"
            ),
        ),
        Search::Pgroonga => {
            let have = query(
                dst,
                &s.rt(dst.role()).db_admin,
                "postgres",
                "SELECT 1 FROM pg_available_extensions WHERE name = 'pgroonga'",
                &[],
            )
            .await?;
            if have.is_empty() {
                r.note(
                    dst.name(),
                    "search",
                    Fail,
                    "full-text search uses PGroonga, but the extension 'pgroonga' is not installed in the target's PostgreSQL: install PGroonga for the same PostgreSQL version on the new host first (https://pgroonga.github.io/install/)",
                );
            } else {
                r.note(dst.name(), "search", Pass, "PGroonga is installed on the target");
            }
        }
    }
    Ok(())
}

/// Config and secret files the profile copies: readable on the source (their
/// contents are never read here).
pub(super) async fn check_files<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    for f in &s.files {
        let as_user = RunAs::User(s.user.clone());
        let readable = src
            .run_quiet(&RemoteCommand::new(
                as_user.clone(),
                ["test", "-f", f, "-a", "-r", f],
            ))
            .await?
            .success();
        if readable {
            r.note(
                src.name(),
                "file",
                Pass,
                format!("'{f}' (contents never shown)"),
            );
        } else {
            r.note(
                src.name(),
                "file",
                Fail,
                format!("'{f}' is missing or not a file readable by '{}'", s.user),
            );
        }
        let parent = std::path::Path::new(f)
            .parent()
            .map_or_else(|| "/".to_string(), |p| p.display().to_string());
        let writable = dst
            .run_quiet(&RemoteCommand::new(
                as_user,
                ["test", "-d", &parent, "-a", "-w", &parent],
            ))
            .await?
            .success();
        if !writable {
            r.note(
                dst.name(),
                "file",
                Fail,
                format!(
                    "'{parent}' is missing or not writable by '{}' on the target: install the app there first",
                    s.user
                ),
            );
            continue;
        }
        note_replaced(dst, s, f, "file", r).await?;
    }
    Ok(())
}

/// The profile's query on the source database answers whether media lives in
/// object storage (Misskey: `meta."useObjectStorage"`).
pub(super) async fn object_storage_in_db<S: Shell>(
    src: &S,
    s: &Settings,
    sql: &str,
    r: &mut Report<'_>,
) -> Result<Option<String>, StepFailure> {
    match database::answers_true(src, &s.rt(src.role()).app, &s.database, sql).await {
        Ok(yes) => Ok(yes.then(|| "the database says so".to_string())),
        Err(e) => {
            r.note(
                src.name(),
                "media",
                Fail,
                format!("cannot tell whether object storage is in use ('{sql}'): {e}"),
            );
            Ok(None)
        }
    }
}

/// An app's version: `"version"` in a package.json (Misskey), Mastodon's
/// version.rb, or the first line of a plain VERSION file.
pub(crate) fn parse_version(file: &str, text: &str) -> Option<String> {
    if file.ends_with(".json") {
        let v: Json = serde_json::from_str(text).ok()?;
        return v.get("version")?.as_str().map(str::to_string);
    }
    if file.ends_with(".rb") {
        return parse_version_rb(text);
    }
    text.lines()
        .next()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

/// Mastodon's lib/mastodon/version.rb: `def major` / `4` / `end` and so on.
pub(crate) fn parse_version_rb(text: &str) -> Option<String> {
    let part = |name: &str| -> Option<String> {
        let at = text.find(&format!("def {name}"))?;
        let rest = &text[at + 4 + name.len()..];
        let num: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        (!num.is_empty()).then_some(num)
    };
    Some(format!(
        "{}.{}.{}",
        part("major")?,
        part("minor")?,
        part("patch")?
    ))
}

pub(super) async fn check_app_versions<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    file: &str,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let mut versions = Vec::new();
    for h in [src, dst] {
        let out = h
            .run_quiet(&RemoteCommand::new(
                RunAs::User(s.user.clone()),
                ["cat", "--", file],
            ))
            .await?;
        versions.push(if out.success() {
            parse_version(file, &out.stdout)
        } else {
            None
        });
    }
    match (&versions[0], &versions[1]) {
        (Some(a), Some(b)) if a == b => r.note(dst.name(), "app version", Pass, format!("{a} on both hosts")),
        (Some(a), Some(b)) => r.note(
            dst.name(),
            "app version",
            Warn,
            format!("source runs {a}, target has {b}: install {a} on the new host, or run the database migrations after the restore"),
        ),
        _ => r.note(dst.name(), "app version", Warn, format!("cannot read the version from '{file}' on both hosts")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::preflight::fake::{Checks, FakeHost, mastodon};

    const VERSION_RB: &str = "module Mastodon\n  module Version\n    module_function\n\n    def major\n      4\n    end\n\n    def minor\n      3\n    end\n\n    def patch\n      2\n    end\n";

    #[tokio::test]
    async fn the_app_directory_must_be_on_both_hosts() {
        let src = FakeHost::source().on("test -d", 0, "");
        let dst = FakeHost::target().on("test -d", 1, "");
        let c = Checks::new();
        let mut r = c.report();
        check_app_dirs(&src, &dst, &mastodon(), &mut r)
            .await
            .expect("runs");
        assert_eq!(
            c.said(),
            [
                "old app directory ok: /home/mastodon/live",
                "new app directory FAIL: '/home/mastodon/live' is missing or not readable by 'mastodon': install the same app version on the new host first",
            ]
        );
        let asked = src.asked.lock().expect("asked").clone();
        assert_eq!(asked, ["test -d /home/mastodon/live"]);
    }

    #[rstest::rstest]
    #[case::same(VERSION_RB, VERSION_RB, "new app version ok: 4.3.2 on both hosts")]
    #[case::older_target(VERSION_RB, &VERSION_RB.replace("      2\n", "      1\n"), "new app version WARN: source runs 4.3.2, target has 4.3.1: install 4.3.2 on the new host, or run the database migrations after the restore")]
    #[case::unreadable(
        VERSION_RB,
        "",
        "new app version WARN: cannot read the version from '/home/mastodon/live/lib/mastodon/version.rb' on both hosts"
    )]
    #[tokio::test]
    async fn app_versions_are_compared(#[case] old: &str, #[case] new: &str, #[case] says: &str) {
        let src = FakeHost::source().on("cat --", 0, old);
        let dst = FakeHost::target().on("cat --", if new.is_empty() { 1 } else { 0 }, new);
        let c = Checks::new();
        let mut r = c.report();
        check_app_versions(
            &src,
            &dst,
            &mastodon(),
            "/home/mastodon/live/lib/mastodon/version.rb",
            &mut r,
        )
        .await
        .expect("runs");
        assert_eq!(c.said(), [says]);
        assert!(
            r.failed.is_empty(),
            "a version difference warns, never fails"
        );
    }

    #[test]
    fn env_parsing() {
        let text = concat!(
            "# c\n\nLOCAL_DOMAIN=a.example\nexport X=\"q v\"\nY='s\\$'\nBROKEN\nZ=a=b\n",
            "P=\"a\\$b\\\"c\\\\d\\ne\"\n"
        );
        let env = parse_env(text);
        assert_eq!(env["LOCAL_DOMAIN"], "a.example");
        assert_eq!(env["X"], "q v");
        assert_eq!(env["Y"], "s\\$");
        assert_eq!(env["Z"], "a=b");
        assert_eq!(env["P"], "a$b\"c\\d\ne");
        assert!(!env.contains_key("BROKEN"));
    }

    #[test]
    fn mastodon_version_rb() {
        let rb = "module Mastodon\n  module Version\n    module_function\n\n    def major\n      4\n    end\n\n    def minor\n      3\n    end\n\n    def patch\n      12\n    end\n";
        assert_eq!(parse_version_rb(rb).as_deref(), Some("4.3.12"));
        assert_eq!(parse_version_rb("nothing"), None);
    }
}
