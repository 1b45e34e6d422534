//! The wizard without a terminal: key handling as state transitions, and each
//! screen rendered into a TestBackend and compared with a snapshot.

use std::path::Path;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use rstest::rstest;

use super::app::{App, Dialog, Mode, Msg, update};
use super::view::{self, Theme};
use crate::config::Config;
use crate::events::{CheckStatus, EngineCommand, EngineEvent, RunOutcome, StepOutcome, Stream};
use crate::journal::Record;
use crate::plan::Plan;
use crate::run_state::Waiting;

const T0: i64 = 1_795_000_000;

fn at(secs: i64, event: EngineEvent) -> Record {
    Record {
        ts: jiff::Timestamp::from_second(T0 + secs).expect("valid time"),
        event,
    }
}

fn started() -> Vec<Record> {
    let config = Config::parse(
        Path::new("/lab/migration.toml"),
        "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"social.example.net\"\n",
    )
    .expect("valid config");
    let plan = Plan::build(&config).expect("plan");
    let mut vars = plan.vars.clone();
    vars.set("run_id", "20261121T150000Z-abcd");
    let steps = crate::steps::describe::infos_with(&plan, &vars);
    vec![at(
        0,
        EngineEvent::RunStarted {
            run_id: "20261121T150000Z-abcd".into(),
            mode: crate::events::RunMode::Run,
            profile: "mastodon".into(),
            domain: "social.example.net".into(),
            source: "old".into(),
            target: "new".into(),
            steps,
            resumed: Vec::new(),
        },
    )]
}

fn done(secs: i64, step: &str, ms: u64) -> Vec<Record> {
    vec![
        at(
            secs,
            EngineEvent::StepStarted {
                step: step.into(),
                commands: vec![],
            },
        ),
        at(
            secs + (ms as i64 / 1000),
            EngineEvent::StepFinished {
                step: step.into(),
                outcome: StepOutcome::Succeeded,
                duration_ms: ms,
            },
        ),
    ]
}

fn preflight_done() -> Vec<Record> {
    let mut r = started();
    r.push(at(
        1,
        EngineEvent::StepStarted {
            step: "preflight".into(),
            commands: vec![],
        },
    ));
    for (host, name, status, msg) in [
        ("old", "ssh", CheckStatus::Pass, "connected as root"),
        ("new", "ssh", CheckStatus::Pass, "connected as root"),
        (
            "old",
            "schemas",
            CheckStatus::Warn,
            "data outside 'public' in schema 'pghero': restored too",
        ),
    ] {
        r.push(at(
            2,
            EngineEvent::Check {
                step: "preflight".into(),
                host: host.into(),
                name: name.into(),
                status,
                message: msg.into(),
            },
        ));
    }
    r.push(at(
        3,
        EngineEvent::StepFinished {
            step: "preflight".into(),
            outcome: StepOutcome::Succeeded,
            duration_ms: 2100,
        },
    ));
    r.extend(done(4, "prepare", 40));
    r
}

fn running_with_output() -> Vec<Record> {
    let mut r = preflight_done();
    r.push(at(
        5,
        EngineEvent::StepStarted {
            step: "presync-media".into(),
            commands: vec![
                "old as mastodon: rsync -a /home/mastodon/live/public/system/ -> new".into(),
            ],
        },
    ));
    r.push(at(
        6,
        EngineEvent::Output {
            step: "presync-media".into(),
            stream: Stream::Stdout,
            lines: (1..=40).map(|i| format!("output line {i}")).collect(),
        },
    ));
    r.push(at(
        7,
        EngineEvent::Progress {
            step: "presync-media".into(),
            bytes: 25 * 1024 * 1024,
            total: Some(100 * 1024 * 1024),
        },
    ));
    r
}

