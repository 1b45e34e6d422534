//! PostgreSQL on both hosts: server and client versions, the source database
//! (size, schemas, what the app's role can read), the target database and role.

use super::{Report, Settings};
use crate::events::CheckStatus::{Fail, Pass, Warn};
use crate::remote::Shell;
use crate::runtime::Place;
use crate::runtime::database::{self, Tool, query};
use crate::steps::StepFailure;
use crate::units::human_bytes;
use serde_json::Value as Json;

/// What the restore step writes on a database it creates (as the database's
/// comment, with the run id after it): the only thing that lets hikkoshi drop
/// a database, never its name alone.
pub(super) const MARKER: &str = "hikkoshi:";

pub(super) async fn tool_major<S: Shell>(h: &S, s: &Settings, tool: Tool) -> Option<u32> {
    h.run_quiet(&tool.version(&s.rt(h.role()).tools))
        .await
        .ok()
        .and_then(|f| database::major_from_version(&f.stdout))
}

pub(super) async fn check_postgres_versions<S: Shell>(
    src: &S,
    dst: &S,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    if s.database_later(dst.role()) {
        r.note(
            dst.name(),
            "postgresql",
            Pass,
            "the new stack's database service does not run yet: its server and tools are checked when it starts, before anything is restored",
        );
        return Ok(());
    }
    let mut servers = Vec::new();
    for h in [src, dst] {
        match query(
            h,
            &s.rt(h.role()).db_admin,
            "postgres",
            "SHOW server_version_num",
            &[],
        )
        .await
        {
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
    let dump = tool_major(src, s, Tool::Dump).await;
    let restore = tool_major(dst, s, Tool::Restore).await;
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

pub(super) fn json_rows(lines: &[String]) -> Vec<Vec<Json>> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Vec<Json>>(l).ok())
        .collect()
}

pub(super) fn as_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) const SCHEMAS_SQL: &str = r"
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

