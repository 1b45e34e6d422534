//! Where a tool runs and as whom: on the host (as the login, root, or a named
//! user) or inside a Docker Compose service's container. Every command the
//! database, services and cache sides build goes through a `Place`, so a step
//! never knows which one it talks to.

use serde::Deserialize;

use crate::remote::{Finished, InService, RemoteCommand, RemoteError, RunAs, Shell};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Host(RunAs),
    /// The compose client runs as root on the host; the tool as the service's
    /// user inside the container.
    Service(InService),
}

/// A tool of a move that could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("on {host}: '{command}' failed ({exit}): {message}")]
    Failed {
        host: String,
        command: String,
        exit: String,
        message: String,
    },
}

/// How a path inside a container is kept on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The tool runs on the host: the path is the host's own.
    Host,
    /// A directory of the host mounted into the container.
    Bind,
    /// A Docker volume, by the name Docker gives it (anonymous ones too).
    Volume(String),
    /// No mount covers it: it lives in the container's own layer, and goes
    /// with the container when it is removed.
    ContainerLayer,
}

/// A path as the host sees it, and what keeps it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPath {
    pub path: String,
    pub storage: Storage,
}

impl Place {
    pub fn command(&self, argv: impl IntoIterator<Item = impl Into<String>>) -> RemoteCommand {
        match self {
            Place::Host(who) => RemoteCommand::new(who.clone(), argv),
            Place::Service(s) => RemoteCommand::new(RunAs::Root, argv).inside(s.clone()),
        }
    }

    /// Where `path`, as the tool sees it, lives on the host's filesystem: what
    /// a disk check must measure and a file copy must read. A container path
    /// is never taken for a host path.
    pub async fn host_path(&self, h: &impl Shell, path: &str) -> Result<HostPath, ToolError> {
        let Place::Service(s) = self else {
            return Ok(HostPath {
                path: path.to_string(),
                storage: Storage::Host,
            });
        };
        let mut ps = s.compose.clone();
        ps.extend(["ps".into(), "-q".into(), s.service.clone()]);
        let id = checked(h, &RemoteCommand::new(RunAs::Root, ps)).await?;
        let id = id.stdout.lines().next().unwrap_or("").trim().to_string();
        let inspect = RemoteCommand::new(
            RunAs::Root,
            [
                "docker",
                "inspect",
                "--format",
                "{{json .Mounts}}|{{.GraphDriver.Data.UpperDir}}",
                "--",
                id.as_str(),
            ],
        );
        let out = checked(h, &inspect).await?;
        let (mounts, upper) = out.stdout.trim().split_once('|').unwrap_or(("[]", ""));
        let mounts: Vec<Mount> = serde_json::from_str(mounts).map_err(|e| ToolError::Failed {
            host: h.name().to_string(),
            command: inspect.display(),
            exit: "exit 0".into(),
            message: format!("unreadable mounts of service '{}': {e}", s.service),
        })?;
        Ok(locate(&mounts, path, upper))
    }
}

async fn checked(h: &impl Shell, cmd: &RemoteCommand) -> Result<Finished, ToolError> {
    let out = h.run_quiet(cmd).await?;
    if out.success() && !out.stdout.trim().is_empty() {
        return Ok(out);
    }
    Err(ToolError::Failed {
        host: h.name().to_string(),
        command: cmd.display(),
        exit: out.exit_text(),
        message: if out.success() {
            "no answer (is the service's container running?)".into()
        } else {
            out.cause()
        },
    })
}

/// One entry of `docker inspect`'s `.Mounts`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
}

