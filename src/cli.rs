//! The command line. Exit codes: 0 success, 1 a step failed, 2 bad usage or config.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hikkoshi",
    version,
    about = "Moves a self-hosted, Postgres-backed web app (Mastodon first) from an old server to a new one over SSH",
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
    Markdown,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preflight only: checks both hosts, changes nothing; exit 0 when ready.
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Shows the checklist with the exact commands per host; no side effects.
    Plan {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Runs the migration.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Plain output instead of the step-by-step wizard.
        #[arg(long)]
        headless: bool,
        /// Confirm every step that asks for confirmation.
        #[arg(long)]
        yes: bool,
        /// Headless: when the run stops after the old host was stopped and before
        /// the new one is live, bring the old one back, or leave both as they are.
        #[arg(long, value_enum, default_value = "rollback")]
        on_failure: OnFailure,
        /// Where to write the journal (default: $XDG_STATE_HOME/hikkoshi/runs/<utc-timestamp>-<domain>.jsonl).
        #[arg(long, value_name = "PATH")]
        journal: Option<PathBuf>,
        /// Continue a failed or interrupted run from its journal (not available yet).
        #[arg(long)]
        resume: bool,
    },
    /// Shows what happened in a run, from its journal (also of a run that crashed or still goes).
    Review {
        #[arg(value_name = "JOURNAL")]
        journal: PathBuf,
        #[arg(long, value_enum, default_value = "tui")]
        format: ReviewFormat,
    },
}
