//! The downtime a rehearsal predicts for the real night, worked out the way
//! the run will spend it: the real run's downtime steps in their order, each
//! with the duration the rehearsal measured or, for a step a rehearsal must
//! not run (stopping the old services, Redis, starting the new ones), an
//! estimate measured without harm; steps that run beside another (`beside`)
//! overlap it, as the engine runs them. Pure: the folds and the tests call it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One step of the real run's downtime window, as a rehearsal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStep {
    pub id: String,
    /// The step whose start this one starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beside: Option<String>,
    /// For a step the rehearsal does not run: what it is expected to take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// `None` when nothing could be measured.
    pub ms: Option<u64>,
    /// Where the figure comes from, or why there is none.
    pub how: String,
    /// The figure leaves out part of what the step does (an app's boot).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_least: bool,
}

/// Where a part's duration comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Basis {
    /// The rehearsal ran the step.
    Measured,
    /// The rehearsal left the step out (its condition): so will the run.
    Skipped,
    Estimated {
        how: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        at_least: bool,
    },
    Unknown {
        how: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub step: String,
    pub ms: u64,
    pub basis: Basis,
    /// Runs beside this step, so only what it takes beyond it counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beside: Option<String>,
    /// How much this step adds to the downtime (less than `ms` when it
    /// overlaps another).
    pub adds_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    pub total_ms: u64,
    pub parts: Vec<Part>,
    /// How the database moves in the rehearsal, and so in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_move: Option<String>,
}

impl Prediction {
    /// Parts with no figure: the total is at least this much.
    pub fn unknown(&self) -> Vec<&Part> {
        self.parts
            .iter()
            .filter(|p| matches!(p.basis, Basis::Unknown { .. }))
            .collect()
    }

    /// The real downtime may be longer than the total: a part has no figure,
    /// or a figure that leaves something out.
    pub(crate) fn open_ended(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p.basis,
                Basis::Unknown { .. } | Basis::Estimated { at_least: true, .. }
            )
        })
    }
}

/// The prediction a real run carries from the last rehearsal of the same move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RehearsalPrediction {
    /// The rehearsal's run id.
    pub rehearsal: String,
    pub journal: String,
    pub prediction: Prediction,
}

/// What the rehearsal says about one step of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Ran(u64),
    Skipped,
    /// The rehearsal has no such step (or it did not finish).
    NotRun,
}

