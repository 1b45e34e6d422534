//! The keys that apply now, from the keymap table; or a notice.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use crate::ui::tui::app::App;
use crate::ui::tui::keymap::labels;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let keys = labels(app.context()).join("  ");
    let line = match &app.notice {
        Some(n) => Line::from(vec![
            Span::styled(n.clone(), theme.warn()),
            Span::styled(format!("  {keys}"), theme.dim()),
        ]),
        None => Line::from(Span::styled(keys, theme.dim())),
    };
    frame.render_widget(Paragraph::new(line), area);
}
