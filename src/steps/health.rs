//! Health checks of the new host: its web service asked from the new host
//! itself, and (`pinned = true`) the public URL asked from this machine with
//! the domain pinned to each address DNS will point at, as visitors will
//! reach it once the record changes.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Done, StepFailure, StepResult};
use crate::events::{CheckStatus, Stream};
use crate::plan::Plan;
use crate::profile::template::Vars;
use crate::profile::{HealthBody, StepSpec};
use crate::remote::{RemoteCommand, RunAs};
use crate::steps::ctx::{RunCtx, StepIo};

fn limit(step: &StepSpec) -> Duration {
    step.timeout
        .as_deref()
        .and_then(crate::units::parse_duration)
        .unwrap_or(Duration::from_secs(120))
}

/// One attempt: Ok on HTTP 200, else why not (and whether trying again can help).
pub(super) struct Attempt {
    pub ok: bool,
    /// The HTTP status, when there was an answer.
    pub status: Option<String>,
    /// An HTTP answer of any status: the connection and TLS worked.
    pub answered: bool,
    pub why: String,
    /// A certificate that does not verify will not start verifying by waiting.
    pub hopeless: bool,
}

fn read_curl(success: bool, stdout: &str, exit_code: Option<i32>, stderr: &[String]) -> Attempt {
    let mut lines: Vec<&str> = stdout.lines().collect();
    let code = lines.pop().unwrap_or("").trim().to_string();
    let body = lines.join(" ");
    // An error page says what it is in its title; the rest is markup.
    let body: String = match body
        .split_once("<title>")
        .and_then(|(_, t)| t.split_once("</title>"))
    {
        Some((title, _)) => title.trim().to_string(),
        None => body.chars().take(200).collect(),
    };
    if success && code == "200" {
        return Attempt {
            ok: true,
            status: Some(code),
            answered: true,
            why: String::new(),
            hopeless: false,
        };
    }
    if success {
        return Attempt {
            ok: false,
            answered: true,
            why: format!("HTTP {code} {body}").trim_end().to_string(),
            status: Some(code),
            hopeless: false,
        };
    }
    // curl's own line ("curl: (60) ...") says most; advice follows it.
    let said = stderr
        .iter()
        .find(|l| l.starts_with("curl: ("))
        .or_else(|| stderr.iter().rev().find(|l| !l.trim().is_empty()))
        .cloned()
        .unwrap_or_else(|| "no answer".into());
    // curl's exit codes: 7 connect, 28 timeout, 35 TLS handshake, 51/60 certificate.
    let (hint, hopeless) = match exit_code {
        Some(7) => (
            "nothing accepts connections there: is the web server (nginx) running and the port open in the firewall?",
            false,
        ),
        Some(28) => (
            "no answer in time: a firewall dropping the port, or a server that hangs",
            false,
        ),
        Some(35) => (
            "the TLS handshake failed: check the web server's ssl settings",
            true,
        ),
        Some(51 | 60) => (
            "the certificate does not verify for this domain: copy the certificate (e.g. /etc/letsencrypt) from the old host, or for a private CA set [dns] ca_file",
            true,
        ),
        _ => ("", false),
    };
    Attempt {
        ok: false,
        status: None,
        answered: false,
        why: if hint.is_empty() {
            said
        } else {
            format!("{said} ({hint})")
        },
        hopeless,
    }
}

pub async fn run(step: &StepSpec, body: &HealthBody, ctx: &mut RunCtx, io: &StepIo) -> StepResult {
    if body.pinned {
        return run_pinned(step, body, ctx, io).await;
    }
    let url = ctx.vars.render(&body.url)?;
    let limit = limit(step);
    ctx.connect().await?;
    let hosts = ctx.connected()?;
    let dst = &hosts.target;
    let cmd = RemoteCommand::new(
        RunAs::Login,
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--",
            url.as_str(),
        ],
    );
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        let f = dst.run_quiet(&cmd).await?;
        let a = read_curl(f.success(), &f.stdout, f.exit_code, &f.stderr_tail);
        if a.ok {
            io.output(
                Stream::Stdout,
                format!(
                    "{}: {url} answered 200 after {:.1}s",
                    dst.name(),
                    started.elapsed().as_secs_f64()
                ),
            );
            return Ok(Done::Completed);
        }
        if started.elapsed() + wait > limit {
            return Err(StepFailure {
                command: Some(cmd.display()),
                ..StepFailure::on(
                    dst,
                    format!(
                        "on {}: {url} did not answer 200 within {}s; last answer: {}; check the web service and its log on the new host",
                        dst.name(),
                        limit.as_secs(),
                        a.why
                    ),
                )
            });
        }
        io.output(Stream::Stdout, format!("not yet: {}", a.why));
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// The URL's host and port, for curl's `--resolve HOST:PORT:ADDR`.
pub(super) fn host_port(url: &str) -> Result<(String, u16), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        _ => return Err(format!("'{url}' has no domain name to pin")),
    };
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| format!("'{url}' has no port"))?;
    Ok((host, port))
}

