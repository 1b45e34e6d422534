//! `{name}` placeholders in profile strings. A value is text or a list; a list
//! only stands alone as a whole argument, where it becomes one argument per item,
//! so no value is ever joined into a string that something would split again.

use std::collections::BTreeMap;

use serde::Serialize;

/// Values from the config, the engine and preflight are literal: a schema or
/// directory name with braces in it stays as it is. Only a profile's own
/// `[vars]` are templates, rendered on lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    /// A yes/no fact (preflight's `db_file`, `object_storage`, ...): a
    /// condition reads it as it is; a template shows it as true or false.
    Flag(bool),
    List(Vec<String>),
    Template(String),
    /// A profile's list: each item a template.
    Templates(Vec<String>),
    /// Whole commands, for a profile's `commands` entry that names them
    /// (a generic app's post-commands from the config).
    Commands(Vec<Vec<String>>),
    /// A profile's commands: each argument a template.
    TemplateCommands(Vec<Vec<String>>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Flag(b)
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::List(v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder '{{{0}}}'")]
    Unknown(String),
    #[error("placeholder '{{{0}}}' is a list; it can only stand alone as a whole argument")]
    ListInText(String),
    #[error("unclosed '{{' in '{0}'")]
    Unclosed(String),
    #[error("placeholder '{{{0}}}' refers to itself")]
    Cycle(String),
    #[error("placeholder '{{{0}}}' is not a list of commands")]
    NotCommands(String),
}

/// Variables for rendering. Values may themselves contain placeholders, rendered
/// on lookup, so a profile can say `dump_file = "{run_dir}/{database}.dump"`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Vars {
    values: BTreeMap<String, Value>,
}

