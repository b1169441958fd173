//! The figures of every run, and the one table printed from their medians.

use std::collections::BTreeMap;

use crate::tools::{Column, COLUMNS};

/// Every figure taken, per column and key, one value per run.
#[derive(Default)]
pub struct Results {
    values: BTreeMap<(Column, String), Vec<f64>>,
    /// A cell's text instead of a figure (why it was not measured).
    notes: BTreeMap<(Column, String), String>,
    /// What failed: the bench exits non-zero if any.
    pub errors: Vec<String>,
}

impl Results {
    pub fn add(&mut self, col: Column, key: &str, v: f64) {
        self.values
            .entry((col, key.to_owned()))
            .or_default()
            .push(v);
    }

    pub fn note(&mut self, col: Column, key: &str, text: &str) {
        self.notes.insert((col, key.to_owned()), text.to_owned());
    }

    pub fn note_of(&self, col: Column, key: &str) -> Option<&String> {
        self.notes.get(&(col, key.to_owned()))
    }

    pub fn fail(&mut self, what: String) {
        eprintln!("FAILED: {what}");
        self.errors.push(what);
    }

    fn median(&self, col: Column, key: &str) -> Option<f64> {
        let mut v = self.values.get(&(col, key.to_owned()))?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }

    fn runs(&self, col: Column, key: &str) -> usize {
        self.values.get(&(col, key.to_owned())).map_or(0, Vec::len)
    }
}

