//! The cutover as visitors will see it: the DNS record's TTL, and the new host answering HTTPS.

use super::Report;
use crate::events::CheckStatus::{Fail, Pass, Warn};

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
        Err(e) => r.note("dns", "dns ttl", Warn, format!("cannot read {domain} from its nameservers: {e}")),
        Ok(a) => match a.ttl_s {
            Some(ttl) if ttl > 3600 => r.note(
                "dns",
                "dns ttl",
                Warn,
                format!(
                    "{domain} has a TTL of {}: resolvers may send visitors to the old host for that long after the switch. Lower it to 300-3600s at your DNS provider now and start the move after {} have passed",
                    crate::dns::human_secs(ttl),
                    crate::dns::human_secs(ttl)
                ),
            ),
            Some(ttl) => r.note(
                "dns",
                "dns ttl",
                Pass,
                format!("{domain} TTL {}: resolvers follow the switch within that", crate::dns::human_secs(ttl)),
            ),
            None => r.note("dns", "dns ttl", Warn, format!("the nameservers of {} give no address for {domain}", a.zone)),
        },
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
            Ok(a) if a.answered => r.note(
                &name,
                "pinned health",
                Pass,
                format!(
                    "{host}:{port} answers with a certificate that verifies (HTTP {} now{})",
                    a.status.as_deref().unwrap_or("?"),
                    if a.ok { "" } else { "; the app starts there during the move" }
                ),
            ),
            Ok(a) if a.hopeless => r.note(
                &name,
                "pinned health",
                Fail,
                format!("{url} pinned to {addr}: {}. Fix it before the move, or remove [dns] from the config to switch DNS by hand and get the certificate afterwards", a.why),
            ),
            Ok(a) => r.note(
                &name,
                "pinned health",
                Warn,
                format!("{url} pinned to {addr}: {}. The run checks it again before DNS changes and stops if it still fails", a.why),
            ),
        }
    }
}
