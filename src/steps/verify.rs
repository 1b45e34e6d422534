//! Compares the restored database with the source: the exact row count of every
//! table in every schema, every sequence's value, every materialized view and
//! whether it is populated, and that every object the app's migrations may
//! alter (tables, types, functions, schemas, collations, operators, ...) is
//! owned by the app's role.
//! Any difference fails the step and names the object.
//!
//! A materialized view's rows are not data but a query's result, and pg_restore
//! runs that query again. Mastodon's `global_follow_recommendations` reads
//! `now()`, so its row count moves with the clock: view counts that differ are a
//! warning, not a failure (the tables they are computed from are compared).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{Done, StepFailure, StepResult};
use crate::events::CheckStatus::{Fail, Pass, Warn};
use crate::profile::StepSpec;
use crate::remote::{Role, Shell};
use crate::runtime::Place;
use crate::runtime::database::query;
use crate::steps::ctx::{RunCtx, StepIo};

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

fn counts_sql() -> String {
    format!(
        r"SELECT format('SELECT json_build_array(%L, %L, count(*)) FROM %I.%I', n.nspname, c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
\gexec
"
    )
}

/// `[schema, name, rows]` per materialized view; an unpopulated one cannot be
/// counted, so it says so instead.
fn matviews_sql() -> String {
    format!(
        r"SELECT CASE WHEN c.relispopulated
  THEN format('SELECT json_build_array(%L, %L, count(*)) FROM %I.%I', n.nspname, c.relname, n.nspname, c.relname)
  ELSE format('SELECT json_build_array(%L, %L, %L)', n.nspname, c.relname, '{UNPOPULATED}') END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND {USER_SCHEMAS}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
\gexec
"
    )
}

const UNPOPULATED: &str = "not populated";

/// Materialized views split into what fails (missing, extra, populated on one
/// side only) and row counts that moved when the restore recomputed them.
fn matview_differences(source: &Rows, target: &Rows) -> (Vec<String>, Vec<String>) {
    let populated = |rows: &Rows| -> Rows {
        rows.iter()
            .map(|(name, v)| {
                let state = if v == UNPOPULATED { v } else { "populated" };
                (name.clone(), state.to_string())
            })
            .collect()
    };
    let fails = differences("materialized view", &populated(source), &populated(target));
    let moved = source
        .iter()
        .filter_map(|(name, s)| {
            let t = target.get(name)?;
            (s != t && s != UNPOPULATED && t != UNPOPULATED).then(|| format!("'{name}' {s} -> {t}"))
        })
        .collect();
    (fails, moved)
}

fn sequences_sql() -> String {
    "SELECT json_build_array(schemaname, sequencename, last_value) FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY schemaname, sequencename;".to_string()
}

/// One kind of object an app's migrations may alter, and where its owner is
/// kept. Only the owner may `ALTER` it: a type left to `postgres` stops the
/// next `ALTER TYPE ... RENAME VALUE` as surely as a table stops an `INSERT`.
struct Owned {
    catalog: &'static str,
    /// The object's name as shown, from the catalog row `o` (and schema `n`).
    name: &'static str,
    /// The kind as shown; may depend on the row.
    kind: &'static str,
    owner: &'static str,
    /// The schema column, for objects that live in one; the others belong
    /// to the database.
    schema: Option<&'static str>,
    /// Which rows are the app's own objects of this kind.
    only: &'static str,
}

const SCHEMA_NAME: &str = "n.nspname || '.' || ";

