//! A Docker Compose install: which compose the host has, the project and its
//! resolved configuration, the service for each role, where each service's
//! data really lives, and what would bring a stopped stack back by itself.
//! It only reads: `compose config`, `docker ps` and `docker inspect`.

use std::collections::BTreeMap;

use super::Report;
use crate::config::ComposeConfig;
use crate::events::CheckStatus::{Fail, Pass, Warn};
use crate::remote::{Role, Shell};
use crate::runtime::Storage;
use crate::runtime::compose::{
    self, Container, MountKind, Project, Resolved, absolute_files, default_project_name,
};
use crate::runtime::place::locate;
use crate::steps::StepFailure;

/// A host's stack as preflight found it.
#[derive(Debug, Clone)]
pub(crate) struct Stack {
    pub project: Project,
    /// What `compose config` says; none where the project directory has no
    /// compose file yet (a new host that gets the source's).
    pub resolved: Option<Resolved>,
    pub containers: Vec<Container>,
    /// Service name by role.
    pub roles: BTreeMap<String, String>,
}

impl Stack {
    pub(crate) fn service(&self, role: &str) -> Option<&str> {
        self.roles.get(role).map(String::as_str)
    }

    /// Each service's restart policy as its containers have it now.
    pub(crate) fn restart(&self) -> BTreeMap<String, String> {
        self.containers
            .iter()
            .map(|c| (c.service.clone(), c.restart.clone()))
            .collect()
    }
}

use crate::runtime::compose::{DATA_PATHS, covers};

/// Finds the stack on `h` and says what it found; None when there is no
/// compose to talk to (a failure is noted).
pub(super) async fn check_stack<S: Shell>(
    h: &S,
    cfg: &ComposeConfig,
    roles: BTreeMap<String, String>,
    source_project: Option<&str>,
    r: &mut Report<'_>,
) -> Result<Option<Stack>, StepFailure> {
    let Some((cli, version)) = compose::detect_cli(h).await? else {
        r.note(
            h.name(),
            "compose",
            Fail,
            "neither 'docker compose' nor 'docker-compose' answers: install Docker's compose plugin (docker-compose-plugin) or docker-compose",
        );
        return Ok(None);
    };
    r.note(
        h.name(),
        "compose",
        Pass,
        format!("{} {version}", cli.name()),
    );
    let from_labels = compose::running_project(h, &cfg.dir).await?;
    let name = cfg
        .project
        .clone()
        .or_else(|| from_labels.clone())
        .or_else(|| source_project.map(String::from))
        .unwrap_or_else(|| default_project_name(&cfg.dir));
    let project = Project {
        cli,
        dir: cfg.dir.clone(),
        files: absolute_files(&cfg.dir, &cfg.files),
        name,
    };
    let has_file = h
        .run_quiet(&crate::remote::RemoteCommand::script(
            crate::remote::RunAs::Root,
            HAS_COMPOSE_FILE,
            &[&cfg.dir],
        ))
        .await?
        .success()
        || !cfg.files.is_empty();
    if !has_file {
        return Ok(no_compose_file(h, cfg, project, roles, r));
    }
    let resolved = match compose::resolved(h, &project).await {
        Ok(c) => c,
        Err(e) => {
            r.note(h.name(), "compose project", Fail, e.to_string());
            return Ok(None);
        }
    };
    let containers = compose::containers(h, &project).await?;
    let running = containers.iter().filter(|c| c.running).count();
    r.note(
        h.name(),
        "compose project",
        Pass,
        format!(
            "'{}' in {}: {} services, {} containers ({running} running){}",
            project.name,
            project.dir,
            resolved.services.len(),
            containers.len(),
            match (&from_labels, &cfg.project) {
                (Some(l), Some(c)) if l != c =>
                    format!("; its containers say project '{l}', the config '{c}'"),
                _ => String::new(),
            }
        ),
    );
    let stack = Stack {
        project,
        resolved: Some(resolved),
        containers,
        roles,
    };
    check_roles(h, &stack, r);
    check_pgdata(h, &stack, r).await?;
    check_storage(h, &stack, r);
    check_restart(h, &stack, r);
    Ok(Some(stack))
}

/// A project directory without a compose file: a failure on the source; on
/// a new host, where the source's files will go.
fn no_compose_file<S: Shell>(
    h: &S,
    cfg: &ComposeConfig,
    project: Project,
    roles: BTreeMap<String, String>,
    r: &mut Report<'_>,
) -> Option<Stack> {
    if h.role() == Role::Source {
        r.note(
            h.name(),
            "compose project",
            Fail,
            format!("no compose file in '{}': is the stack deployed there? Give its directory as [source] compose, or its files as compose_file", cfg.dir),
        );
        return None;
    }
    r.note(
        h.name(),
        "compose project",
        Pass,
        format!(
            "no stack in '{}' yet: the source's compose files go there, project '{}'",
            cfg.dir, project.name
        ),
    );
    Some(Stack {
        project,
        resolved: None,
        containers: Vec::new(),
        roles,
    })
}

