use super::*;

#[test]
fn a_project_is_addressed_the_same_way_by_both_composes() {
    let p = Project {
        cli: Cli::V1,
        dir: "/srv/mastodon".into(),
        files: vec!["/srv/mastodon/docker-compose.yml".into()],
        name: "mastodon".into(),
    };
    assert_eq!(
        p.argv(&["ps", "-q", "db"]),
        [
            "docker-compose",
            "--project-directory",
            "/srv/mastodon",
            "-f",
            "/srv/mastodon/docker-compose.yml",
            "-p",
            "mastodon",
            "ps",
            "-q",
            "db"
        ]
    );
    let v2 = Project {
        cli: Cli::V2,
        files: vec![],
        ..p
    };
    assert_eq!(
        v2.service("db", Some("postgres")).compose,
        [
            "docker",
            "compose",
            "--project-directory",
            "/srv/mastodon",
            "-p",
            "mastodon"
        ]
    );
}

#[test]
fn project_names_and_files_as_compose_makes_them() {
    assert_eq!(default_project_name("/home/mastodon/live"), "live");
    assert_eq!(default_project_name("/srv/My.Stack_1"), "mystack_1");
    assert_eq!(
        absolute_files(
            "/srv/m",
            &["./docker-compose.yml".into(), "/etc/x.yml".into()]
        ),
        ["/srv/m/docker-compose.yml", "/etc/x.yml"]
    );
}

/// `docker compose config` (v2): long syntax, the project's name on top.
const V2: &str = r#"name: mastodon
services:
  db:
    environment:
      POSTGRES_USER: postgres
      SECRET_KEY_BASE: 6befb15aeead38aa
    image: hikkoshi-lab/postgres:15
    networks:
      internal_network: null
    restart: always
  web:
    build:
      context: /srv/mastodon
      dockerfile: Dockerfile
    command:
      - bundle
      - exec
      - puma
      - -C
      - config/puma.rb
    env_file:
      - path: /srv/mastodon/.env.production
        required: true
    image: hikkoshi-lab/mastodon:v4.3.2
    ports:
      - mode: ingress
        host_ip: 127.0.0.1
        target: 3000
        published: "3100"
        protocol: tcp
    restart: always
    volumes:
      - type: bind
        source: /srv/mastodon/public/system
        target: /mastodon/public/system
        bind:
          create_host_path: true
  redis:
    image: redis:7
    volumes:
      - type: volume
        source: redis
        target: /data
        volume: {}
volumes:
  redis:
    name: mastodon_redis
"#;

/// `docker-compose config` (v1): short syntax, no name.
const V1: &str = r#"services:
  db:
    environment:
      POSTGRES_HOST_AUTH_METHOD: trust
    image: hikkoshi-lab/postgres:15
    restart: always
    volumes:
    - ./postgres14:/var/lib/postgresql/data:rw
  web:
    build:
      context: /srv/mastodon
    command: bundle exec puma -C config/puma.rb
    env_file:
    - /srv/mastodon/.env.production
    image: hikkoshi-lab/mastodon:v4.3.2
    ports:
    - 127.0.0.1:3100:3000/tcp
    restart: always
    volumes:
    - /srv/mastodon/public/system:/mastodon/public/system:rw
    - /data
version: '3'
"#;

#[test]
fn compose_v2_config_is_read() {
    let r = parse_config(V2, "/srv/mastodon").expect("parses");
    assert_eq!(r.name.as_deref(), Some("mastodon"));
    let web = &r.services["web"];
    assert!(web.built);
    assert_eq!(web.command, "bundle exec puma -C config/puma.rb");
    assert_eq!(web.env_files, ["/srv/mastodon/.env.production"]);
    assert_eq!(
        web.ports,
        [Port {
            host_ip: Some("127.0.0.1".into()),
            published: 3100,
            target: 3000
        }]
    );
    assert_eq!(web.mounts[0].kind, MountKind::Bind);
    assert_eq!(
        web.mounts[0].source.as_deref(),
        Some("/srv/mastodon/public/system")
    );
    let db = &r.services["db"];
    assert!(!db.built);
    assert!(
        db.mounts.is_empty(),
        "no volume: the image's anonymous one, or none"
    );
    assert_eq!(db.restart.as_deref(), Some("always"));
    assert_eq!(db.environment["POSTGRES_USER"], "postgres");
    assert!(
        !db.environment.contains_key("SECRET_KEY_BASE"),
        "a secret from an env_file is not kept"
    );
    assert_eq!(r.services["redis"].mounts[0].kind, MountKind::Volume);
    assert_eq!(r.volumes["redis"].as_deref(), Some("mastodon_redis"));
}

#[test]
fn compose_v1_config_is_read() {
    let r = parse_config(V1, "/srv/mastodon").expect("parses");
    assert_eq!(r.name, None);
    let db = &r.services["db"];
    assert_eq!(
        db.mounts,
        [MountSpec {
            kind: MountKind::Bind,
            source: Some("/srv/mastodon/postgres14".into()),
            target: "/var/lib/postgresql/data".into(),
            written: "./postgres14:/var/lib/postgresql/data:rw".into(),
        }]
    );
    let web = &r.services["web"];
    assert_eq!(web.command, "bundle exec puma -C config/puma.rb");
    assert_eq!(web.ports[0].published, 3100);
    assert_eq!(web.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(web.mounts[1].kind, MountKind::Anonymous);
    assert_eq!(web.env_files, ["/srv/mastodon/.env.production"]);
}

#[test]
fn what_is_not_a_compose_configuration_is_said() {
    assert!(parse_config("", "/x").is_err());
    assert!(parse_config("version: '3'\n", "/x").is_err());
    assert!(parse_config("services: [\n", "/x").is_err());
}

#[test]
fn containers_are_known_by_their_compose_labels() {
    let json = r#"[{"Id":"c0ffee","Config":{"Image":"hikkoshi-lab/postgres:15","Labels":{"com.docker.compose.project":"mastodon","com.docker.compose.service":"db"}},"State":{"Running":true},"HostConfig":{"RestartPolicy":{"Name":"always","MaximumRetryCount":0}},"Mounts":[{"Type":"volume","Name":"3f2a9c","Source":"/var/lib/docker/volumes/3f2a9c/_data","Destination":"/var/lib/postgresql/data","Driver":"local","RW":true}]},
      {"Id":"beef","Config":{"Image":"x","Labels":{"com.docker.compose.service":"web"}},"State":{"Running":false},"HostConfig":{"RestartPolicy":{"Name":""}},"Mounts":[]}]"#;
    let c = parse_inspect(json).expect("parses");
    assert_eq!(c[0].service, "db");
    assert!(c[0].running);
    assert_eq!(c[0].restart, "always");
    assert_eq!(c[0].mounts[0].name.as_deref(), Some("3f2a9c"));
    assert_eq!(c[1].restart, "no", "an empty policy is no restart");
    assert!(!c[1].running);
    assert!(parse_inspect("not json").is_err());
}
