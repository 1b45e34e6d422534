//! Preflight: everything that would break the move, found while the instance is
//! still up and nothing has changed. Only reads: no file, database or service on
//! either host is touched here.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::db_move;
use super::facts::Facts;
use super::{Done, StepFailure, StepResult, free_space};
use crate::config::DbMove;
use crate::events::CheckStatus::{self, Fail, Pass, Warn};
use crate::profile::{StepKind, StepSpec};
use crate::redact::is_secret_key;
use crate::remote::{Host, RemoteCommand, Role, RunAs};
use crate::runtime::database::{self, Tool, query};
use crate::runtime::{cache, services};
use crate::steps::ctx::{RunCtx, StepIo};
use crate::units::human_bytes;

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
const PEEK_BACKUP: &str = r#"p=$1
if [ -d "$p" ]; then
  if [ -f "$p/toc.dat" ]; then echo directory; else echo not-a-dump-directory; fi
  exit 0
fi
if [ ! -f "$p" ]; then echo missing; exit 0; fi
echo file
head -c 512 -- "$p" | od -An -tx1 -v"#;

fn backup_kind(peek: &str) -> Result<BackupKind, String> {
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

async fn check_backup(
    src: &Host,
    path: &str,
    r: &mut Report<'_>,
) -> Result<Option<BackupKind>, StepFailure> {
    let out = super::run_quiet_checked(
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

struct Report<'a> {
    io: &'a StepIo,
    failed: Vec<String>,
    /// A target database left by a hikkoshi run, to drop once every check passed.
    drop_target: Option<String>,
}

impl Report<'_> {
    fn note(&mut self, host: &str, name: &str, status: CheckStatus, message: impl Into<String>) {
        let message = message.into();
        if status == Fail {
            self.failed.push(format!("{host}: {name}: {message}"));
        }
        self.io.check(host, name, status, message);
    }
}

fn text_or(vars: &crate::profile::template::Vars, name: &str, default: &str) -> String {
    vars.text(name).unwrap_or_else(|_| default.to_string())
}

/// Settings a preflight needs, rendered once.
struct Settings {
    user: String,
    dir: String,
    database: String,
    db_user: String,
    db_admin: String,
    domain: String,
    services: Vec<String>,
    work_dir: String,
    env_file: Option<String>,
    misskey_config: Option<String>,
    files: Vec<String>,
    domain_key: Option<String>,
    version_file: Option<String>,
    media: Vec<String>,
    redis_service: Option<String>,
    has_rsync: bool,
    has_redis: bool,
    run_id: String,
    mode: String,
    reset_target: bool,
    /// Resuming, and the earlier attempt verified the restored database.
    resumed_verified: bool,
}

pub async fn run(step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let v = &ctx.vars;
    let mut s = Settings {
        user: v.text("user")?,
        dir: v.text("dir")?,
        database: v.text("database")?,
        db_user: v.text("db_user")?,
        db_admin: text_or(v, "db_admin", "postgres"),
        domain: v.text("domain")?,
        services: match v.get("services")? {
            crate::profile::template::Value::List(l) => l,
            _ => vec![v.text("services")?],
        },
        work_dir: text_or(v, "work_dir", "/var/tmp"),
        env_file: step.env_file.as_ref().map(|f| v.render(f)).transpose()?,
        misskey_config: step
            .misskey_config
            .as_ref()
            .map(|f| v.render(f))
            .transpose()?,
        files: v.render_argv(&step.files)?,
        domain_key: step.domain_key.clone(),
        version_file: step
            .version_file
            .as_ref()
            .map(|f| v.render(f))
            .transpose()?,
        media: v.render_argv(&step.media)?,
        redis_service: v.text("redis_service").ok(),
        has_rsync: ctx.plan.kinds.contains(&StepKind::Rsync),
        has_redis: ctx.plan.kinds.contains(&StepKind::Redis),
        run_id: ctx.opts.run_id.clone(),
        mode: ctx.opts.mode.clone(),
        reset_target: ctx.opts.reset_target,
        resumed_verified: ctx
            .plan
            .steps
            .iter()
            .any(|st| st.kind == StepKind::Verify && ctx.opts.resume_done.contains(&st.id)),
    };

    let mut report = Report {
        io,
        failed: Vec::new(),
        drop_target: None,
    };

    // ssh first: every other check needs both hosts.
    let cfg = ctx.opts.ssh_config.clone();
    if ctx.hosts.is_none() {
        let (src, dst) = tokio::join!(
            Host::connect(Role::Source, &ctx.plan.source, cfg.as_deref()),
            Host::connect(Role::Target, &ctx.plan.target, cfg.as_deref()),
        );
        let mut errors = Vec::new();
        for (name, r) in [(&ctx.plan.source, &src), (&ctx.plan.target, &dst)] {
            match r {
                Ok(h) => report.note(name, "ssh", Pass, format!("connected as {}", h.login)),
                Err(e) => {
                    report.note(name, "ssh", Fail, e.to_string());
                    errors.push(e.to_string());
                }
            }
        }
        match (src, dst) {
            (Ok(mut source), Ok(mut target)) => {
                source.set_tag(&ctx.opts.run_id);
                target.set_tag(&ctx.opts.run_id);
                ctx.hosts = Some(std::sync::Arc::new(crate::steps::ctx::Hosts {
                    source,
                    target,
                }));
            }
            (a, b) => {
                for h in [a, b].into_iter().flatten() {
                    h.close().await;
                }
                return Err(StepFailure::new(format!(
                    "cannot reach both hosts:\n{}",
                    errors.join("\n")
                )));
            }
        }
    }
    // Borrowing the field, not `ctx`, leaves ctx.vars free for the facts found below.
    let Some(hosts) = ctx.hosts.as_ref() else {
        return Err(ctx
            .connected()
            .err()
            .map(StepFailure::from)
            .unwrap_or_default());
    };
    let (src, dst) = (&hosts.source, &hosts.target);

    for h in [src, dst] {
        if !h.is_root {
            let ok = h
                .run_quiet(&RemoteCommand::new(RunAs::Login, ["sudo", "-n", "true"]))
                .await?
                .success();
            let status = if ok { Pass } else { Fail };
            report.note(
                h.name(),
                "privileges",
                status,
                if ok {
                    format!("{} may use sudo without a password", h.login)
                } else {
                    format!("logged in as '{}', which is not root and cannot 'sudo -n'; log in as root or allow passwordless sudo", h.login)
                },
            );
        }
    }

    check_tools(src, dst, &s, &mut report).await?;
    let (source_home, target_home) = check_app_user(src, dst, &s, &mut report).await?;
    // The profile guesses /home/<user>; the hosts know. The work directory and
    // the app's PATH follow the real home, which must be the same on both hosts
    // because the work directory's path is.
    if !target_home.is_empty() {
        if !source_home.is_empty() && source_home != target_home {
            report.note(
                dst.name(),
                "app user",
                Fail,
                format!(
                    "the home of '{}' is '{source_home}' on {} but '{target_home}' on {}; set work_dir in [app] to a directory that exists on both",
                    s.user,
                    src.name(),
                    dst.name()
                ),
            );
        }
        ctx.vars.set("home", target_home.clone());
        s.work_dir = text_or(&ctx.vars, "work_dir", "/var/tmp");
    }
    // Before the database checks: the file may name the database and role.
    let misskey = match s.misskey_config.clone() {
        Some(f) => {
            read_misskey(
                src,
                dst,
                &mut s,
                &f,
                (&ctx.plan.configured, &ctx.redactor, &mut ctx.vars),
                &mut report,
            )
            .await?
        }
        None => None,
    };
    check_postgres_versions(src, dst, &s, &mut report).await?;
    let (schemas, db_size, exts) = check_source_database(src, &s, &mut report).await?;
    let target_db_exists = check_target_database(dst, &s, &exts, &mut report).await?;
    check_app_dirs(src, dst, &s, &mut report).await?;
    let env = match &s.env_file {
        Some(f) => read_env(src, dst, &s, f, ctx, &mut report).await?,
        None => BTreeMap::new(),
    };
    if let Some(vf) = &s.version_file {
        check_app_versions(src, dst, &s, vf, &mut report).await?;
    }
    check_units(src, dst, &s, &mut report).await?;
    check_files(src, dst, &s, &mut report).await?;

    let env_flag = |k: &str| env.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (redis_host, redis_port) = match &misskey {
        Some(m) => (m.redis_host.clone(), m.redis_port.to_string()),
        None => (
            env.get("REDIS_HOST")
                .cloned()
                .unwrap_or_else(|| "localhost".into()),
            env.get("REDIS_PORT")
                .cloned()
                .unwrap_or_else(|| "6379".into()),
        ),
    };
    let redis_local = super::misskey::is_local(&redis_host);
    let object_storage = match (&step.object_storage_env, &step.object_storage_sql) {
        (Some(key), _) => env_flag(key).then(|| format!("{key}=true")),
        (None, Some(sql)) => object_storage_in_db(src, &s, sql, &mut report).await?,
        (None, None) => None,
    };
    let mut facts = Facts {
        source_home,
        target_home,
        redis_port: redis_port.clone(),
        schemas: schemas.clone(),
        ..Facts::default()
    };
    if s.has_redis {
        if redis_local {
            let (a, b) = check_redis(src, dst, &redis_port, &mut report).await?;
            facts.source_rdb = a;
            facts.target_rdb = b;
        } else {
            report.note(
                src.name(),
                "redis",
                Warn,
                format!("Redis is at '{redis_host}', not on this host: it is not moved; make sure the new host reaches it"),
            );
        }
    }
    if let Some(dns) = ctx.opts.dns.clone() {
        check_dns_ttl(&ctx.plan.domain, &dns, &mut report).await;
        for url in ctx.plan.pinned_urls.clone() {
            let url = ctx.vars.render(&url)?;
            check_pinned(&url, &dns, &mut report).await;
        }
    }
    let media_bytes = match &object_storage {
        Some(why) => {
            report.note(
                src.name(),
                "media",
                Pass,
                format!("object storage is in use ({why}): media stays where it is; the media steps are left out"),
            );
            0
        }
        None => check_media(src, dst, &s, &mut report).await?,
    };
    let asked = match text_or(&ctx.vars, "db_move", "auto").as_str() {
        "file" => DbMove::File,
        "stream" => DbMove::Stream,
        "parallel" => DbMove::Parallel,
        _ => DbMove::Auto,
    };
    let from_backup = ctx.opts.from_backup.is_some();
    let forced = text_or(&ctx.vars, "db_compress", "").parse::<u8>().ok();
    let (choice, link) = choose_db_move(
        src,
        dst,
        &s,
        (asked, forced),
        db_size,
        from_backup,
        &mut report,
    )
    .await?;
    let dump_estimate = match (from_backup, choice.mode) {
        (false, db_move::Mode::Stream) => 0,
        _ => dump_size_estimate(db_size, choice.compress),
    };
    check_disk(
        src,
        dst,
        &s,
        db_size,
        dump_estimate,
        media_bytes,
        &mut report,
    )
    .await?;
    let backup = match ctx.opts.from_backup.as_deref() {
        Some(path) => Some(check_backup(src, path, &mut report).await?),
        None => None,
    };
    if s.has_rsync {
        let (keys, sshd) = check_relay(dst, &mut report).await?;
        facts.target_host_keys = keys;
        facts.target_sshd = sshd;
        facts.target_rrsync = dst
            .run_quiet(&RemoteCommand::script(
                RunAs::Login,
                "command -v rrsync >/dev/null",
                &[],
            ))
            .await?
            .success();
        if !facts.target_rrsync {
            report.note(
                dst.name(),
                "media relay",
                Warn,
                "no rrsync on the target: the key made for the media copy is limited to the target's loopback but not to rsync in one directory (rsync 3.2.4 and later ship rrsync)",
            );
        }
    }
    let mut schema_args = Vec::new();
    for schema in &schemas {
        schema_args.push("-n".to_string());
        schema_args.push(schema.clone());
    }
    let extra: Vec<&String> = schemas.iter().filter(|n| *n != "public").collect();
    let vars = &mut ctx.vars;
    vars.set("schema_args", schema_args);
    vars.set("has_extra_schemas", !extra.is_empty());
    vars.set("extra_schemas_sql", create_schemas_sql(&extra));
    let kind = backup.flatten();
    let mode = (!from_backup).then_some(choice.mode);
    vars.set("db_file", mode == Some(db_move::Mode::File));
    vars.set("db_stream", mode == Some(db_move::Mode::Stream));
    vars.set("db_parallel", mode == Some(db_move::Mode::Parallel));
    vars.set(
        "dump_is_file",
        from_backup || mode == Some(db_move::Mode::File),
    );
    vars.set("dump_jobs", choice.dump_jobs.to_string());
    vars.set("restore_jobs", choice.restore_jobs.to_string());
    vars.set("dump_compress", choice.compress.to_string());
    let memory = db_move::mem_available(dst).await.unwrap_or(0);
    vars.set(
        "restore_pgoptions",
        db_move::restore_pgoptions(memory, choice.restore_jobs),
    );
    vars.set("target_db_exists", target_db_exists);
    vars.set("es_enabled", env_flag("ES_ENABLED"));
    vars.set("object_storage", object_storage.is_some());
    vars.set(
        "app_port",
        misskey
            .as_ref()
            .map_or_else(String::new, |m| m.port.to_string()),
    );
    vars.set("redis_local", redis_local && s.has_redis);
    vars.set("from_backup", kind.is_some());
    vars.set(
        "backup_path",
        ctx.opts.from_backup.clone().unwrap_or_default(),
    );
    vars.set("backup_dir", kind == Some(BackupKind::Directory));
    vars.set("backup_plain", kind == Some(BackupKind::Plain));
    vars.set("backup_gzip", kind == Some(BackupKind::Gzip));
    vars.set(
        "restore_archive",
        kind == Some(BackupKind::Archive) || mode == Some(db_move::Mode::File),
    );
    // A plain dump creates its schemas itself.
    if matches!(kind, Some(BackupKind::Plain | BackupKind::Gzip)) {
        vars.set("has_extra_schemas", false);
    }
    facts.link_bps = link;
    ctx.facts = facts;

    if report.failed.is_empty() {
        check_lock(ctx, &s, &mut report).await?;
    }
    // A rehearsal measures, without harm, what it must not do itself.
    if report.failed.is_empty() && ctx.opts.mode == "rehearse" {
        let db_move = if from_backup {
            "from a backup"
        } else {
            choice.mode.name()
        };
        super::forecast::forecast(ctx, io, db_move).await;
    }
    if report.failed.is_empty()
        && let Some(run) = report.drop_target.take()
        && let Some(hosts) = ctx.hosts.as_ref()
    {
        drop_leftover(&hosts.target, &s, &run, &mut report).await?;
    }
    if report.failed.is_empty() {
        Ok(Done::Completed)
    } else {
        Err(StepFailure::new(format!(
            "{} preflight check{} failed; nothing was changed:\n{}",
            report.failed.len(),
            if report.failed.len() == 1 { "" } else { "s" },
            report.failed.join("\n")
        )))
    }
}

/// A `check` only says whether another run holds the lock; a `run` takes it,
/// once everything else has passed (a refused run holds nothing).
async fn check_lock(ctx: &mut RunCtx, s: &Settings, r: &mut Report<'_>) -> Result<(), StepFailure> {
    let Some(hosts) = ctx.hosts.as_ref() else {
        return Ok(());
    };
    let src = &hosts.source;
    let dir = &s.work_dir;
    if ctx.opts.mode == "check" {
        match super::lock::holder(src, dir, &s.user).await? {
            None => r.note(src.name(), "lock", Pass, "no other run holds this instance"),
            Some(h) => r.note(
                src.name(),
                "lock",
                Warn,
                format!("{dir}/hikkoshi.lock is held by {}; a run will refuse to start unless given --break-lock", h.describe()),
            ),
        }
        return Ok(());
    }
    match super::lock::take(src, dir, &s.user, &ctx.opts.run_id, ctx.opts.break_lock).await {
        Ok(broken) => {
            if let Some(h) = broken {
                r.note(
                    src.name(),
                    "lock",
                    Warn,
                    format!("cleared the lock of {} (--break-lock)", h.describe()),
                );
            }
            r.note(
                src.name(),
                "lock",
                Pass,
                format!("{dir}/hikkoshi.lock taken for this run"),
            );
            ctx.lock = Some((dir.clone(), s.user.clone()));
        }
        Err(f) => r.note(src.name(), "lock", Fail, f.message),
    }
    Ok(())
}

async fn check_tools(
    src: &Host,
    dst: &Host,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let mut src_tools = database::DUMP_TOOLS.to_vec();
    src_tools.extend(["sha256sum", "cat", "df", "du"]);
    let mut dst_tools = database::RESTORE_TOOLS.to_vec();
    dst_tools.extend(["sha256sum", "curl", "df"]);
    if s.has_rsync {
        src_tools.extend(["rsync", "ssh", "ssh-keygen"]);
        dst_tools.extend(["rsync", "ssh-keyscan"]);
    }
    if s.has_redis {
        src_tools.push(cache::TOOL);
        dst_tools.push(cache::TOOL);
    }
    for (h, tools) in [(src, src_tools), (dst, dst_tools)] {
        let mut cmd = RemoteCommand::script(
            RunAs::Login,
            "for t do command -v \"$t\" >/dev/null 2>&1 || printf '%s\\n' \"$t\"; done",
            &tools,
        );
        cmd.run_as = RunAs::Root;
        let out = h.run_quiet(&cmd).await?;
        let missing: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
        if missing.is_empty() && out.success() {
            r.note(h.name(), "tools", Pass, tools.join(", "));
        } else {
            r.note(
                h.name(),
                "tools",
                Fail,
                format!("missing: {} (install them, e.g. apt-get install postgresql-client rsync redis-tools curl)", missing.join(", ")),
            );
        }
    }
    Ok(())
}

async fn check_app_user(
    src: &Host,
    dst: &Host,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(String, String), StepFailure> {
    let mut homes = Vec::new();
    for h in [src, dst] {
        let out = h
            .run_quiet(&RemoteCommand::new(
                RunAs::Login,
                ["getent", "passwd", s.user.as_str()],
            ))
            .await?;
        let home = out
            .stdout
            .trim()
            .split(':')
            .nth(5)
            .unwrap_or("")
            .to_string();
        if out.success() && !home.is_empty() {
            r.note(
                h.name(),
                "app user",
                Pass,
                format!("'{}' (home {home})", s.user),
            );
        } else {
            r.note(
                h.name(),
                "app user",
                Fail,
                format!(
                    "no unix user '{}'; create it as in the app's install guide",
                    s.user
                ),
            );
        }
        homes.push(home);
    }
    let target = homes.pop().unwrap_or_default();
    let source = homes.pop().unwrap_or_default();
    Ok((source, target))
}

async fn tool_major(h: &Host, tool: Tool) -> Option<u32> {
    h.run_quiet(&tool.version())
        .await
        .ok()
        .and_then(|f| database::major_from_version(&f.stdout))
}

async fn check_postgres_versions(
    src: &Host,
    dst: &Host,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let admin = RunAs::User(s.db_admin.clone());
    let mut servers = Vec::new();
    for h in [src, dst] {
        match query(h, &admin, "postgres", "SHOW server_version_num", &[]).await {
            Ok(lines) => {
                let major = lines
                    .first()
                    .and_then(|l| l.trim().parse::<u32>().ok())
                    .map(|n| n / 10000);
                servers.push(major);
            }
            Err(e) => {
                r.note(
                    h.name(),
                    "postgresql",
                    Fail,
                    format!("cannot query the server as '{}': {e}", s.db_admin),
                );
                servers.push(None);
            }
        }
    }
    let dump = tool_major(src, Tool::Dump).await;
    let restore = tool_major(dst, Tool::Restore).await;
    let (Some(from), Some(to)) = (servers[0], servers[1]) else {
        return Ok(());
    };
    let mut problems = Vec::new();
    if to < from {
        problems.push(format!("the target runs PostgreSQL {to}, older than the source's {from}; install {from} or newer on the target"));
    }
    match dump {
        Some(d) if d < from => problems.push(format!("pg_dump {d} on the source cannot dump a PostgreSQL {from} server (\"server version mismatch\"); install postgresql-client-{from}")),
        Some(d) if d > to => problems.push(format!("pg_dump {d} on the source writes SQL that PostgreSQL {to} on the target may reject (e.g. SET transaction_timeout from 17 on); use pg_dump {to}")),
        Some(_) => {}
        None => problems.push("cannot tell pg_dump's version on the source".into()),
    }
    match (restore, dump) {
        (Some(rv), Some(d)) if rv < d => problems.push(format!("pg_restore {rv} on the target cannot read an archive from pg_dump {d} (\"unsupported version in file header\"); install postgresql-client-{d} on the target")),
        (None, _) => problems.push("cannot tell pg_restore's version on the target".into()),
        _ => {}
    }
    if problems.is_empty() {
        r.note(
            dst.name(),
            "postgresql versions",
            Pass,
            format!(
                "server {from} -> {to}, pg_dump {}, pg_restore {}",
                dump.unwrap_or(0),
                restore.unwrap_or(0)
            ),
        );
    } else {
        for p in problems {
            r.note(dst.name(), "postgresql versions", Fail, p);
        }
    }
    Ok(())
}

fn json_rows(lines: &[String]) -> Vec<Vec<Json>> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Vec<Json>>(l).ok())
        .collect()
}

