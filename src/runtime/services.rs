//! The services of a host: systemd units through `systemctl`, or the
//! services of a compose stack through compose and `docker update`, as root.
//! On a compose stack a service is only ever stopped, started or created
//! (`up`); nothing here removes a container or a volume.

use super::compose::Project;
use crate::profile::ServiceAction;
use crate::remote::{RemoteCommand, RunAs};

const TOOL: &str = "systemctl";

/// `systemctl VERB UNIT` (start, stop, is-active, ...).
pub fn verb(verb: &str, unit: &str) -> RemoteCommand {
    RemoteCommand::new(RunAs::Root, [TOOL, verb, unit])
}

/// `systemctl show -p LoadState --value UNIT`: "loaded", "masked" or "not-found".
pub(crate) fn load_state(unit: &str) -> RemoteCommand {
    RemoteCommand::new(
        RunAs::Root,
        [TOOL, "show", "-p", "LoadState", "--value", unit],
    )
}

/// `systemctl show --property=A,B -- UNITS`: a block of KEY=value per unit.
pub fn show(props: &[&str], units: &[String]) -> RemoteCommand {
    let mut argv = vec![
        TOOL.to_string(),
        "show".into(),
        format!("--property={}", props.join(",")),
        "--".into(),
    ];
    argv.extend(units.iter().cloned());
    RemoteCommand::new(RunAs::Root, argv)
}

/// `systemctl is-enabled -- UNITS`: changes nothing.
pub(crate) fn is_enabled(units: &[String]) -> RemoteCommand {
    let mut argv = vec![TOOL.to_string(), "is-enabled".into(), "--".into()];
    argv.extend(units.iter().cloned());
    RemoteCommand::new(RunAs::Root, argv)
}

/// Whether a profile's command is a service manager's (its units are then
/// what `units_of` names).
pub(crate) fn is_service_command(argv: &[String]) -> bool {
    argv.first().map(String::as_str) == Some(TOOL)
}

/// How a host runs the app's services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    /// A compose project, with each service's restart policy as preflight
    /// found it (what a rollback puts back).
    Compose(Project, std::collections::BTreeMap<String, String>),
}

impl Manager {
    fn systemctl(verb: &str, names: &[String]) -> RemoteCommand {
        let mut argv = vec![TOOL.to_string(), verb.to_string()];
        argv.extend(names.iter().cloned());
        RemoteCommand::new(RunAs::Root, argv)
    }

    fn compose(p: &Project, args: &[&str], names: &[String]) -> RemoteCommand {
        let mut argv = p.argv(args);
        argv.extend(names.iter().cloned());
        RemoteCommand::new(RunAs::Root, argv)
    }

    /// Stops them; they stay as they are (a compose container is not removed).
    pub fn stop(&self, names: &[String]) -> Vec<RemoteCommand> {
        match self {
            Manager::Systemd => vec![Manager::systemctl("stop", names)],
            Manager::Compose(p, _) => vec![Manager::compose(p, &["stop"], names)],
        }
    }

    /// Starts what exists.
    pub fn start(&self, names: &[String]) -> Vec<RemoteCommand> {
        match self {
            Manager::Systemd => vec![Manager::systemctl("start", names)],
            Manager::Compose(p, _) => vec![Manager::compose(p, &["start"], names)],
        }
    }

    /// Makes them run now and after every reboot: systemd unmasks, enables
    /// and starts the units; compose creates and starts the containers (their
    /// restart policy is the file's).
    pub fn go_live(&self, names: &[String]) -> Vec<RemoteCommand> {
        match self {
            Manager::Systemd => ["unmask", "enable", "start"]
                .iter()
                .map(|v| Manager::systemctl(v, names))
                .collect(),
            Manager::Compose(p, _) => vec![Manager::compose(p, &["up", "-d"], names)],
        }
    }

