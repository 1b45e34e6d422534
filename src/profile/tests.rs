use super::*;

#[test]
fn builtin_profiles_are_valid() {
    for name in builtin_names() {
        let p = Profile::load_builtin(name).expect("valid built-in profile");
        assert_eq!(p.name, name);
        assert!(p.steps.iter().any(|s| s.id == "restore"), "{name}");
        assert!(
            p.steps.iter().any(|s| s.kind() == StepKind::Verify),
            "{name}"
        );
    }
}

#[test]
fn a_profile_extends_a_builtin_one() {
    let p = Profile::load_builtin("pleasanter").expect("valid");
    let generic = Profile::load_builtin("generic").expect("valid");
    assert_eq!(p.steps.len(), generic.steps.len());
    assert_eq!(p.defaults.database, "Implem.Pleasanter");
    assert_eq!(
        p.vars.get("post_dir"),
        Some(&VarSpec::Text("{dir}/Implem.CodeDefiner".into()))
    );
    assert!(p.vars.contains_key("run_dir"), "the base's vars stay");

    let head = "name = \"mine\"\nextends = \"generic\"\n[defaults]\nuser = \"u\"\ndir = \"/d\"\ndatabase = \"db\"\ndb_user = \"u\"\n";
    let refused = |text: &str| Profile::parse("mine.toml", text).unwrap_err().to_string();
    let e = refused(&format!("{head}[vars]\nfiles = \"/d/x\"\n"));
    assert!(
        e.starts_with(
            "mine.toml:2:11: [vars] files is a list of strings in profile 'generic', not a string"
        ),
        "{e}"
    );
    let e = refused(&head.replace("\"generic\"", "\"wordpress\""));
    assert!(
        e.contains("extends 'wordpress', which is no built-in profile"),
        "{e}"
    );
    let e = refused(&head.replace("extends = \"generic\"\n", ""));
    assert!(
        e.contains("a profile needs [[phases]] and [[steps]]"),
        "{e}"
    );
}

#[test]
fn step_shapes_that_cannot_work_are_refused() {
    let cases = [
        (
            "kind = \"transfer\"\nuser = \"u\"\nmode = \"0600\"\nfrom = \"/a\"\n",
            "a 'transfer' step copies 'from' to 'to', or each of 'files'",
        ),
        (
            "kind = \"transfer\"\nuser = \"u\"\nmode = \"0600\"\nfrom = \"/a\"\nto = \"/a\"\nfiles = [\"/b\"]\n",
            "a 'transfer' step copies 'from' to 'to', or each of 'files'",
        ),
        (
            "host = \"target\"\ncommands = [\"{user}\"]\n",
            "command '{user}' is neither an argv list nor '{name}' of a [vars] list of commands",
        ),
        (
            "kind = \"verify\"\notherwise = \"nothing\"\n",
            "'otherwise' says why a step is left out; it needs 'when'",
        ),
        (
            "kind = \"services\"\nhost = \"source\"\naction = \"remove\"\nservices = \"app\"\n",
            "action 'remove' is not one of stop, start, go-live, disable, mask",
        ),
        (
            "kind = \"services\"\nhost = \"source\"\naction = \"stop\"\nservices = \"db\"\n",
            "services 'db' is not one of app, web, worker, redis",
        ),
        (
            "kind = \"services\"\nhost = \"source\"\naction = \"stop\"\nservices = \"app\"\nundo = { host = \"source\", commands = [[\"true\"]] }\n",
            "it takes no 'undo'",
        ),
        (
            "kind = \"services\"\nhost = \"source\"\nservices = \"app\"\n",
            "'action'",
        ),
    ];
    for (body, want) in cases {
        let text = with_step(&format!(
            "[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\n{body}"
        ));
        let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
        assert!(e.contains(want), "{body}: {e}");
    }
}

fn with_step(step: &str) -> String {
    format!(
        "name = \"t\"\n[defaults]\nuser = \"u\"\ndir = \"/d\"\ndatabase = \"db\"\ndb_user = \"u\"\n\n[[phases]]\nid = \"p\"\ntitle = \"P\"\n\n{step}"
    )
}

#[test]
fn profile_errors_name_file_line_and_step() {
    let text = with_step(
        "[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\nhost = \"source\"\ncommands = [[\"echo\", \"{nope}\"]]\n",
    );
    let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
    assert!(
        e.starts_with("my.toml:12:1: step 's': unknown placeholder '{nope}'"),
        "{e}"
    );
}

#[test]
fn keys_that_do_not_apply_are_refused() {
    let text = with_step(
        "[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\nkind = \"verify\"\npaths = [\"/x\"]\n",
    );
    let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
    assert!(
        e.contains("'paths' does not apply to a 'verify' step"),
        "{e}"
    );
}

#[test]
fn unknown_phase_and_unknown_key() {
    let text =
        with_step("[[steps]]\nid = \"s\"\nphase = \"q\"\ntitle = \"S\"\nkind = \"verify\"\n");
    let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
    assert!(e.contains("phase 'q' is not one of"), "{e}");
    let text =
        with_step("[[steps]]\nid = \"s\"\nphase = \"p\"\ntitle = \"S\"\nkidn = \"verify\"\n");
    let e = Profile::parse("my.toml", &text).unwrap_err().to_string();
    assert!(e.contains("unknown field `kidn`"), "{e}");
}
