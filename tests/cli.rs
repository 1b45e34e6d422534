//! The binary in a hermetic environment (temp HOME and state dir, fixed COLUMNS),
//! with stdout, stderr and exit status snapshotted together.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a test crate: a failed expectation is the test failing

use std::path::{Path, PathBuf};
use std::process::Command;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_hikkoshi"))
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_STATE_HOME", self.path().join("state"))
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .output()
            .expect("run hikkoshi");
        let text = format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            out.status
                .code()
                .map_or_else(|| "signal".into(), |c| c.to_string()),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.replace(&self.path().display().to_string(), "[TMP]")
    }
}

const CONFIG: &str = r#"profile = "mastodon"

[source]
ssh = "old"

[target]
ssh = "new"

[app]
domain = "social.example.net"
"#;

#[test]
fn plan_shows_every_step_with_exact_commands() {
    let env = Env::new();
    env.write("migration.toml", CONFIG);
    insta::assert_snapshot!(env.run(&["plan", "--config", "migration.toml"]));
}

/// A compose stack's plan: compose's commands per host (the database's tools
/// in its container, the host's dump file through stdin and stdout), no
/// precompile (the image has its assets), and nothing that removes a
/// container or a volume.
#[test]
fn plan_of_a_compose_stack_shows_composes_commands() {
    let env = Env::new();
    let stacks = CONFIG
        .replace("ssh = \"old\"", "ssh = \"old\"\ncompose = \"/srv/mastodon\"")
        .replace(
            "ssh = \"new\"",
            "ssh = \"new\"\ncompose = \"/srv/mastodon\"\ncompose_file = [\"docker-compose.yml\", \"docker-compose.override.yml\"]",
        );
    env.write("migration.toml", &stacks);
    let out = env.run(&["plan", "--config", "migration.toml"]);
    for never in ["precompile", "systemctl"] {
        assert!(!out.contains(never), "{never}: {out}");
    }
    for line in out.lines().filter(|l| l.contains("docker")) {
        for never in [" rm ", " down", " volume ", "prune", " kill"] {
            assert!(!line.contains(never), "{never}: {line}");
        }
    }
    insta::assert_snapshot!(out);
}