const OWNED: &[Owned] = &[
    Owned {
        catalog: "pg_class",
        name: "relname",
        kind: "CASE o.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'foreign table' END",
        owner: "relowner",
        schema: Some("relnamespace"),
        only: "o.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')",
    },
    // A table's row type and an array type follow their table or element;
    // a multirange follows its range. The rest are the app's own types.
    Owned {
        catalog: "pg_type",
        name: "typname",
        kind: "CASE o.typtype WHEN 'e' THEN 'enum type' WHEN 'c' THEN 'composite type' WHEN 'd' THEN 'domain' WHEN 'r' THEN 'range type' ELSE 'base type' END",
        owner: "typowner",
        schema: Some("typnamespace"),
        only: "o.typtype <> 'm' AND (o.typrelid = 0 OR EXISTS (SELECT 1 FROM pg_class k WHERE k.oid = o.typrelid AND k.relkind = 'c')) AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = o.oid)",
    },
    Owned {
        catalog: "pg_proc",
        name: "proname || '(' || pg_get_function_identity_arguments(o.oid) || ')'",
        kind: "CASE o.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window function' ELSE 'function' END",
        owner: "proowner",
        schema: Some("pronamespace"),
        // A range type's constructors belong to the type (an internal
        // dependency) and change owner with it.
        only: "NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass AND i.objid = o.oid AND i.deptype = 'i')",
    },
    Owned {
        catalog: "pg_collation",
        name: "collname",
        kind: "'collation'",
        owner: "collowner",
        schema: Some("collnamespace"),
        only: "true",
    },
    Owned {
        catalog: "pg_ts_config",
        name: "cfgname",
        kind: "'text search configuration'",
        owner: "cfgowner",
        schema: Some("cfgnamespace"),
        only: "true",
    },
    Owned {
        catalog: "pg_ts_dict",
        name: "dictname",
        kind: "'text search dictionary'",
        owner: "dictowner",
        schema: Some("dictnamespace"),
        only: "true",
    },
    Owned {
        catalog: "pg_operator",
        name: "oprname || '(' || coalesce(format_type(o.oprleft, NULL), 'NONE') || ', ' || coalesce(format_type(o.oprright, NULL), 'NONE') || ')'",
        kind: "'operator'",
        owner: "oprowner",
        schema: Some("oprnamespace"),
        only: "true",
    },
    Owned {
        catalog: "pg_opclass",
        name: "opcname",
        kind: "'operator class'",
        owner: "opcowner",
        schema: Some("opcnamespace"),
        only: "true",
    },
    Owned {
        catalog: "pg_opfamily",
        name: "opfname",
        kind: "'operator family'",
        owner: "opfowner",
        schema: Some("opfnamespace"),
        only: "true",
    },
    Owned {
        catalog: "pg_conversion",
        name: "conname",
        kind: "'conversion'",
        owner: "conowner",
        schema: Some("connamespace"),
        only: "true",
    },
    Owned {
        catalog: "pg_statistic_ext",
        name: "stxname",
        kind: "'statistics object'",
        owner: "stxowner",
        schema: Some("stxnamespace"),
        only: "true",
    },
    // 'public' comes with every database, owned by pg_database_owner (15+)
    // or the bootstrap superuser, and migrations do not alter it.
    Owned {
        catalog: "pg_namespace",
        name: "nspname",
        kind: "'schema'",
        owner: "nspowner",
        schema: None,
        only: "o.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND o.nspname NOT LIKE 'pg\\_toast%' AND o.nspname NOT LIKE 'pg\\_temp%'",
    },
    Owned {
        catalog: "pg_event_trigger",
        name: "evtname",
        kind: "'event trigger'",
        owner: "evtowner",
        schema: None,
        only: "true",
    },
    Owned {
        catalog: "pg_foreign_server",
        name: "srvname",
        kind: "'foreign server'",
        owner: "srvowner",
        schema: None,
        only: "true",
    },
    Owned {
        catalog: "pg_largeobject_metadata",
        name: "oid::text",
        kind: "'large object'",
        owner: "lomowner",
        schema: None,
        only: "true",
    },
    Owned {
        catalog: "pg_database",
        name: "datname",
        kind: "'database'",
        owner: "datdba",
        schema: None,
        only: "o.datname = current_database()",
    },
];

