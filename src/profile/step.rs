//! A profile's step once its keys are checked: what every step has, and a
//! body that holds only what its kind takes. The flat `RawStep` is what TOML
//! gives; nothing outside the profile reads it.

use std::collections::BTreeMap;

use super::spec::{
    CommandSpec, DowntimeMark, HostSel, OneOrMany, RawStep, Rehearsal, StepKind, UndoSpec,
};

#[derive(Debug, Clone)]
pub struct StepSpec {
    pub id: String,
    pub phase: String,
    pub title: String,
    pub why: String,
    /// What brings the old host back if the run stops after this step began
    /// and before the new host went live.
    pub undo: Option<UndoSpec>,
    /// Whom the step's commands or copies run as on the hosts.
    pub user: Option<String>,
    pub confirm: Option<String>,
    pub downtime: Option<DowntimeMark>,
    pub optional: bool,
    pub when: Option<OneOrMany>,
    pub timeout: Option<String>,
    /// Also runs when a run stops early (like `finally`), unless --keep-dump.
    pub finally: bool,
    /// Steps whose results this one removes: a resumed run does them again.
    pub resets: Vec<String>,
    /// Starts together with this earlier step and runs beside it (and the
    /// steps after it) until the run reaches this step's own place.
    pub beside: Option<String>,
    /// Left out of a rehearsal unless said otherwise: nothing runs against a
    /// live instance by default.
    pub rehearsal: Option<Rehearsal>,
    /// Said instead when `when` leaves the step out (media in object storage).
    pub otherwise: Option<String>,
    /// Between the downtime marks of the real run (set when the profile is
    /// loaded): what a rehearsal measures to predict the downtime.
    pub in_downtime: bool,
    pub body: StepBody,
}

/// What a step does, by kind.
#[derive(Debug, Clone)]
pub enum StepBody {
    Command(CommandBody),
    Preflight(PreflightBody),
    Transfer(TransferBody),
    Rsync(RsyncBody),
    Verify,
    Redis(RedisBody),
    Health(HealthBody),
    Dns,
    Services(ServicesBody),
    /// The new host's compose stack made ready (files, storage, images,
    /// database and Redis started).
    Stack,
}

/// What a `services` step does to the app's services, whichever manager
/// runs them (systemd units, or a compose stack's services).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Stop,
    Start,
    /// Run now and after every reboot.
    GoLive,
    /// Never start by itself again.
    Disable,
    /// Never start at all, not even by hand (a rehearsal's copy).
    Mask,
}

