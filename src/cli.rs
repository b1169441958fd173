//! `strait topics|workers|units|plan|status|rebalance`: the operator API
//! from a shell. Tables for people by default, `--json` for scripts. Calls
//! go to any controller; a follower's redirect is followed to the leader
//! (with the token, which an HTTP library would drop on a redirect).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use strait_common::config::Config;
use strait_common::model::UnitState;

/// The longest one call to the REST API may take: the slowest calls (a
/// failover of many groups) answer in seconds; a hung server fails the
/// command instead of holding it.
const API_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// Base URL of a controller's API [default: http://{metrics.listen} of --config].
    #[arg(long, env = "STRAIT_API", global = true)]
    api: Option<String>,
    /// Bearer token for mutating calls [default: api.token of --config].
    #[arg(long, env = "STRAIT_API_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Topics {
    /// Topics in the plan, and the operator's additions and removals.
    List,
    /// Replicate TOPIC in FLOW whatever the flow's regexes say.
    Add { flow: String, topic: String },
    /// Stop replicating TOPIC in FLOW whatever the flow's regexes say.
    Remove { flow: String, topic: String },
    /// Forget the operator's decision on TOPIC: the regexes decide again.
    Reset { flow: String, topic: String },
}

#[derive(Subcommand, Debug)]
pub enum Workers {
    /// Registered workers.
    List,
    /// Move every unit off worker ID and give it none until undrained.
    Drain {
        id: String,
    },
    Undrain {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum Units {
    /// Every unit: planned worker, owner, state, lag.
    List,
    /// Assign the unit to no worker until resumed.
    Pause {
        flow: String,
        topic: String,
        partition: i32,
    },
    Resume {
        flow: String,
        topic: String,
        partition: i32,
    },
}

#[derive(Debug)]
pub enum Call {
    Topics(Topics),
    Workers(Workers),
    Units(Units),
    Plan,
    Rebalance,
}

pub fn run(config: Option<&Config>, args: &ApiArgs, call: Call) -> ExitCode {
    let Some(base) = args
        .api
        .clone()
        .or_else(|| config.map(|c| format!("http://{}", c.metrics.listen)))
    else {
        eprintln!("strait: name the API with --api URL (or STRAIT_API), or pass --config");
        return ExitCode::from(2);
    };
    let token = args
        .token
        .clone()
        .or_else(|| config.and_then(|c| c.api.token.clone()));
    let (method, path, body) = match &call {
        Call::Topics(Topics::List) => ("GET", "/v1/topics".to_owned(), None),
        Call::Topics(Topics::Add { flow, topic }) => (
            "POST",
            "/v1/topics".to_owned(),
            Some(json!({ "flow": flow, "topic": topic })),
        ),
        Call::Topics(Topics::Remove { flow, topic }) => {
            ("DELETE", format!("/v1/topics/{flow}/{topic}"), None)
        }
        Call::Topics(Topics::Reset { flow, topic }) => (
            "DELETE",
            format!("/v1/topics/{flow}/{topic}/override"),
            None,
        ),
        Call::Workers(Workers::List) => ("GET", "/v1/workers".to_owned(), None),
        Call::Workers(Workers::Drain { id }) => ("POST", format!("/v1/workers/{id}/drain"), None),
        Call::Workers(Workers::Undrain { id }) => {
            ("POST", format!("/v1/workers/{id}/undrain"), None)
        }
        Call::Units(Units::List) => ("GET", "/v1/units".to_owned(), None),
        Call::Units(Units::Pause {
            flow,
            topic,
            partition,
        }) => (
            "POST",
            format!("/v1/units/{flow}/{topic}/{partition}/pause"),
            None,
        ),
        Call::Units(Units::Resume {
            flow,
            topic,
            partition,
        }) => (
            "POST",
            format!("/v1/units/{flow}/{topic}/{partition}/resume"),
            None,
        ),
        Call::Plan => ("GET", "/v1/plan".to_owned(), None),
        Call::Rebalance => ("POST", "/v1/rebalance".to_owned(), None),
    };
    match request(&base, method, &path, body.as_ref(), token.as_deref()) {
        Ok((status, value)) if (200..300).contains(&status) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                print!("{}", render(&call, &value));
            }
            match (&call, failed_units(&value)) {
                (Call::Units(Units::List), n) if n > 0 => {
                    eprintln!("strait: {n} unit(s) failed");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Ok((status, value)) => {
            let msg = value["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            eprintln!("strait: {method} {path}: {status}: {msg}");
            ExitCode::from(if (400..500).contains(&status) { 2 } else { 1 })
        }
        Err(e) => {
            eprintln!("strait: {method} {base}{path}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Units whose state is `failed`: `strait status` and `strait units` exit 1
/// when there is any, so scripts and health checks can use them.
fn failed_units(v: &Value) -> usize {
    v["units"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|u| u["state"] == UnitState::Failed.as_str())
                .count()
        })
        .unwrap_or(0)
}

/// One call, following up to three leader redirects by hand.
fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Result<(u16, Value), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .timeout_global(Some(API_TIMEOUT))
        .build()
        .into();
    let mut url = format!("{}{path}", base.trim_end_matches('/'));
    for _ in 0..4 {
        let auth = token.map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", _) => with_auth(agent.get(&url), &auth).call(),
            ("DELETE", _) => with_auth(agent.delete(&url), &auth).call(),
            (_, Some(b)) => with_auth(agent.post(&url), &auth).send_json(b),
            (_, None) => with_auth(agent.post(&url), &auth).send_empty(),
        };
        let mut resp = result.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status == 307 {
            if let Some(next) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
                url = next.to_owned();
                continue;
            }
        }
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "error": text.trim() }));
        return Ok((status, value));
    }
    Err("too many redirects (is a leader elected?)".into())
}

