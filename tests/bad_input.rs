//! Malformed and hostile input, table by table, against the built binary in a
//! hermetic environment (temp HOME and state dir, COLUMNS=100), with the input,
//! exit status, stdout and stderr snapshotted together.
//!
//! A refused config must exit 2 with one line naming `file:line:column` and
//! quoting the offending value, and must touch nothing: a fake `ssh` first on
//! PATH records every call (it must stay silent), and the temp dir must hold
//! exactly what the test put there (no journal, no log, no MARKER file that a
//! value run as a command would have created). Values that are allowed must
//! reach ssh as single, intact arguments, and never run.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a test crate: a failed expectation is the test failing

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use rstest::{Context, rstest};

const BASE: &str = r#"profile = "mastodon"

[source]
ssh = "old"

[target]
ssh = "new"

[app]
domain = "social.example.net"
"#;

/// BASE with `line` added to [app] (the last table).
fn app(line: &str) -> String {
    format!("{BASE}{line}\n")
}

/// BASE with a [dns] table of `lines`.
fn dns(lines: &str) -> String {
    format!("{BASE}\n[dns]\n{lines}\n")
}

/// BASE with its first `from` replaced.
fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

/// Records each call as a file of its arguments, each ended by a NUL byte, so
/// that what arrives is seen exactly, newlines and quotes included; then fails
/// the way an unreachable host does (openssh reads the cause from the -E file).
const FAKE_SSH: &str = r#"#!/bin/sh
log="$HIKKOSHI_TEST_CALLS/$$"
for a do printf '%s\0' "$a" >> "$log"; done
prev=
for a do
  if [ "$prev" = "-E" ]; then
    printf 'ssh: connect to host fake port 22: Connection refused\n' > "$a"
  fi
  prev=$a
done
exit 255
"#;

/// Where a value run as a shell command would leave its trace (relative: every
/// process of a test runs in the test's temp dir).
const MARKER: &str = "MARKER";

