//! Java `.properties` files as MirrorMaker 2 reads them
//! (`java.util.Properties.load`): `key=value`, `key: value` or `key value`,
//! `#` and `!` comments, backslash continuation lines and escapes. What real
//! files get wrong (quotes around values, duplicate keys, lines without a
//! value) is accepted with a warning that names the line.

use std::collections::BTreeMap;

/// One setting: its value and the line it was last set on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub line: usize,
}

/// A parsed file: each key's last value (as Java keeps it) and the
/// warnings met on the way.
#[derive(Debug, Default)]
pub struct Properties {
    pub settings: BTreeMap<String, Setting>,
    pub warnings: Vec<String>,
}

impl Properties {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(|s| s.value.as_str())
    }
}

/// Parses `text`. Never fails: anything odd becomes a warning, and what
/// Java would make of it is kept.
pub fn parse(text: &str) -> Properties {
    let mut out = Properties::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let first = i + 1;
        let mut logical = String::new();
        let mut line = lines[i].trim_start_matches([' ', '\t', '\u{c}']);
        i += 1;
        if line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        // A line ending in an odd number of backslashes continues on the
        // next one, whose leading whitespace is dropped.
        loop {
            let trailing = line.chars().rev().take_while(|&c| c == '\\').count();
            if trailing % 2 == 1 {
                logical.push_str(&line[..line.len() - 1]);
                if i >= lines.len() {
                    out.warnings.push(format!(
                        "line {first}: the file ends inside a continued line"
                    ));
                    break;
                }
                line = lines[i].trim_start_matches([' ', '\t', '\u{c}']);
                i += 1;
            } else {
                logical.push_str(line);
                break;
            }
        }
        if logical.trim().is_empty() {
            continue;
        }
        let (key, value, had_separator) = split(&logical);
        let key = unescape(&key, first, &mut out.warnings);
        let mut value = unescape(value.trim_end(), first, &mut out.warnings);
        if key.is_empty() {
            out.warnings
                .push(format!("line {first}: a value without a key; ignored"));
            continue;
        }
        if !had_separator && value.is_empty() {
            out.warnings.push(format!(
                "line {first}: {key} has no value (no '=' on the line)"
            ));
        }
        for q in ['"', '\''] {
            if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
                value = value[1..value.len() - 1].to_owned();
                out.warnings.push(format!(
                    "line {first}: {key}: the quotes around the value were removed \
                     (MirrorMaker 2 would have kept them as part of it)"
                ));
                break;
            }
        }
        if let Some(previous) = out.settings.get(&key) {
            out.warnings.push(format!(
                "line {first}: {key} is set again (first on line {}); the last value wins, as in MirrorMaker 2",
                previous.line
            ));
        }
        out.settings.insert(key, Setting { value, line: first });
    }
    out
}

/// Splits a logical line into its raw key and raw value: the key ends at
/// the first unescaped `=`, `:` or whitespace; one `=` or `:` may follow
/// the whitespace after it.
fn split(line: &str) -> (String, &str, bool) {
    let mut key_end = line.len();
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\u{c}' => {
                key_end = at;
                break;
            }
            _ => {}
        }
    }
    let key = line[..key_end].to_owned();
    let mut rest = line[key_end..].trim_start_matches([' ', '\t', '\u{c}']);
    let mut had_separator = false;
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\u{c}']);
        had_separator = true;
    } else if key_end < line.len() {
        // `key value`: whitespace alone separates.
        had_separator = !rest.is_empty();
    }
    (key, rest, had_separator)
}

/// Java's escapes: `\t`, `\n`, `\r`, `\f`, `\uXXXX`, and `\x` for any other x.
fn unescape(raw: &str, line: usize, warnings: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => out.push(ch),
                    _ => {
                        warnings.push(format!(
                            "line {line}: malformed \\u escape \"\\u{hex}\"; kept as written"
                        ));
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_three_separators_comments_and_spacing() {
        let p = parse(
            "# a comment\n  ! another\nclusters = us, dr\nus.bootstrap.servers:us1:9092\n\
             dr.bootstrap.servers   dr1:9092   \n\n\tus->dr.enabled=true\n",
        );
        assert_eq!(p.get("clusters"), Some("us, dr"));
        assert_eq!(p.get("us.bootstrap.servers"), Some("us1:9092"));
        assert_eq!(p.get("dr.bootstrap.servers"), Some("dr1:9092"));
        assert_eq!(p.get("us->dr.enabled"), Some("true"));
        assert_eq!(p.settings.len(), 4);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn continuation_lines_and_escapes() {
        let p = parse("topics = orders, \\\n    payments.*\nkey\\=with\\:seps = a\\tb\\u0041\n");
        assert_eq!(p.get("topics"), Some("orders, payments.*"));
        assert_eq!(p.get("key=with:seps"), Some("a\tbA"));
        let p = parse("bad = \\u00zz\nend = x\\\n");
        assert_eq!(p.get("bad"), Some("\\u00zz"));
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    }

    #[test]
    fn quotes_duplicates_and_missing_values_are_warned_about() {
        let p = parse("a = \"x:1\"\nb = 'y'\na = z\nlonely\n");
        assert_eq!(p.get("a"), Some("z"));
        assert_eq!(p.settings["a"].line, 3);
        assert_eq!(p.get("b"), Some("y"));
        assert_eq!(p.get("lonely"), Some(""));
        let w = p.warnings.join("\n");
        assert!(w.contains("line 1: a: the quotes"), "{w}");
        assert!(
            w.contains("line 3: a is set again (first on line 1)"),
            "{w}"
        );
        assert!(w.contains("line 4: lonely has no value"), "{w}");
    }

    proptest! {
        /// Outside input: whatever the bytes, parsing ends without a panic
        /// and every key it keeps is non-empty.
        #[test]
        fn any_text_parses_without_panicking(text in "(?s).{0,400}") {
            let p = parse(&text);
            prop_assert!(p.settings.keys().all(|k| !k.is_empty()));
        }

        #[test]
        fn a_plain_key_and_value_round_trip(
            key in "[a-z][a-z0-9.>-]{0,30}",
            value in "[A-Za-z0-9.,:_ -]{0,40}",
        ) {
            let p = parse(&format!("{key} = {value}\n"));
            prop_assert_eq!(p.get(&key), Some(value.trim()));
        }
    }
}