    /// Keeps them from starting by themselves again (after a reboot, or a
    /// restart of Docker): systemd disables the units; on a compose stack
    /// every container of the project gets the restart policy `no`.
    pub fn disable(&self, names: &[String]) -> Vec<RemoteCommand> {
        match self {
            Manager::Systemd => vec![Manager::systemctl("disable", names)],
            Manager::Compose(p, _) => vec![restart_policy(p, "no", &[])],
        }
    }

    /// What a `services` step runs.
    pub fn act(&self, action: ServiceAction, names: &[String]) -> Vec<RemoteCommand> {
        match (action, self) {
            // A stopped compose stack must not come back by itself (a reboot,
            // a restart of Docker) while the new host takes over.
            (ServiceAction::Stop, Manager::Compose(p, _)) => {
                let mut cmds = vec![restart_policy(p, "no", &[])];
                cmds.extend(self.stop(names));
                cmds
            }
            (ServiceAction::Stop, Manager::Systemd) => self.stop(names),
            (ServiceAction::Start, _) => self.start(names),
            (ServiceAction::GoLive, _) => self.go_live(names),
            (ServiceAction::Disable, _) => self.disable(names),
            (ServiceAction::Mask, Manager::Systemd) => vec![Manager::systemctl("mask", names)],
            (ServiceAction::Mask, Manager::Compose(p, _)) => {
                let mut cmds = vec![restart_policy(p, "no", names)];
                cmds.extend(self.stop(names));
                cmds
            }
        }
    }

    /// What a rollback runs to undo `action`; nothing for what needs no undo.
    pub fn reverse(&self, action: ServiceAction, names: &[String]) -> Vec<RemoteCommand> {
        match (action, self) {
            (ServiceAction::Stop, Manager::Systemd) => self.start(names),
            (ServiceAction::Stop, Manager::Compose(p, policies)) => {
                let mut by_policy: std::collections::BTreeMap<&str, Vec<String>> =
                    std::collections::BTreeMap::new();
                for (service, policy) in policies {
                    by_policy
                        .entry(policy.as_str())
                        .or_default()
                        .push(service.clone());
                }
                let mut cmds: Vec<RemoteCommand> = by_policy
                    .into_iter()
                    .filter(|(policy, _)| *policy != "no")
                    .map(|(policy, services)| restart_policy(p, policy, &services))
                    .collect();
                cmds.extend(self.start(names));
                cmds
            }
            (ServiceAction::GoLive, Manager::Systemd) => {
                let mut argv = vec![TOOL.to_string(), "disable".into(), "--now".into()];
                argv.extend(names.iter().cloned());
                vec![RemoteCommand::new(RunAs::Root, argv)]
            }
            (ServiceAction::GoLive, Manager::Compose(p, _)) => {
                let mut cmds = vec![restart_policy(p, "no", names)];
                cmds.extend(self.stop(names));
                cmds
            }
            _ => Vec::new(),
        }
    }
}

