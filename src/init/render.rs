//! The config `hikkoshi init` writes: each value with a comment saying where it
//! was found, and a placeholder that `check` refuses by name for what could
//! not be found. Pure text from what was decided.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::detect::{App, Found, Kind};
use crate::config::PLACEHOLDER;

/// What the config is written from.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    pub app: &'a App,
    pub source: &'a str,
    pub target: &'a str,
    /// As written into `[ssh] config_file`.
    pub ssh_config: Option<String>,
    /// The domain as the admin answered it, when it was not found.
    pub domain: Option<String>,
    /// `[dns] expect`, when given or answered.
    pub expect: Vec<IpAddr>,
    /// The address the ssh connection reached the new host at: a hint only,
    /// since it may be a private one.
    pub target_seen_at: Option<String>,
    /// What could not be read, or was looked at and left out.
    pub notes: Vec<String>,
    /// The file's name, for the next command.
    pub file_name: String,
    pub date: String,
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn comment(out: &mut String, text: &str) {
    // Long explanations wrap at about 96 columns, as the rest of the file.
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 96 && line.len() > 1 {
            let _ = writeln!(out, "{line}");
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
}

fn setting(out: &mut String, key: &str, found: &Found, answered: Option<&str>, fill: &str) {
    match (answered, &found.value) {
        (Some(v), _) => {
            comment(out, &format!("as you answered ({})", found.why));
            let _ = writeln!(out, "{key} = {}", quoted(v));
        }
        (None, Some(v)) => {
            comment(out, &found.why);
            let _ = writeln!(out, "{key} = {}", quoted(v));
        }
        (None, None) => {
            comment(out, &format!("{PLACEHOLDER}: {}.", found.why));
            let _ = writeln!(out, "{key} = {}", quoted(&format!("{PLACEHOLDER}: {fill}")));
        }
    }
}

/// How many values are left as placeholders.
pub(crate) fn placeholders(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains(PLACEHOLDER))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect()
}

pub fn render(d: &Draft<'_>) -> String {
    let mut out = String::new();
    header(&mut out, d);
    app_section(&mut out, d);
    found_notes(&mut out, d);
    generic_vars(&mut out, d);
    dns_section(&mut out, d);
    out
}

/// Where the file came from, the profile, the hosts and ssh.
fn header(out: &mut String, d: &Draft<'_>) {
    let a = d.app;
    comment(
        out,
        &format!(
            "{}, written by `hikkoshi init` on {} from what runs on '{}'. Each value says where it was found; read them through, fill in what says {PLACEHOLDER}, then:",
            d.file_name, d.date, d.source
        ),
    );
    let _ = writeln!(out, "#   hikkoshi check --config {}", d.file_name);
    out.push('\n');
    comment(
        out,
        &format!(
            "{}: {}",
            match a.kind {
                Kind::Generic => "An app without a profile of its own (the generic profile)",
                k => k.title(),
            },
            a.evidence
        ),
    );
    let _ = writeln!(out, "profile = {}", quoted(a.kind.profile()));
    let _ = writeln!(out, "\n[source]\nssh = {}", quoted(d.source));
    let _ = writeln!(out, "\n[target]\nssh = {}", quoted(d.target));
    if let Some(f) = &d.ssh_config {
        let _ = writeln!(out, "\n[ssh]\nconfig_file = {}", quoted(f));
    }
}

/// [app]: each value with where it was found.
fn app_section(out: &mut String, d: &Draft<'_>) {
    let a = d.app;
    out.push_str("\n[app]\n");
    let domain_answer = d.domain.as_deref();
    setting(
        out,
        "domain",
        &a.domain,
        domain_answer,
        "the app's public domain name",
    );
    let units: Vec<&str> = a.services.iter().map(|u| u.name.as_str()).collect();
    comment(out, &format!("User= of {}", units.join(", ")));
    let _ = writeln!(out, "user = {}", quoted(&a.user));
    comment(
        out,
        &if a.kind == Kind::Pleasanter {
            format!(
                "the directory above {}/Implem.Pleasanter, the WorkingDirectory= of {}",
                a.dir,
                units.join(", ")
            )
        } else {
            format!("WorkingDirectory= of {}", units.join(", "))
        },
    );
    let _ = writeln!(out, "dir = {}", quoted(&a.dir));
    setting(out, "database", &a.database, None, "the app's database");
    setting(
        out,
        "db_user",
        &a.db_user,
        None,
        "the role the app connects as",
    );
    let state: Vec<String> = a
        .services
        .iter()
        .map(|u| {
            format!(
                "{} {}, {}",
                u.name,
                if u.active { "running" } else { "stopped" },
                if u.enabled { "enabled" } else { "not enabled" }
            )
        })
        .collect();
    comment(
        out,
        &format!(
            "the units that run as '{}' from {}: stopped on the old host and started and enabled on the new one by the move (now: {})",
            a.user,
            if a.kind == Kind::Pleasanter {
                format!("{}/Implem.Pleasanter", a.dir)
            } else {
                a.dir.clone()
            },
            state.join("; ")
        ),
    );
    let list: Vec<String> = units.iter().map(|u| quoted(u)).collect();
    let _ = writeln!(out, "services = [{}]", list.join(", "));
}

/// What else was found on the old host, as comments.
fn found_notes(out: &mut String, d: &Draft<'_>) {
    let a = d.app;
    let mut found = a.notes.clone();
    if !a.ports.is_empty() {
        let ports: Vec<String> = a.ports.iter().map(u16::to_string).collect();
        found.push(format!(
            "Listening: the app's processes listen on port {}",
            ports.join(", ")
        ));
    }
    found.extend(d.notes.iter().cloned());
    if !found.is_empty() {
        out.push('\n');
        comment(out, &format!("Also found on '{}':", d.source));
        for n in &found {
            comment(out, &format!("- {n}"));
        }
    }
}

