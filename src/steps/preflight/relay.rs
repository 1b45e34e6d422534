//! The media relay: where the target's sshd really listens, and its host keys.

use super::Report;
use crate::events::CheckStatus::{Fail, Pass};
use crate::remote::{RemoteCommand, RunAs, Shell};
use crate::steps::StepFailure;

/// Where the relay connects, from `sshd -T`'s effective settings: a wildcard
/// listener is reached on the loopback, otherwise the first address sshd
/// listens on (IPv4 first); `None` when the output names no port.
pub(crate) fn relay_socket(sshd_t: &str) -> Option<(String, u16)> {
    let mut ports = Vec::new();
    let mut listen: Vec<(String, u16)> = Vec::new();
    for line in sshd_t.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("port"), Some(p)) => ports.extend(p.parse::<u16>().ok()),
            (Some("listenaddress"), Some(a)) => {
                // Only an address goes on: it ends up in the relay key's from="…".
                if let Some((host, port)) = a.rsplit_once(':')
                    && let Ok(port) = port.parse::<u16>()
                    && let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>()
                {
                    listen.push((ip.to_string(), port));
                }
            }
            _ => {}
        }
    }
    if listen.is_empty() {
        return ports.first().map(|p| ("127.0.0.1".to_string(), *p));
    }
    // The loopback first, IPv4 before IPv6.
    let v4 = |h: &str| match h {
        "0.0.0.0" => Some("127.0.0.1".to_string()),
        _ if h.starts_with("127.") => Some(h.to_string()),
        _ => None,
    };
    let v6 = |h: &str| (h == "::" || h == "::1").then(|| "::1".to_string());
    for loopback in [&v4 as &dyn Fn(&str) -> Option<String>, &v6] {
        if let Some(found) = listen.iter().find_map(|(h, p)| Some((loopback(h)?, *p))) {
            return Some(found);
        }
    }
    listen
        .iter()
        .find(|(h, _)| !h.contains(':'))
        .or_else(|| listen.first())
        .cloned()
}

/// The media relay reaches the target's sshd where it really listens, found
/// in its effective configuration; its host keys are read there, over the
/// already verified connection, and trusted for the relay.
pub(super) async fn check_relay<S: Shell>(
    dst: &S,
    r: &mut Report<'_>,
) -> Result<(Vec<String>, Option<(String, u16)>), StepFailure> {
    let config = dst
        .run_quiet(&RemoteCommand::script(
            RunAs::Root,
            "PATH=\"$PATH:/usr/sbin:/sbin\" exec sshd -T",
            &[],
        ))
        .await?;
    let Some((addr, port)) = config
        .success()
        .then(|| relay_socket(&config.stdout))
        .flatten()
    else {
        r.note(
            dst.name(),
            "media relay",
            Fail,
            format!(
                "cannot tell where the target's sshd listens ('sshd -T' as root: {}); the media copy connects to it from the target itself",
                config
                    .first_error
                    .clone()
                    .unwrap_or_else(|| "no port in its output".into())
            ),
        );
        return Ok((Vec::new(), None));
    };
    let port_arg = port.to_string();
    let out = dst
        .run_quiet(&RemoteCommand::new(
            RunAs::Login,
            [
                "ssh-keyscan",
                "-T",
                "5",
                "-p",
                port_arg.as_str(),
                addr.as_str(),
            ],
        ))
        .await?;
    let keys: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#') && l.split_whitespace().count() >= 3)
        .map(str::to_string)
        .collect();
    let at = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    if keys.is_empty() {
        r.note(
            dst.name(),
            "media relay",
            Fail,
            format!("sshd's configuration says it listens on {at}, but nothing answers there from the target itself; the media copy connects there through this machine"),
        );
    } else {
        r.note(
            dst.name(),
            "media relay",
            Pass,
            format!("sshd answers on {at} (from its configuration)"),
        );
    }
    Ok((keys, Some((addr, port))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::preflight::fake::{Checks, FakeHost};

    #[tokio::test]
    async fn the_relay_is_asked_where_sshd_listens_and_must_answer_there() {
        let dst = FakeHost::target()
            .on("sshd -T", 0, "port 2222\nlistenaddress 0.0.0.0:2222\n")
            .on(
                "ssh-keyscan -T 5 -p 2222 127.0.0.1",
                0,
                "# 127.0.0.1:2222 SSH-2.0\n[127.0.0.1]:2222 ssh-ed25519 AAAAC3Nz\n",
            );
        let c = Checks::new();
        let mut r = c.report();
        let (keys, at) = check_relay(&dst, &mut r).await.expect("runs");
        assert_eq!(keys, ["[127.0.0.1]:2222 ssh-ed25519 AAAAC3Nz"]);
        assert_eq!(at, Some(("127.0.0.1".to_string(), 2222)));
        assert_eq!(
            c.said(),
            ["new media relay ok: sshd answers on 127.0.0.1:2222 (from its configuration)"]
        );

        // sshd says a port, but nothing answers there.
        let dst = FakeHost::target()
            .on("sshd -T", 0, "port 22\n")
            .on("ssh-keyscan", 1, "");
        let mut r = c.report();
        let (keys, _) = check_relay(&dst, &mut r).await.expect("runs");
        assert!(keys.is_empty());
        assert!(
            r.failed[0].contains("nothing answers there from the target itself"),
            "{:?}",
            r.failed
        );
        let _ = c.said();
    }

    /// `sshd -T` on a stock host, a hardened port, an address-only listener,
    /// and IPv6: where the media relay connects from the target itself.
    #[rstest::rstest]
    #[case::stock("port 22\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\n", Some(("127.0.0.1", 22)))]
    #[case::hardened_port("port 2222\nlistenaddress [::]:2222\nlistenaddress 0.0.0.0:2222\n", Some(("127.0.0.1", 2222)))]
    #[case::public_address_only("port 22\nlistenaddress 203.0.113.7:22\n", Some(("203.0.113.7", 22)))]
    #[case::ipv6_address_only("port 22\nlistenaddress [2001:db8::7]:22\n", Some(("2001:db8::7", 22)))]
    #[case::v6_wildcard_only("port 22\nlistenaddress [::]:22\n", Some(("::1", 22)))]
    #[case::loopback_and_public("port 22\nlistenaddress 203.0.113.7:22\nlistenaddress 127.0.0.1:2200\n", Some(("127.0.0.1", 2200)))]
    #[case::no_listen_lines("port 2022\n", Some(("127.0.0.1", 2022)))]
    #[case::nothing("usepam yes\n", None)]
    #[case::not_an_address_is_left_out("port 22\nlistenaddress ho\"st:22\nlistenaddress 203.0.113.7:22\n", Some(("203.0.113.7", 22)))]
    fn the_relay_connects_where_sshd_really_listens(
        #[case] sshd_t: &str,
        #[case] want: Option<(&str, u16)>,
    ) {
        assert_eq!(relay_socket(sshd_t), want.map(|(h, p)| (h.to_string(), p)));
    }
}
