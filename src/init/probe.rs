//! What `hikkoshi init` reads on the old host: systemd's units, the files that
//! say which app a unit runs, PostgreSQL's databases, listening ports and the
//! web server's sites. Only reads, as `check` does; the secrets files are
//! either filtered on the host (.env.production: only settings that say where
//! things are leave it) or parsed here and dropped (default.yml, Rds.json).

use std::collections::BTreeMap;

use super::detect::{Probe, Signature, Unit};
use super::parse::{parse_nginx, parse_rds};
use crate::remote::{Host, RemoteCommand, RemoteError, RunAs};
use crate::runtime::Place;
use crate::runtime::database::query;
use crate::steps::misskey::MisskeyConfig;

/// The settings of .env.production init may read: none of them a secret.
const ENV_KEYS: &str =
    "LOCAL_DOMAIN|DB_HOST|DB_NAME|DB_USER|DB_PORT|REDIS_HOST|REDIS_PORT|S3_ENABLED|ES_ENABLED";

/// Prints "DIR<TAB>FILE" for each signature file that exists under each DIR.
const SIGNATURES: &str = r#"files=$1; shift
for d in "$@"; do
  for f in $files; do
    [ -f "$d/$f" ] && printf '%s\t%s\n' "$d" "$f"
  done
done
exit 0"#;

/// Only the lines of the settings that say where things are leave the host.
const ENV_FILTER: &str =
    r#"grep -E "^[[:space:]]*(export[[:space:]]+)?($2)=" -- "$1" || [ $? -eq 1 ]"#;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("on {host}: '{command}' failed (exit {exit}): {message}")]
    Failed {
        host: String,
        command: String,
        exit: String,
        message: String,
    },
}

async fn read(host: &Host, cmd: &RemoteCommand) -> Result<String, ProbeError> {
    let done = host.run_quiet(cmd).await?;
    if !done.success() {
        return Err(ProbeError::Failed {
            host: host.name().to_string(),
            command: cmd.display(),
            exit: done.exit_text(),
            message: done.cause(),
        });
    }
    Ok(done.stdout)
}

fn root(argv: &[&str]) -> RemoteCommand {
    RemoteCommand::new(RunAs::Root, argv.iter().copied())
}

/// Reads the old host. Fails only when systemd's units cannot be listed: the
/// rest is said in the config as what could not be read.
pub async fn probe(host: &Host) -> Result<Probe, ProbeError> {
    let mut p = Probe {
        units: units(host).await?,
        ..Probe::default()
    };
    let dirs: Vec<String> = {
        let mut d: Vec<String> = super::detect::candidate_units(&p.units)
            .iter()
            .map(|u| u.dir.clone())
            .collect();
        d.sort();
        d.dedup();
        d
    };
    if !dirs.is_empty() {
        let files = Signature::ALL.map(Signature::file).join(" ");
        let mut args = vec![files.as_str()];
        args.extend(dirs.iter().map(String::as_str));
        let out = read(host, &RemoteCommand::script(RunAs::Root, SIGNATURES, &args)).await?;
        for line in out.lines() {
            let Some((dir, file)) = line.split_once('\t') else {
                continue;
            };
            if let Some(s) = Signature::ALL.into_iter().find(|s| s.file() == file) {
                p.signatures.insert((dir.to_string(), s));
            }
        }
    }
    for (dir, sig) in p.signatures.clone() {
        let path = format!("{dir}/{}", sig.file());
        match sig {
            Signature::MastodonEnv => {
                let cmd = RemoteCommand::script(RunAs::Root, ENV_FILTER, &[&path, ENV_KEYS]);
                match read(host, &cmd).await {
                    Ok(text) => {
                        p.mastodon_env
                            .insert(dir, crate::steps::preflight::parse_env(&text));
                    }
                    Err(e) => p.notes.push(format!("{path} could not be read: {e}")),
                }
            }
            Signature::MisskeyConfig => {
                let parsed = read(host, &root(&["cat", "--", &path]))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|t| MisskeyConfig::parse(&t));
                p.misskey.insert(dir, parsed);
            }
            Signature::PleasanterRds => {
                let parsed = read(host, &root(&["cat", "--", &path]))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|t| parse_rds(&t));
                p.rds.insert(dir, parsed);
            }
        }
    }
    databases(host, &mut p).await;
    listeners(host, &mut p).await;
    sites(host, &mut p).await;
    Ok(p)
}

