use super::*;
use EngineCommand as C;

fn shape(id: &str) -> Shape {
    Shape {
        id: id.into(),
        ..Shape::default()
    }
}

/// preflight, stop (downtime starts, undoable), dump, restore (asks),
/// media (optional), health (downtime ends), disable.
fn checklist() -> Vec<Shape> {
    vec![
        Shape {
            preflight: true,
            ..shape("preflight")
        },
        Shape {
            downtime: Some(DowntimeMark::Start),
            undo: true,
            ..shape("stop")
        },
        shape("dump"),
        Shape {
            confirm: true,
            ..shape("restore")
        },
        Shape {
            optional: true,
            ..shape("media")
        },
        Shape {
            downtime: Some(DowntimeMark::End),
            ..shape("health")
        },
        shape("disable"),
    ]
}

fn ok() -> StepOutcome {
    StepOutcome::Succeeded
}

fn failed() -> StepOutcome {
    StepOutcome::failed("exit 1")
}

/// What the driver answers for each effect, given the scripted parts:
/// how each step runs (in order of runs) and each command awaited.
#[derive(Default)]
struct Script {
    runs: Vec<(usize, StepOutcome, Option<bool>)>,
    commands: Vec<Option<EngineCommand>>,
    beside: Vec<(usize, StepOutcome)>,
    skip: Vec<usize>,
}

/// Drives the policy to its end, answering as the script says; returns
/// every effect, shortened to text, and the end.
fn drive(p: &mut Policy, mut sc: Script) -> (Vec<String>, Effect) {
    let mut input = Input::Next;
    let mut seen = Vec::new();
    for _ in 0..200 {
        let e = p.next(input);
        input = match &e {
            Effect::End { .. } => return (seen, e),
            Effect::Collect(i) => {
                seen.push(format!("collect {i}"));
                let r = sc
                    .beside
                    .iter()
                    .position(|(j, _)| j == i)
                    .map(|k| sc.beside.remove(k).1);
                Input::Collected(r)
            }
            Effect::WaitForBesides => {
                seen.push("wait besides".into());
                Input::Next
            }
            Effect::CheckConditions(i) => Input::Conditions(if sc.skip.contains(i) {
                Ok(Some("only runs if x".into()))
            } else {
                Ok(None)
            }),
            Effect::Report(i, o, _) => {
                let what = match o {
                    StepOutcome::Succeeded => "ok".to_string(),
                    StepOutcome::Skipped { reason } => format!("skipped ({reason})"),
                    StepOutcome::Failed { .. } => "failed".to_string(),
                };
                seen.push(format!("{i} {what}"));
                Input::Next
            }
            Effect::StartBeside(i) => {
                seen.push(format!("beside of {i}"));
                Input::Next
            }
            Effect::AskConfirm(i) => {
                seen.push(format!("ask {i}"));
                Input::Next
            }
            Effect::Await(i, w) => {
                seen.push(format!("await {i} {w:?}"));
                Input::Command(sc.commands.remove(0))
            }
            Effect::Run { step, start_beside } => {
                seen.push(format!(
                    "run {step}{}",
                    if *start_beside { "" } else { " again" }
                ));
                let k = sc
                    .runs
                    .iter()
                    .position(|(j, ..)| j == step)
                    .expect("a scripted run");
                let (_, outcome, stopped) = sc.runs.remove(k);
                Input::Ran {
                    outcome,
                    ms: 5,
                    stopped,
                }
            }
            Effect::AfterFailure(i) => {
                seen.push(format!("after failure {i}"));
                Input::Next
            }
            Effect::Say(i, line) => {
                seen.push(format!("say {i}: {line}"));
                Input::Next
            }
        };
    }
    panic!("the policy never ended: {seen:?}");
}

fn all_ok(n: usize) -> Vec<(usize, StepOutcome, Option<bool>)> {
    (0..n).map(|i| (i, ok(), None)).collect()
}

fn end_of(e: &Effect) -> (RunOutcome, bool, Window, bool) {
    match e {
        Effect::End {
            outcome,
            rollback,
            window,
            run_finally,
        } => (outcome.clone(), *rollback, window.clone(), *run_finally),
        other => panic!("not an end: {other:?}"),
    }
}

