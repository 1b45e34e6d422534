//! A Docker Compose stack on one host: which compose it has (v2's `docker
//! compose` or v1's `docker-compose`), the project, and what its resolved
//! configuration says of each service (image, whether it is built here,
//! restart policy, mounts, published ports). Containers are always addressed
//! through compose (project + service) or its labels, never by name: v1 calls
//! them `proj_db_1`, v2 `proj-db-1`.

use std::collections::BTreeMap;

use serde::Deserialize;
use yaml_rust2::{Yaml, YamlLoader};

use super::ToolError;
use super::place::Mount;
use crate::remote::{Finished, InService, RemoteCommand, RemoteError, RunAs, Shell};

/// The compose command a host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cli {
    /// `docker compose` (the CLI plugin).
    V2,
    /// `docker-compose` (the Python one, 1.x).
    V1,
}

impl Cli {
    pub fn argv(self) -> Vec<String> {
        match self {
            Cli::V2 => vec!["docker".into(), "compose".into()],
            Cli::V1 => vec!["docker-compose".into()],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cli::V2 => "docker compose",
            Cli::V1 => "docker-compose",
        }
    }
}

/// A project as every compose command on a host addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub cli: Cli,
    pub dir: String,
    /// Absolute compose files; none: compose's default in `dir`.
    pub files: Vec<String>,
    pub name: String,
}

impl Project {
    /// `COMPOSE --project-directory DIR [-f FILE]... -p NAME`: the same
    /// project whatever the current directory, and whichever compose.
    pub fn base(&self) -> Vec<String> {
        let mut argv = self.cli.argv();
        argv.extend(["--project-directory".into(), self.dir.clone()]);
        for f in &self.files {
            argv.extend(["-f".into(), f.clone()]);
        }
        argv.extend(["-p".into(), self.name.clone()]);
        argv
    }

    /// `base` followed by a subcommand and its arguments.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = self.base();
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// A service of this project, as the place a tool runs in.
    pub fn service(&self, name: &str, user: Option<&str>) -> InService {
        InService {
            compose: self.base(),
            service: name.to_string(),
            user: user.map(String::from),
        }
    }
}

/// compose's own project name for a directory: its last component,
/// lowercased, without what a project name may not hold.
pub fn default_project_name(dir: &str) -> String {
    dir.rsplit('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        .collect::<String>()
        .trim_start_matches(['_', '-'])
        .to_string()
}

/// Files relative to the project directory made absolute.
pub fn absolute_files(dir: &str, files: &[String]) -> Vec<String> {
    files
        .iter()
        .map(|f| {
            if f.starts_with('/') {
                f.clone()
            } else {
                format!("{dir}/{}", f.trim_start_matches("./"))
            }
        })
        .collect()
}

/// How a mount in the compose file keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A host directory or file (`./public/system:/...`).
    Bind,
    /// A volume the file names (`db:/var/lib/postgresql/data`): compose
    /// prefixes it with the project name unless it is external or named.
    Volume,
    /// `- /data` alone: a new anonymous volume for each new container.
    Anonymous,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: MountKind,
    /// The host path (bind) or the volume's key in the file (volume).
    pub source: Option<String>,
    pub target: String,
    /// The line as it would be written in the file's short syntax.
    pub written: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub host_ip: Option<String>,
    pub published: u16,
    pub target: u16,
}

/// One service of the resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceSpec {
    pub name: String,
    pub image: Option<String>,
    /// `build:` is set: the image is made on the host from its checkout.
    pub built: bool,
    pub command: String,
    pub restart: Option<String>,
    pub user: Option<String>,
    pub mounts: Vec<MountSpec>,
    pub ports: Vec<Port>,
    pub env_files: Vec<String>,
    pub environment: BTreeMap<String, String>,
}

/// What `compose config` printed: the file after every merge and
/// interpolation, as compose itself will use it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    /// v2 prints the project's name; v1 does not.
    pub name: Option<String>,
    pub services: BTreeMap<String, ServiceSpec>,
    /// Top-level volumes: key -> the name Docker gives it, when the file says.
    pub volumes: BTreeMap<String, Option<String>>,
}

fn text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn words(v: &Yaml) -> String {
    match v {
        Yaml::Array(a) => a.iter().filter_map(text).collect::<Vec<_>>().join(" "),
        other => text(other).unwrap_or_default(),
    }
}

