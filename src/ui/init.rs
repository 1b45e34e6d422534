//! `hikkoshi init` for people: connects, says what it found, asks (in a
//! terminal) for what it could not find, and writes the config. Without a
//! terminal nothing is asked: placeholders take the answers' place.

use std::io::{BufRead, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::cli::InitArgs;
use crate::config::{Config, is_domain, is_ssh_destination};
use crate::init::render::{Draft, placeholders, render};
use crate::init::{App, seen_at, survey};
use crate::remote::{Host, Role};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Bad arguments, or a choice to make: nothing was read or written.
    #[error("{0}")]
    Usage(String),
    /// A host could not be read, or nothing was found there.
    #[error("{0}")]
    Failed(String),
}

fn usage(m: impl Into<String>) -> InitError {
    InitError::Usage(m.into())
}

/// Questions go to a person only when both ends are a terminal.
fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn ask(question: &str) -> Option<String> {
    eprint!("{question} ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let line = line.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// `[ssh] config_file` as it is written: the file's name when it sits beside
/// the config (the config reads it relative to itself), else its full path.
fn ssh_config_value(ssh: &Path, out: &Path) -> Result<String, InitError> {
    let full = ssh.canonicalize().map_err(|e| {
        usage(format!(
            "--ssh-config '{}' cannot be read: {e}",
            ssh.display()
        ))
    })?;
    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .ok();
    let text = match (full.parent(), out_dir, full.file_name()) {
        (Some(a), Some(b), Some(name)) if a == b => PathBuf::from(name),
        _ => full,
    };
    text.to_str()
        .map(str::to_string)
        .ok_or_else(|| usage(format!("--ssh-config '{}' is not UTF-8", ssh.display())))
}

fn choose<'a>(apps: &'a [App], wanted: Option<&str>, source: &str) -> Result<&'a App, InitError> {
    let list = || {
        apps.iter()
            .map(|a| format!("  --app {:<12} {}", a.handle(), a.summary()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(w) = wanted {
        return apps
            .iter()
            .find(|a| {
                a.handle() == w || a.kind.profile() == w || a.services.iter().any(|u| u.name == w)
            })
            .ok_or_else(|| {
                usage(format!(
                    "--app '{w}' is not among the apps found on '{source}':\n{}",
                    list()
                ))
            });
    }
    match apps {
        [one] => Ok(one),
        _ if interactive() => {
            for (i, a) in apps.iter().enumerate() {
                eprintln!("  {}. {}", i + 1, a.summary());
            }
            loop {
                // Enter alone, or the end of input, is no choice: say how to make one.
                let Some(answer) = ask(&format!("Which app moves? [1-{}]", apps.len())) else {
                    return Err(usage(format!(
                        "no app chosen; name it with --app:\n{}",
                        list()
                    )));
                };
                if let Some(a) = answer
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| apps.get(n))
                {
                    return Ok(a);
                }
            }
        }
        _ => Err(usage(format!(
            "'{source}' runs {} apps; say which one moves:\n{}",
            apps.len(),
            list()
        ))),
    }
}

fn ask_domain(app: &App) -> Option<String> {
    loop {
        let answer = ask(&format!(
            "The public domain name of {} ({}; Enter: leave a placeholder):",
            app.handle(),
            app.domain.why
        ))?;
        if is_domain(&answer) {
            return Some(answer);
        }
        eprintln!("'{answer}' is not a domain name (like app.example.net)");
    }
}

fn ask_expect(target: &str, seen: Option<&str>) -> Vec<IpAddr> {
    loop {
        let hint = seen
            .map(|s| format!("ssh reached it at {s}; "))
            .unwrap_or_default();
        let Some(answer) = ask(&format!(
            "The new host's public address(es) for [dns] expect, comma-separated ({hint}Enter: leave a placeholder for '{target}'):"
        )) else {
            return Vec::new();
        };
        let parsed: Result<Vec<IpAddr>, _> = answer.split(',').map(|a| a.trim().parse()).collect();
        match parsed {
            Ok(ips) if !ips.is_empty() => return ips,
            _ => eprintln!("'{answer}' is not a list of IP addresses"),
        }
    }
}

/// The whole command; prints what it found and what to do next.
pub async fn run(args: &InitArgs) -> Result<(), InitError> {
    let ssh_value = check_args(args)?;
    let found = read_source(args).await?;
    let app = choose(&found.apps, args.app.as_deref(), &args.source)?;
    let seen = reach_target(args).await;
    let domain = match &app.domain.value {
        None if interactive() => ask_domain(app),
        _ => None,
    };
    let expect = if !args.dns_expect.is_empty() {
        args.dns_expect.clone()
    } else if interactive() {
        ask_expect(&args.target, seen.as_deref())
    } else {
        Vec::new()
    };
    let file_name = args.out.display().to_string();
    let draft = Draft {
        app,
        source: &args.source,
        target: &args.target,
        ssh_config: ssh_value,
        domain,
        expect,
        target_seen_at: seen,
        notes: found.notes.clone(),
        file_name: file_name.clone(),
        date: jiff::Zoned::now().date().to_string(),
    };
    let text = render(&draft);
    let left = placeholders(&text);
    // What init writes must be what check reads, placeholders aside.
    if left.is_empty()
        && let Err(e) = Config::parse(&args.out, &text)
    {
        return Err(InitError::Failed(format!(
            "the config init made does not parse, which is a bug in hikkoshi: {e}"
        )));
    }
    write(&args.out, &text, args.force)?;
    say_written(&draft, &text, &left);
    Ok(())
}

/// Bad arguments are refused before any host is asked anything; returns
/// `[ssh] config_file` as it will be written.
fn check_args(args: &InitArgs) -> Result<Option<String>, InitError> {
    for (flag, dest) in [("--source", &args.source), ("--target", &args.target)] {
        if !is_ssh_destination(dest) {
            return Err(usage(format!(
                "{flag} '{}' is not an ssh destination or Host alias (no leading '-', no blanks or shell characters)",
                dest.escape_debug()
            )));
        }
    }
    if args.source == args.target {
        return Err(usage(format!(
            "--source and --target both name '{}'; a move needs two hosts",
            args.source
        )));
    }
    let out = &args.out;
    if out.exists() && !args.force {
        return Err(usage(format!(
            "'{}' exists; init never writes over a file: give another --out, or --force to replace it",
            out.display()
        )));
    }
    if out.is_dir() {
        return Err(usage(format!("'{}' is a directory", out.display())));
    }
    args.ssh_config
        .as_deref()
        .map(|s| ssh_config_value(s, out))
        .transpose()
}

/// What runs on the old host; an error when nothing could be found.
async fn read_source(args: &InitArgs) -> Result<crate::init::Survey, InitError> {
    let source = Host::connect(Role::Source, &args.source, args.ssh_config.as_deref())
        .await
        .map_err(|e| InitError::Failed(e.to_string()))?;
    println!("{}: connected as {}", args.source, source.login);
    let found = survey(&source)
        .await
        .map_err(|e| InitError::Failed(format!("{}: {e}", args.source)))?;
    source.close().await;
    if found.apps.is_empty() {
        let mut m = format!(
            "found no app on '{}': no systemd service runs as a user of its own from a directory with Mastodon's .env.production, Misskey's .config/default.yml, Pleasanter's Rds.json, or a PostgreSQL database of that user. Write the config by hand (README, \"Config\").",
            args.source
        );
        for n in &found.notes {
            m.push_str(&format!("\n  {n}"));
        }
        return Err(InitError::Failed(m));
    }
    for a in &found.apps {
        println!("{}: found {}", args.source, a.summary());
    }
    Ok(found)
}

/// The new host, checked now because `check` will need it; the address ssh
/// reached it at is a hint for [dns] expect.
async fn reach_target(args: &InitArgs) -> Option<String> {
    match Host::connect(Role::Target, &args.target, args.ssh_config.as_deref()).await {
        Ok(target) => {
            let seen = seen_at(&target).await;
            println!(
                "{}: connected as {}{}",
                args.target,
                target.login,
                seen.as_ref()
                    .map(|s| format!("; ssh reached it at {s}"))
                    .unwrap_or_default()
            );
            target.close().await;
            seen
        }
        Err(e) => {
            println!(
                "{}: not reached, which check will need: {}",
                args.target,
                e.to_string().lines().next().unwrap_or_default()
            );
            None
        }
    }
}

fn say_written(draft: &Draft<'_>, text: &str, left: &[String]) {
    println!(
        "wrote {}: profile '{}'{}",
        draft.file_name,
        draft.app.kind.profile(),
        draft
            .domain
            .as_ref()
            .or(draft.app.domain.value.as_ref())
            .map(|d| format!(" for {d}"))
            .unwrap_or_default()
    );
    if !left.is_empty() {
        let lines: Vec<String> = left
            .iter()
            .map(|k| {
                let n = text
                    .lines()
                    .position(|l| {
                        l.starts_with(&format!("{k} =")) && l.contains(crate::config::PLACEHOLDER)
                    })
                    .map_or(0, |n| n + 1);
                format!("'{k}' (line {n})")
            })
            .collect();
        println!("fill in: {}", lines.join(", "));
    }
    println!("next: hikkoshi check --config {}", draft.file_name);
}

fn write(out: &Path, text: &str, force: bool) -> Result<(), InitError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let failed =
        |e: std::io::Error| InitError::Failed(format!("cannot write '{}': {e}", out.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    tmp.write_all(text.as_bytes()).map_err(failed)?;
    tmp.as_file().sync_all().map_err(failed)?;
    let kept = if force {
        tmp.persist(out).map(|_| ())
    } else {
        tmp.persist_noclobber(out).map(|_| ())
    };
    kept.map_err(|e| failed(e.error))?;
    // The temporary file is 0600; a config holds no secret and is shared like one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o644)).map_err(failed)?;
    }
    Ok(())
}
