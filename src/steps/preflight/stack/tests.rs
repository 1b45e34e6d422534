use super::*;
use crate::steps::preflight::fake::{Checks, FakeHost};

fn cfg() -> ComposeConfig {
    ComposeConfig {
        dir: "/srv/mastodon".into(),
        files: vec![],
        project: None,
        services: BTreeMap::new(),
    }
}

fn roles() -> BTreeMap<String, String> {
    [("database", "db"), ("redis", "redis"), ("web", "web")]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .into()
}

/// The 002 stack: no volumes for db and redis.
const CONFIG: &str = r#"services:
  db:
    image: hikkoshi-lab/postgres:15
    restart: always
  redis:
    image: hikkoshi-lab/redis:7
    restart: always
  web:
    build:
      context: /srv/mastodon
    image: hikkoshi-lab/mastodon:v4.3.2
    restart: always
    volumes:
    - /srv/mastodon/public/system:/mastodon/public/system:rw
"#;

const ANON: &str = "3f2a9c0e5b1d4a7f8e6c2b9d0a1f3e5c7b9d1f2a4c6e8b0d2f4a6c8e0b2d4f6a";

fn inspect() -> String {
    format!(
        r#"[{{"Id":"c1","Config":{{"Image":"hikkoshi-lab/postgres:15","Labels":{{"com.docker.compose.service":"db"}}}},"State":{{"Running":true}},"HostConfig":{{"RestartPolicy":{{"Name":"always"}}}},"Mounts":[{{"Type":"volume","Name":"{ANON}","Source":"/var/lib/docker/volumes/{ANON}/_data","Destination":"/var/lib/postgresql/data"}}]}},
{{"Id":"c2","Config":{{"Image":"hikkoshi-lab/redis:7","Labels":{{"com.docker.compose.service":"redis"}}}},"State":{{"Running":true}},"HostConfig":{{"RestartPolicy":{{"Name":"always"}}}},"Mounts":[]}},
{{"Id":"c3","Config":{{"Image":"hikkoshi-lab/mastodon:v4.3.2","Labels":{{"com.docker.compose.service":"web"}}}},"State":{{"Running":true}},"HostConfig":{{"RestartPolicy":{{"Name":"always"}}}},"Mounts":[]}}]"#
    )
}

fn v1_source() -> FakeHost {
    FakeHost::source()
        .on("docker compose version", 1, "")
        .on("docker-compose version --short", 0, "1.29.2\n")
        .on("project.working_dir=/srv/mastodon", 0, "mastodon\n")
        .on("for f in compose.yaml", 0, "")
        .on("-p mastodon config", 0, CONFIG)
        .on("docker ps -a -q --no-trunc", 0, "c1\nc2\nc3\n")
        .on("docker inspect --", 0, &inspect())
}

#[tokio::test]
async fn the_old_stack_and_what_it_risks_are_found() {
    let c = Checks::new();
    let mut r = c.report();
    let stack = check_stack(&v1_source(), &cfg(), roles(), None, &mut r)
        .await
        .expect("runs")
        .expect("a stack");
    assert_eq!(
        stack.project.name, "mastodon",
        "from the containers' labels"
    );
    assert_eq!(stack.project.cli, compose::Cli::V1);
    assert_eq!(stack.containers.len(), 3);
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let said = c.said();
    assert_eq!(said[0], "old compose ok: docker-compose 1.29.2");
    assert!(said[1].starts_with("old compose project ok: 'mastodon' in /srv/mastodon: 3 services, 3 containers (3 running)"), "{said:?}");
    assert_eq!(
        said[2],
        "old compose services ok: database db, redis redis, web web"
    );
    assert!(said[3].starts_with("old storage WARN: 'db' keeps /var/lib/postgresql/data in an anonymous volume (3f2a9c0e5b1d…)"), "{said:?}");
    assert!(said[3].contains("never removes it"), "{said:?}");
    assert!(
        said[4].starts_with("old storage WARN: 'redis' keeps /data inside the container itself"),
        "{said:?}"
    );
    assert!(
        said[5].starts_with("old restart policy ok: db, redis, web restart by themselves"),
        "{said:?}"
    );
}

#[tokio::test]
async fn no_compose_on_a_host_fails() {
    let c = Checks::new();
    let mut r = c.report();
    let none = FakeHost::target();
    let stack = check_stack(&none, &cfg(), roles(), Some("mastodon"), &mut r)
        .await
        .expect("runs");
    assert!(stack.is_none());
    assert_eq!(r.failed.len(), 1);
    assert!(
        r.failed[0].contains("neither 'docker compose' nor 'docker-compose' answers"),
        "{:?}",
        r.failed
    );
    let _ = c.said();
}

#[tokio::test]
async fn an_empty_new_host_gets_the_sources_project() {
    let c = Checks::new();
    let mut r = c.report();
    let new = FakeHost::target()
        .on("docker compose version --short", 0, "2.26.1\n")
        .on("project.working_dir", 0, "")
        .on("for f in compose.yaml", 1, "");
    let stack = check_stack(&new, &cfg(), roles(), Some("mastodon"), &mut r)
        .await
        .expect("runs")
        .expect("a stack to be");
    assert_eq!(
        stack.project.name, "mastodon",
        "the source's name: the same volume names"
    );
    assert!(stack.resolved.is_none());
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!(
        c.said()[1],
        "new compose project ok: no stack in '/srv/mastodon' yet: the source's compose files go there, project 'mastodon'"
    );
}

