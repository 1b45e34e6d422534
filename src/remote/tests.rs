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
