use super::*;

#[test]
fn display_shows_env_cwd_and_quotes() {
    let mut c = RemoteCommand::new(
        RunAs::User("mastodon".into()),
        ["bin/tootctl", "feeds", "build"],
    );
    c.cwd = Some("/home/mastodon/live".into());
    c.env = vec![("RAILS_ENV".into(), "production".into())];
    assert_eq!(
        c.display(),
        "cd /home/mastodon/live && RAILS_ENV=production bin/tootctl feeds build"
    );
    let c = RemoteCommand::new(RunAs::Login, ["rm", "--", "a b", "$(x)"]);
    assert_eq!(c.display(), "rm -- 'a b' '$(x)'");
}

#[test]
fn privilege_wrappers() {
    let c = RemoteCommand::new(RunAs::User("mastodon".into()), ["pg_dump"]);
    assert_eq!(
        wrap_argv("root", &c, None),
        [
            "runuser", "-u", "mastodon", "--", "env", "-C", "/", "pg_dump"
        ]
    );
    assert_eq!(
        wrap_argv("admin", &c, None),
        [
            "sudo", "-n", "-u", "mastodon", "--", "env", "-C", "/", "pg_dump"
        ]
    );
    assert_eq!(wrap_argv("mastodon", &c, None), ["pg_dump"]);
    let root = RemoteCommand::new(RunAs::Root, ["systemctl", "stop", "x"]);
    assert_eq!(wrap_argv("root", &root, None), ["systemctl", "stop", "x"]);
    assert_eq!(
        wrap_argv("admin", &root, None),
        [
            "sudo",
            "-n",
            "--",
            "env",
            "-C",
            "/",
            "systemctl",
            "stop",
            "x"
        ]
    );
}

#[test]
fn env_cwd_and_umask_are_argv_prefixes_not_shell_text() {
    let mut c = RemoteCommand::new(
        RunAs::User("mastodon".into()),
        ["pg_dump", "-f", "/x/$(id).dump"],
    )
    .umask("077");
    c.cwd = Some("/home/mastodon/live".into());
    c.env = vec![("RAILS_ENV".into(), "production".into())];
    assert_eq!(
        wrap_argv("root", &c, None),
        [
            "runuser",
            "-u",
            "mastodon",
            "--",
            "env",
            "-C",
            "/home/mastodon/live",
            "RAILS_ENV=production",
            "sh",
            "-c",
            UMASK_EXEC,
            "077",
            "pg_dump",
            "-f",
            "/x/$(id).dump"
        ]
    );
}

#[test]
fn error_lines_are_recognised() {
    assert_eq!(
        error_strength("pg_restore: error: could not execute query: ERROR:  x"),
        2
    );
    assert_eq!(
        error_strength("could not change directory to \"/root\": Permission denied"),
        1
    );
    assert_eq!(
        error_strength("pg_restore: creating TABLE \"public.accounts\""),
        0
    );
}

fn db_service(user: Option<&str>) -> InService {
    InService {
        compose: [
            "docker",
            "compose",
            "--project-directory",
            "/srv/m",
            "-p",
            "m",
        ]
        .map(String::from)
        .to_vec(),
        service: "db".into(),
        user: user.map(String::from),
    }
}

#[test]
fn in_a_service_the_tag_env_dir_and_umask_reach_the_containers_process() {
    let mut c = RemoteCommand::new(RunAs::Root, ["pg_restore", "-d", "x; rm -rf /"])
        .umask("077")
        .inside(db_service(Some("postgres")));
    c.env = vec![("PGAPPNAME".into(), "run-1".into())];
    c.cwd = Some("/tmp".into());
    let argv = wrap_argv("admin", &c, Some("run-1"));
    assert_eq!(
        argv,
        [
            "sudo",
            "-n",
            "--",
            "env",
            "HIKKOSHI_RUN=run-1",
            "docker",
            "compose",
            "--project-directory",
            "/srv/m",
            "-p",
            "m",
            "exec",
            "-T",
            "-u",
            "postgres",
            "-w",
            "/tmp",
            "-e",
            "HIKKOSHI_RUN=run-1",
            "-e",
            "PGAPPNAME=run-1",
            "db",
            "sh",
            "-c",
            UMASK_EXEC,
            "077",
            "pg_restore",
            "-d",
            "x; rm -rf /"
        ]
    );
    // As root on the host nothing wraps the compose client; the tag stays out
    // of what a person reads.
    let plain = RemoteCommand::new(RunAs::Root, ["redis-cli", "SAVE"]).inside(db_service(None));
    assert_eq!(
        wrap_argv("root", &plain, None),
        [
            "docker",
            "compose",
            "--project-directory",
            "/srv/m",
            "-p",
            "m",
            "exec",
            "-T",
            "db",
            "redis-cli",
            "SAVE"
        ]
    );
    assert_eq!(
        c.display(),
        "docker compose --project-directory /srv/m -p m exec -T -u postgres -w /tmp -e PGAPPNAME=run-1 db sh -c 'umask \"$0\" && exec \"$@\"' 077 pg_restore -d 'x; rm -rf /'"
    );
}