#[tokio::test]
async fn a_target_stack_without_persistent_storage_may_not_start() {
    let c = Checks::new();
    let mut r = c.report();
    let new = FakeHost::target()
        .on("docker compose version --short", 0, "2.26.1\n")
        .on("project.working_dir", 0, "")
        .on("for f in compose.yaml", 0, "")
        .on("-p mastodon config", 0, CONFIG)
        .on("docker ps -a -q", 0, "");
    check_stack(&new, &cfg(), roles(), Some("mastodon"), &mut r)
        .await
        .expect("runs");
    assert_eq!(r.failed.len(), 2, "{:?}", r.failed);
    assert!(
        r.failed[0].contains("'db' would keep /var/lib/postgresql/data without persistent storage"),
        "{:?}",
        r.failed
    );
    assert!(
        r.failed[0].contains("'- ./postgres:/var/lib/postgresql/data'"),
        "{:?}",
        r.failed
    );
    assert!(
        r.failed[1].contains("'redis' would keep /data without"),
        "{:?}",
        r.failed
    );
    let _ = c.said();
}

#[tokio::test]
async fn a_role_the_stack_lacks_names_the_services_it_has() {
    let c = Checks::new();
    let mut r = c.report();
    let mut wanted = roles();
    wanted.insert("database".into(), "postgres".into());
    check_stack(&v1_source(), &cfg(), wanted, None, &mut r)
        .await
        .expect("runs");
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert!(
        r.failed[0].contains("no service for database = 'postgres'; the stack has db, redis, web. Name them in [source] compose_services"),
        "{:?}",
        r.failed
    );
    let _ = c.said();
}

#[tokio::test]
async fn a_new_host_is_told_what_the_stack_step_will_give_it() {
    let c = Checks::new();
    let mut r = c.report();
    let src = v1_source()
        .on("-- hikkoshi-lab/mastodon", 0, "sha256:aa 186500000\n")
        .on("docker image inspect", 1, "");
    let old = check_stack(&src, &cfg(), roles(), None, &mut r)
        .await
        .expect("runs")
        .expect("a stack");
    let dst = FakeHost::target()
        .on("docker compose version --short", 0, "2.26.1\n")
        .on("project.working_dir", 0, "")
        .on("for f in compose.yaml", 1, "")
        .on("-- hikkoshi-lab/postgres:15", 0, "sha256:bb 1000\n")
        .on("docker image inspect", 1, "");
    let new = check_stack(&dst, &cfg(), roles(), Some("mastodon"), &mut r)
        .await
        .expect("runs")
        .expect("a stack to be");
    let _ = c.said();
    check_new_stack(&src, &dst, &[Some(old.clone()), Some(new.clone())], &mut r)
        .await
        .expect("runs");
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!(
        c.said(),
        [
            "new storage ok: 'db' will keep /var/lib/postgresql/data in /srv/mastodon/postgres: the 'stack' step writes an override file beside the copied compose file, which compose reads by itself",
            "new storage ok: 'redis' will keep /data in /srv/mastodon/redis: the 'stack' step writes an override file beside the copied compose file, which compose reads by itself",
            "new images ok: hikkoshi-lab/mastodon:v4.3.2: streamed from old (docker save | docker load through this machine, 177.9 MiB)",
            "new images ok: hikkoshi-lab/postgres:15: on new already",
            "new images ok: hikkoshi-lab/redis:7: on neither host; pulled on new from its registry",
        ]
    );

    // Files the config names are the admin's: hikkoshi adds no override.
    let mut named = new;
    named.project.files = vec!["/srv/mastodon/docker-compose.yml".into()];
    check_new_stack(&src, &dst, &[Some(old), Some(named)], &mut r)
        .await
        .expect("runs");
    assert_eq!(r.failed.len(), 2, "{:?}", r.failed);
    assert!(
        r.failed[0].contains("'- ./postgres:/var/lib/postgresql/data' under services.db.volumes"),
        "{:?}",
        r.failed
    );
    let _ = c.said();
}

#[tokio::test]
async fn an_18_style_database_image_mounted_the_old_way_fails_naming_the_fix() {
    let c = Checks::new();
    let mut r = c.report();
    let config = "services:\n  db:\n    image: hikkoshi-lab/postgres:17-18style\n    volumes:\n    - /srv/mastodon/postgres:/var/lib/postgresql/data:rw\n  redis:\n    image: hikkoshi-lab/redis:7\n    volumes:\n    - /srv/mastodon/redis:/data:rw\n  web:\n    image: hikkoshi-lab/mastodon:v4.3.2\n";
    let new = FakeHost::target()
        .on("docker compose version --short", 0, "2.26.1\n")
        .on("project.working_dir", 0, "")
        .on("for f in compose.yaml", 0, "")
        .on("-p mastodon config", 0, config)
        .on("docker ps -a -q --no-trunc", 0, "")
        .on(
            "-- hikkoshi-lab/postgres:17-18style",
            0,
            "PATH=/usr/bin\nPGDATA=/var/lib/postgresql/17/docker\nVOLUME=/var/lib/postgresql\n",
        );
    let stack = check_stack(&new, &cfg(), roles(), Some("mastodon"), &mut r)
        .await
        .expect("runs")
        .expect("a stack");
    assert!(stack.resolved.is_some());
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert!(
        r.failed[0].contains("keeps its data in PGDATA=/var/lib/postgresql/17/docker"),
        "{:?}",
        r.failed
    );
    assert!(
        r.failed[0].contains("to '- /srv/mastodon/postgres:/var/lib/postgresql'"),
        "{:?}",
        r.failed
    );
    let _ = c.said();
}
