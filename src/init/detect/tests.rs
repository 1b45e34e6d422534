use super::*;
use crate::init::parse::{parse_nginx, parse_rds};

fn unit(name: &str, user: &str, dir: &str, pid: u32) -> Unit {
    Unit {
        name: name.into(),
        user: user.into(),
        dir: dir.into(),
        active: pid > 0,
        enabled: true,
        main_pid: pid,
    }
}

const NGINX: &str = r#"
# configuration file /etc/nginx/nginx.conf:
http {
  upstream backend { server 127.0.0.1:3000 fail_timeout=0; }
  upstream streaming { server 127.0.0.1:4000 fail_timeout=0; }
  server {
listen 443 ssl;
server_name social.example.net;   # the instance
location / { proxy_pass http://backend; }
location /api/v1/streaming { proxy_pass http://streaming; }
  }
  server {
listen 80;
server_name pleasanter.example.net www.pleasanter.example.net;
location / { proxy_pass http://127.0.0.1:5000/; }
  }
  server { listen 80 default_server; server_name _; root /var/www/html; }
}
"#;

/// The lab's old host, as the probe reads it.
pub(crate) fn lab_probe() -> Probe {
    let mut p = Probe {
        units: vec![
            unit("mastodon-sidekiq", "mastodon", "/home/mastodon/live", 30),
            unit("mastodon-streaming", "mastodon", "/home/mastodon/live", 31),
            unit("mastodon-web", "mastodon", "/home/mastodon/live", 32),
            unit("misskey", "misskey", "/home/misskey/misskey", 45),
            unit("nginx", "", "", 47),
            unit(
                "pleasanter",
                "pleasanter",
                "/web/pleasanter/Implem.Pleasanter",
                46,
            ),
            unit("postgresql", "postgres", "", 10),
            unit("redis-server", "redis", "/var/lib/redis", 11),
        ],
        databases: vec![
            ("postgres".into(), "postgres".into()),
            ("mastodon_production".into(), "mastodon".into()),
            ("misskey_db".into(), "misskey".into()),
            ("Implem.Pleasanter".into(), "pleasanter".into()),
        ],
        listeners: vec![(46, 5000), (45, 3001), (33, 3000), (47, 443)],
        parents: vec![(33, 32), (48, 47)],
        sites: parse_nginx(NGINX),
        ..Probe::default()
    };
    for (dir, s) in [
        ("/home/mastodon/live", Signature::MastodonEnv),
        ("/home/misskey/misskey", Signature::MisskeyConfig),
        (
            "/web/pleasanter/Implem.Pleasanter",
            Signature::PleasanterRds,
        ),
    ] {
        p.signatures.insert((dir.into(), s));
    }
    p.mastodon_env.insert(
        "/home/mastodon/live".into(),
        [
            ("LOCAL_DOMAIN", "social.example.net"),
            ("DB_NAME", "mastodon_production"),
            ("DB_USER", "mastodon"),
            ("DB_HOST", "/var/run/postgresql"),
            ("REDIS_HOST", "localhost"),
            ("S3_ENABLED", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    p.misskey.insert(
        "/home/misskey/misskey".into(),
        MisskeyConfig::parse(
            "url: https://misskey.example.net/\nport: 3001\ndb:\n  host: localhost\n  port: 5432\n  db: misskey_db\n  user: misskey\n  pass: s3cret-pass\nredis:\n  host: localhost\n  port: 6379\n",
        ),
    );
    p.rds.insert(
        "/web/pleasanter/Implem.Pleasanter".into(),
        parse_rds(r#"{"OwnerConnectionString": "Server=localhost;Port=5432;Database=Implem.Pleasanter;UID=pleasanter;PWD=xyzzy-secret"}"#),
    );
    p
}

#[test]
fn the_labs_three_apps_are_told_apart() {
    let (apps, skipped) = apps(&lab_probe());
    assert!(skipped.is_empty(), "{skipped:?}");
    type Row<'a> = (
        Kind,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let got: Vec<Row<'_>> = apps
        .iter()
        .map(|a| {
            (
                a.kind,
                a.user.as_str(),
                a.dir.as_str(),
                a.domain.value.as_deref(),
                a.database.value.as_deref(),
                a.db_user.value.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Kind::Mastodon,
                "mastodon",
                "/home/mastodon/live",
                Some("social.example.net"),
                Some("mastodon_production"),
                Some("mastodon")
            ),
            (
                Kind::Misskey,
                "misskey",
                "/home/misskey/misskey",
                Some("misskey.example.net"),
                Some("misskey_db"),
                Some("misskey")
            ),
            (
                Kind::Pleasanter,
                "pleasanter",
                "/web/pleasanter",
                Some("pleasanter.example.net"),
                Some("Implem.Pleasanter"),
                Some("pleasanter")
            ),
        ]
    );
    let names: Vec<&str> = apps[0].services.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        ["mastodon-web", "mastodon-sidekiq", "mastodon-streaming"]
    );
    // puma's worker (pid 33, a child of the unit's main pid) holds the port.
    assert_eq!(apps[0].ports, BTreeSet::from([3000]));
}

#[test]
fn an_unknown_app_with_a_database_of_its_own_is_generic() {
    let mut p = lab_probe();
    p.units = vec![
        unit("shop-web", "shop", "/srv/shop", 70),
        unit("shop-worker", "shop", "/srv/shop", 71),
        unit("backup-agent", "backup", "/opt/backup", 72),
    ];
    p.databases.push(("shopdb".into(), "shop".into()));
    p.listeners.push((70, 8080));
    p.sites.push(Site {
        names: vec!["shop.example.org".into()],
        ports: BTreeSet::from([8080]),
    });
    let (apps, skipped) = apps(&p);
    assert_eq!(apps.len(), 1);
    let a = &apps[0];
    assert_eq!(a.kind, Kind::Generic);
    assert_eq!(a.handle(), "shop-web");
    assert_eq!(a.database.value.as_deref(), Some("shopdb"));
    assert_eq!(a.db_user.value.as_deref(), Some("shop"));
    assert_eq!(a.domain.value.as_deref(), Some("shop.example.org"));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].starts_with("backup-agent runs as 'backup'"));
}

#[test]
fn a_generic_app_found_by_its_open_sessions_or_left_to_the_admin() {
    let mut p = lab_probe();
    p.units = vec![unit("wiki", "wiki", "/srv/wiki", 0)];
    p.sessions.push(("wiki".into(), "wikidb".into()));
    p.databases.push(("wikidb".into(), "postgres".into()));
    let (apps, _) = apps(&p);
    assert_eq!(apps[0].database.value.as_deref(), Some("wikidb"));
    assert_eq!(apps[0].db_user.value.as_deref(), Some("wiki"));
    assert!(
        apps[0]
            .notes
            .iter()
            .any(|n| n.contains("owned by 'postgres'"))
    );
    assert_eq!(apps[0].domain.value, None);
    assert!(apps[0].domain.why.contains("not running"));

    p.databases.push(("wiki_a".into(), "wiki".into()));
    p.databases.push(("wiki_b".into(), "wiki".into()));
    let (again, _) = super::apps(&p);
    assert_eq!(again[0].database.value, None);
    assert!(
        again[0].database.why.contains("wiki_a, wiki_b, wikidb"),
        "{}",
        again[0].database.why
    );
}

#[test]
fn mastodon_defaults_and_elsewhere_services_are_said() {
    let mut p = lab_probe();
    p.mastodon_env.insert(
        "/home/mastodon/live".into(),
        [
            ("LOCAL_DOMAIN", "m.example"),
            ("REDIS_HOST", "10.0.0.5"),
            ("S3_ENABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    let (apps, _) = apps(&p);
    let m = &apps[0];
    assert_eq!(m.database.value.as_deref(), Some("mastodon_production"));
    assert!(m.database.why.contains("default"));
    assert_eq!(m.db_user.value.as_deref(), Some("mastodon"));
    assert!(m.notes.iter().any(|n| n.contains("another machine")));
    assert!(m.notes.iter().any(|n| n.contains("object storage")));
}

#[test]
fn nginx_sites_with_upstreams_and_direct_proxies() {
    let sites = parse_nginx(NGINX);
    assert_eq!(sites.len(), 3);
    assert_eq!(sites[0].names, ["social.example.net"]);
    assert_eq!(sites[0].ports, BTreeSet::from([3000, 4000]));
    assert_eq!(sites[1].ports, BTreeSet::from([5000]));
    assert!(sites[2].ports.is_empty());
}

#[test]
fn two_sites_for_one_port_leave_the_domain_to_the_admin() {
    let mut p = lab_probe();
    p.sites.push(Site {
        names: vec!["other.example.com".into()],
        ports: BTreeSet::from([5000]),
    });
    let (apps, _) = apps(&p);
    let pl = apps
        .iter()
        .find(|a| a.kind == Kind::Pleasanter)
        .expect("pleasanter");
    assert_eq!(pl.domain.value, None);
    assert!(
        pl.domain
            .why
            .contains("other.example.com, pleasanter.example.net")
    );
}

#[test]
fn rds_json_gives_the_owner_and_never_the_password() {
    let r = parse_rds(r#"{"OwnerConnectionString": "Server=db;Database=Implem.Pleasanter;User Id=Implem.Pleasanter_Owner;Password=p"}"#)
        .expect("parses");
    assert_eq!(r.database, "Implem.Pleasanter");
    assert_eq!(r.user, "Implem.Pleasanter_Owner");
    assert!(parse_rds("{}").is_err());
    assert!(parse_rds("not json").is_err());
}