/// Walks the window as the engine does: a step starts when the one before it
/// at its place has finished; a step beside another starts with it and is
/// waited for at its own place.
pub(crate) fn predict(
    window: &[WindowStep],
    seen: impl Fn(&str) -> Seen,
    db_move: Option<String>,
) -> Prediction {
    let mut t: u64 = 0;
    let mut started: BTreeMap<&str, u64> = BTreeMap::new();
    let mut parts = Vec::new();
    for step in window {
        let (ms, basis) = match (seen(&step.id), &step.estimate) {
            (Seen::Ran(ms), _) => (ms, Basis::Measured),
            (Seen::Skipped, _) => (0, Basis::Skipped),
            (
                Seen::NotRun,
                Some(Estimate {
                    ms: Some(ms),
                    how,
                    at_least,
                }),
            ) => (
                *ms,
                Basis::Estimated {
                    how: how.clone(),
                    at_least: *at_least,
                },
            ),
            (Seen::NotRun, Some(Estimate { ms: None, how, .. })) => {
                (0, Basis::Unknown { how: how.clone() })
            }
            (Seen::NotRun, None) => (
                0,
                Basis::Unknown {
                    how: "the rehearsal neither ran nor estimated it".into(),
                },
            ),
        };
        let before = t;
        match step.beside.as_deref().and_then(|l| started.get(l).copied()) {
            Some(leader_start) => t = t.max(leader_start + ms),
            None => {
                started.insert(step.id.as_str(), t);
                t += ms;
            }
        }
        parts.push(Part {
            step: step.id.clone(),
            ms,
            basis,
            beside: step.beside.clone(),
            adds_ms: t - before,
        });
    }
    Prediction {
        total_ms: t,
        parts,
        db_move,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, beside: Option<&str>, estimate: Option<(Option<u64>, &str)>) -> WindowStep {
        WindowStep {
            id: id.into(),
            beside: beside.map(Into::into),
            estimate: estimate.map(|(ms, how)| Estimate {
                ms,
                how: how.into(),
                at_least: false,
            }),
        }
    }

    /// The Mastodon window as the lab's benchmark ran it: the final media
    /// pass (10.2 s) runs beside the dump and is hidden behind the database
    /// move (16.5 s); adding it up would predict 27 s.
    #[test]
    fn steps_beside_the_database_move_overlap_it() {
        let window = [
            step("stop-source", None, Some((Some(200), "systemd"))),
            step("dump", None, None),
            step("move-dump-dir", None, None),
            step("restore", None, None),
            step("verify-db", None, None),
            step("final-media", Some("dump"), None),
            step("copy-env", Some("dump"), None),
            step("redis", Some("dump"), Some((Some(800), "BGSAVE"))),
            step("start-target", None, Some((Some(600), "systemd"))),
            step("health", None, None),
            step("public-health", None, Some((None, "one request"))),
        ];
        let ran = |id: &str| match id {
            "dump" => Seen::Ran(3500),
            "move-dump-dir" => Seen::Ran(700),
            "restore" => Seen::Ran(11800),
            "verify-db" => Seen::Ran(500),
            "final-media" => Seen::Ran(10200),
            "copy-env" => Seen::Ran(100),
            "health" => Seen::Ran(100),
            _ => Seen::NotRun,
        };
        let p = predict(&window, ran, Some("parallel".into()));
        assert_eq!(p.total_ms, 200 + 3500 + 700 + 11800 + 500 + 600 + 100);
        let adds: Vec<(&str, u64)> = p
            .parts
            .iter()
            .map(|x| (x.step.as_str(), x.adds_ms))
            .collect();
        assert_eq!(adds[5], ("final-media", 0));
        assert_eq!(adds[7], ("redis", 0));
        assert_eq!(p.unknown().len(), 1);
        assert_eq!(
            p.parts[0].basis,
            Basis::Estimated {
                how: "systemd".into(),
                at_least: false
            }
        );
        assert!(p.open_ended());
    }

    /// A small database: the media pass outlasts the database move, and the
    /// downtime waits for it at its place.
    #[test]
    fn a_step_beside_that_outlasts_its_leader_lengthens_the_downtime() {
        let window = [
            step("dump", None, None),
            step("restore", None, None),
            step("final-media", Some("dump"), None),
            step("start", None, Some((Some(100), "x"))),
        ];
        let ran = |id: &str| match id {
            "dump" => Seen::Ran(1000),
            "restore" => Seen::Ran(1000),
            "final-media" => Seen::Ran(5000),
            _ => Seen::NotRun,
        };
        let p = predict(&window, ran, None);
        assert_eq!(p.total_ms, 5100);
        assert_eq!(p.parts[2].adds_ms, 3000);
    }

    /// What runs beside a skipped step starts at its place, as in the engine
    /// (a stream has no separate dump step).
    #[test]
    fn a_skipped_leader_still_starts_its_companions() {
        let window = [
            step("stop", None, Some((Some(100), "x"))),
            step("dump", None, None),
            step("restore", None, None),
            step("final-media", Some("dump"), None),
        ];
        let ran = |id: &str| match id {
            "dump" => Seen::Skipped,
            "restore" => Seen::Ran(2000),
            "final-media" => Seen::Ran(500),
            _ => Seen::NotRun,
        };
        let p = predict(&window, ran, None);
        assert_eq!(p.total_ms, 2100);
        assert_eq!(p.parts[1].basis, Basis::Skipped);
    }
}
