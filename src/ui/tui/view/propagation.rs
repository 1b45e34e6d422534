//! The DNS step's resolver table, as the latest round left it: which resolvers
//! already send visitors to the new host, which still hold the old answer and
//! for how long.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table};

use super::Theme;
use crate::dns::{Report, State};

/// Rows the table wants: header, one per resolver, borders.
pub(crate) fn height(report: &Report) -> u16 {
    u16::try_from(report.resolvers.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3)
}

pub(crate) fn draw(frame: &mut Frame, area: Rect, elapsed_s: u64, report: &Report, theme: Theme) {
    let summary_style = if report.complete() {
        theme.ok()
    } else {
        theme.warn()
    };
    let mut summary = format!("{} of {} propagated", report.propagated, report.total);
    if let Some(w) = report.worst_case_s {
        summary.push_str(&format!(", all within {}", crate::dns::human_secs(w)));
    }
    let block = Block::bordered()
        .title(format!(" resolvers at {elapsed_s}s "))
        .title_bottom(Line::from(Span::styled(
            format!(" {summary} "),
            summary_style,
        )));
    // Narrow screens keep who, what and the verdict; region and TTL go.
    let wide = area.width >= 70;
    // Resolvers that do not agree yet come first: on a short screen they are
    // the ones worth seeing.
    let mut answers: Vec<_> = report.resolvers.iter().collect();
    answers.sort_by_key(|a| a.state == State::Propagated);
    let rows = answers.into_iter().map(|a| {
        let style = match a.state {
            State::Propagated => theme.ok(),
            State::Stale { .. } => theme.warn(),
            _ => theme.fail(),
        };
        let answer = if a.cname_chain.is_empty() {
            crate::dns::ips(&a.addresses)
        } else {
            format!(
                "{} via {}",
                crate::dns::ips(&a.addresses),
                a.cname_chain.join(" -> ")
            )
        };
        let state = match a.state {
            State::Stale { expires_in_s } => {
                format!("stale, {} left", crate::dns::human_secs(expires_in_s))
            }
            _ => a.state.words(),
        };
        let state = Cell::from(Span::styled(state, style));
        if wide {
            Row::new([
                Cell::from(a.server.provider.clone()),
                Cell::from(a.server.region.clone()),
                Cell::from(answer),
                Cell::from(a.ttl_s.map_or("-".into(), |t| t.to_string())),
                state,
            ])
        } else {
            Row::new([
                Cell::from(a.server.provider.clone()),
                Cell::from(answer),
                state,
            ])
        }
    });
    let (widths, header): (Vec<Constraint>, Vec<&str>) = if wide {
        (
            vec![
                Constraint::Length(16),
                Constraint::Length(7),
                Constraint::Fill(1),
                Constraint::Length(6),
                Constraint::Length(20),
            ],
            vec!["resolver", "region", "answer", "ttl", "state"],
        )
    } else {
        (
            vec![
                Constraint::Length(11),
                Constraint::Fill(1),
                Constraint::Length(19),
            ],
            vec!["resolver", "answer", "state"],
        )
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.bold()))
        .block(block);
    frame.render_widget(table, area);
}
