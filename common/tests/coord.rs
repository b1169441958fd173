//! One conformance suite, run against both coordinators: the embedded one
//! and a real etcd (the sandbox's). What the controller and workers rely on
//! must hold for both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strait_common::config::CoordinationConfig;
use strait_common::coord::embedded::Embedded;
use strait_common::coord::etcd::Etcd;
use strait_common::coord::lease::Lease;
use strait_common::coord::mirror::mirror;
use strait_common::coord::{Compare, Coord, CoordError, Event, GrpcCode, Op};
use strait_testkit::{sandbox, unique};
use tokio_util::sync::CancellationToken;

async fn etcd() -> Coord {
    let cfg = CoordinationConfig {
        etcd: vec![sandbox().etcd],
        ..CoordinationConfig::default()
    };
    Arc::new(Etcd::connect(&cfg).await.expect("sandbox etcd"))
}

async fn eventually(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn guarded_transactions(c: Coord) {
    let p = format!("/test/{}/", unique("txn"));
    let leader = format!("{p}leader");
    // Create only if absent: the second campaigner loses.
    assert!(c
        .txn(
            vec![Compare::Absent(leader.clone())],
            vec![Op::put(&leader, "a")]
        )
        .await
        .unwrap());
    assert!(!c
        .txn(
            vec![Compare::Absent(leader.clone())],
            vec![Op::put(&leader, "b")]
        )
        .await
        .unwrap());
    let held = c.get(&leader).await.unwrap().unwrap();
    assert_eq!(held.value, b"a");
    // Writes guarded by the holder's create revision pass...
    let guard = Compare::CreatedAt(leader.clone(), held.create_revision);
    assert!(c
        .txn(
            vec![guard.clone()],
            vec![Op::put(format!("{p}plan/w1"), "1")]
        )
        .await
        .unwrap());
    // ...and stop passing once the key is re-created by someone else, even
    // with the same value.
    c.delete(&leader).await.unwrap();
    assert!(c
        .txn(
            vec![Compare::Absent(leader.clone())],
            vec![Op::put(&leader, "a")]
        )
        .await
        .unwrap());
    assert!(!c
        .txn(vec![guard], vec![Op::put(format!("{p}plan/w1"), "2")])
        .await
        .unwrap());
    assert_eq!(
        c.get(&format!("{p}plan/w1")).await.unwrap().unwrap().value,
        b"1"
    );
    // Value comparison.
    assert!(c
        .txn(
            vec![Compare::Value(leader.clone(), b"a".to_vec())],
            vec![Op::delete(&leader)]
        )
        .await
        .unwrap());
    assert!(c.get(&leader).await.unwrap().is_none());
    // A listing sees the prefix only, sorted.
    c.put(&format!("{p}plan/w0"), b"0".to_vec(), None)
        .await
        .unwrap();
    c.put(&format!("{p}planx"), b"x".to_vec(), None)
        .await
        .unwrap();
    let (kvs, rev) = c.list(&format!("{p}plan/")).await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, [format!("{p}plan/w0"), format!("{p}plan/w1")]);
    assert!(rev >= kvs.iter().map(|k| k.mod_revision).max().unwrap());
}

async fn leases(c: Coord) {
    let p = format!("/test/{}/", unique("lease"));
    let lease = c.grant(Duration::from_secs(30)).await.unwrap();
    c.put(&format!("{p}owner"), b"w1".to_vec(), Some(lease))
        .await
        .unwrap();
    assert_eq!(
        c.get(&format!("{p}owner")).await.unwrap().unwrap().lease,
        lease
    );
    assert!(c.keep_alive(lease).await.unwrap().is_some());
    c.revoke(lease).await.unwrap();
    assert!(
        c.get(&format!("{p}owner")).await.unwrap().is_none(),
        "revoke deletes the lease's keys"
    );
    assert_eq!(c.keep_alive(lease).await.unwrap(), None);
    // Revoking it again: gone already is what was wanted (etcd answers
    // NotFound, told by its code).
    c.revoke(lease).await.unwrap();
    // A put on a dead lease is refused, not silently unleased.
    let err = c
        .put(&format!("{p}owner"), b"w1".to_vec(), Some(lease))
        .await
        .unwrap_err();
    // etcd's NotFound, from either store, so callers can tell it by its code.
    assert!(
        matches!(
            err,
            CoordError::Refused {
                code: Some(GrpcCode::NotFound),
                ..
            }
        ),
        "{err:?}"
    );

    // Expiry: an unrenewed lease's keys go on their own.
    let short = c.grant(Duration::from_secs(2)).await.unwrap();
    c.put(&format!("{p}short"), b"x".to_vec(), Some(short))
        .await
        .unwrap();
    let key = format!("{p}short");
    let end = Instant::now() + Duration::from_secs(10);
    while c.get(&key).await.unwrap().is_some() {
        assert!(Instant::now() < end, "lease never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A kept lease outlives its TTL and its fence stays open.
    let held = Lease::acquire(&c, Duration::from_secs(2), "test")
        .await
        .unwrap();
    c.put(&format!("{p}kept"), b"x".to_vec(), Some(held.id))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(c.get(&format!("{p}kept")).await.unwrap().is_some());
    assert!(held.fence().is_open());
    let (fence, lost) = (held.fence(), held.lost());
    held.revoke(&c).await.unwrap();
    assert!(!fence.is_open());
    assert!(
        !lost.is_cancelled(),
        "a revoked lease was given up, not lost"
    );
}

async fn watches(c: Coord) {
    let p = format!("/test/{}/", unique("watch"));
    c.put(&format!("{p}a"), b"1".to_vec(), None).await.unwrap();
    let (_, rev) = c.list(&p).await.unwrap();
    c.put(&format!("{p}b"), b"2".to_vec(), None).await.unwrap();
    c.txn(
        vec![],
        vec![Op::delete(format!("{p}a")), Op::put(format!("{p}c"), "3")],
    )
    .await
    .unwrap();
    c.put(
        &format!("/test/other-{}", unique("x")),
        b"no".to_vec(),
        None,
    )
    .await
    .unwrap();
    // Resuming from the revision after a listing replays exactly what followed.
    let mut w = c.watch(&p, rev + 1).await.unwrap();
    let first = w.next().await.unwrap().unwrap();
    assert!(
        matches!(&first[..], [Event::Put(kv)] if kv.key == format!("{p}b")),
        "{first:?}"
    );
    let second = w.next().await.unwrap().unwrap();
    assert_eq!(second.len(), 2, "one transaction, one batch: {second:?}");
    assert!(matches!(&second[0], Event::Delete { key, .. } if *key == format!("{p}a")));
    assert!(second.iter().all(|e| e.revision() == second[0].revision()));

    // A mirror follows the prefix.
    let stop = CancellationToken::new();
    let mut m = mirror(c.clone(), p.clone(), stop.clone());
    c.put(&format!("{p}d"), b"4".to_vec(), None).await.unwrap();
    let want = [format!("{p}b"), format!("{p}c"), format!("{p}d")];
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let s = m.borrow_and_update();
            if s.synced && s.kvs.keys().cloned().collect::<Vec<_>>() == want {
                break;
            }
        }
        assert!(
            Instant::now() < end,
            "mirror never caught up: {:?}",
            m.borrow().kvs.keys()
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), m.changed()).await;
    }
    stop.cancel();
}

