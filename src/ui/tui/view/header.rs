//! Two lines: what moves where and the current phase; then the clocks.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Theme, clock};
use crate::run_state::Waiting;
use crate::ui::tui::app::{App, Mode};
use crate::units::human_bytes;

pub(crate) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let run = &app.run;
    let phase = app
        .current_step()
        .and_then(|i| run.steps.get(i))
        .map(|s| s.info.phase_title.clone())
        .unwrap_or_else(|| match run.waiting() {
            Waiting::Finished => "done".into(),
            _ => "-".into(),
        });
    let title = if run.domain.is_empty() {
        "hikkoshi".to_string()
    } else {
        format!("hikkoshi · {}", run.domain)
    };
    let first = Line::from(vec![
        Span::styled(title, theme.bold()),
        Span::raw(format!("  {} → {}", run.source, run.target)),
        Span::raw("  phase: "),
        Span::styled(phase, theme.active()),
    ]);

    let downtime = match run.downtime(app.now) {
        None => Span::raw("downtime not started"),
        Some(d) if run.downtime_ended.is_some() => {
            let predicted = run
                .rehearsal_prediction
                .as_ref()
                .map(|r| {
                    format!(
                        ", predicted {}",
                        crate::ui::short_duration(r.prediction.total_ms)
                    )
                })
                .unwrap_or_default();
            Span::styled(
                format!("downtime {} (over{predicted})", clock(d)),
                theme.ok(),
            )
        }
        Some(d) if run.brought_back() => Span::styled(
            format!("{} serves again (down {})", run.source, clock(d)),
            theme.warn(),
        ),
        Some(d) => Span::styled(format!("DOWN {}", clock(d)), theme.fail()),
    };
    let elapsed = run
        .started_at
        .map(|s| clock(run.finished_at.unwrap_or(app.now).duration_since(s)))
        .unwrap_or_else(|| "--:--".into());
    let mode = match (app.mode, app.auto, run.waiting()) {
        (Mode::Review, _, _) => "review (read-only)".to_string(),
        (_, _, Waiting::Finished) => match &run.outcome {
            Some(crate::events::RunOutcome::Succeeded) => "finished: all steps succeeded".into(),
            Some(o) => format!("finished: {}", outcome_word(o)),
            None => "finished".into(),
        },
        (_, true, _) => "auto: runs until the next confirmation".into(),
        _ => "step by step".into(),
    };
    let mut second = vec![downtime, Span::raw(format!("  elapsed {elapsed}"))];
    let moved = run.bytes_moved();
    if moved > 0 {
        second.push(Span::raw(format!("  {} moved", human_bytes(moved))));
    }
    second.push(Span::styled(format!("  {mode}"), theme.dim()));
    frame.render_widget(Paragraph::new(vec![first, Line::from(second)]), area);
}

fn outcome_word(o: &crate::events::RunOutcome) -> String {
    use crate::events::RunOutcome::*;
    match o {
        Succeeded => "all steps succeeded".into(),
        Incomplete { failed } => format!("optional steps failed: {}", failed.join(", ")),
        Failed { step } => format!("FAILED at {step}"),
        Aborted { step: Some(s) } => format!("aborted at {s}"),
        Aborted { step: None } => "aborted".into(),
    }
}
