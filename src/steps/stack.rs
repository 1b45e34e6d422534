//! A `stack` step: the new host's compose stack made ready while the old one
//! still serves. The source's compose files and compose's `.env` are copied
//! byte for byte (a file the new host already has is compared, never
//! replaced), the database's and Redis's data get persistent storage where
//! the old stack had none (an override file compose reads by itself, the
//! copied files unchanged), the images the stack runs are loaded (streamed
//! from the old host with `docker save | docker load`, or pulled), and the
//! database and Redis start alone, so the restore has a server to talk to.

use std::time::{Duration, Instant};

use super::transfer::{CopySpec, copy_file, relay};
use super::{Done, StepFailure, StepResult, run_checked, run_quiet_checked};
use crate::events::Stream;
use crate::remote::{Host, RemoteCommand, RunAs};
use crate::runtime::compose::{self, Project, Resolved};
use crate::runtime::{Place, database};
use crate::steps::ctx::{RunCtx, StepIo};
use crate::steps::facts::StackFacts;

pub async fn run(ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    ctx.connect().await?;
    let [Some(from), Some(to)] = ctx.facts.stacks.clone() else {
        return Ok(Done::Skipped(
            "both hosts must run compose stacks; preflight found no such pair".into(),
        ));
    };
    let hosts = ctx.connected()?;
    let (src, dst) = (&hosts.source, &hosts.target);
    let resolved = compose::resolved(src, &from.project).await?;
    let base = copy_files(src, dst, (&from.project, &resolved), io).await?;
    persist(dst, &resolved, (&from, &to), base.as_deref(), io).await?;
    images(src, dst, &resolved, &to.project, io).await?;
    start_data(dst, &to, io).await?;
    let role = ctx.vars.text("db_user")?;
    ensure_role((src, dst), (&from, &to), &role, (&ctx.redactor, io)).await?;
    Ok(Done::Completed)
}

fn say(io: &StepIo, line: String) {
    io.output(Stream::Stdout, line);
}

/// The stack's files on the source, as paths, and the base compose file
/// compose reads by default (none when the config names the files).
async fn stack_files(
    src: &Host,
    p: &Project,
) -> Result<(Vec<String>, Option<String>), StepFailure> {
    let listed = run_quiet_checked(
        src,
        &RemoteCommand::script(RunAs::Root, compose::STACK_FILES, &[&p.dir]),
    )
    .await?
    .stdout;
    let names: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let in_dir = |n: &str| format!("{}/{n}", p.dir);
    if !p.files.is_empty() {
        let mut files = p.files.clone();
        if names.contains(&".env") {
            files.push(in_dir(".env"));
        }
        return Ok((files, None));
    }
    let base = names
        .iter()
        .find(|n| compose::override_for(n).is_some())
        .map(|n| n.to_string());
    Ok((names.into_iter().map(in_dir).collect(), base))
}

/// Copies each of the stack's files the new host lacks; compares the ones it
/// has. Returns the base compose file's name.
async fn copy_files(
    src: &Host,
    dst: &Host,
    (p, resolved): (&Project, &Resolved),
    io: &StepIo,
) -> Result<Option<String>, StepFailure> {
    let (mut files, base) = stack_files(src, p).await?;
    // The services' env files (.env.production): compose reads them when it
    // starts any service of the project.
    let mut env_files: Vec<String> = resolved
        .services
        .values()
        .flat_map(|s| s.env_files.clone())
        .collect();
    for f in files
        .iter()
        .filter(|f| f.ends_with(".yml") || f.ends_with(".yaml"))
    {
        let text = run_quiet_checked(
            src,
            &RemoteCommand::new(RunAs::Root, ["cat", "--", f.as_str()]),
        )
        .await?
        .stdout;
        env_files.extend(compose::env_files_in(&text, &p.dir));
    }
    for f in env_files {
        if !files.contains(&f) {
            files.push(f);
        }
    }
    if files.is_empty() {
        return Err(StepFailure::on(
            src,
            format!("on {}: no compose file in '{}'", src.name(), p.dir),
        ));
    }
    run_checked(
        dst,
        &RemoteCommand::new(RunAs::Root, ["mkdir", "-p", "--", p.dir.as_str()]),
        io,
    )
    .await?;
    for f in files {
        let there = dst
            .run_quiet(&RemoteCommand::new(RunAs::Root, ["test", "-e", f.as_str()]))
            .await?
            .success();
        if there {
            compare(src, dst, &f, io).await?;
            continue;
        }
        let stat = run_quiet_checked(
            src,
            &RemoteCommand::new(RunAs::Root, ["stat", "-c", "%a %u:%g", "--", f.as_str()]),
        )
        .await?
        .stdout;
        let mut parts = stat.split_whitespace();
        let mode = format!("0{}", parts.next().unwrap_or("600").trim_start_matches('0'));
        say(
            io,
            format!("{f}: {} -> {} (mode {mode})", src.name(), dst.name()),
        );
        copy_file(
            src,
            dst,
            &CopySpec {
                from: f.clone(),
                to: f.clone(),
                read_as: RunAs::Root,
                write_as: RunAs::Root,
                mode,
                owner: parts.next().map(str::to_string),
                backup_suffix: None,
            },
            io,
        )
        .await?;
    }
    Ok(base)
}