#[tokio::test]
async fn embedded_transactions() {
    guarded_transactions(Arc::new(Embedded::new())).await;
}

#[tokio::test]
async fn embedded_leases() {
    leases(Arc::new(Embedded::new())).await;
}

#[tokio::test]
async fn embedded_watches() {
    watches(Arc::new(Embedded::new())).await;
}

#[tokio::test]
async fn etcd_transactions() {
    guarded_transactions(etcd().await).await;
}

#[tokio::test]
async fn etcd_leases() {
    leases(etcd().await).await;
}

#[tokio::test]
async fn etcd_watches() {
    watches(etcd().await).await;
}

/// After compaction a watch from an old revision fails, and a mirror
/// re-lists instead of missing changes.
#[tokio::test]
async fn a_compacted_revision_makes_the_mirror_relist() {
    let e = Embedded::new();
    let c: Coord = Arc::new(e.clone());
    c.put("/m/a", b"1".to_vec(), None).await.unwrap();
    c.put("/m/b", b"2".to_vec(), None).await.unwrap();
    let (_, rev) = c.list("/m/").await.unwrap();
    e.compact(rev);
    let err = c.watch("/m/", 1).await.err().expect("compacted");
    assert!(matches!(err, CoordError::Compacted { .. }), "{err:?}");
    let stop = CancellationToken::new();
    let m = mirror(c.clone(), "/m/".into(), stop.clone());
    c.delete("/m/a").await.unwrap();
    eventually("mirror sees the delete", Duration::from_secs(5), || {
        let s = m.borrow();
        s.synced && s.kvs.len() == 1 && s.kvs.contains_key("/m/b")
    })
    .await;
    stop.cancel();
}

/// A TCP proxy in front of etcd whose answers can be delayed and whose
/// requests can be dropped (nothing reaches etcd), for one test's client.
struct Proxy {
    port: u16,
    /// Delay of every chunk etcd sends back, in ms.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Drop every chunk the client sends.
    blackhole: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let blackhole = Arc::new(AtomicBool::new(false));
        let (d, b) = (delay_ms.clone(), blackhole.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let b = b.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if !b.load(Ordering::SeqCst) && sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let d = d.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let delay = d.load(Ordering::SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            delay_ms,
            blackhole,
        }
    }
}

/// A keep-alive answer is credited only to the request that got it: when a
/// renewal's caller gave up after sending it (its own timeout, shorter than
/// the request's), its late answer must not come back as the answer to the
/// next renewal, which would extend the fence from a request etcd may never
/// have received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_keep_alive_answer_is_never_credited_to_a_later_request() {
    use std::sync::atomic::Ordering;
    let proxy = Proxy::start(&sandbox().etcd).await;
    let cfg = CoordinationConfig {
        etcd: vec![format!("http://127.0.0.1:{}", proxy.port)],
        request_timeout: Duration::from_secs(3),
        ..CoordinationConfig::default()
    };
    let c: Coord = Arc::new(Etcd::connect(&cfg).await.expect("etcd through the proxy"));
    let lease = c.grant(Duration::from_secs(30)).await.unwrap();
    assert!(c.keep_alive(lease).await.unwrap().is_some(), "renewed");
    // A renewal whose answer comes late: its caller gives up first.
    proxy.delay_ms.store(1000, Ordering::SeqCst);
    let gave_up = tokio::time::timeout(Duration::from_millis(300), c.keep_alive(lease)).await;
    assert!(gave_up.is_err(), "the caller gave up: {gave_up:?}");
    // The late answer arrives; then etcd receives nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.delay_ms.store(0, Ordering::SeqCst);
    proxy.blackhole.store(true, Ordering::SeqCst);
    let next = tokio::time::timeout(Duration::from_secs(5), c.keep_alive(lease)).await;
    assert!(
        !matches!(next, Ok(Ok(Some(_)))),
        "a renewal etcd never received was answered (with the earlier, late answer): {next:?}"
    );
    proxy.blackhole.store(false, Ordering::SeqCst);
    let _ = c.revoke(lease).await;
}