fn awaiting_confirmation() -> Vec<Record> {
    let mut r = preflight_done();
    r.extend(done(5, "presync-media", 900));
    r.push(at(
        7,
        EngineEvent::AwaitingConfirm {
            step: "stop-source".into(),
            prompt: "Stop mastodon-web mastodon-sidekiq mastodon-streaming on old. social.example.net is offline from now until the new host answers.".into(),
        },
    ));
    r
}

fn failed() -> Vec<Record> {
    let mut r = preflight_done();
    r.extend(done(4, "prepare", 10));
    r.extend(done(5, "presync-media", 900));
    r.extend(done(6, "stage-env", 10));
    r.extend(done(7, "precompile", 10));
    for (i, s) in ["stop-source", "dump", "move-dump"].iter().enumerate() {
        r.extend(done(8 + i as i64, s, 300));
    }
    r.push(at(
        11,
        EngineEvent::StepFinished {
            step: "move-dump-dir".into(),
            outcome: StepOutcome::Skipped {
                reason: "only runs if db_parallel".into(),
            },
            duration_ms: 0,
        },
    ));
    r.push(at(
        12,
        EngineEvent::StepStarted {
            step: "restore".into(),
            commands: vec![],
        },
    ));
    r.push(at(
        14,
        EngineEvent::StepFinished {
            step: "restore".into(),
            outcome: StepOutcome::Failed {
                message: "on new: 'pg_restore ...' exited with 1: pg_restore: error: could not execute query: ERROR:  permission denied for schema public".into(),
                host: Some("new".into()),
                command: Some("pg_restore -Fc -j 2 -U mastodon -n public --no-owner --role=mastodon -d mastodon_production /x.dump".into()),
                exit_code: Some(1),
                first_error: Some("pg_restore: error: could not execute query: ERROR:  permission denied for schema public".into()),
                stderr_tail: vec!["pg_restore: warning: errors ignored on restore: 212".into()],
            },
            duration_ms: 2000,
        },
    ));
    r
}

/// The failure above, stopped by the admin with the old host brought back.
fn ended_in_failure() -> Vec<Record> {
    let mut r = failed();
    r.push(at(
        16,
        EngineEvent::StepStarted {
            step: "rollback".into(),
            commands: vec!["old as root: systemctl start mastodon-web".into()],
        },
    ));
    r.push(at(
        17,
        EngineEvent::StepFinished {
            step: "rollback".into(),
            outcome: StepOutcome::Succeeded,
            duration_ms: 900,
        },
    ));
    r.extend(done(17, "cleanup", 100));
    r.push(at(
        18,
        EngineEvent::RunFinished {
            outcome: RunOutcome::Failed {
                step: "restore".into(),
            },
            duration_ms: 18_000,
        },
    ));
    r
}

fn finished() -> Vec<Record> {
    let mut r = started();
    let ids: Vec<String> = match &r[0].event {
        EngineEvent::RunStarted { steps, .. } => steps.iter().map(|s| s.id.clone()).collect(),
        _ => Vec::new(),
    };
    for (i, id) in ids.iter().enumerate() {
        if id == "dns" || id == "rollback" {
            r.push(at(
                10 + i as i64,
                EngineEvent::StepFinished {
                    step: id.clone(),
                    outcome: StepOutcome::Skipped {
                        reason: if id == "dns" {
                            "no [dns] in the config; social.example.net was not checked".into()
                        } else {
                            "not needed".into()
                        },
                    },
                    duration_ms: 0,
                },
            ));
        } else {
            r.extend(done(10 + 2 * i as i64, id, 800));
        }
    }
    r.push(at(
        60,
        EngineEvent::RunFinished {
            outcome: RunOutcome::Succeeded,
            duration_ms: 50_000,
        },
    ));
    r
}