struct Env {
    dir: tempfile::TempDir,
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn text(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code.map_or_else(|| "signal".into(), |c| c.to_string()),
            self.stdout,
            self.stderr
        )
    }
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir(env.path().join("bin")).expect("bin");
        std::fs::create_dir(env.path().join("calls")).expect("calls");
        let ssh = env.write("bin/ssh", FAKE_SSH);
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Runs hikkoshi with the fake ssh first on PATH.
    fn run(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.run_with_path(args, &path)
    }

    fn run_with_path(&self, args: &[&str], path: &str) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_hikkoshi"))
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path())
            .env("XDG_STATE_HOME", self.path().join("state"))
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .env("HIKKOSHI_TEST_CALLS", self.path().join("calls"))
            .output()
            .expect("run hikkoshi");
        Output {
            code: out.status.code(),
            stdout: self.clean(&String::from_utf8_lossy(&out.stdout)),
            stderr: self.clean(&String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// The temp dir as [TMP], so snapshots are the same on every run.
    fn clean(&self, text: &str) -> String {
        let text = text.replace(&self.path().display().to_string(), "[TMP]");
        // openssh's control directory has a random suffix.
        let text = mask_after(
            &text,
            ".ssh-connection",
            |c| c.is_ascii_alphanumeric(),
            "XXXXXX",
        );
        // Run ids are the time and a random number: 20261121T191445Z-b5c3.
        let text = mask_after(&text, "hikkoshi check ", |c| c != ':', "[RUN]");
        mask_after(&text, " after ", |c| c.is_ascii_digit() || c == '.', "[N]")
    }

    /// Every call of the fake ssh, each as its arguments, in a stable order.
    fn ssh_calls(&self) -> Vec<Vec<String>> {
        let mut calls: Vec<Vec<String>> = std::fs::read_dir(self.path().join("calls"))
            .expect("calls")
            .map(|e| {
                let bytes = std::fs::read(e.expect("entry").path()).expect("call");
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut args: Vec<String> = text.split('\0').map(|a| self.clean(a)).collect();
                // Each argument ends with a NUL, so the last piece is empty.
                assert_eq!(args.pop().as_deref(), Some(""), "a call's log is cut short");
                args
            })
            .collect();
        calls.sort_by_key(|c| c.last().cloned());
        calls
    }

    /// Every path under the temp dir, relative to it.
    fn tree(&self) -> BTreeSet<String> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).expect("read_dir") {
                let p = e.expect("entry").path();
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(rel.display().to_string());
                if p.is_dir() && !p.is_symlink() {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(self.path(), self.path(), &mut out);
        out
    }

    fn marker_exists(&self) -> bool {
        self.path().join(MARKER).exists()
    }
}

/// Replaces what follows each `marker` while `keep` holds with `with`.
fn mask_after(text: &str, marker: &str, keep: fn(char) -> bool, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let (head, tail) = rest.split_at(at + marker.len());
        out.push_str(head);
        let after = tail.trim_start_matches(keep);
        if after.len() < tail.len() {
            out.push_str(with);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn case_name(ctx: &Context) -> &'static str {
    ctx.description.expect("every case is named")
}

/// Shows each argument of each ssh call on its own line, escaped, so that one
/// argument is visibly one argument.
fn render_calls(calls: &[Vec<String>]) -> String {
    calls
        .iter()
        .map(|c| {
            let args: Vec<String> = c.iter().map(|a| format!("  {a:?}\n")).collect();
            format!("ssh\n{}", args.concat())
        })
        .collect()
}

/// Checks the one-line `hikkoshi: migration.toml:LINE:COLUMN: ...` message
/// and that it quotes `quoted`.
fn assert_names_line_and_value(stderr: &str, quoted: &str) {
    assert!(
        quoted.starts_with('\'') && quoted.ends_with('\'') && quoted.len() >= 2,
        "the case must give the value in single quotes: {quoted}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, no raw newline from the value:\n{stderr}"
    );
    let rest = stderr
        .strip_prefix("hikkoshi: migration.toml:")
        .unwrap_or_else(|| panic!("names the file:\n{stderr}"));
    let mut parts = rest.splitn(3, ':');
    for what in ["line", "column"] {
        let n: usize = parts
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("names the {what}:\n{stderr}"));
        assert!(n >= 1, "{what} counts from 1:\n{stderr}");
    }
    assert!(
        parts.next().is_some_and(|m| m.starts_with(' ')),
        "then the message:\n{stderr}"
    );
    assert!(stderr.contains(quoted), "quotes {quoted}:\n{stderr}");
}

#[rstest]
// Structure: a table or a key that must be there, a value of the wrong type, a
// key that does not exist (a typo is an error, not ignored), broken TOML.
#[case::missing_source(with("[source]\nssh = \"old\"\n", ""), "'source'")]
#[case::missing_target(with("[target]\nssh = \"new\"\n", ""), "'target'")]
#[case::missing_app(with("[app]\ndomain = \"social.example.net\"\n", ""), "'app'")]
#[case::missing_domain(with("domain = \"social.example.net\"\n", ""), "'domain'")]
#[case::ssh_of_wrong_type(with("ssh = \"old\"", "ssh = 5"), "'5'")]
#[case::services_not_a_list(app(r#"services = "mastodon-web""#), "'mastodon-web'")]
#[case::dns_wait_of_wrong_type(dns("expect = [\"192.0.2.7\"]\nwait = 30"), "'30'")]
#[case::dns_expect_not_a_list(dns(r#"expect = "192.0.2.7""#), "'192.0.2.7'")]
#[case::unknown_top_level_key(with("profile", "sorce = \"old\"\nprofile"), "'sorce'")]
#[case::misspelt_app_key(app(r#"domian = "social.example.net""#), "'domian'")]
#[case::unknown_key_in_source(with("ssh = \"old\"", "ssh = \"old\"\nport = \"22\""), "'port'")]
#[case::unknown_key_in_dns(dns("expect = [\"192.0.2.7\"]\nttl = \"60\""), "'ttl'")]
#[case::unknown_table(format!("{BASE}\n[database]\nname = \"x\"\n"), "'database'")]
#[case::compose_dir_relative(with("ssh = \"old\"", "ssh = \"old\"\ncompose = \"live\""), "'live'")]
#[case::compose_file_like_an_option(
    with(
        "ssh = \"new\"",
        "ssh = \"new\"\ncompose = \"/srv/m\"\ncompose_file = \"-H tcp://evil\""
    ),
    "'-H tcp://evil'"
)]
#[case::compose_service_with_a_semicolon(
    with(
        "ssh = \"old\"",
        "ssh = \"old\"\ncompose = \"/srv/m\"\ncompose_services = { web = \"web;id\" }"
    ),
    "'web;id'"
)]
#[case::unterminated_string(with("\"social.example.net\"", "\"social.example.net"), "'\"'")]
// Empty strings.
#[case::empty_domain(with("\"social.example.net\"", "\"\""), "''")]
#[case::empty_ssh_destination(with("\"old\"", "\"\""), "''")]
#[case::empty_database(app(r#"database = """#), "''")]
#[case::empty_service(app(r#"services = [""]"#), "''")]
#[case::empty_profile(with("\"mastodon\"", "\"\""), "''")]
// The domain: letters, digits, '-' and '.', no empty label (so no trailing dot).
#[case::domain_with_a_space(
    with("social.example.net", "social example.net"),
    "'social example.net'"
)]
#[case::domain_with_quotes(
    with("\"social.example.net\"", r#"'so"cial.example.net'"#),
    r#"'so\"cial.example.net'"#
)]
#[case::domain_with_a_semicolon(
    with("social.example.net", "social.example.net;rm -rf /"),
    "'social.example.net;rm -rf /'"
)]
#[case::domain_with_command_substitution(
    with("social.example.net", "$(touch MARKER).example.net"),
    "'$(touch MARKER).example.net'"
)]
#[case::domain_with_backticks(
    with("social.example.net", "`touch MARKER`.example.net"),
    "'`touch MARKER`.example.net'"
)]
#[case::domain_with_a_newline(
    with("social.example.net", "social.example.net\\nevil.example"),
    r"'social.example.net\nevil.example'"
)]
#[case::domain_with_a_leading_dash(
    with("social.example.net", "-oProxyCommand.example.net"),
    "'-oProxyCommand.example.net'"
)]
#[case::domain_with_a_trailing_dot(
    with("social.example.net", "social.example.net."),
    "'social.example.net.'"
)]
#[case::domain_with_an_empty_label(
    with("social.example.net", "social..example.net"),
    "'social..example.net'"
)]
// Database and role names reach pg_dump and createdb as positional arguments:
// '=' would make a connection string of them, a leading '-' an option.
#[case::database_with_a_semicolon(
    app(r#"database = "mastodon; DROP DATABASE x""#),
    "'mastodon; DROP DATABASE x'"
)]
#[case::database_with_a_quote(app(r#"database = "mastodon'--""#), r"'mastodon\'--'")]
#[case::database_as_a_connection_string(
    app(r#"database = "dbname=x host=evil.example""#),
    "'dbname=x host=evil.example'"
)]
#[case::database_like_an_option(app(r#"database = "-hevil.example""#), "'-hevil.example'")]
#[case::database_with_a_space(app(r#"database = "mastodon production""#), "'mastodon production'")]
#[case::role_with_command_substitution(app(r#"db_user = "$(touch MARKER)""#), "'$(touch MARKER)'")]
#[case::role_as_a_connection_string(app(r#"db_user = "user=postgres""#), "'user=postgres'")]
#[case::role_like_an_option(app(r#"db_user = "-Upostgres""#), "'-Upostgres'")]
#[case::user_with_a_command(app(r#"user = "root;id""#), "'root;id'")]
// Paths on the hosts.
#[case::relative_app_dir(app(r#"dir = "live""#), "'live'")]
#[case::app_dir_with_a_newline(
    app(r#"dir = "/home/mastodon/live\n/etc""#),
    r"'/home/mastodon/live\n/etc'"
)]
#[case::app_dir_is_the_root(app(r#"dir = "/""#), "'/'")]
#[case::relative_work_dir(app(r#"work_dir = "hikkoshi-work""#), "'hikkoshi-work'")]
#[case::work_dir_with_a_space(
    app(r#"work_dir = "/home/mastodon/my work""#),
    "'/home/mastodon/my work'"
)]
#[case::work_dir_climbing_out(
    app(r#"work_dir = "/home/mastodon/../../etc""#),
    "'/home/mastodon/../../etc'"
)]
#[case::work_dir_with_a_newline(app(r#"work_dir = "/var/tmp\n/etc""#), r"'/var/tmp\n/etc'")]
#[case::work_dir_with_command_substitution(
    app(r#"work_dir = "/var/tmp/$(touch MARKER)""#),
    "'/var/tmp/$(touch MARKER)'"
)]
// Services are systemd unit names, never options or commands.
#[case::service_with_a_command(app(r#"services = ["foo;rm -rf /"]"#), "'foo;rm -rf /'")]
#[case::service_like_an_option(app(r#"services = ["mastodon-web", "-x"]"#), "'-x'")]
#[case::service_with_a_space(app(r#"services = ["mastodon web"]"#), "'mastodon web'")]
#[case::no_services(app("services = []"), "'services'")]
// ssh destinations: never an option (also not behind ssh:// or a user), no
// spaces, no characters a shell would act on (ssh's %h hands them to one);
// ${IFS} stands in for a space.
#[case::ssh_destination_as_an_option(
    with("\"old\"", "\"-oProxyCommand=touch MARKER\""),
    "'-oProxyCommand=touch MARKER'"
)]
#[case::ssh_destination_as_an_option_after_the_scheme(
    with("\"old\"", "\"ssh://-oProxyCommand=touch${IFS}MARKER\""),
    "'ssh://-oProxyCommand=touch${IFS}MARKER'"
)]
#[case::ssh_destination_as_an_option_after_the_user(
    with("\"old\"", "\"ssh://root@-oProxyCommand=touch${IFS}MARKER\""),
    "'ssh://root@-oProxyCommand=touch${IFS}MARKER'"
)]
#[case::ssh_destination_with_a_space(with("\"old\"", "\"old host\""), "'old host'")]
#[case::ssh_destination_with_a_newline(with("\"old\"", "\"old\\nnew\""), r"'old\nnew'")]
#[case::ssh_destination_with_command_substitution(
    with("\"old\"", "\"old$(touch${IFS}MARKER)\""),
    "'old$(touch${IFS}MARKER)'"
)]
#[case::ssh_destination_with_backticks(
    with("\"old\"", "\"old`touch${IFS}MARKER`\""),
    "'old`touch${IFS}MARKER`'"
)]
#[case::ssh_destination_with_a_semicolon(
    with("\"old\"", "\"old;touch${IFS}MARKER\""),
    "'old;touch${IFS}MARKER'"
)]
#[case::one_host_twice(with("\"new\"", "\"old\""), "'old'")]
// [dns].
#[case::dns_expect_not_an_address(dns(r#"expect = ["new-host"]"#), "'new-host'")]
#[case::dns_expect_empty(dns("expect = []"), "'expect'")]
#[case::dns_resolver_not_an_address(
    dns("expect = [\"192.0.2.7\"]\nresolvers = [\"1.1.1.1;id\"]"),
    "'1.1.1.1;id'"
)]
#[case::dns_wait_not_a_duration(dns("expect = [\"192.0.2.7\"]\nwait = \"soon\""), "'soon'")]
#[case::dns_wait_negative(dns("expect = [\"192.0.2.7\"]\nwait = \"-5m\""), "'-5m'")]
#[case::ca_file_missing(
    dns("expect = [\"192.0.2.7\"]\nca_file = \"staging-ca.pem\""),
    "'staging-ca.pem'"
)]
// Files next to the config.
#[case::ssh_config_missing(format!("{BASE}\n[ssh]\nconfig_file = \"ssh_config\"\n"), "'ssh_config'")]
#[case::unknown_profile(with("\"mastodon\"", "\"wordpress\""), "'wordpress'")]
#[case::profile_name_with_command_substitution(
    with("\"mastodon\"", "\"$(touch MARKER)\""),
    "'$(touch MARKER)'"
)]
#[case::profile_file_missing(
    with("\"mastodon\"", "\"profiles/mine.toml\""),
    "'profiles/mine.toml'"
)]
// [vars]: only the profile's own settings, in their shape.
#[case::var_the_profile_does_not_have(
    format!("{BASE}\n[vars]\nsync_dirs = [\"/srv\"]\n"),
    "'sync_dirs'"
)]
#[case::var_of_the_wrong_shape(
    format!("{BASE}\n[vars]\nmedia_dir = [\"/a\", \"/b\"]\n"),
    "'media_dir'"
)]
#[case::var_provided_by_the_engine(
    format!("{BASE}\n[vars]\nrun_id = \"$(touch MARKER)\"\n"),
    "'run_id'"
)]
#[case::var_with_a_newline(
    format!("{BASE}\n[vars]\nhealth_url = \"http://127.0.0.1:3000/\\n$(touch MARKER)\"\n"),
    "'http://127.0.0.1:3000/\\n$(touch MARKER)'"
)]
#[case::generic_without_its_app_settings(
    with("\"mastodon\"", "\"generic\""),
    "'user', 'dir', 'database', 'db_user', 'services'"
)]
#[case::generic_sync_dir_not_absolute(
    format!(
        "{}user = \"app\"\ndir = \"/srv/app\"\ndatabase = \"app\"\ndb_user = \"app\"\nservices = [\"app\"]\n\n[vars]\nsync_dirs = [\"-rf $(touch MARKER)\"]\n",
        with("\"mastodon\"", "\"generic\"")
    ),
    "'-rf $(touch MARKER)'"
)]
fn a_bad_config_is_refused_and_touches_nothing(
    #[context] ctx: Context,
    #[case] config: String,
    #[case] quoted: &str,
) {
    let env = Env::new();
    env.write("migration.toml", &config);
    let before = env.tree();

    let check = env.run(&["check", "--config", "migration.toml"]);
    assert_eq!(check.code, Some(2), "{}\n{config}", check.text());
    assert_eq!(check.stdout, "", "{}", check.text());
    assert_names_line_and_value(&check.stderr, quoted);
    for args in [
        &["plan", "--config", "migration.toml"][..],
        &["run", "--config", "migration.toml", "--headless", "--yes"],
        &[
            "rehearse",
            "--config",
            "migration.toml",
            "--headless",
            "--yes",
        ],
    ] {
        assert_eq!(
            env.run(args).text(),
            check.text(),
            "{args:?} refuses it like check"
        );
    }

    assert_eq!(env.ssh_calls(), Vec::<Vec<String>>::new(), "ssh was called");
    assert_eq!(env.tree(), before, "something was created");
    insta::assert_snapshot!(
        format!("config_{}", case_name(&ctx)),
        format!(
            "--- migration.toml\n{config}--- hikkoshi check\n{}",
            check.text()
        )
    );
}

