//! Malformed and hostile input: every case is refused with exit 2 and a message
//! that names the file, line and column and quotes the offending value — and
//! nothing is contacted: a fake `ssh` first on PATH records any call, and a
//! marker file shows whether a value ever ran as a command.

use std::path::Path;
use std::process::Command;

use rstest::rstest;

const BASE: &str =
    "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"social.example.net\"\n";

/// The base config with the line starting with `key` replaced (or `extra` appended).
fn config_with(replace: Option<(&str, &str)>, extra: &str) -> String {
    let mut text: String = BASE
        .lines()
        .map(|l| match replace {
            Some((key, line)) if l.starts_with(key) => format!("{line}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    text.push_str(extra);
    text
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    ssh_calls: String,
    marker: bool,
}

/// Runs hikkoshi in a temp dir whose PATH starts with a recording `ssh`.
fn run(config: &str, args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let log = dir.path().join("ssh-calls");
    let ssh = bin.join("ssh");
    std::fs::write(
        &ssh,
        format!(
            "#!/bin/sh\nfor a do printf '%s\\n' \"$a\" >> '{}'; done\nexit 255\n",
            log.display()
        ),
    )
    .expect("fake ssh");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.path().join("migration.toml"), config).expect("config");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hikkoshi"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("COLUMNS", "100")
        .env("MARKER", dir.path().join("pwned"))
        .output()
        .expect("run hikkoshi");
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr)
            .replace(&dir.path().display().to_string(), "[TMP]"),
        ssh_calls: std::fs::read_to_string(&log).unwrap_or_default(),
        marker: Path::new("/tmp/hikkoshi-bad-input-pwned").exists()
            || dir.path().join("pwned").exists(),
    }
}

