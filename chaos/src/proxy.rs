//! A fault-injecting TCP proxy: one listening port in front of one upstream
//! (a broker or etcd). Faults are set from the harness while traffic flows:
//!
//! - `Latency(d)`: every chunk is delivered `d` after it was read, in both
//!   directions (a delay line, so throughput is not capped by the delay);
//! - `Blackhole`: nothing moves in either direction and new connections
//!   hang; bytes are held, not lost, as TCP would retransmit them, and flow
//!   again when the fault ends (a network partition shorter than TCP's
//!   retransmission timeout);
//! - `Reset`: every open connection is reset (RST) and new ones are reset
//!   as soon as they are accepted;
//! - [`Proxy::drop_connections`]: every open connection is closed (FIN)
//!   once; new ones are served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Latency(Duration),
    Blackhole,
    Reset,
}

pub struct Proxy {
    pub port: u16,
    fault: watch::Sender<Fault>,
    /// Bumped to close every open connection.
    epoch: watch::Sender<u64>,
    #[cfg_attr(not(test), allow(dead_code))]
    accepted: Arc<AtomicU64>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(rt: &tokio::runtime::Runtime, upstream: SocketAddr) -> Proxy {
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind a proxy port");
        let port = listener.local_addr().unwrap().port();
        let (fault, _) = watch::channel(Fault::None);
        let (epoch, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicU64::new(0));
        let (f, e, n) = (fault.subscribe(), epoch.subscribe(), accepted.clone());
        rt.spawn(serve(listener, upstream, f, e, n));
        Proxy {
            port,
            fault,
            epoch,
            accepted,
        }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn heal(&self) {
        self.set(Fault::None);
    }

    /// Closes every open connection (clients reconnect).
    pub fn drop_connections(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Connections accepted so far.
    #[cfg(test)]
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Receiver<Fault>,
    epoch: watch::Receiver<u64>,
    accepted: Arc<AtomicU64>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(inbound, upstream, fault.clone(), epoch.clone()));
    }
}

async fn connection(
    inbound: TcpStream,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    mut epoch: watch::Receiver<u64>,
) {
    epoch.mark_unchanged();
    // A new connection waits out a blackhole (its SYN would be retried)
    // and is reset while resets are on.
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Reset => return reset(&inbound),
            Fault::Blackhole => {
                tokio::select! {
                    r = fault.changed() => if r.is_err() { return },
                    _ = epoch.changed() => return,
                }
            }
            _ => break,
        }
    }
    let Ok(outbound) = TcpStream::connect(upstream).await else {
        return; // upstream down: the client sees a closed connection
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    let up = tokio::spawn(direction(ir, ow, fault.clone(), epoch.clone()));
    let down = tokio::spawn(direction(or, iw, fault, epoch));
    let _ = tokio::join!(up, down);
}

fn reset(stream: &TcpStream) {
    // Linger 0: closing sends RST instead of FIN, without blocking.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// Moves bytes one way until EOF, an error, a reset or a drop.
async fn direction(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    fault: watch::Receiver<Fault>,
    epoch: watch::Receiver<u64>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let mut read_fault = fault.clone();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            loop {
                let now = *read_fault.borrow_and_update();
                let delay = match now {
                    Fault::None => Duration::ZERO,
                    Fault::Latency(d) => d,
                    Fault::Reset => return,
                    Fault::Blackhole => {
                        if read_fault.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
                break;
            }
        }
        // Dropping `tx` lets the writer flush what is queued, then shut down.
    };
    let mut write_fault = fault.clone();
    let writer = async {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            while *write_fault.borrow_and_update() == Fault::Blackhole {
                if write_fault.changed().await.is_err() {
                    return;
                }
            }
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    let ended = async {
        let (mut fault, mut epoch) = (fault, epoch);
        loop {
            tokio::select! {
                r = fault.changed() => {
                    if r.is_err() || *fault.borrow() == Fault::Reset {
                        return true;
                    }
                }
                _ = epoch.changed() => return false,
            }
        }
    };
    let reset_now = tokio::select! {
        _ = async { tokio::join!(reader, writer) } => false,
        reset = ended => reset,
    };
    if reset_now {
        #[allow(deprecated)] // a zero linger does not block: the kernel sends RST at once
        let _ = wr.as_ref().set_linger(Some(Duration::ZERO));
        // No FIN first: the socket closes (with RST) when the other half goes.
        wr.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};

    fn echo(rt: &tokio::runtime::Runtime) -> SocketAddr {
        let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = l.local_addr().unwrap();
        rt.spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    fn roundtrip(port: u16, msg: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(msg)?;
        let mut got = vec![0; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn faults_delay_hold_reset_and_drop_traffic() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let proxy = Proxy::start(&rt, echo(&rt));
        let t = Duration::from_secs(5);
        assert_eq!(roundtrip(proxy.port, b"plain", t).unwrap(), b"plain");

        proxy.set(Fault::Latency(Duration::from_millis(150)));
        let at = std::time::Instant::now();
        assert_eq!(roundtrip(proxy.port, b"slow", t).unwrap(), b"slow");
        assert!(
            at.elapsed() >= Duration::from_millis(300),
            "both ways delayed"
        );

        // A blackhole holds bytes; they arrive once it ends.
        proxy.set(Fault::Blackhole);
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(b"held").unwrap();
        let mut got = [0u8; 4];
        let e = s.read_exact(&mut got).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e}"
        );
        proxy.heal();
        s.set_read_timeout(Some(t)).unwrap();
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"held");

        // Reset: open connections and new ones get RST.
        proxy.set(Fault::Reset);
        let e = s.read(&mut got).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        assert!(roundtrip(proxy.port, b"x", t).is_err());
        proxy.heal();

        // Drop: open connections are closed, new ones served.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(t)).unwrap();
        s.write_all(b"ab").unwrap();
        s.read_exact(&mut [0u8; 2]).unwrap();
        proxy.drop_connections();
        assert_eq!(s.read(&mut got).unwrap(), 0, "closed with FIN");
        assert_eq!(roundtrip(proxy.port, b"again", t).unwrap(), b"again");
        assert!(proxy.accepted() >= 5);
    }
}
