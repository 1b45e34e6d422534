//! DNS cutover checks: what the zone's own nameservers say (authoritative view)
//! and what resolvers out there answer (resolver view), with hickory-resolver:
//! no cache, no system resolv.conf, one explicit nameserver per resolver.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use serde::{Deserialize, Serialize};

/// Public resolvers asked when none are given: the big anycast services and a
/// few regional ones, so a look at propagation is not one provider's opinion.
pub(crate) const PUBLIC_RESOLVERS: &[(&str, &str, &str)] = &[
    ("8.8.8.8", "Google", "global"),
    ("8.8.4.4", "Google", "global"),
    ("1.1.1.1", "Cloudflare", "global"),
    ("1.0.0.1", "Cloudflare", "global"),
    ("9.9.9.9", "Quad9", "global"),
    ("149.112.112.112", "Quad9", "global"),
    ("208.67.222.222", "OpenDNS", "global"),
    ("208.67.220.220", "OpenDNS", "global"),
    ("94.140.14.14", "AdGuard", "global"),
    ("4.2.2.1", "Level3", "US"),
    ("4.2.2.2", "Level3", "US"),
    ("64.6.64.6", "Verisign", "US"),
    ("84.200.69.80", "DNS.WATCH", "DE"),
    ("77.88.8.8", "Yandex", "RU"),
    ("223.5.5.5", "AliDNS", "CN"),
    ("119.29.29.29", "DNSPod", "CN"),
    ("168.126.63.1", "KT", "KR"),
    ("185.222.222.222", "DNS.SB", "EU"),
    ("76.76.2.0", "Control D", "global"),
    ("156.154.70.1", "Neustar UltraDNS", "US"),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub addr: SocketAddr,
    pub provider: String,
    pub region: String,
}