/// A compose stack moves only into a stack in the same directory in this
/// version, and is not rehearsed yet: anything else is refused before
/// anything connects.
#[test]
fn compose_moves_this_version_cannot_make_are_refused() {
    let env = Env::new();
    let config = with(
        "ssh = \"old\"",
        "ssh = \"old\"\ncompose = \"/srv/mastodon\"",
    );
    env.write("migration.toml", &config);
    let before = env.tree();
    let mut seen = Vec::new();
    for args in [
        &["plan", "--config", "migration.toml"][..],
        &["run", "--config", "migration.toml", "--headless", "--yes"],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, Some(2), "{}", out.text());
        assert!(
            out.stderr.contains("[source] is a Docker Compose stack and [target] a systemd install: this version moves between installs of the same kind only"),
            "{}",
            out.text()
        );
        seen.push(format!("--- hikkoshi {}\n{}", args.join(" "), out.text()));
    }
    let two = config.replace("ssh = \"new\"", "ssh = \"new\"\ncompose = \"/home/m/live\"");
    assert_ne!(two, config);
    env.write("migration.toml", &two);
    let out = env.run(&["plan", "--config", "migration.toml"]);
    assert_eq!(out.code, Some(2), "{}", out.text());
    assert!(
        out.stderr
            .contains("set [target] compose = '/srv/mastodon'"),
        "{}",
        out.text()
    );
    seen.push(format!(
        "--- hikkoshi plan (another directory)\n{}",
        out.text()
    ));
    env.write("migration.toml", &config);
    {
        let args = [
            "rehearse",
            "--config",
            "migration.toml",
            "--headless",
            "--yes",
        ];
        let out = env.run(&args);
        assert_eq!(out.code, Some(2), "{}", out.text());
        assert!(
            out.stderr
                .contains("[source] is a Docker Compose install ('/srv/mastodon')"),
            "{}",
            out.text()
        );
        assert!(
            out.stderr.contains("Run 'hikkoshi check "),
            "{}",
            out.text()
        );
        seen.push(format!("--- hikkoshi {}\n{}", args.join(" "), out.text()));
    }
    assert_eq!(env.ssh_calls(), Vec::<Vec<String>>::new(), "ssh was called");
    assert_eq!(env.tree(), before, "something was created");
    insta::assert_snapshot!(seen.join(""));
}

