//! The wizard's state and its one way of changing: `update(state, message)`,
//! which returns the commands for the engine. Pure: no terminal, no clock of
//! its own, so every transition is testable as data.

use ratatui::crossterm::event::KeyEvent;

use super::keymap::{self, Action, Context};
use crate::events::{EngineCommand, EngineEvent};
use crate::journal::Record;
use crate::run_state::{RunState, Waiting};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Review,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialog {
    Quit,
    Abort,
}

#[derive(Debug)]
pub enum Msg {
    Record(Box<Record>),
    Key(KeyEvent),
    Tick(jiff::Timestamp),
    /// SIGTERM or similar: stop the run and leave.
    Terminate,
}

#[derive(Debug, Clone)]
pub struct App {
    pub run: RunState,
    pub mode: Mode,
    pub selected: usize,
    /// The selection moves to whatever the run is doing until the user moves it.
    pub follow: bool,
    /// Output lines scrolled up from the newest one.
    pub scroll: usize,
    pub full_log: bool,
    pub help: bool,
    /// Start each next step by itself until a confirmation is needed.
    pub auto: bool,
    pub dialog: Option<Dialog>,
    /// The confirmation dialog was put away with n/Esc; the step still waits.
    pub confirm_hidden: bool,
    pub notice: Option<String>,
    pub frame: u64,
    pub now: jiff::Timestamp,
    /// Leave as soon as the engine has finished.
    pub quitting: bool,
    pub quit: bool,
    pub dirty: bool,
    /// Where the run's journal is, for the end of the run.
    pub journal: Option<String>,
}

/// Rows of the output pane that PgUp/PgDn move.
const PAGE: usize = 10;

impl App {
    pub fn new(mode: Mode, now: jiff::Timestamp) -> App {
        App {
            run: RunState::default(),
            mode,
            selected: 0,
            follow: true,
            scroll: 0,
            full_log: false,
            help: false,
            auto: false,
            dialog: None,
            confirm_hidden: false,
            notice: None,
            frame: 0,
            now,
            quitting: false,
            quit: false,
            dirty: true,
            journal: None,
        }
    }

    pub fn review(run: RunState, now: jiff::Timestamp) -> App {
        let mut app = App::new(Mode::Review, now);
        app.run = run;
        app.follow = false;
        app
    }

    pub fn context(&self) -> Context {
        if self.help {
            Context::Help
        } else if self.dialog.is_some() || self.confirm_dialog_shown() {
            Context::Dialog
        } else if self.mode == Mode::Review || self.run.waiting() == Waiting::Finished {
            // A finished run is read like a journal: nothing is left to start.
            Context::Review
        } else if matches!(self.run.waiting(), Waiting::Decision(_)) {
            Context::Failed
        } else if let Waiting::Running(id) = self.run.waiting()
            && self.run.step(&id).is_some_and(|s| s.propagation.is_some())
        {
            Context::Propagating
        } else {
            Context::Live
        }
    }

    /// The old host is stopped and the new one not live: stopping now leaves
    /// the instance down unless the old host is brought back.
    pub(crate) fn instance_down(&self) -> bool {
        self.run.downtime_started.is_some() && self.run.downtime_ended.is_none()
    }

    /// At the end of a live run, until the admin selects a step.
    pub(crate) fn shows_summary(&self) -> bool {
        self.mode == Mode::Live && self.follow && self.run.waiting() == Waiting::Finished
    }

    pub(crate) fn confirm_dialog_shown(&self) -> bool {
        self.mode == Mode::Live && self.run.awaiting.is_some() && !self.confirm_hidden
    }

    /// The step the run is on: running, waiting for a confirmation or decision, or next.
    pub(crate) fn current_step(&self) -> Option<usize> {
        let id = match self.run.waiting() {
            Waiting::Next(id)
            | Waiting::Running(id)
            | Waiting::Confirmation(id)
            | Waiting::Decision(id) => id,
            Waiting::NotStarted | Waiting::Finished => return None,
        };
        self.run.steps.iter().position(|s| s.info.id == id)
    }

    fn select(&mut self, index: usize) {
        if index != self.selected {
            self.selected = index;
            self.scroll = 0;
        }
    }

    fn follow_run(&mut self) {
        if self.follow
            && let Some(i) = self.current_step()
        {
            self.select(i);
        }
    }

    fn output_len(&self) -> usize {
        self.run
            .steps
            .get(self.selected)
            .map_or(0, |s| s.output.lines.len())
    }
}

/// One message in, the engine commands it leads to out.
pub(crate) fn update(app: &mut App, msg: Msg) -> Vec<EngineCommand> {
    let was_dirty = app.dirty;
    app.dirty = true;
    match msg {
        Msg::Record(record) => on_record(app, &record),
        Msg::Key(key) => on_key(app, &key),
        Msg::Tick(now) => {
            app.now = now;
            app.frame = app.frame.wrapping_add(1);
            // Only spinners and clocks move: redraw while something runs.
            app.dirty = was_dirty
                || matches!(app.run.waiting(), Waiting::Running(_))
                || (app.run.downtime_started.is_some() && app.run.downtime_ended.is_none());
            Vec::new()
        }
        Msg::Terminate => interrupt(app),
    }
}