fn policy(steps: Vec<Shape>, gated: bool, done: &[&str]) -> Policy {
    Policy::new(
        steps,
        gated,
        false,
        done.iter().map(|s| s.to_string()).collect(),
    )
}

#[test]
fn a_run_that_goes_well_confirms_and_succeeds() {
    let mut p = policy(checklist(), false, &[]);
    let (seen, end) = drive(
        &mut p,
        Script {
            runs: all_ok(7),
            commands: vec![Some(C::Confirm)],
            ..Script::default()
        },
    );
    assert_eq!(
        seen.join(" | "),
        "run 0 | 0 ok | run 1 | 1 ok | run 2 | 2 ok | ask 3 | await 3 Confirm | run 3 | 3 ok | run 4 | 4 ok | run 5 | 5 ok | run 6 | 6 ok"
    );
    let (outcome, rollback, window, finally) = end_of(&end);
    assert_eq!(outcome, RunOutcome::Succeeded);
    assert!(!rollback && !finally);
    assert!(window.started && window.ended);
    assert_eq!(
        window.rollback_skipped(true),
        Some("the new host is live: nothing is undone after that")
    );
}

/// After a failure: every command read the one way, in a table.
#[rstest::rstest]
#[case::retry_then_success(2, vec![Some(C::Retry)], "Succeeded", false)]
#[case::abort(2, vec![Some(C::Abort)], "Failed", false)]
#[case::rollback(2, vec![Some(C::Rollback)], "Failed", true)]
#[case::front_end_gone(2, vec![None], "Failed", false)]
#[case::skip_of_a_required_step_is_refused(2, vec![Some(C::Skip), Some(C::Confirm), Some(C::Abort)], "Failed", false)]
#[case::skip_of_an_optional_step(4, vec![Some(C::Skip)], "Incomplete", false)]
fn a_failed_step_waits_for_the_operator(
    #[case] failing: usize,
    #[case] commands: Vec<Option<EngineCommand>>,
    #[case] want: &str,
    #[case] want_rollback: bool,
) {
    let mut p = policy(checklist(), false, &[]);
    let mut runs = all_ok(7);
    runs.insert(failing, (failing, failed(), None));
    let refused = if failing == 4 {
        0
    } else {
        commands
            .iter()
            .filter(|c| matches!(c, Some(C::Skip | C::Confirm | C::Start)))
            .count()
    };
    let mut commands = commands;
    // restore asks first.
    commands.insert(
        if failing < 3 { commands.len() } else { 0 },
        Some(C::Confirm),
    );
    let (seen, end) = drive(
        &mut p,
        Script {
            runs,
            commands,
            ..Script::default()
        },
    );
    let (outcome, rollback, window, finally) = end_of(&end);
    let name = format!("{outcome:?}");
    assert!(name.starts_with(want), "{name}: {seen:?}");
    assert_eq!(rollback, want_rollback);
    assert!(
        seen.contains(&format!("after failure {failing}")),
        "{seen:?}"
    );
    assert!(seen.contains(&format!("{failing} failed")), "{seen:?}");
    if want == "Failed" {
        // Inside the downtime: a rollback would undo the stop.
        assert!(window.started && !window.ended);
        assert_eq!(window.undoable, vec![1]);
        assert!(finally, "the dump is removed after a failed run");
        assert_eq!(
            window.rollback_skipped(rollback),
            if rollback { None } else { Some("not needed") }
        );
    }
    if want == "Incomplete" {
        assert!(seen.contains(
            &"4 skipped (failed; skipped by the operator (the step is optional))".to_string()
        ));
    }
    // Every skip, confirm or start given to a required step that failed is
    // refused with a line saying so; an optional one is skipped instead.
    let says: Vec<&String> = seen.iter().filter(|s| s.starts_with("say")).collect();
    assert_eq!(says.len(), refused, "{seen:?}");
    for say in says {
        assert_eq!(
            say,
            &format!("say {failing}: step 'dump' is not optional: retry it or abort")
        );
    }
}

