//! Keys as data: which key does what in which situation. The help overlay and
//! the footer are drawn from this same table, so they cannot drift from it.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A yes/no question: a step's confirmation, quitting, aborting.
    Dialog,
    /// A step failed and the engine waits for a decision.
    Failed,
    /// Anything else while a run is live.
    Live,
    /// Reading a finished run's journal.
    Review,
    Help,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Yes,
    No,
    Up,
    Down,
    PageUp,
    PageDown,
    OutputEnd,
    RunStep,
    Auto,
    Retry,
    Skip,
    Abort,
    Quit,
    Interrupt,
    Help,
    ToggleLog,
}

pub struct Binding {
    pub context: &'static [Context],
    pub key: KeyCode,
    pub ctrl: bool,
    pub action: Action,
    /// Shown in the footer and the help; empty for aliases.
    pub label: &'static str,
}

use Context::*;

const NAV: &[Context] = &[Failed, Live, Review];

pub const KEYS: &[Binding] = &[
    Binding {
        context: &[Dialog],
        key: KeyCode::Char('y'),
        ctrl: false,
        action: Action::Yes,
        label: "y yes",
    },
    Binding {
        context: &[Dialog],
        key: KeyCode::Char('n'),
        ctrl: false,
        action: Action::No,
        label: "n/Esc no",
    },
    Binding {
        context: &[Dialog],
        key: KeyCode::Esc,
        ctrl: false,
        action: Action::No,
        label: "",
    },
    Binding {
        context: &[Live],
        key: KeyCode::Enter,
        ctrl: false,
        action: Action::RunStep,
        label: "Enter run step",
    },
    Binding {
        context: &[Live],
        key: KeyCode::Char('a'),
        ctrl: false,
        action: Action::Auto,
        label: "a auto",
    },
    Binding {
        context: &[Failed],
        key: KeyCode::Char('r'),
        ctrl: false,
        action: Action::Retry,
        label: "r retry",
    },
    Binding {
        context: &[Failed],
        key: KeyCode::Char('s'),
        ctrl: false,
        action: Action::Skip,
        label: "s skip",
    },
    Binding {
        context: &[Failed, Live],
        key: KeyCode::Char('x'),
        ctrl: false,
        action: Action::Abort,
        label: "x abort",
    },
    Binding {
        context: NAV,
        key: KeyCode::Up,
        ctrl: false,
        action: Action::Up,
        label: "↑↓/jk select",
    },
    Binding {
        context: NAV,
        key: KeyCode::Char('k'),
        ctrl: false,
        action: Action::Up,
        label: "",
    },
    Binding {
        context: NAV,
        key: KeyCode::Down,
        ctrl: false,
        action: Action::Down,
        label: "",
    },
    Binding {
        context: NAV,
        key: KeyCode::Char('j'),
        ctrl: false,
        action: Action::Down,
        label: "",
    },
    Binding {
        context: NAV,
        key: KeyCode::PageUp,
        ctrl: false,
        action: Action::PageUp,
        label: "PgUp/PgDn output",
    },
    Binding {
        context: NAV,
        key: KeyCode::PageDown,
        ctrl: false,
        action: Action::PageDown,
        label: "",
    },
    Binding {
        context: NAV,
        key: KeyCode::End,
        ctrl: false,
        action: Action::OutputEnd,
        label: "",
    },
    Binding {
        context: NAV,
        key: KeyCode::Char('l'),
        ctrl: false,
        action: Action::ToggleLog,
        label: "l full log",
    },
    Binding {
        context: NAV,
        key: KeyCode::Char('?'),
        ctrl: false,
        action: Action::Help,
        label: "? help",
    },
    Binding {
        context: &[Help],
        key: KeyCode::Char('?'),
        ctrl: false,
        action: Action::Help,
        label: "?/Esc close",
    },
    Binding {
        context: &[Help],
        key: KeyCode::Esc,
        ctrl: false,
        action: Action::Help,
        label: "",
    },
    Binding {
        context: NAV,
        key: KeyCode::Char('q'),
        ctrl: false,
        action: Action::Quit,
        label: "q quit",
    },
    Binding {
        context: &[Dialog, Failed, Live, Review, Help],
        key: KeyCode::Char('c'),
        ctrl: true,
        action: Action::Interrupt,
        label: "",
    },
];

pub fn action(context: Context, key: &KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    KEYS.iter()
        .find(|b| b.context.contains(&context) && b.key == key.code && b.ctrl == ctrl)
        .map(|b| b.action)
}

/// The labels of the keys that apply in a context, in table order.
pub fn labels(context: Context) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|b| b.context.contains(&context) && !b.label.is_empty())
        .map(|b| b.label)
        .collect()
}
