//! Fleet mode end to end: real etcd, two tansu clusters, two controller
//! processes and three worker processes, killed and stopped with real
//! signals while a writer produces sequenced records.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const PARTS: i32 = 6;
/// The lease TTL of the test fleet.
const TTL: Duration = Duration::from_secs(6);

fn fleet_config(sb: &Sandbox, deployment: &str, topic: &str, token: &str) -> String {
    config(
        sb,
        deployment,
        topic,
        "",
        &format!(
            r#"
[coordination]
etcd = ["{}"]
lease_ttl = "{}s"
request_timeout = "1s"
[api]
token = "{token}"
"#,
            sb.etcd,
            TTL.as_secs()
        ),
    )
}

/// GET on whichever controller leads: (its index, the JSON).
fn from_leader(controllers: &mut [Strait], path: &str) -> Option<(usize, Value)> {
    for (i, c) in controllers.iter_mut().enumerate() {
        if !c.running() {
            continue;
        }
        let (code, v) = c.get_json(path);
        if code == 200 {
            return Some((i, v));
        }
    }
    None
}

/// Unit -> (planned worker, owner, state) from the leader's /v1/units.
fn units(controllers: &mut [Strait]) -> BTreeMap<String, (String, String, String)> {
    let Some((_, v)) = from_leader(controllers, "/v1/units") else {
        return BTreeMap::new();
    };
    v["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let s = |k: &str| u[k].as_str().unwrap_or("-").to_owned();
            (
                format!("{}/{}", s("topic"), u["partition"]),
                (s("planned"), s("owner"), s("state")),
            )
        })
        .collect()
}

/// Every unit planned for, owned by and running on a worker of `on`.
fn all_running_on(controllers: &mut [Strait], on: &[&str]) -> bool {
    let u = units(controllers);
    u.len() == PARTS as usize
        && u.values().all(|(planned, owner, state)| {
            planned == owner && on.contains(&owner.as_str()) && state == "running"
        })
}

/// Every unit planned for and owned (owner key held) by a worker of `on`;
/// owner keys change at once, while states come with load reports.
fn all_owned_by(controllers: &mut [Strait], on: &[&str]) -> bool {
    let u = units(controllers);
    u.len() == PARTS as usize
        && u.values()
            .all(|(planned, owner, _)| planned == owner && on.contains(&owner.as_str()))
}

fn per_worker(controllers: &mut [Strait]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for (_, (_, owner, _)) in units(controllers) {
        *n.entry(owner).or_default() += 1;
    }
    n
}

