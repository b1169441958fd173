//! Moving over from MirrorMaker 2: `strait import-mm2` (its properties
//! file into a strait config) and `strait takeover-mm2` (its progress into
//! strait's, so replication continues where it stopped).

pub mod import;
pub mod properties;
pub mod takeover;

use std::path::Path;
use std::process::ExitCode;

/// `strait import-mm2`: the config on stdout (or `output`), the report on
/// stderr. Exit 0 when the config passes `strait check`, 2 when the file
/// cannot be read or cannot make a config.
pub fn run_import(file: &Path, output: Option<&Path>, deployment: &str) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("strait: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let imported = match import::import(&properties::parse(&text), deployment) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("strait: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let r = &imported.report;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if !r.not_carried.is_empty() {
        eprintln!("not carried over ({}):", r.not_carried.len());
        for (k, why) in &r.not_carried {
            eprintln!("  {k}: {why}");
        }
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    match output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.toml) {
                eprintln!("strait: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("wrote {}", path.display());
        }
        None => print!("{}", imported.toml),
    }
    match &imported.valid {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strait: the config written does not pass `strait check`: {e}");
            ExitCode::from(2)
        }
    }
}
