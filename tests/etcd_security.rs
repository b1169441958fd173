//! strait against an etcd that requires TLS with client certificates, and
//! against one with authentication (user and password): each works, and a
//! wrong CA, an expired certificate and a wrong password each stop strait
//! at start with a clear error. No password or key material appears in
//! the logs, the status or the errors. The certificates are made here with
//! openssl; each test runs its own etcd.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use strait_testkit::pki::{ca, signed};
use support::*;

const PASSWORD: &str = "pw-5e3c-never-logged";

/// The tests here run one at a time: each starts its own etcd on ports
/// picked free, and two picking the same port at once would meet each
/// other's etcd.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Etcd {
    child: Child,
    endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    fn start(dir: &Path, scheme: &str, extra: &[String]) -> Etcd {
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("{scheme}://127.0.0.1:{client}");
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.join("etcd-data"))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer}"),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; scripts/deps.sh installs it)");
        let mut e = Etcd { child, endpoint };
        wait_for("etcd listening", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", client)).is_ok()
        });
        assert!(
            e.child.try_wait().unwrap().is_none(),
            "the etcd started here exited (its port was taken?): {}",
            std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
        );
        e
    }
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join("strait-tests").join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(sb: &Sandbox, deployment: &str, coordination: &str) -> String {
    support::config(sb, deployment, "no-topic-here", "", "") + "\n[coordination]\n" + coordination
}

/// Runs `strait run` with `cfg`, which must stop it at start: it exits
/// non-zero within 30 s, saying it cannot reach etcd and `why` (any case).
/// Returns what it printed.
fn refused_at_start(name: &str, cfg: &str, why: &str) -> String {
    let d = dir(name);
    let path = d.join("strait.toml");
    std::fs::write(
        &path,
        cfg.replace("{metrics}", &format!("127.0.0.1:{}", free_port())),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "strait kept running with a bad coordination config:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cannot reach etcd"), "{err}");
    assert!(
        err.to_lowercase().contains(&why.to_lowercase()),
        "the error says {why:?}: {err}"
    );
    println!("{name}: {}", err.lines().last().unwrap_or_default());
    err
}

fn registered(strait: &Strait) -> bool {
    strait.log_text().contains("registered") && strait.log_text().contains("leading")
}

#[test]
fn etcd_over_tls_with_client_certificates() {
    let _serial = serial();
    let sb = sandbox();
    let d = dir("etcd-tls");
    ca(&d, "ca");
    ca(&d, "other-ca");
    signed(&d, "ca", "server", "serverAuth", "2");
    signed(&d, "ca", "client", "clientAuth", "2");
    let p = |f: &str| d.join(f).display().to_string();
    let etcd = Etcd::start(
        &d,
        "https",
        &[
            format!("--cert-file={}", p("server.crt")),
            format!("--key-file={}", p("server.key")),
            "--client-cert-auth".into(),
            format!("--trusted-ca-file={}", p("ca.crt")),
        ],
    );
    let tls = |ca: &str| {
        format!(
            "etcd = [\"{}\"]\n[coordination.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            etcd.endpoint,
            p(ca),
            p("client.crt"),
            p("client.key")
        )
    };
    // It works: the process registers and leads over TLS.
    let deployment = unique("tls");
    let strait = Strait::start(&deployment, &config(&sb, &deployment, &tls("ca.crt")));
    wait_for("registered over TLS", Duration::from_secs(30), || {
        registered(&strait)
    });
    let key = std::fs::read_to_string(d.join("client.key")).unwrap();
    let key_line = key.lines().nth(1).unwrap();
    assert!(
        !strait.log_text().contains(key_line),
        "key material in the log"
    );
    drop(strait);

    // A CA that did not sign the server's certificate.
    let err = refused_at_start(
        "tls-wrong-ca",
        &config(&sb, &unique("tls"), &tls("other-ca.crt")),
        "certificate",
    );
    assert!(!err.contains(key_line));

    // A client without a certificate is refused by etcd.
    let no_cert = format!(
        "etcd = [\"{}\"]\n[coordination.tls]\nca_file = \"{}\"\n",
        etcd.endpoint,
        p("ca.crt")
    );
    refused_at_start(
        "tls-no-cert",
        &config(&sb, &unique("tls"), &no_cert),
        "client certificate",
    );
}

#[test]
fn an_expired_server_certificate_is_refused_at_start() {
    let _serial = serial();
    let sb = sandbox();
    let d = dir("etcd-expired");
    ca(&d, "ca");
    signed(&d, "ca", "server", "serverAuth", "0");
    // Valid for 0 days: its end is the second it was made. A client checks
    // validity to the second, so wait until that end is 2 s past.
    wait_for("the certificate expired", Duration::from_secs(10), || {
        !Command::new("openssl")
            .current_dir(&d)
            .args(["x509", "-in", "server.crt", "-noout", "-checkend", "-2"])
            .output()
            .unwrap()
            .status
            .success()
    });
    let p = |f: &str| d.join(f).display().to_string();
    let etcd = Etcd::start(
        &d,
        "https",
        &[
            format!("--cert-file={}", p("server.crt")),
            format!("--key-file={}", p("server.key")),
        ],
    );
    let cfg = format!(
        "etcd = [\"{}\"]\n[coordination.tls]\nca_file = \"{}\"\n",
        etcd.endpoint,
        p("ca.crt")
    );
    refused_at_start(
        "tls-expired",
        &config(&sb, &unique("expired"), &cfg),
        "expired",
    );
}

#[test]
fn etcd_with_authentication() {
    let _serial = serial();
    let sb = sandbox();
    let d = dir("etcd-auth");
    let etcd = Etcd::start(&d, "http", &[]);
    // Enable authentication: a root user with the root role.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
            .await
            .unwrap();
        let _ = c.role_add("root").await;
        c.user_add("root", PASSWORD, None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.auth_enable().await.unwrap();
    });
    let auth = |password: &str| {
        format!(
            "etcd = [\"{}\"]\nuser = \"root\"\npassword = \"{password}\"\n",
            etcd.endpoint
        )
    };
    let deployment = unique("auth");
    let strait = Strait::start(&deployment, &config(&sb, &deployment, &auth(PASSWORD)));
    wait_for(
        "registered with a password",
        Duration::from_secs(30),
        || registered(&strait),
    );
    let (_, status) = strait.get_json("/v1/status");
    assert!(
        !status.to_string().contains(PASSWORD),
        "the password in /v1/status"
    );
    assert!(
        !strait.log_text().contains(PASSWORD),
        "the password in the log"
    );
    drop(strait);

    let err = refused_at_start(
        "auth-wrong",
        &config(&sb, &unique("auth"), &auth("wrong-password-x")),
        "authentication failed",
    );
    assert!(
        !err.contains("wrong-password-x") && !err.contains(PASSWORD),
        "a password in the error: {err}"
    );
}
