//! Keys as data: which key does what in which situation. The help overlay and
//! the footer are drawn from this same table, so they cannot drift from it.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A yes/no question: a step's confirmation, quitting, aborting.
    Dialog,
    /// A step failed and the engine waits for a decision.
    Failed,
    /// The DNS step is waiting for resolvers; the operator may move on.
    Propagating,
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
    BringBack,
    Up,
    Down,
    PageUp,
    PageDown,
    OutputEnd,
    RunStep,
    Auto,
    Retry,
    Skip,
    MoveOn,
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

const NAV: &[Context] = &[Failed, Propagating, Live, Review];

const fn bind(
    context: &'static [Context],
    key: KeyCode,
    action: Action,
    label: &'static str,
) -> Binding {
    Binding {
        context,
        key,
        ctrl: false,
        action,
        label,
    }
}

const ALL: &[Context] = &[Dialog, Failed, Propagating, Live, Review, Help];

pub(crate) const KEYS: &[Binding] = &[
    bind(&[Dialog], KeyCode::Char('y'), Action::Yes, "y yes"),
    bind(&[Dialog], KeyCode::Char('n'), Action::No, "n/Esc no"),
    bind(&[Dialog], KeyCode::Esc, Action::No, ""),
    bind(&[Dialog], KeyCode::Char('b'), Action::BringBack, ""),
    bind(&[Live], KeyCode::Enter, Action::RunStep, "Enter run step"),
    bind(&[Live], KeyCode::Char('a'), Action::Auto, "a auto"),
    bind(&[Failed], KeyCode::Char('r'), Action::Retry, "r retry"),
    bind(&[Failed], KeyCode::Char('s'), Action::Skip, "s skip"),
    bind(
        &[Propagating],
        KeyCode::Char('m'),
        Action::MoveOn,
        "m move on",
    ),
    bind(
        &[Failed, Propagating, Live],
        KeyCode::Char('x'),
        Action::Abort,
        "x abort",
    ),
    bind(NAV, KeyCode::Up, Action::Up, "↑↓/jk select"),
    bind(NAV, KeyCode::Char('k'), Action::Up, ""),
    bind(NAV, KeyCode::Down, Action::Down, ""),
    bind(NAV, KeyCode::Char('j'), Action::Down, ""),
    bind(NAV, KeyCode::PageUp, Action::PageUp, "PgUp/PgDn output"),
    bind(NAV, KeyCode::PageDown, Action::PageDown, ""),
    bind(NAV, KeyCode::End, Action::OutputEnd, ""),
    bind(NAV, KeyCode::Char('l'), Action::ToggleLog, "l full log"),
    bind(NAV, KeyCode::Char('?'), Action::Help, "? help"),
    bind(&[Help], KeyCode::Char('?'), Action::Help, "?/Esc close"),
    bind(&[Help], KeyCode::Esc, Action::Help, ""),
    bind(NAV, KeyCode::Char('q'), Action::Quit, "q quit"),
    Binding {
        context: ALL,
        key: KeyCode::Char('c'),
        ctrl: true,
        action: Action::Interrupt,
        label: "",
    },
];

pub(crate) fn action(context: Context, key: &KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    KEYS.iter()
        .find(|b| b.context.contains(&context) && b.key == key.code && b.ctrl == ctrl)
        .map(|b| b.action)
}

/// The labels of the keys that apply in a context, in table order.
pub(crate) fn labels(context: Context) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|b| b.context.contains(&context) && !b.label.is_empty())
        .map(|b| b.label)
        .collect()
}
