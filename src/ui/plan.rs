//! `hikkoshi plan`: the checklist as text for people or JSON for scripts.

use crate::plan::Plan;
use crate::profile::DowntimeMark;
use crate::steps::describe::infos;

pub fn render_text(plan: &Plan) -> String {
    let mut out = format!(
        "hikkoshi plan: {} ({}), {} -> {}\nprofile: {}\n",
        plan.domain, plan.profile_name, plan.source, plan.target, plan.profile_origin
    );
    let mut phase = String::new();
    let infos = infos(plan);
    for (n, info) in infos.iter().enumerate() {
        if info.phase != phase {
            phase = info.phase.clone();
            out.push_str(&format!("\n{}\n", info.phase_title));
        }
        let mut marks = Vec::new();
        if info.confirm.is_some() {
            marks.push("asks for confirmation".to_string());
        }
        match info.downtime {
            Some(DowntimeMark::Start) => marks.push("downtime starts".into()),
            Some(DowntimeMark::End) => marks.push("downtime ends".into()),
            None => {}
        }
        if info.optional {
            marks.push("optional".into());
        }
        if !info.when.is_empty() {
            marks.push(format!("only if {}", info.when.join(" and ")));
        }
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!("  [{}]", marks.join("; "))
        };
        out.push_str(&format!(
            "{:>3}. {}: {}{}\n",
            n + 1,
            info.id,
            info.title,
            marks
        ));
        if let Some(c) = &info.confirm {
            out.push_str(&format!("       confirm: {c}\n"));
        }
        if let Some(o) = &info.otherwise {
            out.push_str(&format!("       otherwise: {o}\n"));
        }
        for c in &info.commands {
            out.push_str(&format!("       {c}\n"));
        }
    }
    let facts: Vec<&str> = crate::profile::FACTS
        .iter()
        .copied()
        .filter(|f| {
            infos
                .iter()
                .any(|i| i.commands.iter().any(|c| c.contains(&format!("{{{f}}}"))))
        })
        .collect();
    out.push_str("\n{run_id} is set when the run starts");
    if !facts.is_empty() {
        out.push_str(&format!(
            "; preflight fills in {}",
            facts
                .iter()
                .map(|f| format!("{{{f}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str(".\n");
    out
}

pub fn render_json(plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "profile": plan.profile_name,
        "profile_origin": plan.profile_origin,
        "domain": plan.domain,
        "source": plan.source,
        "target": plan.target,
        "phases": plan.phases,
        "steps": infos(plan).into_iter().map(|mut i| {
            // The run's own bookkeeping (the journal keeps it); `plan --format
            // json` says what runs, as it always has.
            i.creates_database = false;
            i
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn build(text: &str) -> Plan {
        let config = Config::parse(Path::new("/lab/migration.toml"), text).expect("valid config");
        Plan::build(&config).expect("plan")
    }

    const GENERIC: &str = "profile = \"generic\"\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"app.example\"\nuser = \"app\"\ndir = \"/srv/app\"\ndatabase = \"app\"\ndb_user = \"app\"\nservices = [\"app\"]\n";

    #[test]
    fn config_overrides_profile_defaults() {
        let config = Config::parse(
            Path::new("/lab/migration.toml"),
            "[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"a.example\"\nuser = \"masto\"\ndir = \"/srv/masto/live\"\ndatabase = \"masto\"\ndb_user = \"masto_role\"\nservices = [\"a\", \"b\"]\n",
        )
        .expect("valid");
        let plan = Plan::build(&config).expect("plan");
        let v = &plan.vars;
        assert_eq!(
            v.text("env_file").unwrap(),
            "/srv/masto/live/.env.production"
        );
        assert_eq!(v.text("home").unwrap(), "/home/masto");
        let text = render_text(&plan);
        assert!(text.contains("systemctl stop a b"), "{text}");
        assert!(text.contains("--role=masto_role"), "{text}");
        assert!(
            text.contains("pg_dump -Fc -Z {dump_compress} -U masto_role"),
            "{text}"
        );
    }

    #[test]
    fn generic_profile_takes_its_settings_from_the_config() {
        let text = format!(
            "{GENERIC}[vars]\nsync_dirs = [\"/srv/app/uploads\", \"/srv/app/avatars\"]\nfiles = [\"/srv/app/secrets.json\"]\npost_commands = [[\"bin/app\", \"migrate\", \"$(id)\"], [\"bin/app\", \"cache\"]]\nhealth_url = \"http://127.0.0.1:8080/up\"\n"
        );
        let plan = build(&text);
        let out = render_text(&plan);
        for want in [
            "rsync -a /srv/app/uploads/ -> new as app:/srv/app/uploads/",
            "rsync -a /srv/app/avatars/ -> new as app:/srv/app/avatars/",
            "cat -- /srv/app/secrets.json  | through this machine |  new as app: write /srv/app/secrets.json (mode 0600, an existing file kept as a backup)",
            "new as app: cd /srv/app && bin/app migrate '$(id)'",
            "new as app: cd /srv/app && bin/app cache",
            "curl http://127.0.0.1:8080/up",
        ] {
            assert!(out.contains(want), "missing '{want}' in\n{out}");
        }
        assert!(plan.vars.condition("post_commands").unwrap());
        assert_eq!(
            plan.vars.commands("post_commands").unwrap()[0],
            ["bin/app", "migrate", "$(id)"]
        );
    }

    #[test]
    fn generic_profile_without_vars_leaves_its_optional_steps_out() {
        let plan = build(GENERIC);
        for c in ["sync_dirs", "files", "post_commands", "health_url"] {
            assert!(!plan.vars.condition(c).unwrap(), "{c}");
        }
        let out = render_text(&plan);
        assert!(out.contains("otherwise: no directories to copy"), "{out}");
    }

    #[test]
    fn misskey_profile_reads_its_config_and_leaves_media_to_object_storage() {
        let text = "profile = \"misskey\"\n[source]\nssh = \"old\"\n[target]\nssh = \"new\"\n[app]\ndomain = \"misskey.example\"\n";
        let plan = build(text);
        let out = render_text(&plan);
        assert!(
            out.contains("reads /home/misskey/misskey/.config/default.yml"),
            "{out}"
        );
        assert!(out.contains("presync-media: Copy drive files while the instance is still up  [only if !object_storage]\n       otherwise: media stays where it is"), "{out}");
        assert!(
            out.contains("curl http://127.0.0.1:{app_port}/healthz"),
            "{out}"
        );
    }
}