/// `[name, kind, owner]` for every object of the app's not owned by its role:
/// every kind in [`OWNED`], in every schema but the system's, leaving out
/// what belongs to an extension (the extension's script made it).
fn ownership_sql() -> String {
    let parts: Vec<String> = OWNED
        .iter()
        .map(|o| {
            let (name, join) = match o.schema {
                Some(col) => (
                    format!("{SCHEMA_NAME}o.{}", o.name),
                    format!(" JOIN pg_namespace n ON n.oid = o.{col} AND {USER_SCHEMAS}"),
                ),
                None => (format!("o.{}", o.name), String::new()),
            };
            format!(
                "SELECT json_build_array({name}, {kind}, pg_get_userbyid(o.{owner}))\nFROM {cat} o{join}\nWHERE {only} AND o.{owner} <> (SELECT oid FROM r)\n  AND NOT EXISTS (SELECT 1 FROM ext WHERE ext.classid = '{cat}'::regclass AND ext.objid = o.oid)",
                kind = o.kind,
                owner = o.owner,
                cat = o.catalog,
                only = o.only,
            )
        })
        .collect();
    format!(
        "SELECT j FROM (WITH r AS (SELECT oid FROM pg_roles WHERE rolname = :'role'),\next AS (SELECT objid, classid FROM pg_depend WHERE deptype = 'e')\n{}\n) AS found(j) ORDER BY j::text;\n",
        parts.join("\nUNION ALL\n")
    )
}

/// "3 enum types, 1 function": what the wrong owners are, by kind.
fn kinds_summary(rows: &[(String, String, String)]) -> String {
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, kind, _) in rows {
        *by_kind.entry(kind.as_str()).or_default() += 1;
    }
    by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

type Rows = BTreeMap<String, String>;

/// `["schema", "name", value]` rows -> {"schema.name": value}.
fn keyed(lines: &[String]) -> Rows {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Vec<Json>>(l).ok())
        .filter_map(|row| {
            let text = |v: &Json| match v {
                Json::String(s) => s.clone(),
                Json::Null => "null".into(),
                other => other.to_string(),
            };
            Some((
                format!("{}.{}", text(row.first()?), text(row.get(1)?)),
                text(row.get(2)?),
            ))
        })
        .collect()
}

/// Every difference between source and target, as sentences.
pub fn differences(what: &str, source: &Rows, target: &Rows) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in source {
        match target.get(name) {
            None => out.push(format!("{what} '{name}' is missing on the target")),
            Some(t) if t != value => out.push(format!(
                "{what} '{name}': {value} on the source, {t} on the target"
            )),
            Some(_) => {}
        }
    }
    for name in target.keys().filter(|n| !source.contains_key(*n)) {
        out.push(format!("{what} '{name}' exists only on the target"));
    }
    out
}

/// What the two databases hold, side by side.
struct Compared {
    src_rows: Rows,
    dst_rows: Rows,
    src_seqs: Rows,
    dst_seqs: Rows,
    src_views: Rows,
    dst_views: Rows,
    /// (name, kind, owner) of every object the app's role does not own.
    wrong: Vec<(String, String, String)>,
}

async fn compare<S: Shell>(
    src: &S,
    dst: &S,
    admin: &(Place, Place),
    database: &str,
    role: &str,
) -> Result<Compared, StepFailure> {
    let both = |sql: String| async move {
        let (a, b) = tokio::join!(
            query(src, &admin.0, database, &sql, &[]),
            query(dst, &admin.1, database, &sql, &[])
        );
        Ok::<_, StepFailure>((keyed(&a?), keyed(&b?)))
    };
    let (src_rows, dst_rows) = both(counts_sql()).await?;
    let (src_seqs, dst_seqs) = both(sequences_sql()).await?;
    let (src_views, dst_views) = both(matviews_sql()).await?;
    let wrong = query(dst, &admin.1, database, &ownership_sql(), &[("role", role)])
        .await?
        .iter()
        .filter_map(|l| serde_json::from_str::<Vec<Json>>(l).ok())
        .map(|row| {
            let s = |i: usize| row.get(i).and_then(Json::as_str).unwrap_or("?").to_string();
            (s(0), s(1), s(2))
        })
        .collect();
    Ok(Compared {
        src_rows,
        dst_rows,
        src_seqs,
        dst_seqs,
        src_views,
        dst_views,
        wrong,
    })
}

pub async fn run(_step: &StepSpec, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    let database = ctx.vars.text("database")?;
    let role = ctx.vars.text("db_user")?;
    let admin = (
        ctx.runtime(Role::Source).db_admin,
        ctx.runtime(Role::Target).db_admin,
    );
    ctx.connect().await?;
    let hosts = ctx.connected()?;
    let (src, dst) = (&hosts.source, &hosts.target);
    let c = compare(src, dst, &admin, &database, &role).await?;
    // In a rehearsal the old host kept serving after the dump: counts may have
    // moved on, but every table must be there. Missing tables still fail.
    let live = ctx.opts.mode == crate::events::RunMode::Rehearse;
    match verdict(io, dst, &c, live, &database, &role) {
        None => Ok(Done::Completed),
        Some(failure) => Err(failure),
    }
}

