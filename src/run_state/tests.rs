use std::collections::BTreeMap;

use super::*;
use crate::events::RunMode;

fn info(id: &str, downtime: Option<DowntimeMark>) -> StepInfo {
    StepInfo {
        id: id.into(),
        phase: "downtime".into(),
        phase_title: "Downtime".into(),
        title: id.into(),
        why: String::new(),
        kind: StepKind::Command,
        hosts: vec!["old".into()],
        user: None,
        confirm: None,
        downtime,
        in_downtime: false,
        optional: false,
        when: vec![],
        otherwise: None,
        commands: vec![],
        creates_database: false,
    }
}

fn run_started(mode: RunMode, steps: Vec<StepInfo>) -> EngineEvent {
    EngineEvent::RunStarted {
        run_id: "r".into(),
        mode,
        profile: "p".into(),
        domain: "d".into(),
        source: "old".into(),
        target: "new".into(),
        steps,
        resumed: Vec::new(),
    }
}

fn started(step: &str) -> EngineEvent {
    EngineEvent::StepStarted {
        step: step.into(),
        commands: vec![],
    }
}

fn finished(step: &str, outcome: StepOutcome) -> EngineEvent {
    EngineEvent::StepFinished {
        step: step.into(),
        outcome,
        duration_ms: 1,
    }
}

fn at(secs: i64, event: EngineEvent) -> Record {
    Record {
        ts: jiff::Timestamp::from_second(secs).expect("valid"),
        event,
    }
}

/// Every built-in profile and a user's own, with and without `[dns]`:
/// the downtime ends at the first step that shows the new host serving,
/// the pinned public check when it runs, the local health check when not.
#[rstest::rstest]
#[case::mastodon_with_dns("mastodon", true, "public-health")]
#[case::mastodon_without_dns("mastodon", false, "health")]
#[case::misskey_with_dns("misskey", true, "public-health")]
#[case::misskey_without_dns("misskey", false, "health")]
#[case::generic_with_dns("generic", true, "public-health")]
#[case::generic_without_dns("generic", false, "health")]
#[case::own_profile_with_dns("pleasanter.toml", true, "public-health")]
#[case::own_profile_without_dns("pleasanter.toml", false, "health")]
fn the_downtime_ends_where_the_new_host_is_shown_serving(
    #[case] profile: &str,
    #[case] dns: bool,
    #[case] end: &str,
) {
    let profile = if profile.ends_with(".toml") {
        format!("{}/assets/profiles/{profile}", env!("CARGO_MANIFEST_DIR"))
    } else {
        profile.to_string()
    };
    let mut text = format!(
        "profile = \"{profile}\"\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n"
    );
    if profile == "generic" {
        text.push_str("user = \"app\"\ndir = \"/srv/app\"\ndatabase = \"app\"\ndb_user = \"app\"\nservices = [\"app\"]\n[vars]\nhealth_url = \"http://127.0.0.1:5000/\"\n");
    }
    if dns {
        text.push_str("[dns]\nexpect = [\"203.0.113.7\"]\n");
    }
    let config = crate::config::Config::parse(std::path::Path::new("/x/migration.toml"), &text)
        .expect("config");
    let plan = crate::plan::Plan::build(&config).expect("plan");
    let mut records = vec![at(
        0,
        EngineEvent::RunStarted {
            run_id: "r".into(),
            mode: RunMode::Run,
            profile: plan.profile_name.clone(),
            domain: "a.example".into(),
            source: "old".into(),
            target: "new".into(),
            steps: crate::steps::describe::infos(&plan),
            resumed: Vec::new(),
        },
    )];
    let mut t = 0;
    let mut finished_at = BTreeMap::new();
    for step in &plan.steps {
        // As the health step does without [dns] expect.
        let outcome =
            if matches!(&step.body, crate::profile::StepBody::Health(h) if h.pinned) && !dns {
                StepOutcome::Skipped {
                    reason: "no [dns] expect addresses in the config".into(),
                }
            } else {
                StepOutcome::Succeeded
            };
        t += 1;
        records.push(at(
            t,
            EngineEvent::StepStarted {
                step: step.id.clone(),
                commands: vec![],
            },
        ));
        t += 1;
        records.push(at(
            t,
            EngineEvent::StepFinished {
                step: step.id.clone(),
                outcome,
                duration_ms: 1000,
            },
        ));
        finished_at.insert(step.id.clone(), t);
    }
    records.push(at(
        t + 1,
        EngineEvent::RunFinished {
            outcome: RunOutcome::Succeeded,
            duration_ms: 1,
        },
    ));
    let state = RunState::from_records(&records);
    assert_eq!(state.downtime_end_step.as_deref(), Some(end));
    assert_eq!(
        state.downtime_ended,
        Some(jiff::Timestamp::from_second(finished_at[end]).expect("ts"))
    );
    assert!(state.downtime_started.is_some());
}