fn on_record(app: &mut App, record: &Record) -> Vec<EngineCommand> {
    app.run.apply(record);
    match &record.event {
        EngineEvent::AwaitingConfirm { .. } => {
            // A confirmation always stops the automatic run.
            app.auto = false;
            app.confirm_hidden = false;
        }
        EngineEvent::RunFinished { .. } => {
            app.auto = false;
            app.dialog = None;
            if app.quitting {
                app.quit = true;
            }
        }
        _ => {}
    }
    app.follow_run();
    if app.auto && matches!(app.run.waiting(), Waiting::Next(_)) {
        return vec![EngineCommand::Start];
    }
    Vec::new()
}

fn interrupt(app: &mut App) -> Vec<EngineCommand> {
    if app.mode == Mode::Review || !app.run.in_progress() {
        app.quit = true;
        return Vec::new();
    }
    app.quitting = true;
    app.notice = Some("stopping the run...".into());
    vec![EngineCommand::Abort]
}

fn on_key(app: &mut App, key: &KeyEvent) -> Vec<EngineCommand> {
    let context = app.context();
    let Some(action) = keymap::action(context, key) else {
        return Vec::new();
    };
    app.notice = None;
    match (context, action) {
        (_, Action::Interrupt) => interrupt(app),
        (Context::Help, Action::Help) => {
            app.help = false;
            Vec::new()
        }
        (Context::Dialog, a @ (Action::Yes | Action::BringBack | Action::No)) => on_dialog(app, a),
        (
            _,
            a @ (Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::OutputEnd
            | Action::ToggleLog),
        ) => {
            view(app, a);
            Vec::new()
        }
        (_, Action::Help) => {
            app.help = true;
            Vec::new()
        }
        (_, Action::Quit) => {
            if app.mode == Mode::Live && app.run.in_progress() {
                app.dialog = Some(Dialog::Quit);
            } else {
                app.quit = true;
            }
            Vec::new()
        }
        (Context::Live, Action::RunStep) => run_step(app),
        (Context::Live, Action::Auto) => {
            app.auto = true;
            app.follow = true;
            app.follow_run();
            if matches!(app.run.waiting(), Waiting::Next(_)) {
                vec![EngineCommand::Start]
            } else {
                Vec::new()
            }
        }
        (Context::Failed, Action::Retry) => vec![EngineCommand::Retry],
        (Context::Failed, Action::Skip) => {
            let optional = app
                .current_step()
                .and_then(|i| app.run.steps.get(i))
                .is_some_and(|s| s.info.optional);
            if optional {
                vec![EngineCommand::Skip]
            } else {
                app.notice = Some("this step is not optional: retry it (r) or abort (x)".into());
                Vec::new()
            }
        }
        // Resolvers catch up by themselves as their caches expire; the run
        // need not wait for the last one.
        (Context::Propagating, Action::MoveOn) => vec![EngineCommand::Skip],
        (_, Action::Abort) => {
            app.dialog = Some(Dialog::Abort);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// The answer to the open dialog (or to the confirmation of a step).
fn on_dialog(app: &mut App, action: Action) -> Vec<EngineCommand> {
    match action {
        Action::Yes => match app.dialog.take() {
            Some(Dialog::Quit) => {
                app.quitting = true;
                app.notice = Some("stopping the run...".into());
                vec![EngineCommand::Abort]
            }
            Some(Dialog::Abort) => vec![EngineCommand::Abort],
            None => vec![EngineCommand::Confirm],
        },
        Action::BringBack => match app.dialog {
            Some(d) if app.instance_down() => {
                app.dialog = None;
                app.quitting = d == Dialog::Quit;
                app.notice = Some(format!(
                    "stopping the run and bringing {} back...",
                    app.run.source
                ));
                vec![EngineCommand::Rollback]
            }
            _ => Vec::new(),
        },
        Action::No => {
            if app.dialog.take().is_none() {
                app.confirm_hidden = true;
                app.notice =
                    Some("not confirmed: the step waits; Enter asks again, x aborts".into());
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Moving through the checklist and the output: no command for the engine.
fn view(app: &mut App, action: Action) {
    match action {
        Action::Up => {
            app.follow = false;
            app.select(app.selected.saturating_sub(1));
        }
        Action::Down => {
            app.follow = false;
            let last = app.run.steps.len().saturating_sub(1);
            app.select((app.selected + 1).min(last));
        }
        Action::PageUp => {
            app.scroll = (app.scroll + PAGE).min(app.output_len().saturating_sub(1));
        }
        Action::PageDown => {
            app.scroll = app.scroll.saturating_sub(PAGE);
        }
        Action::OutputEnd => {
            app.scroll = 0;
            app.follow = true;
            app.follow_run();
        }
        Action::ToggleLog => {
            app.full_log = !app.full_log;
        }
        _ => {}
    }
}

fn run_step(app: &mut App) -> Vec<EngineCommand> {
    match app.run.waiting() {
        Waiting::Next(id) => {
            let next = app.run.steps.iter().position(|s| s.info.id == id);
            if next == Some(app.selected) {
                app.follow = true;
                vec![EngineCommand::Start]
            } else {
                if let Some(n) = next {
                    app.follow = true;
                    app.select(n);
                }
                app.notice = Some(format!(
                    "steps run in order: the next one is '{id}'; Enter runs it"
                ));
                Vec::new()
            }
        }
        Waiting::Confirmation(_) => {
            app.confirm_hidden = false;
            Vec::new()
        }
        Waiting::Running(id) => {
            app.notice = Some(format!("'{id}' is running"));
            Vec::new()
        }
        _ => Vec::new(),
    }
}
