//! The command line itself, without brokers: shell completions.

use std::process::Command;

fn strait(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn completion_scripts_name_the_subcommands_and_bash_loads_its_own() {
    for shell in ["bash", "zsh", "fish"] {
        let out = strait(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in ["import-mm2", "takeover-mm2", "status", "offsets"] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    // bash sources the script and registers a completion for strait.
    let script = strait(&["completions", "bash"]).stdout;
    let dir = std::env::temp_dir().join(format!("strait-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("strait.bash");
    std::fs::write(&file, script).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p strait", file.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("strait"),
        "{out:?}"
    );
    let bad = strait(&["completions", "tcsh"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
