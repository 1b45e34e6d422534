//! Where each tool of a move runs, and as whom: the database (`psql`, the
//! PostgreSQL client tools), the services (`systemctl`) and the cache
//! (`redis-cli`) are reached only through here, so a step never builds their
//! command lines itself. A tool runs at a `Place`: on the host (as the login,
//! as root through sudo, or as a named user through runuser/sudo) or inside a
//! Docker Compose service's container; either way the run's tag and
//! environment reach the process that does the work (`remote::wrap_argv`), so
//! a timeout or an abort finds and stops it.

pub mod cache;
pub mod compose;
pub mod database;
pub mod place;
pub mod services;

pub use place::{HostPath, Place, Storage, ToolError};

use crate::remote::RunAs;

/// How one host runs the tools of a move, built once per host from the
/// config and the profile; steps and preflight take their places from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// The database's administrator: the server's superuser (peer auth).
    pub db_admin: Place,
    /// The app's own user: its files, and the role its database connection uses.
    pub app: Place,
    /// Where the PostgreSQL client tools are asked for their versions.
    pub tools: Place,
    /// `redis-cli`.
    pub cache: Place,
    /// What starts and stops the app's services.
    pub services: services::Manager,
    /// A compose stack's service for each role; empty for systemd.
    pub roles: std::collections::BTreeMap<String, String>,
}

impl Runtime {
    /// A Docker Compose stack: the database's tools in its database service
    /// (as the image's `postgres` user, whom its socket trusts), redis-cli in
    /// its Redis service, files on the host as root (they keep the
    /// containers' numeric owners).
    pub fn compose(
        project: &compose::Project,
        roles: &std::collections::BTreeMap<String, String>,
        restart: &std::collections::BTreeMap<String, String>,
    ) -> Runtime {
        let database = roles.get("database").map_or("db", String::as_str);
        let redis = roles.get("redis").map(String::as_str);
        Runtime {
            roles: roles.clone(),
            db_admin: Place::Service(project.service(database, Some("postgres"))),
            app: Place::Host(RunAs::Root),
            tools: Place::Service(project.service(database, None)),
            cache: redis.map_or(Place::Host(RunAs::Root), |r| {
                Place::Service(project.service(r, None))
            }),
            services: services::Manager::Compose(project.clone(), restart.clone()),
        }
    }

    /// An install whose services are systemd units and whose tools are on the host.
    pub fn systemd(db_admin: &str, app_user: &str) -> Runtime {
        Runtime {
            db_admin: Place::Host(RunAs::User(db_admin.to_string())),
            app: Place::Host(RunAs::User(app_user.to_string())),
            tools: Place::Host(RunAs::Login),
            cache: Place::Host(RunAs::Root),
            services: services::Manager::Systemd,
            roles: std::collections::BTreeMap::new(),
        }
    }

    /// How a host will run the move's tools, read from the plan alone (no
    /// host is asked): what `plan` shows. A compose host is shown with v2's
    /// `docker compose`; preflight finds whether it has v1's instead.
    pub fn planned(plan: &crate::plan::Plan, source: bool) -> Runtime {
        match planned_project(plan, source) {
            Some(p) => Runtime::compose(
                &p,
                &plan.service_roles(source),
                &std::collections::BTreeMap::new(),
            ),
            None => Runtime::systemd(
                &plan
                    .vars
                    .text("db_admin")
                    .unwrap_or_else(|_| "postgres".into()),
                &plan.vars.text("user").unwrap_or_else(|_| "root".into()),
            ),
        }
    }

    /// Where a profile's command runs when it names a role (`at`): in that
    /// service of a compose stack (the database's tools as `postgres`), on
    /// the host as the step's user otherwise.
    pub fn place_for(&self, role: &str, host_user: RunAs) -> Place {
        match (&self.services, self.roles.get(role)) {
            (services::Manager::Compose(p, _), Some(service)) => {
                let user = (role == "database").then_some("postgres");
                Place::Service(p.service(service, user))
            }
            _ => Place::Host(host_user),
        }
    }
}

/// A compose host's project as the config gives it. Without a project name
/// the source's stack is the directory's default; the target takes the
/// source's name, since compose prefixes volume names with it.
pub fn planned_project(plan: &crate::plan::Plan, source: bool) -> Option<compose::Project> {
    let name_of = |c: &crate::config::ComposeConfig| {
        c.project
            .clone()
            .unwrap_or_else(|| compose::default_project_name(&c.dir))
    };
    let crate::config::Install::Compose(c) = plan.install(source) else {
        return None;
    };
    let name = match (&c.project, plan.install(true)) {
        (None, crate::config::Install::Compose(src)) if !source => name_of(src),
        _ => name_of(c),
    };
    Some(compose::Project {
        cli: compose::Cli::V2,
        dir: c.dir.clone(),
        files: compose::absolute_files(&c.dir, &c.files),
        name,
    })
}
