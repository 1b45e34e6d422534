//! Preflight: everything that would break the move, found while the instance is
//! still up and nothing has changed, one file per concern. It reads, with two
//! exceptions made once every check has passed: it takes the run's lock on the
//! old host (`lock`), and with --reset-target it drops a target database that
//! carries an earlier hikkoshi run's marker (`postgres::drop_leftover`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::db_move;
use super::facts::Facts;
use super::{Done, StepFailure, StepResult};
use crate::config::{DbMove, Install};
use crate::events::CheckStatus::{self, Fail, Pass, Warn};
use crate::profile::template::{TemplateError, Value};
use crate::profile::{PreflightBody, StepKind};
use crate::remote::{Host, RemoteCommand, Role, RunAs, Shell};
use crate::runtime::Runtime;
use crate::steps::ctx::{Hosts, RunCtx, StepIo};
use crate::steps::misskey::MisskeyConfig;

mod app_files;
mod backup;
mod capacity;
mod cutover;
#[cfg(test)]
mod fake;
mod hosts;
mod lock;
mod move_choice;
mod postgres;
mod redis;
mod relay;
mod services;
mod stack;

use stack::{Stack, check_stack};

pub use app_files::parse_env;
use app_files::{
    check_app_dirs, check_app_versions, check_files, object_storage_in_db, read_env, read_misskey,
};
use backup::{BackupKind, check_backup};
use capacity::{check_disk, check_media, dump_size_estimate};
use cutover::{check_dns_ttl, check_pinned};
use hosts::{check_app_user, check_tools};
use lock::check_lock;
use move_choice::choose_db_move;
use postgres::{
    check_postgres_versions, check_source_database, check_target_database, create_schemas_sql,
    drop_leftover,
};
use redis::check_redis;
use relay::check_relay;
use services::check_units;

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
#[derive(Default)]
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
    mode: crate::events::RunMode,
    reset_target: bool,
    /// Resuming, and the earlier attempt verified the restored database.
    resumed_verified: bool,
    /// Each host's install (source, target), and the compose stack found
    /// on a compose host.
    installs: [Install; 2],
    stacks: [Option<Stack>; 2],
}

fn at(role: Role) -> usize {
    match role {
        Role::Source => 0,
        Role::Target => 1,
    }
}

impl Settings {
    /// How the host in `role` runs the move's tools.
    fn rt(&self, role: Role) -> Runtime {
        match &self.stacks[at(role)] {
            Some(stack) => Runtime::compose(&stack.project, &stack.roles, &stack.restart()),
            None => Runtime::systemd(&self.db_admin, &self.user),
        }
    }

    fn is_compose(&self, role: Role) -> bool {
        matches!(self.installs[at(role)], Install::Compose(_))
    }

    /// A compose host whose database service does not run yet (a new host
    /// whose stack comes with the move): its database is checked when it
    /// starts, not now.
    fn database_later(&self, role: Role) -> bool {
        self.service_later(role, "database")
    }

    /// A compose host whose service for `service_role` does not run yet.
    fn service_later(&self, role: Role, service_role: &str) -> bool {
        self.is_compose(role)
            && !self.stacks[at(role)].as_ref().is_some_and(|st| {
                st.service(service_role).is_some_and(|name| {
                    st.containers.iter().any(|c| c.service == name && c.running)
                })
            })
    }
}

pub async fn run(step: &PreflightBody, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let mut s = settings(step, ctx)?;
    let mut report = Report {
        io,
        failed: Vec::new(),
        drop_target: None,
    };
    // ssh first: every other check needs both hosts.
    connect(ctx, &mut report).await?;
    check_stacks(ctx, &mut s, &mut report).await?;
    let app = check_app(ctx, &mut s, &mut report).await?;
    let data = check_data(step, ctx, &s, &app, &mut report).await?;
    publish(ctx, &s, app, &data);
    finish(ctx, io, &s, &data, report).await
}