/// Command-line values outside the config: refused with exit 2 and nothing run.
#[rstest]
#[case::on_failure_maybe(&["run", "--config", "migration.toml", "--headless", "--yes", "--on-failure", "maybe"], "'maybe'")]
#[case::run_without_a_terminal(&["run", "--config", "migration.toml"], "--headless")]
#[case::config_missing(&["check", "--config", "nope.toml"], "nope.toml")]
#[case::backup_path_relative(&["rehearse", "--config", "migration.toml", "--headless", "--yes", "--from-backup", "backups/nightly.dump"], "'backups/nightly.dump'")]
#[case::backup_path_with_a_newline(&["rehearse", "--config", "migration.toml", "--headless", "--yes", "--from-backup", "/srv/x\n/etc/passwd"], r"'/srv/x\n/etc/passwd'")]
#[case::dns_without_expect(&["dns", "social.example.net"], "--expect")]
#[case::dns_domain_with_command_substitution(&["dns", "$(touch MARKER).example.net", "--expect", "192.0.2.7"], "'$(touch MARKER).example.net'")]
#[case::dns_domain_with_a_space(&["dns", "social example.net", "--expect", "192.0.2.7"], "'social example.net'")]
#[case::dns_domain_with_a_newline(&["dns", "social.example.net\nevil.example", "--expect", "192.0.2.7"], r"'social.example.net\nevil.example'")]
#[case::dns_domain_as_an_option(&["dns", "-oProxyCommand=touch MARKER", "--expect", "192.0.2.7"], "'-o'")]
#[case::dns_domain_with_a_leading_dash(&["dns", "--expect", "192.0.2.7", "--", "-social.example.net"], "'-social.example.net'")]
#[case::dns_expect_not_an_address(&["dns", "social.example.net", "--expect", "new-host"], "'new-host'")]
#[case::dns_resolver_not_an_address(&["dns", "social.example.net", "--expect", "192.0.2.7", "--resolver", "1.1.1.1;id"], "'1.1.1.1;id'")]
#[case::dns_wait_not_a_duration(&["dns", "social.example.net", "--expect", "192.0.2.7", "--wait", "soon"], "'soon'")]
#[case::dns_timeout_not_a_duration(&["dns", "social.example.net", "--expect", "192.0.2.7", "--timeout", "$(touch MARKER)"], "'$(touch MARKER)'")]
#[case::review_of_no_journal(&["review", "nothing.jsonl"], "nothing.jsonl")]
#[case::init_over_an_existing_config(&["init", "--source", "old", "--target", "new", "--out", "migration.toml"], "--force")]
#[case::init_source_like_an_option(&["init", "--source=-oProxyCommand=touch MARKER", "--target", "new", "--out", "x.toml"], "'-oProxyCommand=touch MARKER'")]
#[case::init_target_with_command_substitution(&["init", "--source", "old", "--target", "$(touch MARKER)", "--out", "x.toml"], "'$(touch MARKER)'")]
#[case::init_one_host_twice(&["init", "--source", "old", "--target", "old", "--out", "x.toml"], "'old'")]
#[case::init_ssh_config_missing(&["init", "--source", "old", "--target", "new", "--ssh-config", "nope", "--out", "x.toml"], "'nope'")]
#[case::init_dns_expect_not_an_address(&["init", "--source", "old", "--target", "new", "--dns-expect", "new-host", "--out", "x.toml"], "'new-host'")]
fn a_bad_argument_is_refused_and_touches_nothing(
    #[context] ctx: Context,
    #[case] args: &[&str],
    #[case] says: &str,
) {
    let env = Env::new();
    env.write("migration.toml", BASE);
    let before = env.tree();
    let out = env.run(args);
    assert_eq!(out.code, Some(2), "{}", out.text());
    assert!(out.stderr.contains(says), "says {says}:\n{}", out.text());
    assert_eq!(env.ssh_calls(), Vec::<Vec<String>>::new(), "ssh was called");
    assert_eq!(env.tree(), before, "something was created");
    let shown: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    insta::assert_snapshot!(
        format!("args_{}", case_name(&ctx)),
        format!("--- hikkoshi {}\n{}", shown.join(" "), out.text())
    );
}

