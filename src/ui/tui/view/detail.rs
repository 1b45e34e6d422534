//! The selected step: what it does and why, where and as whom, its exact
//! commands, progress, how it ended, and its output.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, LineGauge, Paragraph, Wrap};

use super::{Theme, short_duration};
use crate::events::{CheckStatus, StepOutcome, Stream};
use crate::run_state::{StepState, StepStatus};
use crate::ui::tui::app::App;
use crate::units::human_bytes;

fn status_line(s: &StepState, app: &App, theme: Theme) -> Line<'static> {
    let icon = super::checklist::icon(s, app.frame, theme);
    let words = match (&s.status, &s.outcome) {
        (StepStatus::Pending, _) => Span::styled("pending", theme.dim()),
        (StepStatus::Running, _) => Span::styled(
            format!(
                "running for {}",
                s.started_at
                    .map(|t| short_duration(app.now.duration_since(t).as_millis().max(0) as u64))
                    .unwrap_or_default()
            ),
            theme.active(),
        ),
        (StepStatus::AwaitingConfirm, _) => Span::styled("needs confirmation", theme.warn()),
        (StepStatus::Succeeded, _) => Span::styled(
            format!(
                "done in {}",
                s.duration_ms.map(short_duration).unwrap_or_default()
            ),
            theme.ok(),
        ),
        (StepStatus::Failed, _) => Span::styled(
            format!(
                "FAILED after {}",
                s.duration_ms.map(short_duration).unwrap_or_default()
            ),
            theme.fail(),
        ),
        (StepStatus::Skipped, Some(StepOutcome::Skipped { reason })) => {
            Span::styled(format!("skipped: {reason}"), theme.dim())
        }
        (StepStatus::Skipped, _) => Span::styled("skipped", theme.dim()),
    };
    let mut spans = vec![icon, Span::raw(" "), words];
    if s.attempts > 1 {
        spans.push(Span::styled(
            format!("  (attempt {})", s.attempts),
            theme.dim(),
        ));
    }
    if s.info.optional {
        spans.push(Span::styled("  optional", theme.dim()));
    }
    Line::from(spans)
}

fn about(s: &StepState, app: &App, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = vec![status_line(s, app, theme)];
    // What went wrong comes first: on a small screen the rest may not fit.
    if let Some(StepOutcome::Failed {
        message,
        exit_code,
        first_error,
        stderr_tail,
        ..
    }) = &s.outcome
    {
        lines.push(Line::from(Span::styled(message.clone(), theme.fail())));
        if let Some(code) = exit_code {
            lines.push(Line::from(format!("exit code {code}")));
        }
        if let Some(f) = first_error
            && !message.contains(f.as_str())
        {
            lines.push(Line::from(format!("first error: {f}")));
        }
        for l in stderr_tail.iter().rev().take(5).rev() {
            lines.push(Line::from(Span::styled(format!("  {l}"), theme.dim())));
        }
    }
    let user = s
        .info
        .user
        .clone()
        .map(|u| format!(" as {u}"))
        .unwrap_or_default();
    if !s.info.hosts.is_empty() {
        lines.push(Line::from(format!(
            "on {}{user}",
            s.info.hosts.join(" and ")
        )));
    }
    if !s.info.why.is_empty() {
        lines.push(Line::from(Span::styled(s.info.why.clone(), theme.dim())));
    }
    if let Some(c) = &s.info.confirm {
        lines.push(Line::from(vec![
            Span::styled("asks first: ", theme.warn()),
            Span::raw(c.clone()),
        ]));
    }
    for c in &s.commands {
        lines.push(Line::from(format!("$ {c}")));
    }
    lines
}

/// Rows a text takes when wrapped at `width`.
fn wrapped_height(lines: &[Line<'_>], width: u16) -> u16 {
    let w = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(w) as u16)
        .sum()
}

