//! The help overlay: every key, from the keymap table, and what the icons mean.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use super::{Theme, popup};
use crate::ui::tui::keymap::{Context, labels};

pub(crate) fn draw(frame: &mut Frame, area: Rect, theme: Theme) {
    let mut lines = Vec::new();
    for (name, context) in [
        ("Running", Context::Live),
        ("After a failure", Context::Failed),
        ("In a dialog", Context::Dialog),
        ("Reviewing a journal", Context::Review),
    ] {
        lines.push(Line::from(Span::styled(name, theme.bold())));
        lines.push(Line::from(format!("  {}", labels(context).join("   "))));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Steps", theme.bold())));
    lines.push(Line::from(
        "  · pending   ◐ running   ? needs confirmation   ✓ done   ✗ failed   – skipped",
    ));
    lines.push(Line::from(
        "  Ctrl-C stops the run and quits; the journal stays complete.",
    ));
    popup(frame, area, "Help: ?/Esc closes", lines, theme);
}