/// A file the new host already has: the same bytes, or which settings
/// differ (for an env file, by name only: values are secrets).
async fn compare(src: &Host, dst: &Host, f: &str, io: &StepIo) -> Result<(), StepFailure> {
    let hash = RemoteCommand::new(RunAs::Root, ["sha256sum", "--", f]);
    let (a, b) = tokio::join!(run_quiet_checked(src, &hash), run_quiet_checked(dst, &hash));
    let digest = |s: String| s.split_whitespace().next().unwrap_or("").to_string();
    if digest(a?.stdout) == digest(b?.stdout) {
        say(
            io,
            format!("{f}: already on {}, the same bytes", dst.name()),
        );
        return Ok(());
    }
    let said = if !f.ends_with(".yml") && !f.ends_with(".yaml") {
        // Read only to compare names; never shown.
        let cat = RemoteCommand::new(RunAs::Root, ["cat", "--", f]);
        let (a, b) = tokio::join!(run_quiet_checked(src, &cat), run_quiet_checked(dst, &cat));
        let differ = differing_keys(&a?.stdout, &b?.stdout);
        format!("settings that differ: {}", differ.join(", "))
    } else {
        "its contents differ".to_string()
    };
    say(
        io,
        format!(
            "{f}: {} has its own, kept as it is ({said}); the stack there runs with it",
            dst.name()
        ),
    );
    Ok(())
}

/// The names of the `KEY=value` settings that differ between two env files.
pub(crate) fn differing_keys(a: &str, b: &str) -> Vec<String> {
    let parse = |t: &str| -> std::collections::BTreeMap<String, String> {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
            .collect()
    };
    let (a, b) = (parse(a), parse(b));
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| a.get(k) != b.get(k));
    keys
}

/// The override that keeps each unpersisted data path in the project directory.
pub(crate) fn override_yaml(missing: &[(String, &str, &str)]) -> String {
    let mut y = String::from(
        "# Written by hikkoshi when it moved this stack: the old host's compose file\n# kept this data in anonymous volumes or inside the containers; here it is\n# kept in the project directory. compose reads this file by itself.\nservices:\n",
    );
    for (service, path, dir) in missing {
        y.push_str(&format!(
            "  {service}:\n    volumes:\n      - ./{dir}:{path}\n"
        ));
    }
    y
}

/// Writes `$2` to the file `$1` (mode 0644) unless it exists.
const WRITE_NEW: &str = r#"[ -e "$1" ] && exit 3
umask 022 && printf '%s' "$2" > "$1.hikkoshi-part" && mv -n -- "$1.hikkoshi-part" "$1""#;

async fn persist(
    dst: &Host,
    resolved: &Resolved,
    (from, to): (&StackFacts, &StackFacts),
    base: Option<&str>,
    io: &StepIo,
) -> Result<(), StepFailure> {
    let missing = compose::unpersisted(resolved, &from.roles);
    if missing.is_empty() {
        return Ok(());
    }
    let Some(file) = base.and_then(compose::override_for) else {
        return Err(StepFailure::on(
            dst,
            format!(
                "on {}: {} would keep its data without persistent storage, and the config names the compose files, so hikkoshi adds none; add {} to them on {} and run the step again",
                dst.name(),
                missing
                    .iter()
                    .map(|m| format!("'{}'", m.0))
                    .collect::<Vec<_>>()
                    .join(" and "),
                missing
                    .iter()
                    .map(|(s, p, d)| format!("'- ./{d}:{p}' under services.{s}.volumes"))
                    .collect::<Vec<_>>()
                    .join(" and "),
                dst.name()
            ),
        ));
    };
    let path = format!("{}/{file}", to.project.dir);
    let yaml = override_yaml(&missing);
    let wrote = dst
        .run_quiet(&RemoteCommand::script(
            RunAs::Root,
            WRITE_NEW,
            &[&path, &yaml],
        ))
        .await?;
    match wrote.exit_code {
        Some(0) => {
            say(io, format!("{}: wrote {path}:", dst.name()));
            for line in yaml.lines() {
                say(io, format!("  {line}"));
            }
        }
        // An earlier attempt wrote it, or the stack brought its own: compose
        // config below says whether the data is kept either way.
        Some(3) => say(io, format!("{}: {path} is there already", dst.name())),
        _ => {
            return Err(StepFailure::on(
                dst,
                format!(
                    "on {}: could not write '{path}': {}",
                    dst.name(),
                    wrote.cause()
                ),
            ));
        }
    }
    let now = compose::resolved(dst, &to.project).await?;
    let still = compose::unpersisted(&now, &to.roles);
    if let Some((service, path, _)) = still.first() {
        return Err(StepFailure::on(
            dst,
            format!(
                "on {}: after writing the override, '{service}' still keeps {path} without persistent storage (compose config says so); look at the compose files in '{}'",
                dst.name(),
                to.project.dir
            ),
        ));
    }
    Ok(())
}