pub(crate) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some(s) = app.run.steps.get(app.selected) else {
        frame.render_widget(Block::bordered().title(" Step "), area);
        return;
    };
    let block = Block::bordered().title(format!(" {} ", s.info.title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let about = about(s, app, theme);
    let has_output = !s.output.lines.is_empty() || !s.checks.is_empty();
    let cap = if has_output || s.propagation.is_some() {
        (inner.height / 2).max(3)
    } else {
        inner.height
    };
    let top_h = wrapped_height(&about, inner.width).min(cap);
    let gauge_h = u16::from(s.progress.is_some());
    let [top, gauge, rest] = Layout::vertical([
        Constraint::Length(top_h),
        Constraint::Length(gauge_h),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(Text::from(about)).wrap(Wrap { trim: false }),
        top,
    );
    if let Some((bytes, total)) = s.progress {
        draw_gauge(frame, gauge, app, s, bytes, total, theme);
    }
    let rest = match &s.propagation {
        Some((elapsed, report)) if rest.height > 0 => {
            // The table gets what it needs, but leaves the output a few lines.
            let want = super::propagation::height(report);
            let h = if has_output {
                want.min(rest.height.saturating_sub(4).max(rest.height / 2))
            } else {
                want.min(rest.height)
            };
            let [table, below] =
                Layout::vertical([Constraint::Length(h), Constraint::Min(0)]).areas(rest);
            super::propagation::draw(frame, table, *elapsed, report, theme);
            below
        }
        _ => rest,
    };
    if rest.height > 0 && has_output {
        draw_output(frame, rest, app, theme, false);
    }
}

fn draw_gauge(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    s: &StepState,
    bytes: u64,
    total: Option<u64>,
    theme: Theme,
) {
    let end = if s.status == StepStatus::Running {
        app.now
    } else {
        s.finished_at.unwrap_or(app.now)
    };
    let secs = s
        .started_at
        .map(|t| end.duration_since(t).as_secs_f64())
        .unwrap_or(0.0);
    let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
    let mut label = match total {
        Some(t) => format!("{} / {}", human_bytes(bytes), human_bytes(t)),
        None => human_bytes(bytes),
    };
    if rate > 0.0 {
        label.push_str(&format!("  {}/s", human_bytes(rate as u64)));
        if let Some(t) = total
            && s.status == StepStatus::Running
            && t > bytes
        {
            label.push_str(&format!(
                "  eta {}",
                short_duration(((t - bytes) as f64 / rate * 1000.0) as u64)
            ));
        }
    }
    let ratio = total
        .filter(|t| *t > 0)
        .map_or(0.0, |t| (bytes as f64 / t as f64).clamp(0.0, 1.0));
    frame.render_widget(
        LineGauge::default()
            .ratio(ratio)
            .label(label)
            .filled_style(theme.active())
            .unfilled_style(theme.dim()),
        area,
    );
}

/// The step's checks and output, newest at the bottom, scrolled by PgUp/PgDn.
/// Only the lines that fit are turned into text: a long log costs nothing here.
pub(crate) fn draw_output(frame: &mut Frame, area: Rect, app: &App, theme: Theme, full: bool) {
    let Some(s) = app.run.steps.get(app.selected) else {
        return;
    };
    let title = if full {
        format!(" output: {} ", s.info.id)
    } else {
        " output ".to_string()
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = usize::from(inner.height);
    let total = s.checks.len() + s.output.lines.len();
    let end = total.saturating_sub(app.scroll.min(total.saturating_sub(1)));
    let start = end.saturating_sub(height);
    let mut lines: Vec<Line<'static>> = Vec::with_capacity(height);
    for i in start..end {
        if let Some(c) = s.checks.get(i) {
            let (mark, style) = match c.status {
                CheckStatus::Pass => ("ok  ", theme.ok()),
                CheckStatus::Warn => ("WARN", theme.warn()),
                CheckStatus::Fail => ("FAIL", theme.fail()),
            };
            lines.push(Line::from(vec![
                Span::styled(format!("[{mark}] "), style),
                Span::raw(format!(
                    "{}: {}: {}",
                    c.host,
                    c.name,
                    c.message.replace('\n', " ")
                )),
            ]));
        } else if let Some((stream, l)) = s.output.lines.get(i - s.checks.len()) {
            let style = if *stream == Stream::Stderr {
                theme.warn()
            } else {
                ratatui::style::Style::new()
            };
            lines.push(Line::from(Span::styled(l.clone(), style)));
        }
    }
    if s.output.dropped > 0 && start == 0 {
        lines.insert(
            0,
            Line::from(Span::styled(
                format!("({} earlier lines are in the journal)", s.output.dropped),
                theme.dim(),
            )),
        );
    }
    frame.render_widget(Paragraph::new(Text::from(lines)), inner);
}