fn as_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const SCHEMAS_SQL: &str = r"
SELECT json_build_array(n.nspname)
FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
  AND (n.nspname = 'public'
       OR EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid)
       OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = n.oid))
ORDER BY n.nspname = 'public' DESC, n.nspname;
";

async fn check_source_database(
    src: &Host,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(Vec<String>, u64, Vec<String>), StepFailure> {
    let admin = RunAs::User(s.db_admin.clone());
    let size = match query(
        src,
        &admin,
        &s.database,
        "SELECT pg_database_size(current_database())",
        &[],
    )
    .await
    {
        Ok(l) => l
            .first()
            .and_then(|x| x.trim().parse::<u64>().ok())
            .unwrap_or(0),
        Err(e) => {
            r.note(
                src.name(),
                "source database",
                Fail,
                format!("cannot open database '{}': {e}", s.database),
            );
            return Ok((vec!["public".into()], 0, Vec::new()));
        }
    };
    let schemas: Vec<String> = json_rows(&query(src, &admin, &s.database, SCHEMAS_SQL, &[]).await?)
        .iter()
        .filter_map(|row| row.first().map(as_text))
        .collect();
    r.note(
        src.name(),
        "source database",
        Pass,
        format!("'{}', {}", s.database, human_bytes(size)),
    );
    let others: Vec<&String> = schemas.iter().filter(|n| *n != "public").collect();
    if !others.is_empty() {
        r.note(
            src.name(),
            "schemas",
            Warn,
            format!(
                "data outside 'public' in schema{} {}: restored too (the guide's plain '-n public' would silently drop {})",
                if others.len() == 1 { "" } else { "s" },
                others.iter().map(|o| format!("'{o}'")).collect::<Vec<_>>().join(", "),
                if others.len() == 1 { "it" } else { "them" },
            ),
        );
    }
    let exts: Vec<String> = json_rows(
        &query(
            src,
            &admin,
            &s.database,
            "SELECT json_build_array(extname) FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname",
            &[],
        )
        .await?,
    )
    .iter()
    .filter_map(|r| r.first().map(as_text))
    .collect();
    let unreadable: Vec<String> = json_rows(
        &query(
            src,
            &admin,
            &s.database,
            UNREADABLE_SQL,
            &[("role", &s.db_user)],
        )
        .await?,
    )
    .iter()
    .filter_map(|r| r.first().map(as_text))
    .collect();
    if !unreadable.is_empty() {
        r.note(
            src.name(),
            "dump privileges",
            Fail,
            format!(
                "role '{}' cannot read {}{}: pg_dump as '{}' would stop with permission denied during the downtime. Grant it (GRANT USAGE ON SCHEMA ...; GRANT SELECT ON ... TO {}) or make '{}' the owner",
                s.db_user,
                unreadable.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", "),
                if unreadable.len() >= 20 { " and more" } else { "" },
                s.db_user,
                s.db_user,
                s.db_user
            ),
        );
    }
    Ok((schemas, size, exts))
}

