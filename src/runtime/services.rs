//! The services of a host: systemd units, through `systemctl` as root.

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
}
