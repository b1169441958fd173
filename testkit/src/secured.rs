//! Secured Apache Kafka clusters for the security tests: a cluster of its
//! own per test binary (`compose/kafka.sh` with `STRAIT_KAFKA_SECURITY`),
//! SASL/SCRAM over TLS or mutual TLS, ACLs enforced, one super user
//! (`admin`). Certificates are made per run ([`crate::pki`]); the ACLs are
//! granted with Kafka's own `kafka-acls` (`org.apache.kafka.tools.AclCommand`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::mm2::kafka_lib;
use crate::pki::{ca, signed};

/// The admin principal's password on every secured cluster.
pub const ADMIN_PASSWORD: &str = "admin-pw-never-logged";

/// How a secured cluster's clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// SASL/SCRAM-SHA-512 over TLS.
    SaslSsl,
    /// Mutual TLS: a client certificate, whose CN is the principal.
    Mtls,
}

impl Security {
    fn as_env(self) -> &'static str {
        match self {
            Security::SaslSsl => "sasl_ssl",
            Security::Mtls => "mtls",
        }
    }
}

/// A CA and the certificates the tests present: `admin` (the brokers'
/// own, server and client), `strait` and `other` (clients), `expired` (a
/// client certificate past its end), and `stranger` (a client certificate
/// from `other-ca`, which no broker trusts).
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        ca(dir, "ca");
        signed(dir, "ca", "admin", "serverAuth,clientAuth", "2");
        for client in ["strait", "other"] {
            signed(dir, "ca", client, "clientAuth", "2");
        }
        signed(dir, "ca", "expired", "clientAuth", "0");
        ca(dir, "other-ca");
        signed(dir, "other-ca", "stranger", "clientAuth", "2");
        // A broker's PEM keystore: its key, then its certificate.
        let pem = [
            std::fs::read_to_string(dir.join("admin.key")).unwrap(),
            std::fs::read_to_string(dir.join("admin.crt")).unwrap(),
        ]
        .concat();
        std::fs::write(dir.join("broker.pem"), pem).unwrap();
        Pki {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// One secured single-node cluster, stopped when dropped.
pub struct SecuredKafka {
    child: Child,
    pub bootstrap: String,
    pub security: Security,
    dir: PathBuf,
    ca: String,
    pki: PathBuf,
}

impl Drop for SecuredKafka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SecuredKafka {
    /// Starts a cluster in `dir` with `security`, the certificates of `pki`
    /// and, for SASL, the SCRAM `users` (name, password); waits until it
    /// serves. The tests' own helpers ([`crate::secure`]) reach it as
    /// `admin`.
    pub fn start(
        dir: &Path,
        security: Security,
        pki: &Pki,
        users: &[(&str, &str)],
    ) -> SecuredKafka {
        std::fs::create_dir_all(dir).unwrap();
        let port = crate::free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/kafka.sh");
        let log = dir.join("kafka.log");
        let users: Vec<String> = users.iter().map(|(u, p)| format!("{u}={p}")).collect();
        let child = Command::new("bash")
            .arg(&script)
            .arg(dir.join("node"))
            .arg(port.to_string())
            .env("STRAIT_KAFKA_SECURITY", security.as_env())
            .env("STRAIT_KAFKA_PKI", &pki.dir)
            .env("STRAIT_KAFKA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("STRAIT_KAFKA_SCRAM_USERS", users.join(" "))
            .env("STRAIT_KAFKA_HEAP", "512m")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("kafka.err")).unwrap())
            .spawn()
            .expect("bash compose/kafka.sh");
        let mut k = SecuredKafka {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
            security,
            dir: dir.to_owned(),
            ca: pki.path("ca.crt"),
            pki: pki.dir.clone(),
        };
        crate::own_kafka::wait_started(&mut k.child, &log, "the secured cluster");
        let admin = k.client_settings("admin", ADMIN_PASSWORD);
        let admin: Vec<(&str, &str)> = admin
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        crate::secure(&k.bootstrap, &admin);
        k
    }

    /// librdkafka settings for `principal`: its SCRAM password, or its
    /// certificate (`password` unused) for mutual TLS.
    pub fn client_settings(&self, principal: &str, password: &str) -> Vec<(String, String)> {
        let pki = |f: &str| self.pki.join(f).display().to_string();
        let mut s = vec![("ssl.ca.location".to_owned(), self.ca.clone())];
        match self.security {
            Security::SaslSsl => s.extend([
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
                ("sasl.username".to_owned(), principal.to_owned()),
                ("sasl.password".to_owned(), password.to_owned()),
            ]),
            Security::Mtls => s.extend([
                ("security.protocol".to_owned(), "SSL".to_owned()),
                (
                    "ssl.certificate.location".to_owned(),
                    pki(&format!("{principal}.crt")),
                ),
                (
                    "ssl.key.location".to_owned(),
                    pki(&format!("{principal}.key")),
                ),
            ]),
        }
        s
    }

    /// Adds (`add`) or removes ACLs for `principal`, as the admin, through
    /// librdkafka (see [`crate::acls`]).
    pub fn acls(&self, principal: &str, acls: &[crate::acls::Acl], add: bool) {
        crate::acls::change(
            &self.bootstrap,
            &self.client_settings("admin", ADMIN_PASSWORD),
            principal,
            acls,
            add,
        );
    }

    /// Runs `kafka-acls --bootstrap-server B --command-config ADMIN ARGS`
    /// (`org.apache.kafka.tools.AclCommand`) as the admin; panics with its
    /// output if it fails. Returns what it printed.
    pub fn kafka_acls(&self, args: &[&str]) -> String {
        let config = self.dir.join("admin.properties");
        if !config.exists() {
            let auth = match self.security {
                Security::SaslSsl => format!(
                    "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
                     sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"{ADMIN_PASSWORD}\";\n"
                ),
                Security::Mtls => format!(
                    "security.protocol=SSL\nssl.keystore.type=PEM\nssl.keystore.location={}\n",
                    self.pki.join("broker.pem").display()
                ),
            };
            let text = format!(
                "{auth}ssl.truststore.type=PEM\nssl.truststore.location={}\n",
                self.ca
            );
            std::fs::write(&config, text).unwrap();
        }
        let out = Command::new("java")
            .args(["-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{}/*", kafka_lib().display()))
            .arg(format!(
                "-Dlog4j2.configurationFile={}/../compose/kafka/log4j2.properties",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg("org.apache.kafka.tools.AclCommand")
            .args(["--bootstrap-server", &self.bootstrap, "--command-config"])
            .arg(&config)
            .args(args)
            .output()
            .expect("java");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kafka-acls {args:?}: {text}");
        text
    }
}