/// A generic app's own settings, suggested and commented out.
fn generic_vars(out: &mut String, d: &Draft<'_>) {
    let a = d.app;
    if a.kind == Kind::Generic {
        out.push_str("\n[vars]\n");
        comment(
            out,
            "What the generic profile does besides the database and the services; a setting left out leaves its step out. Uncomment what the app has:",
        );
        let _ = writeln!(
            out,
            "# sync_dirs = [{}]   # directories copied with rsync before and during the downtime",
            quoted(&format!("{}/uploads", a.dir))
        );
        let _ = writeln!(
            out,
            "# files = [{}]   # copied byte for byte (0600, the new host's own kept as a backup)",
            quoted(&format!("{}/config/secrets.json", a.dir))
        );
        let _ = writeln!(
            out,
            "# post_commands = [[\"bin/migrate\"]]   # on the new host as '{}' in post_dir (default: dir), before the start",
            a.user
        );
        match a.ports.iter().next() {
            Some(port) => {
                let _ = writeln!(
                    out,
                    "# health_url = \"http://127.0.0.1:{port}/\"   # asked on the new host until it answers 200 (the app listens on {port})"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "# health_url = \"http://127.0.0.1:8080/health\"   # asked on the new host until it answers 200"
                );
            }
        }
    }
}

/// [dns]: the address given or answered, or the placeholder.
fn dns_section(out: &mut String, d: &Draft<'_>) {
    let a = d.app;
    out.push_str("\n[dns]\n");
    let domain = d
        .domain
        .as_deref()
        .or(a.domain.value.as_deref())
        .unwrap_or("<the app's domain>");
    if d.expect.is_empty() {
        let seen = d
            .target_seen_at
            .as_ref()
            .map(|ip| {
                format!(
                    " ssh reached '{}' at {ip}: use it if that is the address visitors will use.",
                    d.target
                )
            })
            .unwrap_or_default();
        comment(
            out,
            &format!(
                "{PLACEHOLDER}: the new host's public address(es). Before the cutover hikkoshi asks https://{domain} on them, then waits until resolvers answer with them.{seen} Or remove [dns] to leave DNS to yourself."
            ),
        );
        let _ = writeln!(
            out,
            "expect = [{}]",
            quoted(&format!("{PLACEHOLDER}: the new host's public address"))
        );
    } else {
        comment(
            out,
            &format!(
                "The new host's public address(es): before the cutover hikkoshi asks https://{domain} on them, then waits until resolvers answer with them."
            ),
        );
        let list: Vec<String> = d.expect.iter().map(|ip| quoted(&ip.to_string())).collect();
        let _ = writeln!(out, "expect = [{}]", list.join(", "));
    }
    out.push_str(
        "# resolvers = [\"1.1.1.1\"]   # optional: whom to ask (default: about 20 public resolvers)\n",
    );
}

#[cfg(test)]
mod tests {
    use super::super::detect::{apps, tests::lab_probe};
    use super::*;
    use crate::config::Config;

    fn draft<'a>(app: &'a App, expect: Vec<IpAddr>) -> Draft<'a> {
        Draft {
            app,
            source: "old",
            target: "new",
            ssh_config: Some("ssh_config".into()),
            domain: None,
            expect,
            target_seen_at: Some("198.51.100.20".into()),
            notes: vec![],
            file_name: "migration.toml".into(),
            date: "2026-12-04".into(),
        }
    }

    fn parse(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ssh_config"), "").expect("ssh_config");
        Config::parse(&dir.path().join("migration.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_labs_apps_give_configs_that_parse_once_the_address_is_in() {
        let (apps, _) = apps(&lab_probe());
        for app in &apps {
            let text = render(&draft(app, vec![]));
            insta::assert_snapshot!(format!("init_{}", app.kind.profile()), text);
            assert_eq!(placeholders(&text), ["expect"], "{text}");
            let err = parse(&text).expect_err("the placeholder must not pass");
            assert!(
                err.contains("still the placeholder `hikkoshi init` wrote"),
                "{err}"
            );
            let filled = render(&draft(app, vec!["198.51.100.20".parse().expect("ip")]));
            let c = parse(&filled).expect("a filled config parses");
            assert_eq!(
                Some(c.app.user.clone().unwrap_or_default()),
                Some(app.user.clone())
            );
            assert_eq!(c.app.database, app.database.value);
            assert_eq!(c.app.db_user, app.db_user.value);
            assert_eq!(
                c.app.services,
                Some(app.services.iter().map(|u| u.name.clone()).collect())
            );
        }
    }

    #[test]
    fn a_generic_app_without_a_domain_gets_placeholders_and_suggestions() {
        let mut p = lab_probe();
        p.units = vec![super::super::detect::Unit {
            name: "shop-web".into(),
            user: "shop".into(),
            dir: "/srv/shop".into(),
            active: true,
            enabled: true,
            main_pid: 70,
        }];
        p.databases.push(("shopdb".into(), "shop".into()));
        p.listeners.push((70, 8080));
        let (apps, _) = apps(&p);
        let text = render(&draft(&apps[0], vec![]));
        insta::assert_snapshot!("init_generic", text);
        assert_eq!(placeholders(&text), ["domain", "expect"]);
        let err = parse(&text).expect_err("placeholder");
        assert!(err.contains("'domain' is still the placeholder"), "{err}");
        let mut d = draft(&apps[0], vec!["203.0.113.7".parse().expect("ip")]);
        d.domain = Some("shop.example.org".into());
        let c = parse(&render(&d)).expect("answered config parses");
        assert_eq!(c.app.domain, "shop.example.org");
        assert!(c.vars.is_empty());
    }
}
