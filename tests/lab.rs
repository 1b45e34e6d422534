//! Migrations against the two-host lab (tests/lab/): real sshd, PostgreSQL,
//! rsync and Redis in network + mount namespaces. These need root and the lab:
//! `tests/lab/up`, then `cargo test -- --include-ignored` (what `tests/run` does).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
// a test crate: a failed expectation is the test failing
// A lab scenario reads best as one story from setup to the last check.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use hikkoshi::events::{EngineEvent, RunOutcome};
use hikkoshi::journal::Journal;

/// The lab is one shared machine: its tests take turns.
static LAB: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(|e| e.into_inner())
}

fn lab_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lab")
        .join(name)
}

struct Lab {
    dir: PathBuf,
    config: PathBuf,
    ssh_config: PathBuf,
    old_addr: String,
    new_addr: String,
    domain: String,
}

fn lab() -> Lab {
    let out = Command::new(lab_script("env"))
        .output()
        .expect("run tests/lab/env");
    assert!(
        out.status.success(),
        "the lab is not up: run tests/lab/up first\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vars: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
        .collect();
    let get = |k: &str| {
        PathBuf::from(
            vars.get(k)
                .unwrap_or_else(|| panic!("tests/lab/env has no {k}")),
        )
    };
    Lab {
        dir: get("HIKKOSHI_LAB_DIR"),
        config: get("HIKKOSHI_LAB_CONFIG"),
        ssh_config: get("HIKKOSHI_LAB_SSH_CONFIG"),
        old_addr: get("HIKKOSHI_LAB_OLD_ADDR").display().to_string(),
        new_addr: get("HIKKOSHI_LAB_NEW_ADDR").display().to_string(),
        domain: get("HIKKOSHI_LAB_DOMAIN").display().to_string(),
    }
}

fn reset() {
    let out = Command::new(lab_script("reset"))
        .output()
        .expect("run tests/lab/reset");
    assert!(
        out.status.success(),
        "tests/lab/reset failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command inside a lab host, with arguments passed through untouched.
fn exec(host: &str, args: &[&str]) -> Output {
    Command::new(lab_script("exec"))
        .arg(host)
        .args(args)
        .output()
        .expect("run tests/lab/exec")
}

fn exec_ok(host: &str, args: &[&str]) -> String {
    let out = exec(host, args);
    assert!(
        out.status.success(),
        "on {host}: {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn psql(host: &str, db: &str, sql: &str) -> String {
    exec_ok(
        host,
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ],
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    state: tempfile::TempDir,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn hikkoshi(args: &[&str]) -> Run {
    let state = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_hikkoshi"))
        .args(args)
        .env("HOME", state.path())
        .env("XDG_STATE_HOME", state.path().join("state"))
        .env("COLUMNS", "100")
        .output()
        .expect("run hikkoshi");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        state,
    }
}

/// Every table in every schema: row count and a digest of its whole content.
fn database_digest(host: &str) -> BTreeMap<String, String> {
    database_digest_of(host, "mastodon_production")
}

fn database_digest_of(host: &str, db: &str) -> BTreeMap<String, String> {
    let runuser = ["runuser", "-u", "postgres", "--"]
        .map(String::from)
        .to_vec();
    digest_with(host, runuser, db, None)
}

/// psql after `prefix` (runuser on a host, docker exec into a stack's
/// container), the SQL through stdin.
fn psql_with(host: &str, mut prefix: Vec<String>, db: &str, sql: &str) -> String {
    prefix.extend(
        [
            "psql",
            "-XAtq",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
        ]
        .map(String::from),
    );
    exec_with_input(host, &prefix, sql)
}

/// Every table by row count and content digest; the lab's heartbeat table
/// only up to id `beats` when given.
fn digest_with(
    host: &str,
    prefix: Vec<String>,
    db: &str,
    beats: Option<i64>,
) -> BTreeMap<String, String> {
    let filter = beats.map_or_else(String::new, |b| format!("WHERE id <= {b}"));
    let sql = format!(
        r"SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), '''')) FROM %I.%I t %s', n.nspname || '.' || c.relname, n.nspname, c.relname, CASE WHEN c.relname = 'hikkoshi_lab_heartbeats' THEN '{filter}' ELSE '' END)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
ORDER BY 1
\gexec"
    );
    psql_with(host, prefix, db, &sql)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once('|')?;
            Some((name.to_string(), rest.to_string()))
        })
        .collect()
}

fn sequences(host: &str) -> String {
    sequences_of(host, "mastodon_production")
}

fn sequences_of(host: &str, db: &str) -> String {
    psql(
        host,
        db,
        "SELECT schemaname || '.' || sequencename || '=' || coalesce(last_value::text, 'null') FROM pg_sequences ORDER BY 1",
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u32,
    size: u64,
    sha256: String,
}

/// A tree as the host sees it, read through the lab's per-host directory.
fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            let rel = p.strip_prefix(root).expect("inside root").to_path_buf();
            let (kind, sha256) = if meta.is_dir() {
                ('d', String::new())
            } else if meta.file_type().is_symlink() {
                (
                    'l',
                    std::fs::read_link(&p)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default(),
                )
            } else {
                let bytes = std::fs::read(&p).expect("read file");
                ('f', format!("{:x}", Sha256::digest(&bytes)))
            };
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: meta.permissions().mode() & 0o7777,
                    uid: meta.uid(),
                    size: if kind == 'f' { meta.len() } else { 0 },
                    sha256,
                },
            );
            if meta.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn host_path(lab: &Lab, host: &str, bind: &str, rest: &str) -> PathBuf {
    lab.dir.join("hosts").join(host).join(bind).join(rest)
}

/// Redis content, type by type, as text that compares exactly.
fn redis_content(host: &str) -> BTreeMap<String, String> {
    let keys = exec_ok(host, &["redis-cli", "--scan"]);
    let mut out = BTreeMap::new();
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let kind = exec_ok(host, &["redis-cli", "TYPE", key])
            .trim()
            .to_string();
        let value = match kind.as_str() {
            "string" => exec_ok(host, &["redis-cli", "GET", key]),
            "list" => exec_ok(host, &["redis-cli", "LRANGE", key, "0", "-1"]),
            "set" => {
                let mut m: Vec<String> = exec_ok(host, &["redis-cli", "SMEMBERS", key])
                    .lines()
                    .map(String::from)
                    .collect();
                m.sort();
                m.join("\n")
            }
            "zset" => exec_ok(host, &["redis-cli", "ZRANGE", key, "0", "-1", "WITHSCORES"]),
            "hash" => {
                let mut m: Vec<String> = exec_ok(host, &["redis-cli", "HGETALL", key])
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
                    .chunks(2)
                    .map(|c| c.join("="))
                    .collect();
                m.sort();
                m.join("\n")
            }
            other => format!("<{other}>"),
        };
        out.insert(key.to_string(), format!("{kind}: {value}"));
    }
    out
}

fn unit_state(host: &str, verb: &str, unit: &str) -> String {
    String::from_utf8_lossy(&exec(host, &["systemctl", verb, unit]).stdout)
        .trim()
        .to_string()
}

const SERVICES: [&str; 3] = ["mastodon-web", "mastodon-sidekiq", "mastodon-streaming"];

fn assert_services(host: &str, active: &str, enabled: &str) {
    for unit in SERVICES {
        assert_eq!(
            unit_state(host, "is-active", unit),
            active,
            "{unit} on {host}"
        );
        assert_eq!(
            unit_state(host, "is-enabled", unit),
            enabled,
            "{unit} on {host}"
        );
    }
}

