//! What preflight found that other step kinds need, typed. (The facts a
//! profile reads as placeholders are named in `profile::FACTS`.)

/// Facts other step kinds need in typed form.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub source_home: String,
    pub target_home: String,
    /// `ssh-keyscan` lines of the target's sshd as seen from the target itself.
    pub target_host_keys: Vec<String>,
    /// The target has rrsync, so the relay's key can be pinned to one directory.
    pub target_rrsync: bool,
    /// Where the target's sshd listens, as the target itself reaches it: the
    /// media relay connects there (hardened hosts use another port, or only
    /// their public address).
    pub target_sshd: Option<(String, u16)>,
    pub redis_port: String,
    pub source_rdb: Option<String>,
    pub target_rdb: Option<String>,
    pub schemas: Vec<String>,
    /// Bytes per second through this machine, as preflight measured them.
    pub link_bps: Option<f64>,
    /// The compose stack of a compose host (source, target): its project as
    /// compose addresses it, and its service for each role.
    pub stacks: [Option<StackFacts>; 2],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFacts {
    pub project: crate::runtime::compose::Project,
    pub roles: std::collections::BTreeMap<String, String>,
    /// Each service's restart policy before the move touched it.
    pub restart: std::collections::BTreeMap<String, String>,
}
