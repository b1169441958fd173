//! The etcd coordinator, over `etcd-client` (gRPC). Every request is
//! bounded by a timeout so a partitioned etcd shows up as
//! [`CoordError::Unavailable`] rather than a hang.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions,
    Identity, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::{mpsc, Mutex};

use super::{
    ttl_secs, Compare, CoordError, Coordinator, Event, GrpcCode, Kv, LeaseId, Op, Result, Revision,
    Watch,
};
use crate::config::CoordinationConfig;

/// Batches a watch queues for its consumer before it stops reading from
/// etcd: a slow consumer holds the stream back (etcd keeps what is not
/// read yet), it never loses an event.
pub const WATCH_BUFFER: usize = 64;
/// gRPC keep-alive ping interval: a dead connection to etcd is noticed in
/// seconds, well inside a lease's TTL (10 s by default).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Pause between connection probes while etcd does not answer yet: small
/// beside the request timeout (2 s by default) that bounds the whole wait.
const CONNECT_PROBE_PAUSE: Duration = Duration::from_millis(50);

pub struct Etcd {
    client: Client,
    endpoints: Vec<String>,
    timeout: Duration,
    /// One keep-alive stream per lease, each behind its own lock, so a slow
    /// renewal of one lease never holds up another's.
    keepers: std::sync::Mutex<HashMap<LeaseId, Arc<Mutex<Option<Keeper>>>>>,
}

/// A lease's keep-alive stream.
struct Keeper {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    /// A request was sent and its answer not read: the call that sent it
    /// was given up (its caller's own timeout). That answer must never be
    /// credited to a later request, so the stream is not used again.
    unanswered: bool,
}

/// Unavailable without an answer from etcd (a timeout, a stream that
/// ended): no status code.
fn unavailable(e: impl std::fmt::Display) -> CoordError {
    CoordError::Unavailable {
        code: None,
        message: e.to_string(),
    }
}

/// The gRPC status code of an etcd error, where etcd answered with one.
fn grpc_code(e: &etcd_client::Error) -> Option<GrpcCode> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some(GrpcCode::from_i32(i32::from(s.code()))),
        _ => None,
    }
}

fn from_etcd(e: etcd_client::Error) -> CoordError {
    match (grpc_code(&e), &e) {
        (Some(code), etcd_client::Error::GRpcStatus(s)) if code.is_refusal() => {
            CoordError::Refused {
                code: Some(code),
                message: s.message().to_owned(),
            }
        }
        (code, _) => CoordError::Unavailable {
            code,
            message: e.to_string(),
        },
    }
}

/// The reason when an etcd error is a TLS refusal that retrying cannot
/// cure (the certificate chain, its validity, a missing client certificate).
fn permanent_tls_error(debug: &str) -> Option<&'static str> {
    let d = debug.to_ascii_lowercase();
    [
        ("expired", "a certificate has expired"),
        ("notvalidyet", "a certificate is not valid yet"),
        (
            "unknownissuer",
            "the server's certificate is not signed by coordination.tls.ca_file",
        ),
        ("badsignature", "a certificate's signature does not verify"),
        (
            "notvalidforname",
            "the server's certificate does not name the endpoint's host",
        ),
        (
            "certificaterequired",
            "etcd requires a client certificate (coordination.tls.cert_file, key_file)",
        ),
        (
            "invalid peer certificate",
            "the server's certificate was refused",
        ),
        (
            "badcertificate",
            "etcd refused the client certificate (or sent none it accepts)",
        ),
        (
            "bad certificate",
            "etcd refused the client certificate (or sent none it accepts)",
        ),
        (
            "unknown ca",
            "etcd does not trust the client certificate's CA",
        ),
    ]
    .iter()
    .find(|(needle, _)| d.contains(needle))
    .map(|(_, why)| *why)
}

