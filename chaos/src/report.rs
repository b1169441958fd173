//! One row per scenario run, and the table every run prints.

use std::time::Duration;

use crate::traffic::Outcome;

pub struct Row {
    pub scenario: &'static str,
    pub faults: String,
    pub outcome: Option<Outcome>,
    /// Checkpoints of the scenario's application group seen on the target.
    pub checkpoints: u64,
    /// Units the leaders moved between workers from the first fault until
    /// the target caught up (every topic's units, not only this one's).
    pub moves: Option<u64>,
    /// Invariant breaches: counted by the processes, or seen by the harness.
    pub breaches: Vec<String>,
    /// Why the scenario could not finish, if it could not.
    pub error: Option<String>,
    /// An exactly-once run: a duplicate fails it.
    pub exactly_once: bool,
}

impl Row {
    pub fn new(scenario: &'static str, exactly_once: bool) -> Row {
        Row {
            scenario,
            faults: "-".into(),
            outcome: None,
            checkpoints: 0,
            moves: None,
            breaches: Vec::new(),
            error: None,
            exactly_once,
        }
    }

    /// Nothing lost, nothing reordered, no invariant broken, finished;
    /// exactly-once: nothing twice either.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.breaches.is_empty()
            && self.outcome.as_ref().is_some_and(|o| {
                o.missing == 0
                    && o.out_of_order == 0
                    && o.foreign == 0
                    && o.produced > 0
                    && (!self.exactly_once || o.duplicates == 0)
            })
    }

    pub fn summary(&self) -> String {
        let verdict = if self.passed() { "ok" } else { "FAILED" };
        let mut s = format!("{} {verdict}: {}", self.scenario, self.faults);
        if let Some(o) = &self.outcome {
            s += &format!(
                "; {} produced, {} missing, {} duplicates, {} out of order, longest stall {}, recovery {}, {} unit moves, {} checkpoints",
                o.produced,
                o.missing,
                o.duplicates,
                o.out_of_order,
                secs(Some(o.longest_stall)),
                secs(o.recovery),
                self.moves.map_or("-".into(), |n| n.to_string()),
                self.checkpoints
            );
        }
        if let Some(t) = self.outcome.as_ref().and_then(|o| o.transactions) {
            s += &format!(
                "; read committed from the log: {} records shown, {} of aborted transactions hidden ({} commit and {} abort markers), {} in open ones",
                t.shown, t.aborted, t.commit_markers, t.abort_markers, t.open
            );
        }
        if let Some(o) = self.outcome.as_ref().filter(|o| o.duplicates > 0) {
            s += &format!("; duplicates: {}", o.first_duplicates.join(", "));
        }
        if let Some(o) = self.outcome.as_ref().filter(|o| o.foreign > 0) {
            s += &format!(
                "; {} records on the target that were never written",
                o.foreign
            );
        }
        for b in &self.breaches {
            s += &format!("; breach: {b}");
        }
        if let Some(e) = &self.error {
            s += &format!("; error: {e}");
        }
        s
    }
}

/// Duplicates; with the log reader, also the aborted records it hid.
fn duplicates(o: &Outcome) -> String {
    match o.transactions {
        Some(t) => format!("{} ({} aborted hidden)", o.duplicates, t.aborted),
        None => o.duplicates.to_string(),
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// A Markdown table of the rows.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "faults injected",
        "records produced",
        "missing",
        "duplicates",
        "out of order",
        "longest stall",
        "recovery",
        "unit moves",
        "invariants",
        "result",
    ];
    let mut lines = vec![
        format!("| {} |", header.join(" | ")),
        format!("|{}", "---|".repeat(header.len())),
    ];
    for r in rows {
        let o = r.outcome.clone().unwrap_or_default();
        let invariants = if r.breaches.is_empty() {
            "0 breaches".to_owned()
        } else {
            r.breaches.join("; ")
        };
        let result = match (&r.error, r.passed()) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, true) => "ok".into(),
            (None, false) => "FAILED".into(),
        };
        lines.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.faults,
            o.produced,
            o.missing,
            duplicates(&o),
            o.out_of_order,
            secs(r.outcome.as_ref().map(|o| o.longest_stall)),
            secs(o.recovery),
            r.moves.map_or("-".into(), |n| n.to_string()),
            invariants,
            result
        ));
    }
    lines.join("\n")
}