/// The cutover waits for DNS: two resolvers follow, one still holds the old
/// answer, one says the name does not exist, one does not answer.
fn dns_waiting() -> Vec<Record> {
    use crate::dns::{Report, ResolverAnswer, Server, State};
    let mut r = started();
    let ids: Vec<String> = match &r[0].event {
        EngineEvent::RunStarted { steps, .. } => steps.iter().map(|s| s.id.clone()).collect(),
        _ => Vec::new(),
    };
    for (i, id) in ids.iter().take_while(|id| *id != "dns").enumerate() {
        r.extend(done(i as i64 / 2, id, 500));
    }
    r.push(at(
        10,
        EngineEvent::StepStarted {
            step: "dns".into(),
            commands: vec![],
        },
    ));
    let new: std::net::IpAddr = "203.0.113.20".parse().expect("ip");
    let old: std::net::IpAddr = "203.0.113.10".parse().expect("ip");
    let answer = |ip: &str,
                  provider: &str,
                  region: &str,
                  addresses: Vec<std::net::IpAddr>,
                  ttl: Option<u32>,
                  state: State| ResolverAnswer {
        server: Server {
            addr: std::net::SocketAddr::new(ip.parse().expect("ip"), 53),
            provider: provider.into(),
            region: region.into(),
        },
        addresses,
        cname_chain: Vec::new(),
        ttl_s: ttl,
        latency_ms: 20,
        state,
    };
    let resolvers = vec![
        answer(
            "8.8.8.8",
            "Google",
            "global",
            vec![new],
            Some(300),
            State::Propagated,
        ),
        answer(
            "1.1.1.1",
            "Cloudflare",
            "global",
            vec![new],
            Some(298),
            State::Propagated,
        ),
        answer(
            "9.9.9.9",
            "Quad9",
            "global",
            vec![old],
            Some(1500),
            State::Stale { expires_in_s: 1500 },
        ),
        answer("77.88.8.8", "Yandex", "RU", vec![], None, State::Nxdomain),
        answer("223.5.5.5", "AliDNS", "CN", vec![], None, State::Timeout),
    ];
    r.push(at(
        18,
        EngineEvent::Propagation {
            step: "dns".into(),
            elapsed_s: 8,
            report: Report {
                domain: "social.example.net".into(),
                expect: vec![new],
                authority: None,
                authority_error: None,
                resolvers,
                propagated: 2,
                total: 5,
                worst_case_s: Some(1500),
            },
        },
    ));
    r
}

fn app_with(records: &[Record], mode: Mode) -> App {
    let now = jiff::Timestamp::from_second(T0 + 20).expect("time");
    let mut app = App::new(mode, now);
    for r in records {
        update(&mut app, Msg::Record(Box::new(r.clone())));
    }
    app.now = now;
    app
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    t.draw(|f| view::draw(f, app, Theme { color: false }))
        .expect("draw");
    t.backend().to_string()
}

#[rstest]
#[case::before_start("before_start", started())]
#[case::running_with_output("running_with_output", running_with_output())]
#[case::awaiting_confirmation("awaiting_confirmation", awaiting_confirmation())]
#[case::failed("failed", failed())]
#[case::finished("finished", finished())]
#[case::ended_in_failure("ended_in_failure", ended_in_failure())]
#[case::dns_waiting("dns_waiting", dns_waiting())]
fn screens(#[case] name: &str, #[case] records: Vec<Record>) {
    let mut app = app_with(&records, Mode::Live);
    app.journal =
        Some("/root/.local/state/hikkoshi/runs/20261121T150000Z-social.example.net.jsonl".into());
    insta::assert_snapshot!(format!("{name}_80x24"), screen(&app, 80, 24));
    insta::assert_snapshot!(format!("{name}_120x40"), screen(&app, 120, 40));
}