/// Loads each image the stack runs onto the new host: there already,
/// streamed from the old host, or pulled.
async fn images(
    src: &Host,
    dst: &Host,
    resolved: &Resolved,
    target: &Project,
    io: &StepIo,
) -> Result<(), StepFailure> {
    let mut wanted: Vec<(&str, &str)> = resolved
        .services
        .values()
        .filter_map(|s| Some((s.image.as_deref()?, s.name.as_str())))
        .collect();
    wanted.sort_unstable();
    wanted.dedup_by_key(|(image, _)| *image);
    for (image, service) in wanted {
        if compose::image_id(dst, image).await?.is_some() {
            say(io, format!("{image}: on {} already", dst.name()));
            continue;
        }
        let Some(found) = compose::image_id(src, image).await? else {
            let pull = RemoteCommand::new(RunAs::Root, target.argv(&["pull", service]));
            say(io, format!("{}$ {}", dst.name(), pull.display()));
            run_checked(dst, &pull, io).await?;
            continue;
        };
        let size = found.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        let (save, load) = (compose::save(image), compose::load());
        say(
            io,
            format!(
                "{}$ {} | {}$ {}",
                src.name(),
                save.display(),
                dst.name(),
                load.display()
            ),
        );
        let moved = relay(src, &save, dst, &load, Some(io), size, false).await?;
        if !moved.ok() {
            return Err(moved.failure(
                super::transfer::End {
                    host: src,
                    cmd: &save,
                    doing: &format!("saving '{image}'"),
                },
                super::transfer::End {
                    host: dst,
                    cmd: &load,
                    doing: &format!("loading '{image}'"),
                },
                None,
            ));
        }
        if compose::image_id(dst, image).await?.is_none() {
            return Err(StepFailure::on(
                dst,
                format!(
                    "on {}: docker load ended but '{image}' is not there",
                    dst.name()
                ),
            ));
        }
        say(
            io,
            format!(
                "{image}: {} streamed from {} to {} through this machine",
                crate::units::human_bytes(moved.moved),
                src.name(),
                dst.name()
            ),
        );
    }
    Ok(())
}