fn calls(lab: &Lab, host: &str) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(host_path(lab, host, "state", "calls.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn called(calls: &[serde_json::Value], tool: &str, argv: &[&str]) -> Option<serde_json::Value> {
    calls
        .iter()
        .find(|c| {
            c["tool"] == tool
                && c["argv"].as_array().is_some_and(|a| {
                    let a: Vec<&str> = a.iter().filter_map(|x| x.as_str()).collect();
                    a.windows(argv.len()).any(|w| w == argv)
                })
        })
        .cloned()
}

/// The source as it was before a run: what the target must equal afterwards.
struct Before {
    db: BTreeMap<String, String>,
    sequences: String,
    media_src: PathBuf,
    media: BTreeMap<PathBuf, Entry>,
    env_src: PathBuf,
    env_bytes: Vec<u8>,
    redis: BTreeMap<String, String>,
}

/// Snapshots the freshly reset source, and checks it holds enough for the
/// comparisons after a run to mean something.
fn snapshot_source(lab: &Lab) -> Before {
    let db = database_digest("old");
    let seq = sequences("old");
    let media_src = host_path(lab, "old", "home-mastodon", "live/public/system");
    let media = tree(&media_src);
    let env_src = host_path(lab, "old", "home-mastodon", "live/.env.production");
    let env_bytes = std::fs::read(&env_src).expect("source .env");
    let redis = redis_content("old");
    assert!(
        db.len() > 100,
        "the lab's source database looks unseeded: {} tables",
        db.len()
    );
    assert!(
        db.keys().any(|t| t.starts_with("pghero.")),
        "the lab should hold a schema outside public"
    );
    assert!(media.len() > 50, "the lab's media looks unseeded");
    assert!(redis.len() > 3, "the lab's Redis looks unseeded");

    Before {
        db,
        sequences: seq,
        media_src,
        media,
        env_src,
        env_bytes,
        redis,
    }
}

/// Everything a successful migration of the lab must leave, checked the same
/// way whichever front end drove the run. `printed` is what the operator saw
/// (stdout and stderr, or the wizard's screens): no secret may be in it.
fn assert_migrated(lab: &Lab, before: &Before, journal: &Path, printed: &[&str]) {
    // Database: every table of every schema, by content; sequences; ownership.
    let db_after = database_digest("new");
    assert_eq!(before.db, db_after, "tables differ between old and new");
    assert_eq!(before.sequences, sequences("new"), "sequences differ");
    let foreign_owned = psql(
        "new",
        "mastodon_production",
        "SELECT n.nspname || '.' || c.relname || ' ' || pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r','p','S','v','m') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
         AND pg_get_userbyid(c.relowner) <> 'mastodon'",
    );
    assert_eq!(
        foreign_owned.trim(),
        "",
        "objects not owned by mastodon on the target"
    );
    assert_eq!(
        psql(
            "new",
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'mastodon_production'"
        )
        .trim(),
        "mastodon"
    );

    // The source database was not touched.
    assert_eq!(
        before.db,
        database_digest("old"),
        "the source database changed"
    );

    // Media: names, kinds, modes, owners, sizes and content.
    let media_dst = host_path(lab, "new", "home-mastodon", "live/public/system");
    assert_eq!(
        before.media,
        tree(&media_dst),
        "media differ between old and new"
    );
    assert_eq!(
        before.media,
        tree(&before.media_src),
        "the source media changed"
    );

    // .env.production: byte for byte, 0600, owned by mastodon.
    let env_dst = host_path(lab, "new", "home-mastodon", "live/.env.production");
    assert_eq!(
        std::fs::read(&env_dst).expect("target .env"),
        before.env_bytes
    );
    let meta = std::fs::metadata(&env_dst).expect("meta");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        meta.uid(),
        std::fs::metadata(&before.env_src).expect("meta").uid()
    );

    // Redis: the Sidekiq queues and everything else.
    assert_eq!(before.redis, redis_content("new"), "Redis content differs");

    // Services: live on the new host, stopped and disabled on the old one.
    assert_services("new", "active", "enabled");
    assert_services("old", "inactive", "disabled");
    let health = exec_ok("new", &["curl", "-fsS", "http://127.0.0.1:3000/health"]);
    assert_eq!(health.trim(), "OK");

    // The app's own steps ran on the new host, as the app user, in production.
    let new_calls = calls(lab, "new");
    let precompile = called(
        &new_calls,
        "bundle",
        &["exec", "rails", "assets:precompile"],
    )
    .expect("assets:precompile ran");
    assert_eq!(precompile["env"]["RAILS_ENV"], "production");
    assert_eq!(precompile["user"], "mastodon");
    assert!(
        called(&new_calls, "tootctl", &["feeds", "build"]).is_some(),
        "feeds build ran"
    );
    assert!(
        called(&new_calls, "tootctl", &["search", "deploy"]).is_some(),
        "search deploy ran (ES_ENABLED=true)"
    );
    assert!(
        called(&calls(lab, "old"), "tootctl", &["feeds", "build"]).is_none(),
        "nothing app-level ran on the old host"
    );

    // Secrets: none of the .env's secret values reached the journal or the screen.
    let journal_text = std::fs::read_to_string(journal).expect("journal");
    let env_text = String::from_utf8_lossy(&before.env_bytes).into_owned();
    let mut secrets: Vec<(String, String)> = Vec::new();
    for (key, value) in hikkoshi::steps::preflight::parse_env(&env_text) {
        for secret in hikkoshi::redact::secrets_in(&key, &value) {
            secrets.push((key.clone(), secret));
        }
    }
    assert!(
        secrets
            .iter()
            .any(|(k, v)| k == "SMTP_PASSWORD" && v.contains(['"', '$', '\'', '\\'])),
        "the lab's SMTP_PASSWORD should hold quoting characters: {secrets:?}"
    );
    assert!(
        secrets.len() >= 6,
        "the lab's .env should hold several secrets"
    );
    // Short values ("true", a port) are settings, never masked; secrets are long.
    for (key, value) in secrets.iter().filter(|(_, v)| v.len() >= 8) {
        assert!(
            !journal_text.contains(value.as_str()),
            "{key}'s value is in the journal"
        );
        assert!(
            !printed.iter().any(|p| p.contains(value.as_str())),
            "{key}'s value was printed"
        );
    }

    // The journal reads back and says the same.
    let records = Journal::read(journal).expect("journal reads back");
    assert!(matches!(
        records.last().map(|r| &r.event),
        Some(EngineEvent::RunFinished {
            outcome: RunOutcome::Succeeded,
            ..
        })
    ));
    let state = hikkoshi::run_state::RunState::from_records(&records);
    assert!(
        state
            .downtime(jiff::Timestamp::now())
            .is_some_and(|d| d.as_secs() > 0)
    );
    // With [dns] expect, the public check shows the new host serving.
    assert_eq!(
        state.downtime_end_step.as_deref(),
        Some("public-health"),
        "the downtime did not end at the pinned check"
    );

    // Nothing left behind: no dump, no relay key, no injected command ran.
    for host in ["old", "new"] {
        assert!(
            !host_path(lab, host, "home-mastodon", "hikkoshi-work").exists(),
            "work dir left on {host}"
        );
        assert!(
            !host_path(lab, host, "tmp", "hikkoshi-pwned").exists(),
            "a file name ran as a command on {host}"
        );
    }
    let keys = std::fs::read_to_string(host_path(
        lab,
        "new",
        "home-mastodon",
        ".ssh/authorized_keys",
    ))
    .unwrap_or_default();
    assert!(
        !keys.contains("hikkoshi-relay"),
        "the relay key is still authorised on new"
    );
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn headless_run_migrates_the_lab_with_zero_differences() {
    let (_guard, lab, before) = fresh_lab();

    let journal_dir = tempfile::tempdir().expect("tempdir");
    let journal = journal_dir.path().join("run.jsonl");
    let run = hikkoshi(&[
        "run",
        "--config",
        lab.config.to_str().expect("utf-8"),
        "--headless",
        "--yes",
        "--journal",
        journal.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert_migrated(&lab, &before, &journal, &[&run.stdout, &run.stderr]);
    let pinned = format!(
        "[ok  ] {}: pinned health: https://{}/health answered 200 from {}",
        lab.new_addr, lab.domain, lab.new_addr
    );
    assert!(run.stdout.contains(&pinned), "{}", run.show());
    // The seed leaves 'instances' out of date (see seed.sql): the restore
    // recomputes it, which is a warning, not a difference in the data.
    assert!(
        run.stdout.contains("[WARN] ")
            && run.stdout.contains("'public.instances' ")
            && run.stdout.contains("recomputed them"),
        "{}",
        run.show()
    );
    drop(run.state);
}

/// The lab's config, elsewhere (its relative paths made absolute), plus `extra`.
fn config_with(lab: &Lab, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(&lab.config).expect("lab config");
    let ssh = format!("config_file = \"{}\"", lab.ssh_config.display());
    let ca = format!(
        "ca_file = \"{}\"",
        lab.config.with_file_name("ca.pem").display()
    );
    let text = with_line(&with_line(&text, "config_file", &ssh), "ca_file", &ca);
    let path = dir.path().join("migration.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).expect("config");
    (dir, path)
}

/// The new host's sshd rewritten by `edit` and reloaded; `tests/lab/reset`
/// puts the lab's own configuration back (and reloads it).
fn harden_new_sshd(lab: &Lab, edit: impl Fn(&str) -> String, port: u16, addr: &str) {
    let path = host_path(lab, "new", "etc-ssh", "sshd_config");
    let text = std::fs::read_to_string(&path).expect("new's sshd_config");
    let hardened = edit(&text);
    assert_ne!(hardened, text, "the sshd_config was not changed");
    std::fs::write(&path, hardened).expect("write sshd_config");
    exec_ok(
        "new",
        &[
            "sh",
            "-c",
            "kill -HUP \"$(cat /var/lib/hikkoshi-host/sshd.pid)\"",
        ],
    );
    let port = port.to_string();
    wait_for("sshd listening as hardened", || {
        exec("new", &["ssh-keyscan", "-T", "2", "-p", &port, addr])
            .stdout
            .len()
            > 10
    });
}

/// A target whose sshd is hardened — another port, or only its own address —
/// is moved with rsync's delta transfer all the same: the relay connects
/// where sshd really listens, and its key is gone afterwards.
#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_target_with_a_hardened_sshd_is_moved_with_zero_differences() {
    let (_guard, lab, _) = fresh_lab();
    let new_addr = lab.new_addr.clone();
    type Edit = Box<dyn Fn(&str) -> String>;
    let shapes: [(&str, Edit, u16, String); 2] = [
        (
            "Port 2222",
            Box::new(|t: &str| t.replace("Port 22\n", "Port 2222\n")),
            2222,
            "127.0.0.1".to_string(),
        ),
        (
            "ListenAddress on its lab address only",
            Box::new(move |t: &str| {
                t.replace(
                    "ListenAddress 0.0.0.0\n",
                    &format!("ListenAddress {new_addr}\n"),
                )
            }),
            22,
            lab.new_addr.clone(),
        ),
    ];
    for (shape, edit, port, relay_addr) in shapes {
        reset();
        let before = snapshot_source(&lab);
        harden_new_sshd(&lab, edit, port, &relay_addr);
        // Where the relay used to connect, nothing answers now.
        assert!(
            exec("new", &["ssh-keyscan", "-T", "2", "-p", "22", "127.0.0.1"])
                .stdout
                .is_empty(),
            "{shape}: sshd still answers on 127.0.0.1:22"
        );
        // The operator reaches the hardened sshd as its admin would: its
        // port in ssh_config, the host key known under the host's name.
        let dir = tempfile::tempdir().expect("tempdir");
        let ssh_text = std::fs::read_to_string(&lab.ssh_config).expect("lab ssh config");
        let ssh = dir.path().join("ssh_config");
        std::fs::write(
            &ssh,
            ssh_text.replace(
                &format!("    HostName {}\n", lab.new_addr),
                &format!(
                    "    HostName {}\n    Port {port}\n    HostKeyAlias new\n",
                    lab.new_addr
                ),
            ),
        )
        .expect("ssh config");
        let config = lab_config_using(&lab, dir.path(), &ssh);
        let journal = dir.path().join("run.jsonl");
        let run = spawn_run(&config, &journal, &[]).finish();
        assert_eq!(run.code, Some(0), "{shape}: {}", run.show());
        let at = format!("sshd answers on {relay_addr}:{port} (from its configuration)");
        assert!(run.stdout.contains(&at), "{shape}: {}", run.show());
        // Zero differences, media included; the relay's key is gone.
        assert_migrated(&lab, &before, &journal, &[&run.stdout, &run.stderr]);
    }
    reset();
    // The lab's own sshd is back.
    assert!(
        exec("new", &["ssh-keyscan", "-T", "2", "-p", "22", "127.0.0.1"])
            .stdout
            .len()
            > 10
    );
}

/// The other two ways the database can move, forced by the config: a stream
/// with no dump file anywhere, and parallel workers on both hosts with the
/// dump as a directory; the second run also leaves the remote-media cache behind.
#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn the_database_moves_as_a_stream_and_in_parallel() {
    let (_guard, lab, before) = fresh_lab();
    let (dir, config) = config_with(&lab, "[move]\ndatabase = \"stream\"\n");
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&config, &journal, &[]).finish();
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        run.stdout
            .contains("database move: stream: pg_dump -Fc -Z ")
            && run
                .stdout
                .contains("streamed from old to new through this machine"),
        "{}",
        run.show()
    );
    for skipped in [
        "skipped: dump: only runs if !db_stream",
        "skipped: move-dump: only runs if dump_is_file",
        "skipped: move-dump-dir: only runs if db_parallel",
    ] {
        assert!(
            run.stdout.contains(skipped),
            "no dump file in a stream:\n{}",
            run.show()
        );
    }
    assert_migrated(&lab, &before, &journal, &[&run.stdout, &run.stderr]);

    reset();
    let (dir, config) = config_with(
        &lab,
        "[move]\ndatabase = \"parallel\"\nmedia_cache = \"skip\"\n",
    );
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&config, &journal, &[]).finish();
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        run.stdout
            .contains("database move: parallel: pg_dump -Fd -j ")
            && run.stdout.contains("pg_restore -j ")
            && run.stdout.contains("mastodon_production.d"),
        "{}",
        run.show()
    );
    assert!(
        run.stdout
            .contains("left out: /home/mastodon/live/public/system/cache")
            && run.stdout.contains("tootctl media refresh"),
        "the follow-up for the cache is named:\n{}",
        run.show()
    );
    assert_eq!(before.db, database_digest("new"), "tables differ");
    assert_eq!(before.sequences, sequences("new"), "sequences differ");
    assert_eq!(before.db, database_digest("old"), "the source changed");
    assert_eq!(
        before.media,
        tree(&before.media_src),
        "the source media changed"
    );
    let cache = Path::new("cache");
    let expected: BTreeMap<PathBuf, Entry> = before
        .media
        .iter()
        .filter(|(p, _)| !p.starts_with(cache))
        .map(|(p, e)| (p.clone(), e.clone()))
        .collect();
    assert!(expected.len() < before.media.len(), "the lab has a cache");
    let media_dst = host_path(&lab, "new", "home-mastodon", "live/public/system");
    assert_eq!(
        expected,
        tree(&media_dst),
        "everything but the cache arrived"
    );
    assert_services("new", "active", "enabled");
    reset();
}