/// Whether the project directory holds a file compose reads by default.
const HAS_COMPOSE_FILE: &str = r#"for f in compose.yaml compose.yml docker-compose.yml docker-compose.yaml; do
  [ -f "$1/$f" ] && exit 0
done
exit 1"#;

/// Each role the move needs is a service of the stack.
fn check_roles<S: Shell>(h: &S, stack: &Stack, r: &mut Report<'_>) {
    let Some(resolved) = &stack.resolved else {
        return;
    };
    let table = match h.role() {
        Role::Source => "source",
        Role::Target => "target",
    };
    let missing: Vec<String> = stack
        .roles
        .iter()
        .filter(|(_, s)| !resolved.services.contains_key(*s))
        .map(|(role, s)| format!("{role} = '{s}'"))
        .collect();
    if missing.is_empty() {
        let named: Vec<String> = stack
            .roles
            .iter()
            .map(|(role, s)| format!("{role} {s}"))
            .collect();
        r.note(h.name(), "compose services", Pass, named.join(", "));
    } else {
        let have: Vec<&str> = resolved.services.keys().map(String::as_str).collect();
        r.note(
            h.name(),
            "compose services",
            Fail,
            format!(
                "no service for {}; the stack has {}. Name them in [{table}] compose_services = {{ role = \"service\" }}",
                missing.join(", "),
                have.join(", ")
            ),
        );
    }
}

/// A name Docker made up for a volume nobody named.
fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit())
}

/// Where the database's and Redis's data live: what the source risks, and
/// what the target must have before it may start.
fn check_storage<S: Shell>(h: &S, stack: &Stack, r: &mut Report<'_>) {
    for (role, path, dir) in DATA_PATHS {
        let Some(service) = stack.service(role) else {
            continue;
        };
        if let Some(c) = stack.containers.iter().find(|c| c.service == service) {
            let at = locate(&c.mounts, path, "");
            let (status, said) = match &at.storage {
                Storage::Volume(name) if is_anonymous(name) => (
                    Warn,
                    format!(
                        "'{service}' keeps {path} in an anonymous volume ({}…): not persisted by the compose file, one 'docker compose rm' or 'down -v' away from being lost. hikkoshi only stops and starts this container, never removes it",
                        &name[..12]
                    ),
                ),
                Storage::ContainerLayer => (
                    Warn,
                    format!(
                        "'{service}' keeps {path} inside the container itself: removing the container loses it. hikkoshi only stops and starts it, never removes it"
                    ),
                ),
                Storage::Volume(name) => (Pass, format!("'{service}': {path} in volume '{name}'")),
                Storage::Bind | Storage::Host => {
                    (Pass, format!("'{service}': {path} in {}", at.path))
                }
            };
            r.note(h.name(), "storage", status, said);
        } else if h.role() == Role::Target
            && let Some(spec) = stack
                .resolved
                .as_ref()
                .and_then(|x| x.services.get(service))
        {
            let kept = spec.mounts.iter().any(|m| {
                matches!(m.kind, MountKind::Bind | MountKind::Volume) && covers(&m.target, path)
            });
            if !kept {
                r.note(
                    h.name(),
                    "storage",
                    Fail,
                    format!("'{service}' would keep {path} without persistent storage (the trap the old stack is in): add a volume for it under services.{service}.volumes, like '- ./{dir}:{path}'"),
                );
            }
        }
    }
}

/// A new stack's database image laid out like PostgreSQL's 18+ images keeps
/// its data in a `PGDATA` below `/var/lib/postgresql` (its declared volume);
/// a compose file that still mounts `/var/lib/postgresql/data` leaves the
/// data in an anonymous volume. Only a target that has the image is asked.
async fn check_pgdata<S: Shell>(
    h: &S,
    stack: &Stack,
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    if h.role() != Role::Target {
        return Ok(());
    }
    let Some(service) = stack.service("database") else {
        return Ok(());
    };
    let Some(spec) = stack
        .resolved
        .as_ref()
        .and_then(|x| x.services.get(service))
    else {
        return Ok(());
    };
    let Some(image) = &spec.image else {
        return Ok(());
    };
    let Some((Some(pgdata), volumes)) = compose::image_data(h, image).await? else {
        return Ok(());
    };
    let persistent: Vec<&compose::MountSpec> = spec
        .mounts
        .iter()
        .filter(|m| matches!(m.kind, MountKind::Bind | MountKind::Volume))
        .collect();
    if persistent.iter().any(|m| covers(&m.target, &pgdata)) {
        return Ok(());
    }
    let Some(old_way) = persistent
        .iter()
        .find(|m| covers(&m.target, DATA_PATHS[0].1))
    else {
        return Ok(());
    };
    let mount = volumes
        .iter()
        .find(|v| covers(v, &pgdata))
        .cloned()
        .unwrap_or_else(|| pgdata.clone());
    let source = old_way
        .source
        .clone()
        .unwrap_or_else(|| "./postgres".into());
    r.note(
        h.name(),
        "storage",
        Fail,
        format!(
            "'{service}' runs {image}, which keeps its data in PGDATA={pgdata} (laid out like PostgreSQL's 18+ images), but the compose file mounts '{}': the data would go into an anonymous volume. Change that line under services.{service}.volumes to '- {source}:{mount}'",
            old_way.written
        ),
    );
    Ok(())
}