pub(super) async fn check_source_database<S: Shell>(
    src: &S,
    s: &Settings,
    r: &mut Report<'_>,
) -> Result<(Vec<String>, u64, Vec<String>), StepFailure> {
    let admin = s.rt(src.role()).db_admin;
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

pub(super) const TARGET_DB_SQL: &str = r"
SELECT json_build_array(pg_get_userbyid(datdba), shobj_description(oid, 'pg_database'))
FROM pg_database WHERE datname = :'db';
";

pub(super) const ROLE_SQL: &str = r"
SELECT json_build_array(rolcanlogin, rolcreatedb OR rolsuper) FROM pg_roles WHERE rolname = :'role';
";

/// Objects that make a database "not empty"; an extension's own tables and
/// views do not count, so a database prepared with its extensions still qualifies.
pub(super) const OBJECTS_SQL: &str = r"
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e');
";

/// What the app's role could not read, so pg_dump as that role would fail.
pub(super) const UNREADABLE_SQL: &str = r"
SELECT json_build_array(n.nspname || '.' || c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S', 'm', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  AND (NOT has_schema_privilege(:'role', n.oid, 'USAGE') OR NOT has_table_privilege(:'role', c.oid, 'SELECT'))
ORDER BY n.nspname, c.relname
LIMIT 20;
";

/// A target database created by a hikkoshi run. To be dropped (true) when it
/// is this run's own unverified restore being resumed, or when the admin
/// passed --reset-target; kept when this run already verified it.
pub(super) fn leftover<S: Shell>(dst: &S, s: &Settings, run: &str, r: &mut Report<'_>) -> bool {
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
    if !(ours || s.reset_target) || s.mode == crate::events::RunMode::Check {
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
pub(super) async fn drop_leftover<S: Shell>(
    dst: &S,
    s: &Settings,
    run: &str,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let admin = s.rt(dst.role()).db_admin;
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
pub(super) async fn check_target_database<S: Shell>(
    dst: &S,
    s: &Settings,
    exts: &[String],
    r: &mut Report<'_>,
) -> Result<bool, StepFailure> {
    let admin = s.rt(dst.role()).db_admin;
    let (role_exists, can_create) = check_role(dst, s, &admin, r).await?;
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
        if can_create || !role_exists {
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
        check_extensions(dst, s, &admin, exts, r).await?;
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

/// The app's role on the target: it must exist and log in; returns whether
/// it exists and whether it may create the database.
async fn check_role<S: Shell>(
    dst: &S,
    s: &Settings,
    admin: &Place,
    r: &mut Report<'_>,
) -> Result<(bool, bool), StepFailure> {
    let role = json_rows(&query(dst, admin, "postgres", ROLE_SQL, &[("role", &s.db_user)]).await?);
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
    Ok((!role.is_empty(), can_create))
}

/// The extensions the source database uses, in the existing target database.
async fn check_extensions<S: Shell>(
    dst: &S,
    s: &Settings,
    admin: &Place,
    exts: &[String],
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let present: Vec<String> = json_rows(
        &query(
            dst,
            admin,
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
    Ok(())
}

/// pg_restore -n leaves extensions out, and the app's role usually may not
/// create them: a superuser prepares the database once.
pub(super) fn extensions_advice(s: &Settings, missing: &[String]) -> String {
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

pub(crate) fn create_schemas_sql(schemas: &[&String]) -> String {
    schemas
        .iter()
        .map(|s| format!("CREATE SCHEMA IF NOT EXISTS {};", quote_ident(s)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) use crate::runtime::database::quote_ident;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::preflight::Settings;
    use crate::steps::preflight::fake::{Checks, FakeHost, mastodon};

    /// The target's role and database as the queries answer, and what preflight says.
    #[rstest::rstest]
    #[case::no_role("", "", "0", false, false, &["new role FAIL: role 'mastodon' does not exist on the target; create it: sudo -u postgres createuser --createdb mastodon", "new target database ok: 'mastodon_production' does not exist yet; it will be created by 'mastodon'"])]
    #[case::absent("[true, true]", "", "0", false, false, &["new role ok: 'mastodon' exists", "new target database ok: 'mastodon_production' does not exist yet; it will be created by 'mastodon'"])]
    #[case::absent_and_no_right_to_create("[true, false]", "", "0", false, false, &["new role ok: 'mastodon' exists", "new target database FAIL: 'mastodon_production' does not exist and role 'mastodon' may not create databases: ALTER ROLE mastodon CREATEDB, or create it: createdb -T template0 -O mastodon mastodon_production"])]
    #[case::holds_data("[true, true]", "[\"mastodon\", null]", "3", false, true, &["new role ok: 'mastodon' exists", "new target database FAIL: 'mastodon_production' already exists and holds 3 tables, views or sequences; hikkoshi never restores over existing data. If it is a leftover of an earlier attempt, drop it (sudo -u postgres dropdb mastodon_production) and run again"])]
    #[case::empty_but_owned_by_postgres("[true, true]", "[\"postgres\", null]", "0", false, true, &["new role ok: 'mastodon' exists", "new target database FAIL: 'mastodon_production' exists, empty, but is owned by 'postgres', so a restore as 'mastodon' would fail with permission denied; ALTER DATABASE mastodon_production OWNER TO mastodon or drop it"])]
    #[case::left_by_an_earlier_run("[true, true]", "[\"mastodon\", \"hikkoshi:20261204T000000Z-abcd\"]", "9", false, true, &["new role ok: 'mastodon' exists", "new target database FAIL: 'mastodon_production' was created by hikkoshi run '20261204T000000Z-abcd' and is left from that attempt (a partial or earlier restore). To drop it and restore again, run with --reset-target (it drops only a database carrying that run's marker)"])]
    #[case::left_and_reset("[true, true]", "[\"mastodon\", \"hikkoshi:20261204T000000Z-abcd\"]", "9", true, false, &["new role ok: 'mastodon' exists"])]
    #[tokio::test]
    async fn the_target_database_must_be_absent_empty_or_ours(
        #[case] role: &str,
        #[case] db: &str,
        #[case] objects: &str,
        #[case] reset_target: bool,
        #[case] exists: bool,
        #[case] want: &[&str],
    ) {
        let dst = FakeHost::target()
            .on("FROM pg_roles", 0, role)
            .on("FROM pg_database WHERE datname", 0, db)
            .on("count(*) FROM pg_class", 0, objects);
        let c = Checks::new();
        let mut r = c.report();
        let s = Settings {
            reset_target,
            run_id: "20261205T000000Z-ffff".into(),
            ..mastodon()
        };
        let found = check_target_database(&dst, &s, &[], &mut r)
            .await
            .expect("runs");
        assert_eq!(found, exists);
        assert_eq!(c.said(), want);
        assert_eq!(
            r.drop_target.is_some(),
            reset_target,
            "dropped only with --reset-target"
        );
        // Nothing but questions: no DROP, no CREATE.
        let asked = dst.asked.lock().expect("asked").join("\n");
        assert!(
            !asked.contains("DROP") && !asked.contains("CREATE"),
            "{asked}"
        );
    }

    fn postgres(host: FakeHost, server: &str, tool: &str) -> FakeHost {
        host.on("SHOW server_version_num", 0, &format!("{server}\n"))
            .on(
                "--version",
                0,
                &format!("pg_dump (PostgreSQL) {tool} (Debian)\n"),
            )
    }

    #[rstest::rstest]
    #[case::same("150018", "15.18", "150018", "15.18", &["new postgresql versions ok: server 15 -> 15, pg_dump 15, pg_restore 15"])]
    #[case::target_older("160004", "16.4", "150018", "16.4", &["new postgresql versions FAIL: the target runs PostgreSQL 15, older than the source's 16; install 16 or newer on the target", "new postgresql versions FAIL: pg_dump 16 on the source writes SQL that PostgreSQL 15 on the target may reject (e.g. SET transaction_timeout from 17 on); use pg_dump 15"])]
    #[case::old_pg_dump("160004", "15.18", "160004", "16.4", &["new postgresql versions FAIL: pg_dump 15 on the source cannot dump a PostgreSQL 16 server (\"server version mismatch\"); install postgresql-client-16"])]
    #[case::old_pg_restore("150018", "16.4", "160004", "15.18", &["new postgresql versions FAIL: pg_restore 15 on the target cannot read an archive from pg_dump 16 (\"unsupported version in file header\"); install postgresql-client-16 on the target"])]
    #[tokio::test]
    async fn server_and_client_versions(
        #[case] src_server: &str,
        #[case] src_tool: &str,
        #[case] dst_server: &str,
        #[case] dst_tool: &str,
        #[case] want: &[&str],
    ) {
        let c = Checks::new();
        let mut r = c.report();
        check_postgres_versions(
            &postgres(FakeHost::source(), src_server, src_tool),
            &postgres(FakeHost::target(), dst_server, dst_tool),
            &mastodon(),
            &mut r,
        )
        .await
        .expect("runs");
        assert_eq!(c.said(), want);
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
}