/// A run that follows a rehearsal shows, once the downtime is over, what
/// the rehearsal predicted beside what it measured.
#[test]
fn the_end_shows_the_rehearsals_prediction_beside_the_downtime() {
    let mut records = finished();
    records.insert(
        1,
        at(
            0,
            EngineEvent::Predicted(crate::prediction::RehearsalPrediction {
                rehearsal: "20261120T150000Z-beef".into(),
                journal: "/root/rehearsal.jsonl".into(),
                prediction: crate::prediction::Prediction {
                    total_ms: 20_000,
                    parts: Vec::new(),
                    db_move: Some("parallel".into()),
                },
            }),
        ),
    );
    let app = app_with(&records, Mode::Live);
    let s = screen(&app, 80, 24);
    assert!(s.contains("downtime 00:22 (over, predicted 20.0s)"), "{s}");
    let report = crate::ui::review::markdown(&app.run);
    assert!(
        // Step by step, the steps here take no time and the gaps between
        // them are the admin's: what the prediction is compared with is the rest.
        report.contains("| predicted downtime | downtime 22.0s measured, 22.0s of it waiting for your answers; rehearsal 20261120T150000Z-beef predicted 20.0s for the rest, 0.0s (-100%) (journal /root/rehearsal.jsonl) |"),
        "{report}"
    );
}

#[test]
fn review_screen_and_help() {
    let mut app = App::review(
        crate::run_state::RunState::from_records(&finished()),
        jiff::Timestamp::from_second(T0 + 60).expect("time"),
    );
    insta::assert_snapshot!("review_80x24", screen(&app, 80, 24));
    update(&mut app, key(KeyCode::Char('?')));
    insta::assert_snapshot!("help_80x24", screen(&app, 80, 24));
}

#[test]
fn full_log_shows_the_newest_lines_and_scrolls() {
    let mut app = app_with(&running_with_output(), Mode::Live);
    update(&mut app, key(KeyCode::Char('l')));
    let s = screen(&app, 80, 24);
    assert!(s.contains("output line 40"), "{s}");
    update(&mut app, key(KeyCode::PageUp));
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("output line 30") && !s.contains("output line 40"),
        "{s}"
    );
}

/// (records so far, key) -> (commands for the engine, what must hold after).
#[rstest]
#[case::enter_runs_the_next_step(started(), KeyCode::Enter, vec![EngineCommand::Start])]
#[case::a_starts_auto(started(), KeyCode::Char('a'), vec![EngineCommand::Start])]
#[case::y_confirms(awaiting_confirmation(), KeyCode::Char('y'), vec![EngineCommand::Confirm])]
#[case::n_declines_without_skipping(awaiting_confirmation(), KeyCode::Char('n'), vec![])]
#[case::esc_declines_too(awaiting_confirmation(), KeyCode::Esc, vec![])]
#[case::r_retries(failed(), KeyCode::Char('r'), vec![EngineCommand::Retry])]
#[case::s_refuses_a_required_step(failed(), KeyCode::Char('s'), vec![])]
#[case::x_asks_before_aborting(failed(), KeyCode::Char('x'), vec![])]
#[case::q_asks_while_running(running_with_output(), KeyCode::Char('q'), vec![])]
#[case::enter_while_running_does_nothing(running_with_output(), KeyCode::Enter, vec![])]
#[case::m_moves_on_from_the_dns_wait(dns_waiting(), KeyCode::Char('m'), vec![EngineCommand::Skip])]
#[case::m_means_nothing_in_other_steps(running_with_output(), KeyCode::Char('m'), vec![])]
#[case::keys_of_other_contexts_do_nothing(failed(), KeyCode::Char('a'), vec![])]
fn keys_send_exactly_these_commands(
    #[case] records: Vec<Record>,
    #[case] code: KeyCode,
    #[case] expected: Vec<EngineCommand>,
) {
    let mut app = app_with(&records, Mode::Live);
    assert_eq!(update(&mut app, key(code)), expected);
}

