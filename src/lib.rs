//! hikkoshi moves a self-hosted, Postgres-backed web app from an old server to a
//! new one over SSH. Data flows one way: config + profile -> plan -> engine ->
//! events -> journal and front ends; commands flow back into the engine.

pub mod cli;
pub mod config;
pub mod dns;
pub mod engine;
pub mod events;
pub mod init;
pub mod journal;
pub mod plan;
pub mod prediction;
pub mod profile;
pub mod redact;
pub mod remote;
pub mod run_state;
pub mod runtime;
pub mod steps;
pub mod ui;
pub mod units;
