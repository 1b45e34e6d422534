//! Drawing: reads the App, never changes it. One file per panel.

pub mod checklist;
pub mod confirm;
pub mod detail;
pub mod footer;
pub mod header;
pub mod help;
pub mod propagation;
pub mod summary;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::app::App;

/// Styles, with colour only as a second signal: every state also has an icon or
/// a word, and NO_COLOR leaves just bold, dim and reverse.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }
    pub fn ok(self) -> Style {
        self.fg(Color::Green)
    }
    pub fn fail(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    pub(crate) fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }
    pub fn active(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    pub(crate) fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }
    pub(crate) fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    pub(crate) fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
}

pub(crate) fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let area = frame.area();
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    header::draw(frame, top, app, theme);
    if app.full_log {
        detail::draw_output(frame, body, app, theme, true);
    } else {
        let left = (body.width * 2 / 5).clamp(26, 44).min(body.width);
        let [list, info] =
            Layout::horizontal([Constraint::Length(left), Constraint::Min(10)]).areas(body);
        checklist::draw(frame, list, app, theme);
        if app.shows_summary() {
            summary::draw(frame, info, app, theme);
        } else {
            detail::draw(frame, info, app, theme);
        }
    }
    footer::draw(frame, bottom, app, theme);
    if app.confirm_dialog_shown() {
        confirm::draw_step(frame, area, app, theme);
    } else if let Some(d) = app.dialog {
        confirm::draw_question(frame, area, app, d, theme);
    }
    if app.help {
        help::draw(frame, area, theme);
    }
}

/// A bordered box over the middle of the screen, as tall as its wrapped text.
pub(crate) fn popup(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line<'static>>,
    theme: Theme,
) {
    let width = area.width.saturating_sub(4).clamp(30, 90);
    let inner_w = width.saturating_sub(2).max(1) as usize;
    let rows: u16 = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(inner_w) as u16)
        .sum();
    let rect = centered(area, width, rows + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(Span::styled(format!(" {title} "), theme.bold()))),
        rect,
    );
}

/// A box in the middle of `area`, as large as asked but never larger than it.
pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width
        .min(area.width.saturating_sub(2))
        .max(10.min(area.width));
    let h = height
        .min(area.height.saturating_sub(2))
        .max(3.min(area.height));
    Rect {
        x: area.x + (area.width.saturating_sub(w)) / 2,
        y: area.y + (area.height.saturating_sub(h)) / 2,
        width: w,
        height: h,
    }
}

pub(crate) use crate::ui::{clock, short_duration};