const TARGET_DB_SQL: &str = r"
SELECT json_build_array(pg_get_userbyid(datdba), shobj_description(oid, 'pg_database'))
FROM pg_database WHERE datname = :'db';
";

const ROLE_SQL: &str = r"
SELECT json_build_array(rolcanlogin, rolcreatedb OR rolsuper) FROM pg_roles WHERE rolname = :'role';
";

/// Objects that make a database "not empty"; an extension's own tables and
/// views do not count, so a database prepared with its extensions still qualifies.
const OBJECTS_SQL: &str = r"
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e');
";

/// What the app's role could not read, so pg_dump as that role would fail.
const UNREADABLE_SQL: &str = r"
SELECT json_build_array(n.nspname || '.' || c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S', 'm', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  AND (NOT has_schema_privilege(:'role', n.oid, 'USAGE') OR NOT has_table_privilege(:'role', c.oid, 'SELECT'))
ORDER BY n.nspname, c.relname
LIMIT 20;
";

/// What the restore step writes on a database it creates (as the database's
/// comment, with the run id after it): the only thing that lets hikkoshi drop
/// a database, never its name alone.
pub const MARKER: &str = "hikkoshi:";

/// A target database created by a hikkoshi run. To be dropped (true) when it
/// is this run's own unverified restore being resumed, or when the admin
/// passed --reset-target; kept when this run already verified it.
fn leftover(dst: &Host, s: &Settings, run: &str, r: &mut Report<'_>) -> bool {
    let ours = run == s.run_id;
    if ours && s.resumed_verified {
        r.note(
            dst.name(),
            "target database",
            Pass,
            format!(
                "'{}' was restored and verified by this run's earlier attempt; it is kept",
                s.database
            ),
        );
        return false;
    }
    if !(ours || s.reset_target) || s.mode == "check" {
        r.note(
            dst.name(),
            "target database",
            Fail,
            format!(
                "'{}' was created by hikkoshi run '{run}' and is left from that attempt (a partial or earlier restore). To drop it and restore again, run with --reset-target (it drops only a database carrying that run's marker)",
                s.database
            ),
        );
        return false;
    }
    true
}

/// Drops the target database a hikkoshi run left, once every check passed.
async fn drop_leftover(
    dst: &Host,
    s: &Settings,
    run: &str,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let admin = RunAs::User(s.db_admin.clone());
    query(
        dst,
        &admin,
        "postgres",
        "DROP DATABASE :\"db\" WITH (FORCE);",
        &[("db", &s.database)],
    )
    .await?;
    r.note(
        dst.name(),
        "target database",
        Warn,
        format!(
            "dropped '{}', left by hikkoshi run '{run}' ({}); the restore creates it afresh",
            s.database,
            if run == s.run_id {
                "this run's unfinished restore, resumed"
            } else {
                "--reset-target"
            }
        ),
    );
    Ok(())
}

/// Returns whether the target database exists (empty, owned by the app's role).
async fn check_target_database(
    dst: &Host,
    s: &Settings,
    exts: &[String],
    r: &mut Report<'_>,
) -> Result<bool, StepFailure> {
    let admin = RunAs::User(s.db_admin.clone());
    let role = json_rows(&query(dst, &admin, "postgres", ROLE_SQL, &[("role", &s.db_user)]).await?);
    let can_create = match role.first() {
        None => {
            r.note(
                dst.name(),
                "role",
                Fail,
                format!("role '{}' does not exist on the target; create it: sudo -u {} createuser --createdb {}", s.db_user, s.db_admin, s.db_user),
            );
            false
        }
        Some(row) => {
            let login = row.first().and_then(Json::as_bool).unwrap_or(false);
            if !login {
                r.note(
                    dst.name(),
                    "role",
                    Fail,
                    format!(
                        "role '{}' cannot log in; ALTER ROLE {} LOGIN",
                        s.db_user, s.db_user
                    ),
                );
            } else {
                r.note(dst.name(), "role", Pass, format!("'{}' exists", s.db_user));
            }
            row.get(1).and_then(Json::as_bool).unwrap_or(false)
        }
    };
    let db = json_rows(
        &query(
            dst,
            &admin,
            "postgres",
            TARGET_DB_SQL,
            &[("db", &s.database)],
        )
        .await?,
    );
    let marker = db
        .first()
        .and_then(|row| row.get(1))
        .map(as_text)
        .and_then(|c| c.strip_prefix(MARKER).map(str::to_string));
    if let Some(run) = marker {
        if leftover(dst, s, &run, r) {
            // Dropped at the end of preflight, then created afresh by the restore.
            r.drop_target = Some(run);
            return Ok(false);
        }
        return Ok(true);
    }
    let Some(owner) = db.first().and_then(|row| row.first()).map(as_text) else {
        if can_create || role.is_empty() {
            r.note(
                dst.name(),
                "target database",
                Pass,
                format!(
                    "'{}' does not exist yet; it will be created by '{}'",
                    s.database, s.db_user
                ),
            );
        } else {
            r.note(
                dst.name(),
                "target database",
                Fail,
                format!("'{}' does not exist and role '{}' may not create databases: ALTER ROLE {} CREATEDB, or create it: createdb -T template0 -O {} {}", s.database, s.db_user, s.db_user, s.db_user, s.database),
            );
        }
        if !exts.is_empty() {
            r.note(dst.name(), "extensions", Fail, extensions_advice(s, exts));
        }
        return Ok(false);
    };
    if !exts.is_empty() {
        let present: Vec<String> = json_rows(
            &query(
                dst,
                &admin,
                &s.database,
                "SELECT json_build_array(extname) FROM pg_extension ORDER BY extname",
                &[],
            )
            .await?,
        )
        .iter()
        .filter_map(|r| r.first().map(as_text))
        .collect();
        let missing: Vec<String> = exts
            .iter()
            .filter(|e| !present.contains(e))
            .cloned()
            .collect();
        if missing.is_empty() {
            r.note(
                dst.name(),
                "extensions",
                Pass,
                format!("{} present in '{}'", exts.join(", "), s.database),
            );
        } else {
            r.note(
                dst.name(),
                "extensions",
                Fail,
                extensions_advice(s, &missing),
            );
        }
    }
    let objects = query(dst, &admin, &s.database, OBJECTS_SQL, &[]).await?;
    let n: u64 = objects
        .first()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    if n > 0 {
        r.note(
            dst.name(),
            "target database",
            Fail,
            format!(
                "'{}' already exists and holds {n} tables, views or sequences; hikkoshi never restores over existing data. If it is a leftover of an earlier attempt, drop it (sudo -u {} dropdb {}) and run again",
                s.database, s.db_admin, s.database
            ),
        );
    } else if owner != s.db_user {
        r.note(
            dst.name(),
            "target database",
            Fail,
            format!(
                "'{}' exists, empty, but is owned by '{owner}', so a restore as '{}' would fail with permission denied; ALTER DATABASE {} OWNER TO {} or drop it",
                s.database, s.db_user, s.database, s.db_user
            ),
        );
    } else {
        r.note(
            dst.name(),
            "target database",
            Pass,
            format!(
                "'{}' exists, is empty and owned by '{}'",
                s.database, s.db_user
            ),
        );
    }
    Ok(true)
}

/// pg_restore -n leaves extensions out, and the app's role usually may not
/// create them: a superuser prepares the database once.
fn extensions_advice(s: &Settings, missing: &[String]) -> String {
    format!(
        "the source database uses extension{} {}, which the restore (as '{}', schema by schema) does not create. Prepare the target database first: sudo -u {} createdb -T template0 -O {} {} && sudo -u {} psql -d {} -c 'CREATE EXTENSION {}', then run again",
        if missing.len() == 1 { "" } else { "s" },
        missing
            .iter()
            .map(|e| format!("'{e}'"))
            .collect::<Vec<_>>()
            .join(", "),
        s.db_user,
        s.db_admin,
        s.db_user,
        s.database,
        s.db_admin,
        s.database,
        missing.join("; CREATE EXTENSION ")
    )
}

async fn check_app_dirs(
    src: &Host,
    dst: &Host,
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
        } else if h.role == Role::Target {
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

async fn read_env(
    src: &Host,
    dst: &Host,
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
async fn read_app_file(
    src: &Host,
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
async fn note_replaced(
    dst: &Host,
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
async fn read_misskey(
    src: &Host,
    dst: &Host,
    s: &mut Settings,
    file: &str,
    (configured, redactor, vars): (
        &[String],
        &crate::redact::Redactor,
        &mut crate::profile::template::Vars,
    ),
    r: &mut Report<'_>,
) -> Result<Option<super::misskey::MisskeyConfig>, StepFailure> {
    use super::misskey::{MisskeyConfig, Search, is_local};
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
    match &cfg.search {
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
            let admin = RunAs::User(s.db_admin.clone());
            let have = query(
                dst,
                &admin,
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
    note_replaced(dst, s, file, "config file", r).await?;
    Ok(Some(cfg))
}

/// Config and secret files the profile copies: readable on the source (their
/// contents are never read here).
async fn check_files(
    src: &Host,
    dst: &Host,
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
async fn object_storage_in_db(
    src: &Host,
    s: &Settings,
    sql: &str,
    r: &mut Report<'_>,
) -> Result<Option<String>, StepFailure> {
    match query(src, &RunAs::User(s.user.clone()), &s.database, sql, &[]).await {
        Ok(rows) => Ok(
            matches!(rows.first().map(String::as_str), Some("t" | "true"))
                .then(|| "the database says so".to_string()),
        ),
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
pub fn parse_version(file: &str, text: &str) -> Option<String> {
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
pub fn parse_version_rb(text: &str) -> Option<String> {
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

async fn check_app_versions(
    src: &Host,
    dst: &Host,
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

async fn check_units(
    src: &Host,
    dst: &Host,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let mut units = s.services.clone();
    if s.has_redis
        && let Some(rs) = &s.redis_service
    {
        units.push(rs.clone());
    }
    for h in [src, dst] {
        let mut missing = Vec::new();
        let mut masked = Vec::new();
        for u in &units {
            let out = h.run_quiet(&services::load_state(u)).await?;
            match out.stdout.trim() {
                "loaded" => {}
                // A rehearsal masks what must never run on a copy; the real
                // run unmasks it on the target as it starts the services.
                "masked" if std::ptr::eq(h, dst) => masked.push(u.clone()),
                _ => missing.push(u.clone()),
            }
        }
        if !masked.is_empty() {
            r.note(
                h.name(),
                "units",
                Warn,
                format!("{} masked (a rehearsal's quarantine?); a run unmasks it when it starts the services there", masked.join(", ")),
            );
        }
        if missing.is_empty() {
            r.note(h.name(), "units", Pass, units.join(", "));
        } else {
            r.note(h.name(), "units", Fail, format!("systemd does not know {}: install the unit files as in the app's install guide", missing.join(", ")));
        }
    }
    let mut inactive = Vec::new();
    for u in &s.services {
        let out = src.run_quiet(&services::verb("is-active", u)).await?;
        if out.stdout.trim() != "active" {
            inactive.push(u.clone());
        }
    }
    if !inactive.is_empty() {
        r.note(
            src.name(),
            "services",
            Warn,
            format!("not running on the source now: {}", inactive.join(", ")),
        );
    }
    Ok(())
}

async fn redis_cli(h: &Host, port: &str, args: &[&str]) -> Result<(bool, String), StepFailure> {
    let out = h.run_quiet(&cache::cli(port, args)).await?;
    Ok((out.success(), out.stdout.trim().to_string()))
}

async fn check_redis(
    src: &Host,
    dst: &Host,
    port: &str,
    r: &mut Report<'_>,
) -> Result<(Option<String>, Option<String>), StepFailure> {
    let mut rdbs = Vec::new();
    let mut versions = Vec::new();
    for h in [src, dst] {
        let (ok, pong) = redis_cli(h, port, &["PING"]).await?;
        if !ok || pong != "PONG" {
            let why = if pong.contains("NOAUTH") {
                "Redis requires a password, which hikkoshi does not support yet".to_string()
            } else {
                format!("redis-cli -p {port} PING answered '{pong}'; is Redis running?")
            };
            r.note(h.name(), "redis", Fail, why);
            rdbs.push(None);
            versions.push(None);
            continue;
        }
        let (_, dir) = redis_cli(h, port, &["CONFIG", "GET", "dir"]).await?;
        let (_, file) = redis_cli(h, port, &["CONFIG", "GET", "dbfilename"]).await?;
        let (_, aof) = redis_cli(h, port, &["CONFIG", "GET", "appendonly"]).await?;
        let (_, info) = redis_cli(h, port, &["INFO", "server"]).await?;
        let second = |s: &str| s.lines().nth(1).map(str::trim).unwrap_or("").to_string();
        let (dir, file, aof) = (second(&dir), second(&file), second(&aof));
        let version = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("redis_version:"))
            .map(str::to_string);
        if aof == "yes" && h.role == Role::Target {
            r.note(h.name(), "redis", Fail, "appendonly is on: Redis would ignore the copied dump.rdb and start empty; set 'appendonly no' on the new host for the move");
        } else {
            r.note(
                h.name(),
                "redis",
                Pass,
                format!(
                    "{}, data in {dir}/{file}",
                    version.clone().unwrap_or_default()
                ),
            );
        }
        rdbs.push((!dir.is_empty() && !file.is_empty()).then(|| format!("{dir}/{file}")));
        versions.push(version);
    }
    if let (Some(Some(a)), Some(Some(b))) = (versions.first(), versions.get(1)) {
        let key = |v: &str| {
            v.split('.')
                .map(|p| p.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        };
        if key(b) < key(a) {
            r.note(dst.name(), "redis", Fail, format!("the target's Redis {b} is older than the source's {a} and may not load its dump.rdb; install {a} or newer"));
        }
    }
    let target = rdbs.pop().flatten();
    let source = rdbs.pop().flatten();
    Ok((source, target))
}

async fn check_media(
    src: &Host,
    dst: &Host,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<u64, StepFailure> {
    let mut total = 0;
    for m in &s.media {
        let out = src
            .run_quiet(&RemoteCommand::script(
                RunAs::User(s.user.clone()),
                "[ -d \"$1\" ] || exit 3; du -sb -- \"$1\"",
                &[m],
            ))
            .await?;
        match out.exit_code {
            Some(0) => {
                let bytes: u64 = out
                    .stdout
                    .split_whitespace()
                    .next()
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0);
                total += bytes;
                r.note(
                    src.name(),
                    "media",
                    Pass,
                    format!("'{m}': {}", human_bytes(bytes)),
                );
            }
            Some(3) => r.note(
                src.name(),
                "media",
                Warn,
                format!("'{m}' does not exist: nothing to copy"),
            ),
            _ => r.note(
                src.name(),
                "media",
                Fail,
                format!(
                    "cannot read '{m}' as '{}': {}",
                    s.user,
                    out.stderr_tail.join(" ")
                ),
            ),
        }
        let out = dst
            .run_quiet(&RemoteCommand::script(
                RunAs::User(s.user.clone()),
                "[ -d \"$1\" ] || exit 0; find \"$1\" -type f | head -n 1000 | wc -l",
                &[m],
            ))
            .await?;
        let n: u64 = out.stdout.trim().parse().unwrap_or(0);
        if n > 0 {
            r.note(
                dst.name(),
                "media",
                Warn,
                format!("'{m}' on the target already holds files; it becomes an exact copy of the source's (files only on the target are removed)"),
            );
        }
    }
    Ok(total)
}

/// A dump leaves out indexes; compressed, half the database's size is a safe
/// ceiling for real instances, and uncompressed about two thirds.
fn dump_size_estimate(db_size: u64, compress: u8) -> u64 {
    if compress == 0 {
        db_size / 3 * 2
    } else {
        db_size / 2
    }
}

/// Measures what the choice of the database move depends on, makes it and
/// says why.
async fn choose_db_move(
    src: &Host,
    dst: &Host,
    s: &Settings,
    (asked, forced): (DbMove, Option<u8>),
    db_size: u64,
    from_backup: bool,
    r: &mut Report<'_>,
) -> Result<(db_move::Choice, Option<f64>), StepFailure> {
    let (a, b) = tokio::join!(db_move::cores(src), db_move::cores(dst));
    let (source_cores, target_cores) = (a?, b?);
    let link = db_move::measure_link(src, dst).await;
    let user = RunAs::User(s.user.clone());
    let need = dump_size_estimate(db_size, db_move::compression_for(link));
    let (a, b) = tokio::join!(
        free_space(src, user.clone(), &s.work_dir),
        free_space(dst, user, &s.work_dir)
    );
    let room = |f: Result<Option<(u64, String)>, StepFailure>| matches!(f, Ok(Some((avail, _))) if avail > need + need / 10);
    let room_for_dump = room(a) && room(b);
    let mut choice = db_move::decide(&db_move::Measured {
        asked,
        db_size,
        source_cores,
        target_cores,
        link,
        room_for_dump,
    });
    let link_words = link.map_or_else(
        || "the link could not be measured".to_string(),
        |bps| format!("link {}/s", human_bytes(bps as u64)),
    );
    let mut compression = match choice.compress {
        0 => "no compression".to_string(),
        z => format!("compression level {z}"),
    };
    if let Some(z) = forced {
        choice.compress = z;
        compression = format!("compression level {z}, as the config says");
    }
    let how = if from_backup {
        format!(
            "the backup is moved as a file, pg_restore -j {}",
            choice.restore_jobs
        )
    } else {
        match choice.mode {
            db_move::Mode::File => format!(
                "file: pg_dump -Fc -Z {}, moved with sha256 checks, pg_restore -j {}",
                choice.compress, choice.restore_jobs
            ),
            db_move::Mode::Stream => format!(
                "stream: pg_dump -Fc -Z {} straight into pg_restore through this machine, no dump file",
                choice.compress
            ),
            db_move::Mode::Parallel => format!(
                "parallel: pg_dump -Fd -j {} -Z {}, the directory moved, pg_restore -j {}",
                choice.dump_jobs, choice.compress, choice.restore_jobs
            ),
        }
    };
    r.note(
        dst.name(),
        "database move",
        Pass,
        format!(
            "{how} ({}; {source_cores} and {target_cores} cores; {link_words}: {compression}; {})",
            human_bytes(db_size),
            choice.why
        ),
    );
    Ok((choice, link))
}

#[allow(clippy::too_many_arguments)]
async fn check_disk(
    src: &Host,
    dst: &Host,
    s: &Settings,
    db_size: u64,
    dump_estimate: u64,
    media_bytes: u64,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let user = RunAs::User(s.user.clone());
    if dump_estimate > 0
        && let Some((avail, mount)) = free_space(src, user.clone(), &s.work_dir).await?
    {
        let need = dump_estimate + dump_estimate / 10;
        if avail < need {
            r.note(
                src.name(),
                "disk",
                Fail,
                format!(
                    "{} free on {mount} for the dump in '{}', about {} needed",
                    human_bytes(avail),
                    s.work_dir,
                    human_bytes(need)
                ),
            );
        } else {
            r.note(
                src.name(),
                "disk",
                Pass,
                format!(
                    "{} free on {mount} for a dump of about {}",
                    human_bytes(avail),
                    human_bytes(dump_estimate)
                ),
            );
        }
    }
    let admin = RunAs::User(s.db_admin.clone());
    let data_dir = query(dst, &admin, "postgres", "SHOW data_directory", &[])
        .await?
        .first()
        .cloned()
        .unwrap_or_else(|| "/var/lib/postgresql".into());
    let mut needs: BTreeMap<String, (u64, u64, Vec<&str>)> = BTreeMap::new();
    for (path, bytes, what, run_as) in [
        (s.work_dir.as_str(), dump_estimate, "dump", user.clone()),
        (data_dir.as_str(), db_size, "database", admin.clone()),
        (s.dir.as_str(), media_bytes, "media", user.clone()),
    ] {
        if bytes == 0 && what == "dump" {
            continue;
        }
        if let Some((avail, mount)) = free_space(dst, run_as, path).await? {
            let e = needs.entry(mount).or_insert((avail, 0, Vec::new()));
            e.1 += bytes;
            e.2.push(what);
        }
    }
    for (mount, (avail, need, what)) in needs {
        let need = need + need / 10;
        if avail < need {
            r.note(
                dst.name(),
                "disk",
                Fail,
                format!(
                    "{} free on {mount}, about {} needed for {}",
                    human_bytes(avail),
                    human_bytes(need),
                    what.join(" + ")
                ),
            );
        } else {
            r.note(
                dst.name(),
                "disk",
                Pass,
                format!(
                    "{} free on {mount} for {} (about {})",
                    human_bytes(avail),
                    what.join(" + "),
                    human_bytes(need)
                ),
            );
        }
    }
    Ok(())
}

/// The record's TTL decides how long resolvers keep sending visitors to the old
/// host after the switch: the guide says to lower it a day before.
async fn check_dns_ttl(domain: &str, config: &crate::config::DnsConfig, r: &mut Report<'_>) {
    let servers = super::dns::servers(config);
    let Some(first) = servers.first() else {
        return;
    };
    let opts = crate::dns::Options::default();
    match crate::dns::authority(first.addr, domain, &config.expect, &opts).await {
        Err(e) => r.note("dns", "dns ttl", Warn, format!("cannot read {domain} from its nameservers: {e}")),
        Ok(a) => match a.ttl_s {
            Some(ttl) if ttl > 3600 => r.note(
                "dns",
                "dns ttl",
                Warn,
                format!(
                    "{domain} has a TTL of {}: resolvers may send visitors to the old host for that long after the switch. Lower it to 300-3600s at your DNS provider now and start the move after {} have passed",
                    crate::dns::human_secs(ttl),
                    crate::dns::human_secs(ttl)
                ),
            ),
            Some(ttl) => r.note(
                "dns",
                "dns ttl",
                Pass,
                format!("{domain} TTL {}: resolvers follow the switch within that", crate::dns::human_secs(ttl)),
            ),
            None => r.note("dns", "dns ttl", Warn, format!("the nameservers of {} give no address for {domain}", a.zone)),
        },
    }
}

/// The pinned health check runs during the downtime; a certificate the new
/// address does not serve correctly is better found the night before.
async fn check_pinned(url: &str, dns: &crate::config::DnsConfig, r: &mut Report<'_>) {
    use super::health;
    let (host, port) = match health::host_port(url) {
        Ok(hp) => hp,
        Err(e) => return r.note("this machine", "pinned health", Fail, e),
    };
    for addr in &dns.expect {
        let argv = health::pinned_argv(url, &host, port, *addr, dns.ca_file.as_deref());
        let name = addr.to_string();
        match health::curl_local(&argv).await {
            Err(f) => r.note("this machine", "pinned health", Fail, f.message),
            Ok(a) if a.answered => r.note(
                &name,
                "pinned health",
                Pass,
                format!(
                    "{host}:{port} answers with a certificate that verifies (HTTP {} now{})",
                    a.status.as_deref().unwrap_or("?"),
                    if a.ok { "" } else { "; the app starts there during the move" }
                ),
            ),
            Ok(a) if a.hopeless => r.note(
                &name,
                "pinned health",
                Fail,
                format!("{url} pinned to {addr}: {}. Fix it before the move, or remove [dns] from the config to switch DNS by hand and get the certificate afterwards", a.why),
            ),
            Ok(a) => r.note(
                &name,
                "pinned health",
                Warn,
                format!("{url} pinned to {addr}: {}. The run checks it again before DNS changes and stops if it still fails", a.why),
            ),
        }
    }
}

/// Where the relay connects, from `sshd -T`'s effective settings: a wildcard
/// listener is reached on the loopback, otherwise the first address sshd
/// listens on (IPv4 first); `None` when the output names no port.
pub fn relay_socket(sshd_t: &str) -> Option<(String, u16)> {
    let mut ports = Vec::new();
    let mut listen: Vec<(String, u16)> = Vec::new();
    for line in sshd_t.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("port"), Some(p)) => ports.extend(p.parse::<u16>().ok()),
            (Some("listenaddress"), Some(a)) => {
                // Only an address goes on: it ends up in the relay key's from="…".
                if let Some((host, port)) = a.rsplit_once(':')
                    && let Ok(port) = port.parse::<u16>()
                    && let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>()
                {
                    listen.push((ip.to_string(), port));
                }
            }
            _ => {}
        }
    }
    if listen.is_empty() {
        return ports.first().map(|p| ("127.0.0.1".to_string(), *p));
    }
    // The loopback first, IPv4 before IPv6.
    let v4 = |h: &str| match h {
        "0.0.0.0" => Some("127.0.0.1".to_string()),
        _ if h.starts_with("127.") => Some(h.to_string()),
        _ => None,
    };
    let v6 = |h: &str| (h == "::" || h == "::1").then(|| "::1".to_string());
    for loopback in [&v4 as &dyn Fn(&str) -> Option<String>, &v6] {
        if let Some(found) = listen.iter().find_map(|(h, p)| Some((loopback(h)?, *p))) {
            return Some(found);
        }
    }
    listen
        .iter()
        .find(|(h, _)| !h.contains(':'))
        .or_else(|| listen.first())
        .cloned()
}

/// The media relay reaches the target's sshd where it really listens, found
/// in its effective configuration; its host keys are read there, over the
/// already verified connection, and trusted for the relay.
async fn check_relay(
    dst: &Host,
    r: &mut Report<'_>,
) -> Result<(Vec<String>, Option<(String, u16)>), StepFailure> {
    let config = dst
        .run_quiet(&RemoteCommand::script(
            RunAs::Root,
            "PATH=\"$PATH:/usr/sbin:/sbin\" exec sshd -T",
            &[],
        ))
        .await?;
    let Some((addr, port)) = config
        .success()
        .then(|| relay_socket(&config.stdout))
        .flatten()
    else {
        r.note(
            dst.name(),
            "media relay",
            Fail,
            format!(
                "cannot tell where the target's sshd listens ('sshd -T' as root: {}); the media copy connects to it from the target itself",
                config
                    .first_error
                    .clone()
                    .unwrap_or_else(|| "no port in its output".into())
            ),
        );
        return Ok((Vec::new(), None));
    };
    let port_arg = port.to_string();
    let out = dst
        .run_quiet(&RemoteCommand::new(
            RunAs::Login,
            [
                "ssh-keyscan",
                "-T",
                "5",
                "-p",
                port_arg.as_str(),
                addr.as_str(),
            ],
        ))
        .await?;
    let keys: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#') && l.split_whitespace().count() >= 3)
        .map(str::to_string)
        .collect();
    let at = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    if keys.is_empty() {
        r.note(
            dst.name(),
            "media relay",
            Fail,
            format!("sshd's configuration says it listens on {at}, but nothing answers there from the target itself; the media copy connects there through this machine"),
        );
    } else {
        r.note(
            dst.name(),
            "media relay",
            Pass,
            format!("sshd answers on {at} (from its configuration)"),
        );
    }
    Ok((keys, Some((addr, port))))
}

pub fn create_schemas_sql(schemas: &[&String]) -> String {
    schemas
        .iter()
        .map(|s| format!("CREATE SCHEMA IF NOT EXISTS {};", quote_ident(s)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sshd -T` on a stock host, a hardened port, an address-only listener,
    /// and IPv6: where the media relay connects from the target itself.
    #[rstest::rstest]
    #[case::stock("port 22\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\n", Some(("127.0.0.1", 22)))]
    #[case::hardened_port("port 2222\nlistenaddress [::]:2222\nlistenaddress 0.0.0.0:2222\n", Some(("127.0.0.1", 2222)))]
    #[case::public_address_only("port 22\nlistenaddress 203.0.113.7:22\n", Some(("203.0.113.7", 22)))]
    #[case::ipv6_address_only("port 22\nlistenaddress [2001:db8::7]:22\n", Some(("2001:db8::7", 22)))]
    #[case::v6_wildcard_only("port 22\nlistenaddress [::]:22\n", Some(("::1", 22)))]
    #[case::loopback_and_public("port 22\nlistenaddress 203.0.113.7:22\nlistenaddress 127.0.0.1:2200\n", Some(("127.0.0.1", 2200)))]
    #[case::no_listen_lines("port 2022\n", Some(("127.0.0.1", 2022)))]
    #[case::nothing("usepam yes\n", None)]
    #[case::not_an_address_is_left_out("port 22\nlistenaddress ho\"st:22\nlistenaddress 203.0.113.7:22\n", Some(("203.0.113.7", 22)))]
    fn the_relay_connects_where_sshd_really_listens(
        #[case] sshd_t: &str,
        #[case] want: Option<(&str, u16)>,
    ) {
        assert_eq!(relay_socket(sshd_t), want.map(|(h, p)| (h.to_string(), p)));
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

    #[test]
    fn pg_tool_versions() {
        assert_eq!(
            database::major_from_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(
            database::major_from_version("pg_restore (PostgreSQL) 17.2"),
            Some(17)
        );
    }

    #[test]
    fn schema_creation_quotes_identifiers() {
        let names = ["pghero".to_string(), "we\"ird; DROP".to_string()];
        let refs: Vec<&String> = names.iter().collect();
        assert_eq!(
            create_schemas_sql(&refs),
            "CREATE SCHEMA IF NOT EXISTS \"pghero\"; CREATE SCHEMA IF NOT EXISTS \"we\"\"ird; DROP\";"
        );
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