enum Piece<'a> {
    Lit(&'a str),
    Var(&'a str),
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if rest[open..].starts_with("{{") {
            out.push(Piece::Lit(&rest[..open + 1]));
            rest = &rest[open + 2..];
            continue;
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
        if open > 0 {
            out.push(Piece::Lit(&rest[..open]));
        }
        out.push(Piece::Var(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Lit(rest));
    }
    Ok(out)
}

/// The names a template refers to, for validating profiles before any run.
pub(crate) fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    Ok(pieces(template)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(v) => Some(v.to_string()),
            Piece::Lit(_) => None,
        })
        .collect())
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.values.insert(name.into(), value.into());
    }

    pub(crate) fn set_template(&mut self, name: impl Into<String>, template: &str) {
        self.values
            .insert(name.into(), Value::Template(template.to_string()));
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    fn lookup(&self, name: &str, depth: usize) -> Result<Value, TemplateError> {
        if depth > 16 {
            return Err(TemplateError::Cycle(name.to_string()));
        }
        match self.values.get(name) {
            None => Err(TemplateError::Unknown(name.to_string())),
            Some(Value::Template(t)) => Ok(Value::Text(self.render_depth(t, depth + 1)?)),
            Some(Value::Templates(items)) => Ok(Value::List(
                items
                    .iter()
                    .map(|t| self.render_depth(t, depth + 1))
                    .collect::<Result<_, _>>()?,
            )),
            Some(Value::TemplateCommands(cmds)) => Ok(Value::Commands(
                cmds.iter()
                    .map(|argv| {
                        argv.iter()
                            .map(|t| self.render_depth(t, depth + 1))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<_, _>>()?,
            )),
            Some(literal) => Ok(literal.clone()),
        }
    }

    pub fn get(&self, name: &str) -> Result<Value, TemplateError> {
        self.lookup(name, 0)
    }

    pub fn text(&self, name: &str) -> Result<String, TemplateError> {
        match self.get(name)? {
            Value::Text(t) | Value::Template(t) => Ok(t),
            Value::Flag(b) => Ok(b.to_string()),
            _ => Err(TemplateError::ListInText(name.to_string())),
        }
    }

    /// The commands a `commands` entry names; an empty list is no command.
    pub fn commands(&self, name: &str) -> Result<Vec<Vec<String>>, TemplateError> {
        match self.get(name)? {
            Value::Commands(c) => Ok(c),
            Value::List(l) if l.is_empty() => Ok(Vec::new()),
            _ => Err(TemplateError::NotCommands(name.to_string())),
        }
    }

    /// A condition as profiles write it: `name` or `!name`, true when the value
    /// is a string other than "" and "false", or a list with something in it.
    pub(crate) fn condition(&self, expr: &str) -> Result<bool, TemplateError> {
        let (negate, name) = match expr.strip_prefix('!') {
            Some(n) => (true, n.trim()),
            None => (false, expr.trim()),
        };
        let holds = match self.get(name)? {
            Value::Flag(b) => b,
            Value::Text(t) => !(t.is_empty() || t == "false"),
            Value::Template(_) => {
                let t = self.text(name)?;
                !(t.is_empty() || t == "false")
            }
            Value::List(l) => !l.is_empty(),
            Value::Commands(c) => !c.is_empty(),
            Value::Templates(l) => !l.is_empty(),
            Value::TemplateCommands(c) => !c.is_empty(),
        };
        Ok(holds != negate)
    }

    /// Whether every condition holds (none: yes).
    pub(crate) fn all_hold(&self, conds: &[String]) -> Result<bool, TemplateError> {
        for c in conds {
            if !self.condition(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub fn render(&self, template: &str) -> Result<String, TemplateError> {
        self.render_depth(template, 0)
    }

    fn render_depth(&self, template: &str, depth: usize) -> Result<String, TemplateError> {
        let mut out = String::new();
        for piece in pieces(template)? {
            match piece {
                Piece::Lit(l) => out.push_str(l),
                Piece::Var(v) => match self.lookup(v, depth)? {
                    Value::Text(t) | Value::Template(t) => out.push_str(&t),
                    Value::Flag(b) => out.push_str(if b { "true" } else { "false" }),
                    _ => return Err(TemplateError::ListInText(v.to_string())),
                },
            }
        }
        Ok(out)
    }

    /// Renders an argument vector; an argument that is exactly `{list}` becomes
    /// one argument per item (none for an empty list).
    pub(crate) fn render_argv(&self, argv: &[String]) -> Result<Vec<String>, TemplateError> {
        let mut out = Vec::with_capacity(argv.len());
        for arg in argv {
            if let Some(name) = whole_placeholder(arg)
                && let Value::List(items) = self.get(name)?
            {
                out.extend(items);
                continue;
            }
            out.push(self.render(arg)?);
        }
        Ok(out)
    }

    /// Like `render_argv`, but a placeholder nobody knows yet (a fact preflight will
    /// find) stays visible as `{name}`; for showing a plan before any host is asked.
    pub(crate) fn render_argv_lenient(&self, argv: &[String]) -> Vec<String> {
        argv.iter()
            .flat_map(|arg| match self.render_argv(std::slice::from_ref(arg)) {
                Ok(v) => v,
                Err(_) => vec![self.render_lenient(arg)],
            })
            .collect()
    }

    /// Like `commands`, for showing a plan: `None` while the value is not known.
    pub(crate) fn commands_lenient(&self, name: &str) -> Option<Vec<Vec<String>>> {
        match self.values.get(name)? {
            Value::Commands(c) => Some(c.clone()),
            Value::TemplateCommands(c) => {
                Some(c.iter().map(|a| self.render_argv_lenient(a)).collect())
            }
            Value::List(l) | Value::Templates(l) if l.is_empty() => Some(Vec::new()),
            _ => None,
        }
    }

    pub(crate) fn render_lenient(&self, template: &str) -> String {
        self.render_lenient_depth(template, 0)
    }

    fn render_lenient_depth(&self, template: &str, depth: usize) -> String {
        let Ok(ps) = pieces(template) else {
            return template.to_string();
        };
        ps.into_iter()
            .map(|p| match p {
                Piece::Lit(l) => l.to_string(),
                Piece::Var(v) => match self.values.get(v) {
                    Some(Value::Template(t)) if depth < 16 => {
                        self.render_lenient_depth(t, depth + 1)
                    }
                    Some(Value::Text(t)) => t.clone(),
                    Some(Value::Flag(b)) => b.to_string(),
                    Some(Value::List(items)) => items.join(" "),
                    Some(Value::Templates(items)) if depth < 16 => items
                        .iter()
                        .map(|t| self.render_lenient_depth(t, depth + 1))
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => format!("{{{v}}}"),
                },
            })
            .collect()
    }
}

/// The name in an argument that is exactly `{name}`.
pub(crate) fn whole_placeholder(arg: &str) -> Option<&str> {
    let inner = arg.strip_prefix('{')?.strip_suffix('}')?;
    (!inner.contains(['{', '}'])).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("user", "mastodon");
        v.set_template("home", "/home/{user}");
        v.set_template("dump", "{home}/x.dump");
        v.set("services", vec!["web".to_string(), "sidekiq".to_string()]);
        v.set("none", Vec::<String>::new());
        v.set("es", true);
        v.set_template("loop", "{loop}");
        v.set("schema", "{user}");
        v
    }

    #[test]
    fn nested_values_render() {
        assert_eq!(vars().render("{dump}").unwrap(), "/home/mastodon/x.dump");
        assert_eq!(vars().render("a{{b}}").unwrap(), "a{b}}");
    }

    #[test]
    fn lists_expand_to_separate_arguments() {
        let argv: Vec<String> = ["systemctl", "stop", "{services}", "{none}", "--", "{user}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            vars().render_argv(&argv).unwrap(),
            ["systemctl", "stop", "web", "sidekiq", "--", "mastodon"]
        );
    }

    #[test]
    fn list_inside_text_is_refused() {
        assert_eq!(
            vars().render("--units={services}"),
            Err(TemplateError::ListInText("services".into()))
        );
    }

    #[test]
    fn unknown_and_cyclic_placeholders_are_errors() {
        assert_eq!(
            vars().render("{nope}"),
            Err(TemplateError::Unknown("nope".into()))
        );
        assert!(matches!(
            vars().render("{loop}"),
            Err(TemplateError::Cycle(_))
        ));
        assert!(matches!(
            vars().render("{open"),
            Err(TemplateError::Unclosed(_))
        ));
    }

    #[test]
    fn literal_values_are_never_expanded_again() {
        assert_eq!(vars().render("-n {schema}").unwrap(), "-n {user}");
        assert_eq!(vars().render_lenient("{schema}"), "{user}");
    }

    #[test]
    fn conditions() {
        let mut v = vars();
        assert!(v.condition("es").unwrap());
        assert!(!v.condition("!es").unwrap());
        assert!(v.condition("services").unwrap());
        assert!(!v.condition("none").unwrap());
        v.set("url", "http://x/");
        v.set("empty", "");
        v.set("off", false);
        v.set("cmds", Value::Commands(vec![vec!["a".into()]]));
        assert!(v.condition("url").unwrap());
        assert!(!v.condition("empty").unwrap());
        assert!(!v.condition("off").unwrap());
        assert!(v.condition("cmds").unwrap());
        assert_eq!(v.commands("none").unwrap(), Vec::<Vec<String>>::new());
        assert_eq!(
            v.commands("user"),
            Err(TemplateError::NotCommands("user".into()))
        );
    }

    #[test]
    fn a_profile_list_renders_each_item() {
        let mut v = vars();
        v.set(
            "dirs",
            Value::Templates(vec!["{home}/a".into(), "/b".into()]),
        );
        v.set(
            "post",
            Value::TemplateCommands(vec![vec!["echo".into(), "{user}".into()]]),
        );
        let argv: Vec<String> = vec!["ls".into(), "{dirs}".into()];
        assert_eq!(
            v.render_argv(&argv).unwrap(),
            ["ls", "/home/mastodon/a", "/b"]
        );
        assert_eq!(v.commands("post").unwrap(), [["echo", "mastodon"]]);
        assert_eq!(
            v.commands_lenient("post"),
            Some(vec![vec!["echo".to_string(), "mastodon".to_string()]])
        );
    }

    #[test]
    fn lenient_rendering_keeps_unknown_facts_visible() {
        let argv: Vec<String> = ["pg_restore", "{schema_args}", "{dump}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            vars().render_argv_lenient(&argv),
            ["pg_restore", "{schema_args}", "/home/mastodon/x.dump"]
        );
        let mut v = vars();
        v.set_template("run_dir", "{home}/work/{run_id}");
        assert_eq!(
            v.render_lenient("{run_dir}/db.dump"),
            "/home/mastodon/work/{run_id}/db.dump"
        );
    }
}