/// Values the validators allow although a shell would act on them: each reaches
/// ssh as one argument exactly as written, and nothing ever runs them (the
/// fake ssh refuses the connection, so `check` ends with exit 1). `plan` shows
/// them quoted as one argument too.
#[rstest]
#[case::host_alias_with_glob_and_comment_characters(
    with("\"old\"", "\"old!#*?~%\""),
    &[],
    &["old!#*?~%"]
)]
#[case::user_and_port_in_an_ssh_uri(
    with("\"old\"", "\"ssh://mastodon-admin@old.example:2222\""),
    &[],
    &["-l", "mastodon-admin", "-p", "2222", "old.example"]
)]
#[case::ssh_config_path_with_shell_syntax(
    format!("{BASE}\n[ssh]\nconfig_file = \"ssh config; $(touch MARKER) `touch MARKER`\"\n"),
    &["ssh config; $(touch MARKER) `touch MARKER`"],
    &["-F", "ssh config; $(touch MARKER) `touch MARKER`", "old", "new"]
)]
#[case::app_dir_with_shell_syntax(
    app(r#"dir = "/srv/my app/$(touch MARKER)/`touch MARKER`;x/../live""#),
    &[],
    &["old", "new"]
)]
#[case::generic_post_commands_and_files_with_shell_syntax(
    format!(
        "{}user = \"app\"\ndir = \"/srv/app\"\ndatabase = \"app\"\ndb_user = \"app\"\nservices = [\"app\"]\n\n[vars]\nfiles = [\"/srv/app/it's; $(touch MARKER).json\"]\npost_commands = [[\"bin/app\", \"--name=$(touch MARKER)\", \"`touch MARKER`\"]]\n",
        with("\"mastodon\"", "\"generic\"")
    ),
    &[],
    &["old", "new"]
)]
fn allowed_values_reach_ssh_as_single_arguments_and_never_run(
    #[context] ctx: Context,
    #[case] config: String,
    #[case] files: &[&str],
    #[case] arrive: &[&str],
) {
    let env = Env::new();
    env.write("migration.toml", &config);
    for f in files {
        env.write(f, "");
    }

    let plan = env.run(&["plan", "--config", "migration.toml"]);
    assert_eq!(plan.code, Some(0), "{}", plan.text());
    let check = env.run(&["check", "--config", "migration.toml"]);
    assert_eq!(check.code, Some(1), "{}", check.text());
    assert!(!env.marker_exists(), "a value ran as a command");

    let calls = env.ssh_calls();
    assert_eq!(calls.len(), 2, "one connection per host: {calls:?}");
    for a in arrive {
        assert!(
            calls.iter().any(|c| c.iter().any(|x| x == a)),
            "{a:?} arrives as one argument: {calls:?}"
        );
    }
    // Only the lines of the plan that show the hostile value.
    let mut plan_lines: String = plan
        .stdout
        .lines()
        .filter(|l| l.contains(MARKER))
        .map(|l| format!("{l}\n"))
        .collect();
    if plan_lines.is_empty() {
        plan_lines = "(none)\n".into();
    }
    insta::assert_snapshot!(
        format!("allowed_{}", case_name(&ctx)),
        format!(
            "--- migration.toml\n{config}--- hikkoshi plan (lines with {MARKER})\n{plan_lines}--- hikkoshi check\n{}--- ssh calls\n{}",
            check.text(),
            render_calls(&calls)
        )
    );
}

