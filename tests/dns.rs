//! `hikkoshi dns` against real DNS servers on loopback: hickory-server zones
//! standing in for the domain's nameservers and for resolvers with different
//! caches. Each test uses its own 127.0.N.0/24, so tests can run in parallel.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a test crate: a failed expectation is the test failing

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

use hikkoshi::dns::{self, Options, State};

const NEW: &str = "203.0.113.7";
const OLD: &str = "198.51.100.4";

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn a(ip: &str) -> RData {
    RData::A(A(ip.parse().expect("ipv4")))
}

/// A loopback network of its own for one test: nameservers at .1 and .2,
/// resolvers from .11 on, all on one port.
struct Net {
    prefix: String,
    port: u16,
}

impl Net {
    fn new(n: u8) -> Net {
        let prefix = format!("127.0.{n}");
        let probe =
            std::net::UdpSocket::bind(format!("{prefix}.1:0")).expect("bind a probe socket");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        Net { prefix, port }
    }

    fn addr(&self, host: u8) -> SocketAddr {
        format!("{}.{host}:{}", self.prefix, self.port)
            .parse()
            .expect("addr")
    }

    /// The zone example.net as one server sees it: SOA, two nameservers with
    /// glue in this network, and the records given.
    fn zone(&self, serial: u32, records: &[(&str, u32, RData)]) -> Catalog {
        let origin = name("example.net.");
        let mut h: InMemoryZoneHandler =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            name("ns1.example.net."),
            name("hostmaster.example.net."),
            serial,
            3600,
            600,
            86400,
            60,
        );
        h.upsert_mut(
            Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)),
            serial,
        );
        for (ns, host) in [("ns1.example.net.", 1), ("ns2.example.net.", 2)] {
            h.upsert_mut(
                Record::from_rdata(origin.clone(), 3600, RData::NS(NS(name(ns)))),
                serial,
            );
            h.upsert_mut(
                Record::from_rdata(name(ns), 3600, a(&format!("{}.{host}", self.prefix))),
                serial,
            );
        }
        for (n, ttl, data) in records {
            h.upsert_mut(Record::from_rdata(name(n), *ttl, data.clone()), serial);
        }
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(h)]);
        catalog
    }

    async fn serve(&self, host: u8, catalog: Catalog) -> tokio::task::JoinHandle<()> {
        let socket = tokio::net::UdpSocket::bind(self.addr(host))
            .await
            .expect("bind a DNS server");
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        tokio::spawn(async move {
            let _ = server.block_until_done().await;
        })
    }

    fn resolver(&self, host: u8, provider: &str) -> dns::Server {
        dns::Server {
            addr: self.addr(host),
            provider: provider.into(),
            region: "test".into(),
        }
    }

    fn options(&self, timeout: Duration) -> Options {
        Options {
            timeout,
            ns_port: self.port,
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn state_of<'a>(r: &'a dns::Report, provider: &str) -> &'a dns::ResolverAnswer {
    r.resolvers
        .iter()
        .find(|a| a.server.provider == provider)
        .expect("resolver in report")
}