pub fn public_resolvers() -> Vec<Server> {
    PUBLIC_RESOLVERS
        .iter()
        .filter_map(|(ip, provider, region)| {
            Some(Server {
                addr: SocketAddr::new(ip.parse().ok()?, 53),
                provider: provider.to_string(),
                region: region.to_string(),
            })
        })
        .collect()
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_server(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Answers exactly the expected addresses.
    Propagated,
    /// Still answers from its cache what the zone no longer says; expires by itself.
    Stale {
        expires_in_s: u32,
    },
    /// Answers something the zone's own nameservers do not say either.
    Wrong,
    Nxdomain,
    /// The name exists but has no A or AAAA record here.
    NoAddress,
    Timeout,
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolverAnswer {
    #[serde(flatten)]
    pub server: Server,
    pub addresses: Vec<IpAddr>,
    pub cname_chain: Vec<String>,
    pub ttl_s: Option<u32>,
    pub latency_ms: u64,
    #[serde(flatten)]
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameServerAnswer {
    pub name: String,
    pub addr: SocketAddr,
    pub addresses: Vec<IpAddr>,
    pub ttl_s: Option<u32>,
    pub serial: Option<u32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authority {
    pub zone: String,
    pub servers: Vec<NameServerAnswer>,
    /// Every nameserver answered, with the same addresses.
    pub agree: bool,
    /// They agree, and on exactly the expected addresses.
    pub serve_expected: bool,
    /// The record's own TTL, as the zone gives it.
    pub ttl_s: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub domain: String,
    pub expect: Vec<IpAddr>,
    pub authority: Option<Authority>,
    pub authority_error: Option<String>,
    pub resolvers: Vec<ResolverAnswer>,
    pub propagated: usize,
    pub total: usize,
    /// The largest TTL a stale resolver still holds: how long until all must agree.
    pub worst_case_s: Option<u32>,
}

impl State {
    pub fn words(&self) -> String {
        match self {
            State::Propagated => "propagated".to_string(),
            State::Stale { expires_in_s } => {
                format!("stale, expires in {}", human_secs(*expires_in_s))
            }
            State::Wrong => "WRONG".into(),
            State::Nxdomain => "NXDOMAIN".into(),
            State::NoAddress => "no address".into(),
            State::Timeout => "timeout".into(),
            State::Error { message } => format!("error: {message}"),
        }
    }
}

impl Report {
    pub fn complete(&self) -> bool {
        self.total > 0 && self.propagated == self.total
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub timeout: Duration,
    /// Where the zone's nameservers listen; 53 except in tests.
    pub ns_port: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(3),
            ns_port: 53,
        }
    }
}

#[derive(Debug)]
enum QueryError {
    NxDomain,
    NoRecords,
    Timeout,
    Other(String),
}

fn client(
    server: SocketAddr,
    recursion: bool,
    timeout: Duration,
) -> Result<Resolver<TokioRuntimeProvider>, String> {
    let mut ns = NameServerConfig::udp_and_tcp(server.ip());
    for c in &mut ns.connections {
        c.port = server.port();
    }
    // An NXDOMAIN from this one server is its answer: there is no other to ask.
    ns.trust_negative_responses = true;
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let o = builder.options_mut();
    o.cache_size = 0;
    o.timeout = timeout;
    o.attempts = 1;
    o.recursion_desired = recursion;
    o.use_hosts_file = ResolveHosts::Never;
    o.preserve_intermediates = true;
    o.ndots = 0;
    builder.build().map_err(|e| e.to_string())
}

async fn query(
    client: &Resolver<TokioRuntimeProvider>,
    name: &Name,
    rtype: RecordType,
) -> Result<Vec<Record>, QueryError> {
    match client.lookup(name.clone(), rtype).await {
        Ok(lookup) => Ok(lookup.answers().to_vec()),
        Err(e) if e.is_nx_domain() => Err(QueryError::NxDomain),
        Err(e) if e.is_no_records_found() => Err(QueryError::NoRecords),
        Err(e) => {
            let message = e.to_string();
            if message.contains("timed out") || message.contains("timeout") {
                Err(QueryError::Timeout)
            } else {
                Err(QueryError::Other(message))
            }
        }
    }
}

fn addresses(records: &[Record]) -> (Vec<IpAddr>, Option<u32>, Vec<String>) {
    let mut addrs = BTreeSet::new();
    let mut ttl: Option<u32> = None;
    let mut cnames = Vec::new();
    for r in records {
        match &r.data {
            RData::A(a) => {
                addrs.insert(IpAddr::V4(a.0));
                ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            }
            RData::AAAA(a) => {
                addrs.insert(IpAddr::V6(a.0));
                ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            }
            RData::CNAME(c) => cnames.push(c.0.to_string()),
            _ => {}
        }
    }
    (addrs.into_iter().collect(), ttl, cnames)
}

/// A and AAAA from one server: the addresses, the smallest TTL, the CNAME
/// chain followed, and how the server failed if it did.
async fn ask(
    server: SocketAddr,
    name: &Name,
    recursion: bool,
    timeout: Duration,
) -> (
    Vec<IpAddr>,
    Option<u32>,
    Vec<String>,
    Option<QueryError>,
    Duration,
) {
    let started = Instant::now();
    let client = match client(server, recursion, timeout) {
        Ok(c) => c,
        Err(e) => {
            return (
                Vec::new(),
                None,
                Vec::new(),
                Some(QueryError::Other(e)),
                started.elapsed(),
            );
        }
    };
    let (a, aaaa) = tokio::join!(
        query(&client, name, RecordType::A),
        query(&client, name, RecordType::AAAA)
    );
    let elapsed = started.elapsed();
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for r in [a, aaaa] {
        match r {
            Ok(mut rs) => records.append(&mut rs),
            Err(e) => errors.push(e),
        }
    }
    let (addrs, ttl, cnames) = addresses(&records);
    // One family missing is normal; only both failing the same way says something.
    let error = if addrs.is_empty() {
        let mut it = errors.into_iter();
        match (it.next(), it.next()) {
            (Some(QueryError::NxDomain), _) | (_, Some(QueryError::NxDomain)) => {
                Some(QueryError::NxDomain)
            }
            (Some(QueryError::Timeout), Some(QueryError::Timeout)) => Some(QueryError::Timeout),
            (Some(QueryError::Other(m)), _) | (_, Some(QueryError::Other(m))) => {
                Some(QueryError::Other(m))
            }
            (Some(QueryError::Timeout), _) | (_, Some(QueryError::Timeout)) => {
                Some(QueryError::Timeout)
            }
            _ => Some(QueryError::NoRecords),
        }
    } else {
        None
    };
    (addrs, ttl, cnames, error, elapsed)
}

fn fqdn(domain: &str) -> Result<Name, String> {
    let text = if domain.ends_with('.') {
        domain.to_string()
    } else {
        format!("{domain}.")
    };
    Name::from_ascii(&text).map_err(|e| format!("'{domain}' is not a domain name: {e}"))
}

/// The zone's apex and nameserver names: the closest enclosing name with NS records.
async fn find_zone(
    resolver: SocketAddr,
    name: &Name,
    timeout: Duration,
) -> Result<(Name, Vec<Name>), String> {
    let client = client(resolver, true, timeout)?;
    let mut candidate = name.clone();
    while candidate.num_labels() > 0 {
        match query(&client, &candidate, RecordType::NS).await {
            Ok(records) => {
                let ns: Vec<Name> = records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::NS(ns) => Some(ns.0.clone()),
                        _ => None,
                    })
                    .collect();
                if !ns.is_empty() {
                    return Ok((candidate, ns));
                }
            }
            Err(QueryError::Timeout) => {
                return Err(format!(
                    "{resolver} did not answer for the NS records of '{candidate}'"
                ));
            }
            Err(_) => {}
        }
        candidate = candidate.base_name();
    }
    Err(format!(
        "found no NS records for '{name}' or any parent zone"
    ))
}

async fn ask_nameserver(
    name: Name,
    zone: Name,
    ns: String,
    addr: SocketAddr,
    timeout: Duration,
) -> NameServerAnswer {
    let serial = async {
        let c = client(addr, false, timeout).ok()?;
        query(&c, &zone, RecordType::SOA)
            .await
            .ok()?
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            })
    };
    let ((addresses, ttl_s, _, err, _), serial) =
        tokio::join!(ask(addr, &name, false, timeout), serial);
    NameServerAnswer {
        name: ns,
        addr,
        addresses,
        ttl_s,
        serial,
        error: err.map(|e| describe_error(Some(&e))),
    }
}

