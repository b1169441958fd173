//! Shared by the end-to-end tests: the `strait` process of this build
//! (see strait-testkit's `process`), and a config template.
#![allow(dead_code)]

use std::io::BufRead as _;
use std::path::Path;

use strait_testkit::config::{ConfigBuilder, Raw};

pub use strait_testkit::process::Strait;
pub use strait_testkit::*;

/// Starts this build's `strait` with its files under the temp directory.
pub trait StartStrait {
    fn start(name: &str, config: &str) -> Strait {
        Self::start_with(name, config, &[])
    }
    /// As `start`, with more `strait run` arguments (`--role`, `--id`).
    fn start_with(name: &str, config: &str, args: &[&str]) -> Strait;
}

impl StartStrait for Strait {
    fn start_with(name: &str, config: &str, args: &[&str]) -> Strait {
        let dir = std::env::temp_dir().join("strait-tests");
        Strait::launch(
            Path::new(env!("CARGO_BIN_EXE_strait")),
            &dir,
            name,
            config,
            args,
        )
    }
}

/// Writes `per` sequenced records to each of `parts` partitions of
/// `topic`, 50 at a time every 200 ms, so a test's restarts and faults land
/// mid-stream.
pub fn steady_writer(
    source: &str,
    topic: &str,
    parts: i32,
    per: usize,
) -> std::thread::JoinHandle<()> {
    use rdkafka::producer::Producer as _;
    let (source, topic) = (source.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        let p = producer(&source);
        for chunk in 0..per / 50 {
            let recs: Vec<Rec> = (0..50)
                .flat_map(|i| (0..parts).map(move |part| Rec::seq(part, chunk * 50 + i)))
                .collect();
            send(&p, &topic, &recs);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        p.flush(std::time::Duration::from_secs(30)).unwrap();
    })
}

/// A minimal config for one flow `src -> dst` replicating topics matching `topics`.
pub fn config(
    sb: &Sandbox,
    deployment: &str,
    topics: &str,
    extra_flow: &str,
    extra: &str,
) -> String {
    ConfigBuilder::new(deployment, &sb.source, &sb.target)
        // `topics` comes escaped for a TOML string (`src\\.orders`).
        .flow("topics", Raw(format!("[\"{topics}\"]")))
        .flow("heartbeats", false)
        .flow("checkpoints", false)
        .flow_raw(extra_flow)
        .quick()
        .raw(extra)
        .build()
}

/// [`consume`] by kafka-python (`tests/support/read_committed.py`) with
/// `isolation_level=read_committed`: a reader that shares no code with
/// strait. For Kafka: tansu hands read_committed readers aborted records.
pub fn python_read_committed(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
    timeout: std::time::Duration,
) -> Vec<Rec> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/read_committed.py"
    );
    let out = std::process::Command::new(clients_python())
        .args([
            script,
            bootstrap,
            topic,
            &partitions.to_string(),
            &expect.to_string(),
            &timeout.as_secs_f64().to_string(),
        ])
        .output()
        .expect("start the clients' python (compose/sandbox.sh install makes it)");
    assert!(
        out.status.success(),
        "read_committed.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(i32, i64, Option<String>)> =
        serde_json::from_slice(&out.stdout).expect("read_committed.py prints JSON");
    rows.into_iter()
        .map(|(partition, _, value)| Rec {
            partition,
            key: None,
            value: value.map(String::into_bytes),
            headers: vec![],
            timestamp: None,
        })
        .collect()
}

/// Runs one future to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// rdkafka's admin client for `bootstrap`.
pub fn rd_admin(
    bootstrap: &str,
) -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    client_config(bootstrap).create().unwrap()
}

/// A client for the group admin calls of `strait_controller::native_admin`
/// (ListConsumerGroupOffsets, AlterConsumerGroupOffsets): a consumer with a
/// `group.id` it never joins. librdkafka dereferences the client's own
/// consumer group when such a call is answered NotCoordinator, and crashes
/// on a client without one (librdkafka issue 5040).
pub fn group_admin(bootstrap: &str) -> rdkafka::consumer::BaseConsumer {
    client_config(bootstrap)
        .set("group.id", "strait-tests-group-admin")
        .create()
        .unwrap()
}

/// A topic's partition count in a fresh metadata answer (None: no such topic).
pub fn partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = client_config(bootstrap).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .ok()?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|&n| n > 0)
}

