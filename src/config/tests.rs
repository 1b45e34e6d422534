use super::*;
use rstest::rstest;

const GOOD: &str = r#"profile = "mastodon"

[source]
ssh = "old"

[target]
ssh = "new"

[app]
domain = "social.example.net"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/migration.toml"), text)
}

#[test]
fn minimal_config_parses() {
    let c = parse(GOOD).expect("valid config");
    assert_eq!(c.source, "old");
    assert_eq!(c.target, "new");
    assert_eq!(c.app.domain, "social.example.net");
    assert_eq!(c.profile, ProfileRef::Builtin("mastodon".into()));
    assert!(c.app.user.is_none());
}

#[rstest]
#[case::unknown_top_key(
    "profile = \"mastodon\"\nflavour = 1\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n",
    "/etc/migration.toml:2:1: unknown field 'flavour'"
)]
#[case::unknown_app_key(
    "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\ndatabse = \"x\"\n",
    "/etc/migration.toml:7:1: unknown field 'databse'"
)]
#[case::missing_target(
    "[source]\nssh = \"old\"\n[app]\ndomain = \"a.example\"\n",
    "/etc/migration.toml:1:1: missing field 'target'"
)]
#[case::wrong_type(
    "[source]\nssh = 5\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n",
    "/etc/migration.toml:2:7: invalid type: integer '5', expected a string"
)]
#[case::bad_domain(
    "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a b;c\"\n",
    "/etc/migration.toml:6:10: 'a b;c' is not a domain name"
)]
#[case::ssh_option_injection(
    "[source]\nssh = \"-oProxyCommand=touch /tmp/x\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n",
    "/etc/migration.toml:2:7: '-oProxyCommand=touch /tmp/x' is not an ssh destination"
)]
#[case::database_conninfo(
    "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\ndatabase = \"x host=evil\"\n",
    "/etc/migration.toml:7:12: 'x host=evil' is not a PostgreSQL database name"
)]
#[case::relative_dir(
    "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\ndir = \"live\"\n",
    "/etc/migration.toml:7:7: 'live' is not an absolute path"
)]
#[case::same_hosts(
    "[source]\nssh = \"old\"\n[target]\nssh = \"old\"\n[app]\ndomain = \"a.example\"\n",
    "/etc/migration.toml:4:7: [source] and [target] both name 'old'"
)]
#[case::bad_wait(
    "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n[dns]\nexpect = [\"203.0.113.7\"]\nwait = \"soon\"\n",
    "/etc/migration.toml:9:8: 'soon' is not a duration"
)]
#[case::bad_expect(
    "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n[dns]\nexpect = [\"new-host\"]\n",
    "/etc/migration.toml:8:11: 'new-host' is not an IP address"
)]
#[case::unknown_profile(
    "profile = \"wordpress\"\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n",
    "/etc/migration.toml:1:11: unknown profile 'wordpress'"
)]
fn bad_configs_name_file_line_and_value(#[case] text: &str, #[case] expected: &str) {
    let err = parse(text).expect_err("must be refused").to_string();
    assert!(
        err.starts_with(expected),
        "error was:\n  {err}\nexpected it to start with:\n  {expected}"
    );
}

#[test]
fn dns_wait_parses_friendly_durations() {
    assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("soon"), None);
}

#[rstest]
#[case("old", true)]
#[case("root@old.example", true)]
#[case("ssh://root@old.example:2222", true)]
#[case("old!#*?~%", true)]
#[case("-oProxyCommand=x", false)]
#[case("ssh://-oProxyCommand=x", false)]
#[case("ssh://root@-oProxyCommand=x", false)]
#[case("root@-oProxyCommand=x", false)]
#[case("root@", false)]
#[case("old$(x)", false)]
#[case("old`x`", false)]
#[case("old;x", false)]
#[case("old x", false)]
#[case("old\nx", false)]
#[case("", false)]
fn ssh_destinations(#[case] dest: &str, #[case] ok: bool) {
    assert_eq!(is_ssh_destination(dest), ok);
}