/// The zone's nameservers, each asked directly with recursion off, all at once.
pub async fn authority(
    resolver: SocketAddr,
    domain: &str,
    expect: &[IpAddr],
    opts: &Options,
) -> Result<Authority, String> {
    let name = fqdn(domain)?;
    let (zone, ns_names) = find_zone(resolver, &name, opts.timeout).await?;
    let mut servers = Vec::new();
    let mut lookups = tokio::task::JoinSet::new();
    for ns in ns_names {
        let timeout = opts.timeout;
        lookups.spawn(async move {
            let (ips, _, _, err, _) = ask(resolver, &ns, true, timeout).await;
            (ns, ips, err)
        });
    }
    let mut asks = tokio::task::JoinSet::new();
    while let Some(joined) = lookups.join_next().await {
        let Ok((ns, ips, err)) = joined else {
            continue;
        };
        if ips.is_empty() {
            servers.push(NameServerAnswer {
                name: ns.to_string(),
                addr: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0),
                addresses: Vec::new(),
                ttl_s: None,
                serial: None,
                error: Some(format!(
                    "cannot resolve the nameserver's address ({})",
                    describe_error(err.as_ref())
                )),
            });
        }
        for ip in ips {
            asks.spawn(ask_nameserver(
                name.clone(),
                zone.clone(),
                ns.to_string(),
                SocketAddr::new(ip, opts.ns_port),
                opts.timeout,
            ));
        }
    }
    while let Some(joined) = asks.join_next().await {
        if let Ok(answer) = joined {
            servers.push(answer);
        }
    }
    servers.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
    let first = servers.first().map(|s| s.addresses.clone());
    let agree = !servers.is_empty()
        && servers
            .iter()
            .all(|s| s.error.is_none() && Some(&s.addresses) == first.as_ref());
    let expected: BTreeSet<IpAddr> = expect.iter().copied().collect();
    let serve_expected =
        agree && first.is_some_and(|f| f.iter().copied().collect::<BTreeSet<_>>() == expected);
    let ttl_s = servers.iter().filter_map(|s| s.ttl_s).max();
    Ok(Authority {
        zone: zone.to_string(),
        servers,
        agree,
        serve_expected,
        ttl_s,
    })
}