#[test]
fn auto_mode_starts_each_next_step_until_a_confirmation() {
    let mut app = app_with(&started(), Mode::Live);
    assert_eq!(
        update(&mut app, key(KeyCode::Char('a'))),
        [EngineCommand::Start]
    );
    assert!(app.auto);
    let mut next = None;
    for r in done(1, "preflight", 1000) {
        next = Some(update(&mut app, Msg::Record(Box::new(r))));
    }
    assert_eq!(
        next,
        Some(vec![EngineCommand::Start]),
        "auto starts the next step"
    );
    let confirm = at(
        5,
        EngineEvent::AwaitingConfirm {
            step: "stop-source".into(),
            prompt: "Stop".into(),
        },
    );
    assert_eq!(update(&mut app, Msg::Record(Box::new(confirm))), vec![]);
    assert!(!app.auto, "a confirmation ends auto mode");
    assert!(app.confirm_dialog_shown());
}

#[test]
fn declining_hides_the_dialog_and_enter_brings_it_back() {
    let mut app = app_with(&awaiting_confirmation(), Mode::Live);
    update(&mut app, key(KeyCode::Char('n')));
    assert!(!app.confirm_dialog_shown());
    assert!(
        matches!(app.run.waiting(), Waiting::Confirmation(_)),
        "the step still waits"
    );
    assert!(
        app.notice
            .as_deref()
            .is_some_and(|n| n.contains("Enter asks again"))
    );
    update(&mut app, key(KeyCode::Enter));
    assert!(app.confirm_dialog_shown());
}

#[test]
fn enter_on_another_step_selects_the_next_one_instead() {
    let mut app = app_with(&preflight_done(), Mode::Live);
    update(&mut app, key(KeyCode::Up));
    update(&mut app, key(KeyCode::Up));
    assert_eq!(update(&mut app, key(KeyCode::Enter)), vec![]);
    assert_eq!(app.run.steps[app.selected].info.id, "presync-media");
    assert!(
        app.notice
            .as_deref()
            .is_some_and(|n| n.contains("steps run in order"))
    );
    assert_eq!(
        update(&mut app, key(KeyCode::Enter)),
        [EngineCommand::Start]
    );
}

#[test]
fn abort_and_quit_dialogs() {
    let mut app = app_with(&failed(), Mode::Live);
    update(&mut app, key(KeyCode::Char('x')));
    assert_eq!(app.dialog, Some(Dialog::Abort));
    assert_eq!(
        update(&mut app, key(KeyCode::Char('y'))),
        [EngineCommand::Abort]
    );
    assert!(!app.quit);

    let mut app = app_with(&running_with_output(), Mode::Live);
    update(&mut app, key(KeyCode::Char('q')));
    assert_eq!(app.dialog, Some(Dialog::Quit));
    assert_eq!(update(&mut app, key(KeyCode::Esc)), vec![]);
    assert_eq!(app.dialog, None);
    update(&mut app, key(KeyCode::Char('q')));
    assert_eq!(
        update(&mut app, key(KeyCode::Char('y'))),
        [EngineCommand::Abort]
    );
    assert!(app.quitting && !app.quit, "waits for the engine to finish");
    let end = at(
        30,
        EngineEvent::RunFinished {
            outcome: RunOutcome::Aborted {
                step: Some("presync-media".into()),
            },
            duration_ms: 30_000,
        },
    );
    update(&mut app, Msg::Record(Box::new(end)));
    assert!(app.quit);
}

#[test]
fn stopping_while_down_offers_to_bring_the_old_host_back() {
    let mut app = app_with(&failed(), Mode::Live);
    assert!(app.instance_down(), "stop-source ran, health did not");
    update(&mut app, key(KeyCode::Char('x')));
    assert!(screen(&app, 100, 30).contains("b stop and bring old back"));
    assert_eq!(
        update(&mut app, key(KeyCode::Char('b'))),
        [EngineCommand::Rollback]
    );
    assert!(
        !app.quitting,
        "abort keeps the wizard open to show the rollback"
    );

    let mut app = app_with(&failed(), Mode::Live);
    update(&mut app, key(KeyCode::Char('q')));
    assert_eq!(
        update(&mut app, key(KeyCode::Char('b'))),
        [EngineCommand::Rollback]
    );
    assert!(app.quitting);

    let mut app = app_with(&preflight_done(), Mode::Live);
    update(&mut app, key(KeyCode::Char('x')));
    assert!(
        !screen(&app, 100, 30).contains("bring old back"),
        "nothing is down yet"
    );
    assert_eq!(update(&mut app, key(KeyCode::Char('b'))), vec![]);
}