#[rstest]
#[case("mastodon_production", true)]
#[case("_x1", true)]
#[case("Implem.Pleasanter", true)]
#[case(".x", false)]
#[case("a b", false)]
#[case("x=y", false)]
#[case("1abc", false)]
#[case("-d", false)]
#[case("a;b", false)]
#[case("", false)]
fn pg_names(#[case] name: &str, #[case] ok: bool) {
    assert_eq!(is_pg_name(name), ok);
}

fn hosts(source: &str, target: &str) -> String {
    format!(
        "[source]\nssh = \"old\"\n{source}[target]\nssh = \"new\"\n{target}[app]\ndomain = \"a.example\"\n"
    )
}

#[test]
fn each_host_says_its_install_kind() {
    let c = parse(&hosts(
        "compose = \"/srv/mastodon\"\ncompose_file = [\"docker-compose.yml\", \"/etc/m/override.yml\"]\ncompose_project = \"mastodon\"\ncompose_services = { database = \"postgres\", worker = \"sidekiq\" }\n",
        "",
    ))
    .expect("valid");
    let Install::Compose(src) = &c.source_install else {
        panic!("source is a compose install: {:?}", c.source_install);
    };
    assert_eq!(src.dir, "/srv/mastodon");
    assert_eq!(src.files, ["docker-compose.yml", "/etc/m/override.yml"]);
    assert_eq!(src.project.as_deref(), Some("mastodon"));
    assert_eq!(
        src.services.get("database").map(String::as_str),
        Some("postgres")
    );
    assert_eq!(c.target_install, Install::Systemd);
    let c = parse(&hosts(
        "",
        "compose = \"/home/m/live\"\ncompose_file = \"compose.yaml\"\n",
    ))
    .expect("valid");
    assert_eq!(c.source_install, Install::Systemd);
    assert!(
        matches!(&c.target_install, Install::Compose(t) if t.files == ["compose.yaml"] && t.project.is_none())
    );
}

#[rstest]
#[case::relative_dir(
    "compose = \"live\"\n",
    "3:11: [source] 'compose' is 'live': the project directory as an absolute path"
)]
#[case::dotdot_dir(
    "compose = \"/srv/../etc\"\n",
    "3:11: [source] 'compose' is '/srv/../etc'"
)]
#[case::option_file(
    "compose = \"/srv/m\"\ncompose_file = \"-H tcp://x\"\n",
    "4:16: [source] 'compose_file' '-H tcp://x' is not a file name"
)]
#[case::empty_files(
    "compose = \"/srv/m\"\ncompose_file = []\n",
    "4:16: [source] 'compose_file' is an empty list"
)]
#[case::project_upper(
    "compose = \"/srv/m\"\ncompose_project = \"Mastodon\"\n",
    "4:19: [source] 'compose_project' 'Mastodon' is not a compose project name"
)]
#[case::unknown_role(
    "compose = \"/srv/m\"\ncompose_services = { db = \"postgres\" }\n",
    "[source] compose_services: 'db' is not a role; roles: database, redis, web, worker, streaming"
)]
#[case::service_injection(
    "compose = \"/srv/m\"\ncompose_services = { web = \"web; rm -rf /\" }\n",
    "[source] compose_services: 'web; rm -rf /' is not a compose service name"
)]
#[case::stray_key(
    "compose_project = \"m\"\n",
    "3:19: [source] 'compose_project' belongs to a Docker Compose install: add 'compose = "
)]
#[case::placeholder(
    "compose = \"FILL IN: where the stack lives\"\n",
    "[source] 'compose' is still the placeholder"
)]
fn bad_compose_keys_are_refused_by_name(#[case] source: &str, #[case] expected: &str) {
    let err = parse(&hosts(source, "")).expect_err("refused").to_string();
    assert!(
        err.contains(expected),
        "error was:\n  {err}\nexpected:\n  {expected}"
    );
}