fn describe_error(e: Option<&QueryError>) -> String {
    match e {
        None => "no error".into(),
        Some(QueryError::NxDomain) => "NXDOMAIN".into(),
        Some(QueryError::NoRecords) => "no A or AAAA record".into(),
        Some(QueryError::Timeout) => "timed out".into(),
        Some(QueryError::Other(m)) => m.clone(),
    }
}

/// One look at everything: the authoritative view, then every resolver at once,
/// so a full check takes about one timeout however many resolvers there are.
pub async fn check(
    domain: &str,
    expect: &[IpAddr],
    resolvers: &[Server],
    opts: &Options,
) -> Result<Report, String> {
    let name = fqdn(domain)?;
    let first = resolvers
        .first()
        .map(|s| s.addr)
        .ok_or("no resolver to ask")?;
    let expected: BTreeSet<IpAddr> = expect.iter().copied().collect();
    let mut set = tokio::task::JoinSet::new();
    for (i, server) in resolvers.iter().enumerate() {
        let name = name.clone();
        let addr = server.addr;
        let timeout = opts.timeout;
        set.spawn(async move { (i, ask(addr, &name, true, timeout).await) });
    }
    // The authoritative view runs beside the resolvers: the whole look costs
    // about one timeout.
    let (authority, authority_error) = match authority(first, domain, expect, opts).await {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e)),
    };
    let zone_moved = authority.as_ref().is_some_and(|a| a.serve_expected);
    let mut answers: Vec<Option<ResolverAnswer>> = vec![None; resolvers.len()];
    while let Some(joined) = set.join_next().await {
        let Ok((i, (addresses, ttl_s, cname_chain, err, elapsed))) = joined else {
            continue;
        };
        let got: BTreeSet<IpAddr> = addresses.iter().copied().collect();
        let state = match err {
            Some(QueryError::NxDomain) => State::Nxdomain,
            Some(QueryError::Timeout) => State::Timeout,
            Some(QueryError::NoRecords) => State::NoAddress,
            Some(QueryError::Other(message)) => State::Error { message },
            None if got == expected => State::Propagated,
            None if zone_moved => State::Stale {
                expires_in_s: ttl_s.unwrap_or(0),
            },
            None => State::Wrong,
        };
        answers[i] = Some(ResolverAnswer {
            server: resolvers[i].clone(),
            addresses,
            cname_chain,
            ttl_s,
            latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            state,
        });
    }
    let resolvers: Vec<ResolverAnswer> = answers.into_iter().flatten().collect();
    let propagated = resolvers
        .iter()
        .filter(|r| r.state == State::Propagated)
        .count();
    let worst_case_s = resolvers
        .iter()
        .filter_map(|r| match r.state {
            State::Stale { expires_in_s } => Some(expires_in_s),
            _ => None,
        })
        .max();
    Ok(Report {
        domain: domain.to_string(),
        expect: expect.to_vec(),
        authority,
        authority_error,
        total: resolvers.len(),
        resolvers,
        propagated,
        worst_case_s,
    })
}