#[test]
fn a_retry_runs_the_step_again_without_its_companions() {
    let mut p = policy(checklist(), false, &[]);
    let mut runs = all_ok(7);
    runs.insert(2, (2, failed(), None));
    let (seen, end) = drive(
        &mut p,
        Script {
            runs,
            commands: vec![Some(C::Retry), Some(C::Confirm)],
            ..Script::default()
        },
    );
    assert_eq!(end_of(&end).0, RunOutcome::Succeeded);
    let s = seen.join(" | ");
    assert!(
        s.contains("run 2 | after failure 2 | 2 failed | await 2 Failure | run 2 again | 2 ok"),
        "{s}"
    );
}

#[test]
fn no_rollback_before_the_downtime_or_once_the_new_host_is_live() {
    // Preflight fails: nothing stopped, nothing to undo.
    let mut p = policy(checklist(), false, &[]);
    let (_, end) = drive(
        &mut p,
        Script {
            runs: vec![(0, failed(), None)],
            commands: vec![Some(C::Rollback)],
            ..Script::default()
        },
    );
    let (_, rollback, window, finally) = end_of(&end);
    assert!(rollback);
    assert_eq!(
        window.rollback_skipped(true),
        Some("nothing to undo: the old host's services were not stopped")
    );
    assert!(!finally, "nothing changed: nothing to clean up");
    // disable fails after health: live, nothing is undone.
    let mut p = policy(checklist(), false, &[]);
    let mut runs = all_ok(6);
    runs.push((6, failed(), None));
    let (_, end) = drive(
        &mut p,
        Script {
            runs,
            commands: vec![Some(C::Confirm), Some(C::Rollback)],
            ..Script::default()
        },
    );
    assert_eq!(
        end_of(&end).2.rollback_skipped(true),
        Some("the new host is live: nothing is undone after that")
    );
}

#[test]
fn stopped_while_running_ends_the_run_as_aborted() {
    let mut p = policy(checklist(), false, &[]);
    let (seen, end) = drive(
        &mut p,
        Script {
            runs: vec![(0, ok(), None), (1, ok(), None), (2, failed(), Some(true))],
            commands: vec![],
            ..Script::default()
        },
    );
    let (outcome, rollback, window, _) = end_of(&end);
    assert_eq!(
        outcome,
        RunOutcome::Aborted {
            step: Some("dump".into())
        }
    );
    assert!(rollback);
    assert_eq!(window.rollback_skipped(true), None);
    assert_eq!(seen.last().map(String::as_str), Some("2 failed"));
}

#[test]
fn a_gated_run_starts_each_step_when_told_and_a_declined_step_is_skipped() {
    let steps = vec![
        shape("a"),
        Shape {
            confirm: true,
            ..shape("b")
        },
        shape("c"),
    ];
    let mut p = policy(steps, true, &[]);
    let (seen, end) = drive(
        &mut p,
        Script {
            runs: vec![(0, ok(), None), (2, ok(), None)],
            commands: vec![
                Some(C::Confirm),
                Some(C::Start),
                Some(C::Start),
                Some(C::Skip),
                Some(C::Start),
            ],
            ..Script::default()
        },
    );
    assert_eq!(end_of(&end).0, RunOutcome::Succeeded);
    assert_eq!(
        seen.join(" | "),
        "await 0 Start | await 0 Start | run 0 | 0 ok | await 1 Start | ask 1 | await 1 Confirm | 1 skipped (declined by the operator) | await 2 Start | run 2 | 2 ok"
    );
    // Abort while waiting to start preflight: aborted there, nothing changed.
    let mut p = policy(
        vec![Shape {
            preflight: true,
            ..shape("a")
        }],
        true,
        &[],
    );
    let (_, end) = drive(
        &mut p,
        Script {
            runs: vec![],
            commands: vec![Some(C::Abort)],
            ..Script::default()
        },
    );
    assert_eq!(
        end_of(&end).0,
        RunOutcome::Aborted {
            step: Some("a".into())
        }
    );
    assert!(!end_of(&end).3, "nothing changed before the first step");
    // At a step that may change something, the finally steps clean up.
    let mut p = policy(vec![shape("a")], true, &[]);
    let (_, end) = drive(
        &mut p,
        Script {
            runs: vec![],
            commands: vec![Some(C::Rollback)],
            ..Script::default()
        },
    );
    assert!(end_of(&end).1 && end_of(&end).3);
}

