//! Conditions the config already answers (`source_compose`, `target_compose`:
//! how each host runs the app). A step or command whose settled condition is
//! false is not in the plan at all, and one that holds loses the condition, so
//! a plan shows each host only the commands that will run there.

use crate::profile::{CommandSpec, OneOrMany, StepBody, StepSpec};

/// The answer to `expr` when it names a settled value; None otherwise.
fn answer(expr: &str, settled: &[(&str, bool)]) -> Option<bool> {
    let (negate, name) = match expr.strip_prefix('!') {
        Some(n) => (true, n.trim()),
        None => (false, expr.trim()),
    };
    settled
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v != negate)
}

/// The conditions left once the settled ones are answered; None when one of
/// them is false.
fn remaining(conds: Vec<String>, settled: &[(&str, bool)]) -> Option<Vec<String>> {
    let mut left = Vec::new();
    for c in conds {
        match answer(&c, settled) {
            Some(false) => return None,
            Some(true) => {}
            None => left.push(c),
        }
    }
    Some(left)
}

fn as_when(conds: Vec<String>) -> Option<OneOrMany> {
    match conds.len() {
        0 => None,
        1 => conds.into_iter().next().map(OneOrMany::One),
        _ => Some(OneOrMany::Many(conds)),
    }
}

fn settle_commands(cmds: Vec<CommandSpec>, settled: &[(&str, bool)]) -> Vec<CommandSpec> {
    cmds.into_iter()
        .filter_map(|c| match c {
            CommandSpec::Detailed {
                when: Some(w),
                argv,
                input,
                at,
                stdin,
                stdout,
            } => {
                let when = as_when(remaining(w.items(), settled)?);
                Some(CommandSpec::Detailed {
                    when,
                    argv,
                    input,
                    at,
                    stdin,
                    stdout,
                })
            }
            other => Some(other),
        })
        .collect()
}

/// The steps with every settled condition answered.
pub(crate) fn settle(steps: Vec<StepSpec>, settled: &[(&str, bool)]) -> Vec<StepSpec> {
    steps
        .into_iter()
        .filter_map(|mut s| {
            let left = remaining(s.conditions(), settled)?;
            s.when = as_when(left);
            if let StepBody::Command(c) = &mut s.body {
                c.commands = settle_commands(std::mem::take(&mut c.commands), settled);
            }
            if let Some(u) = &mut s.undo {
                u.commands = settle_commands(std::mem::take(&mut u.commands), settled);
            }
            Some(s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    const PROFILE: &str = r#"name = "t"
[defaults]
user = "u"
dir = "/d"
database = "db"
db_user = "u"
[[phases]]
id = "p"
title = "P"
[[steps]]
id = "precompile"
phase = "p"
title = "Precompile"
host = "target"
when = ["!target_compose", "es_enabled"]
commands = [["true"]]
[[steps]]
id = "dump"
phase = "p"
title = "Dump"
host = "source"
commands = [
  { argv = ["pg_dump", "-f", "x"], when = "!source_compose" },
  { argv = ["pg_dump"], at = "database", stdout = "x", when = "source_compose" },
  { argv = ["sync"], when = "db_file" },
  { argv = ["pg_dump", "-Fd"], when = ["db_parallel", "!source_compose"] },
]
"#;

    fn steps(source: bool, target: bool) -> Vec<StepSpec> {
        let p = Profile::parse("t.toml", PROFILE).expect("valid");
        settle(
            p.steps,
            &[("source_compose", source), ("target_compose", target)],
        )
    }

    fn argvs(s: &StepSpec) -> Vec<String> {
        let StepBody::Command(c) = &s.body else {
            panic!("a command step");
        };
        c.commands.iter().map(|c| c.argv().join(" ")).collect()
    }

    #[test]
    fn a_settled_false_condition_leaves_the_step_or_command_out() {
        let s = steps(true, true);
        assert_eq!(s.len(), 1, "precompile is left out on a compose target");
        assert_eq!(argvs(&s[0]), ["pg_dump", "sync"]);
        let StepBody::Command(c) = &s[0].body else {
            panic!("a command step");
        };
        assert_eq!(
            c.commands.len(),
            2,
            "a false condition in a list leaves it out"
        );
        let s = steps(false, false);
        assert_eq!(
            s[0].conditions(),
            ["es_enabled"],
            "the settled one is answered"
        );
        assert_eq!(argvs(&s[1]), ["pg_dump -f x", "sync", "pg_dump -Fd"]);
        let StepBody::Command(c) = &s[1].body else {
            panic!("a command step");
        };
        assert!(c.commands[0].conditions().is_empty());
        assert_eq!(
            c.commands[1].conditions(),
            ["db_file"],
            "unsettled ones stay"
        );
    }
}
