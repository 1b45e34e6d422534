//! The cutover as visitors will see it: the DNS record's TTL, and the new host answering HTTPS.

use super::Report;
use crate::events::CheckStatus::{self, Fail, Pass, Warn};

/// The record's TTL decides how long resolvers keep sending visitors to the old
/// host after the switch: the guide says to lower it a day before.
pub(super) async fn check_dns_ttl(
    domain: &str,
    config: &crate::config::DnsConfig,
    r: &mut Report<'_>,
) {
    let servers = crate::steps::dns::servers(config);
    let Some(first) = servers.first() else {
        return;
    };
    let opts = crate::dns::Options::default();
    match crate::dns::authority(first.addr, domain, &config.expect, &opts).await {
        Err(e) => r.note(
            "dns",
            "dns ttl",
            Warn,
            format!("cannot read {domain} from its nameservers: {e}"),
        ),
        Ok(a) => {
            let (status, said) = ttl_note(domain, &a.zone, a.ttl_s);
            r.note("dns", "dns ttl", status, said);
        }
    }
}

/// What the record's TTL means for the cutover.
fn ttl_note(domain: &str, zone: &str, ttl: Option<u32>) -> (CheckStatus, String) {
    let human = crate::dns::human_secs;
    match ttl {
        Some(ttl) if ttl > 3600 => (
            Warn,
            format!(
                "{domain} has a TTL of {}: resolvers may send visitors to the old host for that long after the switch. Lower it to 300-3600s at your DNS provider now and start the move after {} have passed",
                human(ttl),
                human(ttl)
            ),
        ),
        Some(ttl) => (
            Pass,
            format!(
                "{domain} TTL {}: resolvers follow the switch within that",
                human(ttl)
            ),
        ),
        None => (
            Warn,
            format!("the nameservers of {zone} give no address for {domain}"),
        ),
    }
}

/// The pinned health check runs during the downtime; a certificate the new
/// address does not serve correctly is better found the night before.
pub(super) async fn check_pinned(url: &str, dns: &crate::config::DnsConfig, r: &mut Report<'_>) {
    use crate::steps::health;
    let (host, port) = match health::host_port(url) {
        Ok(hp) => hp,
        Err(e) => return r.note("this machine", "pinned health", Fail, e),
    };
    for addr in &dns.expect {
        let argv = health::pinned_argv(url, &host, port, *addr, dns.ca_file.as_deref());
        let name = addr.to_string();
        match health::curl_local(&argv).await {
            Err(f) => r.note("this machine", "pinned health", Fail, f.message),
            Ok(a) => {
                let (status, said) = pinned_note(url, &host, port, &name, &a);
                r.note(&name, "pinned health", status, said);
            }
        }
    }
}

/// What one pinned request of the public URL says about the night ahead.
fn pinned_note(
    url: &str,
    host: &str,
    port: u16,
    addr: &str,
    a: &crate::steps::health::Attempt,
) -> (CheckStatus, String) {
    if a.answered {
        (
            Pass,
            format!(
                "{host}:{port} answers with a certificate that verifies (HTTP {} now{})",
                a.status.as_deref().unwrap_or("?"),
                if a.ok {
                    ""
                } else {
                    "; the app starts there during the move"
                }
            ),
        )
    } else if a.hopeless {
        (
            Fail,
            format!(
                "{url} pinned to {addr}: {}. Fix it before the move, or remove [dns] from the config to switch DNS by hand and get the certificate afterwards",
                a.why
            ),
        )
    } else {
        (
            Warn,
            format!(
                "{url} pinned to {addr}: {}. The run checks it again before DNS changes and stops if it still fails",
                a.why
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::health::Attempt;

    #[rstest::rstest]
    #[case::long(Some(86400), Warn, "a TTL of 24h00m")]
    #[case::short(Some(300), Pass, "TTL 5m")]
    #[case::no_address(None, Warn, "give no address for social.example.net")]
    fn the_ttl_says_how_long_visitors_may_still_reach_the_old_host(
        #[case] ttl: Option<u32>,
        #[case] status: CheckStatus,
        #[case] says: &str,
    ) {
        let (got, said) = ttl_note("social.example.net", "example.net", ttl);
        assert_eq!(got, status);
        assert!(said.contains(says), "{said}");
    }

    fn attempt(answered: bool, hopeless: bool) -> Attempt {
        Attempt {
            ok: false,
            status: answered.then(|| "502".to_string()),
            answered,
            why: "certificate has expired".into(),
            hopeless,
        }
    }

    #[rstest::rstest]
    #[case::answers_before_the_app_runs(
        attempt(true, false),
        Pass,
        "HTTP 502 now; the app starts there during the move"
    )]
    #[case::certificate_that_cannot_verify(attempt(false, true), Fail, "Fix it before the move")]
    #[case::not_listening_yet(attempt(false, false), Warn, "checks it again before DNS changes")]
    fn a_pinned_request_fails_only_on_what_waiting_cannot_fix(
        #[case] a: Attempt,
        #[case] status: CheckStatus,
        #[case] says: &str,
    ) {
        let (got, said) = pinned_note(
            "https://social.example.net/health",
            "social.example.net",
            443,
            "192.0.2.7",
            &a,
        );
        assert_eq!(got, status);
        assert!(said.contains(says), "{said}");
    }
}
