//! Where each tool of a move runs, and as whom: the database (`psql`, the
//! PostgreSQL client tools), the services (`systemctl`) and the cache
//! (`redis-cli`) are reached only through here, so a step never builds their
//! command lines itself. A tool runs at a `Place`: on the host (as the login,
//! as root through sudo, or as a named user through runuser/sudo) or inside a
//! Docker Compose service's container; either way the run's tag and
//! environment reach the process that does the work (`remote::wrap_argv`), so
//! a timeout or an abort finds and stops it.

pub mod cache;
pub mod database;
pub mod place;
pub mod services;

pub use place::{HostPath, Place, Storage, ToolError};
