//! Secret values (from .env.production and the like) are replaced before an
//! event is written to the journal or shown: every event passes through here.

use std::sync::{Arc, RwLock};

pub const MASK: &str = "[redacted]";

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
            // The JSON-escaped form is what appears inside a journal line.
            let escaped = serde_json::to_string(secret)
                .map(|q| q[1..q.len() - 1].to_string())
                .unwrap_or_default();
            for form in [secret.to_string(), escaped] {
                if !form.is_empty() && !s.contains(&form) {
                    s.push(form);
                }
            }
            // Longest first, so a secret containing another is masked whole.
            s.sort_by_key(|x| std::cmp::Reverse(x.len()));
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

/// Keys whose values in an env-style file are secrets.
pub fn is_secret_key(key: &str) -> bool {
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
    fn masks_plain_and_json_escaped_forms() {
        let r = Redactor::new();
        r.add("s3cr3t\"va$lue");
        r.add("short");
        let line = serde_json::json!({"lines": ["x=s3cr3t\"va$lue", "short"]}).to_string();
        let masked = r.apply(&line);
        assert!(!masked.contains("s3cr3t"), "{masked}");
        assert!(masked.contains("short"));
        assert_eq!(r.apply("SECRET=s3cr3t\"va$lue"), "SECRET=[redacted]");
    }

    #[test]
    fn secret_keys() {
        assert!(is_secret_key("SECRET_KEY_BASE"));
        assert!(is_secret_key("VAPID_PRIVATE_KEY"));
        assert!(is_secret_key("SMTP_PASSWORD"));
        assert!(!is_secret_key("LOCAL_DOMAIN"));
    }
}