/// curl's arguments for one pinned request: no ~/.curlrc (-q) and no proxy,
/// since a proxy would resolve the name itself and the pin would not hold.
pub(crate) fn pinned_argv(
    url: &str,
    host: &str,
    port: u16,
    addr: IpAddr,
    ca: Option<&Path>,
) -> Vec<String> {
    let addr = match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let mut argv: Vec<String> = [
        "curl",
        "-q",
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--resolve",
    ]
    .map(String::from)
    .into();
    argv.push(format!("{host}:{port}:{addr}"));
    if let Some(ca) = ca {
        argv.push("--cacert".into());
        argv.push(ca.display().to_string());
    }
    argv.push("--".into());
    argv.push(url.to_string());
    argv
}

pub(super) async fn curl_local(argv: &[String]) -> Result<Attempt, StepFailure> {
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            StepFailure::new(format!(
                "cannot run 'curl' on this machine ({e}); install curl (apt-get install curl) and retry"
            ))
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect();
    Ok(read_curl(
        out.status.success(),
        &stdout,
        out.status.code(),
        &stderr,
    ))
}

async fn run_pinned(
    step: &StepSpec,
    body: &HealthBody,
    ctx: &mut RunCtx,
    io: &StepIo,
) -> StepResult {
    let url = ctx.vars.render(&body.url)?;
    let Some(dns) = ctx.opts.dns.clone() else {
        return Ok(Done::Skipped(format!(
            "no [dns] expect addresses in the config, so the new host's public address is unknown; check it yourself before changing DNS: curl --resolve {}:443:NEW_ADDRESS {url}",
            ctx.plan.domain
        )));
    };
    let (host, port) = host_port(&url).map_err(StepFailure::new)?;
    let limit = limit(step);
    let started = Instant::now();
    for addr in &dns.expect {
        let argv = pinned_argv(&url, &host, port, *addr, dns.ca_file.as_deref());
        let shown = crate::plan::shell_join(&argv);
        let mut wait = Duration::from_secs(1);
        loop {
            let a = curl_local(&argv).await?;
            if a.ok {
                io.check(
                    &addr.to_string(),
                    "pinned health",
                    CheckStatus::Pass,
                    format!("{url} answered 200 from {addr}"),
                );
                io.output(
                    Stream::Stdout,
                    format!(
                        "{url} pinned to {addr} answered 200 after {:.1}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                break;
            }
            if a.hopeless || started.elapsed() + wait > limit {
                io.check(
                    &addr.to_string(),
                    "pinned health",
                    CheckStatus::Fail,
                    &a.why,
                );
                return Err(StepFailure {
                    command: Some(shown),
                    host: Some(addr.to_string()),
                    ..StepFailure::new(format!(
                        "{url} pinned to {addr} (the address DNS will point at) did not answer 200: {}. Visitors would not reach the instance there; fix it before changing DNS",
                        a.why
                    ))
                });
            }
            io.output(Stream::Stdout, format!("{addr}: not yet: {}", a.why));
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
    Ok(Done::Completed)
}

pub(crate) fn describe(
    step: &StepSpec,
    body: &HealthBody,
    plan: &Plan,
    vars: &Vars,
) -> Vec<String> {
    let url = vars.render_lenient(&body.url);
    let within = step.timeout.as_deref().unwrap_or("2m");
    if !body.pinned {
        return vec![format!(
            "on {}: curl {url} until it answers 200 (up to {within})",
            plan.target
        )];
    }
    if plan.dns_expect.is_empty() {
        return vec![format!(
            "skipped: no [dns] expect addresses to pin {url} to"
        )];
    }
    plan.dns_expect
        .iter()
        .map(|a| {
            format!(
                "from this machine: GET {url} with {} pinned to {a} (curl --resolve) until it answers 200 (up to {within})",
                plan.domain
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_the_urls_own_host_and_port() {
        assert_eq!(
            host_port("https://social.example.net/health").unwrap(),
            ("social.example.net".to_string(), 443)
        );
        assert_eq!(
            host_port("http://social.example.net:8080/x").unwrap(),
            ("social.example.net".to_string(), 8080)
        );
        assert!(host_port("https://192.0.2.1/health").is_err());
        assert!(host_port("not a url").is_err());
        let v6 = pinned_argv(
            "https://a.example/health",
            "a.example",
            443,
            "2001:db8::1".parse().unwrap(),
            None,
        );
        assert!(v6.contains(&"a.example:443:[2001:db8::1]".to_string()));
        assert_eq!(v6.last().unwrap(), "https://a.example/health");
    }

    #[test]
    fn curl_failures_say_what_to_do() {
        let cert = read_curl(
            false,
            "",
            Some(60),
            &["curl: (60) SSL certificate problem: self-signed certificate".into()],
        );
        assert!(!cert.ok && cert.hopeless);
        assert!(cert.why.contains("self-signed") && cert.why.contains("letsencrypt"));
        let refused = read_curl(false, "", Some(7), &["curl: (7) Failed to connect".into()]);
        assert!(!refused.hopeless && refused.why.contains("nginx"));
        let bad = read_curl(
            true,
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n502",
            Some(0),
            &[],
        );
        assert_eq!(
            (bad.ok, bad.why.as_str()),
            (false, "HTTP 502 502 Bad Gateway")
        );
        assert_eq!(bad.status.as_deref(), Some("502"));
        assert!(read_curl(true, "OK\n200", Some(0), &[]).ok);
    }
}