impl ServiceAction {
    pub const NAMES: [&'static str; 5] = ["stop", "start", "go-live", "disable", "mask"];

    pub fn parse(s: &str) -> Option<ServiceAction> {
        Some(match s {
            "stop" => ServiceAction::Stop,
            "start" => ServiceAction::Start,
            "go-live" => ServiceAction::GoLive,
            "disable" => ServiceAction::Disable,
            "mask" => ServiceAction::Mask,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ServiceAction::Stop => "stop",
            ServiceAction::Start => "start",
            ServiceAction::GoLive => "go live",
            ServiceAction::Disable => "disable",
            ServiceAction::Mask => "mask",
        }
    }
}

/// Which of the app's services: all of them, the web service, the workers
/// (what federates), or Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    App,
    Web,
    Worker,
    Redis,
}

impl Which {
    pub const NAMES: [&'static str; 4] = ["app", "web", "worker", "redis"];

    pub fn parse(s: &str) -> Option<Which> {
        Some(match s {
            "app" => Which::App,
            "web" => Which::Web,
            "worker" => Which::Worker,
            "redis" => Which::Redis,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ServicesBody {
    pub host: HostSel,
    pub action: ServiceAction,
    pub which: Which,
    /// A rollback undoes it (stopping, going live); off in a rehearsal.
    pub undo: bool,
}

/// Commands from the profile, on one host or both.
#[derive(Debug, Clone)]
pub struct CommandBody {
    pub host: HostSel,
    pub commands: Vec<CommandSpec>,
    pub cwd: Option<String>,
    pub env: BTreeMap<String, String>,
    pub umask: Option<String>,
    /// This step creates the target database and restores into it: what a
    /// run that stops after it leaves behind, marked with the run's id.
    pub creates_database: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PreflightBody {
    pub env_file: Option<String>,
    pub domain_key: Option<String>,
    pub version_file: Option<String>,
    pub media: Vec<String>,
    /// Files that must be readable on the source.
    pub files: Vec<String>,
    /// Misskey's .config/default.yml: read for the database, Redis, url, id
    /// method, search and port.
    pub misskey_config: Option<String>,
    /// Object storage is on when this env_file setting is "true" (Mastodon's
    /// S3_ENABLED) ...
    pub object_storage_env: Option<String>,
    /// ... or when this query on the source database answers true (Misskey
    /// keeps the switch in its `meta` table).
    pub object_storage_sql: Option<String>,
}

/// A file (or each of `files`, to the same path) from the old host to the new.
#[derive(Debug, Clone)]
pub struct TransferBody {
    pub from: Option<String>,
    pub to: Option<String>,
    pub files: Vec<String>,
    pub mode: String,
    pub owner: Option<String>,
    pub backup: bool,
}

#[derive(Debug, Clone)]
pub struct RsyncBody {
    pub paths: Vec<String>,
    pub delete: bool,
    pub exclude: Vec<String>,
    /// A directory inside each path holding what the app can fetch again
    /// (remote media): left out when the config says `[move] media_cache = "skip"`.
    pub cache: Option<String>,
    /// Said when the cache is left out: what to run afterwards.
    pub cache_note: Option<String>,
    /// Run both rsyncs with this niceness (0-19), so a copy beside the
    /// database move leaves the CPU to the restore.
    pub nice: Option<u8>,
}

#[derive(Debug, Clone)]
pub struct RedisBody {
    /// The systemd unit; a compose stack's Redis is its `redis` role.
    pub service: String,
    /// A rollback starts Redis again on both hosts; off in a rehearsal.
    pub undo: bool,
}

#[derive(Debug, Clone)]
pub struct HealthBody {
    pub url: String,
    /// Ask from this machine with the URL's host pinned to each [dns] expect
    /// address (curl --resolve): the new host as visitors will reach it.
    pub pinned: bool,
}

impl StepSpec {
    /// A step whose keys `validate` accepted for its kind.
    pub(super) fn from_raw(r: RawStep) -> StepSpec {
        let body = match r.kind {
            StepKind::Command => StepBody::Command(CommandBody {
                host: r.host.unwrap_or(HostSel::Both),
                commands: r.commands,
                cwd: r.cwd,
                env: r.env,
                umask: r.umask,
                creates_database: r.creates_database,
            }),
            StepKind::Preflight => StepBody::Preflight(PreflightBody {
                env_file: r.env_file,
                domain_key: r.domain_key,
                version_file: r.version_file,
                media: r.media,
                files: r.files,
                misskey_config: r.misskey_config,
                object_storage_env: r.object_storage_env,
                object_storage_sql: r.object_storage_sql,
            }),
            StepKind::Transfer => StepBody::Transfer(TransferBody {
                from: r.from,
                to: r.to,
                files: r.files,
                mode: r.mode.unwrap_or_else(|| "0600".into()),
                owner: r.owner,
                backup: r.backup,
            }),
            StepKind::Rsync => StepBody::Rsync(RsyncBody {
                paths: r.paths,
                delete: r.delete,
                exclude: r.exclude,
                cache: r.cache,
                cache_note: r.cache_note,
                nice: r.nice,
            }),
            StepKind::Verify => StepBody::Verify,
            StepKind::Redis => StepBody::Redis(RedisBody {
                service: r.service.unwrap_or_default(),
                undo: true,
            }),
            StepKind::Health => StepBody::Health(HealthBody {
                url: r.url.unwrap_or_default(),
                pinned: r.pinned,
            }),
            StepKind::Dns => StepBody::Dns,
            StepKind::Stack => StepBody::Stack,
            StepKind::Services => {
                let action = r
                    .action
                    .as_deref()
                    .and_then(ServiceAction::parse)
                    .unwrap_or(ServiceAction::Stop);
                StepBody::Services(ServicesBody {
                    host: r.host.unwrap_or(HostSel::Both),
                    action,
                    which: r
                        .services
                        .as_deref()
                        .and_then(Which::parse)
                        .unwrap_or(Which::App),
                    undo: matches!(action, ServiceAction::Stop | ServiceAction::GoLive),
                })
            }
        };
        StepSpec {
            id: r.id,
            phase: r.phase,
            title: r.title,
            why: r.why,
            undo: r.undo,
            user: r.user,
            confirm: r.confirm,
            downtime: r.downtime,
            optional: r.optional,
            when: r.when,
            timeout: r.timeout,
            finally: r.finally,
            resets: r.resets,
            beside: r.beside,
            rehearsal: r.rehearsal,
            otherwise: r.otherwise,
            in_downtime: false,
            body,
        }
    }

    pub fn kind(&self) -> StepKind {
        match &self.body {
            StepBody::Command(_) => StepKind::Command,
            StepBody::Preflight(_) => StepKind::Preflight,
            StepBody::Transfer(_) => StepKind::Transfer,
            StepBody::Rsync(_) => StepKind::Rsync,
            StepBody::Verify => StepKind::Verify,
            StepBody::Redis(_) => StepKind::Redis,
            StepBody::Health(_) => StepKind::Health,
            StepBody::Dns => StepKind::Dns,
            StepBody::Stack => StepKind::Stack,
            StepBody::Services(_) => StepKind::Services,
        }
    }

    /// What a rollback undoes: the profile's `undo`, or a `services` step's
    /// own reverse.
    pub fn has_undo(&self) -> bool {
        self.undo.is_some()
            || matches!(&self.body, StepBody::Services(s) if s.undo)
            || matches!(&self.body, StepBody::Redis(r) if r.undo)
    }

    /// A rehearsal undoes nothing: the old host never stopped.
    pub fn without_undo(mut self) -> StepSpec {
        self.undo = None;
        match &mut self.body {
            StepBody::Services(s) => s.undo = false,
            StepBody::Redis(r) => r.undo = false,
            _ => {}
        }
        self
    }

    /// The profile's commands of a command step; none for other kinds.
    pub fn commands(&self) -> &[CommandSpec] {
        match &self.body {
            StepBody::Command(c) => &c.commands,
            _ => &[],
        }
    }

    /// The paths the step copies or checks, as written: what a path setting
    /// may fill in.
    pub fn paths(&self) -> Vec<&String> {
        match &self.body {
            StepBody::Rsync(r) => r.paths.iter().collect(),
            StepBody::Transfer(t) => t.files.iter().collect(),
            StepBody::Preflight(p) => p.files.iter().chain(&p.media).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether this is the step that creates and fills the target database.
    pub fn creates_database(&self) -> bool {
        matches!(&self.body, StepBody::Command(c) if c.creates_database)
    }

    pub(crate) fn conditions(&self) -> Vec<String> {
        self.when.as_ref().map(OneOrMany::items).unwrap_or_default()
    }

    /// Every template string in the step, for placeholder validation.
    pub(super) fn templates(&self) -> Vec<&str> {
        let mut t: Vec<&str> = Vec::new();
        let mut singles: Vec<&Option<String>> = vec![&self.user, &self.confirm, &self.otherwise];
        let mut lists: Vec<&Vec<String>> = Vec::new();
        match &self.body {
            StepBody::Command(c) => {
                for cmd in &c.commands {
                    t.extend(cmd.argv().iter().map(String::as_str));
                    let (stdin, stdout) = cmd.files();
                    t.extend(stdin.into_iter().chain(stdout));
                    if let Some(i) = cmd.input() {
                        t.extend(i.argv.iter().map(String::as_str));
                        t.extend(i.user.iter().map(String::as_str));
                        t.extend(i.env.values().map(String::as_str));
                    }
                }
                singles.push(&c.cwd);
                t.extend(c.env.values().map(String::as_str));
            }
            StepBody::Preflight(p) => {
                singles.extend([&p.env_file, &p.version_file, &p.misskey_config]);
                lists.extend([&p.media, &p.files]);
            }
            StepBody::Transfer(x) => {
                singles.extend([&x.from, &x.to, &x.owner]);
                lists.push(&x.files);
            }
            StepBody::Rsync(x) => {
                singles.extend([&x.cache, &x.cache_note]);
                lists.push(&x.paths);
            }
            StepBody::Redis(x) => t.push(&x.service),
            StepBody::Health(x) => t.push(&x.url),
            StepBody::Verify | StepBody::Dns | StepBody::Services(_) | StepBody::Stack => {}
        }
        t.extend(singles.into_iter().flatten().map(String::as_str));
        t.extend(lists.into_iter().flatten().map(String::as_str));
        if let Some(u) = &self.undo {
            t.extend(u.user.iter().map(String::as_str));
            for c in &u.commands {
                t.extend(c.argv().iter().map(String::as_str));
            }
        }
        t
    }
}