/// How a row's cell is made from the medians of its keys.
#[derive(Clone, Copy)]
enum Fmt {
    /// "a / b s"
    Pair(&'static str, usize),
    /// "a (b)" with b a whole number with thousands separators
    WithCount(usize),
    One(&'static str, usize),
    /// "+a / +b ms"
    Added,
}

struct Row {
    label: String,
    keys: Vec<String>,
    fmt: Fmt,
    /// Columns the row applies to; the others print "—".
    applies: fn(Column) -> bool,
}

fn tools_only(c: Column) -> bool {
    c != Column::Baseline
}

fn everyone(_: Column) -> bool {
    true
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 && ch != '-' {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn render(fmt: Fmt, v: &[f64]) -> String {
    match fmt {
        Fmt::Pair(unit, d) => format!("{:.d$} / {:.d$}{unit}", v[0], v[1]),
        Fmt::WithCount(d) => format!("{:.d$} ({})", v[0], thousands(v[1])),
        Fmt::One(unit, d) => format!("{:.d$}{unit}", v[0]),
        Fmt::Added => format!("{:+.0} / {:+.0} ms", v[0], v[1]),
    }
}

/// What the table describes (for its header lines).
pub struct Described {
    pub records: usize,
    pub mb: [f64; 2],
    pub backlog_partitions: [i32; 2],
    pub groups: Vec<usize>,
    pub failover_groups: usize,
    pub stream_rate: u64,
    pub lat_seconds: f64,
    /// How long commits were measured.
    pub cp_window: String,
    pub new_topics: usize,
}

fn rows(d: &Described) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, parts) in d.backlog_partitions.iter().enumerate() {
        let k = |s: &str| format!("b{parts}.{s}");
        let what = format!(
            "backlog, {parts} partitions ({} × 1 KB, {:.0} MB)",
            thousands(d.records as f64),
            d.mb[i]
        );
        rows.push(Row {
            label: format!("{what}: start → first / last record on the target"),
            keys: vec![k("first"), k("last")],
            fmt: Fmt::Pair(" s", 1),
            applies: everyone,
        });
        rows.push(Row {
            label: format!("{what}: MB/s (records/s), start → last record"),
            keys: vec![k("mbps"), k("rps")],
            fmt: Fmt::WithCount(1),
            applies: everyone,
        });
        rows.push(Row {
            label: format!("{what}: CPU s per MB, whole process, start → last record"),
            keys: vec![k("cpu_per_mb")],
            fmt: Fmt::One("", 4),
            applies: everyone,
        });
        rows.push(Row {
            label: format!("{what}: CPU s from start to the first record"),
            keys: vec![k("cpu_start")],
            fmt: Fmt::One(" s", 1),
            applies: tools_only,
        });
        rows.push(Row {
            label: format!("{what}: peak RSS (VmHWM) at the last record"),
            keys: vec![k("rss")],
            fmt: Fmt::One(" MB", 0),
            applies: tools_only,
        });
    }
    rows.push(Row {
        label: format!(
            "end-to-end latency at 5 MB/s (1 KB records, 6 partitions, {:.0} s), p50 / p99",
            d.lat_seconds
        ),
        keys: vec!["lat.p50".into(), "lat.p99".into()],
        fmt: Fmt::Pair(" ms", 0),
        applies: everyone,
    });
    rows.push(Row {
        label: "added over the same run's one hop, p50 / p99".into(),
        keys: vec!["lat.add50".into(), "lat.add99".into()],
        fmt: Fmt::Added,
        applies: tools_only,
    });
    rows.push(Row {
        label: format!(
            "new topic → its first record on the target, median / max of {}",
            d.new_topics
        ),
        keys: vec!["new.p50".into(), "new.max".into()],
        fmt: Fmt::Pair(" s", 2),
        applies: tools_only,
    });
    for g in &d.groups {
        rows.push(Row {
            label: format!(
                "commit → checkpoint on the target, {g} groups, p50 / p99 (commits every second for {}, {} records/s written)",
                d.cp_window, d.stream_rate
            ),
            keys: vec![format!("cp{g}.p50"), format!("cp{g}.p99")],
            fmt: Fmt::Pair(" s", 2),
            applies: tools_only,
        });
        rows.push(Row {
            label: format!("… commits of those {g} groups no checkpoint covered by the end"),
            keys: vec![format!("cp{g}.unseen")],
            fmt: Fmt::One("", 0),
            applies: tools_only,
        });
    }
    let f = d.failover_groups;
    for (path, what) in [
        ("tool", "each tool's own translation"),
        ("cp", "the newest checkpoints"),
    ] {
        rows.push(Row {
            label: format!(
                "failover of {f} groups under traffic, by {what}: records read twice, total / max per group"
            ),
            keys: vec![format!("fo.{path}.reread"), format!("fo.{path}.reread_max")],
            fmt: Fmt::Pair("", 0),
            applies: tools_only,
        });
        rows.push(Row {
            label: "… records skipped, total / max per group".to_owned(),
            keys: vec![
                format!("fo.{path}.skipped"),
                format!("fo.{path}.skipped_max"),
            ],
            fmt: Fmt::Pair("", 0),
            applies: tools_only,
        });
    }
    rows
}

/// Prints the table; every cell a row applies to must hold a figure or a
/// note, else it is an error.
pub fn print(res: &mut Results, d: &Described, runs: usize, busy: &str, skipped: &[Column]) {
    println!();
    println!(
        "strait versus MirrorMaker 2 on the same two Apache Kafka 4.3.1 clusters, one tool after the other, \
         fresh topics and groups for each; median of {runs} run(s); {busy}"
    );
    println!();
    let mut header = String::from("| metric |");
    let mut rule = String::from("|---|");
    for c in COLUMNS {
        header.push_str(&format!(" {} |", c.title()));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    let mut missing = Vec::new();
    for row in rows(d) {
        let mut line = format!("| {} |", row.label);
        for c in COLUMNS {
            let cell = if !(row.applies)(c) {
                "—".to_owned()
            } else if skipped.contains(&c) {
                "not run (BENCH_COLUMNS)".to_owned()
            } else if let Some(n) = row.keys.iter().find_map(|k| res.notes.get(&(c, k.clone()))) {
                n.clone()
            } else {
                let v: Option<Vec<f64>> = row.keys.iter().map(|k| res.median(c, k)).collect();
                match v {
                    Some(v) => {
                        let n = res.runs(c, &row.keys[0]);
                        let mut s = render(row.fmt, &v);
                        if n < runs {
                            s.push_str(&format!(" ({n} of {runs} runs)"));
                        }
                        s
                    }
                    None => {
                        missing.push(format!("{}: {}", c.title(), row.label));
                        "NOT MEASURED".to_owned()
                    }
                }
            };
            line.push_str(&format!(" {cell} |"));
        }
        println!("{line}");
    }
    for m in missing {
        res.errors.push(format!("not measured: {m}"));
    }
}