/// `SRC:DST[:MODE]`, `DST` alone, or compose's long form.
fn mount(v: &Yaml, dir: &str) -> Option<MountSpec> {
    if let Some(short) = v.as_str() {
        let parts: Vec<&str> = short.split(':').collect();
        let (source, target) = match parts.as_slice() {
            [t] => (None, (*t).to_string()),
            [s, t, ..] => (Some((*s).to_string()), (*t).to_string()),
            [] => return None,
        };
        let kind = match &source {
            None => MountKind::Anonymous,
            Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
                MountKind::Bind
            }
            Some(_) => MountKind::Volume,
        };
        let source = source.map(|s| absolute_bind(&kind, s, dir));
        return Some(MountSpec {
            kind,
            source,
            target,
            written: short.to_string(),
        });
    }
    let target = text(&v["target"])?;
    let source = text(&v["source"]);
    let kind = match text(&v["type"]).as_deref() {
        Some("bind") => MountKind::Bind,
        Some("tmpfs") => MountKind::Tmpfs,
        _ if source.is_none() => MountKind::Anonymous,
        _ => MountKind::Volume,
    };
    let written = match &source {
        Some(s) => format!("{s}:{target}"),
        None => target.clone(),
    };
    let source = source.map(|s| absolute_bind(&kind, s, dir));
    Some(MountSpec {
        kind,
        source,
        target,
        written,
    })
}

fn absolute_bind(kind: &MountKind, s: String, dir: &str) -> String {
    if *kind == MountKind::Bind && !s.starts_with('/') {
        absolute_files(dir, &[s]).remove(0)
    } else {
        s
    }
}

fn port(v: &Yaml) -> Option<Port> {
    if let Some(short) = text(v) {
        // [IP:]PUBLISHED:TARGET[/proto]
        let short = short.split('/').next().unwrap_or("").to_string();
        let parts: Vec<&str> = short.rsplitn(3, ':').collect();
        return match parts.as_slice() {
            [t, p] => Some(Port {
                host_ip: None,
                published: p.parse().ok()?,
                target: t.parse().ok()?,
            }),
            [t, p, ip] => Some(Port {
                host_ip: Some((*ip).to_string()),
                published: p.parse().ok()?,
                target: t.parse().ok()?,
            }),
            _ => None,
        };
    }
    Some(Port {
        host_ip: text(&v["host_ip"]),
        published: text(&v["published"])?.parse().ok()?,
        target: text(&v["target"])?.parse().ok()?,
    })
}

/// The settings a move reads from a service's environment. `compose config`
/// writes every `env_file` into its output, secrets included: nothing else
/// is kept, so no secret outlives the parse.
const KEPT_ENV: [&str; 12] = [
    "POSTGRES_USER",
    "POSTGRES_DB",
    "PGDATA",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "REDIS_HOST",
    "REDIS_PORT",
    "LOCAL_DOMAIN",
    "S3_ENABLED",
    "ES_ENABLED",
];

