//! Dialogs: a step's confirmation, stating exactly what will happen on which
//! host; and the questions before quitting or aborting a live run.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use super::{Theme, popup};
use crate::ui::tui::app::{App, Dialog};

pub(crate) fn draw_step(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some((id, prompt)) = &app.run.awaiting else {
        return;
    };
    let Some(step) = app.run.step(id) else {
        return;
    };
    let mut lines = vec![
        Line::from(Span::styled(step.info.title.clone(), theme.bold())),
        Line::from(prompt.clone()),
        Line::from(""),
    ];
    // Each command line names its host and user.
    for c in step.commands.iter().take(4) {
        lines.push(Line::from(Span::styled(format!("$ {c}"), theme.dim())));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        Span::styled("y", theme.bold()),
        Span::raw(" go ahead    "),
        Span::styled("n", theme.bold()),
        Span::raw("/"),
        Span::styled("Esc", theme.bold()),
        Span::raw(" not now"),
    ]));
    popup(frame, area, "Confirm", lines, theme);
}

pub(crate) fn draw_question(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    dialog: Dialog,
    theme: Theme,
) {
    let down = app.instance_down();
    let (title, question) = match dialog {
        Dialog::Quit => ("Quit", "The run is in progress. Stop it and quit?"),
        Dialog::Abort => ("Abort", "Stop the run here?"),
    };
    let mut lines = vec![Line::from(question)];
    if down {
        lines.push(Line::from(Span::styled(
            format!(
                "{} is DOWN: the services on {} are stopped and {} is not live yet.",
                app.run.domain, app.run.source, app.run.target
            ),
            theme.fail(),
        )));
    }
    lines.push(Line::from("The journal keeps everything that happened."));
    lines.push(Line::from(""));
    if down {
        lines.push(Line::from(vec![
            Span::styled("b", theme.bold()),
            Span::raw(format!(
                " stop and bring {} back (start its services again)",
                app.run.source
            )),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled("y", theme.bold()),
        Span::raw(if down {
            " stop, leave both as they are    "
        } else {
            " stop the run    "
        }),
        Span::styled("n", theme.bold()),
        Span::raw("/"),
        Span::styled("Esc", theme.bold()),
        Span::raw(" go back"),
    ]));
    popup(frame, area, title, lines, theme);
}
