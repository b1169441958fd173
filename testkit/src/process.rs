//! A `strait` process as tests and the chaos harness run it: started from
//! a given binary with a config file, signalled with the real `kill`,
//! queried over its HTTP endpoint, and killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::{free_port, wait_for};

/// A `strait run` process; killed when dropped, so a failing test leaves
/// nothing behind.
pub struct Strait {
    bin: PathBuf,
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
    config: PathBuf,
    args: Vec<String>,
}

impl Strait {
    /// Writes `config` (with `{metrics}` replaced by a free port) to
    /// `dir/{name}.toml` and starts `bin run` with it and `args`
    /// (`--role`, `--id`); the process logs to `dir/{name}.log`.
    pub fn launch(bin: &Path, dir: &Path, name: &str, config: &str, args: &[&str]) -> Strait {
        std::fs::create_dir_all(dir).unwrap();
        let metrics_port = free_port();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            config.replace("{metrics}", &format!("127.0.0.1:{metrics_port}")),
        )
        .unwrap();
        let mut s = Strait {
            bin: bin.to_owned(),
            child: None,
            metrics_port,
            log: dir.join(format!("{name}.log")),
            config: path,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .args(&self.args)
            .env("STRAIT_LOG", "info,librdkafka=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.metrics_port;
        wait_for("strait's /health", Duration::from_secs(20), || {
            http_get(port, "/health").is_some_and(|b| b.starts_with("ok"))
        });
    }

    /// Starts strait again with the same config and metrics port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// Starts another binary (an upgrade or a downgrade) in this process's
    /// place: same config, metrics port and log.
    pub fn restart_as(&mut self, bin: &Path) {
        self.bin = bin.to_owned();
        self.restart();
    }

    /// The binary this process runs.
    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// The config file this process runs with.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// Runs `strait <args> --config <this config>` to completion.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (TERM, KILL, STOP, CONT) with the real `kill`.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Sends `signal` and waits for the process to end, with a deadline.
    pub fn stop_with(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        self.signal(signal);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "strait did not exit within {timeout:?} of SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `path` on strait's HTTP endpoint: (status code, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let (code, _, body) = self.call("GET", path, None, None);
        (code, body)
    }

    /// GET `path` and parse the JSON body.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = self.get(path);
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Any call on strait's HTTP endpoint: (status, head, body).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, String, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.unwrap_or("");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, head.to_owned(), body.to_owned())
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }

    /// The value of one metric series, e.g. `strait_units{flow="a-b",state="failed"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Strait {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// CPU seconds (user + system) process `pid` has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Peak resident memory (VmHWM) of process `pid`, in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