/// A rehearsal's journal: its own steps measured, the Forecast with the
/// real run's window; the prediction overlaps what runs beside the dump.
#[test]
fn a_rehearsal_predicts_from_its_forecast() {
    use crate::prediction::{Basis, Estimate, WindowStep};
    let mut media = info("final-media", None);
    media.kind = StepKind::Rsync;
    let w = |id: &str, beside: Option<&str>, estimate: Option<Option<u64>>| WindowStep {
        id: id.into(),
        beside: beside.map(Into::into),
        estimate: estimate.map(|ms| Estimate {
            ms,
            how: "test".into(),
            at_least: false,
        }),
    };
    let mut records = vec![
        at(
            0,
            run_started(
                RunMode::Rehearse,
                vec![info("dump", None), info("restore", None), media],
            ),
        ),
        at(
            1,
            EngineEvent::Forecast {
                step: "preflight".into(),
                window: vec![
                    w("stop-source", None, Some(Some(300))),
                    w("dump", None, None),
                    w("restore", None, None),
                    w("final-media", Some("dump"), None),
                    w("post-commands", None, Some(None)),
                    w("start-target", None, Some(Some(700))),
                ],
                db_move: "parallel".into(),
            },
        ),
    ];
    for (id, ms) in [("dump", 2000), ("restore", 5000), ("final-media", 4000)] {
        records.push(at(2, started(id)));
        records.push(at(
            3,
            EngineEvent::StepFinished {
                step: id.into(),
                outcome: StepOutcome::Succeeded,
                duration_ms: ms,
            },
        ));
    }
    let p = RunState::from_records(&records)
        .predicted_downtime()
        .expect("prediction");
    assert_eq!(p.total_ms, 300 + 2000 + 5000 + 700);
    assert_eq!(p.unknown().len(), 1);
    assert_eq!(p.db_move.as_deref(), Some("parallel"));
    let media = p
        .parts
        .iter()
        .find(|x| x.step == "final-media")
        .expect("part");
    assert_eq!(
        (media.ms, media.adds_ms, &media.basis),
        (4000, 0, &Basis::Measured)
    );
}

/// The wizard's pauses inside the downtime are the time no step ran;
/// steps beside each other count once.
#[test]
fn idle_time_is_the_downtime_no_step_covered() {
    let records = vec![
        at(
            0,
            run_started(
                RunMode::Run,
                vec![
                    info("stop", Some(DowntimeMark::Start)),
                    info("dump", None),
                    info("media", None),
                    info("start", Some(DowntimeMark::End)),
                ],
            ),
        ),
        at(10, started("stop")),
        at(12, finished("stop", StepOutcome::Succeeded)),
        // 5 s waiting for the admin to confirm the dump.
        at(17, started("dump")),
        at(17, started("media")),
        at(20, finished("media", StepOutcome::Succeeded)),
        at(25, finished("dump", StepOutcome::Succeeded)),
        at(26, started("start")),
        at(30, finished("start", StepOutcome::Succeeded)),
    ];
    let state = RunState::from_records(&records);
    assert_eq!(state.downtime_idle_ms(), Some(6000));
}