/// Says every check and decides: any difference in the data, or any object
/// not owned by the app's role, is the step's failure.
fn verdict<S: Shell>(
    io: &StepIo,
    dst: &S,
    c: &Compared,
    live: bool,
    database: &str,
    role: &str,
) -> Option<StepFailure> {
    let owners: Vec<String> = c
        .wrong
        .iter()
        .map(|(name, kind, owner)| format!("{kind} '{name}' is owned by '{owner}', not '{role}'"))
        .collect();
    let (view_diffs, recomputed) = matview_differences(&c.src_views, &c.dst_views);
    let mut row_diffs = differences("table", &c.src_rows, &c.dst_rows);
    let mut seq_diffs = differences("sequence", &c.src_seqs, &c.dst_seqs);
    let warned = if live {
        excuse_rehearsal(io, dst, c, &mut row_diffs, &mut seq_diffs)
    } else {
        Vec::new()
    };
    let report = |name: &str, diffs: &[String], ok: String| {
        if !warned.contains(&name) {
            say(io, dst, name, diffs, ok);
        }
    };
    let total_rows: u64 = c
        .src_rows
        .values()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    report(
        "row counts",
        &row_diffs,
        format!("{} tables, {total_rows} rows, identical", c.src_rows.len()),
    );
    if recomputed.is_empty() || !view_diffs.is_empty() {
        report(
            "materialized views",
            &view_diffs,
            format!(
                "{} materialized views, populated as on the source, same rows",
                c.src_views.len()
            ),
        );
    } else {
        io.check(
            dst.name(),
            "materialized views",
            Warn,
            format!(
                "{} materialized views, populated as on the source; the restore recomputed them and {} hold(s) other rows now (the query reads the clock or the app refreshes it; the tables are identical): {}",
                c.src_views.len(),
                recomputed.len(),
                recomputed.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    report(
        "sequences",
        &seq_diffs,
        format!("{} sequences, identical values", c.src_seqs.len()),
    );
    report(
        "ownership",
        &owners,
        format!("everything owned by '{role}'"),
    );
    let data_differs = !(row_diffs.is_empty() && seq_diffs.is_empty() && view_diffs.is_empty());
    // Wrong ownership is the restore-as-postgres trap: the data is all there,
    // and the app answers every request with 'permission denied'.
    let ownership_headline = (!data_differs && !owners.is_empty()).then(|| {
        format!(
            "{} object(s) in the restored database are not owned by '{role}' ({}; first: {}): the app, which connects as '{role}', would fail with 'permission denied' or, at its next migration, 'must be owner'. Restore as the app's role (pg_restore --no-owner --role={role}), or give everything to it (REASSIGN OWNED BY <that role> TO {role}, as that role: it covers every kind, where ALTER TABLE covers only tables), then run again",
            owners.len(),
            kinds_summary(&c.wrong),
            owners[0]
        )
    });
    let mut failures = Vec::new();
    failures.extend(row_diffs);
    failures.extend(seq_diffs);
    failures.extend(view_diffs);
    failures.extend(owners);
    if c.src_rows.is_empty() {
        failures.push(format!("the source database '{database}' has no tables: refusing to call an empty restore verified"));
    }
    (!failures.is_empty()).then(|| StepFailure {
        stderr_tail: failures.iter().take(30).cloned().collect(),
        ..StepFailure::on(
            dst,
            ownership_headline.unwrap_or_else(|| {
                format!(
                    "the restored database differs from the source: {}",
                    failures[0]
                )
            }),
        )
    })
}

/// A rehearsal's copy: counts and sequences that moved on since the dump are
/// a warning when every table is there; returns the checks it warned about.
fn excuse_rehearsal<S: Shell>(
    io: &StepIo,
    dst: &S,
    c: &Compared,
    row_diffs: &mut Vec<String>,
    seq_diffs: &mut Vec<String>,
) -> Vec<&'static str> {
    let mut warned = Vec::new();
    let same_tables = c.src_rows.keys().eq(c.dst_rows.keys());
    for (name, diffs) in [("row counts", row_diffs), ("sequences", seq_diffs)] {
        if !diffs.is_empty() && same_tables {
            io.check(
                dst.name(),
                name,
                Warn,
                format!(
                    "{} difference(s) since the dump, as the old host kept serving (a rehearsal): {}",
                    diffs.len(),
                    diffs.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
                ),
            );
            diffs.clear();
            warned.push(name);
        }
    }
    warned
}

/// One check: passed with `ok`, or failed with the first ten differences.
fn say<S: Shell>(io: &StepIo, dst: &S, name: &str, diffs: &[String], ok: String) {
    if diffs.is_empty() {
        io.check(dst.name(), name, Pass, ok);
    } else {
        let shown: Vec<&str> = diffs.iter().take(10).map(String::as_str).collect();
        let more = diffs.len().saturating_sub(10);
        io.check(
            dst.name(),
            name,
            Fail,
            format!(
                "{}{}",
                shown.join("; "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[(&str, &str)]) -> Rows {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn differences_name_every_table() {
        let src = rows(&[
            ("public.accounts", "10"),
            ("pghero.stats", "3"),
            ("public.a", "1"),
        ]);
        let dst = rows(&[
            ("public.accounts", "9"),
            ("public.a", "1"),
            ("public.extra", "0"),
        ]);
        assert_eq!(
            differences("table", &src, &dst),
            [
                "table 'pghero.stats' is missing on the target",
                "table 'public.accounts': 10 on the source, 9 on the target",
                "table 'public.extra' exists only on the target",
            ]
        );
    }

    #[test]
    fn recomputed_views_warn_but_missing_or_empty_ones_fail() {
        let src = rows(&[
            ("public.global_follow_recommendations", "175"),
            ("public.instances", "4"),
            ("public.account_summaries", "30"),
            ("public.gone", "1"),
            ("public.lazy", UNPOPULATED),
        ]);
        let dst = rows(&[
            ("public.global_follow_recommendations", "174"),
            ("public.instances", "4"),
            ("public.account_summaries", UNPOPULATED),
            ("public.lazy", UNPOPULATED),
        ]);
        let (fails, moved) = matview_differences(&src, &dst);
        assert_eq!(
            fails,
            [
                "materialized view 'public.account_summaries': populated on the source, not populated on the target",
                "materialized view 'public.gone' is missing on the target",
            ]
        );
        assert_eq!(moved, ["'public.global_follow_recommendations' 175 -> 174"]);
    }

    /// Every kind an app's migrations may alter has its place in the check.
    #[test]
    fn the_ownership_check_covers_every_kind_a_migration_alters() {
        let sql = ownership_sql();
        for kind in [
            "'enum type'",
            "'composite type'",
            "'domain'",
            "'range type'",
            "'table'",
            "'partitioned table'",
            "'sequence'",
            "'view'",
            "'materialized view'",
            "'foreign table'",
            "'function'",
            "'procedure'",
            "'aggregate'",
            "'schema'",
            "'collation'",
            "'text search configuration'",
            "'operator'",
            "'operator class'",
            "'event trigger'",
        ] {
            assert!(sql.contains(kind), "{kind} is not checked");
        }
        // What an extension's script made is the extension's, in every catalog.
        assert_eq!(
            sql.matches("FROM ext WHERE ext.classid").count(),
            OWNED.len()
        );
    }

    #[test]
    fn wrong_owners_are_summed_up_by_kind() {
        let row = |n: &str, k: &str| (n.to_string(), k.to_string(), "postgres".to_string());
        assert_eq!(
            kinds_summary(&[
                row("public.a", "enum type"),
                row("public.b", "enum type"),
                row("public.f()", "function"),
            ]),
            "2 enum types, 1 function"
        );
    }

    #[test]
    fn keyed_rows_from_psql_json() {
        let lines = vec![
            r#"["public","statuses",42]"#.to_string(),
            r#"["x","s",null]"#.to_string(),
        ];
        let k = keyed(&lines);
        assert_eq!(k["public.statuses"], "42");
        assert_eq!(k["x.s"], "null");
    }
}
