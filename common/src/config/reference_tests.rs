//! `docs/configuration.md` is the configuration reference, and
//! `strait.example.toml` a complete file. Both write defaults that the
//! serde types in `file.rs` decide; these tests hold them to the code, so
//! that a default changed in one place and not the others fails here.
//!
//! The reference's tables headed `| key | default | meaning |` are read:
//! a key is a dotted path in backticks (`flows[].offset_lag_max`,
//! `clusters.<alias>.bootstrap`); a default in backticks is a TOML value,
//! anything else is prose (`required` is checked, the rest is not).

use std::collections::{BTreeMap, BTreeSet};

use toml::{Table, Value};

use super::*;

const REFERENCE: &str = include_str!("../../../docs/configuration.md");
const EXAMPLE: &str = include_str!("../../../strait.example.toml");

const MINIMAL: &str = r#"
deployment = "test"
[clusters.us]
bootstrap = "127.0.0.1:9092"
[clusters.dr]
bootstrap = "127.0.0.1:9093"
[[flows]]
source = "us"
target = "dr"
"#;

/// The alias a `<alias>` segment stands for in the minimal config.
const ALIAS: &str = "us";

#[derive(Debug)]
enum Documented {
    /// A TOML value, written in backticks.
    Value(String, Value),
    /// `required`: a config without the key is refused.
    Required,
    /// Words: what happens without the key (`unset: ...`).
    Prose,
}

#[derive(Debug)]
struct Row {
    key: String,
    default: Documented,
}

impl Row {
    fn path(&self) -> Vec<&str> {
        self.key.split('.').collect()
    }
}

/// The cells of a markdown table line; `\|` is a `|` inside a cell.
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cell).trim().to_owned()),
            c => cell.push(c),
        }
    }
    out.push(cell.trim().to_owned());
    // The outer pipes leave an empty first and last cell.
    out[1..out.len() - 1].to_vec()
}

fn code(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?;
    let end = inner.find('`')?;
    Some(&inner[..end])
}

fn reference_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut lines = REFERENCE.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with('|') || cells(line) != ["key", "default", "meaning"] {
            continue;
        }
        lines.next(); // |---|---|---|
        for line in lines.by_ref() {
            if !line.starts_with('|') {
                break;
            }
            let c = cells(line);
            assert_eq!(c.len(), 3, "docs/configuration.md: not 3 cells: {line}");
            let key = code(&c[0])
                .filter(|k| c[0] == format!("`{k}`"))
                .unwrap_or_else(|| {
                    panic!("docs/configuration.md: the key is not one code span: {line}")
                });
            let default = match code(&c[1]) {
                Some(text) if c[1].starts_with('`') => {
                    let parsed: Table = toml::from_str(&format!("v = {text}")).unwrap_or_else(|e| {
                        panic!("docs/configuration.md: {key}: default `{text}` is not a TOML value: {e}")
                    });
                    Documented::Value(text.to_owned(), parsed["v"].clone())
                }
                _ if c[1] == "required" => Documented::Required,
                _ => Documented::Prose,
            };
            rows.push(Row {
                key: key.to_owned(),
                default,
            });
        }
    }
    rows
}

fn minimal() -> Table {
    toml::from_str(MINIMAL).unwrap()
}

/// The table holding the last segment of `path`, created where missing.
fn parent<'a>(mut table: &'a mut Table, path: &[&str]) -> &'a mut Table {
    for segment in &path[..path.len() - 1] {
        let value = if let Some(array) = segment.strip_suffix("[]") {
            &mut table
                .entry(array)
                .or_insert_with(|| Value::Array(vec![Value::Table(Table::new())]))
                .as_array_mut()
                .unwrap()[0]
        } else {
            let name = if *segment == "<alias>" {
                ALIAS
            } else {
                segment
            };
            table
                .entry(name)
                .or_insert_with(|| Value::Table(Table::new()))
        };
        table = value.as_table_mut().unwrap();
    }
    table
}

fn set(table: &mut Table, path: &[&str], value: Value) -> String {
    parent(table, path).insert(path[path.len() - 1].to_owned(), value);
    toml::to_string(table).unwrap()
}

/// What the example file sets at `path` (the first flow for `flows[]`).
fn example_value<'a>(example: &'a Table, path: &[&str]) -> Option<&'a Value> {
    let mut value = None::<&Value>;
    let mut table = example;
    for (i, segment) in path.iter().enumerate() {
        let v = match segment.strip_suffix("[]") {
            Some(array) => table.get(array)?.as_array()?.first()?,
            None => table.get(*segment)?,
        };
        if i + 1 < path.len() {
            table = v.as_table()?;
        }
        value = Some(v);
    }
    value
}

