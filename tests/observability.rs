//! The dashboard and the alert rules under `deploy/`, against a real
//! Prometheus scraping a running strait: every panel query and every alert
//! expression must be valid PromQL, every metric they name must be one
//! strait declares, and every query must return data where strait has
//! produced it. A metric renamed in code fails here.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Metrics strait only exports once the event they count happened; a
/// healthy run has none of them. Their names are still checked against the
/// code.
const ON_EVENT_ONLY: &[&str] = &["strait_errors_total"];

struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, scrape_port: u16) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {ROOT}/deploy/prometheus/strait-alerts.yml\n\
                 scrape_configs:\n  - job_name: strait\n    static_configs:\n      - targets: ['127.0.0.1:{scrape_port}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus not found: scripts/deps.sh installs Debian's prometheus package");
        let mut p = Prometheus { child, port };
        let log = dir.join("prometheus.log");
        wait_for("prometheus ready", MINUTE, || {
            // A rule file it cannot load stops it at once: say why.
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!(
                    "prometheus exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            ureq::get(&format!("http://127.0.0.1:{port}/-/ready"))
                .call()
                .is_ok()
        });
        p
    }

    fn get(&self, path: &str, query: Option<&str>) -> Value {
        let mut req = ureq::get(&format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(q) = query {
            req = req.query("query", q);
        }
        match req.call() {
            Ok(mut r) => r.body_mut().read_json().unwrap(),
            Err(ureq::Error::StatusCode(code)) => {
                serde_json::json!({ "status": "error", "error": format!("HTTP {code}") })
            }
            Err(e) => panic!("prometheus: {e}"),
        }
    }

    /// The result of an instant query, or the error Prometheus gave.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.get("/api/v1/query", Some(expr));
        if v["status"] != "success" {
            return Err(format!("{expr}: {}", v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

/// `strait_*` metric names an expression refers to (a histogram's series by
/// the histogram's name).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"strait_[a-z_]+").unwrap();
    re.find_iter(expr)
        .map(|m| {
            let name = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

/// Every metric name strait declares (common/src/metrics.rs).
fn declared() -> BTreeSet<String> {
    let source = std::fs::read_to_string(format!("{ROOT}/common/src/metrics.rs")).unwrap();
    let re = regex::Regex::new(r#"pub const [A-Z_]+: &str = "(strait_[a-z_]+)""#).unwrap();
    re.captures_iter(&source).map(|c| c[1].to_owned()).collect()
}

/// (title, expression) of every panel target, with Grafana's variables
/// replaced by what they stand for.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/grafana/strait-flows.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$flow", ".*")
                .replace("$__rate_interval", "30s");
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    out
}

/// (alert, expression) of every rule.
fn alert_rules() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(format!("{ROOT}/deploy/prometheus/strait-alerts.yml")).unwrap();
    // The file's shape is fixed (alert:, then expr: on one line or as a
    // `|` block); read it without a YAML library.
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    let mut alert = None;
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert: ") {
            alert = Some(name.to_owned());
        } else if let Some(expr) = t.strip_prefix("expr: ") {
            let expr = if expr == "|" {
                let mut block = Vec::new();
                while let Some(next) = lines.peek() {
                    if next.trim().is_empty()
                        || next.trim_start().starts_with("for:")
                        || next.trim_start().starts_with("labels:")
                    {
                        break;
                    }
                    block.push(lines.next().unwrap().trim());
                }
                block.join(" ")
            } else {
                expr.to_owned()
            };
            out.push((alert.take().expect("expr before alert"), expr));
        }
    }
    out
}

#[test]
fn every_dashboard_query_and_alert_expression_holds_against_a_real_prometheus() {
    let sb = sandbox();
    let topic = unique("observed");
    let deployment = unique("observed");
    let app = unique("app");
    create_topic(&sb.source, &topic, 2);
    produce(&sb.source, &topic, &Rec::seqs(2, 0..200));
    commit_group(&sb.source, &app, &topic, &[(0, 50), (1, 50)]);
    let cfg = config(&sb, &deployment, &topic, "", "")
        .replace("heartbeats = false", "heartbeats = true")
        .replace(
            "checkpoints = false",
            &format!("checkpoints = true\ncheckpoint_interval = \"500ms\"\ngroups = [\"{app}\"]"),
        );
    let strait = Strait::start(&deployment, &cfg);
    wait_for("replicated", MINUTE, || {
        committed(
            &sb.source,
            &format!("strait.{deployment}.src-dst"),
            &topic,
            2,
        ) == vec![Some(200), Some(200)]
    });

    let dir = std::env::temp_dir().join("strait-tests").join(&deployment);
    std::fs::create_dir_all(&dir).unwrap();
    let prom = Prometheus::start(&dir, strait.metrics_port);
    wait_for(
        "strait scraped, heartbeats and checkpoints measured",
        MINUTE,
        || {
            prom.query("up{job=\"strait\"} == 1")
                .is_ok_and(|r| !r.is_empty())
                && [
                    "strait_heartbeat_age_seconds",
                    "strait_checkpoint_lag_seconds",
                ]
                .iter()
                .all(|m| prom.query(m).is_ok_and(|r| !r.is_empty()))
                && prom
                    .query("rate(strait_records_replicated_total[30s]) > 0")
                    .is_ok_and(|r| !r.is_empty())
        },
    );

    let declared = declared();
    let mut problems = Vec::new();
    let queries = dashboard_queries();
    let rules = alert_rules();
    assert!(queries.len() >= 12, "{queries:?}");
    assert_eq!(rules.len(), 8, "{rules:?}");
    for (what, expr) in queries.iter().chain(&rules) {
        let names = metric_names(expr);
        for n in &names {
            if !declared.contains(n) {
                problems.push(format!("{what}: {n} is not a metric strait declares"));
            }
        }
        let result = match prom.query(expr) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{what}: invalid: {e}"));
                continue;
            }
        };
        // Every metric it names exists in the scrape, unless it counts an
        // event a healthy run does not have.
        for n in names
            .iter()
            .filter(|n| !ON_EVENT_ONLY.contains(&n.as_str()))
        {
            if prom
                .query(&format!("count({{__name__=~\"{n}(_bucket)?\"}})"))
                .unwrap()
                .is_empty()
            {
                problems.push(format!("{what}: strait exports no {n}"));
            }
        }
        // A panel shows data wherever its metrics exist.
        let is_panel = queries.iter().any(|(_, q)| q == expr);
        if is_panel
            && result.is_empty()
            && !names.iter().any(|n| ON_EVENT_ONLY.contains(&n.as_str()))
        {
            problems.push(format!("{what}: no data for {expr}"));
        }
    }
    // Prometheus loaded and evaluated every rule without an error.
    let loaded = prom.get("/api/v1/rules", None);
    let groups = loaded["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let evaluated: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .collect();
    assert_eq!(evaluated.len(), rules.len(), "{loaded}");
    for r in evaluated {
        if r["health"] != "ok" {
            problems.push(format!(
                "rule {}: health {} {}",
                r["name"], r["health"], r["lastError"]
            ));
        }
    }
    // A healthy run raises no alert.
    let firing = prom.query("ALERTS{alertstate=\"firing\"}").unwrap();
    assert!(
        firing.is_empty(),
        "alerts firing on a healthy run: {firing:?}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The check can fail: a renamed metric is found.
    let renamed = "sum(strait_record_replicated_total)";
    assert!(!metric_names(renamed).iter().all(|n| declared.contains(n)));
}
