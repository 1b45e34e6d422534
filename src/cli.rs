//! The command line. Exit codes: 0 success, 1 a step failed, 2 bad usage or config.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hikkoshi",
    version,
    about = "Moves a self-hosted, Postgres-backed web app (Mastodon, Misskey, or any app a profile describes) from an old server to a new one over SSH",
    after_help = "Exit codes: 0 success; 1 a step failed (the journal and stderr say which, where and why); 2 bad usage or config (nothing was touched)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What a headless run does when it stops while the instance is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFailure {
    /// Undo what can be undone so the old host serves again.
    Rollback,
    /// Leave both hosts as they are, to investigate.
    Stay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReviewFormat {
    /// The wizard's screen, read-only (Markdown when stdout is not a terminal).
    Tui,
    /// A report for the maintenance log.
    Markdown,
    /// The folded run state, for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writes a config from what runs on the old host (reads only), for `check`.
    ///
    /// Over ssh it finds which app runs on the old host (Mastodon, Misskey,
    /// Pleasanter, or another app with a PostgreSQL database of its own), its
    /// user, directory, database, role, services, domain, Redis and media, and
    /// writes a commented config saying where each value was found. What it
    /// cannot find (the new host's public address for [dns] expect) it asks in
    /// a terminal, or leaves as a "FILL IN" placeholder that `check` refuses.
    Init(InitArgs),
    /// Preflight only: checks both hosts, changes nothing; exit 0 when ready.
    Check {
        /// The move's config (TOML): the hosts, the app, [dns], [move]; see the README.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Shows the checklist with the exact commands per host; no side effects.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["config", "profile"])))]
    Plan {
        /// The move's config (TOML): the hosts, the app, [dns], [move]; see the README.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A profile's checklist without hosts: a built-in profile's name
        /// (mastodon, misskey, generic, pleasanter) or a profile file.
        #[arg(long, value_name = "NAME|FILE", conflicts_with = "config")]
        profile: Option<String>,
        /// text for people, json for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// The checklist of `hikkoshi rehearse --start-web` instead.
        #[arg(long)]
        rehearse: bool,
    },
    /// Moves the instance: the step-by-step wizard, or plain output with --headless.
    Run {
        #[command(flatten)]
        run: RunArgs,
        /// Headless: when the run stops after the old host was stopped and before
        /// the new one is live, bring the old one back, or leave both as they are.
        #[arg(long, value_enum, default_value = "rollback")]
        on_failure: OnFailure,
        /// Continue a failed or interrupted run at its first unfinished step: the
        /// journal given with --journal, else the newest one for this domain.
        #[arg(long)]
        resume: bool,
    },
    /// A staging copy on the new host while the old one keeps serving; predicts the downtime.
    ///
    /// Restores the instance onto the new host as a staging copy while the old
    /// one keeps serving: nothing on the old host stops or changes, the copy's
    /// Sidekiq is masked, DNS is not touched. Reports the downtime the real run
    /// is expected to have, with its parts.
    Rehearse {
        #[command(flatten)]
        run: RunArgs,
        /// Also start the copy's web service (never Sidekiq) and check its health.
        #[arg(long)]
        start_web: bool,
        /// Restore this backup on the old host instead of a fresh dump: a restore
        /// drill (pg_dump custom, tar or directory format, .sql or .sql.gz).
        #[arg(long, value_name = "PATH")]
        from_backup: Option<String>,
    },
    /// Checks DNS for DOMAIN: its nameservers, then resolvers; exit 0 when all agree.
    ///
    /// Asks the zone's own nameservers, then about 20 public resolvers (or the
    /// ones given); exit 0 when every resolver answers the expected addresses.
    Dns {
        /// The name whose A/AAAA records are checked, e.g. social.example.net.
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// The new host's address(es); repeat for several.
        #[arg(long, value_name = "IP", required = true)]
        expect: Vec<String>,
        /// A resolver to ask, IP or IP:PORT; repeat for several (default: about 20 public resolvers).
        #[arg(long = "resolver", value_name = "IP[:PORT]")]
        resolvers: Vec<String>,
        /// Keep looking (backing off) until every resolver agrees or this much time has passed, e.g. 30m.
        #[arg(long, value_name = "DURATION")]
        wait: Option<String>,
        /// text for people, json for scripts.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// How long to wait for each answer.
        #[arg(long, value_name = "DURATION", default_value = "3s")]
        timeout: String,
        /// The port the zone's nameservers listen on.
        #[arg(long, value_name = "PORT", default_value_t = 53)]
        ns_port: u16,
    },
    /// Shows what happened in a run, from its journal.
    ///
    /// Also of a run that crashed or is still going: the wizard's screen
    /// read-only, a Markdown report for the maintenance log, or JSON.
    Review {
        /// A run's journal: `run` and `rehearse` print where they wrote it.
        #[arg(value_name = "JOURNAL")]
        journal: PathBuf,
        #[arg(long, value_enum, default_value = "tui")]
        format: ReviewFormat,
    },
    /// Prints a shell completion script.
    ///
    /// e.g. `hikkoshi completions bash > /etc/bash_completion.d/hikkoshi`
    Completions {
        /// The shell the script is for.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Prints a manual page (roff): hikkoshi(1), or hikkoshi-COMMAND(1).
    ///
    /// e.g. `hikkoshi man > /usr/local/share/man/man1/hikkoshi.1` and
    /// `hikkoshi man run > /usr/local/share/man/man1/hikkoshi-run.1`
    Man {
        /// A command's own page instead of the main one.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// What `run` and `rehearse` share.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The move's config (TOML): the hosts, the app, [dns], [move]; see the README.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Plain output instead of the step-by-step wizard.
    #[arg(long)]
    pub headless: bool,
    /// Confirm every step that asks for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Where to write the journal (default: $XDG_STATE_HOME/hikkoshi/runs/<utc-timestamp>-<domain>.jsonl).
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// Drop the target database an earlier hikkoshi run created and left
    /// (recognised by the marker hikkoshi puts on it, never by name alone).
    #[arg(long)]
    pub reset_target: bool,
    /// Keep the dump files on both hosts after a failed run (they hold every
    /// private message; by default they are removed whatever happens).
    #[arg(long)]
    pub keep_dump: bool,
    /// Clear the lock another run left on the old host, once you know that run is gone.
    #[arg(long)]
    pub break_lock: bool,
}

/// `hikkoshi init`'s arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The old host: an ssh destination or Host alias, as in the config's [source] ssh.
    #[arg(long, value_name = "DEST")]
    pub source: String,
    /// The new host, as in the config's [target] ssh.
    #[arg(long, value_name = "DEST")]
    pub target: String,
    /// An ssh config file (ssh -F), written as the config's [ssh] config_file.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Where to write the config.
    #[arg(long, value_name = "FILE", default_value = "migration.toml")]
    pub out: PathBuf,
    /// Write over an existing file.
    #[arg(long)]
    pub force: bool,
    /// Which app, when the old host runs several: its profile's name (mastodon,
    /// misskey, pleasanter) or, for another app, its first service.
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// The new host's public address for [dns] expect; repeat for several
    /// (otherwise asked in a terminal, or left as a placeholder).
    #[arg(long, value_name = "IP")]
    pub dns_expect: Vec<std::net::IpAddr>,
}