/// `plan --format json` with `extra` arguments: the step ids, and the whole text.
fn plan_step_ids(extra: &[&str]) -> (Vec<String>, String) {
    let env = Env::new();
    env.write("migration.toml", CONFIG);
    let out = Command::new(env!("CARGO_BIN_EXE_hikkoshi"))
        .args(["plan", "--config", "migration.toml", "--format", "json"])
        .args(extra)
        .current_dir(env.path())
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect();
    (ids, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A rehearsal never stops the old host, moves Redis, starts Sidekiq or
/// touches DNS; it quarantines the copy instead.
#[test]
fn a_rehearsals_plan_leaves_the_source_and_dns_alone() {
    let (ids, text) = plan_step_ids(&["--rehearse"]);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    for never in [
        "stop-source",
        "redis",
        "start-target",
        "public-health",
        "dns",
        "disable-source",
        "rollback",
    ] {
        assert!(!ids.contains(&never), "a rehearsal has '{never}': {ids:?}");
    }
    for step in ["dump", "restore", "verify-db", "quarantine", "cleanup"] {
        assert!(ids.contains(&step), "a rehearsal lacks '{step}': {ids:?}");
    }
    assert!(text.contains("systemctl mask mastodon-sidekiq"), "{text}");
    assert!(
        !text.contains("systemctl start mastodon-web mastodon-sidekiq"),
        "{text}"
    );
}

#[test]
fn plan_as_json_lists_steps_in_order() {
    let (ids, text) = plan_step_ids(&[]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        ids,
        [
            "preflight",
            "prepare",
            "presync-media",
            "stage-env",
            "precompile",
            "stop-source",
            "dump",
            "move-dump",
            "move-dump-dir",
            "restore",
            "verify-db",
            "final-media",
            "copy-env",
            "redis",
            "start-target",
            "health",
            "public-health",
            "feeds",
            "search-deploy",
            "dns",
            "disable-source",
            "cleanup",
            "rollback"
        ]
    );
    assert_eq!(v["steps"][5]["downtime"], "start");
    assert!(
        v["steps"][5]["confirm"]
            .as_str()
            .is_some_and(|c| c.contains("mastodon-web"))
    );
}

#[test]
fn bad_config_exits_2_naming_file_and_line() {
    let env = Env::new();
    env.write(
        "migration.toml",
        "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"social.example.net\"\ndatabase = \"x; DROP DATABASE y\"\n",
    );
    insta::assert_snapshot!(env.run(&["plan", "--config", "migration.toml"]));
}

#[test]
fn missing_config_exits_2() {
    let env = Env::new();
    insta::assert_snapshot!(env.run(&["check", "--config", "nope.toml"]));
}

#[test]
fn bad_profile_file_exits_2_with_its_line() {
    let env = Env::new();
    env.write(
        "mine.toml",
        "name = \"mine\"\n[defaults]\nuser = \"u\"\ndir = \"/d\"\ndatabase = \"db\"\ndb_user = \"u\"\n[[phases]]\nid = \"p\"\ntitle = \"P\"\n[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\nkind = \"teleport\"\n",
    );
    env.write(
        "migration.toml",
        &CONFIG.replace("profile = \"mastodon\"", "profile = \"mine.toml\""),
    );
    let out = env.run(&["plan", "--config", "migration.toml"]);
    assert!(out.starts_with("exit: 2\n"), "{out}");
    assert!(
        out.contains("mine.toml:14:8: unknown variant `teleport`"),
        "{out}"
    );
}

#[test]
fn unreachable_host_fails_check_with_exit_1_and_touches_nothing() {
    let env = Env::new();
    // Port 1 on loopback: refused at once, no traffic leaves the machine.
    env.write(
        "ssh_config",
        "Host old new\n  HostName 127.0.0.1\n  Port 1\n  UserKnownHostsFile /dev/null\n",
    );
    env.write(
        "migration.toml",
        &format!("{CONFIG}\n[ssh]\nconfig_file = \"ssh_config\"\n"),
    );
    let out = env.run(&["check", "--config", "migration.toml"]);
    assert!(out.starts_with("exit: 1\n"), "{out}");
    assert!(
        out.contains("[FAIL] old: ssh: cannot connect to 'old'"),
        "{out}"
    );
    assert!(out.contains("Connection refused"), "{out}");
    assert!(out.contains("hikkoshi: step 'preflight' failed"), "{out}");
}

#[test]
fn run_without_headless_says_what_to_do() {
    let env = Env::new();
    env.write("migration.toml", CONFIG);
    let out = env.run(&["run", "--config", "migration.toml"]);
    assert!(out.starts_with("exit: 2\n"), "{out}");
    assert!(out.contains("--headless"), "{out}");
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let out = env.run(&["run"]);
    assert!(out.starts_with("exit: 2\n"), "{out}");
    assert!(out.contains("--config"), "{out}");
}

#[test]
fn plan_shows_a_profile_without_hosts() {
    let env = Env::new();
    insta::assert_snapshot!(env.run(&["plan", "--profile", "misskey"]));
}

#[test]
fn plan_shows_a_profile_file_that_extends_a_builtin_one() {
    let env = Env::new();
    env.write(
        "myapp.toml",
        "name = \"myapp\"\nextends = \"generic\"\n[defaults]\nuser = \"myapp\"\ndir = \"/srv/myapp\"\ndatabase = \"myapp\"\ndb_user = \"myapp\"\nservices = [\"myapp-web\", \"myapp-worker\"]\n[vars]\nsync_dirs = [\"{dir}/uploads\"]\nfiles = [\"{dir}/.env\"]\npost_commands = [[\"bin/myapp\", \"migrate\"]]\nhealth_url = \"http://127.0.0.1:8000/health\"\n",
    );
    insta::assert_snapshot!(env.run(&["plan", "--profile", "./myapp.toml"]));
}

#[test]
fn plan_refuses_an_unknown_profile() {
    let env = Env::new();
    insta::assert_snapshot!(env.run(&["plan", "--profile", "wordpress"]));
    insta::assert_snapshot!(env.run(&["plan"]));
}

const COMMANDS: [&str; 9] = [
    "init",
    "check",
    "plan",
    "run",
    "rehearse",
    "dns",
    "review",
    "completions",
    "man",
];

/// Every help text as a new user meets it, in one place to read and review.
#[test]
fn help_for_every_command() {
    let env = Env::new();
    let mut all = env.run(&["--help"]);
    for c in COMMANDS {
        all.push_str(&format!("\n=== hikkoshi {c} --help\n"));
        all.push_str(&env.run(&[c, "--help"]));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn completions_and_manual_pages_come_from_the_command_line_itself() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.run(&["completions", shell]);
        assert!(out.starts_with("exit: 0\n"), "{shell}: {out}");
        for word in ["rehearse", "reset-target", "from-backup", "on-failure"] {
            assert!(out.contains(word), "{shell} completion lacks '{word}'");
        }
    }
    let main = env.run(&["man"]);
    assert!(
        main.starts_with("exit: 0\n") && main.contains(".TH hikkoshi 1"),
        "{main}"
    );
    for c in COMMANDS {
        let page = env.run(&["man", c]);
        assert!(
            page.starts_with("exit: 0\n") && page.contains(&format!(".TH hikkoshi-{c} 1")),
            "{c}: {page}"
        );
    }
    insta::assert_snapshot!(env.run(&["man", "wordpress"]), @r"
    exit: 2
    --- stdout
    --- stderr
    hikkoshi: man: 'wordpress' is not a command of hikkoshi; its commands: init, check, plan, run, rehearse, dns, review, completions, man
    ");
}
