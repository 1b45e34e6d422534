//! The keys that apply now, from the keymap table; or a notice.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use crate::ui::tui::app::App;
use crate::ui::tui::keymap::labels;

/// Columns a text takes on the terminal.
fn cols(text: &str) -> usize {
    Span::raw(text).width()
}

/// Labels given up first when the line is too narrow; `? help` lists them all
/// and is never given up.
const FIRST_TO_GO: [&str; 4] = ["l full log", "PgUp/PgDn output", "↑↓/jk select", "a auto"];

/// The labels that fit in `width` columns, whole: a cut-off key is worse
/// than a missing one, which the help still shows.
pub(crate) fn fit(all: &[&'static str], width: usize) -> String {
    let mut keep: Vec<&str> = all.to_vec();
    let joined = |k: &[&str]| k.join("  ");
    for gone in FIRST_TO_GO {
        if cols(&joined(&keep)) <= width {
            break;
        }
        keep.retain(|l| *l != gone);
    }
    while cols(&joined(&keep)) > width {
        let Some(i) = keep.iter().rposition(|l| *l != "? help") else {
            break;
        };
        keep.remove(i);
    }
    joined(&keep)
}

pub(crate) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let width = usize::from(area.width);
    let line = match &app.notice {
        Some(n) => {
            let room = width.saturating_sub(cols(n) + 2);
            Line::from(vec![
                Span::styled(n.clone(), theme.warn()),
                Span::styled(
                    format!("  {}", fit(&labels(app.context()), room)),
                    theme.dim(),
                ),
            ])
        }
        None => Line::from(Span::styled(
            fit(&labels(app.context()), width),
            theme.dim(),
        )),
    };
    frame.render_widget(Paragraph::new(line), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::tui::keymap::Context;

    #[rstest::rstest]
    #[case::live(Context::Live)]
    #[case::failed(Context::Failed)]
    #[case::propagating(Context::Propagating)]
    #[case::review(Context::Review)]
    #[case::dialog(Context::Dialog)]
    #[case::help(Context::Help)]
    fn every_footer_fits_80_columns_with_its_help_key(#[case] context: Context) {
        let all = labels(context);
        let line = fit(&all, 80);
        assert!(cols(&line) <= 80, "{line}");
        if all.contains(&"? help") {
            assert!(line.contains("? help"), "{line}");
        }
        // At 120 columns nothing is given up.
        assert_eq!(fit(&all, 120), all.join("  "));
    }
}