/// Starts the database and Redis alone and waits until both answer.
async fn start_data(dst: &Host, to: &StackFacts, io: &StepIo) -> Result<(), StepFailure> {
    let services: Vec<&str> = ["database", "redis"]
        .iter()
        .filter_map(|r| to.roles.get(*r).map(String::as_str))
        .collect();
    let mut args = vec!["up", "-d", "--no-build"];
    args.extend(&services);
    let up = RemoteCommand::new(RunAs::Root, to.project.argv(&args));
    say(io, format!("{}$ {}", dst.name(), up.display()));
    run_checked(dst, &up, io).await?;
    let db = to.roles.get("database").map_or("db", String::as_str);
    // Over TCP: the image's first start runs a temporary server on the
    // socket only, and restarts it once initialised.
    let ready = Place::Service(to.project.service(db, Some("postgres"))).command(
        ["pg_isready", "-q", "-h", "127.0.0.1"]
            .map(String::from)
            .to_vec(),
    );
    let started = Instant::now();
    loop {
        if dst.run_quiet(&ready).await?.success() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(StepFailure::on(
                dst,
                format!(
                    "on {}: the stack's database service '{db}' did not accept connections within 2 minutes of '{}'; look at '{} logs {db}'",
                    dst.name(),
                    up.display(),
                    to.project.cli.name()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    say(io, format!("{}: '{db}' accepts connections", dst.name()));
    Ok(())
}

/// The app's role on the new stack's fresh server, as the old server has it:
/// login, createdb and its password hash (never shown; the SQL goes through
/// psql's stdin). A role that exists is left as it is.
async fn ensure_role(
    (src, dst): (&Host, &Host),
    (from, to): (&StackFacts, &StackFacts),
    role: &str,
    (redactor, io): (&crate::redact::Redactor, &StepIo),
) -> Result<(), StepFailure> {
    let admin = |st: &StackFacts| {
        let db = st.roles.get("database").map_or("db", String::as_str);
        Place::Service(st.project.service(db, Some("postgres")))
    };
    let exists = database::query(
        dst,
        &admin(to),
        "postgres",
        "SELECT 1 FROM pg_roles WHERE rolname = :'r'",
        &[("r", role)],
    )
    .await?;
    if !exists.is_empty() {
        say(
            io,
            format!("{}: role '{role}' is there already", dst.name()),
        );
        return Ok(());
    }
    let found = database::query(
        src,
        &admin(from),
        "postgres",
        "SELECT rolcanlogin, rolcreatedb, coalesce(rolpassword, '') FROM pg_authid WHERE rolname = :'r'",
        &[("r", role)],
    )
    .await?;
    let Some(row) = found.first() else {
        return Err(StepFailure::on(
            src,
            format!(
                "on {}: the stack's database has no role '{role}'; set db_user in [app] to the role the app connects as (DB_USER in .env.production)",
                src.name()
            ),
        ));
    };
    let cols: Vec<&str> = row.splitn(3, '|').collect();
    let flag = |i: usize, yes: &str, no: &str| {
        if cols.get(i) == Some(&"t") {
            yes.to_string()
        } else {
            no.to_string()
        }
    };
    let mut sql = format!(
        "CREATE ROLE {} {} {}",
        database::quote_ident(role),
        flag(0, "LOGIN", "NOLOGIN"),
        flag(1, "CREATEDB", "NOCREATEDB")
    );
    if let Some(hash) = cols.get(2).filter(|h| !h.is_empty()) {
        // psql may quote the statement in an error, which becomes the step's failure.
        redactor.add(hash);
        sql.push_str(&format!(" PASSWORD {}", database::quote_literal(hash)));
    }
    database::query(dst, &admin(to), "postgres", &sql, &[]).await?;
    say(
        io,
        format!(
            "{}: created role '{role}' ({}, {}{}) as {} has it",
            dst.name(),
            flag(0, "login", "no login"),
            flag(1, "createdb", "no createdb"),
            if cols.get(2).is_some_and(|h| !h.is_empty()) {
                ", its password hash"
            } else {
                ""
            },
            src.name()
        ),
    );
    Ok(())
}

/// What the step will do, as the plan shows it.
pub(crate) fn describe(plan: &crate::plan::Plan) -> Vec<String> {
    let Some(to) = crate::runtime::planned_project(plan, false) else {
        return vec!["nothing: the new host runs no compose stack".into()];
    };
    let (old, new) = (&plan.source, &plan.target);
    let mut up = to.argv(&["up", "-d", "--no-build"]);
    up.extend(
        ["database", "redis"]
            .iter()
            .filter_map(|r| plan.service_roles(false).get(*r).cloned()),
    );
    vec![
        format!(
            "{old} -> {new} as root: the stack's compose files, compose's .env and the services' env files in {}, byte for byte with their modes (a file {new} already has is compared, never replaced; env files by setting names only)",
            to.dir
        ),
        format!(
            "{new} as root: where the old stack keeps the database's or Redis's data in no volume, an override file beside the compose file keeps it in ./postgres or ./redis (the copied files unchanged)"
        ),
        format!(
            "each image of the stack: on {new} already, or {old}$ docker save IMAGE | {new}$ docker load -q through this machine, or pulled on {new}"
        ),
        format!(
            "{new} as root: {}; then wait until the database accepts connections",
            crate::plan::shell_join(&up)
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_read_from_the_compose_file_itself() {
        let y = "services:\n  web:\n    env_file: .env.production\n  sidekiq:\n    env_file: [.env.production, /etc/m/extra.env]\n  db:\n    image: postgres\n";
        assert_eq!(
            compose::env_files_in(y, "/srv/m"),
            ["/srv/m/.env.production", "/etc/m/extra.env"]
        );
    }

    #[test]
    fn env_files_are_compared_by_setting_names_only() {
        let a = "# c\nA=1\nB=secret\nC=3\n";
        let b = "A=1\nB=other\nD=4\n";
        assert_eq!(differing_keys(a, b), ["B", "C", "D"]);
        assert!(differing_keys(a, a).is_empty());
    }

    #[test]
    fn the_override_keeps_each_data_path_in_the_project_directory() {
        let y = override_yaml(&[
            ("db".into(), "/var/lib/postgresql/data", "postgres"),
            ("redis".into(), "/data", "redis"),
        ]);
        let parsed = compose::parse_config(&y, "/srv/m").expect("compose reads it");
        let db = &parsed.services["db"];
        use compose::MountKind;
        assert_eq!(db.mounts[0].kind, MountKind::Bind);
        assert_eq!(db.mounts[0].target, "/var/lib/postgresql/data");
        assert_eq!(parsed.services["redis"].mounts[0].target, "/data");
    }
}