/// A health check that fails and is retried proves nothing until it
/// answers; one that never answers leaves the downtime open.
#[test]
fn only_a_health_check_that_answered_ends_the_downtime() {
    let mut health = info("health", None);
    health.kind = StepKind::Health;
    let records = vec![
        at(
            0,
            run_started(
                RunMode::Run,
                vec![
                    info("stop", Some(DowntimeMark::Start)),
                    health,
                    info("public", Some(DowntimeMark::End)),
                ],
            ),
        ),
        at(1, started("stop")),
        at(2, finished("stop", StepOutcome::Succeeded)),
        at(3, started("health")),
        at(4, finished("health", StepOutcome::failed("503"))),
        at(5, started("public")),
        at(
            6,
            finished(
                "public",
                StepOutcome::Skipped {
                    reason: "no [dns]".into(),
                },
            ),
        ),
    ];
    let state = RunState::from_records(&records);
    assert_eq!(state.downtime_ended, None);
    assert_eq!(state.downtime_end_step, None);
}

#[test]
fn downtime_runs_from_stop_to_health() {
    let records = vec![
        at(
            0,
            EngineEvent::RunStarted {
                run_id: "r".into(),
                mode: RunMode::Run,
                profile: "mastodon".into(),
                domain: "d".into(),
                source: "old".into(),
                target: "new".into(),
                steps: vec![
                    info("stop", Some(DowntimeMark::Start)),
                    info("move", None),
                    info("health", Some(DowntimeMark::End)),
                ],
                resumed: Vec::new(),
            },
        ),
        at(
            10,
            EngineEvent::StepStarted {
                step: "stop".into(),
                commands: vec![],
            },
        ),
        at(
            11,
            EngineEvent::StepFinished {
                step: "stop".into(),
                outcome: StepOutcome::Succeeded,
                duration_ms: 1000,
            },
        ),
        at(
            12,
            EngineEvent::StepStarted {
                step: "move".into(),
                commands: vec![],
            },
        ),
        at(
            13,
            EngineEvent::Progress {
                step: "move".into(),
                bytes: 500,
                total: Some(500),
            },
        ),
        at(
            14,
            EngineEvent::StepFinished {
                step: "move".into(),
                outcome: StepOutcome::Succeeded,
                duration_ms: 2000,
            },
        ),
        at(
            15,
            EngineEvent::StepStarted {
                step: "health".into(),
                commands: vec![],
            },
        ),
        at(
            70,
            EngineEvent::StepFinished {
                step: "health".into(),
                outcome: StepOutcome::Succeeded,
                duration_ms: 55000,
            },
        ),
        at(
            80,
            EngineEvent::RunFinished {
                outcome: RunOutcome::Succeeded,
                duration_ms: 80000,
            },
        ),
    ];
    let s = RunState::from_records(&records);
    assert_eq!(
        s.downtime(jiff::Timestamp::now()),
        Some(jiff::SignedDuration::from_secs(60))
    );
    assert_eq!(s.bytes_moved(), 500);
    assert_eq!(
        s.step("health").map(|x| x.status),
        Some(StepStatus::Succeeded)
    );
    assert_eq!(s.outcome, Some(RunOutcome::Succeeded));
}

#[test]
fn output_is_bounded() {
    let mut log = OutputLog::default();
    for i in 0..(OUTPUT_LINES + 5) {
        log.push(Stream::Stdout, i.to_string());
    }
    assert_eq!(log.lines.len(), OUTPUT_LINES);
    assert_eq!(log.dropped, 5);
    assert_eq!(log.lines.front().map(|l| l.1.as_str()), Some("5"));
}