async fn units(host: &Host) -> Result<Vec<Unit>, ProbeError> {
    let list = read(
        host,
        &root(&[
            "systemctl",
            "list-unit-files",
            "--type=service",
            "--no-legend",
            "--no-pager",
        ]),
    )
    .await?;
    let mut names: Vec<String> = list
        .lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let name = cols.next()?;
            let state = cols.next().unwrap_or("");
            // Templates cannot be shown, aliases are shown under their own name.
            (name.ends_with(".service")
                && !name.contains("@.")
                && !matches!(state, "alias" | "masked")
                && crate::config::is_unit_name(name))
            .then(|| name.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut argv = vec![
        "systemctl",
        "show",
        "--no-pager",
        "-p",
        "Id",
        "-p",
        "User",
        "-p",
        "WorkingDirectory",
        "-p",
        "ActiveState",
        "-p",
        "UnitFileState",
        "-p",
        "MainPID",
        "--",
    ];
    argv.extend(names.iter().map(String::as_str));
    let out = read(host, &root(&argv)).await?;
    Ok(parse_show(&out))
}

/// `systemctl show` of several units: blocks of KEY=value, one per unit.
pub(crate) fn parse_show(text: &str) -> Vec<Unit> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let props: BTreeMap<&str, &str> = block.lines().filter_map(|l| l.split_once('=')).collect();
        let Some(id) = props.get("Id") else { continue };
        let Some(name) = id.strip_suffix(".service") else {
            continue;
        };
        // systemd shows "-/dir" and "!/dir" for its prefixes; "~" is the user's home.
        let dir = props
            .get("WorkingDirectory")
            .map(|d| d.trim_start_matches(['-', '!', '+']))
            .filter(|d| d.starts_with('/'))
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        out.push(Unit {
            name: name.to_string(),
            user: props.get("User").unwrap_or(&"").to_string(),
            dir,
            active: props.get("ActiveState") == Some(&"active"),
            enabled: props.get("UnitFileState") == Some(&"enabled"),
            main_pid: props
                .get("MainPID")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
        });
    }
    out
}

async fn databases(host: &Host, p: &mut Probe) {
    let sql = "SELECT 'db', datname, pg_get_userbyid(datdba) FROM pg_database WHERE NOT datistemplate AND datallowconn \
               UNION ALL SELECT DISTINCT 'session', usename::text, datname::text FROM pg_stat_activity \
               WHERE datname IS NOT NULL AND usename IS NOT NULL AND pid <> pg_backend_pid()";
    match query(
        host,
        &Place::Host(RunAs::User("postgres".into())),
        "postgres",
        sql,
        &[],
    )
    .await
    {
        Ok(rows) => {
            for row in rows {
                let mut f = row.splitn(3, '|');
                match (f.next(), f.next(), f.next()) {
                    (Some("db"), Some(db), Some(owner)) if db != "postgres" => {
                        p.databases.push((db.into(), owner.into()))
                    }
                    (Some("session"), Some(role), Some(db)) => {
                        p.sessions.push((role.into(), db.into()))
                    }
                    _ => {}
                }
            }
        }
        Err(e) => p
            .notes
            .push(format!("PostgreSQL's databases could not be listed: {e}")),
    }
}

async fn listeners(host: &Host, p: &mut Probe) {
    match read(host, &root(&["ss", "-Hltnp"])).await {
        Ok(out) => p.listeners = parse_ss(&out),
        Err(e) => p.notes.push(format!("listening ports unknown: {e}")),
    }
    match read(host, &root(&["ps", "-e", "-o", "pid=,ppid="])).await {
        Ok(out) => {
            p.parents = out
                .lines()
                .filter_map(|l| {
                    let mut c = l.split_whitespace();
                    Some((c.next()?.parse().ok()?, c.next()?.parse().ok()?))
                })
                .collect();
        }
        Err(e) => p.notes.push(format!("processes unknown: {e}")),
    }
}