/// `restart: always` brings a stopped stack back when Docker restarts.
fn check_restart<S: Shell>(h: &S, stack: &Stack, r: &mut Report<'_>) {
    if h.role() != Role::Source {
        return;
    }
    let restarting: Vec<&str> = stack
        .containers
        .iter()
        .filter(|c| c.restart != "no")
        .map(|c| c.service.as_str())
        .collect();
    if !restarting.is_empty() {
        r.note(
            h.name(),
            "restart policy",
            Pass,
            format!(
                "{} restart by themselves when Docker or the host restarts: a stopped stack comes back on its own after a reboot unless their policy is set to 'no'",
                restarting.join(", ")
            ),
        );
    }
}

/// The app's code is its image: which one each host's web service runs, and
/// where the new host gets it.
pub(super) fn check_images(stacks: &[Option<Stack>; 2], names: (&str, &str), r: &mut Report<'_>) {
    let image = |st: &Stack| {
        let web = st.service("web")?;
        let spec = st.resolved.as_ref()?.services.get(web)?;
        Some((spec.image.clone()?, spec.built))
    };
    match stacks {
        [Some(src), dst] => {
            let Some((from, built)) = image(src) else {
                return;
            };
            let to = dst.as_ref().and_then(image).map(|(i, _)| i);
            let (status, said) = match to {
                Some(to) if to != from => (
                    Warn,
                    format!(
                        "the source runs {from}, the new host's compose file names {to}: the database must suit the newer one (its migrations run after the restore)"
                    ),
                ),
                _ if built => (
                    Pass,
                    format!("{from}, built on the source (build: in its compose file)"),
                ),
                _ => (Pass, from),
            };
            r.note(names.0, "app image", status, said);
        }
        [None, Some(dst)] => {
            if let Some((to, _)) = image(dst) {
                r.note(names.1, "app image", Pass, to);
            }
        }
        [None, None] => {}
    }
}

/// A new host without a stack yet: what the `stack` step will give it.
/// Where the old stack keeps the database's or Redis's data in no volume,
/// the new one gets an override file (compose reads it by itself), unless
/// the config names the compose files; each image is there already,
/// streamed from the old host, or pulled.
pub(super) async fn check_new_stack<S: Shell>(
    src: &S,
    dst: &S,
    stacks: &[Option<Stack>; 2],
    r: &mut Report<'_>,
) -> Result<(), StepFailure> {
    let [Some(from), Some(to)] = stacks else {
        return Ok(());
    };
    let (Some(resolved), None) = (&from.resolved, &to.resolved) else {
        return Ok(());
    };
    for (service, path, dir) in compose::unpersisted(resolved, &from.roles) {
        if to.project.files.is_empty() {
            r.note(
                dst.name(),
                "storage",
                Pass,
                format!(
                    "'{service}' will keep {path} in {}/{dir}: the 'stack' step writes an override file beside the copied compose file, which compose reads by itself",
                    to.project.dir
                ),
            );
        } else {
            r.note(
                dst.name(),
                "storage",
                Fail,
                format!(
                    "'{service}' would keep {path} without persistent storage, and the config names the compose files, so hikkoshi adds none: put the compose files in '{}' yourself with '- ./{dir}:{path}' under services.{service}.volumes",
                    to.project.dir
                ),
            );
        }
    }
    let mut images: Vec<&str> = resolved
        .services
        .values()
        .filter_map(|s| s.image.as_deref())
        .collect();
    images.sort_unstable();
    images.dedup();
    for image in images {
        let said = if compose::image_id(dst, image).await?.is_some() {
            format!("{image}: on {} already", dst.name())
        } else if let Some(found) = compose::image_id(src, image).await? {
            let size = found
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u64>().ok())
                .map(|b| format!(", {}", crate::units::human_bytes(b)))
                .unwrap_or_default();
            format!(
                "{image}: streamed from {} (docker save | docker load through this machine{size})",
                src.name()
            )
        } else {
            format!(
                "{image}: on neither host; pulled on {} from its registry",
                dst.name()
            )
        };
        r.note(dst.name(), "images", Pass, said);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
