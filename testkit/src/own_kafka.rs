//! A plaintext Apache Kafka cluster of a test's own (`compose/kafka.sh`),
//! for tests that stop a cluster and start it again on the same data and
//! port: a data centre that fails and comes back. The shared sandbox's
//! clusters are never stopped (other tests use them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One single-node cluster, killed when dropped.
pub struct OwnKafka {
    child: Option<Child>,
    pub bootstrap: String,
    port: u16,
    dir: PathBuf,
    starts: u32,
}

impl Drop for OwnKafka {
    fn drop(&mut self) {
        self.kill();
    }
}

impl OwnKafka {
    /// Starts a new, empty cluster in `dir` and waits until it serves.
    pub fn start(dir: &Path) -> OwnKafka {
        let mut k = OwnKafka {
            child: None,
            port: crate::free_port(),
            bootstrap: String::new(),
            dir: dir.to_owned(),
            starts: 0,
        };
        k.bootstrap = format!("127.0.0.1:{}", k.port);
        k.spawn(false);
        k
    }

    /// Kills the broker with SIGKILL (a crash: nothing flushed on purpose)
    /// and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the cluster again on its data and port, after [`Self::kill`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn(true);
    }

    fn spawn(&mut self, keep: bool) {
        std::fs::create_dir_all(&self.dir).unwrap();
        self.starts += 1;
        let log = self.dir.join(format!("kafka-{}.log", self.starts));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/kafka.sh");
        let child = Command::new("bash")
            .arg(&script)
            .arg(self.dir.join("node"))
            .arg(self.port.to_string())
            .env("STRAIT_KAFKA_KEEP", if keep { "1" } else { "0" })
            .env("STRAIT_KAFKA_HEAP", "384m")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(self.dir.join("kafka.err")).unwrap())
            .spawn()
            .expect("bash compose/kafka.sh");
        self.child = Some(child);
        wait_started(self.child.as_mut().unwrap(), &log, "the cluster");
    }
}

/// Waits until the broker `child` runs logs that it started (90 s at
/// most); panics with the log's tail if it exits or does not.
pub(crate) fn wait_started(child: &mut Child, log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Kafka Server started") {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited ({status}): {}", tail(&text));
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start: {}",
            tail(&text)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