fn settings(step: &PreflightBody, ctx: &RunCtx) -> Result<Settings, TemplateError> {
    let v = &ctx.vars;
    Ok(Settings {
        user: v.text("user")?,
        dir: v.text("dir")?,
        database: v.text("database")?,
        db_user: v.text("db_user")?,
        db_admin: text_or(v, "db_admin", "postgres"),
        domain: v.text("domain")?,
        services: match v.get("services")? {
            Value::List(l) => l,
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
        mode: ctx.opts.mode,
        reset_target: ctx.opts.reset_target,
        resumed_verified: ctx
            .plan
            .steps
            .iter()
            .any(|st| st.kind() == StepKind::Verify && ctx.opts.resume_done.contains(&st.id)),
        installs: [
            ctx.plan.source_install.clone(),
            ctx.plan.target_install.clone(),
        ],
        stacks: [None, None],
    })
}

/// The compose stack of each compose host, the source's first: a new host
/// takes its project name.
async fn check_stacks(
    ctx: &RunCtx,
    s: &mut Settings,
    report: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let hosts = ctx.shared_hosts()?;
    for (h, source) in [(&hosts.source, true), (&hosts.target, false)] {
        let Install::Compose(cfg) = ctx.plan.install(source).clone() else {
            continue;
        };
        let source_project = s.stacks[0].as_ref().map(|st| st.project.name.clone());
        let found = check_stack(
            h,
            &cfg,
            ctx.plan.service_roles(source),
            source_project.as_deref(),
            report,
        )
        .await?;
        s.stacks[at(h.role())] = found;
    }
    if s.is_compose(Role::Source) && s.stacks[0].is_none()
        || s.is_compose(Role::Target) && s.stacks[1].is_none()
    {
        // Without its stack nothing else on that host can be asked.
        return Err(StepFailure::new(format!(
            "{} preflight check{} failed; nothing was changed:\n{}",
            report.failed.len(),
            if report.failed.len() == 1 { "" } else { "s" },
            report.failed.join("\n")
        )));
    }
    Ok(())
}

/// Both hosts, each reported as a check, and whether a login that is not
/// root may use sudo.
async fn connect(ctx: &mut RunCtx, report: &mut Report<'_>) -> Result<(), StepFailure> {
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
                ctx.hosts = Some(Arc::new(Hosts { source, target }));
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
    let hosts = ctx.shared_hosts()?;
    for h in [&hosts.source, &hosts.target] {
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
    Ok(())
}

/// What the checks of the app found, for the checks of its data.
struct App {
    source_home: String,
    target_home: String,
    misskey: Option<MisskeyConfig>,
    schemas: Vec<String>,
    db_size: u64,
    target_db_exists: bool,
    env: BTreeMap<String, String>,
}

/// The tools, the app user, PostgreSQL and the databases, the app's files and
/// units: in this order, since the app's config may name the database.
async fn check_app(
    ctx: &mut RunCtx,
    s: &mut Settings,
    report: &mut Report<'_>,
) -> Result<App, StepFailure> {
    let hosts = ctx.shared_hosts()?;
    let (src, dst) = (&hosts.source, &hosts.target);
    check_tools(src, dst, s, report).await?;
    let (source_home, target_home) = check_app_user(src, dst, s, report).await?;
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
                s,
                &f,
                (&ctx.plan.configured, &ctx.redactor, &mut ctx.vars),
                report,
            )
            .await?
        }
        None => None,
    };
    check_postgres_versions(src, dst, s, report).await?;
    let (schemas, db_size, exts) = check_source_database(src, s, report).await?;
    let target_db_exists = if s.database_later(dst.role()) {
        report.note(
            dst.name(),
            "target database",
            Pass,
            format!(
                "'{}' will be created in the new stack's database service, owned by '{}'",
                s.database, s.db_user
            ),
        );
        false
    } else {
        check_target_database(dst, s, &exts, report).await?
    };
    check_app_dirs(src, dst, s, report).await?;
    let env = match &s.env_file {
        Some(f) => read_env(src, dst, s, f, ctx, report).await?,
        None => BTreeMap::new(),
    };
    if s.is_compose(Role::Source) || s.is_compose(Role::Target) {
        stack::check_images(&s.stacks, (src.name(), dst.name()), report);
        stack::check_new_stack(src, dst, &s.stacks, report).await?;
    } else if let Some(vf) = &s.version_file {
        check_app_versions(src, dst, s, vf, report).await?;
    }
    check_units(src, dst, s, report).await?;
    check_files(src, dst, s, report).await?;
    Ok(App {
        source_home,
        target_home,
        misskey,
        schemas,
        db_size,
        target_db_exists,
        env,
    })
}