#[test]
fn optional_failures_can_be_skipped() {
    let mut records = finished();
    let cut = records
        .iter()
        .position(|r| matches!(&r.event, EngineEvent::StepStarted { step, .. } if step == "search-deploy"))
        .expect("search-deploy in the fixture");
    records.truncate(cut);
    let mut app = app_with(&records, Mode::Live);
    let fail = at(
        70,
        EngineEvent::StepStarted {
            step: "search-deploy".into(),
            commands: vec![],
        },
    );
    update(&mut app, Msg::Record(Box::new(fail)));
    let fail = at(
        71,
        EngineEvent::StepFinished {
            step: "search-deploy".into(),
            outcome: StepOutcome::failed("Elasticsearch is down"),
            duration_ms: 500,
        },
    );
    update(&mut app, Msg::Record(Box::new(fail)));
    assert_eq!(
        update(&mut app, key(KeyCode::Char('s'))),
        [EngineCommand::Skip]
    );
}

#[test]
fn ctrl_c_and_sigterm_stop_a_live_run_and_quit_at_once_otherwise() {
    let mut app = app_with(&running_with_output(), Mode::Live);
    let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(update(&mut app, ctrl_c), [EngineCommand::Abort]);
    assert!(app.quitting);

    let mut app = app_with(&started(), Mode::Live);
    assert_eq!(update(&mut app, Msg::Terminate), vec![]);
    assert!(app.quit, "nothing ran yet: quit straight away");

    let mut app = App::review(
        crate::run_state::RunState::from_records(&finished()),
        jiff::Timestamp::now(),
    );
    assert_eq!(
        update(&mut app, key(KeyCode::Enter)),
        vec![],
        "review is read-only"
    );
    update(&mut app, key(KeyCode::Char('q')));
    assert!(app.quit);
}

#[test]
fn ticks_redraw_only_while_something_moves() {
    let mut app = app_with(&started(), Mode::Live);
    app.dirty = false;
    update(&mut app, Msg::Tick(jiff::Timestamp::now()));
    assert!(!app.dirty, "nothing runs: no redraw");
    let mut app = app_with(&running_with_output(), Mode::Live);
    app.dirty = false;
    update(&mut app, Msg::Tick(jiff::Timestamp::now()));
    assert!(app.dirty, "a step runs: its spinner and clock move");
}

#[test]
fn markdown_report_names_the_failure_and_the_downtime_still_open() {
    let run = crate::run_state::RunState::from_records(&failed());
    let md = crate::ui::review::markdown(&run);
    assert!(md.contains("| Downtime | restore | new |"), "{md}");
    assert!(md.contains("FAILED (exit 1)"), "{md}");
    assert!(md.contains("### restore on new"), "{md}");
    assert!(md.contains("- exit code: 1"), "{md}");
    assert!(
        md.contains("```\npg_restore: warning: errors ignored on restore: 212\n```"),
        "{md}"
    );
    assert!(md.contains("not over when the journal ends"), "{md}");
    assert!(
        md.contains("not finished (the run crashed or is still going)"),
        "{md}"
    );
}

#[test]
fn a_resolver_table_reads_back_from_the_journal_as_written() {
    let records = dns_waiting();
    let last = records.last().expect("a record");
    let line = serde_json::to_string(last).expect("serialize");
    let back: Record = serde_json::from_str(&line).expect("deserialize");
    assert_eq!(&back, last, "{line}");
}