/// Paths given on the command line are data too: the journal is created under
/// its literal name, the backup path goes nowhere near a shell.
#[test]
fn hostile_paths_on_the_command_line_stay_data() {
    let env = Env::new();
    env.write("migration.toml", BASE);
    let journal = "journal $(touch MARKER) `touch MARKER`.jsonl";
    let out = env.run(&[
        "rehearse",
        "--config",
        "migration.toml",
        "--headless",
        "--yes",
        "--journal",
        journal,
        "--from-backup",
        "/srv/backups/$(touch MARKER);`touch MARKER`.dump",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(!env.marker_exists(), "a value ran as a command");
    assert!(env.path().join(journal).is_file(), "{}", out.text());
    let calls = env.ssh_calls();
    assert_eq!(
        calls.len(),
        2,
        "only the two connection attempts: {calls:?}"
    );
    assert!(
        calls.iter().all(|c| !c.iter().any(|a| a.contains(MARKER))),
        "{calls:?}"
    );
}

/// A host that refuses the connection: exit 1 (a step failed, not bad input),
/// the host and the cause named, a hint at what to do, and nothing created but
/// hikkoshi's own log.
#[test]
fn an_unreachable_host_fails_check_with_exit_1_and_creates_nothing() {
    let env = Env::new();
    // Port 1 on loopback: refused at once, no traffic leaves the machine.
    env.write(
        "ssh_config",
        "Host old new\n  HostName 127.0.0.1\n  Port 1\n  BatchMode yes\n  ConnectTimeout 2\n  UserKnownHostsFile /dev/null\n",
    );
    env.write(
        "migration.toml",
        &format!("{BASE}\n[ssh]\nconfig_file = \"ssh_config\"\n"),
    );
    let before = env.tree();
    // The real ssh this time.
    let out = env.run_with_path(
        &["check", "--config", "migration.toml"],
        &std::env::var("PATH").unwrap_or_default(),
    );
    assert_eq!(out.code, Some(1), "{}", out.text());
    let text = out.text();
    for says in [
        "cannot connect to 'old'",
        "cannot connect to 'new'",
        "Connection refused",
        "step 'preflight' failed",
        "nothing was changed",
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -F ssh_config old true",
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -F ssh_config new true",
        "run check again",
    ] {
        assert!(text.contains(says), "says {says}:\n{text}");
    }
    let created: Vec<String> = env.tree().difference(&before).cloned().collect();
    assert_eq!(
        created,
        ["state", "state/hikkoshi", "state/hikkoshi/hikkoshi.log"],
        "only hikkoshi's own log"
    );
    insta::assert_snapshot!(text);
}

/// `init` against hosts that refuse the connection: exit 1 naming the host,
/// and no config written.
#[test]
fn an_unreachable_host_fails_init_with_exit_1_and_writes_nothing() {
    let env = Env::new();
    env.write(
        "ssh_config",
        "Host old new\n  HostName 127.0.0.1\n  Port 1\n  BatchMode yes\n  ConnectTimeout 2\n  UserKnownHostsFile /dev/null\n",
    );
    let before = env.tree();
    let out = env.run_with_path(
        &[
            "init",
            "--source",
            "old",
            "--target",
            "new",
            "--ssh-config",
            "ssh_config",
        ],
        &std::env::var("PATH").unwrap_or_default(),
    );
    assert_eq!(out.code, Some(1), "{}", out.text());
    let text = out.text();
    for says in ["cannot connect to 'old'", "Connection refused"] {
        assert!(text.contains(says), "says {says}:\n{text}");
    }
    let created: Vec<String> = env.tree().difference(&before).cloned().collect();
    assert_eq!(
        created,
        ["state"],
        "no config; only the directory ssh's control socket would live in"
    );
    insta::assert_snapshot!(text);
}
