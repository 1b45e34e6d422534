//! Secret values (from .env.production and the like) are replaced before an
//! event is written to the journal or shown: every event passes through here.

use std::sync::{Arc, RwLock};

pub(crate) const MASK: &str = "[redacted]";

/// Shorter values ("true", "5432") are settings, not secrets, and masking them
/// would garble ordinary output.
const MIN_SECRET_LEN: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        if let Ok(mut s) = self.secrets.write() {
            if !s.iter().any(|x| x == secret) {
                s.push(secret.to_string());
            }
            // Longest first, so a secret containing another is masked whole.
            s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// The record with every string in it redacted, and its journal line.
    pub(crate) fn redact_record(
        &self,
        record: &crate::journal::Record,
    ) -> Result<(crate::journal::Record, String), serde_json::Error> {
        let mut value = serde_json::to_value(record)?;
        self.redact_value(&mut value);
        let line = value.to_string();
        Ok((serde_json::from_value(value)?, line))
    }

    fn redact_value(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                let masked = self.apply(s);
                if masked != *s {
                    *s = masked;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }

    pub fn apply(&self, text: &str) -> String {
        let Ok(secrets) = self.secrets.read() else {
            return text.to_string();
        };
        let mut out = text.to_string();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

/// The secrets in one `KEY=value` setting: the value of a secret-looking key,
/// and the password inside any URL (DATABASE_URL, REDIS_URL, SMTP URLs...).
pub fn secrets_in(key: &str, value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if is_secret_key(key) && !value.is_empty() {
        out.push(value.to_string());
    }
    if let Some((_, rest)) = value.split_once("://")
        && let Some((userinfo, _)) = rest.split_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
        && !password.is_empty()
    {
        out.push(password.to_string());
    }
    out
}

/// Keys whose values in an env-style file are secrets.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "SECRET",
        "KEY",
        "PASS",
        "TOKEN",
        "OTP",
        "SALT",
        "PRIVATE",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| k.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_redacted_string_by_string() {
        use crate::events::{EngineEvent, Stream};
        let r = Redactor::new();
        r.add("s3cr3t\"va$lue");
        r.add("short");
        let record = crate::journal::Record {
            ts: jiff::Timestamp::UNIX_EPOCH,
            event: EngineEvent::Output {
                step: "x".into(),
                stream: Stream::Stdout,
                lines: vec!["pw=s3cr3t\"va$lue!".into(), "short".into()],
            },
        };
        let (masked, line) = r.redact_record(&record).expect("redacts");
        assert!(!line.contains("s3cr3t"), "{line}");
        assert!(line.contains("short"));
        match masked.event {
            EngineEvent::Output { lines, .. } => assert_eq!(lines[0], "pw=[redacted]!"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn url_passwords_are_secrets() {
        assert_eq!(
            secrets_in("DATABASE_URL", "postgres://u:pa55word@db/x"),
            ["pa55word"]
        );
        assert_eq!(
            secrets_in("REDIS_URL", "redis://localhost:6379"),
            Vec::<String>::new()
        );
        assert_eq!(
            secrets_in("LOCAL_DOMAIN", "example.net"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn secret_keys() {
        assert!(is_secret_key("SECRET_KEY_BASE"));
        assert!(is_secret_key("VAPID_PRIVATE_KEY"));
        assert!(is_secret_key("SMTP_PASSWORD"));
        assert!(!is_secret_key("LOCAL_DOMAIN"));
    }
}
