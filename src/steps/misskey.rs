//! Misskey's `.config/default.yml`: what preflight reads from it to fill the
//! plan (database, Redis, port) and to warn about what must never change (url,
//! id method) or does not move (a Meilisearch index). Its values stay in memory;
//! the secrets in it are handed to the redactor before anything is shown.

use yaml_rust2::{Yaml, YamlLoader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// sqlLike (the default): nothing outside the database.
    Sql,
    /// sqlPgroonga: needs the PGroonga extension in the target's PostgreSQL.
    Pgroonga,
    /// An index in Meilisearch, which the database move does not carry.
    Meilisearch { host: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisskeyConfig {
    pub url: String,
    pub port: u16,
    pub db_host: String,
    pub db_port: u16,
    pub db_name: String,
    pub db_user: String,
    pub redis_host: String,
    pub redis_port: u16,
    pub id: String,
    pub search: Search,
    /// Passwords and keys, as written: never to be shown.
    pub secrets: Vec<String>,
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

fn port(v: &Yaml, what: &str, default: u16) -> Result<u16, String> {
    match v {
        Yaml::BadValue | Yaml::Null => Ok(default),
        other => text(other)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("{what} is not a port number")),
    }
}

fn required(doc: &Yaml, path: &[&str]) -> Result<String, String> {
    let mut v = doc;
    for p in path {
        v = &v[*p];
    }
    text(v)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("'{}' is not set", path.join(".")))
}

/// Every string under a key that names a secret, anywhere in the file.
fn collect_secrets(v: &Yaml, out: &mut Vec<String>) {
    match v {
        Yaml::Hash(h) => {
            for (k, val) in h {
                let secret = k.as_str().is_some_and(|k| {
                    let k = k.to_ascii_lowercase();
                    ["pass", "key", "secret", "token"]
                        .iter()
                        .any(|s| k.contains(s))
                });
                match (secret, text(val)) {
                    (true, Some(t)) if !t.is_empty() => out.push(t),
                    _ => collect_secrets(val, out),
                }
            }
        }
        Yaml::Array(a) => a.iter().for_each(|x| collect_secrets(x, out)),
        _ => {}
    }
}

impl MisskeyConfig {
    pub fn parse(text_in: &str) -> Result<MisskeyConfig, String> {
        let docs =
            YamlLoader::load_from_str(text_in).map_err(|e| format!("not valid YAML: {e}"))?;
        let doc = docs.first().ok_or("the file is empty")?;
        let mut secrets = Vec::new();
        collect_secrets(doc, &mut secrets);
        let search = {
            let provider = text(&doc["fulltextSearch"]["provider"]);
            let meili = text(&doc["meilisearch"]["host"]);
            match (provider.as_deref(), meili) {
                (Some("sqlPgroonga"), _) => Search::Pgroonga,
                (Some("meilisearch"), host) => Search::Meilisearch {
                    host: host.unwrap_or_default(),
                },
                // Before fulltextSearch existed, a meilisearch section meant it was used.
                (None, Some(host)) => Search::Meilisearch { host },
                _ => Search::Sql,
            }
        };
        Ok(MisskeyConfig {
            url: required(doc, &["url"])?,
            port: port(&doc["port"], "'port'", 3000)?,
            db_host: text(&doc["db"]["host"]).unwrap_or_else(|| "localhost".into()),
            db_port: port(&doc["db"]["port"], "'db.port'", 5432)?,
            db_name: required(doc, &["db", "db"])?,
            db_user: required(doc, &["db", "user"])?,
            redis_host: text(&doc["redis"]["host"]).unwrap_or_else(|| "localhost".into()),
            redis_port: port(&doc["redis"]["port"], "'redis.port'", 6379)?,
            id: text(&doc["id"]).unwrap_or_else(|| "aidx".into()),
            search,
            secrets,
        })
    }

    /// The host part of `url`, which must be the config's domain.
    pub(crate) fn url_host(&self) -> Option<String> {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
    }
}

/// A database or Redis on this host, not on another machine.
pub(crate) fn is_local(host: &str) -> bool {
    matches!(host, "" | "localhost" | "127.0.0.1" | "::1") || host.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
# Misskey configuration
url: https://misskey.example.net/
port: 3001

db:
  host: localhost
  port: 5432
  db: misskey_db
  user: misskey
  pass: "s3cret#pass"

dbReplications: false

redis:
  host: localhost
  port: 6379
  #pass: example-pass
  prefix: misskey.example.net

fulltextSearch:
  provider: sqlLike

#meilisearch:
#  host: localhost
#  port: 7700
#  apiKey: ''

id: 'aidx'
"#;

    #[test]
    fn reads_what_the_move_needs() {
        let c = MisskeyConfig::parse(EXAMPLE).expect("parses");
        assert_eq!(c.url_host().as_deref(), Some("misskey.example.net"));
        assert_eq!(c.port, 3001);
        assert_eq!(
            (c.db_name.as_str(), c.db_user.as_str()),
            ("misskey_db", "misskey")
        );
        assert_eq!((c.db_host.as_str(), c.db_port), ("localhost", 5432));
        assert_eq!((c.redis_host.as_str(), c.redis_port), ("localhost", 6379));
        assert_eq!(c.id, "aidx");
        assert_eq!(c.search, Search::Sql);
        assert_eq!(c.secrets, vec!["s3cret#pass".to_string()]);
    }

    #[test]
    fn search_providers() {
        let pg = EXAMPLE.replace("provider: sqlLike", "provider: sqlPgroonga");
        assert_eq!(MisskeyConfig::parse(&pg).unwrap().search, Search::Pgroonga);
        let meili = EXAMPLE
            .replace("fulltextSearch:\n  provider: sqlLike\n", "")
            .replace(
                "#meilisearch:\n#  host: localhost",
                "meilisearch:\n  host: meili.lan",
            )
            .replace(
                "#  port: 7700\n#  apiKey: ''",
                "  port: 7700\n  apiKey: 'mk-key'",
            );
        let c = MisskeyConfig::parse(&meili).unwrap();
        assert_eq!(
            c.search,
            Search::Meilisearch {
                host: "meili.lan".into()
            }
        );
        assert!(c.secrets.contains(&"mk-key".to_string()), "{:?}", c.secrets);
    }

    #[test]
    fn missing_or_broken_settings_are_named() {
        let e = MisskeyConfig::parse(&EXAMPLE.replace("  db: misskey_db\n", "")).unwrap_err();
        assert_eq!(e, "'db.db' is not set");
        let e = MisskeyConfig::parse(&EXAMPLE.replace("port: 3001", "port: web")).unwrap_err();
        assert_eq!(e, "'port' is not a port number");
        assert!(MisskeyConfig::parse("url: [unclosed").is_err());
    }
}