impl Etcd {
    /// Connects (bounded by the request timeout). TLS and user/password
    /// come from the config; a bad certificate file is an error here, not
    /// at the first request.
    pub async fn connect(cfg: &CoordinationConfig) -> anyhow::Result<Etcd> {
        use anyhow::Context as _;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(cfg.request_timeout)
            .with_timeout(cfg.request_timeout)
            .with_keep_alive(KEEP_ALIVE, cfg.request_timeout)
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &cfg.tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca_file {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("coordination.tls.ca_file {}", ca.display()))?;
                t = t.ca_certificate(Certificate::from_pem(pem));
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                let cert = std::fs::read(cert)
                    .with_context(|| format!("coordination.tls.cert_file {}", cert.display()))?;
                let key = std::fs::read(key)
                    .with_context(|| format!("coordination.tls.key_file {}", key.display()))?;
                t = t.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(t);
        }
        let client = tokio::time::timeout(
            cfg.request_timeout * 2,
            Client::connect(&cfg.etcd, Some(options)),
        )
        .await
        .map_err(|_| anyhow::anyhow!("etcd {:?}: no answer", cfg.etcd))?
        .with_context(|| format!("etcd {:?}", cfg.etcd))?;
        // The connection itself is made at the first request: make one now,
        // so that a certificate etcd or strait refuses (wrong CA, expired,
        // none where etcd wants one) stops strait at start with the reason.
        // An etcd that is only away is retried later, as always.
        // With TLS 1.3 a refused client certificate shows only after the
        // handshake, so the first errors may be closed connections: ask
        // again, 50 ms apart, for up to the request timeout.
        let mut probe = client.kv_client();
        let deadline = tokio::time::Instant::now() + cfg.request_timeout;
        loop {
            match tokio::time::timeout_at(deadline, probe.get("strait-connect-probe", None)).await {
                Ok(Err(e)) => {
                    if let Some(why) = permanent_tls_error(&format!("{e:?}")) {
                        anyhow::bail!("etcd {:?}: TLS handshake refused: {why}: {e}", cfg.etcd);
                    }
                }
                _ => break,
            }
            if tokio::time::Instant::now() + CONNECT_PROBE_PAUSE >= deadline {
                break;
            }
            tokio::time::sleep(CONNECT_PROBE_PAUSE).await;
        }
        Ok(Etcd {
            client,
            endpoints: cfg.etcd.clone(),
            timeout: cfg.request_timeout,
            keepers: std::sync::Mutex::new(HashMap::new()),
        })
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        self.answer(f).await?.map_err(from_etcd)
    }

    /// etcd's answer, as etcd-client gives it (for the callers that look at
    /// it before it becomes a [`CoordError`]), or unavailable if there was
    /// none within the request timeout.
    async fn answer<T>(
        &self,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<std::result::Result<T, etcd_client::Error>> {
        tokio::time::timeout(self.timeout, f).await.map_err(|_| {
            unavailable(format!(
                "no answer from {:?} within {:?}",
                self.endpoints, self.timeout
            ))
        })
    }
}

fn kv(k: &etcd_client::KeyValue) -> Result<Kv> {
    Ok(Kv {
        key: k
            .key_str()
            .map_err(|e| CoordError::Refused {
                code: None,
                message: format!("key is not UTF-8: {e}"),
            })?
            .to_owned(),
        value: k.value().to_vec(),
        create_revision: k.create_revision(),
        mod_revision: k.mod_revision(),
        lease: k.lease(),
    })
}