#[rstest]
#[case::missing_source(config_with(Some(("[source]", "")), "").replace("ssh = \"old\"\n", ""), "missing field `source`")]
#[case::missing_domain(config_with(Some(("domain", "")), ""), "missing field `domain`")]
#[case::unknown_top_level_key(config_with(None, "sorce = \"old\"\n"), "unknown field `sorce`")]
#[case::misspelt_app_key(
    config_with(None, "domian = \"x.example\"\n"),
    "unknown field `domian`"
)]
#[case::ssh_of_wrong_type(config_with(Some(("ssh = \"old\"", "ssh = 5")), ""), "invalid type")]
#[case::services_not_a_list(config_with(None, "services = \"mastodon-web\"\n"), "invalid type")]
#[case::dns_wait_of_wrong_type(
    config_with(None, "[dns]\nexpect = [\"192.0.2.7\"]\nwait = 30\n"),
    "invalid type"
)]
#[case::domain_with_a_space(config_with(Some(("domain", "domain = \"social example.net\"")), ""), "'social example.net' is not a domain name")]
#[case::domain_with_a_semicolon(config_with(Some(("domain", "domain = \"a.example;rm -rf /\"")), ""), "'a.example;rm -rf /' is not a domain name")]
#[case::domain_with_command_substitution(config_with(Some(("domain", "domain = \"$(touch /tmp/hikkoshi-bad-input-pwned).example\"")), ""), "is not a domain name")]
#[case::domain_with_a_newline(config_with(Some(("domain", "domain = \"a.example\\nb.example\"")), ""), "is not a domain name")]
#[case::domain_with_a_leading_dash(config_with(Some(("domain", "domain = \"-oProxyCommand.example\"")), ""), "'-oProxyCommand.example' is not a domain name")]
#[case::database_with_a_quote(
    config_with(None, "database = \"mastodon'; DROP TABLE users; --\"\n"),
    "is not a PostgreSQL database name"
)]
#[case::database_as_a_connection_string(
    config_with(None, "database = \"host=evil.example dbname=x\"\n"),
    "'host=evil.example dbname=x' is not a PostgreSQL database name"
)]
#[case::role_with_a_leading_dash(
    config_with(None, "db_user = \"-Upostgres\"\n"),
    "'-Upostgres' is not a PostgreSQL role name"
)]
#[case::relative_app_dir(
    config_with(None, "dir = \"live\"\n"),
    "'live' is not an absolute path"
)]
#[case::app_dir_with_a_newline(
    config_with(None, "dir = \"/home/x\\n/etc\"\n"),
    "is not an absolute path"
)]
#[case::work_dir_with_a_space(
    config_with(None, "work_dir = \"/home/my work\"\n"),
    "'/home/my work' is not an absolute path of letters"
)]
#[case::work_dir_climbing_out(
    config_with(None, "work_dir = \"/home/../etc\"\n"),
    "'/home/../etc' is not an absolute path of letters"
)]
#[case::service_with_a_command(
    config_with(None, "services = [\"web;rm -rf /\"]\n"),
    "'web;rm -rf /' is not a systemd unit name"
)]
#[case::service_like_an_option(
    config_with(None, "services = [\"--now\"]\n"),
    "'--now' is not a systemd unit name"
)]
#[case::user_with_a_command(
    config_with(None, "user = \"root;id\"\n"),
    "'root;id' is not a unix user name"
)]
#[case::ssh_destination_as_an_option(config_with(Some(("ssh = \"old\"", "ssh = \"-oProxyCommand=touch /tmp/hikkoshi-bad-input-pwned\"")), ""), "-oProxyCommand=touch /tmp/hikkoshi-bad-input-pwned")]
#[case::ssh_destination_with_a_space(config_with(Some(("ssh = \"old\"", "ssh = \"old host\"")), ""), "'old host'")]
#[case::one_host_twice(config_with(Some(("ssh = \"new\"", "ssh = \"old\"")), ""), "both name 'old'")]
#[case::dns_expect_not_an_address(
    config_with(None, "[dns]\nexpect = [\"new-host\"]\n"),
    "'new-host' is not an IP address"
)]
#[case::dns_expect_empty(
    config_with(None, "[dns]\nexpect = []\n"),
    "expect needs at least one address"
)]
#[case::dns_resolver_not_an_address(
    config_with(
        None,
        "[dns]\nexpect = [\"192.0.2.7\"]\nresolvers = [\"dns.google\"]\n"
    ),
    "'dns.google' is not a resolver address"
)]
#[case::dns_wait_not_a_duration(
    config_with(None, "[dns]\nexpect = [\"192.0.2.7\"]\nwait = \"soon\"\n"),
    "'soon' is not a duration"
)]
#[case::ca_file_missing(
    config_with(None, "[dns]\nexpect = [\"192.0.2.7\"]\nca_file = \"nope.pem\"\n"),
    "CA certificate file 'nope.pem' does not exist"
)]
#[case::ssh_config_missing(
    config_with(None, "[ssh]\nconfig_file = \"nope\"\n"),
    "ssh config file 'nope' does not exist"
)]
#[case::unknown_profile(format!("profile = \"wordpress\"\n{BASE}"), "unknown profile 'wordpress'")]
#[case::profile_file_missing(format!("profile = \"./mine.toml\"\n{BASE}"), "profile file './mine.toml' does not exist")]
fn a_bad_config_is_refused_and_touches_nothing(#[case] config: String, #[case] says: &str) {
    for command in ["check", "plan", "run", "rehearse"] {
        let mut args = vec![command, "--config", "migration.toml"];
        if matches!(command, "run" | "rehearse") {
            args.extend(["--headless", "--yes"]);
        }
        let out = run(&config, &args);
        assert_eq!(out.code, Some(2), "{command}: {}\n{config}", out.stderr);
        assert!(
            out.stderr.contains(says),
            "{command} should say '{says}':\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("migration.toml:"),
            "{command}: the file and line are named:\n{}",
            out.stderr
        );
        assert_eq!(
            out.ssh_calls, "",
            "{command}: ssh was called for a refused config"
        );
        assert!(!out.marker, "{command}: a value ran as a command");
    }
}

/// Flags and arguments outside the config.
#[rstest]
#[case::on_failure_unknown(&["run", "--config", "migration.toml", "--headless", "--on-failure", "maybe"], "invalid value 'maybe'")]
#[case::backup_path_relative(&["rehearse", "--config", "migration.toml", "--headless", "--from-backup", "backups/nightly.dump"], "'backups/nightly.dump' is not an absolute path")]
#[case::backup_path_with_a_newline(&["rehearse", "--config", "migration.toml", "--headless", "--from-backup", "/tmp/x\n/etc/passwd"], "is not an absolute path")]
#[case::dns_domain_with_a_command(&["dns", "$(touch /tmp/hikkoshi-bad-input-pwned).example", "--expect", "192.0.2.7"], "is not a domain name")]
#[case::dns_expect_not_an_address(&["dns", "social.example.net", "--expect", "new-host"], "--expect 'new-host' is not an IP address")]
#[case::dns_resolver_not_an_address(&["dns", "social.example.net", "--expect", "192.0.2.7", "--resolver", "1.1.1.1;id"], "--resolver '1.1.1.1;id'")]
#[case::resume_without_a_journal(&["run", "--config", "migration.toml", "--headless", "--resume"], "no journal of an earlier run")]
#[case::review_of_no_journal(&["review", "nothing.jsonl"], "nothing.jsonl")]
fn a_bad_argument_is_refused_and_touches_nothing(#[case] args: &[&str], #[case] says: &str) {
    let out = run(BASE, args);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(says),
        "should say '{says}':\n{}",
        out.stderr
    );
    assert_eq!(out.ssh_calls, "", "ssh was called");
    assert!(!out.marker, "a value ran as a command");
}
