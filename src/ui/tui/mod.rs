//! The wizard: a second front end over the same engine events and commands.
//! Elm-style: `app::update` turns messages into state and engine commands,
//! `view::draw` only reads the state.

pub mod app;
pub mod keymap;
pub mod view;

#[cfg(test)]
mod tests;

use std::io::{Stdout, stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use tokio::sync::mpsc;

use crate::engine::EngineHandle;
use crate::run_state::RunState;
use app::{App, Mode, Msg, update};
use view::Theme;

/// At most about 30 frames a second, and only when something changed.
const FRAME: Duration = Duration::from_millis(33);

/// Raw mode and the alternate screen for as long as this lives; put back on
/// drop, which also runs when the loop returns an error.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        stdout(),
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
}

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        // A panic anywhere must not leave the admin's terminal in raw mode.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        enable_raw_mode()?;
        execute!(stdout(), EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

pub(crate) fn theme() -> Theme {
    Theme {
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// Keys and resizes from a thread of their own; it notices `stop` within 100 ms.
fn read_input(tx: mpsc::UnboundedSender<Option<event::KeyEvent>>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                        let _ = tx.send(Some(k));
                    }
                    Ok(Event::Resize(..)) => {
                        let _ = tx.send(None);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
                Ok(false) => {}
                Err(_) => break,
            }
        }
    });
}

/// Runs a live migration in the wizard until the admin quits.
pub async fn run(mut handle: EngineHandle, journal: &std::path::Path) -> std::io::Result<RunState> {
    let theme = theme();
    let mut screen = Screen::enter()?;
    let (key_tx, mut keys) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    read_input(key_tx, stop.clone());
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut app = App::new(Mode::Live, jiff::Timestamp::now());
    app.journal = Some(journal.display().to_string());
    let mut records_open = true;
    let mut last_draw = Instant::now() - FRAME;
    let result = loop {
        let msg = tokio::select! {
            r = handle.records.recv(), if records_open => match r {
                Some(r) => Msg::Record(Box::new(r)),
                None => {
                    records_open = false;
                    if app.quitting {
                        break Ok(());
                    }
                    continue;
                }
            },
            k = keys.recv() => match k {
                Some(Some(key)) => Msg::Key(key),
                Some(None) => {
                    app.dirty = true;
                    Msg::Tick(jiff::Timestamp::now())
                }
                None => Msg::Terminate,
            },
            _ = ticker.tick() => Msg::Tick(jiff::Timestamp::now()),
            _ = sigterm.recv() => Msg::Terminate,
        };
        for command in update(&mut app, msg) {
            let _ = handle.commands.send(command);
        }
        if app.quit || (app.quitting && !records_open) {
            break Ok(());
        }
        if app.dirty && last_draw.elapsed() >= FRAME {
            if let Err(e) = screen.terminal.draw(|f| view::draw(f, &app, theme)) {
                break Err(e);
            }
            app.dirty = false;
            last_draw = Instant::now();
        }
    };
    stop.store(true, Ordering::Relaxed);
    drop(screen);
    if !handle.task.is_finished() {
        let _ = handle.commands.send(crate::events::EngineCommand::Abort);
        // Drain so the engine's last events reach the journal before we leave.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(r) = handle.records.recv().await {
                app.run.apply(&r);
            }
        })
        .await;
    }
    result.map(|()| app.run)
}

/// `hikkoshi review` on a terminal: the same screen, read-only.
pub async fn review(run: RunState) -> std::io::Result<()> {
    let theme = theme();
    let mut screen = Screen::enter()?;
    let (key_tx, mut keys) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    read_input(key_tx, stop.clone());
    let now = run.finished_at.unwrap_or_else(jiff::Timestamp::now);
    let mut app = App::review(run, now);
    let result = loop {
        if app.dirty {
            if let Err(e) = screen.terminal.draw(|f| view::draw(f, &app, theme)) {
                break Err(e);
            }
            app.dirty = false;
        }
        match keys.recv().await {
            Some(Some(key)) => {
                update(&mut app, Msg::Key(key));
            }
            Some(None) => app.dirty = true,
            None => break Ok(()),
        }
        if app.quit {
            break Ok(());
        }
    };
    stop.store(true, Ordering::Relaxed);
    drop(screen);
    result
}