/// What wrap_argv builds, run here: the file is the host's, made with the
/// command's umask, and its name is never shell text.
#[test]
fn a_host_file_becomes_stdin_or_stdout_without_shell_text() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("d $(touch x).dump");
    let out = RemoteCommand::new(RunAs::Login, ["printf", "%s", "dumped"])
        .umask("077")
        .redirect(Redirect::Out(file.display().to_string()));
    let argv = wrap_argv("me", &out, None);
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir.path())
        .status()
        .expect("runs");
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&file).expect("written"), "dumped");
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "made under umask 077");
    assert!(!dir.path().join("x").exists(), "the name ran nothing");
    let back = RemoteCommand::new(RunAs::Login, ["cat"])
        .redirect(Redirect::In(file.display().to_string()));
    let argv = wrap_argv("me", &back, None);
    let read = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .expect("runs");
    assert_eq!(String::from_utf8_lossy(&read.stdout), "dumped");
    assert!(
        out.display()
            .starts_with("umask 077 && printf %s dumped > '"),
        "{}",
        out.display()
    );
}

#[test]
fn in_a_service_the_redirect_is_on_the_host() {
    let c = RemoteCommand::new(RunAs::Root, ["pg_dump", "-Fc", "db"])
        .umask("077")
        .inside(db_service(Some("postgres")))
        .redirect(Redirect::Out("/w/db.dump".into()));
    let argv = wrap_argv("root", &c, None);
    assert_eq!(
        argv[..8],
        [
            "sh",
            "-c",
            UMASK_EXEC,
            "077",
            "sh",
            "-c",
            REDIRECT_OUT,
            "/w/db.dump"
        ]
    );
    assert_eq!(argv[8..10], ["docker", "compose"]);
    assert_eq!(
        c.display(),
        "docker compose --project-directory /srv/m -p m exec -T -u postgres db sh -c 'umask \"$0\" && exec \"$@\"' 077 pg_dump -Fc db > /w/db.dump"
    );
}

/// The in-container sweep asks each running container of each project (by
/// compose's label) to stop what carries the run's tag, as root, and counts
/// what they stopped.
#[test]
fn leftovers_are_stopped_inside_each_container_of_the_stacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("docker");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
log="$(dirname "$0")/calls"
case "$1" in
  ps) echo "$*" >> "$log"
      case "$*" in *project=m) echo c1; echo c2 ;; esac ;;
  exec) shift; echo "exec $1 $2 $3 tag=$8" >> "$log"; [ "$3" = c2 ] && echo 4242 ;;
esac
"#,
    )
    .expect("write");
    std::process::Command::new("chmod")
        .args(["+x", &fake.display().to_string()])
        .status()
        .expect("chmod");
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            super::KILL_TAGGED_IN_CONTAINERS,
            "hikkoshi",
            "RUN-1",
            "the killer",
            "m",
            "other",
        ])
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .output()
        .expect("sh");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4242\n");
    let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
    assert_eq!(
        calls,
        "ps -q --filter label=com.docker.compose.project=m\n\
         exec -u 0 c1 tag=RUN-1\n\
         exec -u 0 c2 tag=RUN-1\n\
         ps -q --filter label=com.docker.compose.project=other\n"
    );
}