#[tokio::test]
async fn every_resolver_state_and_the_authoritative_view() {
    let net = Net::new(41);
    let social = [("social.example.net.", 300, a(NEW))];
    let mut servers = vec![
        net.serve(1, net.zone(7, &social)).await,
        net.serve(2, net.zone(7, &social)).await,
        net.serve(11, net.zone(7, &[("social.example.net.", 250, a(NEW))]))
            .await,
        net.serve(12, net.zone(6, &[("social.example.net.", 120, a(OLD))]))
            .await,
        net.serve(13, net.zone(7, &[])).await,
        net.serve(
            15,
            net.zone(
                7,
                &[
                    (
                        "social.example.net.",
                        60,
                        RData::CNAME(CNAME(name("web.example.net."))),
                    ),
                    ("web.example.net.", 90, a(NEW)),
                ],
            ),
        )
        .await,
    ];
    // Silent resolvers: the socket exists, nothing ever answers.
    let silent: Vec<std::net::UdpSocket> = (16..=18)
        .map(|h| std::net::UdpSocket::bind(net.addr(h)).expect("bind a silent socket"))
        .collect();
    let resolvers = vec![
        net.resolver(11, "fresh"),
        net.resolver(12, "cached"),
        net.resolver(13, "empty"),
        net.resolver(15, "cname"),
        net.resolver(16, "silent1"),
        net.resolver(17, "silent2"),
        net.resolver(18, "silent3"),
    ];
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let r = dns::check(
        "social.example.net",
        &[ip(NEW)],
        &resolvers,
        &net.options(timeout),
    )
    .await
    .expect("check");
    let took = started.elapsed();

    let auth = r.authority.as_ref().expect("authoritative view");
    assert_eq!(auth.zone, "example.net.");
    assert_eq!(auth.servers.len(), 2);
    assert!(auth.agree && auth.serve_expected, "{auth:?}");
    assert_eq!(auth.ttl_s, Some(300));
    assert!(auth.servers.iter().all(|s| s.serial == Some(7)));

    assert_eq!(state_of(&r, "fresh").state, State::Propagated);
    assert_eq!(state_of(&r, "fresh").ttl_s, Some(250));
    assert_eq!(
        state_of(&r, "cached").state,
        State::Stale { expires_in_s: 120 }
    );
    assert_eq!(state_of(&r, "cached").addresses, vec![ip(OLD)]);
    assert_eq!(state_of(&r, "empty").state, State::Nxdomain);
    let cname = state_of(&r, "cname");
    assert_eq!(cname.state, State::Propagated);
    assert_eq!(cname.cname_chain, vec!["web.example.net.".to_string()]);
    for s in ["silent1", "silent2", "silent3"] {
        assert_eq!(state_of(&r, s).state, State::Timeout, "{s}");
    }
    assert_eq!((r.propagated, r.total, r.worst_case_s), (2, 7, Some(120)));
    assert!(!r.complete());
    // Three silent resolvers cost one timeout, not three: they are asked at once.
    assert!(
        took < timeout * 2 + Duration::from_millis(500),
        "a check took {took:?}"
    );

    let text = dns::render_text(&r);
    assert!(text.contains("stale, expires in 2m00s"), "{text}");
    assert!(
        text.contains("2 of 7 resolvers propagated; worst case 2m00s left"),
        "{text}"
    );
    drop(silent);
    for s in servers.drain(..) {
        s.abort();
    }
}

#[tokio::test]
async fn nameservers_that_disagree_or_were_not_changed() {
    let net = Net::new(42);
    let s1 = net
        .serve(1, net.zone(8, &[("social.example.net.", 300, a(NEW))]))
        .await;
    let s2 = net
        .serve(2, net.zone(7, &[("social.example.net.", 300, a(OLD))]))
        .await;
    let r1 = net
        .serve(11, net.zone(7, &[("social.example.net.", 300, a(OLD))]))
        .await;
    let resolvers = vec![net.resolver(11, "r")];
    let r = dns::check(
        "social.example.net",
        &[ip(NEW)],
        &resolvers,
        &net.options(Duration::from_secs(2)),
    )
    .await
    .expect("check");
    let auth = r.authority.as_ref().expect("authority");
    assert!(!auth.agree, "one nameserver still serves serial 7");
    // The zone has not moved everywhere, so the old answer is not merely stale.
    assert_eq!(state_of(&r, "r").state, State::Wrong);
    assert!(dns::render_text(&r).contains("DISAGREE"));
    for s in [s1, s2, r1] {
        s.abort();
    }
}

#[tokio::test]
async fn aaaa_only_records_count() {
    let net = Net::new(43);
    let v6 = "2001:db8::7";
    let rec = [(
        "social.example.net.",
        300,
        RData::AAAA(AAAA(v6.parse().expect("v6"))),
    )];
    let servers = vec![
        net.serve(1, net.zone(1, &rec)).await,
        net.serve(2, net.zone(1, &rec)).await,
        net.serve(11, net.zone(1, &rec)).await,
    ];
    let r = dns::check(
        "social.example.net",
        &[ip(v6)],
        &[net.resolver(11, "r")],
        &net.options(Duration::from_secs(2)),
    )
    .await
    .expect("check");
    assert_eq!(state_of(&r, "r").state, State::Propagated);
    assert!(r.complete());
    for s in servers {
        s.abort();
    }
}

