//! The end of a run, in place of a step's detail until another step is
//! selected: the result, the downtime, what moved, what is left to do by
//! hand and where the journal is.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::Theme;
use crate::ui::review::{Tone, end_summary};
use crate::ui::tui::app::App;

pub(crate) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let lines: Vec<Line<'static>> = end_summary(&app.run, app.journal.as_deref())
        .into_iter()
        .map(|(tone, text)| {
            let style = match tone {
                Tone::Good => theme.ok(),
                Tone::Bad => theme.fail(),
                Tone::Heading => theme.bold(),
                Tone::Plain => ratatui::style::Style::new(),
            };
            Line::from(Span::styled(text, style))
        })
        .collect();
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(Span::styled(" The run has ended ", theme.bold()))),
        area,
    );
}
