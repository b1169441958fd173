//! The in-process coordinator: etcd's semantics (revisions, leases,
//! guarded transactions, watches from a revision) over a map behind a
//! mutex. The default of a one-machine deployment; also what the
//! controller's and worker's protocol tests run against when no etcd is at
//! hand.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{
    ttl_secs, Batch, Compare, CoordError, Coordinator, Event, GrpcCode, Kv, LeaseId, Op, Result,
    Revision, Watch,
};

/// Events kept for watches that start in the past.
const HISTORY: usize = 20_000;
/// How often expired leases are reaped.
const REAP_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct Embedded {
    state: Arc<Mutex<State>>,
}

struct LeaseState {
    ttl: Duration,
    expires: Instant,
}

struct Watcher {
    prefix: String,
    tx: mpsc::UnboundedSender<Batch>,
}

#[derive(Default)]
struct State {
    revision: Revision,
    kvs: BTreeMap<String, Kv>,
    leases: HashMap<LeaseId, LeaseState>,
    next_lease: LeaseId,
    history: VecDeque<Event>,
    /// Watches may start after this revision.
    compacted: Revision,
    watchers: Vec<Watcher>,
}

impl Default for Embedded {
    fn default() -> Self {
        Self::new()
    }
}

impl Embedded {
    /// A new, empty store. A thread reaps expired leases while the store lives.
    pub fn new() -> Self {
        let state = Arc::new(Mutex::new(State {
            next_lease: 1,
            ..State::default()
        }));
        let weak: Weak<Mutex<State>> = Arc::downgrade(&state);
        std::thread::Builder::new()
            .name("strait-embedded-leases".into())
            .spawn(move || loop {
                std::thread::sleep(REAP_EVERY);
                match weak.upgrade() {
                    Some(state) => state.lock().expect("coordinator lock").reap(Instant::now()),
                    None => return,
                }
            })
            .expect("spawn the lease reaper");
        Embedded { state }
    }

    /// Forgets history up to `revision`, as etcd's compaction does: a watch
    /// from an older revision then fails with [`CoordError::Compacted`].
    pub fn compact(&self, revision: Revision) {
        let mut s = self.state.lock().expect("coordinator lock");
        while s.history.front().is_some_and(|e| e.revision() <= revision) {
            s.history.pop_front();
        }
        s.compacted = s.compacted.max(revision);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("coordinator lock")
    }
}

impl State {
    fn reap(&mut self, now: Instant) {
        let expired: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.end_lease(id);
        }
    }

    fn end_lease(&mut self, id: LeaseId) {
        self.leases.remove(&id);
        let keys: Vec<String> = self
            .kvs
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect();
        if !keys.is_empty() {
            self.apply(keys.into_iter().map(Op::Delete).collect());
        }
    }

    fn holds(&self, c: &Compare) -> bool {
        match c {
            Compare::Absent(k) => !self.kvs.contains_key(k),
            Compare::CreatedAt(k, rev) => {
                self.kvs.get(k).is_some_and(|kv| kv.create_revision == *rev)
            }
            Compare::Value(k, v) => self.kvs.get(k).is_some_and(|kv| &kv.value == v),
        }
    }

    /// Applies writes as one revision and tells the watchers.
    fn apply(&mut self, ops: Vec<Op>) {
        let revision = self.revision + 1;
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let create_revision = self
                        .kvs
                        .get(&key)
                        .map(|kv| kv.create_revision)
                        .unwrap_or(revision);
                    let kv = Kv {
                        key: key.clone(),
                        value,
                        create_revision,
                        mod_revision: revision,
                        lease: lease.unwrap_or(0),
                    };
                    self.kvs.insert(key, kv.clone());
                    events.push(Event::Put(kv));
                }
                Op::Delete(key) => {
                    if self.kvs.remove(&key).is_some() {
                        events.push(Event::Delete { key, revision });
                    }
                }
            }
        }
        if events.is_empty() {
            return;
        }
        self.revision = revision;
        for e in &events {
            self.history.push_back(e.clone());
        }
        while self.history.len() > HISTORY {
            let e = self.history.pop_front().expect("not empty");
            self.compacted = self.compacted.max(e.revision() - 1);
        }
        self.watchers.retain(|w| {
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| event_key(e).starts_with(&w.prefix))
                .cloned()
                .collect();
            mine.is_empty() || w.tx.send(Ok(mine)).is_ok()
        });
    }
}

fn event_key(e: &Event) -> &str {
    match e {
        Event::Put(kv) => &kv.key,
        Event::Delete { key, .. } => key,
    }
}

#[async_trait]
impl Coordinator for Embedded {
    fn describe(&self) -> String {
        "embedded coordinator".into()
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId> {
        let ttl = Duration::from_secs(ttl_secs(ttl) as u64);
        let mut s = self.lock();
        let id = s.next_lease;
        s.next_lease += 1;
        s.leases.insert(
            id,
            LeaseState {
                ttl,
                expires: Instant::now() + ttl,
            },
        );
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let mut s = self.lock();
        let now = Instant::now();
        s.reap(now);
        Ok(s.leases.get_mut(&lease).map(|l| {
            l.expires = now + l.ttl;
            l.ttl
        }))
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.lock().end_lease(lease);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Kv>> {
        Ok(self.lock().kvs.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<Kv>, Revision)> {
        let s = self.lock();
        let kvs = s
            .kvs
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok((kvs, s.revision))
    }

    async fn txn(&self, when: Vec<Compare>, then: Vec<Op>) -> Result<bool> {
        let mut s = self.lock();
        s.reap(Instant::now());
        for op in &then {
            if let Op::Put {
                lease: Some(id), ..
            } = op
            {
                if !s.leases.contains_key(id) {
                    // etcd's answer, with etcd's code.
                    return Err(CoordError::Refused {
                        code: Some(GrpcCode::NotFound),
                        message: format!("lease {id:x} not found"),
                    });
                }
            }
        }
        if !when.iter().all(|c| s.holds(c)) {
            return Ok(false);
        }
        s.apply(then);
        Ok(true)
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        let mut s = self.lock();
        if from <= s.compacted {
            return Err(CoordError::Compacted {
                requested: from,
                oldest: s.compacted + 1,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        // Replay what happened since `from`, one batch per revision.
        let mut batch: Vec<Event> = Vec::new();
        for e in s.history.iter().filter(|e| e.revision() >= from) {
            if !event_key(e).starts_with(prefix) {
                continue;
            }
            if batch.last().is_some_and(|l| l.revision() != e.revision()) {
                let _ = tx.send(Ok(std::mem::take(&mut batch)));
            }
            batch.push(e.clone());
        }
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch));
        }
        s.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            tx,
        });
        Ok(Watch::unbounded(rx))
    }
}