#[tokio::test]
async fn wait_ends_as_soon_as_the_last_resolver_catches_up() {
    let net = Net::new(44);
    let social = [("social.example.net.", 300, a(NEW))];
    let s1 = net.serve(1, net.zone(9, &social)).await;
    let s2 = net.serve(2, net.zone(9, &social)).await;
    let fresh = net.serve(11, net.zone(9, &social)).await;
    let stale = net
        .serve(12, net.zone(8, &[("social.example.net.", 2, a(OLD))]))
        .await;
    let resolvers = vec![net.resolver(11, "fresh"), net.resolver(12, "cached")];

    // The cached answer expires after two seconds: the resolver then serves the new one.
    let swap = {
        let zone = net.zone(9, &social);
        let addr = net.addr(12);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stale.abort();
            let _ = stale.await;
            let socket = tokio::net::UdpSocket::bind(addr).await.expect("rebind");
            let mut server = Server::new(zone);
            server.register_socket(socket);
            let _ = server.block_until_done().await;
        })
    };
    let mut rounds = Vec::new();
    let started = Instant::now();
    let report = dns::wait(
        "social.example.net",
        &[ip(NEW)],
        &resolvers,
        &net.options(Duration::from_secs(1)),
        Duration::from_secs(60),
        |r, _| rounds.push(r.propagated),
    )
    .await
    .expect("wait");
    assert!(report.complete(), "{report:?}");
    assert!(
        rounds.len() >= 2 && rounds[0] == 1,
        "it looked more than once: {rounds:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it stopped when propagation was complete"
    );
    for s in [s1, s2, fresh, swap] {
        s.abort();
    }
}

#[tokio::test]
async fn the_command_exits_0_1_and_2() {
    let net = Net::new(45);
    let social = [("social.example.net.", 300, a(NEW))];
    let servers = vec![
        net.serve(1, net.zone(3, &social)).await,
        net.serve(2, net.zone(3, &social)).await,
        net.serve(11, net.zone(3, &social)).await,
    ];
    let resolver = net.addr(11).to_string();
    let port = net.port.to_string();
    let run = |expect: &'static str| {
        let resolver = resolver.clone();
        let port = port.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_hikkoshi"))
                .args([
                    "dns",
                    "social.example.net",
                    "--expect",
                    expect,
                    "--resolver",
                    &resolver,
                    "--ns-port",
                    &port,
                    "--format",
                    "json",
                ])
                .output()
                .expect("run hikkoshi")
        })
    };
    let ok = run(NEW).await.expect("join");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(json["propagated"], 1);
    assert_eq!(json["resolvers"][0]["state"], "propagated");
    let not_yet = run(OLD).await.expect("join");
    assert_eq!(not_yet.status.code(), Some(1));
    let bad = run("not-an-ip").await.expect("join");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--expect 'not-an-ip' is not an IP address")
    );
    for s in servers {
        s.abort();
    }
}