/// Every checkpoint on `topic`: (group, remote topic, partition, upstream,
/// downstream), decoded by hand from the MirrorMaker 2 format.
pub fn checkpoints(bootstrap: &str, topic: &str) -> Vec<(String, String, i32, i64, i64)> {
    fn string(b: &[u8]) -> Option<(String, &[u8])> {
        let len = usize::try_from(i16::from_be_bytes(b.get(..2)?.try_into().ok()?)).ok()?;
        Some((
            std::str::from_utf8(b.get(2..2 + len)?).ok()?.to_owned(),
            &b[2 + len..],
        ))
    }
    consume(
        bootstrap,
        topic,
        1,
        usize::MAX,
        std::time::Duration::from_secs(2),
    )
    .iter()
    .filter_map(|r| {
        let (key, value) = (r.key.as_deref()?, r.value.as_deref()?);
        let (group, rest) = string(key)?;
        let (t, rest) = string(rest)?;
        let partition = i32::from_be_bytes(rest.try_into().ok()?);
        (value.get(..2)? == [0, 0]).then_some(())?;
        let up = i64::from_be_bytes(value.get(2..10)?.try_into().ok()?);
        let down = i64::from_be_bytes(value.get(10..18)?.try_into().ok()?);
        Some((group, t, partition, up, down))
    })
    .collect()
}

/// Deletes `topic` and waits until its metadata is gone.
pub fn delete_topic(bootstrap: &str, topic: &str) {
    let deleted =
        block_on(rd_admin(bootstrap).delete_topics(&[topic], &rdkafka::admin::AdminOptions::new()))
            .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    wait_for("the topic gone", std::time::Duration::from_secs(60), || {
        partitions(bootstrap, topic).is_none()
    });
}

/// Runs the `strait` binary with `args` (a CLI command, not a process to
/// keep: see [`Strait`] for that).
pub fn strait(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(args)
        .output()
        .unwrap()
}

/// A command's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A kafka-python member of `group` on `bootstrap`, subscribed to `topic`,
/// until dropped.
pub struct Member(std::process::Child);

impl Member {
    pub fn join(bootstrap: &str, group: &str, topic: &str) -> Member {
        // Bounded: a member that never gets its partitions is replaced
        // (three tries of 30 s), then fails the test instead of hanging it.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_join(bootstrap, group, topic) {
                Ok(m) => return m,
                Err(e) => last = Some(e),
            }
        }
        panic!("the member of {group} on {bootstrap} did not join: {last:?}");
    }

    fn try_join(bootstrap: &str, group: &str, topic: &str) -> Result<Member, String> {
        let python = clients_python();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hold_group.py");
        let mut child = std::process::Command::new(&python)
            .args([script, bootstrap, group, topic])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (scripts/deps.sh installs kafka-python): {e}",
                    python.display()
                )
            });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) if line.trim() == "assigned" => Ok(Member(child)),
            got => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("no assignment within 30 s: {got:?}"))
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        drop(self.0.stdin.take()); // closes its stdin: it leaves the group
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while self.0.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `strait <args> --config <strait's config>`, killed if it has not
/// answered within `limit` (a hang fails the test, with what it printed).
pub fn cli_within(
    strait: &Strait,
    args: &[&str],
    limit: std::time::Duration,
) -> std::process::Output {
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new(strait.binary())
        .args(args)
        .arg("--config")
        .arg(strait.config_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drained while it runs: a full pipe must not stall it.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut b);
        b
    });
    let e = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut b);
        b
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`strait {}` did not answer within {limit:?}; stdout: {}; stderr: {}",
                args.join(" "),
                text(&o.join().unwrap()),
                text(&e.join().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// Partition 0's records of the refused-record tests: five small ones, one
/// of 50,002 bytes (offset 5), one more.
pub fn records_with_one_oversized() -> Vec<Rec> {
    let mut records: Vec<Rec> = (0..5).map(|i| Rec::seq(0, i)).collect();
    let mut big = Rec::seq(0, 5);
    big.value = Some(vec![b'x'; 50_000]);
    records.push(big);
    records.push(Rec::seq(0, 6));
    records
}

/// `cfg` (made by [`config`]) with a target that refuses records over
/// 20 kB: a client-side limit, so the refusal is the same on any broker.
pub fn target_refusing_over_20_kb(sb: &Sandbox, cfg: &str) -> String {
    let target_line = format!("bootstrap = \"{}\"", sb.target);
    cfg.replace(
        &target_line,
        &format!("{target_line}\nkafka = {{ \"message.max.bytes\" = 20000 }}"),
    )
}