fn with_auth<B>(req: ureq::RequestBuilder<B>, auth: &Option<String>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => req.header("Authorization", a),
        None => req,
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            // `+ 0.0` turns -0.0 (and anything rounding to it) into 0.
            Some(f) if n.is_f64() => format!("{:.0}", f.round() + 0.0),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A plain text table: a header and left-aligned columns (the API
/// commands' and the DR commands').
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut out = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ");
        out.truncate(out.trim_end().len());
        out + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r);
    }
    out
}

fn rows(v: &Value, key: &str, cols: &[&str]) -> Vec<Vec<String>> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| cols.iter().map(|c| s(&r[*c])).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn render(call: &Call, v: &Value) -> String {
    match call {
        Call::Topics(Topics::List) => {
            let mut out = table(
                &["FLOW", "TOPIC", "REMOTE", "PARTITIONS", "OPERATOR"],
                rows(
                    v,
                    "topics",
                    &[
                        "flow",
                        "topic",
                        "remote_topic",
                        "partitions_assigned",
                        "operator",
                    ],
                ),
            );
            let o = rows(v, "overrides", &["flow", "topic", "action"]);
            if !o.is_empty() {
                out += "\n";
                out += &table(&["FLOW", "TOPIC", "OVERRIDE"], o);
            }
            out
        }
        Call::Workers(Workers::List) => table(
            &[
                "ID", "STATE", "DRAINED", "PLANNED", "RUNNING", "BYTES/S", "VERSION", "ADDRESS",
            ],
            rows(
                v,
                "workers",
                &[
                    "id",
                    "state",
                    "drained",
                    "units_planned",
                    "units_running",
                    "bytes_per_sec",
                    "version",
                    "address",
                ],
            ),
        ),
        Call::Units(Units::List) => table(
            &[
                "FLOW",
                "TOPIC",
                "PARTITION",
                "PLANNED",
                "OWNER",
                "STATE",
                "LAG",
                "PAUSED",
                "ERROR",
            ],
            rows(
                v,
                "units",
                &[
                    "flow",
                    "topic",
                    "partition",
                    "planned",
                    "owner",
                    "state",
                    "lag",
                    "paused",
                    "error",
                ],
            ),
        ),
        Call::Plan => {
            let mut out = format!("epoch {}\n", s(&v["epoch"]));
            let r: Vec<Vec<String>> = v["assignments"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(w, units)| {
                            let list: Vec<String> = units
                                .as_array()
                                .map(|a| a.iter().map(s).collect())
                                .unwrap_or_default();
                            vec![w.clone(), list.len().to_string(), list.join(" ")]
                        })
                        .collect()
                })
                .unwrap_or_default();
            out += &table(&["WORKER", "UNITS", "ASSIGNED"], r);
            out
        }
        _ => {
            // Mutations: one line saying what now holds.
            let fields: Vec<String> = v
                .as_object()
                .map(|m| m.iter().map(|(k, x)| format!("{k}={}", s(x))).collect())
                .unwrap_or_default();
            format!("{}\n", fields.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_show_missing_values_as_dashes() {
        let v = json!({ "workers": [
            { "id": "w1", "state": "active", "drained": false, "units_planned": 3, "units_running": 3, "bytes_per_sec": 1024.4, "version": "0.1.0", "address": "http://a" },
            { "id": "worker-22", "state": "draining", "drained": true, "units_planned": 0, "units_running": 0, "bytes_per_sec": null, "version": "0.1.0", "address": "http://b" }
        ]});
        let out = render(&Call::Workers(Workers::List), &v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("ID         STATE     DRAINED"),
            "{out}"
        );
        assert!(lines[1].contains("1024"), "{out}");
        assert!(lines[2].starts_with("worker-22  draining  true"), "{out}");
        assert!(lines[2].contains(" - "), "a null shows as a dash: {out}");
        assert_eq!(s(&json!(-0.0)), "0");
        assert_eq!(s(&json!(-0.3)), "0");
        assert_eq!(s(&json!(2.6)), "3");
    }

    #[test]
    fn failed_units_are_counted_from_the_units_listing() {
        let v = json!({ "units": [
            { "flow": "a", "topic": "t", "partition": 0, "state": "running" },
            { "flow": "a", "topic": "t", "partition": 1, "state": "failed" },
            { "flow": "a", "topic": "t", "partition": 2, "state": null },
        ]});
        assert_eq!(failed_units(&v), 1);
        assert_eq!(failed_units(&json!({ "units": [] })), 0);
        assert_eq!(failed_units(&json!({ "workers": [] })), 0);
    }
}
