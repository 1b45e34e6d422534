//! The checklist, grouped by phase; each step with an icon for its state.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState};

use super::{Theme, short_duration};
use crate::run_state::{StepState, StepStatus};
use crate::ui::tui::app::App;

const SPINNER: [&str; 4] = ["◐", "◓", "◑", "◒"];

pub(crate) fn icon(step: &StepState, frame: u64, theme: Theme) -> Span<'static> {
    match step.status {
        StepStatus::Pending => Span::styled("·", theme.dim()),
        StepStatus::Running => Span::styled(SPINNER[(frame % 4) as usize], theme.active()),
        StepStatus::AwaitingConfirm => Span::styled("?", theme.warn()),
        StepStatus::Succeeded => Span::styled("✓", theme.ok()),
        StepStatus::Failed => Span::styled("✗", theme.fail()),
        StepStatus::Skipped => Span::styled("–", theme.dim()),
    }
}

pub(crate) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let width = area.width.saturating_sub(2) as usize;
    let mut items = Vec::new();
    let mut selected_row = None;
    let mut phase = "";
    for (i, s) in app.run.steps.iter().enumerate() {
        if s.info.phase != phase {
            phase = &s.info.phase;
            items.push(ListItem::new(Line::from(Span::styled(
                s.info.phase_title.clone(),
                theme.bold(),
            ))));
        }
        if i == app.selected {
            selected_row = Some(items.len());
        }
        let time = match s.status {
            StepStatus::Succeeded | StepStatus::Failed => {
                s.duration_ms.map(short_duration).unwrap_or_default()
            }
            StepStatus::Running => s
                .started_at
                .map(|t| short_duration(app.now.duration_since(t).as_millis().max(0) as u64))
                .unwrap_or_default(),
            StepStatus::AwaitingConfirm => "confirm".into(),
            StepStatus::Skipped => "skipped".into(),
            StepStatus::Pending => String::new(),
        };
        let name_room = width.saturating_sub(4 + time.chars().count() + 1);
        let mut name: String = s.info.id.chars().take(name_room).collect();
        while name.chars().count() < name_room {
            name.push(' ');
        }
        let marker = if i == app.selected { "›" } else { " " };
        items.push(ListItem::new(Line::from(vec![
            Span::raw(format!("{marker} ")),
            icon(s, app.frame, theme),
            Span::raw(format!(" {name} ")),
            Span::styled(time, theme.dim()),
        ])));
    }
    let list = List::new(items)
        .block(Block::bordered().title(" Checklist "))
        .highlight_style(theme.selected());
    let mut state = ListState::default().with_selected(selected_row);
    frame.render_stateful_widget(list, area, &mut state);
}