/// `docker update --restart=POLICY` on the containers of `services` (every
/// container of the project when empty), found by compose's labels.
pub fn restart_policy(p: &Project, policy: &str, services: &[String]) -> RemoteCommand {
    let mut args: Vec<String> = vec![p.name.clone(), policy.to_string()];
    args.extend(services.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let label = |k: &str, v: &str| {
        crate::plan::shell_join(&[
            "--filter".into(),
            format!("label=com.docker.compose.{k}={v}"),
        ])
    };
    let project = label("project", &p.name);
    let lookups: Vec<String> = if services.is_empty() {
        vec![format!("$(docker ps -aq {project})")]
    } else {
        services
            .iter()
            .map(|s| format!("$(docker ps -aq {project} {})", label("service", s)))
            .collect()
    };
    RemoteCommand::script(RunAs::Root, SET_RESTART, &refs).shown_as(format!(
        "docker update --restart={} {}",
        crate::plan::shell_join(&[policy.to_string()]),
        lookups.join(" ")
    ))
}

/// $1: the project, $2: the policy, then the services (none: all of them).
/// Containers are found by compose's labels, never by their names.
const SET_RESTART: &str = r#"project=$1 policy=$2; shift 2
filter="label=com.docker.compose.project=$project"
if [ $# -eq 0 ]; then
  ids=$(docker ps -aq --filter "$filter") || exit
else
  ids=""
  for s do
    found=$(docker ps -aq --filter "$filter" --filter "label=com.docker.compose.service=$s") || exit
    ids="$ids $found"
  done
fi
[ -n "$(echo $ids)" ] || exit 0
exec docker update --restart="$policy" $ids >/dev/null"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_today() {
        let units = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            verb("stop", "redis-server").display(),
            "systemctl stop redis-server"
        );
        assert_eq!(
            load_state("a").display(),
            "systemctl show -p LoadState --value a"
        );
        assert_eq!(
            show(&["X", "Y"], &units).display(),
            "systemctl show --property=X,Y -- a b"
        );
        assert_eq!(is_enabled(&units).display(), "systemctl is-enabled -- a b");
        assert!(is_service_command(&[
            "systemctl".to_string(),
            "stop".into()
        ]));
        assert!(!is_service_command(&["sh".to_string()]));
    }

    fn project() -> Project {
        Project {
            cli: super::super::compose::Cli::V2,
            dir: "/srv/m".into(),
            files: vec![],
            name: "m".into(),
        }
    }

    #[test]
    fn each_manager_says_its_own_commands() {
        let names = vec!["web".to_string(), "sidekiq".to_string()];
        let shown =
            |cmds: Vec<RemoteCommand>| cmds.iter().map(RemoteCommand::display).collect::<Vec<_>>();
        assert_eq!(
            shown(Manager::Systemd.stop(&names)),
            ["systemctl stop web sidekiq"]
        );
        assert_eq!(
            shown(Manager::Systemd.go_live(&names)),
            [
                "systemctl unmask web sidekiq",
                "systemctl enable web sidekiq",
                "systemctl start web sidekiq"
            ]
        );
        let c = Manager::Compose(project(), std::collections::BTreeMap::new());
        assert_eq!(
            shown(c.stop(&names)),
            ["docker compose --project-directory /srv/m -p m stop web sidekiq"]
        );
        assert_eq!(
            shown(c.go_live(&names)),
            ["docker compose --project-directory /srv/m -p m up -d web sidekiq"]
        );
        for cmd in c
            .stop(&names)
            .iter()
            .chain(&c.start(&names))
            .chain(&c.go_live(&names))
            .chain(&c.disable(&names))
        {
            let argv = cmd.argv.join(" ");
            for never in [" rm", " down", "volume", "prune"] {
                assert!(
                    !argv.contains(never),
                    "a compose stack is never {never}: {argv}"
                );
            }
        }
    }

    /// Runs the restart-policy script with a `docker` that answers `ps` from
    /// a table and records `update`.
    fn set_restart(services: &[String]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("docker");
        std::fs::write(
            &fake,
            r#"#!/bin/sh
case "$*" in
  "ps -aq --filter label=com.docker.compose.project=m") echo aaa; echo bbb ;;
  *"label=com.docker.compose.service=web") echo aaa ;;
  *"label=com.docker.compose.service=db") ;;
  update*) echo "$*" >> "$(dirname "$0")/updates" ;;
  *) echo "unexpected: $*" >&2; exit 3 ;;
esac
"#,
        )
        .expect("write");
        std::process::Command::new("chmod")
            .args(["+x", &fake.display().to_string()])
            .status()
            .expect("chmod");
        let cmd = restart_policy(&project(), "no", services);
        let status = std::process::Command::new(&cmd.argv[0])
            .args(&cmd.argv[1..])
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .status()
            .expect("sh");
        assert!(status.success());
        std::fs::read_to_string(dir.path().join("updates")).unwrap_or_default()
    }

    #[test]
    fn restart_policies_are_set_on_the_projects_containers_only() {
        assert_eq!(set_restart(&[]), "update --restart=no aaa bbb\n");
        assert_eq!(set_restart(&["web".into()]), "update --restart=no aaa\n");
        assert_eq!(
            set_restart(&["db".into()]),
            "",
            "no container: nothing to update"
        );
    }
}