#[test]
fn a_fleet_spreads_units_and_survives_kills_pauses_leader_loss_and_drains() {
    let sb = sandbox();
    let topic = unique("fleet");
    let deployment = unique("fleet");
    create_topic(&sb.source, &topic, PARTS);
    let cfg = fleet_config(&sb, &deployment, &topic, "");

    let mut controllers: Vec<Strait> = (1..=2)
        .map(|i| {
            Strait::start_with(
                &format!("{deployment}-c{i}"),
                &cfg,
                &["--role", "controller", "--id", &format!("c{i}")],
            )
        })
        .collect();
    let mut workers: BTreeMap<&str, Strait> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|id| {
            (
                id,
                Strait::start_with(
                    &format!("{deployment}-{id}"),
                    &cfg,
                    &["--role", "worker", "--id", id],
                ),
            )
        })
        .collect();

    // A writer produces sequenced records through every step.
    let source = sb.source.clone();
    let t = topic.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_writer = stop.clone();
    let writer = std::thread::spawn(move || {
        let p = producer(&source);
        let mut chunk = 0;
        while !stop_writer.load(std::sync::atomic::Ordering::Relaxed) {
            let recs: Vec<Rec> = (0..25)
                .flat_map(|i| (0..PARTS).map(move |part| Rec::seq(part, chunk * 25 + i)))
                .collect();
            send(&p, &t, &recs);
            chunk += 1;
            std::thread::sleep(Duration::from_millis(150));
        }
        use rdkafka::producer::Producer as _;
        p.flush(Duration::from_secs(30)).unwrap();
        chunk * 25
    });

    // Spread evenly: two units each.
    wait_for(
        "6 units running, 2 per worker",
        Duration::from_secs(60),
        || {
            all_running_on(&mut controllers, &["w1", "w2", "w3"])
                && per_worker(&mut controllers).values().all(|&n| n == 2)
        },
    );
    println!("fleet: spread {:?}", per_worker(&mut controllers));
    // Readiness, as Kubernetes probes it: a worker once registered on its
    // lease, a controller once it leads or knows the leader.
    for (id, w) in &workers {
        let (code, body) = w.get_json("/ready");
        assert_eq!(
            (code, &body["ready"]),
            (200, &Value::Bool(true)),
            "worker {id}: {body}"
        );
    }
    for c in &controllers {
        let (code, body) = c.get_json("/ready");
        assert_eq!(code, 200, "controller: {body}");
    }

    // SIGKILL a worker: its units run elsewhere within the lease TTL plus a few seconds.
    assert!(!writer.is_finished(), "the kill must land mid-stream");
    let killed = Instant::now();
    workers
        .get_mut("w1")
        .unwrap()
        .stop_with("KILL", Duration::from_secs(5));
    wait_for(
        "w1's units owned by w2 and w3",
        TTL + Duration::from_secs(15),
        || all_owned_by(&mut controllers, &["w2", "w3"]),
    );
    let moved_after = killed.elapsed();
    wait_for("and running there", Duration::from_secs(20), || {
        all_running_on(&mut controllers, &["w2", "w3"])
    });
    println!("fleet: units of a killed worker running elsewhere after {moved_after:?} (lease TTL {TTL:?})");
    assert!(
        moved_after < TTL + Duration::from_secs(8),
        "took {moved_after:?}"
    );

    // Kill the leader: the other controller takes over with the plan intact.
    let (leader, plan_before) = from_leader(&mut controllers, "/v1/plan").expect("a leader");
    controllers[leader].stop_with("KILL", Duration::from_secs(5));
    let other = 1 - leader;
    wait_for(
        "the other controller leads",
        TTL + Duration::from_secs(15),
        || controllers[other].get_json("/v1/plan").0 == 200,
    );
    let (_, plan_after) = controllers[other].get_json("/v1/plan");
    assert_eq!(
        plan_after["assignments"], plan_before["assignments"],
        "the new leader keeps the plan"
    );
    assert_eq!(
        plan_after["epoch"], plan_before["epoch"],
        "nothing changed, so no new epoch"
    );
    controllers[leader].restart();

    // SIGSTOP a worker past its lease, then SIGCONT: it fenced itself, its
    // units moved, and it writes nothing for them.
    let paused = "w3";
    workers[paused].signal("STOP");
    wait_for(
        "w3's units running on w2",
        TTL + Duration::from_secs(15),
        || all_running_on(&mut controllers, &["w2"]),
    );
    workers[paused].signal("CONT");
    // The data plane sees the passed deadline itself; the keep-alive task
    // learns the lease is gone on its next round (up to a quarter TTL later),
    // so wait for both rather than expect them in one order.
    wait_for(
        "w3 fenced its data plane and noticed its lease is gone",
        Duration::from_secs(20),
        || {
            let log = workers[paused].log_text();
            log.contains("fenced: stopped producing") && log.contains("lease lost")
        },
    );
    // Back in the fleet with a new lease, it gets units again.
    wait_for("w3 back with units", Duration::from_secs(30), || {
        all_running_on(&mut controllers, &["w2", "w3"])
            && per_worker(&mut controllers).contains_key("w3")
    });

    // Drain w2 through the CLI: it ends with no units.
    let out = controllers[other].cli(&["workers", "drain", "w2"]);
    assert!(
        out.status.success(),
        "drain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("w2 drained", Duration::from_secs(30), || {
        all_running_on(&mut controllers, &["w3"])
    });
    let workers_json = from_leader(&mut controllers, "/v1/workers").unwrap().1;
    let w2 = workers_json["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "w2")
        .unwrap()
        .clone();
    assert_eq!(w2["drained"], true);
    assert_eq!(w2["units_planned"], 0);

    // Rolling restart: undrain w2, SIGTERM w3; its units restart on w2 at
    // once, not after its lease expires.
    assert!(controllers[other]
        .cli(&["workers", "undrain", "w2"])
        .status
        .success());
    wait_for("w2 takes units again", Duration::from_secs(30), || {
        per_worker(&mut controllers).contains_key("w2")
            && all_running_on(&mut controllers, &["w2", "w3"])
    });
    let term = Instant::now();
    let status = workers
        .get_mut("w3")
        .unwrap()
        .stop_with("TERM", Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit: {status:?}");
    wait_for("w3's units on w2", Duration::from_secs(30), || {
        all_owned_by(&mut controllers, &["w2"])
    });
    let handoff = term.elapsed();
    println!("fleet: rolling restart of a worker moved its units in {handoff:?}");
    assert!(
        handoff < TTL,
        "a drained handoff must not wait for the lease ({handoff:?})"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let per = writer.join().unwrap();
    let group = format!("strait.{deployment}.src-dst");
    wait_for(
        "all progress committed on the source",
        Duration::from_secs(90),
        || committed(&sb.source, &group, &topic, PARTS) == vec![Some(per as i64); PARTS as usize],
    );
    let got = consume(
        &sb.target,
        &format!("src.{topic}"),
        PARTS,
        usize::MAX,
        Duration::from_secs(10),
    );
    let dups = check_sequences(&got, PARTS, per);
    println!(
        "fleet: {} records on the target, 0 missing, {dups} duplicates",
        got.len()
    );
    let owners: BTreeSet<String> = units(&mut controllers)
        .values()
        .map(|(_, o, _)| o.clone())
        .collect();
    assert_eq!(owners, BTreeSet::from(["w2".to_owned()]));
}

#[test]
fn the_api_redirects_to_the_leader_and_explains_bad_requests() {
    let sb = sandbox();
    let topic = unique("api");
    let deployment = unique("api");
    create_topic(&sb.source, &topic, 2);
    let cfg = fleet_config(&sb, &deployment, &topic, "s3cret");
    let c1 = Strait::start_with(
        &format!("{deployment}-c1"),
        &cfg,
        &["--role", "controller", "--id", "c1"],
    );
    wait_for("c1 leads", Duration::from_secs(30), || {
        c1.get_json("/v1/plan").0 == 200
    });
    let c2 = Strait::start_with(
        &format!("{deployment}-c2"),
        &cfg,
        &["--role", "controller", "--id", "c2"],
    );
    let tok = Some("s3cret");

    // A follower answers with the leader's address.
    let (code, head, body) = c2.call("GET", "/v1/workers", None, None);
    assert_eq!(code, 307, "{head}\n{body}");
    let location = format!("http://127.0.0.1:{}/v1/workers", c1.metrics_port);
    assert!(
        head.to_lowercase()
            .contains(&format!("location: {location}").to_lowercase()),
        "{head}"
    );
    assert!(body.contains("not the leader"), "{body}");
    let (code, v) = c2.get_json("/ready");
    assert_eq!((code, v["leader"].clone()), (200, Value::Bool(false)));
    // The CLI follows the redirect, token included.
    let out = c2.cli(&["topics", "add", "src-dst", "extra", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Mutations need the token; reads do not.
    let (code, _, body) = c1.call("POST", "/v1/rebalance", None, None);
    assert_eq!(code, 401, "{body}");
    let (code, _, body) = c1.call("POST", "/v1/rebalance", None, Some("wrong"));
    assert_eq!(code, 401, "{body}");
    assert_eq!(c1.call("POST", "/v1/rebalance", None, tok).0, 202);
    assert_eq!(c1.call("GET", "/v1/units", None, None).0, 200);

    // Bad requests get a 4xx and a JSON error that says what is wrong.
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            "POST",
            "/v1/topics",
            Some("{\"flow\": \"src-dst\"}"),
            400,
            "topic",
        ),
        ("POST", "/v1/topics", Some("not json"), 400, "expected"),
        (
            "POST",
            "/v1/topics",
            Some("{\"flow\": \"nope\", \"topic\": \"t\"}"),
            404,
            "no flow \\\"nope\\\"",
        ),
        (
            "POST",
            "/v1/topics",
            Some("{\"flow\": \"src-dst\", \"topic\": \"bad/name\"}"),
            400,
            "not a Kafka topic name",
        ),
        (
            "POST",
            "/v1/topics",
            Some("{\"flow\": \"src-dst\", \"topic\": \"__consumer_offsets\"}"),
            422,
            "never replicate",
        ),
        (
            "POST",
            "/v1/units/src-dst/orders/-1/pause",
            None,
            400,
            "not a partition number",
        ),
        (
            "POST",
            "/v1/units/src-dst/orders/x/pause",
            None,
            400,
            "not a partition number",
        ),
        (
            "POST",
            "/v1/workers/ghost/drain",
            None,
            404,
            "no worker \\\"ghost\\\"",
        ),
        (
            "POST",
            "/v1/units/src-dst/no-such-topic/0/pause",
            None,
            404,
            "no unit src-dst/no-such-topic/0: the flow does not replicate that topic",
        ),
        (
            "POST",
            "/v1/units/src-dst/orders/0/resume",
            None,
            404,
            "no unit src-dst/orders/0: the flow does not replicate that topic",
        ),
        (
            "GET",
            "/v1/nonexistent",
            None,
            404,
            "no route GET /v1/nonexistent",
        ),
    ];
    for (method, path, body, want, says) in cases {
        let (code, _, text) = c1.call(method, path, *body, tok);
        assert_eq!(code, *want, "{method} {path}: {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no error field: {text}"));
        assert!(
            msg.contains(&says.replace("\\\"", "\"")),
            "{method} {path}: {msg}"
        );
    }

    // Pause and resume land in the unit list. A unit can be paused once
    // the plan holds it (before, it is a 404 like any unknown unit).
    wait_for(
        "the unit in the plan, paused",
        Duration::from_secs(30),
        || {
            c1.call(
                "POST",
                &format!("/v1/units/src-dst/{topic}/1/pause"),
                None,
                tok,
            )
            .0 == 200
        },
    );
    let out = c1.cli(&["topics", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["topic"] == "extra" && o["action"] == "add"),
        "{v}"
    );

    // Removing a topic, and forgetting the operator's decision again.
    assert_eq!(
        c1.call("DELETE", "/v1/topics/src-dst/audit", None, tok).0,
        200
    );
    assert_eq!(
        c1.call("DELETE", "/v1/topics/src-dst/extra/override", None, tok)
            .0,
        200
    );
    let (_, v) = c1.get_json("/v1/topics");
    let overrides = v["overrides"].as_array().unwrap();
    assert!(
        overrides
            .iter()
            .any(|o| o["topic"] == "audit" && o["action"] == "remove"),
        "{v}"
    );
    assert!(!overrides.iter().any(|o| o["topic"] == "extra"), "{v}");

    // Every route is in the OpenAPI document.
    let (code, doc) = c1.get_json("/openapi.json");
    assert_eq!(code, 200);
    for path in [
        "/v1/topics",
        "/v1/topics/{flow}/{topic}",
        "/v1/units",
        "/v1/units/{flow}/{topic}/{partition}/pause",
        "/v1/units/{flow}/{topic}/{partition}/resume",
        "/v1/workers",
        "/v1/workers/{id}/drain",
        "/v1/workers/{id}/undrain",
        "/v1/plan",
        "/v1/rebalance",
        "/health",
        "/ready",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from /openapi.json"
        );
    }
}
