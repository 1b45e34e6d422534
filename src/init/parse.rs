//! What the files init reads on the old host say: Pleasanter's Rds.json (the
//! owner role and database, never the password) and nginx's configuration
//! (each site's names and the local ports it passes requests to).

use std::collections::{BTreeMap, BTreeSet};

use crate::steps::misskey::is_local;

/// The two values hikkoshi needs from Pleasanter's Rds.json; the passwords
/// beside them are never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsOwner {
    pub database: String,
    pub user: String,
}

/// A web server's site: its names and the local ports it passes requests to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Site {
    pub names: Vec<String>,
    pub ports: BTreeSet<u16>,
}

/// Database and UID of the owner's connection string in Rds.json.
pub(crate) fn parse_rds(text: &str) -> Result<RdsOwner, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let conn = v
        .get("OwnerConnectionString")
        .and_then(|c| c.as_str())
        .ok_or("it has no OwnerConnectionString")?;
    let mut database = None;
    let mut user = None;
    for part in conn.split(';') {
        let Some((k, val)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "database" => database = Some(val.trim().to_string()),
            "uid" | "user id" | "userid" | "username" | "user name" => {
                user = Some(val.trim().to_string())
            }
            _ => {}
        }
    }
    Ok(RdsOwner {
        database: database.ok_or("OwnerConnectionString has no Database")?,
        user: user.ok_or("OwnerConnectionString has no UID")?,
    })
}

/// The sites of an `nginx -T` dump: each server block's names and the local
/// ports it proxies to (directly or through an upstream block).
pub(crate) fn parse_nginx(text: &str) -> Vec<Site> {
    // Tokens: words, '{', '}', ';'; comments and quotes handled the simple way.
    let mut tokens: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut word = String::new();
        for c in line.chars() {
            match c {
                '{' | '}' | ';' => {
                    if !word.is_empty() {
                        tokens.push(std::mem::take(&mut word));
                    }
                    tokens.push(c.to_string());
                }
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        tokens.push(std::mem::take(&mut word));
                    }
                }
                '"' | '\'' => {}
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            tokens.push(word);
        }
    }
    // Statements with the block path they are in.
    let mut upstreams: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut sites = Vec::new();
    let mut stack: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<(Vec<String>, Vec<String>)> = None; // (names, proxy targets)
    let mut server_depth = None;
    let mut stmt: Vec<String> = Vec::new();
    for t in tokens {
        match t.as_str() {
            "{" => {
                let name = stmt.first().cloned().unwrap_or_default();
                let args = stmt.drain(..).skip(1).collect::<Vec<_>>();
                if name == "server" && stack.last().is_some_and(|(n, _)| n == "http") {
                    current = Some((Vec::new(), Vec::new()));
                    server_depth = Some(stack.len());
                }
                stack.push((name, args));
            }
            "}" => {
                stmt.clear();
                stack.pop();
                if server_depth == Some(stack.len())
                    && let Some((names, targets)) = current.take()
                {
                    server_depth = None;
                    sites.push((names, targets));
                }
            }
            ";" => {
                let name = stmt.first().cloned().unwrap_or_default();
                let args: Vec<String> = stmt.drain(..).skip(1).collect();
                if let Some((names, targets)) = current.as_mut() {
                    match name.as_str() {
                        "server_name" => names.extend(args),
                        "proxy_pass" | "fastcgi_pass" | "uwsgi_pass" | "grpc_pass" => {
                            targets.extend(args.into_iter().take(1))
                        }
                        _ => {}
                    }
                } else if name == "server"
                    && let Some((block, bargs)) = stack.last()
                    && block == "upstream"
                    && let (Some(up), Some(addr)) = (bargs.first(), args.first())
                    && let Some(port) = local_port(addr)
                {
                    upstreams.entry(up.clone()).or_default().insert(port);
                }
            }
            _ => stmt.push(t),
        }
    }
    sites
        .into_iter()
        .map(|(names, targets)| {
            let mut ports = BTreeSet::new();
            for t in targets {
                let rest = t.split_once("://").map_or(t.as_str(), |(_, r)| r);
                let hostport = rest.split('/').next().unwrap_or("");
                if let Some(port) = local_port(hostport) {
                    ports.insert(port);
                } else if let Some(up) = upstreams.get(hostport) {
                    ports.extend(up.iter().copied());
                }
            }
            Site { names, ports }
        })
        .collect()
}

/// The port of a `127.0.0.1:3000`, `localhost:3000` or `[::1]:3000` address.
fn local_port(addr: &str) -> Option<u16> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (is_local(host) || host == "0.0.0.0")
        .then(|| port.parse().ok())
        .flatten()
}