#[tokio::test]
async fn a_run_waits_in_its_cutover_step_until_dns_has_propagated() {
    let net = Net::new(46);
    let social = [("social.example.net.", 300, a(NEW))];
    let cached = net
        .serve(11, net.zone(1, &[("social.example.net.", 2, a(OLD))]))
        .await;
    let swap = {
        let zone = net.zone(2, &social);
        let addr = net.addr(11);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            cached.abort();
            let _ = cached.await;
            let socket = tokio::net::UdpSocket::bind(addr).await.expect("rebind");
            let mut server = Server::new(zone);
            server.register_socket(socket);
            let _ = server.block_until_done().await;
        })
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("dns-only.toml"),
        "name = \"dns-only\"\n[defaults]\nuser = \"u\"\ndir = \"/d\"\ndatabase = \"db\"\ndb_user = \"u\"\n\n[[phases]]\nid = \"cutover\"\ntitle = \"Cutover\"\n\n[[steps]]\nid = \"dns\"\nphase = \"cutover\"\nkind = \"dns\"\ntitle = \"Point DNS at the new host\"\n",
    )
    .expect("profile");
    let config = dir.path().join("migration.toml");
    std::fs::write(
        &config,
        format!(
            "profile = \"dns-only.toml\"\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"social.example.net\"\n[dns]\nexpect = [\"{NEW}\"]\nresolvers = [\"{}\"]\nwait = \"30s\"\n",
            net.addr(11)
        ),
    )
    .expect("config");
    let journal = dir.path().join("run.jsonl");
    let (config_arg, journal_arg, home) =
        (config.clone(), journal.clone(), dir.path().to_path_buf());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hikkoshi"))
            .arg("run")
            .arg("--config")
            .arg(&config_arg)
            .args(["--headless", "--yes", "--journal"])
            .arg(&journal_arg)
            .env("HOME", &home)
            .env("XDG_STATE_HOME", home.join("state"))
            .output()
            .expect("run hikkoshi")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("0 of 1 resolvers propagated"),
        "it saw the old answer first:\n{stdout}"
    );
    assert!(stdout.contains("1 of 1 resolvers propagated"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "it ended when propagation was complete"
    );
    let records = hikkoshi::journal::Journal::read(&journal).expect("journal");
    assert!(records.iter().any(|r| matches!(
        &r.event,
        hikkoshi::events::EngineEvent::StepFinished { step, outcome: hikkoshi::events::StepOutcome::Succeeded, .. } if step == "dns"
    )));
    swap.abort();
}

/// In the wizard the operator may stop waiting for the last resolvers: a
/// Skip while the DNS step waits ends it as skipped, and the run goes on.
#[tokio::test]
async fn the_operator_can_move_on_while_resolvers_still_hold_the_old_answer() {
    use hikkoshi::events::{EngineCommand, EngineEvent, RunOutcome, StepOutcome};
    let net = Net::new(47);
    let server = net
        .serve(11, net.zone(1, &[("social.example.net.", 3600, a(OLD))]))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("dns-only.toml"),
        "name = \"dns-only\"\n[defaults]\nuser = \"u\"\ndir = \"/d\"\ndatabase = \"db\"\ndb_user = \"u\"\n\n[[phases]]\nid = \"cutover\"\ntitle = \"Cutover\"\n\n[[steps]]\nid = \"dns\"\nphase = \"cutover\"\nkind = \"dns\"\ntitle = \"Point DNS at the new host\"\n",
    )
    .expect("profile");
    let path = dir.path().join("migration.toml");
    let text = format!(
        "profile = \"dns-only.toml\"\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"social.example.net\"\n[dns]\nexpect = [\"{NEW}\"]\nresolvers = [\"{}\"]\nwait = \"10m\"\n",
        net.addr(11)
    );
    std::fs::write(&path, &text).expect("config");
    let config = hikkoshi::config::Config::parse(&path, &text).expect("config");
    let plan = hikkoshi::plan::Plan::build(&config).expect("plan");
    let opts = hikkoshi::engine::RunOptions {
        run_id: "test".into(),
        mode: hikkoshi::events::RunMode::Run,
        ssh_config: None,
        dns: config.dns.clone(),
        gated: false,
        ..Default::default()
    };
    let mut handle = hikkoshi::engine::start(plan, opts, None);
    let started = Instant::now();
    let mut asked = false;
    let mut skipped = None;
    let mut outcome = None;
    while let Some(record) = handle.records.recv().await {
        match record.event {
            EngineEvent::Propagation { report, .. } if !asked => {
                assert_eq!((report.propagated, report.total), (0, 1));
                handle.commands.send(EngineCommand::Skip).expect("send");
                asked = true;
            }
            EngineEvent::StepFinished { step, outcome, .. } if step == "dns" => {
                skipped = Some(outcome)
            }
            EngineEvent::RunFinished { outcome: o, .. } => outcome = Some(o),
            _ => {}
        }
    }
    assert!(
        matches!(&skipped, Some(StepOutcome::Skipped { reason }) if reason.contains("moved on")),
        "{skipped:?}"
    );
    assert_eq!(outcome, Some(RunOutcome::Succeeded));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it did not wait 10m"
    );
    server.abort();
}