/// The Mastodon checklist, failed at 'restore', then (maybe) rolled back
/// and cleaned up: where a resume picks up.
fn failed_at_restore(
    rolled_back: bool,
    cleaned_up: bool,
) -> (RunState, Vec<crate::profile::StepSpec>) {
    let config = crate::config::Config::parse(
        std::path::Path::new("/x/migration.toml"),
        "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\n",
    )
    .expect("config");
    let plan = crate::plan::Plan::build(&config).expect("plan");
    let mut records = vec![at(
        0,
        EngineEvent::RunStarted {
            run_id: "r1".into(),
            mode: RunMode::Run,
            profile: "mastodon".into(),
            domain: "a.example".into(),
            source: "old".into(),
            target: "new".into(),
            steps: crate::steps::describe::infos(&plan),
            resumed: Vec::new(),
        },
    )];
    let mut finish = |step: &str, outcome: StepOutcome| {
        records.push(at(
            1,
            EngineEvent::StepStarted {
                step: step.into(),
                commands: vec![],
            },
        ));
        records.push(at(
            2,
            EngineEvent::StepFinished {
                step: step.into(),
                outcome,
                duration_ms: 5,
            },
        ));
    };
    for s in [
        "preflight",
        "prepare",
        "presync-media",
        "stage-env",
        "precompile",
        "stop-source",
        "dump",
        "move-dump",
        "move-dump-dir",
    ] {
        finish(s, StepOutcome::Succeeded);
    }
    finish("restore", StepOutcome::failed("pg_restore was killed"));
    if rolled_back {
        finish(crate::plan::ROLLBACK, StepOutcome::Succeeded);
    }
    if cleaned_up {
        finish("cleanup", StepOutcome::Succeeded);
    }
    (RunState::from_records(&records), plan.steps)
}

/// final-media runs beside the dump and fails early; the run goes on with
/// the restore and only stops for a decision when it reaches final-media.
#[test]
fn a_step_beside_another_awaits_a_decision_only_at_its_place() {
    let (mut state, _) = failed_at_restore(false, false);
    let event = |secs: i64, event: EngineEvent| at(secs, event);
    let started = |step: &str| EngineEvent::StepStarted {
        step: step.into(),
        commands: vec![],
    };
    let finished = |step: &str, outcome: StepOutcome| EngineEvent::StepFinished {
        step: step.into(),
        outcome,
        duration_ms: 5,
    };
    for r in [
        event(10, started("restore")),
        event(10, started("final-media")),
        event(11, finished("final-media", StepOutcome::failed("cut"))),
    ] {
        state.apply(&r);
    }
    assert_eq!(state.waiting(), Waiting::Running("restore".into()));
    state.apply(&event(12, finished("restore", StepOutcome::Succeeded)));
    state.apply(&event(13, started("verify-db")));
    assert_eq!(state.waiting(), Waiting::Running("verify-db".into()));
    state.apply(&event(14, finished("verify-db", StepOutcome::Succeeded)));
    assert_eq!(state.waiting(), Waiting::Decision("final-media".into()));
}

#[test]
fn resume_picks_up_where_the_data_still_is() {
    // Left as it was (--on-failure stay --keep-dump): the restore again.
    let (state, steps) = failed_at_restore(false, false);
    let p = resume_point(&state, &steps).expect("resumable");
    assert_eq!((p.run_id.as_str(), p.first.as_str()), ("r1", "restore"));
    assert!(p.done.contains("dump") && !p.done.contains("preflight"));
    // The dump was removed: dump and move it again, source still stopped.
    let (state, steps) = failed_at_restore(false, true);
    assert_eq!(
        resume_point(&state, &steps).expect("resumable").first,
        "prepare"
    );
    // The old host served again after the rollback: from the stop on,
    // everything again; the pre-sync stays done.
    let (state, steps) = failed_at_restore(true, false);
    let p = resume_point(&state, &steps).expect("resumable");
    assert_eq!(p.first, "stop-source");
    assert!(p.done.contains("presync-media") && !p.done.contains("dump"));
}
