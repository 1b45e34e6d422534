//! Where each tool of a move runs, and as whom: the database (`psql`, the
//! PostgreSQL client tools), the services (`systemctl`) and the cache
//! (`redis-cli`) are reached only through here, so a step never builds their
//! command lines itself. Today every tool runs on the host (as the login, as
//! root through sudo, or as a named user through runuser/sudo: `remote::RunAs`,
//! with the run's tag carried into the process by `remote::wrap_argv`); Docker
//! Compose services join as another place behind the same functions.

pub mod cache;
pub mod database;
pub mod services;