pub(crate) fn ips(list: &[IpAddr]) -> String {
    if list.is_empty() {
        "-".into()
    } else {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(crate) fn human_secs(s: u32) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

pub fn summary(r: &Report) -> String {
    let mut line = format!("{} of {} resolvers propagated", r.propagated, r.total);
    if let Some(w) = r.worst_case_s {
        line.push_str(&format!(
            "; worst case {} left (the largest cached TTL)",
            human_secs(w)
        ));
    }
    line
}

pub fn render_text(r: &Report) -> String {
    let mut out = format!("{}  expected: {}\n\n", r.domain, ips(&r.expect));
    match (&r.authority, &r.authority_error) {
        (Some(a), _) => {
            let verdict = match (a.agree, a.serve_expected) {
                (true, true) => "agree, on the expected addresses".to_string(),
                (true, false) => {
                    "agree, but NOT on the expected addresses: the record has not been changed yet"
                        .to_string()
                }
                (false, _) => "DISAGREE: some nameservers still serve an older zone".to_string(),
            };
            out.push_str(&format!("authoritative (zone {}): {verdict}\n", a.zone));
            for s in &a.servers {
                let detail = match &s.error {
                    Some(e) => e.clone(),
                    None => format!(
                        "{}  ttl {}  serial {}",
                        ips(&s.addresses),
                        s.ttl_s.map_or("-".into(), |t| t.to_string()),
                        s.serial.map_or("-".into(), |x| x.to_string())
                    ),
                };
                out.push_str(&format!("  {:<24} {:<22} {detail}\n", s.name, s.addr));
            }
        }
        (None, Some(e)) => out.push_str(&format!("authoritative: not checked: {e}\n")),
        (None, None) => {}
    }
    out.push_str("\nresolvers\n");
    for a in &r.resolvers {
        let state = a.state.words();
        let via = if a.cname_chain.is_empty() {
            String::new()
        } else {
            format!(" via {}", a.cname_chain.join(" -> "))
        };
        out.push_str(&format!(
            "  {:<18} {:<8} {:<22} {:<28} ttl {:>6}  {:>5} ms  {state}\n",
            a.server.provider,
            a.server.region,
            a.server.addr.to_string(),
            format!("{}{via}", ips(&a.addresses)),
            a.ttl_s.map_or("-".into(), |t| t.to_string()),
            a.latency_ms,
        ));
    }
    out.push('\n');
    out.push_str(&summary(r));
    out.push('\n');
    out
}

/// Looks again and again until every resolver answers the expected addresses
/// or `limit` has passed; `on_round` hears about each look. Ends at once when
/// propagation is complete.
pub async fn wait(
    domain: &str,
    expect: &[IpAddr],
    resolvers: &[Server],
    opts: &Options,
    limit: Duration,
    mut on_round: impl FnMut(&Report, Duration),
) -> Result<Report, String> {
    let started = Instant::now();
    let mut round = 0;
    loop {
        let report = check(domain, expect, resolvers, opts).await?;
        let elapsed = started.elapsed();
        on_round(&report, elapsed);
        if report.complete() || elapsed >= limit {
            return Ok(report);
        }
        tokio::time::sleep(next_wait(round, limit - elapsed)).await;
        round += 1;
    }
}

/// The pause before the next look while waiting: short at first, then longer,
/// never past the deadline.
pub(crate) fn next_wait(round: u32, left: Duration) -> Duration {
    let step = Duration::from_secs(2u64.saturating_pow(round.min(5)).min(30));
    step.min(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_and_without_port() {
        assert_eq!(
            parse_server("1.1.1.1"),
            Some("1.1.1.1:53".parse().expect("addr"))
        );
        assert_eq!(
            parse_server("127.0.2.1:5353"),
            Some("127.0.2.1:5353".parse().expect("addr"))
        );
        assert_eq!(
            parse_server("[::1]:53"),
            Some("[::1]:53".parse().expect("addr"))
        );
        assert_eq!(parse_server("dns.google"), None);
        assert_eq!(public_resolvers().len(), 20);
    }

    #[test]
    fn waiting_backs_off_and_stops_at_the_deadline() {
        assert_eq!(
            next_wait(0, Duration::from_secs(600)),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_wait(3, Duration::from_secs(600)),
            Duration::from_secs(8)
        );
        assert_eq!(
            next_wait(9, Duration::from_secs(600)),
            Duration::from_secs(30)
        );
        assert_eq!(next_wait(9, Duration::from_secs(4)), Duration::from_secs(4));
    }
}