/// Before DNS sends anyone to the new host, the new host must serve the
/// domain over HTTPS with a certificate that verifies: asked with the domain
/// pinned to the new address, through the real nginx on the new host.
#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn the_new_host_must_answer_as_visitors_will_before_dns_changes() {
    let _guard = lock();
    let lab = lab();
    reset();
    let db_before = database_digest("old");

    // Without the lab's CA the certificate does not verify: preflight refuses,
    // the night before rather than during the downtime.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(&lab.config).expect("lab config");
    let text = with_line(&text, "ca_file", "");
    let line = format!("config_file = \"{}\"", lab.ssh_config.display());
    let untrusted = dir.path().join("migration.toml");
    std::fs::write(&untrusted, with_line(&text, "config_file", &line)).expect("config");
    let run = hikkoshi(&["check", "--config", untrusted.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    let refused = format!(
        "[FAIL] {}: pinned health: https://{}/health pinned to {}",
        lab.new_addr, lab.domain, lab.new_addr
    );
    assert!(run.stdout.contains(&refused), "{}", run.show());
    assert!(
        run.stdout.contains("SSL certificate problem") && run.stdout.contains("letsencrypt"),
        "the cause and the fix are named:\n{}",
        run.show()
    );

    // nginx down on the new host: a warning in preflight; the run stops at the
    // pinned check, inside the downtime, and brings the old host back.
    exec_ok("new", &["systemctl", "stop", "nginx"]);
    let run = hikkoshi(&["check", "--config", lab.config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        run.stdout
            .contains(&format!("[WARN] {}: pinned health", lab.new_addr))
            && run.stdout.contains("nothing accepts connections"),
        "{}",
        run.show()
    );
    let journal = dir.path().join("run.jsonl");
    let run = hikkoshi(&[
        "run",
        "--config",
        lab.config.to_str().expect("utf-8"),
        "--headless",
        "--yes",
        "--journal",
        journal.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stderr.contains("step 'public-health' failed")
            && run.stderr.contains(&format!("pinned to {}", lab.new_addr))
            && run.stderr.contains("nginx"),
        "the step, the address and the cause are named:\n{}",
        run.show()
    );
    let records = Journal::read(&journal).expect("journal");
    assert!(
        matches!(
            rollback_outcome(&records),
            Some(hikkoshi::events::StepOutcome::Succeeded)
        ),
        "{}",
        run.show()
    );
    assert_services("old", "active", "enabled");
    assert_eq!(
        db_before,
        database_digest("old"),
        "the source database changed"
    );
    reset();
}

/// The new host cannot precompile its assets: a failure inside the downtime
/// window, after the old services, Redis and the target database were touched.
/// pg_restore on the new host fails (after answering preflight's --version):
/// a failure inside the downtime.
fn break_restore_on_new(lab: &Lab) {
    replace_tool(
        lab,
        "new",
        "pg_restore",
        "#!/bin/sh\ncase \"$1\" in --version) exec /usr/bin/pg_restore \"$@\";; esac\necho 'pg_restore: error: the lab breaks this restore' >&2\nexit 1\n",
    );
}

fn run_until_restore_fails(lab: &Lab, extra: &[&str]) -> (Run, Vec<hikkoshi::journal::Record>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");
    let mut args = vec![
        "run",
        "--config",
        lab.config.to_str().expect("utf-8"),
        "--headless",
        "--yes",
        "--journal",
        journal.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let run = hikkoshi(&args);
    assert_eq!(run.code, Some(1), "{}", run.show());
    remove_tool(lab, "new", "pg_restore");
    assert!(
        run.stderr.contains("step 'restore' failed"),
        "{}",
        run.show()
    );
    assert!(
        run.stderr.contains("the lab breaks this restore"),
        "the cause is shown:\n{}",
        run.show()
    );
    (run, Journal::read(&journal).expect("journal"))
}

fn rollback_outcome(
    records: &[hikkoshi::journal::Record],
) -> Option<hikkoshi::events::StepOutcome> {
    records.iter().rev().find_map(|r| match &r.event {
        EngineEvent::StepFinished { step, outcome, .. } if step == "rollback" => {
            Some(outcome.clone())
        }
        _ => None,
    })
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_failure_while_down_brings_the_old_host_back_unless_told_to_stay() {
    let _guard = lock();
    let lab = lab();
    reset();
    let db_before = database_digest("old");
    let media_src = host_path(&lab, "old", "home-mastodon", "live/public/system");
    let media_before = tree(&media_src);

    break_restore_on_new(&lab);
    let (run, records) = run_until_restore_fails(&lab, &[]);
    assert!(
        matches!(
            rollback_outcome(&records),
            Some(hikkoshi::events::StepOutcome::Succeeded)
        ),
        "the rollback step ran and succeeded:\n{}",
        run.show()
    );
    assert_services("old", "active", "enabled");
    assert_services("new", "inactive", "disabled");
    assert_eq!(unit_state("old", "is-active", "redis-server"), "active");
    assert_eq!(
        exec_ok("old", &["curl", "-fsS", "http://127.0.0.1:3000/health"]).trim(),
        "OK"
    );
    assert_eq!(
        db_before,
        database_digest("old"),
        "the source database changed"
    );
    assert_eq!(media_before, tree(&media_src), "the source media changed");

    // --on-failure stay: both hosts are left as they are, and the journal says why.
    reset();
    break_restore_on_new(&lab);
    let (run, records) = run_until_restore_fails(&lab, &["--on-failure", "stay"]);
    assert!(
        matches!(
            rollback_outcome(&records),
            Some(hikkoshi::events::StepOutcome::Skipped { .. })
        ),
        "{}",
        run.show()
    );
    assert!(
        run.stderr.contains("is DOWN"),
        "the admin is told the instance is down:\n{}",
        run.show()
    );
    assert_eq!(unit_state("old", "is-active", "mastodon-web"), "inactive");
    assert_eq!(
        db_before,
        database_digest("old"),
        "the source database changed"
    );
    reset();
}

/// A tmux server of the test's own (private socket, no user config) holding
/// one session: the wizard needs a real terminal. Killed on drop, so a failing
/// test leaves no wizard behind.
struct Tmux {
    socket: PathBuf,
}

const TMUX_SESSION: &str = "hikkoshi-wizard";

impl Tmux {
    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        cmd
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("run tmux (tests/lab/install-deps installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `argv` in a 120x40 terminal with `env` set; when it exits, its
    /// status is written to `status` (complete once the file exists) and the
    /// pane stays open so its last output can still be read.
    fn start(socket: PathBuf, env: &[(&str, &Path)], status: &Path, argv: &[&str]) -> Tmux {
        // Paths are arguments of a fixed script, never spliced into it.
        const WRAPPER: &str = r#"status=$1; shift; "$@"; echo $? >"$status.tmp" && mv "$status.tmp" "$status"; exec sleep 600"#;
        let tmux = Tmux { socket };
        let mut cmd = tmux.command();
        cmd.args([
            "new-session",
            "-d",
            "-s",
            TMUX_SESSION,
            "-x",
            "120",
            "-y",
            "40",
        ]);
        for (key, value) in env {
            cmd.arg("-e").arg(format!("{key}={}", value.display()));
        }
        // More than one argument: tmux executes them directly, without a shell.
        cmd.args(["sh", "-c", WRAPPER, "sh"]).arg(status).args(argv);
        let out = cmd
            .output()
            .expect("run tmux (tests/lab/install-deps installs it)");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", TMUX_SESSION])
    }

    fn send(&self, key: &str) {
        self.tmux(&["send-keys", "-t", TMUX_SESSION, "-l", key]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Also ends the wizard if the test failed while it still ran.
        let _ = self.command().arg("kill-server").output();
    }
}

/// The step title in the wizard's "Confirm" dialog, if one is shown: the
/// first line inside the box. The footer, drawn last, must offer the dialog's
/// keys too: tmux may hold half a frame when the screen is captured.
fn confirm_dialog(screen: &str) -> Option<String> {
    if !wizard_footer(screen).starts_with("y yes") {
        return None;
    }
    let lines: Vec<&str> = screen.lines().collect();
    let (row, line) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.contains("┌ Confirm ─"))?;
    let column = line.split("┌ Confirm ─").next()?.chars().count();
    let title: String = lines
        .get(row + 1)?
        .chars()
        .skip(column + 1)
        .take_while(|&c| c != '│')
        .collect();
    Some(title.trim().to_string())
}

/// A screen to fail with, plus the journal's report so far: the screen shows
/// only the end of a failed step's output, the report its whole failure.
fn wizard_failure(screen: &str, journal: &Path) -> String {
    let report = hikkoshi(&[
        "review",
        journal.to_str().expect("utf-8"),
        "--format",
        "markdown",
    ]);
    format!("{screen}\n--- the journal so far\n{}", report.show())
}

/// The header's second line: downtime, elapsed time and the run's mode.
fn wizard_status(screen: &str) -> &str {
    screen.lines().nth(1).unwrap_or_default()
}

/// The bottom line: the keys that apply now.
fn wizard_footer(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

const WIZARD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);
const POLL: std::time::Duration = std::time::Duration::from_millis(300);

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn wizard_run_in_a_terminal_migrates_the_lab_with_zero_differences() {
    use std::time::{Duration, Instant};

    let (_guard, lab, before) = fresh_lab();

    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");
    let status = dir.path().join("status");
    let tmux = Tmux::start(
        dir.path().join("tmux.sock"),
        &[
            ("HOME", dir.path()),
            ("XDG_STATE_HOME", &dir.path().join("state")),
        ],
        &status,
        &[
            env!("CARGO_BIN_EXE_hikkoshi"),
            "run",
            "--config",
            lab.config.to_str().expect("utf-8"),
            "--journal",
            journal.to_str().expect("utf-8"),
        ],
    );

    // Drive the wizard as an operator would: auto mode, confirming each
    // dialog, until the header says the run is over; then quit.
    let started = Instant::now();
    let mut screens: Vec<String> = Vec::new();
    // One entry per dialog, named by the title it showed first.
    let mut confirmed: Vec<String> = Vec::new();
    let mut last_yes: Option<Instant> = None;
    let mut dialog_up = false;
    loop {
        let screen = tmux.screen();
        if screens.last() != Some(&screen) {
            screens.push(screen.clone());
        }
        assert!(
            !status.exists(),
            "the wizard exited before the run finished:\n{}",
            wizard_failure(&screen, &journal)
        );
        assert!(
            started.elapsed() < WIZARD_DEADLINE,
            "the run did not finish within {WIZARD_DEADLINE:?}; last screen:\n{}",
            wizard_failure(&screen, &journal)
        );
        let header = wizard_status(&screen);
        let footer = wizard_footer(&screen);
        let dialog = confirm_dialog(&screen);
        let new_dialog = dialog.is_some() && !dialog_up;
        dialog_up = dialog.is_some();
        if let Some(title) = dialog {
            // The dialog stays up until the engine's next event redraws the
            // screen: answer it once, and again only if it lingers. Auto mode
            // is off after every confirmation, so two dialogs are always
            // apart by a screen without one.
            if new_dialog {
                confirmed.push(title);
            }
            if new_dialog || last_yes.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
                tmux.send("y");
                last_yes = Some(Instant::now());
            }
        } else if header.contains("finished: all steps succeeded") {
            // The end: the result and what is left to do, in place of a step.
            assert!(
                screen.contains("The run has ended")
                    && screen.contains("every step succeeded")
                    && screen.contains("left to do by hand"),
                "the end of the run is not summed up:\n{screen}"
            );
            tmux.send("q");
            break;
        } else if header.contains("finished") || footer.contains("r retry  s skip") {
            panic!(
                "the run did not succeed:\n{}",
                wizard_failure(&screen, &journal)
            );
        } else if header.trim_end().ends_with("step by step") {
            // Idle, or running a step just confirmed: auto mode goes on.
            tmux.send("a");
        }
        std::thread::sleep(POLL);
    }

    // The wizard quits at once on a finished run and prints the result.
    let quit_at = Instant::now();
    while !status.exists() {
        assert!(
            quit_at.elapsed() < Duration::from_secs(30),
            "the wizard did not exit after q:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let code = std::fs::read_to_string(&status).expect("exit status");
    // tmux may not have drawn the last output yet when the status appears.
    let result_line = format!("{}: every step succeeded", lab.domain);
    let mut last = tmux.screen();
    while !last.contains(&result_line) && quit_at.elapsed() < Duration::from_secs(35) {
        std::thread::sleep(Duration::from_millis(100));
        last = tmux.screen();
    }
    assert_eq!(
        code.trim(),
        "0",
        "the wizard's exit status; screen:\n{last}"
    );
    assert!(
        last.contains(&result_line),
        "the wizard's last words; screen:\n{last}"
    );
    screens.push(last);
    drop(tmux);

    // Each step that asked was answered in its own dialog.
    let records = Journal::read(&journal).expect("journal reads back");
    let asked = records
        .iter()
        .filter(|r| matches!(r.event, EngineEvent::AwaitingConfirm { .. }))
        .count();
    assert!(asked > 0, "no step asked for confirmation");
    assert_eq!(confirmed.len(), asked, "dialogs answered: {confirmed:?}");

    let printed: Vec<&str> = screens.iter().map(String::as_str).collect();
    assert_migrated(&lab, &before, &journal, &printed);

    // The journal reads back as a report, without a terminal.
    let journal_arg = journal.to_str().expect("utf-8");
    let review = hikkoshi(&["review", journal_arg, "--format", "markdown"]);
    assert_eq!(review.code, Some(0), "{}", review.show());
    assert!(
        review.stdout.contains("every step succeeded"),
        "{}",
        review.show()
    );
    assert!(
        review
            .stdout
            .lines()
            .any(|l| l.contains("| restore |") && l.contains("| ok |")),
        "a row for restore, ok:\n{}",
        review.show()
    );
    assert!(
        review
            .stdout
            .lines()
            .any(|l| l.starts_with("| downtime | ") && !l.contains("none")),
        "a downtime row:\n{}",
        review.show()
    );
    let review = hikkoshi(&["review", journal_arg, "--format", "json"]);
    assert_eq!(review.code, Some(0), "{}", review.show());
    let json: serde_json::Value =
        serde_json::from_str(&review.stdout).expect("review --format json is JSON");
    assert_eq!(
        json["outcome"],
        serde_json::json!({ "result": "succeeded" }),
        "{}",
        review.show()
    );
}

fn dns_set(address: &str, ttl: u32) {
    let out = Command::new(lab_script("dns-set"))
        .args([address, &ttl.to_string()])
        .output()
        .expect("run tests/lab/dns-set");
    assert!(
        out.status.success(),
        "dns-set failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn dns_ttl_is_checked_and_the_cutover_waits_for_the_switch() {
    let _guard = lock();
    let lab = lab();
    reset();

    // A day-long TTL: preflight says to lower it, and by how much to wait.
    dns_set(&lab.old_addr, 86400);
    let run = hikkoshi(&["check", "--config", lab.config.to_str().expect("utf-8")]);
    assert_eq!(
        run.code,
        Some(0),
        "a TTL is a warning, not a failure:\n{}",
        run.show()
    );
    assert!(
        run.stdout
            .contains("[WARN] dns: dns ttl: social.example.net has a TTL of 24h00m"),
        "{}",
        run.show()
    );

    // The record still points at the old host when the cutover begins; the
    // admin switches it during the step, and the step ends once resolvers follow.
    dns_set(&lab.old_addr, 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");
    let args = [
        "run".to_string(),
        "--config".into(),
        lab.config.display().to_string(),
        "--headless".into(),
        "--yes".into(),
        "--journal".into(),
        journal.display().to_string(),
    ];
    let child = std::thread::spawn(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        hikkoshi(&refs)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        // The cutover's resolver table, as the journal holds it for every round.
        let waiting = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| {
                v["event"] == "Propagation"
                    && v["report"]["propagated"] == 0
                    && v["report"]["total"] == 1
            });
        if waiting {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never reached the DNS step:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    dns_set(&lab.new_addr, 300);
    let run = child.join().expect("the run's thread");
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        run.stdout.contains("1 of 1 resolvers propagated"),
        "{}",
        run.show()
    );
    reset();
}

/// `text` with every line starting with `key` replaced by `line`.
fn with_line(text: &str, key: &str, line: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with(key) {
                line
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lab's config, but with ssh reading host keys from `known_hosts`.
fn lab_config_with(lab: &Lab, dir: &Path, known_hosts: &Path) -> PathBuf {
    let ssh_text = std::fs::read_to_string(&lab.ssh_config).expect("lab ssh config");
    let ssh = dir.join("ssh_config");
    let known = format!("  UserKnownHostsFile {}", known_hosts.display());
    std::fs::write(&ssh, with_line(&ssh_text, "UserKnownHostsFile", &known)).expect("ssh config");
    lab_config_using(lab, dir, &ssh)
}

/// The lab's config in `dir`, with ssh reading the client config `ssh`.
fn lab_config_using(lab: &Lab, dir: &Path, ssh: &Path) -> PathBuf {
    let text = std::fs::read_to_string(&lab.config).expect("lab config");
    let config = dir.join("migration.toml");
    let line = format!("config_file = \"{}\"", ssh.display());
    let text = with_line(&text, "config_file", &line);
    let ca = format!(
        "ca_file = \"{}\"",
        lab.config.with_file_name("ca.pem").display()
    );
    std::fs::write(&config, with_line(&text, "ca_file", &ca)).expect("config");
    config
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn check_passes_on_a_ready_lab_and_changes_nothing() {
    let _guard = lock();
    let lab = lab();
    reset();
    let before = database_digest("old");
    let run = hikkoshi(&["check", "--config", lab.config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        run.stdout
            .contains("ready: social.example.net can move from old to new"),
        "{}",
        run.show()
    );
    assert!(
        run.stdout.contains("schema 'pghero'"),
        "preflight names the schema outside public:\n{}",
        run.show()
    );
    assert_eq!(
        psql(
            "new",
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'mastodon_production'"
        )
        .trim(),
        "0"
    );
    assert_eq!(before, database_digest("old"));
    for unit in SERVICES {
        assert_eq!(unit_state("old", "is-active", unit), "active");
    }
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn check_refuses_a_target_database_that_holds_data() {
    let _guard = lock();
    let lab = lab();
    reset();
    psql(
        "new",
        "postgres",
        "CREATE DATABASE mastodon_production OWNER mastodon",
    );
    psql(
        "new",
        "mastodon_production",
        "CREATE TABLE important (note text); INSERT INTO important VALUES ('keep me')",
    );
    let run = hikkoshi(&["check", "--config", lab.config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stdout.contains(
            "[FAIL] new: target database: 'mastodon_production' already exists and holds 1 tables"
        ),
        "{}",
        run.show()
    );
    assert!(
        run.stderr.contains("hikkoshi: step 'preflight' failed"),
        "{}",
        run.show()
    );
    assert_eq!(
        psql("new", "mastodon_production", "SELECT note FROM important").trim(),
        "keep me"
    );
    reset();
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn unknown_and_changed_host_keys_stop_before_anything_runs() {
    let _guard = lock();
    let lab = lab();
    reset();
    let dir = tempfile::tempdir().expect("tempdir");

    // Unknown: an empty known_hosts.
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let config = lab_config_with(&lab, dir.path(), &empty);
    let run = hikkoshi(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stdout.contains("host key of 'old' is not known"),
        "{}",
        run.show()
    );
    assert!(
        run.stdout.contains("offers: ED25519 SHA256:"),
        "the fingerprint is shown:\n{}",
        run.show()
    );
    assert!(
        run.stdout
            .contains(&format!("ssh-keyscan -p 22 {} >>", lab.old_addr)),
        "how to accept it:\n{}",
        run.show()
    );
    assert_eq!(
        std::fs::read_to_string(&empty).expect("read"),
        "",
        "known_hosts must not be written"
    );

    // Changed: old's address recorded with new's key.
    let known = std::fs::read_to_string(lab.dir.join("operator/known_hosts")).expect("known_hosts");
    let field = |l: &str, n: usize| l.split_whitespace().nth(n).unwrap_or_default().to_string();
    let new_line = known
        .lines()
        .find(|l| field(l, 0).split(',').any(|h| h == lab.new_addr) && field(l, 1) == "ssh-ed25519")
        .expect("new's key in the lab's known_hosts");
    let old_names = known
        .lines()
        .map(|l| field(l, 0))
        .find(|names| names.split(',').any(|h| h == lab.old_addr))
        .expect("old's entry in the lab's known_hosts");
    let forged = dir.path().join("forged_known_hosts");
    std::fs::write(
        &forged,
        format!(
            "{old_names} {} {}\n{new_line}\n",
            field(new_line, 1),
            field(new_line, 2)
        ),
    )
    .expect("write");
    let config = lab_config_with(&lab, dir.path(), &forged);
    let run = hikkoshi(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stdout.contains("host key of 'old' has CHANGED"),
        "{}",
        run.show()
    );
    for unit in SERVICES {
        assert_eq!(unit_state("old", "is-active", unit), "active");
    }
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn hostile_arguments_arrive_intact_and_run_nothing() {
    let _guard = lock();
    let lab = lab();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(hostile_arguments(&lab));
    assert!(
        !host_path(&lab, "old", "tmp", "hikkoshi-pwned").exists(),
        "an argument ran as a command"
    );
}

async fn hostile_arguments(lab: &Lab) {
    let host = hikkoshi::remote::Host::connect(
        hikkoshi::remote::Role::Source,
        "old",
        Some(&lab.ssh_config),
    )
    .await
    .expect("connect to old");
    let hostile = [
        "plain",
        "with space",
        "it's",
        "\"double\"",
        "$(touch /tmp/hikkoshi-pwned)",
        "`touch /tmp/hikkoshi-pwned`",
        "; touch /tmp/hikkoshi-pwned",
        "a\nb",
        "-rf",
        "--",
        "",
        "日本語",
        "back\\slash",
        "!bang",
    ];
    for run_as in [
        hikkoshi::remote::RunAs::Login,
        hikkoshi::remote::RunAs::Root,
        hikkoshi::remote::RunAs::User("mastodon".into()),
    ] {
        let mut argv = vec!["printf".to_string(), "%s\\0".to_string()];
        argv.extend(hostile.iter().map(|s| s.to_string()));
        let mut cmd = hikkoshi::remote::RemoteCommand::new(run_as.clone(), argv);
        cmd.env = vec![("HOSTILE".into(), "$(touch /tmp/hikkoshi-pwned)".into())];
        cmd.cwd = Some("/tmp".into());
        let out = host.run_quiet(&cmd.umask("077")).await.expect("run");
        assert!(out.success(), "{run_as:?}: {:?}", out.stderr_tail);
        let got: Vec<&str> = out.stdout.split('\0').collect();
        assert_eq!(&got[..hostile.len()], &hostile[..], "{run_as:?}");
    }
    host.close().await;
    assert!(
        !host_path(lab, "old", "tmp", "hikkoshi-pwned").exists(),
        "an argument ran as a command"
    );
}

// ---------------------------------------------------------------------------
// Faults: each run below is broken on purpose, must fail with the step, host
// and cause named, leave the source as it was, and then finish with zero
// differences when resumed (`run --resume`) once the fault is gone.

/// The lab to itself, reset, with the source as it was before any run.
fn fresh_lab() -> (std::sync::MutexGuard<'static, ()>, Lab, Before) {
    let guard = lock();
    let lab = lab();
    reset();
    let before = snapshot_source(&lab);
    (guard, lab, before)
}

/// `hikkoshi run` started in the background, as a person would start it.
struct Background {
    child: std::process::Child,
    state: tempfile::TempDir,
}

fn spawn_run(config: &Path, journal: &Path, extra: &[&str]) -> Background {
    let state = tempfile::tempdir().expect("tempdir");
    let child = Command::new(env!("CARGO_BIN_EXE_hikkoshi"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--headless", "--yes", "--journal"])
        .arg(journal)
        .args(extra)
        .env("HOME", state.path())
        .env("XDG_STATE_HOME", state.path().join("state"))
        .env("COLUMNS", "100")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start hikkoshi");
    Background { child, state }
}

impl Background {
    fn finish(self) -> Run {
        let out = self.child.wait_with_output().expect("wait for hikkoshi");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            state: self.state,
        }
    }
}

/// Polls until `ready` holds (at most a minute), for the moment to strike.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "never saw: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn journal_has(journal: &Path, event: &str, step: &str) -> bool {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["event"] == event && v["step"] == step)
}

/// The restore itself, not preflight's `pg_restore --version`.
const RESTORE_PATTERN: &str = "pg_restore .*--role=";

fn restoring_on_new() -> bool {
    exec("new", &["pgrep", "-f", RESTORE_PATTERN])
        .status
        .success()
}

/// The run failed at `step`, saying so with the host and the cause, and the
/// source database is as it was.
fn assert_failed_cleanly(run: &Run, before: &Before, step: &str, host: &str, cause: &str) {
    assert_eq!(run.code, Some(1), "{}", run.show());
    let failed = format!("step '{step}' failed");
    assert!(
        run.stderr.contains(&failed),
        "expected {failed}:\n{}",
        run.show()
    );
    let said = &run.stderr[run.stderr.find(&failed).unwrap_or(0)..];
    assert!(said.contains(host), "the host is named:\n{}", run.show());
    assert!(
        said.contains(cause),
        "the cause '{cause}' is named:\n{}",
        run.show()
    );
    assert_eq!(
        before.db,
        database_digest("old"),
        "the source database changed"
    );
    assert_eq!(
        before.media,
        tree(&before.media_src),
        "the source media changed"
    );
}

/// Resumes the run of `journal` with the lab's config; it must complete the
/// migration exactly.
fn resume_to_the_end(lab: &Lab, before: &Before, journal: &Path) {
    let run = spawn_run(&lab.config, journal, &["--resume"]).finish();
    assert_eq!(run.code, Some(0), "the resumed run:\n{}", run.show());
    assert!(run.stdout.contains("resuming run "), "{}", run.show());
    assert_migrated(lab, before, journal, &[&run.stdout, &run.stderr]);
}

/// Replaces a per-host tool with a script (never writing through the shared stand-in).
fn replace_tool(lab: &Lab, host: &str, name: &str, script: &str) {
    let path = host_path(lab, host, "usr-local-bin", name);
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, script).expect("write the tool");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn remove_tool(lab: &Lab, host: &str, name: &str) {
    let _ = std::fs::remove_file(host_path(lab, host, "usr-local-bin", name));
}

/// pg_restore on the new host waits 2 s before it starts, so a test can strike
/// while it is surely running; `--version` (preflight) answers at once.
fn slow_restore(lab: &Lab) {
    replace_tool(
        lab,
        "new",
        "pg_restore",
        "#!/bin/sh\ncase \"$1\" in --version) ;; *) sleep 2 ;; esac\nexec /usr/bin/pg_restore \"$@\"\n",
    );
}

fn restore_standin(lab: &Lab, host: &str, name: &str) {
    let path = host_path(lab, host, "usr-local-bin", name);
    let _ = std::fs::remove_file(&path);
    std::os::unix::fs::symlink("hikkoshi-standin", &path).expect("relink the stand-in");
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_connection_cut_during_the_dump_transfer_is_survived() {
    let (_guard, lab, before) = fresh_lab();
    // The old host's disk reads dumps slowly, so the cut lands mid-transfer.
    replace_tool(
        &lab,
        "old",
        "cat",
        "#!/bin/sh\ncase \"$*\" in *.dump) exec python3 -c 'import sys, time\nf = open(sys.argv[1], \"rb\")\nwhile True:\n    b = f.read(65536)\n    if not b: break\n    sys.stdout.buffer.write(b); sys.stdout.buffer.flush(); time.sleep(0.03)' \"$2\";; esac\nexec /bin/cat \"$@\"\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&lab.config, &journal, &[]);
    let work = host_path(&lab, "new", "home-mastodon", "hikkoshi-work");
    wait_for("the dump half-way on new", || {
        std::fs::read_dir(&work)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|run_dir| std::fs::read_dir(run_dir.path()).ok())
            .flatten()
            .flatten()
            .any(|f| {
                f.file_name().to_string_lossy().ends_with(".hikkoshi-part")
                    && f.metadata().is_ok_and(|m| m.len() > 2 * 1024 * 1024)
            })
    });
    // The operator's sessions on new die, as when a link drops.
    exec_ok("new", &["pkill", "-f", "^sshd: root@notty"]);
    let run = run.finish();
    remove_tool(&lab, "old", "cat");
    assert_failed_cleanly(&run, &before, "move-dump", "new", "connection");
    assert_services("old", "active", "enabled");
    resume_to_the_end(&lab, &before, &journal);
    reset();
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_killed_restore_and_a_stopped_target_database_are_survived() {
    let (_guard, lab, before) = fresh_lab();
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");

    // pg_restore killed on the new host.
    slow_restore(&lab);
    let run = spawn_run(&lab.config, &journal, &[]);
    wait_for("pg_restore on new", restoring_on_new);
    exec_ok("new", &["pkill", "-KILL", "-f", RESTORE_PATTERN]);
    let run = run.finish();
    assert_failed_cleanly(&run, &before, "restore", "new", "pg_restore");
    assert!(
        run.stderr.contains("stays there if it got that far"),
        "the partial database is named in the report:\n{}",
        run.show()
    );
    assert_services("old", "active", "enabled");
    assert!(
        !psql("new", "postgres", "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'mastodon_production'")
            .trim()
            .is_empty(),
        "the partial restore carries hikkoshi's marker"
    );

    // Resumed: the partial database is dropped by its marker, and this time
    // the new host's PostgreSQL stops in the middle of the restore.
    let run = spawn_run(&lab.config, &journal, &["--resume"]);
    wait_for("pg_restore on new again", restoring_on_new);
    exec_ok("new", &["systemctl", "stop", "postgresql"]);
    let run = run.finish();
    assert!(
        run.stdout
            .contains("dropped 'mastodon_production', left by hikkoshi run"),
        "{}",
        run.show()
    );
    assert_failed_cleanly(&run, &before, "restore", "new", "pg_restore");
    // A stop may still be finishing when the run has failed.
    wait_for("PostgreSQL up again on new", || {
        let _ = exec("new", &["systemctl", "start", "postgresql"]);
        exec(
            "new",
            &["runuser", "-u", "postgres", "--", "pg_isready", "-q"],
        )
        .status
        .success()
    });
    remove_tool(&lab, "new", "pg_restore");

    resume_to_the_end(&lab, &before, &journal);
    reset();
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_full_disk_on_the_new_host_is_survived() {
    let (_guard, lab, before) = fresh_lab();
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&lab.config, &journal, &[]);
    wait_for("the work directory made", || {
        journal_has(&journal, "StepFinished", "prepare")
    });
    let work = host_path(&lab, "new", "home-mastodon", "hikkoshi-work");
    let run_dir = std::fs::read_dir(&work)
        .expect("work dir on new")
        .flatten()
        .next()
        .expect("the run's directory")
        .file_name();
    let target = format!("/home/mastodon/hikkoshi-work/{}", run_dir.to_string_lossy());
    let owner = format!(
        "size=2m,mode=0700,uid={},gid={}",
        std::fs::metadata(&work).expect("meta").uid(),
        std::fs::metadata(&work).expect("meta").gid()
    );
    exec_ok(
        "new",
        &[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &owner,
            "hikkoshi-full",
            &target,
        ],
    );
    let run = run.finish();
    let _ = exec("new", &["umount", &target]);
    assert_failed_cleanly(&run, &before, "move-dump", "new", "No space left on device");
    assert_services("old", "active", "enabled");
    resume_to_the_end(&lab, &before, &journal);
    reset();
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn services_that_will_not_stop_leave_the_old_host_serving() {
    let (_guard, lab, before) = fresh_lab();
    replace_tool(
        &lab,
        "old",
        "systemctl",
        "#!/bin/sh\ncase \" $* \" in *\" stop \"*) echo 'Failed to stop mastodon-web.service: Transaction is destructive.' >&2; exit 1;; esac\nexec /usr/local/bin/hikkoshi-standin systemctl \"$@\"\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&lab.config, &journal, &[]).finish();
    restore_standin(&lab, "old", "systemctl");
    assert_failed_cleanly(&run, &before, "stop-source", "old", "Failed to stop");
    assert_services("old", "active", "enabled");
    assert_eq!(
        psql(
            "new",
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'mastodon_production'"
        )
        .trim(),
        "0",
        "nothing was restored"
    );
    resume_to_the_end(&lab, &before, &journal);
    reset();
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_step_over_its_timeout_is_stopped_on_the_host_too() {
    let (_guard, lab, before) = fresh_lab();
    // The lab's profile, with a 3 s limit on precompiling; the new host's
    // precompile hangs.
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/profiles/mastodon.toml"),
    )
    .expect("profile")
    .replace(
        "id = \"precompile\"\n",
        "id = \"precompile\"\ntimeout = \"3s\"\n",
    );
    assert!(profile.contains("timeout = \"3s\""));
    std::fs::write(dir.path().join("slow.toml"), profile).expect("profile");
    let text = std::fs::read_to_string(&lab.config).expect("lab config");
    let text = with_line(&text, "profile", "profile = \"slow.toml\"");
    let text = with_line(
        &text,
        "config_file",
        &format!("config_file = \"{}\"", lab.ssh_config.display()),
    );
    let text = with_line(
        &text,
        "ca_file",
        &format!(
            "ca_file = \"{}\"",
            lab.config.with_file_name("ca.pem").display()
        ),
    );
    let config = dir.path().join("migration.toml");
    std::fs::write(&config, text).expect("config");
    replace_tool(&lab, "new", "bundle", "#!/bin/sh\nexec sleep 600\n");

    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&config, &journal, &[]).finish();
    restore_standin(&lab, "new", "bundle");
    assert_failed_cleanly(
        &run,
        &before,
        "precompile",
        "new",
        "did not finish within 3s",
    );
    assert!(
        run.stdout.contains("on new: stopped 1 process"),
        "the hanging command was stopped on the host:\n{}",
        run.show()
    );
    assert!(
        !exec("new", &["pgrep", "-f", "sleep 600"]).status.success(),
        "the timed-out command still runs on new"
    );
    assert_services("old", "active", "enabled");
    resume_to_the_end(&lab, &before, &journal);
    reset();
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn sigterm_during_a_step_stops_the_run_and_it_resumes() {
    let (_guard, lab, before) = fresh_lab();
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");
    slow_restore(&lab);
    let run = spawn_run(&lab.config, &journal, &[]);
    wait_for("pg_restore on new", restoring_on_new);
    let pid = run.child.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let run = run.finish();
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(run.stderr.contains("interrupted"), "{}", run.show());
    // Nothing of the stopped step goes on by itself on the new host.
    wait_for("pg_restore gone from new", || !restoring_on_new());
    let records = Journal::read(&journal).expect("the journal reads back");
    assert!(
        matches!(
            records.last().map(|r| &r.event),
            Some(EngineEvent::RunFinished {
                outcome: RunOutcome::Aborted { .. },
                ..
            })
        ),
        "{}",
        run.show()
    );
    assert_eq!(
        before.db,
        database_digest("old"),
        "the source database changed"
    );
    assert_services("old", "active", "enabled");
    remove_tool(&lab, "new", "pg_restore");
    resume_to_the_end(&lab, &before, &journal);
    reset();
}

/// A rehearsal restores a quarantined copy while the old host keeps serving;
/// the real run afterwards refuses that copy until told --reset-target, then
/// migrates exactly.
#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_rehearsal_leaves_the_source_serving_and_the_copy_quarantined() {
    let (_guard, lab, before) = fresh_lab();
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("rehearsal.jsonl");
    let run = hikkoshi(&[
        "rehearse",
        "--config",
        lab.config.to_str().expect("utf-8"),
        "--headless",
        "--yes",
        "--start-web",
        "--journal",
        journal.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        run.stdout.contains("predicted downtime for the real run: "),
        "{}",
        run.show()
    );
    // The old host never stopped, and nothing of it changed.
    assert_services("old", "active", "enabled");
    assert!(
        calls(&lab, "old")
            .iter()
            .all(|c| !(c["tool"] == "systemctl" && c["argv"][0] == "stop")),
        "a service was stopped on old"
    );
    assert_eq!(
        before.db,
        database_digest("old"),
        "the source database changed"
    );
    assert_eq!(
        before.media,
        tree(&before.media_src),
        "the source media changed"
    );
    // The copy: the same data, the web only, Sidekiq masked, DNS untouched.
    assert_eq!(before.db, database_digest("new"), "the copy differs");
    assert_eq!(unit_state("new", "is-active", "mastodon-web"), "active");
    assert_eq!(
        unit_state("new", "is-active", "mastodon-sidekiq"),
        "inactive"
    );
    assert_eq!(
        unit_state("new", "is-enabled", "mastodon-sidekiq"),
        "masked"
    );
    let records = Journal::read(&journal).expect("journal");
    for never in [
        "stop-source",
        "redis",
        "start-target",
        "dns",
        "disable-source",
    ] {
        assert!(
            !journal_has(&journal, "StepStarted", never),
            "a rehearsal ran '{never}'"
        );
    }
    let state = hikkoshi::run_state::RunState::from_records(&records);
    // The prediction walks the real run's downtime: what the rehearsal ran,
    // measured; what it must not run, estimated without harm; the steps
    // beside the dump overlapping it.
    let prediction = state.predicted_downtime().expect("a prediction");
    assert!(prediction.total_ms > 0);
    let part = |id: &str| {
        prediction
            .parts
            .iter()
            .find(|p| p.step == id)
            .unwrap_or_else(|| panic!("no part '{id}' in {prediction:?}"))
    };
    use hikkoshi::prediction::Basis;
    assert_eq!(part("restore").basis, Basis::Measured);
    assert_eq!(
        part("health").basis,
        Basis::Measured,
        "--start-web measures it"
    );
    assert_eq!(part("final-media").beside.as_deref(), Some("dump"));
    for estimated in ["redis", "start-target", "stop-source"] {
        assert!(
            matches!(
                &part(estimated).basis,
                Basis::Estimated { .. } | Basis::Unknown { .. }
            ),
            "{estimated}: {:?}",
            part(estimated).basis
        );
    }
    assert!(
        matches!(&part("redis").basis, Basis::Estimated { how, .. } if how.contains("dump.rdb")),
        "{:?}",
        part("redis").basis
    );
    let measured: u64 = prediction
        .parts
        .iter()
        .filter(|p| p.basis == Basis::Measured)
        .map(|p| p.ms)
        .sum();
    assert!(
        prediction.total_ms
            < measured + part("redis").ms + part("start-target").ms + part("stop-source").ms,
        "the overlap beside the dump was added up: {prediction:?}"
    );
    for host in ["old", "new"] {
        assert!(
            !host_path(&lab, host, "home-mastodon", "hikkoshi-work").exists(),
            "dump or lock left on {host}"
        );
    }

    // The copy carries hikkoshi's marker: a real run refuses to restore over
    // it unless told, and then migrates with zero differences.
    let real = dir.path().join("run.jsonl");
    let refused = spawn_run(&lab.config, &real, &[]).finish();
    assert_eq!(refused.code, Some(1), "{}", refused.show());
    assert!(
        refused.stdout.contains("--reset-target"),
        "{}",
        refused.show()
    );
    assert_services("old", "active", "enabled");
    let _ = std::fs::remove_file(&real);
    let run = spawn_run(&lab.config, &real, &["--reset-target"]).finish();
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert_migrated(&lab, &before, &real, &[&run.stdout, &run.stderr]);
    // The run carries the rehearsal's prediction and reports it beside the
    // downtime it measured.
    let run_state =
        hikkoshi::run_state::RunState::from_records(&Journal::read(&real).expect("journal"));
    let carried = run_state
        .rehearsal_prediction
        .as_ref()
        .expect("the rehearsal's prediction in the run's journal");
    assert_eq!(carried.rehearsal, state.run_id);
    assert_eq!(carried.prediction, prediction);
    assert!(
        run.stdout
            .contains(&format!("rehearsal {} predicted", state.run_id)),
        "{}",
        run.show()
    );
    let review = hikkoshi(&[
        "review",
        real.to_str().expect("utf-8"),
        "--format",
        "markdown",
    ]);
    assert!(
        review
            .stdout
            .lines()
            .any(|l| l.starts_with("| predicted downtime | downtime ")
                && l.contains("measured; rehearsal")),
        "{}",
        review.stdout
    );
    reset();
}

/// A restore drill: the old host's own backups, in every format pg_dump
/// writes (and gzip-compressed SQL), restore onto the new host as the app's
/// role and equal the source. The backups are root's, mode 0600, as nightly
/// backups usually are, and stay as they were.
#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn rehearsals_from_backups_in_every_format_restore_exactly() {
    let (_guard, lab, before) = fresh_lab();
    let make = "set -e; mkdir -p -m 700 /tmp/backups; cd /tmp/backups
runuser -u postgres -- pg_dump -Fc mastodon_production > nightly.dump
runuser -u postgres -- pg_dump mastodon_production > nightly.sql
gzip -c nightly.sql > nightly.sql.gz
runuser -u postgres -- pg_dump -Fd -f /tmp/pgdir mastodon_production && mv /tmp/pgdir nightly.d
chmod -R go-rwx /tmp/backups; chown -R root:root /tmp/backups";
    exec_ok("old", &["sh", "-c", make]);
    let backups = host_path(&lab, "old", "tmp", "backups");
    let backups_before = tree(&backups);
    for (file, kind) in [
        ("nightly.dump", "a pg_dump archive"),
        ("nightly.d", "a pg_dump directory"),
        ("nightly.sql.gz", "gzip-compressed SQL"),
        ("nightly.sql", "plain SQL"),
    ] {
        let path = format!("/tmp/backups/{file}");
        let run = hikkoshi(&[
            "rehearse",
            "--config",
            lab.config.to_str().expect("utf-8"),
            "--headless",
            "--yes",
            "--reset-target",
            "--from-backup",
            &path,
        ]);
        assert_eq!(run.code, Some(0), "{file}:\n{}", run.show());
        assert!(
            run.stdout.contains(&format!("backup: '{path}' is {kind}")),
            "{}",
            run.show()
        );
        assert!(
            run.stdout.contains("skipped: dump"),
            "no fresh dump:\n{}",
            run.show()
        );
        assert_eq!(
            before.db,
            database_digest("new"),
            "{file} restored differently"
        );
        let foreign = psql(
            "new",
            "mastodon_production",
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','S','v','m') AND n.nspname NOT IN ('pg_catalog','information_schema') \
             AND n.nspname NOT LIKE 'pg\\_toast%' AND pg_get_userbyid(c.relowner) <> 'mastodon'",
        );
        assert_eq!(
            foreign.trim(),
            "0",
            "{file}: objects not owned by the app's role"
        );
    }
    assert_eq!(backups_before, tree(&backups), "a backup was changed");
    assert_eq!(
        before.db,
        database_digest("old"),
        "the source database changed"
    );
    assert_services("old", "active", "enabled");

    // Not a backup: refused in preflight, before anything runs.
    exec_ok(
        "old",
        &["sh", "-c", "head -c 600 /dev/urandom > /tmp/backups/junk"],
    );
    let run = hikkoshi(&[
        "rehearse",
        "--config",
        lab.config.to_str().expect("utf-8"),
        "--headless",
        "--yes",
        "--reset-target",
        "--from-backup",
        "/tmp/backups/junk",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stdout.contains("is neither a pg_dump archive"),
        "{}",
        run.show()
    );
    reset();
}

// --- Misskey and a generic app --------------------------------------------------------------

/// A config for one of the lab's other apps: no [dns] (their domains have no
/// zone in the lab), so the DNS steps say they checked nothing.
fn app_config(lab: &Lab, profile: &str, app: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "profile = \"{profile}\"\n\n[source]\nssh = \"old\"\n\n[target]\nssh = \"new\"\n\n[ssh]\nconfig_file = \"{}\"\n\n[app]\n{app}\n{extra}",
        lab.ssh_config.display()
    );
    let path = dir.path().join("migration.toml");
    std::fs::write(&path, text).expect("config");
    (dir, path)
}

/// What an app's migration must carry: its database, one data directory, and
/// one config file (by bytes).
struct AppBefore {
    db: BTreeMap<String, String>,
    sequences: String,
    data: BTreeMap<PathBuf, Entry>,
    config_bytes: Vec<u8>,
}

struct App {
    database: &'static str,
    role: &'static str,
    /// (bind directory in the lab's host dirs, path inside it)
    data: (&'static str, &'static str),
    config: (&'static str, &'static str),
    unit: &'static str,
    /// curl inside the new host must get 200 here once the app runs.
    health: &'static str,
}

const MISSKEY: App = App {
    database: "misskey_db",
    role: "misskey",
    data: ("home-misskey", "misskey/files"),
    config: ("home-misskey", "misskey/.config/default.yml"),
    unit: "misskey",
    health: "http://127.0.0.1:3001/healthz",
};

const PLEASANTER: App = App {
    database: "Implem.Pleasanter",
    role: "pleasanter",
    data: ("web", "pleasanter/BinaryStorage"),
    config: (
        "web",
        "pleasanter/Implem.Pleasanter/App_Data/Parameters/Rds.json",
    ),
    unit: "pleasanter",
    health: "http://127.0.0.1:5000/",
};

fn app_before(lab: &Lab, app: &App) -> AppBefore {
    let db = database_digest_of("old", app.database);
    let data = tree(&host_path(lab, "old", app.data.0, app.data.1));
    assert!(
        db.len() >= 4,
        "{}: the lab's database looks unseeded",
        app.database
    );
    assert!(
        data.len() > 20,
        "{}: the lab's data looks unmade",
        app.data.1
    );
    AppBefore {
        db,
        sequences: sequences_of("old", app.database),
        data,
        config_bytes: std::fs::read(host_path(lab, "old", app.config.0, app.config.1))
            .expect("source config file"),
    }
}

/// The secrets in an app's config file: passwords, as the lab wrote them.
fn secrets_in(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("pass:") {
            out.push(v.trim().trim_matches(['"', '\'']).to_string());
        }
        for part in line.split(';') {
            if let Some(v) = part.trim().strip_prefix("PWD=") {
                out.push(v.trim_end_matches(['"', ',']).to_string());
            }
        }
    }
    out.retain(|s| s.len() >= 8);
    assert!(!out.is_empty(), "no secret found in the config file");
    out
}

fn assert_app_migrated(lab: &Lab, app: &App, before: &AppBefore, run: &Run, journal: &Path) {
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert_eq!(
        before.db,
        database_digest_of("new", app.database),
        "tables differ between old and new"
    );
    assert_eq!(before.sequences, sequences_of("new", app.database));
    assert_eq!(
        before.db,
        database_digest_of("old", app.database),
        "the source database changed"
    );
    let foreign = psql(
        "new",
        app.database,
        &format!(
            "SELECT n.nspname || '.' || c.relname || ' ' || pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','p','S','v','m') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
             AND pg_get_userbyid(c.relowner) <> '{}'",
            app.role
        ),
    );
    assert_eq!(foreign.trim(), "", "objects not owned by {}", app.role);
    let data_new = tree(&host_path(lab, "new", app.data.0, app.data.1));
    assert_eq!(before.data, data_new, "{} differs", app.data.1);
    let config_new = host_path(lab, "new", app.config.0, app.config.1);
    assert_eq!(
        std::fs::read(&config_new).expect("config on new"),
        before.config_bytes,
        "the config file is not byte for byte the source's"
    );
    assert_eq!(
        std::fs::metadata(&config_new)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(unit_state("new", "is-active", app.unit), "active");
    assert_eq!(unit_state("new", "is-enabled", app.unit), "enabled");
    assert_eq!(unit_state("old", "is-enabled", app.unit), "disabled");
    assert_eq!(unit_state("old", "is-active", app.unit), "inactive");
    let code = exec_ok(
        "new",
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            app.health,
        ],
    );
    assert_eq!(code, "200", "{} on new", app.health);
    // No [dns]: the pinned check has no address to ask, and the local health
    // check is what shows the new host serving.
    assert!(
        !run.stderr.contains("is DOWN") && !run.stderr.contains("no health check showed"),
        "a finished move is reported as down:\n{}",
        run.show()
    );
    let state =
        hikkoshi::run_state::RunState::from_records(&Journal::read(journal).expect("journal"));
    assert_eq!(state.downtime_end_step.as_deref(), Some("health"));
    let health_done = state
        .step("health")
        .and_then(|s| s.finished_at)
        .expect("health finished");
    assert_eq!(state.downtime_ended, Some(health_done));
    assert!(
        run.stdout.contains("(over at step 'health')"),
        "{}",
        run.show()
    );
    let journal_text = std::fs::read_to_string(journal).expect("journal");
    for secret in secrets_in(&before.config_bytes) {
        for (what, text) in [
            ("stdout", &run.stdout),
            ("stderr", &run.stderr),
            ("journal", &journal_text),
        ] {
            assert!(!text.contains(&secret), "a secret reached the {what}");
        }
    }
    let work = exec(
        "new",
        &["test", "-e", &format!("/home/{}/hikkoshi-work", app.role)],
    );
    assert!(!work.status.success(), "the work directory is left on new");
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn misskey_migrates_with_zero_differences() {
    let _guard = lock();
    let lab = lab();
    reset();
    let before = app_before(&lab, &MISSKEY);
    let redis_before = redis_content("old");
    let (dir, config) = app_config(&lab, "misskey", "domain = \"misskey.example.net\"", "");
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&config, &journal, &[]).finish();
    assert_app_migrated(&lab, &MISSKEY, &before, &run, &journal);
    assert_eq!(redis_before, redis_content("new"), "Redis differs");
    for line in [
        "database 'misskey_db', role 'misskey' (from '/home/misskey/misskey/.config/default.yml'",
        "url 'https://misskey.example.net/' and id 'aidx' must never change",
        "2025.4.1 on both hosts",
        "http://127.0.0.1:3001/healthz answered 200",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing '{line}':\n{}",
            run.show()
        );
    }
    // Misskey runs its migrations itself when it starts, on the restored database.
    let new_calls = calls(&lab, "new");
    assert!(
        new_calls
            .iter()
            .any(|c| c["tool"] == "misskey" && c["event"] == "migrate" && c["exit"] == 0),
        "misskey never ran its migrations on new: {new_calls:?}"
    );
}

/// The built-in Misskey profile with its restore rewritten to run as
/// `postgres` without `--role`, as in Misskey admins' notes; `fixup` adds
/// commands after the restore, as the admin who "fixes" it would run them.
fn misskey_restored_as_postgres(fixup: &str) -> String {
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/profiles/misskey.toml"),
    )
    .expect("misskey profile");
    let start = builtin.find("id = \"restore\"").expect("restore step");
    let end = start + builtin[start..].find("[[steps]]").expect("next step");
    let mut restore = builtin[start..end]
        .replace("user = \"{user}\"", "user = \"postgres\"")
        .replace("\"-U\", \"{db_user}\"", "\"-U\", \"postgres\"")
        .replace("\"--role={db_user}\", ", "");
    assert_ne!(
        restore,
        builtin[start..end],
        "the restore step was not rewritten"
    );
    if !fixup.is_empty() {
        let close = restore.rfind(']').expect("end of the commands");
        restore.insert_str(close, fixup);
    }
    format!("{}{restore}{}", &builtin[..start], &builtin[end..])
        .replace("name = \"misskey\"", "name = \"misskey-as-postgres\"")
}

/// A run of the lab's Misskey with [`misskey_restored_as_postgres`]: it must
/// fail (at verify-db, which the callers check).
fn run_misskey_as_postgres(lab: &Lab, fixup: &str) -> (tempfile::TempDir, Run) {
    let (dir, config) = app_config(
        lab,
        "./as-postgres.toml",
        "domain = \"misskey.example.net\"",
        // A stream: pg_restore reads no file the postgres user could not open.
        "[move]\ndatabase = \"stream\"\n",
    );
    std::fs::write(
        dir.path().join("as-postgres.toml"),
        misskey_restored_as_postgres(fixup),
    )
    .expect("profile");
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&config, &journal, &[]).finish();
    assert_eq!(run.code, Some(1), "{}", run.show());
    (dir, run)
}

/// Stopped before the new host started: the old one serves again, unchanged.
fn assert_old_misskey_serves_again(before: &AppBefore) {
    assert_eq!(unit_state("new", "is-active", "misskey"), "inactive");
    assert_eq!(unit_state("old", "is-active", "misskey"), "active");
    assert_eq!(before.db, database_digest_of("old", "misskey_db"));
}

/// The trap in Misskey admins' notes: restored as postgres with --no-owner,
/// every table belongs to postgres and Misskey answers Internal Server Error.
/// A profile of one's own that restores that way is caught by the database
/// check, loudly, before the new host starts.
#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn the_ownership_check_catches_a_restore_as_the_wrong_owner() {
    let _guard = lock();
    let lab = lab();
    reset();
    let before = app_before(&lab, &MISSKEY);
    let (_dir, run) = run_misskey_as_postgres(&lab, "");
    let owner = psql(
        "new",
        "misskey_db",
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'note'",
    );
    assert_eq!(owner.trim(), "postgres", "the trap was not reproduced");
    assert!(
        run.stderr.contains("verify-db")
            && run.stderr.contains("are not owned by 'misskey'")
            && run.stderr.contains("'permission denied'"),
        "the failure does not name the step and the ownership:\n{}",
        run.show()
    );
    assert!(
        run.stdout
            .contains("table 'public.note' is owned by 'postgres'"),
        "the ownership check does not name the table and its owner:\n{}",
        run.show()
    );
    assert_old_misskey_serves_again(&before);
}

/// The same trap "fixed" the common way, `ALTER TABLE ... OWNER TO misskey`
/// for every table: the tables (and their sequences) are Misskey's again, the
/// enum types are still postgres's, and Misskey's next migration would stop
/// with 'must be owner of type'. verify-db names the types.
#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_table_only_ownership_fix_leaves_the_types_and_is_caught() {
    let _guard = lock();
    let lab = lab();
    reset();
    let before = app_before(&lab, &MISSKEY);
    let fixup = r#"  { argv = ["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "{database}", "-c", "DO $$DECLARE t record; BEGIN FOR t IN SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public' LOOP EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', t.schemaname, t.tablename, 'misskey'); END LOOP; END$$"] },
"#;
    let (_dir, run) = run_misskey_as_postgres(&lab, fixup);
    // The fix-up did what admins' scripts do: every table is misskey's.
    let tables = psql(
        "new",
        "misskey_db",
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> 'misskey'",
    );
    assert_eq!(tables.trim(), "0", "the fix-up left tables to postgres");
    let type_owner = psql(
        "new",
        "misskey_db",
        "SELECT pg_get_userbyid(typowner) FROM pg_type WHERE typname = 'note_visibility_enum'",
    );
    assert_eq!(type_owner.trim(), "postgres", "the trap was not reproduced");
    assert!(
        run.stderr.contains("verify-db")
            && run.stderr.contains("1 enum type")
            && run.stderr.contains(
                "enum type 'public.note_visibility_enum' is owned by 'postgres', not 'misskey'"
            ),
        "the failure does not name the type:\n{}",
        run.show()
    );
    assert!(
        !run.stdout.contains("table 'public.note' is owned by"),
        "tables reported although the fix-up gave them to misskey:\n{}",
        run.show()
    );
    assert_old_misskey_serves_again(&before);
}

/// Puts a changed copy of the old host's default.yml in place for a test and
/// the original back afterwards (also when the test fails).
struct SourceEdit {
    path: PathBuf,
    original: Vec<u8>,
    undo_sql: Option<&'static str>,
}

impl Drop for SourceEdit {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.original);
        if let Some(sql) = self.undo_sql {
            let _ = exec(
                "old",
                &[
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    "psql",
                    "-XAtq",
                    "-d",
                    "misskey_db",
                    "-c",
                    sql,
                ],
            );
        }
    }
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn misskey_with_object_storage_and_meilisearch_leaves_media_and_index_where_they_are() {
    let _guard = lock();
    let lab = lab();
    reset();
    let yml = host_path(&lab, "old", MISSKEY.config.0, MISSKEY.config.1);
    let original = std::fs::read(&yml).expect("default.yml");
    let edit = SourceEdit {
        path: yml.clone(),
        original: original.clone(),
        undo_sql: Some("UPDATE meta SET \"useObjectStorage\" = false"),
    };
    let text = String::from_utf8_lossy(&original);
    let block = "#meilisearch:\n#  host: localhost\n#  port: 7700\n#  apiKey: ''\n";
    assert!(
        text.contains(block),
        "the lab's default.yml changed: {text}"
    );
    let api_key = "lab-meili-key-0123456789";
    let meili = text
        .replace("provider: sqlLike", "provider: meilisearch")
        .replace(
            block,
            &format!("meilisearch:\n  host: meili.internal\n  port: 7700\n  apiKey: '{api_key}'\n"),
        );
    std::fs::write(&yml, meili).expect("edit default.yml");
    psql(
        "old",
        "misskey_db",
        "UPDATE meta SET \"useObjectStorage\" = true",
    );

    let (dir, config) = app_config(&lab, "misskey", "domain = \"misskey.example.net\"", "");
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&config, &journal, &[]).finish();
    assert_eq!(run.code, Some(0), "{}", run.show());
    let journal_text = std::fs::read_to_string(&journal).expect("journal");
    assert!(
        !run.stdout.contains(api_key) && !journal_text.contains(api_key),
        "Meilisearch's key was shown"
    );
    for line in [
        "object storage is in use (the database says so): media stays where it is",
        "Meilisearch at 'meili.internal': its index is not in the database and is not moved",
        "media stays where it is: the instance uses object storage",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing '{line}':\n{}",
            run.show()
        );
    }
    let state =
        hikkoshi::run_state::RunState::from_records(&Journal::read(&journal).expect("journal"));
    for step in ["presync-media", "final-media"] {
        let s = state
            .steps
            .iter()
            .find(|s| s.info.id == step)
            .expect("step");
        let skipped_for_storage = matches!(
            &s.outcome,
            Some(hikkoshi::events::StepOutcome::Skipped { reason }) if reason.contains("object storage")
        );
        assert!(skipped_for_storage, "{step}: {:?}", s.outcome);
    }
    assert!(
        !host_path(&lab, "new", MISSKEY.data.0, MISSKEY.data.1).exists(),
        "files/ was copied although the media is in object storage"
    );
    drop(edit);

    // PGroonga: preflight refuses while the new host's PostgreSQL lacks it.
    reset();
    let edit = SourceEdit {
        path: yml.clone(),
        original: original.clone(),
        undo_sql: None,
    };
    std::fs::write(
        &yml,
        String::from_utf8_lossy(&original).replace("provider: sqlLike", "provider: sqlPgroonga"),
    )
    .expect("edit default.yml");
    let run = hikkoshi(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stdout
            .contains("full-text search uses PGroonga, but the extension 'pgroonga' is not installed in the target's PostgreSQL"),
        "{}",
        run.show()
    );
    drop(edit);
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_generic_app_migrates_with_zero_differences_from_the_config_or_its_own_profile() {
    let _guard = lock();
    let lab = lab();
    let app_settings = "domain = \"pleasanter.example.net\"\nuser = \"pleasanter\"\ndir = \"/web/pleasanter\"\ndatabase = \"Implem.Pleasanter\"\ndb_user = \"pleasanter\"\nservices = [\"pleasanter\"]";
    let generic_vars = "[vars]\nsync_dirs = [\"/web/pleasanter/BinaryStorage\"]\nfiles = [\"/web/pleasanter/Implem.Pleasanter/App_Data/Parameters/Rds.json\"]\npost_dir = \"/web/pleasanter/Implem.CodeDefiner\"\npost_commands = [[\"dotnet\", \"Implem.CodeDefiner.dll\", \"_rds\"]]\nhealth_url = \"http://127.0.0.1:5000/\"\n";
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/profiles/pleasanter.toml");
    let runs = [
        (
            "generic".to_string(),
            app_settings.to_string(),
            generic_vars,
        ),
        (
            // The example profile file, as a user would name their own; the
            // lab's role is peer-authenticated, so it is named in the config.
            example.display().to_string(),
            "domain = \"pleasanter.example.net\"\ndb_user = \"pleasanter\"".to_string(),
            "",
        ),
    ];
    for (profile, app, extra) in runs {
        reset();
        let before = app_before(&lab, &PLEASANTER);
        let default_rds = std::fs::read(host_path(
            &lab,
            "new",
            PLEASANTER.config.0,
            PLEASANTER.config.1,
        ))
        .expect("the new host's own Rds.json");
        let (dir, config) = app_config(&lab, &profile, &app, extra);
        let journal = dir.path().join("run.jsonl");
        let run = spawn_run(&config, &journal, &[]).finish();
        assert_app_migrated(&lab, &PLEASANTER, &before, &run, &journal);
        let grants = psql(
            "new",
            "Implem.Pleasanter",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND has_table_privilege('pleasanter_user', format('%I.%I', schemaname, tablename), 'SELECT')",
        );
        let tables = psql(
            "new",
            "Implem.Pleasanter",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        );
        assert_eq!(
            grants, tables,
            "{profile}: the grants to pleasanter_user were not restored"
        );
        let codedefiner = called(
            &calls(&lab, "new"),
            "dotnet",
            &["Implem.CodeDefiner.dll", "_rds"],
        )
        .unwrap_or_else(|| panic!("{profile}: CodeDefiner never ran on new"));
        assert_eq!(
            codedefiner["cwd"], "/web/pleasanter/Implem.CodeDefiner",
            "{codedefiner}"
        );
        // The new host's own Rds.json is kept beside the copied one.
        let params = host_path(
            &lab,
            "new",
            "web",
            "pleasanter/Implem.Pleasanter/App_Data/Parameters",
        );
        let backups: Vec<Vec<u8>> = std::fs::read_dir(&params)
            .expect("Parameters")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("Rds.json.hikkoshi-")
            })
            .map(|e| std::fs::read(e.path()).expect("backup"))
            .collect();
        assert_eq!(
            backups,
            vec![default_rds],
            "{profile}: no backup of the new host's Rds.json"
        );
    }
}

/// `hikkoshi init` on the lab's old host, as a new user runs it: no terminal,
/// so the one thing it cannot know (the new host's public address) is left as
/// a placeholder. With only that filled in (or [dns] removed, for the apps
/// whose domain the lab's DNS does not serve) the config passes `check` and
/// moves each app with zero differences.
#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn init_writes_a_config_that_checks_and_moves_each_app() {
    let _guard = lock();
    let lab = lab();
    for app in ["mastodon", "misskey", "pleasanter"] {
        reset();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("migration.toml");
        let ssh = lab.ssh_config.to_str().expect("utf-8");
        let out = config.to_str().expect("utf-8");
        let calls_before = calls(&lab, "old").len();
        let init_args = [
            "init",
            "--source",
            "old",
            "--target",
            "new",
            "--ssh-config",
            ssh,
            "--app",
            app,
            "--out",
            out,
        ];
        let init = hikkoshi(&init_args);
        assert_eq!(init.code, Some(0), "{app}: {}", init.show());
        for line in [
            "old: connected as root",
            &format!("new: connected as root; ssh reached it at {}", lab.new_addr),
            "fill in: 'expect' (line ",
            &format!("next: hikkoshi check --config {out}"),
        ] {
            assert!(
                init.stdout.contains(line),
                "{app}: no '{line}':\n{}",
                init.show()
            );
        }
        // Only reads on the old host: systemd was asked, never told.
        let told: Vec<serde_json::Value> = calls(&lab, "old")[calls_before..]
            .iter()
            .filter(|c| {
                c["tool"] == "systemctl"
                    && !matches!(
                        c["argv"][0].as_str(),
                        Some("show" | "list-unit-files" | "is-active" | "is-enabled")
                    )
            })
            .cloned()
            .collect();
        assert!(
            told.is_empty(),
            "{app}: init changed systemd on old: {told:?}"
        );
        let written = std::fs::read_to_string(&config).expect("written config");

        // It never writes over a file unless told to.
        let again = hikkoshi(&init_args);
        assert_eq!(again.code, Some(2), "{}", again.show());
        assert!(again.stderr.contains("--force"), "{}", again.show());
        assert_eq!(std::fs::read_to_string(&config).expect("config"), written);

        // The placeholder is refused by name.
        let check = hikkoshi(&["check", "--config", out]);
        assert_eq!(check.code, Some(2), "{}", check.show());
        assert!(
            check
                .stderr
                .contains("[dns] 'expect' is still the placeholder"),
            "{}",
            check.show()
        );

        let placeholder = "expect = [\"FILL IN: the new host's public address\"]";
        let unfilled = written
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("FILL IN"))
            .count();
        assert_eq!(unfilled, 1, "{written}");
        let filled = if app == "mastodon" {
            // The lab's resolver and CA stand in for the public ones.
            written.replace(
                placeholder,
                &format!(
                    "expect = [\"{}\"]\nresolvers = [\"127.0.53.1:53\"]\nca_file = \"{}\"",
                    lab.new_addr,
                    lab.config.with_file_name("ca.pem").display()
                ),
            )
        } else {
            written[..written.find("\n[dns]").expect("[dns]")].to_string()
        };
        assert_ne!(filled, written);
        std::fs::write(&config, &filled).expect("filled config");
        let check = hikkoshi(&["check", "--config", out]);
        assert_eq!(check.code, Some(0), "{app}: {}", check.show());

        let journal = dir.path().join("run.jsonl");
        match app {
            "mastodon" => {
                let before = snapshot_source(&lab);
                let run = spawn_run(&config, &journal, &[]).finish();
                assert_eq!(run.code, Some(0), "{}", run.show());
                assert_migrated(&lab, &before, &journal, &[&run.stdout, &run.stderr]);
            }
            other => {
                let spec = if other == "misskey" {
                    &MISSKEY
                } else {
                    &PLEASANTER
                };
                let before = app_before(&lab, spec);
                let run = spawn_run(&config, &journal, &[]).finish();
                assert_app_migrated(&lab, spec, &before, &run, &journal);
            }
        }
    }
}

/// The lab's compose config: old's 002-shaped stack (compose v1) to an empty
/// compose host (v2), beside the systemd config.
fn compose_config(lab: &Lab, target_extra: &str) -> PathBuf {
    let path = lab.dir.join("operator").join("compose.toml");
    std::fs::write(
        &path,
        format!(
            "profile = \"mastodon\"\n\n[source]\nssh = \"old\"\ncompose = \"/srv/mastodon\"\n\n[target]\nssh = \"new\"\ncompose = \"/srv/mastodon\"\n{target_extra}\n[ssh]\nconfig_file = \"ssh_config\"\n\n[app]\ndomain = \"{}\"\n",
            lab.domain
        ),
    )
    .expect("write compose.toml");
    path
}

/// Each container of old's stack: id, state and restart policy.
fn old_containers() -> String {
    exec_ok(
        "old",
        &[
            "docker",
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            "label=com.docker.compose.project=mastodon",
            "--format",
            "{{.ID}} {{.Label \"com.docker.compose.service\"}} {{.State}}",
        ],
    )
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn check_reads_a_compose_stack_and_changes_nothing() {
    let _guard = lock();
    let lab = lab();
    reset();
    let config = compose_config(&lab, "");
    let containers = old_containers();
    let volumes = exec_ok("old", &["docker", "volume", "ls", "-q"]);
    let run = hikkoshi(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    for said in [
        "old: compose: docker-compose 1.29.2",
        "new: compose: docker compose 2.",
        "old: compose project: 'mastodon' in /srv/mastodon: 5 services, 5 containers (5 running)",
        "old: compose services: database db, redis redis, streaming streaming, web web, worker sidekiq",
        "[WARN] old: storage: 'db' keeps /var/lib/postgresql/data in an anonymous volume",
        "[WARN] old: storage: 'redis' keeps /data in an anonymous volume",
        "new: compose project: no stack in '/srv/mastodon' yet",
        "old: source database: 'mastodon_production'",
        "old: redis: 7.0.15, data in /var/lib/docker/volumes/",
        "old: app image: hikkoshi-lab/mastodon:v4.3.2, built on the source",
        "ready: social.example.net can move from old to new",
    ] {
        assert!(run.stdout.contains(said), "says {said:?}:\n{}", run.show());
    }
    assert!(
        !run.stdout.contains("mastodon-web"),
        "no systemd unit is asked of a compose host:\n{}",
        run.show()
    );
    assert_eq!(
        old_containers(),
        containers,
        "every old container as it was"
    );
    assert_eq!(exec_ok("old", &["docker", "volume", "ls", "-q"]), volumes);
    assert!(
        !exec("new", &["test", "-e", "/srv/mastodon"])
            .status
            .success(),
        "nothing made on new"
    );

    // A new host whose compose file would start the database without storage.
    exec_ok("new", &["mkdir", "-p", "/srv/mastodon"]);
    let file = exec_ok("old", &["cat", "/srv/mastodon/docker-compose.yml"]);
    let write = Command::new(lab_script("exec"))
        .args([
            "new",
            "sh",
            "-c",
            "cat > /srv/mastodon/docker-compose.yml && : > /srv/mastodon/.env.production",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(file.as_bytes())?;
            c.wait()
        })
        .expect("write the compose file on new");
    assert!(write.success());
    let run = hikkoshi(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stdout.contains("[FAIL] new: storage: 'db' would keep /var/lib/postgresql/data without persistent storage"),
        "{}",
        run.show()
    );
    assert_eq!(old_containers(), containers);
    reset();
}

/// `docker exec -i [-u USER] CONTAINER` for a service of the lab's stack on
/// `host`, its container found by compose's labels.
fn in_service(host: &str, service: &str, user: Option<&str>) -> Vec<String> {
    let id = exec_ok(
        host,
        &[
            "docker",
            "ps",
            "-q",
            "--filter",
            "label=com.docker.compose.project=mastodon",
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ],
    );
    let id = id.lines().next().unwrap_or("").trim().to_string();
    assert!(!id.is_empty(), "no running '{service}' container on {host}");
    let mut argv: Vec<String> = vec!["docker".into(), "exec".into(), "-i".into()];
    if let Some(u) = user {
        argv.extend(["-u".into(), u.into()]);
    }
    argv.push(id);
    argv
}

/// psql in a stack's database container, the SQL through stdin.
fn stack_psql(host: &str, db: &str, sql: &str) -> String {
    psql_with(host, in_service(host, "db", Some("postgres")), db, sql)
}

/// `argv` on a lab host with `input` as its stdin; its stdout.
fn exec_with_input(host: &str, argv: &[String], input: &str) -> String {
    let mut child = Command::new(lab_script("exec"))
        .arg(host)
        .args(argv)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run on a lab host");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "on {host}: {argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every table of a stack's database by content, the lab's heartbeat table
/// only up to `beats` (the new stack's Sidekiq writes its own after the move).
fn stack_digest(host: &str, beats: i64) -> BTreeMap<String, String> {
    digest_with(
        host,
        in_service(host, "db", Some("postgres")),
        "mastodon_production",
        Some(beats),
    )
}

/// Names, kinds, modes, numeric owners, sizes and contents of a tree on a host.
fn remote_tree(host: &str, dir: &str) -> String {
    exec_ok(
        host,
        &[
            "sh",
            "-c",
            r#"cd "$1" && find . -printf '%p %y %m %U:%G %s\n' | sort && find . -type f -exec sha256sum {} + | sort -k2"#,
            "sh",
            dir,
        ],
    )
}

/// Redis of a stack, as text that compares, without the stand-in Sidekiq's
/// own counter (the new stack's Sidekiq counts on after the move).
fn stack_redis(host: &str) -> BTreeMap<String, String> {
    let cli = in_service(host, "redis", None);
    let run = |args: &[&str]| {
        let mut argv: Vec<&str> = cli.iter().map(String::as_str).collect();
        argv.push("redis-cli");
        argv.extend(args);
        exec_ok(host, &argv)
    };
    let mut out = BTreeMap::new();
    for key in run(&["--scan"]).lines().filter(|k| !k.is_empty()) {
        if key == "hikkoshi:lab:sidekiq:beats" {
            continue;
        }
        let kind = run(&["TYPE", key]).trim().to_string();
        let value = match kind.as_str() {
            "string" => run(&["GET", key]),
            "list" => run(&["LRANGE", key, "0", "-1"]),
            "zset" => run(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
            _ => {
                let mut m: Vec<String> =
                    run(&[if kind == "set" { "SMEMBERS" } else { "HGETALL" }, key])
                        .lines()
                        .map(String::from)
                        .collect();
                m.sort();
                m.join("\n")
            }
        };
        out.insert(key.to_string(), format!("{kind}: {value}"));
    }
    out
}

/// Every volume and container of old's stack, by id.
fn old_stack_inventory() -> (String, String) {
    let containers = exec_ok(
        "old",
        &[
            "docker",
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            "label=com.docker.compose.project=mastodon",
        ],
    );
    let volumes = exec_ok("old", &["docker", "volume", "ls", "-q"]);
    (containers, volumes)
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_compose_stack_moves_with_zero_differences_and_the_old_one_stays_down() {
    let _guard = lock();
    let lab = lab();
    reset();
    let config = compose_config(&lab, "");
    // The lab's stacks publish the web service on 3100 (the host's systemd
    // Mastodon has 3000).
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!("{text}\n[vars]\nhealth_url = \"http://127.0.0.1:3100/health\"\n"),
    )
    .expect("write config");
    let (containers, volumes) = old_stack_inventory();
    let env_before = exec_ok("old", &["sha256sum", "/srv/mastodon/.env.production"]);
    let compose_before = exec_ok("old", &["sha256sum", "/srv/mastodon/docker-compose.yml"]);
    // Old's Redis stops with the move; what it held (but the stand-in
    // Sidekiq's counter) does not change while it runs.
    let redis_before = stack_redis("old");
    assert!(redis_before.len() > 3, "old's Redis looks unseeded");

    let run = hikkoshi(&[
        "run",
        "--config",
        config.to_str().expect("utf-8"),
        "--headless",
        "--yes",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.show());

    // Old: every container and volume still there, stopped, restart policy
    // off, its data unchanged by the move.
    assert_eq!(old_stack_inventory(), (containers.clone(), volumes));
    let states = exec_ok(
        "old",
        &[
            "docker",
            "ps",
            "-a",
            "--filter",
            "label=com.docker.compose.project=mastodon",
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.State}}",
        ],
    );
    for line in states.lines() {
        let (service, state) = line.split_once(' ').expect("service state");
        let expect = if service == "web"
            || service == "sidekiq"
            || service == "streaming"
            || service == "redis"
        {
            "exited"
        } else {
            "running"
        };
        assert_eq!(state, expect, "old's {service}:\n{states}");
    }
    for id in containers.lines() {
        let policy = exec_ok(
            "old",
            &[
                "docker",
                "inspect",
                "-f",
                "{{.HostConfig.RestartPolicy.Name}}",
                id,
            ],
        );
        assert_eq!(policy.trim(), "no", "old container {id} would come back");
    }

    // The database by content (the heartbeats old's Sidekiq wrote before it
    // stopped), ownership, sequences.
    let beats: i64 = stack_psql(
        "old",
        "mastodon_production",
        "SELECT coalesce(max(id), 0) FROM hikkoshi_lab_heartbeats",
    )
    .trim()
    .parse()
    .expect("heartbeat id");
    assert!(beats > 0, "old's Sidekiq wrote heartbeats");
    let old_db = stack_digest("old", beats);
    assert!(old_db.len() > 100, "{} tables", old_db.len());
    assert_eq!(
        old_db,
        stack_digest("new", beats),
        "tables differ between old and new"
    );
    let foreign = stack_psql(
        "new",
        "mastodon_production",
        "SELECT n.nspname || '.' || c.relname || ' ' || pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r','p','S','v','m') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
         AND pg_get_userbyid(c.relowner) <> 'mastodon'",
    );
    assert_eq!(foreign.trim(), "", "objects not owned by mastodon on new");

    // Files: media with their numeric owners, the env file and compose file byte for byte.
    assert_eq!(
        remote_tree("old", "/srv/mastodon/public/system"),
        remote_tree("new", "/srv/mastodon/public/system"),
        "media differ"
    );
    assert_eq!(
        exec_ok("new", &["sha256sum", "/srv/mastodon/.env.production"]),
        env_before
    );
    assert_eq!(
        exec_ok("old", &["sha256sum", "/srv/mastodon/.env.production"]),
        env_before
    );
    assert_eq!(
        exec_ok("new", &["sha256sum", "/srv/mastodon/docker-compose.yml"]),
        compose_before
    );

    // New: persisted storage for the database and Redis, the app healthy.
    let mounts = exec_ok(
        "new",
        &[
            "docker",
            "compose",
            "--project-directory",
            "/srv/mastodon",
            "-p",
            "mastodon",
            "config",
        ],
    );
    assert!(mounts.contains("/srv/mastodon/postgres"), "{mounts}");
    assert!(mounts.contains("/srv/mastodon/redis"), "{mounts}");
    assert_eq!(
        exec_ok("new", &["test", "-s", "/srv/mastodon/postgres/PG_VERSION"]).trim(),
        ""
    );
    assert_eq!(redis_before, stack_redis("new"), "Redis content differs");
    let health = exec_ok("new", &["curl", "-fsS", "http://127.0.0.1:3100/health"]);
    assert!(health.contains("OK"), "{health}");
    assert!(!run.stdout.contains("SECRET_KEY_BASE="), "{}", run.show());

    // A reboot of old's Docker: the old instance stays down (002's hazard:
    // `restart: always` brought it back and it federated twice).
    let restart = Command::new(lab_script("docker/hostd"))
        .args(["restart", "old"])
        .output()
        .expect("restart old's dockerd");
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let running = exec_ok(
        "old",
        &[
            "docker",
            "ps",
            "--filter",
            "label=com.docker.compose.project=mastodon",
            "--format",
            "{{.Label \"com.docker.compose.service\"}}",
        ],
    );
    for app in ["web", "sidekiq", "streaming"] {
        assert!(
            !running.lines().any(|s| s == app),
            "old's {app} came back after Docker restarted:\n{running}"
        );
    }
    assert_eq!(
        old_stack_inventory().0,
        containers,
        "old's containers all kept"
    );
    reset();
}

/// Each container of old's stack: service, state and restart policy.
fn old_stack_states() -> BTreeMap<String, (String, String)> {
    exec_ok(
        "old",
        &[
            "docker",
            "ps",
            "-aq",
            "--filter",
            "label=com.docker.compose.project=mastodon",
        ],
    )
    .lines()
    .map(|id| {
        let line = exec_ok(
            "old",
            &[
                "docker",
                "inspect",
                "-f",
                "{{index .Config.Labels \"com.docker.compose.service\"}} {{.State.Status}} {{.HostConfig.RestartPolicy.Name}}",
                id,
            ],
        );
        let mut parts = line.split_whitespace().map(String::from);
        let service = parts.next().unwrap_or_default();
        let state = parts.next().unwrap_or_default();
        let policy = parts.next().unwrap_or_default();
        (service, (state, policy))
    })
    .collect()
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn a_compose_move_that_fails_while_down_brings_the_old_stack_back() {
    let _guard = lock();
    let lab = lab();
    reset();
    let config = compose_config(&lab, "");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!("{text}\n[vars]\nhealth_url = \"http://127.0.0.1:3100/health\"\n"),
    )
    .expect("write config");
    let before = old_stack_states();
    assert!(
        before
            .values()
            .all(|(state, policy)| state == "running" && policy == "always"),
        "{before:?}"
    );
    let (containers, volumes) = old_stack_inventory();
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("run.jsonl");
    let run = spawn_run(&config, &journal, &[]);
    // The new stack's database dies under the restore.
    wait_for("the restore", || {
        journal_has(&journal, "StepStarted", "restore")
    });
    let db = in_service("new", "db", None)
        .pop()
        .expect("the db container");
    exec_ok("new", &["docker", "kill", &db]);
    let run = run.finish();
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stderr.contains("step 'restore' failed"),
        "{}",
        run.show()
    );
    assert!(
        run.stdout.contains("(undoes 'stop-source')"),
        "the rollback ran:\n{}",
        run.show()
    );
    // Old is back as it was: every service running, every restart policy
    // what it was, nothing removed, and it serves.
    assert_eq!(old_stack_states(), before, "{}", run.show());
    assert_eq!(old_stack_inventory(), (containers, volumes));
    wait_for("old's web to answer", || {
        exec("old", &["curl", "-fsS", "http://127.0.0.1:3100/health"])
            .status
            .success()
    });
    reset();
}

/// Writes `text` to `path` on a lab host.
fn write_on(host: &str, path: &str, text: &str) {
    let argv: Vec<String> = ["sh", "-c", "cat > \"$1\"", "sh", path]
        .map(String::from)
        .to_vec();
    exec_with_input(host, &argv, text);
}

#[test]
#[ignore = "needs root and the lab: tests/lab/up"]
fn an_18_style_database_image_mounted_the_old_way_is_refused_by_check() {
    let _guard = lock();
    let lab = lab();
    reset();
    let config = compose_config(&lab, "");
    // The new host's own compose file: old's, persisted the old way, with a
    // database image laid out like PostgreSQL's 18+ images.
    let file = exec_ok("old", &["cat", "/srv/mastodon/docker-compose.yml"])
        .replace(
            "image: hikkoshi-lab/postgres:15",
            "image: hikkoshi-lab/postgres:17-18style",
        )
        .replace(
            "#    volumes:\n#      - ./postgres14:/var/lib/postgresql/data",
            "    volumes:\n      - ./postgres14:/var/lib/postgresql/data",
        )
        .replace(
            "#    volumes:\n#      - ./redis:/data",
            "    volumes:\n      - ./redis:/data",
        );
    assert!(
        file.contains("17-18style") && file.contains("\n      - ./postgres14:"),
        "{file}"
    );
    exec_ok("new", &["mkdir", "-p", "/srv/mastodon"]);
    write_on("new", "/srv/mastodon/docker-compose.yml", &file);
    write_on("new", "/srv/mastodon/.env.production", "");
    let containers = exec_ok("new", &["docker", "ps", "-aq"]);
    let run = hikkoshi(&["check", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert!(
        run.stdout.contains("[FAIL] new: storage: 'db' runs hikkoshi-lab/postgres:17-18style, which keeps its data in PGDATA=/var/lib/postgresql/17/docker"),
        "{}",
        run.show()
    );
    assert!(
        run.stdout
            .contains("to '- /srv/mastodon/postgres14:/var/lib/postgresql'"),
        "{}",
        run.show()
    );
    assert_eq!(
        exec_ok("new", &["docker", "ps", "-aq"]),
        containers,
        "nothing started on new"
    );
    reset();
}