fn environment(v: &Yaml) -> BTreeMap<String, String> {
    let all = match v {
        Yaml::Hash(h) => h
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v).unwrap_or_default())))
            .collect(),
        Yaml::Array(a) => a
            .iter()
            .filter_map(|e| {
                let e = text(e)?;
                let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
                Some((k.to_string(), v.to_string()))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    all.into_iter()
        .filter(|(k, _)| KEPT_ENV.contains(&k.as_str()))
        .collect()
}

/// Reads `compose config`'s output (v1 or v2); `dir` makes relative bind
/// sources absolute (v1 leaves some relative).
pub fn parse_config(yaml: &str, dir: &str) -> Result<Resolved, String> {
    let docs = YamlLoader::load_from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let doc = docs.first().ok_or("an empty configuration")?;
    let Yaml::Hash(services) = &doc["services"] else {
        return Err("no services in the configuration".into());
    };
    let mut out = Resolved {
        name: text(&doc["name"]),
        ..Resolved::default()
    };
    for (name, s) in services {
        let Some(name) = text(name) else { continue };
        let list = |key: &str| match &s[key] {
            Yaml::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        let env_files = match &s["env_file"] {
            Yaml::Array(a) => a
                .iter()
                .filter_map(|e| text(e).or_else(|| text(&e["path"])))
                .collect(),
            other => text(other).into_iter().collect(),
        };
        out.services.insert(
            name.clone(),
            ServiceSpec {
                name,
                image: text(&s["image"]),
                built: !matches!(s["build"], Yaml::BadValue | Yaml::Null),
                command: words(&s["command"]),
                restart: text(&s["restart"]),
                user: text(&s["user"]),
                mounts: list("volumes")
                    .iter()
                    .filter_map(|m| mount(m, dir))
                    .collect(),
                ports: list("ports").iter().filter_map(port).collect(),
                env_files,
                environment: environment(&s["environment"]),
            },
        );
    }
    if let Yaml::Hash(volumes) = &doc["volumes"] {
        for (key, v) in volumes {
            if let Some(key) = text(key) {
                out.volumes.insert(key, text(&v["name"]));
            }
        }
    }
    Ok(out)
}

/// One container of the project, as Docker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub service: String,
    pub running: bool,
    /// `no`, `always`, `unless-stopped`, `on-failure`.
    pub restart: String,
    pub image: String,
    pub mounts: Vec<Mount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    id: String,
    config: InspectedConfig,
    state: InspectedState,
    host_config: InspectedHost,
    #[serde(default)]
    mounts: Vec<Mount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedState {
    #[serde(default)]
    running: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedHost {
    restart_policy: Option<RestartPolicy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RestartPolicy {
    #[serde(default)]
    name: String,
}

/// `docker inspect` of containers, as a JSON array.
pub(crate) fn parse_inspect(json: &str) -> Result<Vec<Container>, String> {
    let all: Vec<Inspected> =
        serde_json::from_str(json).map_err(|e| format!("unreadable docker inspect: {e}"))?;
    Ok(all
        .into_iter()
        .map(|c| Container {
            service: c
                .config
                .labels
                .get("com.docker.compose.service")
                .cloned()
                .unwrap_or_default(),
            id: c.id,
            running: c.state.running,
            restart: c
                .host_config
                .restart_policy
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "no".into()),
            image: c.config.image,
            mounts: c.mounts,
        })
        .collect())
}

/// Where the database and Redis images keep their data, by role, and the
/// directory beside the compose file that keeps it when hikkoshi persists it.
pub const DATA_PATHS: [(&str, &str, &str); 2] = [
    ("database", "/var/lib/postgresql/data", "postgres"),
    ("redis", "/data", "redis"),
];

/// Whether a mount at `mount` holds `path`.
pub fn covers(mount: &str, path: &str) -> bool {
    let m = mount.trim_end_matches('/');
    path == m || path.starts_with(&format!("{m}/"))
}

/// The data paths of the database and Redis services (by `roles`) that a
/// resolved configuration keeps in no volume or host directory:
/// (service, path, the directory hikkoshi would keep it in).
pub fn unpersisted(
    resolved: &Resolved,
    roles: &BTreeMap<String, String>,
) -> Vec<(String, &'static str, &'static str)> {
    DATA_PATHS
        .iter()
        .filter_map(|(role, path, dir)| {
            let service = roles.get(*role)?;
            let spec = resolved.services.get(service)?;
            let kept = spec.mounts.iter().any(|m| {
                matches!(m.kind, MountKind::Bind | MountKind::Volume) && covers(&m.target, path)
            });
            (!kept).then(|| (service.clone(), *path, *dir))
        })
        .collect()
}

/// The files of a project directory that make the stack on another host:
/// the compose files compose reads by default (with their overrides) and
/// compose's own `.env`, the ones that exist, one per line. $1: the directory.
pub const STACK_FILES: &str = r#"cd "$1" || exit
for f in compose.yaml compose.yml docker-compose.yml docker-compose.yaml \
    compose.override.yaml compose.override.yml docker-compose.override.yml docker-compose.override.yaml .env; do
  [ -f "$f" ] && printf '%s\n' "$f"
done
exit 0"#;

/// The env files a compose file's services name (`env_file:`), as paths on
/// its host. Read from the file itself: v1's `config` inlines them.
pub fn env_files_in(yaml: &str, dir: &str) -> Vec<String> {
    let Ok(docs) = YamlLoader::load_from_str(yaml) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for doc in &docs {
        let Yaml::Hash(services) = &doc["services"] else {
            continue;
        };
        for s in services.values() {
            let named: Vec<String> = match &s["env_file"] {
                Yaml::Array(a) => a
                    .iter()
                    .filter_map(|e| text(e).or_else(|| text(&e["path"])))
                    .collect(),
                other => text(other).into_iter().collect(),
            };
            for f in named {
                let abs = absolute_files(dir, std::slice::from_ref(&f))
                    .pop()
                    .unwrap_or(f);
                if !out.contains(&abs) {
                    out.push(abs);
                }
            }
        }
    }
    out
}

/// The override file compose reads beside the base file `base` by default.
pub fn override_for(base: &str) -> Option<&'static str> {
    Some(match base {
        "compose.yaml" => "compose.override.yaml",
        "compose.yml" => "compose.override.yml",
        "docker-compose.yml" => "docker-compose.override.yml",
        "docker-compose.yaml" => "docker-compose.override.yaml",
        _ => return None,
    })
}

/// `docker image inspect -f {{.Id}} IMAGE`: whether the host has it.
pub async fn image_id(h: &impl Shell, image: &str) -> Result<Option<String>, RemoteError> {
    let out = answer(
        h,
        [
            "docker",
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Size}}",
            "--",
            image,
        ]
        .map(String::from)
        .to_vec(),
    )
    .await?;
    Ok(out
        .success()
        .then(|| out.stdout.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// What an image says of its data: its `PGDATA` (when it sets one) and its
/// declared volumes; None when the host does not have the image.
pub async fn image_data(
    h: &impl Shell,
    image: &str,
) -> Result<Option<(Option<String>, Vec<String>)>, RemoteError> {
    let out = answer(
        h,
        [
            "docker",
            "image",
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}{{range $k, $v := .Config.Volumes}}VOLUME={{println $k}}{{end}}",
            "--",
            image,
        ]
        .map(String::from)
        .to_vec(),
    )
    .await?;
    if !out.success() {
        return Ok(None);
    }
    let mut pgdata = None;
    let mut volumes = Vec::new();
    for line in out.stdout.lines() {
        if let Some(v) = line.strip_prefix("PGDATA=") {
            pgdata = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("VOLUME=") {
            volumes.push(v.trim().to_string());
        }
    }
    Ok(Some((pgdata, volumes)))
}

/// `docker save IMAGE` on one host, read by `docker load` on another.
pub fn save(image: &str) -> RemoteCommand {
    RemoteCommand::new(RunAs::Root, ["docker", "save", "--", image])
}

pub fn load() -> RemoteCommand {
    RemoteCommand::new(RunAs::Root, ["docker", "load", "-q"])
}

async fn answer(h: &impl Shell, argv: Vec<String>) -> Result<Finished, RemoteError> {
    h.run_quiet(&RemoteCommand::new(RunAs::Root, argv)).await
}

fn failed(h: &impl Shell, argv: &[String], out: &Finished) -> ToolError {
    ToolError::Failed {
        host: h.name().to_string(),
        command: crate::plan::shell_join(argv),
        exit: out.exit_text(),
        message: out.cause(),
    }
}

/// Which compose the host has, and its version: v2 when both are there.
pub async fn detect_cli(h: &impl Shell) -> Result<Option<(Cli, String)>, RemoteError> {
    for cli in [Cli::V2, Cli::V1] {
        let mut argv = cli.argv();
        argv.extend(["version".into(), "--short".into()]);
        let out = answer(h, argv).await?;
        if out.success() && !out.stdout.trim().is_empty() {
            return Ok(Some((cli, out.stdout.trim().to_string())));
        }
    }
    Ok(None)
}

/// The project name the containers made from `dir` carry (compose writes it
/// in their labels), when any exist.
pub async fn running_project(h: &impl Shell, dir: &str) -> Result<Option<String>, ToolError> {
    let argv: Vec<String> = [
        "docker",
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project.working_dir={dir}"),
        "--format",
        "{{.Label \"com.docker.compose.project\"}}",
    ]
    .map(String::from)
    .to_vec();
    let out = answer(h, argv.clone()).await?;
    if !out.success() {
        return Err(failed(h, &argv, &out));
    }
    let mut names: Vec<&str> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(names.first().map(|n| n.to_string()))
}

/// `compose config`: the configuration compose will use.
pub async fn resolved(h: &impl Shell, p: &Project) -> Result<Resolved, ToolError> {
    let argv = p.argv(&["config"]);
    let out = answer(h, argv.clone()).await?;
    if !out.success() {
        return Err(failed(h, &argv, &out));
    }
    parse_config(&out.stdout, &p.dir).map_err(|message| ToolError::Failed {
        host: h.name().to_string(),
        command: crate::plan::shell_join(&argv),
        exit: "exit 0".into(),
        message,
    })
}

/// Every container of the project (running or not), found by its label.
pub async fn containers(h: &impl Shell, p: &Project) -> Result<Vec<Container>, ToolError> {
    let argv: Vec<String> = [
        "docker",
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={}", p.name),
    ]
    .map(String::from)
    .to_vec();
    let out = answer(h, argv.clone()).await?;
    if !out.success() {
        return Err(failed(h, &argv, &out));
    }
    let ids: Vec<String> = out.stdout.split_whitespace().map(String::from).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut inspect = vec!["docker".to_string(), "inspect".into(), "--".into()];
    inspect.extend(ids);
    let out = answer(h, inspect.clone()).await?;
    if !out.success() {
        return Err(failed(h, &inspect, &out));
    }
    parse_inspect(&out.stdout).map_err(|message| ToolError::Failed {
        host: h.name().to_string(),
        command: crate::plan::shell_join(&inspect),
        exit: "exit 0".into(),
        message,
    })
}

#[cfg(test)]
mod tests;