/// The mount whose destination holds `path` most closely decides; a path no
/// mount holds is in the container's layer (`upper`, overlay2's directory).
pub(crate) fn locate(mounts: &[Mount], path: &str, upper: &str) -> HostPath {
    let under = |dest: &str| {
        let d = dest.trim_end_matches('/');
        (path == d || path.starts_with(&format!("{d}/")) || d.is_empty())
            .then(|| path[d.len()..].to_string())
    };
    let best = mounts
        .iter()
        .filter_map(|m| under(&m.destination).map(|rest| (m, rest)))
        .max_by_key(|(m, _)| m.destination.trim_end_matches('/').len());
    match best {
        Some((m, rest)) => HostPath {
            path: format!("{}{rest}", m.source.trim_end_matches('/')),
            storage: match (m.kind.as_str(), &m.name) {
                ("volume", Some(n)) => Storage::Volume(n.clone()),
                _ => Storage::Bind,
            },
        },
        None => HostPath {
            path: format!("{}{path}", upper.trim_end_matches('/')),
            storage: Storage::ContainerLayer,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, name: Option<&str>, source: &str, dest: &str) -> Mount {
        Mount {
            kind: kind.into(),
            name: name.map(String::from),
            source: source.into(),
            destination: dest.into(),
        }
    }

    #[test]
    fn a_container_path_is_found_through_its_mounts() {
        let mounts = [
            mount(
                "bind",
                None,
                "/srv/m/public/system",
                "/opt/mastodon/public/system",
            ),
            mount(
                "volume",
                Some("3f2a"),
                "/var/lib/docker/volumes/3f2a/_data",
                "/var/lib/postgresql/data",
            ),
        ];
        let upper = "/var/lib/docker/overlay2/abc/diff";
        assert_eq!(
            locate(&mounts, "/var/lib/postgresql/data", upper),
            HostPath {
                path: "/var/lib/docker/volumes/3f2a/_data".into(),
                storage: Storage::Volume("3f2a".into())
            }
        );
        assert_eq!(
            locate(&mounts, "/opt/mastodon/public/system/media", upper).path,
            "/srv/m/public/system/media"
        );
        // A sibling whose name only starts like a mount is not under it.
        assert_eq!(
            locate(&mounts, "/var/lib/postgresql/data2", upper),
            HostPath {
                path: "/var/lib/docker/overlay2/abc/diff/var/lib/postgresql/data2".into(),
                storage: Storage::ContainerLayer
            }
        );
        // An 18-style image: data below a mount of its parent.
        let parent = [mount("volume", Some("v"), "/d/v", "/var/lib/postgresql")];
        assert_eq!(
            locate(&parent, "/var/lib/postgresql/18/docker", upper).path,
            "/d/v/18/docker"
        );
    }

    /// A host that answers each command from a table.
    struct Answers(Vec<(&'static str, &'static str)>);

    impl Shell for Answers {
        fn name(&self) -> &str {
            "new"
        }
        fn role(&self) -> crate::remote::Role {
            crate::remote::Role::Target
        }
        fn run_with_input(
            &self,
            cmd: &RemoteCommand,
            _input: Option<&[u8]>,
            _sink: &mut (dyn FnMut(crate::events::Stream, String) + Send),
        ) -> impl std::future::Future<Output = Result<Finished, RemoteError>> + Send {
            let line = cmd.display();
            let stdout = self
                .0
                .iter()
                .find(|(k, _)| line.contains(k))
                .map(|(_, v)| v.to_string());
            async move {
                Ok(Finished {
                    exit_code: Some(if stdout.is_some() { 0 } else { 1 }),
                    stdout: stdout.unwrap_or_default(),
                    ..Default::default()
                })
            }
        }
    }

    fn db() -> InService {
        InService {
            compose: vec!["docker-compose".into(), "-p".into(), "m".into()],
            service: "db".into(),
            user: Some("postgres".into()),
        }
    }

    #[tokio::test]
    async fn a_service_path_is_asked_of_docker_and_a_host_path_is_its_own() {
        let h = Answers(vec![
            ("docker-compose -p m ps -q db", "c0ffee\n"),
            (
                "docker inspect",
                r#"[{"Type":"volume","Name":"m_db","Source":"/var/lib/docker/volumes/m_db/_data","Destination":"/var/lib/postgresql/data"}]|/x/diff"#,
            ),
        ]);
        let got = Place::Service(db())
            .host_path(&h, "/var/lib/postgresql/data")
            .await
            .ok();
        assert_eq!(
            got,
            Some(HostPath {
                path: "/var/lib/docker/volumes/m_db/_data".into(),
                storage: Storage::Volume("m_db".into())
            })
        );
        let stopped = Answers(vec![]);
        let err = Place::Service(db())
            .host_path(&stopped, "/var/lib/postgresql/data")
            .await;
        assert!(
            matches!(&err, Err(ToolError::Failed { command, .. }) if command == "docker-compose -p m ps -q db"),
            "{err:?}"
        );
        let on_host = Place::Host(RunAs::Root)
            .host_path(&stopped, "/var/lib/postgresql/15/main")
            .await
            .ok();
        assert_eq!(on_host.map(|p| p.storage), Some(Storage::Host));
        assert_eq!(
            Place::Service(db()).command(["psql", "-l"]).display(),
            "docker-compose -p m exec -T -u postgres db psql -l"
        );
    }
}
