use std::path::Path;
use std::process::ExitCode;

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;

use hikkoshi::cli::{Cli, Command, Format, OnFailure, ReviewFormat, RunArgs};
use hikkoshi::config::Config;
use hikkoshi::engine::{self, RunOptions};
use hikkoshi::events::{CheckStatus, EngineEvent, RunMode, RunOutcome};
use hikkoshi::journal::{self, Journal};
use hikkoshi::plan::Plan;
use hikkoshi::ui::headless::{self, HeadlessOptions};

/// Bad usage or config: nothing was touched.
struct UsageError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hikkoshi: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(UsageError(e)) => {
            eprintln!("hikkoshi: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(config: &Path) -> Result<(Config, Plan), UsageError> {
    let config = Config::load(config)?;
    let plan = Plan::build(&config)?;
    Ok((config, plan))
}

/// `check` reads a Docker Compose stack; the steps that move one are not
/// in this version, so nothing else may act on a config that names one.
/// A config `plan` can show: both hosts systemd installs, or both compose
/// stacks in the same project directory (the move's paths are the same on
/// both hosts).
fn load_plannable(path: &Path) -> Result<(Config, Plan), UsageError> {
    use hikkoshi::config::Install;
    let (config, plan) = load(path)?;
    match (&config.source_install, &config.target_install) {
        (Install::Systemd, Install::Systemd) => {}
        (Install::Compose(s), Install::Compose(t)) if s.dir == t.dir => {}
        (Install::Compose(s), Install::Compose(t)) => {
            return Err(UsageError(anyhow::anyhow!(
                "{}: [target] compose is '{}' but [source] compose is '{}': this version moves a stack into the same project directory on the new host (the move's files keep their paths); set [target] compose = '{}'",
                path.display(),
                t.dir,
                s.dir,
                s.dir
            )));
        }
        (s, _) => {
            let (from, to) = if matches!(s, Install::Compose(_)) {
                ("a Docker Compose stack", "a systemd install")
            } else {
                ("a systemd install", "a Docker Compose stack")
            };
            return Err(UsageError(anyhow::anyhow!(
                "{}: [source] is {from} and [target] {to}: this version moves between installs of the same kind only",
                path.display()
            )));
        }
    }
    Ok((config, plan))
}

fn load_movable(path: &Path, what: &str) -> Result<(Config, Plan), UsageError> {
    let (config, plan) = load(path)?;
    for (table, install) in [
        ("source", &config.source_install),
        ("target", &config.target_install),
    ] {
        if let hikkoshi::config::Install::Compose(c) = install {
            return Err(UsageError(anyhow::anyhow!(
                "{}: [{table}] is a Docker Compose install ('{}'): this version of hikkoshi can `check` a compose stack but cannot {what} one yet, and never treats it as a systemd install. Run 'hikkoshi check --config {}' to see what a move would meet",
                path.display(),
                c.dir,
                path.display()
            )));
        }
    }
    Ok((config, plan))
}

fn init_log(domain: &str) {
    let Some(dir) = journal::default_path(domain, jiff::Timestamp::now())
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
    else {
        return;
    };
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("hikkoshi.log"))
    else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HIKKOSHI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

fn run_id(now: jiff::Timestamp) -> String {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{}-{:04x}", now.strftime("%Y%m%dT%H%M%SZ"), r & 0xffff)
}

async fn dns_command(
    domain: String,
    expect: Vec<String>,
    resolvers: Vec<String>,
    wait: Option<String>,
    format: Format,
    timeout: String,
    ns_port: u16,
) -> Result<ExitCode, UsageError> {
    use hikkoshi::dns;
    let domain = domain.trim_end_matches('.').to_string();
    if !hikkoshi::config::is_domain(&domain) {
        return Err(UsageError(anyhow::anyhow!(
            "'{}' is not a domain name",
            domain.escape_debug()
        )));
    }
    let expect = expect
        .iter()
        .map(|e| {
            e.parse().map_err(|_| {
                anyhow::anyhow!("--expect '{}' is not an IP address", e.escape_debug())
            })
        })
        .collect::<Result<Vec<std::net::IpAddr>, _>>()?;
    let servers = if resolvers.is_empty() {
        dns::public_resolvers()
    } else {
        resolvers
            .iter()
            .map(|r| {
                dns::parse_server(r)
                    .map(|addr| dns::Server {
                        addr,
                        provider: "given".into(),
                        region: "-".into(),
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!("--resolver '{}' is not an IP or IP:PORT", r.escape_debug())
                    })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let parse = |flag: &str, text: &str| {
        hikkoshi::units::parse_duration(text).ok_or_else(|| {
            UsageError(anyhow::anyhow!(
                "{flag} '{}' is not a duration (like 90s, 30m or 1h)",
                text.escape_debug()
            ))
        })
    };
    let opts = dns::Options {
        timeout: parse("--timeout", &timeout)?,
        ns_port,
    };
    let limit = match &wait {
        Some(w) => parse("--wait", w)?,
        None => std::time::Duration::ZERO,
    };
    let text = format == Format::Text;
    let report = dns::wait(&domain, &expect, &servers, &opts, limit, |r, elapsed| {
        if text && wait.is_some() && !r.complete() {
            eprintln!("[{:>4}s] {}", elapsed.as_secs(), dns::summary(r));
        }
    })
    .await
    .map_err(|e| UsageError(anyhow::anyhow!(e)))?;
    match format {
        Format::Text => print!("{}", dns::render_text(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What to do about hosts preflight could not log in to: ssh's own words
/// (host down, wrong HostName or Port, no key, an unknown host key) come from
/// the same ssh command, run by hand.
fn ssh_advice(state: &hikkoshi::run_state::RunState, ssh_config: Option<&Path>) -> Option<String> {
    let hosts: Vec<&str> = state
        .steps
        .iter()
        .flat_map(|s| &s.checks)
        .filter(|c| c.name == "ssh" && c.status == CheckStatus::Fail)
        .map(|c| c.host.as_str())
        .collect();
    if hosts.is_empty() {
        return None;
    }
    let commands: Vec<String> = hosts
        .iter()
        .map(|host| {
            let mut argv: Vec<String> = [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ]
            .map(String::from)
            .to_vec();
            if let Some(f) = ssh_config {
                argv.extend(["-F".into(), f.display().to_string()]);
            }
            argv.extend([host.to_string(), "true".into()]);
            format!("  {}", hikkoshi::plan::shell_join(&argv))
        })
        .collect();
    Some(format!(
        "hikkoshi: nothing was changed. To see why, log in the way hikkoshi does (no prompts, host keys checked), fix what ssh says, and run check again:\n{}",
        commands.join("\n")
    ))
}

/// The wizard unless --headless; it needs a terminal.
fn wizard_wanted(headless: bool) -> Result<bool, UsageError> {
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !headless && !terminal {
        return Err(UsageError(anyhow::anyhow!(
            "the wizard needs a terminal; run with --headless (and --yes to confirm every step) from scripts"
        )));
    }
    Ok(!headless)
}

/// Runs a plan with the wizard (opts.gated) or headless, journal at `path`.
async fn drive(
    plan: Plan,
    opts: RunOptions,
    path: &Path,
    headless_opts: HeadlessOptions,
) -> Result<ExitCode, UsageError> {
    let wizard = opts.gated;
    let journal = Journal::create(path).with_context(|| "cannot open the journal".to_string())?;
    println!("journal: {}", path.display());
    let handle = engine::start(plan, opts, Some(journal));
    let (state, journal_error) = if wizard {
        let state = hikkoshi::ui::tui::run(handle, path)
            .await
            .context("the wizard's terminal failed")?;
        println!(
            "{}: {}",
            state.domain,
            hikkoshi::ui::review::result_words(&state)
        );
        (state, None)
    } else {
        headless::run(handle, headless_opts).await
    };
    if let Some(p) = state.predicted_downtime() {
        println!("{}", hikkoshi::ui::review::prediction_words(&p));
    }
    println!("journal: {}", path.display());
    if let Some(e) = journal_error {
        eprintln!("hikkoshi: the journal could not be written completely: {e}");
    }
    Ok(exit_for(state.outcome.as_ref()))
}

/// The newest successful rehearsal of this move (same domain and hosts, a
/// fresh dump rather than a backup), among the journals beside this run's
/// and in the default place: its prediction goes into the run's journal.
fn last_rehearsal(
    plan: &Plan,
    journal_path: &Path,
) -> Option<hikkoshi::prediction::RehearsalPrediction> {
    let mut candidates = journal::for_domain(&plan.domain, journal_path.parent());
    candidates.retain(|p| p != journal_path);
    candidates.into_iter().find_map(|path| {
        // The first line is RunStarted: a run's journal is not read whole.
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(std::fs::File::open(&path).ok()?),
            &mut first,
        )
        .ok()?;
        let head: hikkoshi::journal::Record = serde_json::from_str(&first).ok()?;
        if !matches!(
            &head.event,
            EngineEvent::RunStarted {
                mode: RunMode::Rehearse,
                ..
            }
        ) {
            return None;
        }
        let records = Journal::read(&path).ok()?;
        let state = hikkoshi::run_state::RunState::from_records(&records);
        let same = (&state.domain, &state.source, &state.target)
            == (&plan.domain, &plan.source, &plan.target);
        if state.mode != RunMode::Rehearse || !same || state.outcome != Some(RunOutcome::Succeeded)
        {
            return None;
        }
        let prediction = state.predicted_downtime()?;
        if prediction.db_move.as_deref() == Some("from a backup") {
            return None;
        }
        Some(hikkoshi::prediction::RehearsalPrediction {
            rehearsal: state.run_id.clone(),
            journal: path.display().to_string(),
            prediction,
        })
    })
}

/// The earlier attempts of the run in `path` must be of this config's move.
fn resume_from(path: &Path, plan: &Plan) -> Result<hikkoshi::run_state::ResumePoint, UsageError> {
    let records = Journal::read(path)?;
    let state = hikkoshi::run_state::RunState::from_records(&records);
    if state.mode != RunMode::Run {
        return Err(UsageError(anyhow::anyhow!(
            "--resume: '{}' is the journal of a '{}', not of a run",
            path.display(),
            state.mode
        )));
    }
    let same =
        (&state.domain, &state.source, &state.target) == (&plan.domain, &plan.source, &plan.target);
    if !state.run_id.is_empty() && !same {
        return Err(UsageError(anyhow::anyhow!(
            "--resume: '{}' is the journal of moving {} from {} to {}, but the config moves {} from {} to {}",
            path.display(),
            state.domain,
            state.source,
            state.target,
            plan.domain,
            plan.source,
            plan.target
        )));
    }
    hikkoshi::run_state::resume_point(&state, &plan.steps)
        .map_err(|e| UsageError(anyhow::anyhow!("--resume: '{}': {e}", path.display())))
}

fn exit_for(outcome: Option<&RunOutcome>) -> ExitCode {
    match outcome {
        Some(RunOutcome::Succeeded) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, UsageError> {
    match cli.command {
        Command::Init(args) => match hikkoshi::ui::init::run(&args).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(hikkoshi::ui::init::InitError::Usage(m)) => Err(UsageError(anyhow::anyhow!(m))),
            Err(hikkoshi::ui::init::InitError::Failed(m)) => {
                eprintln!("hikkoshi: {m}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Plan {
            config,
            profile,
            format,
            rehearse,
        } => plan_command(config, profile, format, rehearse),
        Command::Check { config } => check_command(&config).await,
        Command::Run {
            run,
            on_failure,
            resume,
        } => run_command(run, on_failure, resume).await,
        Command::Rehearse {
            run,
            start_web,
            from_backup,
        } => rehearse_command(run, start_web, from_backup).await,
        Command::Dns {
            domain,
            expect,
            resolvers,
            wait,
            format,
            timeout,
            ns_port,
        } => dns_command(domain, expect, resolvers, wait, format, timeout, ns_port).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "hikkoshi", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { command } => man_command(command),
        Command::Review { journal, format } => review_command(&journal, format).await,
    }
}

fn plan_command(
    config: Option<std::path::PathBuf>,
    profile: Option<String>,
    format: Format,
    rehearse: bool,
) -> Result<ExitCode, UsageError> {
    let plan = match (config, profile) {
        (Some(config), _) => load_plannable(&config)?.1,
        (None, Some(name)) => {
            let config = Config::for_profile(&name)
                .map_err(|e| UsageError(anyhow::anyhow!("--profile: {e}")))?;
            Plan::build_for_showing(&config)?
        }
        (None, None) => {
            return Err(UsageError(anyhow::anyhow!(
                "plan needs --config FILE or --profile NAME"
            )));
        }
    };
    let plan = if rehearse {
        plan.for_rehearsal(true)
    } else {
        plan
    };
    match format {
        Format::Text => print!("{}", hikkoshi::ui::plan::render_text(&plan)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&hikkoshi::ui::plan::render_json(&plan))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn check_command(config_path: &Path) -> Result<ExitCode, UsageError> {
    let (config, plan) = load(config_path)?;
    init_log(&config.app.domain);
    let now = jiff::Timestamp::now();
    let handle = engine::start(
        plan.preflight_only(),
        RunOptions {
            run_id: run_id(now),
            mode: RunMode::Check,
            ssh_config: config.ssh_config.clone(),
            dns: config.dns.clone(),
            gated: false,
            ..RunOptions::default()
        },
        None,
    );
    let options = HeadlessOptions {
        yes: true,
        rollback: false,
    };
    let (state, _) = headless::run(handle, options).await;
    // What `plan` and `run` would refuse, `check` still reads.
    let movable = load_plannable(config_path).is_ok();
    if state.outcome == Some(RunOutcome::Succeeded) {
        if !movable {
            println!(
                "checked: nothing stands in the way on {} and {}; this version of hikkoshi moves a Docker Compose stack only into a stack in the same directory on the new host",
                plan.source, plan.target
            );
        } else {
            println!(
                "ready: {} can move from {} to {}",
                plan.domain, plan.source, plan.target
            );
        }
    }
    if let Some(advice) = ssh_advice(&state, config.ssh_config.as_deref()) {
        eprintln!("{advice}");
    }
    Ok(exit_for(state.outcome.as_ref()))
}

async fn run_command(
    RunArgs {
        config,
        headless,
        yes,
        journal,
        reset_target,
        keep_dump,
        break_lock,
    }: RunArgs,
    on_failure: OnFailure,
    resume: bool,
) -> Result<ExitCode, UsageError> {
    let (config, plan) = load_plannable(&config)?;
    let wizard = wizard_wanted(headless)?;
    init_log(&config.app.domain);
    let now = jiff::Timestamp::now();
    let (path, id, resume_done) = if resume {
        let path = match journal {
            Some(p) => p,
            None => journal::newest(&config.app.domain).ok_or_else(|| {
                anyhow::anyhow!(
                    "--resume: no journal of an earlier run for '{}' in the default place; give it with --journal PATH",
                    config.app.domain
                )
            })?,
        };
        let point = resume_from(&path, &plan)?;
        println!(
            "resuming run {} at step '{}' ({} step{} done earlier are not repeated)",
            point.run_id,
            point.first,
            point.done.len(),
            if point.done.len() == 1 { "" } else { "s" }
        );
        (path, point.run_id, point.done)
    } else {
        let path = journal.unwrap_or_else(|| journal::default_path(&config.app.domain, now));
        (path, run_id(now), Default::default())
    };
    let opts = RunOptions {
        run_id: id,
        mode: RunMode::Run,
        ssh_config: config.ssh_config.clone(),
        dns: config.dns.clone(),
        gated: wizard,
        break_lock,
        keep_dump,
        reset_target,
        resume_done,
        from_backup: None,
        prediction: last_rehearsal(&plan, &path),
        run_dns: None,
    };
    let rollback = on_failure == OnFailure::Rollback;
    drive(plan, opts, &path, HeadlessOptions { yes, rollback }).await
}

async fn rehearse_command(
    RunArgs {
        config,
        headless,
        yes,
        journal,
        reset_target,
        keep_dump,
        break_lock,
    }: RunArgs,
    start_web: bool,
    from_backup: Option<String>,
) -> Result<ExitCode, UsageError> {
    let (config, plan) = load_movable(&config, "rehearse a move of")?;
    if let Some(p) = &from_backup
        && !hikkoshi::config::is_plain_abs_path(p)
    {
        return Err(UsageError(anyhow::anyhow!(
            "--from-backup '{}' is not an absolute path on the old host",
            p.escape_debug()
        )));
    }
    let wizard = wizard_wanted(headless)?;
    init_log(&config.app.domain);
    let now = jiff::Timestamp::now();
    let path = journal.unwrap_or_else(|| journal::default_path(&config.app.domain, now));
    let opts = RunOptions {
        run_id: run_id(now),
        mode: RunMode::Rehearse,
        ssh_config: config.ssh_config.clone(),
        // DNS is never touched, nor waited for, in a rehearsal.
        dns: None,
        run_dns: config.dns.clone(),
        gated: wizard,
        break_lock,
        keep_dump,
        reset_target,
        from_backup,
        ..RunOptions::default()
    };
    // Nothing stops on the old host, so there is nothing to bring back.
    let options = HeadlessOptions {
        yes,
        rollback: false,
    };
    drive(plan.for_rehearsal(start_web), opts, &path, options).await
}

fn man_command(command: Option<String>) -> Result<ExitCode, UsageError> {
    let cli = <Cli as clap::CommandFactory>::command();
    let page = match command {
        None => cli,
        Some(name) => {
            let names: Vec<String> = cli
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .collect();
            cli.find_subcommand(&name)
                .cloned()
                .ok_or_else(|| {
                    UsageError(anyhow::anyhow!(
                        "man: '{name}' is not a command of hikkoshi; its commands: {}",
                        names.join(", ")
                    ))
                })?
                .name(format!("hikkoshi-{name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    clap_mangen::Man::new(page)
        .render(&mut std::io::stdout())
        .context("writing the manual page")?;
    Ok(ExitCode::SUCCESS)
}

async fn review_command(journal: &Path, format: ReviewFormat) -> Result<ExitCode, UsageError> {
    let records = Journal::read(journal)?;
    let state = hikkoshi::run_state::RunState::from_records(&records);
    if state.steps.is_empty() {
        return Err(UsageError(anyhow::anyhow!(
            "'{}' holds no run: is it a hikkoshi journal?",
            journal.display()
        )));
    }
    let tui = format == ReviewFormat::Tui
        && std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal();
    match format {
        ReviewFormat::Json => println!("{}", serde_json::to_string_pretty(&state)?),
        ReviewFormat::Tui if tui => hikkoshi::ui::tui::review(state).await?,
        ReviewFormat::Tui | ReviewFormat::Markdown => {
            print!("{}", hikkoshi::ui::review::markdown(&state))
        }
    }
    Ok(ExitCode::SUCCESS)
}