/// What the checks of the data found: where Redis keeps it, whether media
/// live in object storage, how the database moves, the relay's target.
struct Data {
    redis_port: String,
    redis_local: bool,
    rdbs: (Option<String>, Option<String>),
    object_storage: Option<String>,
    choice: db_move::Choice,
    link: Option<f64>,
    backup: Option<BackupKind>,
    relay: (Vec<String>, Option<(String, u16)>, bool),
    /// Session settings for the restore, from the new host's free memory.
    restore_pgoptions: String,
}

impl App {
    fn flag(&self, key: &str) -> bool {
        self.env
            .get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Redis, the cutover, media, the database move's choice, disk space, a
/// backup to restore, and the media relay.
async fn check_data(
    step: &PreflightBody,
    ctx: &mut RunCtx,
    s: &Settings,
    app: &App,
    report: &mut Report<'_>,
) -> Result<Data, StepFailure> {
    let hosts = ctx.shared_hosts()?;
    let (src, dst) = (&hosts.source, &hosts.target);
    let (redis_host, redis_port) = match &app.misskey {
        Some(m) => (m.redis_host.clone(), m.redis_port.to_string()),
        None => (
            app.env
                .get("REDIS_HOST")
                .cloned()
                .unwrap_or_else(|| "localhost".into()),
            app.env
                .get("REDIS_PORT")
                .cloned()
                .unwrap_or_else(|| "6379".into()),
        ),
    };
    // In a compose stack the app reaches Redis by its service's name.
    let redis_local = super::misskey::is_local(&redis_host)
        || s.stacks[0].as_ref().and_then(|st| st.service("redis")) == Some(redis_host.as_str());
    let object_storage = match (&step.object_storage_env, &step.object_storage_sql) {
        (Some(key), _) => app.flag(key).then(|| format!("{key}=true")),
        (None, Some(sql)) => object_storage_in_db(src, s, sql, report).await?,
        (None, None) => None,
    };
    let mut rdbs = (None, None);
    if s.has_redis {
        if redis_local {
            rdbs = check_redis(src, dst, s, &redis_port, report).await?;
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
        check_dns_ttl(&ctx.plan.domain, &dns, report).await;
        for url in ctx.plan.pinned_urls.clone() {
            let url = ctx.vars.render(&url)?;
            check_pinned(&url, &dns, report).await;
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
        None => check_media(src, dst, s, report).await?,
    };
    let (choice, link) = choose(ctx, src, dst, s, app.db_size, report).await?;
    let from_backup = ctx.opts.from_backup.is_some();
    let dump_estimate = match (from_backup, choice.mode) {
        (false, db_move::Mode::Stream) => 0,
        _ => dump_size_estimate(app.db_size, choice.compress),
    };
    check_disk(src, dst, s, app.db_size, dump_estimate, media_bytes, report).await?;
    let backup = match ctx.opts.from_backup.as_deref() {
        Some(path) => check_backup(src, path, report).await?,
        None => None,
    };
    let memory = db_move::mem_available(dst).await.unwrap_or(0);
    let restore_pgoptions = db_move::restore_pgoptions(memory, choice.restore_jobs);
    let relay = if s.has_rsync {
        check_relay_and_rrsync(dst, report).await?
    } else {
        (Vec::new(), None, false)
    };
    Ok(Data {
        redis_port,
        redis_local,
        rdbs,
        object_storage,
        choice,
        link,
        backup,
        relay,
        restore_pgoptions,
    })
}

/// The database move the config asks for (or auto), chosen from what is measured.
async fn choose(
    ctx: &RunCtx,
    src: &Host,
    dst: &Host,
    s: &Settings,
    db_size: u64,
    report: &mut Report<'_>,
) -> Result<(db_move::Choice, Option<f64>), StepFailure> {
    let asked = match text_or(&ctx.vars, "db_move", "auto").as_str() {
        "file" => DbMove::File,
        "stream" => DbMove::Stream,
        "parallel" => DbMove::Parallel,
        _ => DbMove::Auto,
    };
    let forced = text_or(&ctx.vars, "db_compress", "").parse::<u8>().ok();
    choose_db_move(
        src,
        dst,
        s,
        (asked, forced),
        db_size,
        ctx.opts.from_backup.is_some(),
        report,
    )
    .await
}

/// Where the target's sshd listens and its keys, and whether rrsync can pin
/// the relay's key to one directory.
async fn check_relay_and_rrsync<S: Shell>(
    dst: &S,
    report: &mut Report<'_>,
) -> Result<(Vec<String>, Option<(String, u16)>, bool), StepFailure> {
    let (keys, sshd) = check_relay(dst, report).await?;
    let rrsync = dst
        .run_quiet(&RemoteCommand::script(
            RunAs::Login,
            "command -v rrsync >/dev/null",
            &[],
        ))
        .await?
        .success();
    if !rrsync {
        report.note(
            dst.name(),
            "media relay",
            Warn,
            "no rrsync on the target: the key made for the media copy is limited to the target's loopback but not to rsync in one directory (rsync 3.2.4 and later ship rrsync)",
        );
    }
    Ok((keys, sshd, rrsync))
}

/// What was found, as the profile's facts (placeholders and conditions) and
/// as the typed facts other step kinds read.
fn publish(ctx: &mut RunCtx, s: &Settings, app: App, data: &Data) {
    let from_backup = ctx.opts.from_backup.is_some();
    let mut schema_args = Vec::new();
    for schema in &app.schemas {
        schema_args.push("-n".to_string());
        schema_args.push(schema.clone());
    }
    let extra: Vec<&String> = app.schemas.iter().filter(|n| *n != "public").collect();
    let backup_path = ctx.opts.from_backup.clone().unwrap_or_default();
    let vars = &mut ctx.vars;
    vars.set("schema_args", schema_args);
    vars.set("has_extra_schemas", !extra.is_empty());
    vars.set("extra_schemas_sql", create_schemas_sql(&extra));
    let kind = data.backup;
    let choice = &data.choice;
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
    vars.set("restore_pgoptions", data.restore_pgoptions.clone());
    vars.set("target_db_exists", app.target_db_exists);
    vars.set("es_enabled", app.flag("ES_ENABLED"));
    vars.set("object_storage", data.object_storage.is_some());
    vars.set(
        "app_port",
        app.misskey
            .as_ref()
            .map_or_else(String::new, |m| m.port.to_string()),
    );
    vars.set("redis_local", data.redis_local && s.has_redis);
    vars.set("from_backup", kind.is_some());
    vars.set("backup_path", backup_path);
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
    ctx.facts = Facts {
        source_home: app.source_home,
        target_home: app.target_home,
        target_host_keys: data.relay.0.clone(),
        target_rrsync: data.relay.2,
        target_sshd: data.relay.1.clone(),
        redis_port: data.redis_port.clone(),
        source_rdb: data.rdbs.0.clone(),
        target_rdb: data.rdbs.1.clone(),
        schemas: app.schemas,
        link_bps: data.link,
        stacks: s.stacks.clone().map(|st| {
            st.map(|st| super::facts::StackFacts {
                restart: st.restart(),
                project: st.project,
                roles: st.roles,
            })
        }),
    };
}

/// Once every check passed: the lock, a rehearsal's forecast, a leftover
/// database dropped (--reset-target); else every failure, and nothing changed.
async fn finish(
    ctx: &mut RunCtx,
    io: &StepIo,
    s: &Settings,
    data: &Data,
    mut report: Report<'_>,
) -> StepResult {
    if report.failed.is_empty() {
        check_lock(ctx, s, &mut report).await?;
    }
    // A rehearsal measures, without harm, what it must not do itself.
    if report.failed.is_empty() && ctx.opts.mode == crate::events::RunMode::Rehearse {
        let db_move = if ctx.opts.from_backup.is_some() {
            "from a backup"
        } else {
            data.choice.mode.name()
        };
        super::forecast::forecast(ctx, io, db_move).await;
    }
    if report.failed.is_empty()
        && let Some(run) = report.drop_target.take()
        && let Some(hosts) = ctx.hosts.as_ref()
    {
        drop_leftover(&hosts.target, s, &run, &mut report).await?;
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