#[async_trait]
impl Coordinator for Etcd {
    fn describe(&self) -> String {
        format!("etcd {}", self.endpoints.join(","))
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        let mut c = self.client.clone();
        let r = self.bounded(c.lease_grant(ttl_secs(ttl), None)).await?;
        Ok(r.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let slot = self
            .keepers
            .lock()
            .unwrap()
            .entry(lease)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if slot.as_ref().is_some_and(|k| k.unanswered) {
            // The answer still due on this stream belongs to a request whose
            // caller gave up: a new stream, so that each answer is credited
            // to the request that got it.
            *slot = None;
        }
        if slot.is_none() {
            let mut c = self.client.clone();
            match self.answer(c.lease_keep_alive(lease)).await? {
                Ok((keeper, stream)) => {
                    *slot = Some(Keeper {
                        keeper,
                        stream,
                        unanswered: false,
                    })
                }
                Err(e) if lease_gone(&e) => return Ok(None),
                Err(e) => return Err(from_etcd(e)),
            };
        }
        let k = slot.as_mut().expect("made above");
        let timeout = self.timeout;
        // Marked before the send and cleared once its answer is read: if
        // this call is dropped in between, the stream is not used again.
        k.unanswered = true;
        let answer = tokio::time::timeout(timeout, async {
            k.keeper.keep_alive().await?;
            k.stream.message().await
        })
        .await;
        k.unanswered = false;
        match answer {
            Ok(Ok(Some(r))) if r.ttl() > 0 => Ok(Some(Duration::from_secs(r.ttl() as u64))),
            Ok(Ok(Some(_))) => {
                *slot = None;
                self.keepers.lock().unwrap().remove(&lease); // gone for good
                Ok(None)
            }
            Ok(Ok(None)) => {
                *slot = None;
                Err(unavailable("keep-alive stream closed"))
            }
            Ok(Err(e)) => {
                *slot = None;
                if lease_gone(&e) {
                    self.keepers.lock().unwrap().remove(&lease);
                    Ok(None)
                } else {
                    Err(from_etcd(e))
                }
            }
            Err(_) => {
                *slot = None;
                Err(unavailable(format!(
                    "keep-alive unanswered within {timeout:?}"
                )))
            }
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.keepers.lock().unwrap().remove(&lease);
        let mut c = self.client.clone();
        match self.answer(c.lease_revoke(lease)).await? {
            Ok(_) => Ok(()),
            // Already gone is what we wanted.
            Err(e) if lease_gone(&e) => Ok(()),
            Err(e) => Err(from_etcd(e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Kv>> {
        let mut c = self.client.clone();
        let r = self.bounded(c.get(key, None)).await?;
        r.kvs().first().map(kv).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<Kv>, Revision)> {
        let mut c = self.client.clone();
        let r = self
            .bounded(c.get(prefix, Some(GetOptions::new().with_prefix())))
            .await?;
        let revision = r.header().map(|h| h.revision()).unwrap_or(0);
        let kvs = r.kvs().iter().map(kv).collect::<Result<Vec<_>>>()?;
        Ok((kvs, revision))
    }

    async fn txn(&self, when: Vec<Compare>, then: Vec<Op>) -> Result<bool> {
        let compares: Vec<EtcdCompare> = when
            .into_iter()
            .map(|c| match c {
                Compare::Absent(k) => EtcdCompare::create_revision(k, CompareOp::Equal, 0),
                Compare::CreatedAt(k, rev) => {
                    EtcdCompare::create_revision(k, CompareOp::Equal, rev)
                }
                Compare::Value(k, v) => EtcdCompare::value(k, CompareOp::Equal, v),
            })
            .collect();
        let ops: Vec<TxnOp> = then
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    TxnOp::put(key, value, lease.map(|l| PutOptions::new().with_lease(l)))
                }
                Op::Delete(key) => TxnOp::delete(key, None),
            })
            .collect();
        let mut c = self.client.clone();
        let r = self
            .bounded(c.txn(Txn::new().when(compares).and_then(ops)))
            .await?;
        Ok(r.succeeded())
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        let mut c = self.client.clone();
        let mut stream = self
            .bounded(c.watch(
                prefix,
                Some(WatchOptions::new().with_prefix().with_start_revision(from)),
            ))
            .await?;
        // Bounded, and the task waits for room: while the consumer is
        // behind, the stream is not read (backpressure), so nothing piles up
        // here and nothing is dropped.
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    m = stream.message() => m,
                    _ = tx.closed() => return, // nobody watches any more
                };
                let batch = match item {
                    Ok(Some(r)) if r.compact_revision() > 0 => Err(CoordError::Compacted {
                        requested: from,
                        oldest: r.compact_revision(),
                    }),
                    Ok(Some(r)) if r.canceled() => Err(unavailable(format!(
                        "watch cancelled: {}",
                        r.cancel_reason()
                    ))),
                    Ok(Some(r)) => r
                        .events()
                        .iter()
                        .map(|e| {
                            let k = e
                                .kv()
                                .ok_or_else(|| unavailable("watch event without a key"))?;
                            Ok(match e.event_type() {
                                EventType::Put => Event::Put(kv(k)?),
                                EventType::Delete => Event::Delete {
                                    key: kv(k)?.key,
                                    revision: k.mod_revision(),
                                },
                            })
                        })
                        .collect::<Result<Vec<_>>>(),
                    Ok(None) => Err(unavailable("watch stream closed")),
                    Err(e) => Err(from_etcd(e)),
                };
                match batch {
                    // One batch per revision, as the trait promises; etcd
                    // packs several revisions into one response.
                    Ok(events) => {
                        for same in by_revision(events) {
                            // Fails only once nobody watches any more.
                            if tx.send(Ok(same)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(Watch::bounded(rx))
    }
}

/// etcd's way of saying a lease expired or was revoked: gRPC NotFound
/// ("etcdserver: requested lease not found"). The code alone is enough
/// here: of etcd's answers only that one and "member not found" (the
/// cluster API, which strait never calls) are NotFound.
///
/// One fallback by text: etcd answers a keep-alive of such a lease with a
/// TTL of 0, not an error, and etcd-client turns that answer, when it opens
/// the keep-alive stream, into its own `LeaseKeepAliveError("lease not
/// found")`, which has no code. Only that error, with exactly the text
/// etcd-client gives it, is recognised by its text (etcd-client 0.21,
/// `LeaseClient::keep_alive`).
fn lease_gone(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::LeaseKeepAliveError(m) => m == KEEP_ALIVE_LEASE_NOT_FOUND,
        _ => grpc_code(e) == Some(GrpcCode::NotFound),
    }
}

/// The text of etcd-client's own error for a keep-alive stream opened on a
/// lease etcd no longer has (see [`lease_gone`]).
const KEEP_ALIVE_LEASE_NOT_FOUND: &str = "lease not found";

/// Splits events (in revision order) into one batch per revision.
fn by_revision(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut out: Vec<Vec<Event>> = Vec::new();
    for e in events {
        match out.last_mut() {
            Some(last) if last[0].revision() == e.revision() => last.push(e),
            _ => out.push(vec![e]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::permanent_tls_error;

    /// Only etcd-client's own keep-alive error is read by its text, and
    /// only with its exact words; any other error is told by its gRPC code
    /// (etcd's NotFound is covered against the sandbox's etcd, in
    /// tests/coord.rs: a revoke of a revoked lease).
    #[test]
    fn a_gone_lease_is_told_by_code_or_by_etcd_clients_own_error() {
        use etcd_client::Error as E;
        assert!(super::lease_gone(&E::LeaseKeepAliveError(
            "lease not found".into()
        )));
        assert!(!super::lease_gone(&E::LeaseKeepAliveError(
            "channel closed".into()
        )));
        assert!(!super::lease_gone(&E::WatchError("lease not found".into())));
        assert!(!super::lease_gone(&E::Internal(
            "etcdserver: requested lease not found".into()
        )));
    }

    /// Keep-alives of two leases do not wait on each other: one whose
    /// renewal is slow (here: its slot held, as a call waiting on a late
    /// answer holds it) must not hold up the other's, or a worker in `--role
    /// all` would fence itself on the controller's slow lease. With one lock
    /// for every lease (until December 2026) the second call waited.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_renewal_of_one_lease_does_not_hold_up_another() {
        use std::time::Duration;

        use crate::config::CoordinationConfig;
        use crate::coord::Coordinator as _;

        let cfg = CoordinationConfig {
            etcd: vec![strait_testkit::sandbox().etcd],
            ..CoordinationConfig::default()
        };
        let etcd = super::Etcd::connect(&cfg)
            .await
            .expect("the sandbox's etcd");
        let slow = etcd.grant(Duration::from_secs(30)).await.unwrap();
        let other = etcd.grant(Duration::from_secs(30)).await.unwrap();
        assert!(etcd.keep_alive(slow).await.unwrap().is_some());
        let slot = etcd.keepers.lock().unwrap()[&slow].clone();
        let held = slot.lock().await; // `slow`'s renewal under way
        let renewed = tokio::time::timeout(Duration::from_secs(2), etcd.keep_alive(other)).await;
        drop(held);
        assert!(
            matches!(renewed, Ok(Ok(Some(_)))),
            "the other lease was not renewed while one renewal was slow: {renewed:?}"
        );
        for lease in [slow, other] {
            let _ = etcd.revoke(lease).await;
        }
    }

    /// A consumer that does not keep up holds the watch back instead of
    /// letting a queue grow: at most [`super::WATCH_BUFFER`] batches wait
    /// for it, and once it reads, every revision arrives, in order, none
    /// missing. (With the unbounded queue of before, all of them were
    /// queued at once.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_watcher_holds_the_watch_back_and_misses_nothing() {
        use std::time::{Duration, Instant};

        use crate::config::CoordinationConfig;
        use crate::coord::{Coordinator as _, Event};

        let cfg = CoordinationConfig {
            etcd: vec![strait_testkit::sandbox().etcd],
            ..CoordinationConfig::default()
        };
        let etcd = super::Etcd::connect(&cfg)
            .await
            .expect("the sandbox's etcd");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!("strait-test/slow-watcher-{nanos}/");
        let (_, revision) = etcd.list(&prefix).await.unwrap();
        let mut watch = etcd.watch(&prefix, revision + 1).await.unwrap();
        let n = super::WATCH_BUFFER * 3;
        let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:04}")).collect();
        for k in &keys {
            etcd.put(k, b"v".to_vec(), None).await.unwrap();
        }
        // Nothing read yet: the queue fills up to its bound and stays there.
        let until = Instant::now() + Duration::from_secs(10);
        while watch.queued() < super::WATCH_BUFFER && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not a synchronisation: time for the watcher to overfill the queue
        // if the bound did not hold (no event says "it did not grow").
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(watch.queued(), super::WATCH_BUFFER);
        // Read now: one batch per revision, every key, in order.
        let mut seen = Vec::new();
        let mut last = revision;
        while seen.len() < n {
            let batch = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("the watch goes on once read")
                .expect("the watch has not ended")
                .expect("no error");
            assert_eq!(batch.len(), 1, "one put per revision: {batch:?}");
            let Event::Put(kv) = &batch[0] else {
                panic!("only puts: {batch:?}");
            };
            assert!(kv.mod_revision > last, "in revision order");
            last = kv.mod_revision;
            seen.push(kv.key.clone());
        }
        assert_eq!(seen, keys);
        for k in &keys {
            let _ = etcd.delete(k).await;
        }
    }

    #[test]
    fn tls_refusals_are_told_apart_from_an_etcd_that_is_away() {
        let expired =
            r#"InvalidCertificate(ExpiredContext { time: UnixTime(1), not_after: UnixTime(0) })"#;
        assert_eq!(
            permanent_tls_error(expired),
            Some("a certificate has expired")
        );
        assert!(permanent_tls_error("InvalidCertificate(UnknownIssuer)")
            .is_some_and(|w| w.contains("ca_file")));
        assert!(permanent_tls_error(r#"error: "received fatal alert: BadCertificate""#).is_some());
        for away in [
            "Connection refused (os error 111)",
            r#"hyper::Error(Canceled, "connection closed")"#,
            "The service is currently unavailable",
        ] {
            assert_eq!(permanent_tls_error(away), None, "{away}");
        }
    }
}