/// The fields serde knows for the section at `path` (empty: the top
/// level), from the message refusing an unknown key there.
fn fields_of(path: &[&str]) -> BTreeSet<String> {
    let mut key = path.to_vec();
    key.push("zz_undocumented");
    let text = set(&mut minimal(), &key, Value::Integer(1));
    let e = toml::from_str::<ConfigFile>(&text).unwrap_err();
    let message = e.message();
    let expected = message
        .split_once("expected")
        .unwrap_or_else(|| panic!("{}: not an unknown-field error: {message}", path.join(".")))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_configuration_reference_matches_the_code() {
    let rows = reference_rows();
    assert!(
        rows.len() > 40,
        "docs/configuration.md: only {} keys read",
        rows.len()
    );
    let mut problems = Vec::new();

    // Every key written once.
    let mut seen = BTreeSet::new();
    for row in &rows {
        if !seen.insert(&row.key) {
            problems.push(format!("{}: documented twice", row.key));
        }
    }

    // Every field of every section documented, and nothing else: the
    // sections are the documented keys' prefixes (a map's `<alias>` level
    // is not one).
    let mut children: BTreeMap<Vec<&str>, BTreeSet<String>> = BTreeMap::new();
    for row in &rows {
        let path = row.path();
        for i in 0..path.len() {
            if path.get(i) == Some(&"<alias>") {
                continue;
            }
            children
                .entry(path[..i].to_vec())
                .or_default()
                .insert(path[i].trim_end_matches("[]").to_owned());
        }
    }
    for (section, documented) in &children {
        let fields = fields_of(section);
        let name = if section.is_empty() {
            "the top level".to_owned()
        } else {
            section.join(".")
        };
        for missing in fields.difference(documented) {
            problems.push(format!(
                "{name}: `{missing}` is a config key but not documented"
            ));
        }
        for stale in documented.difference(&fields) {
            problems.push(format!(
                "{name}: `{stale}` is documented but not a config key"
            ));
        }
    }

    // Each documented default is what a config without the key gets.
    let base_file = format!("{:?}", toml::from_str::<ConfigFile>(MINIMAL).unwrap());
    let base = format!("{:?}", Config::parse(MINIMAL).unwrap());
    let example: Table = toml::from_str(EXAMPLE).unwrap();
    for row in &rows {
        let path = row.path();
        match &row.default {
            Documented::Value(text, value) => {
                let config = set(&mut minimal(), &path, value.clone());
                match toml::from_str::<ConfigFile>(&config) {
                    Ok(file) if format!("{file:?}") == base_file => {}
                    Ok(_) => problems.push(format!(
                        "{}: documented default `{text}` is not the default of the code",
                        row.key
                    )),
                    Err(e) => problems.push(format!("{}: `{text}` is refused: {e}", row.key)),
                }
                match Config::parse(&config) {
                    Ok(c) if format!("{c:?}") == base => {}
                    Ok(_) => problems.push(format!(
                        "{}: `{text}` validates into another config than the default",
                        row.key
                    )),
                    Err(e) => problems.push(format!("{}: `{text}` is refused: {e}", row.key)),
                }
                // The example file says it writes every key at its default.
                if !row.key.contains("<alias>") {
                    if let Some(written) = example_value(&example, &path) {
                        if written != value {
                            problems.push(format!(
                                "{}: strait.example.toml writes {written}, the reference's default is `{text}`",
                                row.key
                            ));
                        }
                    }
                }
            }
            Documented::Required => {
                let mut config = minimal();
                let removed = parent(&mut config, &path).remove(path[path.len() - 1]);
                let text = toml::to_string(&config).unwrap();
                if removed.is_none() || Config::parse(&text).is_ok() {
                    problems.push(format!(
                        "{}: documented as required, but a config without it is accepted",
                        row.key
                    ));
                }
            }
            Documented::Prose => {}
        }
        // ... and the example file names every key, set or commented out.
        let last = path[path.len() - 1].trim_end_matches("[]");
        let named = EXAMPLE.lines().any(|line| {
            let line = line.trim_start_matches(['#', ' ']);
            line.starts_with(&format!("{last} =")) || line.contains(&format!(".{last}]"))
        });
        if !named {
            problems.push(format!("{}: not in strait.example.toml", row.key));
        }
    }

    assert!(
        problems.is_empty(),
        "docs/configuration.md against the code:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reference_reader_reads_cells_and_values() {
    assert_eq!(cells("| `a` | `1` | x \\| y |"), ["`a`", "`1`", "x | y"]);
    let rows = reference_rows();
    let row = |key: &str| rows.iter().find(|r| r.key == key).unwrap();
    assert!(matches!(row("deployment").default, Documented::Required));
    assert!(
        matches!(&row("worker.commit_interval").default, Documented::Value(t, _) if t == "\"1s\"")
    );
    assert!(matches!(row("api.token").default, Documented::Prose));
    // A wrong default is caught: the code's default is 100.
    let mut t = minimal();
    let text = set(&mut t, &["flows[]", "offset_lag_max"], Value::Integer(99));
    assert_ne!(
        format!("{:?}", toml::from_str::<ConfigFile>(&text).unwrap()),
        format!("{:?}", toml::from_str::<ConfigFile>(MINIMAL).unwrap())
    );
    assert!(fields_of(&["worker"]).contains("commit_interval"));
    assert!(fields_of(&[]).contains("deployment"));
}