/// (pid, port) from `ss -Hltnp`: `LISTEN 0 511 127.0.0.1:3000 0.0.0.0:* users:(("ruby",pid=123,fd=5))`.
pub(crate) fn parse_ss(text: &str) -> Vec<(u32, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = cols
            .get(3)
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok())
        else {
            continue;
        };
        for part in line.split("pid=").skip(1) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(pid) = digits.parse() {
                out.push((pid, port));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// nginx's own view of its configuration (`nginx -T`, with the `-c` it was
/// started with), when it runs.
async fn sites(host: &Host, p: &mut Probe) {
    let Some(pid) = p
        .units
        .iter()
        .find(|u| u.name == "nginx" && u.active && u.main_pid > 0)
        .map(|u| u.main_pid.to_string())
    else {
        return;
    };
    let cmdline = match read(host, &root(&["cat", "--", &format!("/proc/{pid}/cmdline")])).await {
        Ok(c) => c,
        Err(e) => {
            p.notes
                .push(format!("nginx's command line could not be read: {e}"));
            return;
        }
    };
    let mut argv = vec!["nginx".to_string(), "-T".into(), "-q".into()];
    argv.extend(nginx_config_args(&cmdline));
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    match read(host, &root(&args)).await {
        Ok(text) => p.sites = parse_nginx(&text),
        Err(e) => p
            .notes
            .push(format!("nginx's configuration could not be read: {e}")),
    }
}

/// `-c FILE` (and `-p PREFIX`) from a running nginx's command line, which
/// nginx rewrites to "nginx: master process /usr/sbin/nginx -c FILE ...".
pub(crate) fn nginx_config_args(cmdline: &str) -> Vec<String> {
    let words: Vec<&str> = cmdline
        .split(['\0', ' '])
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        if matches!(pair[0], "-c" | "-p") && pair[1].starts_with('/') {
            out.push(pair[0].to_string());
            out.push(pair[1].to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_blocks() {
        let text = "Id=mastodon-web.service\nUser=mastodon\nWorkingDirectory=/home/mastodon/live\nActiveState=active\nUnitFileState=enabled\nMainPID=32\n\nMainPID=0\nId=redis-server.service\nUser=redis\nWorkingDirectory=!/var/lib/redis/\nActiveState=inactive\nUnitFileState=disabled\n\nId=cron.service\nUser=\nWorkingDirectory=\nMainPID=5";
        let units = parse_show(text);
        assert_eq!(units.len(), 3);
        assert_eq!(
            units[0],
            Unit {
                name: "mastodon-web".into(),
                user: "mastodon".into(),
                dir: "/home/mastodon/live".into(),
                active: true,
                enabled: true,
                main_pid: 32
            }
        );
        assert_eq!(units[1].dir, "/var/lib/redis");
        assert!(!units[1].active && !units[1].enabled);
        assert_eq!(units[2].dir, "");
    }

    #[test]
    fn ss_lines_give_every_pid_its_port() {
        let text = "LISTEN 0 5 127.0.0.1:5000 0.0.0.0:* users:((\"hikkoshi-standi\",pid=46,fd=3))\nLISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:((\"nginx\",pid=48,fd=6),(\"nginx\",pid=47,fd=6))\nLISTEN 0 128 [::]:22 [::]:* users:((\"sshd\",pid=6,fd=4))\n";
        assert_eq!(
            parse_ss(text),
            vec![(6, 22), (46, 5000), (47, 443), (48, 443)]
        );
    }

    #[test]
    fn nginx_started_with_its_own_config() {
        assert_eq!(
            nginx_config_args(
                "nginx: master process /usr/sbin/nginx -c /var/lib/hikkoshi-host/nginx/nginx.conf -e /x.log -g daemon off;"
            ),
            ["-c", "/var/lib/hikkoshi-host/nginx/nginx.conf"]
        );
        assert!(
            nginx_config_args(
                "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"
            )
            .is_empty()
        );
    }
}