#[test]
fn steps_beside_another_start_with_it_and_fail_at_their_own_place() {
    let steps = vec![
        Shape {
            downtime: Some(DowntimeMark::Start),
            undo: true,
            ..shape("stop")
        },
        shape("dump"),
        Shape {
            beside: Some("dump".into()),
            undo: true,
            ..shape("env")
        },
        shape("restore"),
        Shape {
            beside: Some("dump".into()),
            ..shape("redis")
        },
    ];
    // env ran beside and succeeded; redis failed beside: handled at its place.
    let mut p = policy(steps.clone(), false, &[]);
    let (seen, end) = drive(
        &mut p,
        Script {
            runs: vec![
                (0, ok(), None),
                (1, ok(), None),
                (3, ok(), None),
                (4, ok(), None),
            ],
            commands: vec![Some(C::Retry)],
            beside: vec![(2, ok()), (4, failed())],
            skip: vec![],
        },
    );
    assert_eq!(end_of(&end).0, RunOutcome::Succeeded);
    assert_eq!(
        seen.join(" | "),
        "run 0 | 0 ok | run 1 | 1 ok | collect 2 | run 3 | 3 ok | collect 4 | wait besides | after failure 4 | await 4 Failure | run 4 | 4 ok"
    );
    // Its undo counts from its start: a rollback after restore fails undoes env too.
    let mut p = policy(steps.clone(), false, &[]);
    let (_, end) = drive(
        &mut p,
        Script {
            runs: vec![(0, ok(), None), (1, ok(), None), (3, failed(), None)],
            commands: vec![Some(C::Rollback)],
            beside: vec![(2, ok()), (4, ok())],
            skip: vec![],
        },
    );
    assert_eq!(end_of(&end).2.undoable, vec![0, 2]);
    // A skipped leader still starts its companions at its place.
    let mut p = policy(steps, false, &[]);
    let (seen, _) = drive(
        &mut p,
        Script {
            runs: vec![(0, ok(), None), (3, ok(), None)],
            commands: vec![],
            beside: vec![(2, ok()), (4, ok())],
            skip: vec![1],
        },
    );
    assert!(
        seen.join(" | ")
            .contains("1 skipped (only runs if x) | beside of 1"),
        "{seen:?}"
    );
}

#[test]
fn a_resumed_run_goes_on_at_the_first_unfinished_step() {
    // stop and dump were done: not run again, but the window knows the
    // downtime started and the stop can be undone; preflight runs again.
    let mut p = policy(checklist(), false, &["preflight", "stop", "dump"]);
    let (seen, end) = drive(
        &mut p,
        Script {
            runs: vec![(0, ok(), None), (3, failed(), None)],
            commands: vec![Some(C::Confirm), Some(C::Rollback)],
            ..Script::default()
        },
    );
    assert!(seen[0] == "run 0" && seen[2] == "ask 3", "{seen:?}");
    let (outcome, rollback, window, _) = end_of(&end);
    assert_eq!(
        outcome,
        RunOutcome::Failed {
            step: "restore".into()
        }
    );
    assert!(rollback);
    assert_eq!(window.undoable, vec![1]);
    assert_eq!(window.rollback_skipped(true), None);
    // Everything done but the last step: the window is already over.
    let done = ["preflight", "stop", "dump", "restore", "media", "health"];
    let mut p = policy(checklist(), false, &done);
    let (_, end) = drive(
        &mut p,
        Script {
            runs: vec![(0, ok(), None), (6, ok(), None)],
            commands: vec![],
            ..Script::default()
        },
    );
    let window = end_of(&end).2;
    assert!(window.started && window.ended);
}

#[test]
fn a_broken_condition_fails_the_run_before_the_step() {
    let mut p = policy(vec![shape("a"), shape("b")], false, &[]);
    let e = p.next(Input::Next);
    assert_eq!(e, Effect::CheckConditions(0));
    let e = p.next(Input::Conditions(Err("condition 'x': unknown".into())));
    assert!(matches!(
        e,
        Effect::Report(0, StepOutcome::Failed { .. }, 0)
    ));
    let (outcome, ..) = end_of(&p.next(Input::Next));
    assert_eq!(outcome, RunOutcome::Failed { step: "a".into() });
    // Asked again after the end, it says the same end.
    assert_eq!(
        end_of(&p.next(Input::Next)).0,
        RunOutcome::Failed { step: "a".into() }
    );
}
