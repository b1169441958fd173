//! A partition's log as it is on the broker, read over the Kafka protocol
//! by this module alone (not librdkafka): record batches with their
//! producer, transactional and control flags, and read_committed applied
//! from the log's own transaction markers.
//!
//! Why: a read_committed consumer leans on the broker for which records
//! were aborted (the Fetch response's aborted-transaction list), and tansu
//! leaves that list empty, so librdkafka there hands out aborted records.
//! The markers tansu writes are enough to tell: a transactional batch's
//! records count once its producer's COMMIT marker follows, never after an
//! ABORT marker, and never when the same producer id goes on with a higher
//! epoch first (the broker aborted that transaction when it fenced it).
//! Records of a transaction that has no marker yet are not visible.
//!
//! Speaks Fetch v4 (record batches of magic 2, the isolation level, no
//! flexible versions) to one broker: the reader is for single-broker test
//! clusters, where the bootstrap address leads every partition. Batches
//! compressed with lz4 (strait's default codec) or not at all are read;
//! another codec is an error that names it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A record that read_committed shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A record in a batch: its offset, key and value.
pub type Entry = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// What a batch is, and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub transactional: bool,
    /// A transaction marker: `Some(true)` commits, `Some(false)` aborts.
    pub control: Option<bool>,
    /// Offset, key and value of each record (none for a marker).
    pub records: Vec<Entry>,
}

/// Counts of what the committed view has decided so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Records shown (outside transactions or committed).
    pub shown: u64,
    /// Records of aborted transactions (a marker, or a later epoch).
    pub aborted: u64,
    /// Records of transactions with no marker yet.
    pub open: u64,
    pub commit_markers: u64,
    pub abort_markers: u64,
}

impl Tally {
    /// The partitions' tallies added up.
    pub fn sum(views: &[Committed]) -> Tally {
        let mut t = Tally::default();
        for v in views.iter().map(Committed::tally) {
            t.shown += v.shown;
            t.aborted += v.aborted;
            t.open += v.open;
            t.commit_markers += v.commit_markers;
            t.abort_markers += v.abort_markers;
        }
        t
    }
}

/// read_committed over one partition's batches, fed in log order.
#[derive(Debug, Default)]
pub struct Committed {
    /// Per producer id: the epoch and records of its open transaction.
    open: HashMap<i64, (i16, Vec<Record>)>,
    tally: Tally,
}

impl Committed {
    /// Takes the next batch; returns the records it makes visible.
    pub fn push(&mut self, partition: i32, batch: Batch) -> Vec<Record> {
        let records = |b: Batch| {
            b.records
                .into_iter()
                .map(|(offset, key, value)| Record {
                    partition,
                    offset,
                    key,
                    value,
                })
                .collect::<Vec<_>>()
        };
        let pid = batch.producer_id;
        match batch.control {
            Some(commit) => {
                if commit {
                    self.tally.commit_markers += 1;
                } else {
                    self.tally.abort_markers += 1;
                }
                match self.open.remove(&pid) {
                    Some((_, held)) if commit => {
                        self.tally.shown += held.len() as u64;
                        held
                    }
                    Some((_, held)) => {
                        self.tally.aborted += held.len() as u64;
                        Vec::new()
                    }
                    None => Vec::new(),
                }
            }
            None if !batch.transactional => {
                let r = records(batch);
                self.tally.shown += r.len() as u64;
                r
            }
            None => {
                let epoch = batch.producer_epoch;
                let entry = self.open.entry(pid).or_insert((epoch, Vec::new()));
                if entry.0 < epoch {
                    // The same producer id writing with a newer epoch: the
                    // earlier transaction was aborted when it was fenced.
                    self.tally.aborted += entry.1.len() as u64;
                    *entry = (epoch, Vec::new());
                }
                entry.1.extend(records(batch));
                Vec::new()
            }
        }
    }

    pub fn tally(&self) -> Tally {
        Tally {
            open: self.open.values().map(|(_, r)| r.len() as u64).sum(),
            ..self.tally
        }
    }
}

/// The reader's error: the connection, or what the broker answered.
#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    /// A Kafka error code for a partition (3: unknown topic or partition).
    Broker {
        partition: i32,
        code: i16,
    },
    Malformed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "log reader: {e}"),
            Error::Broker { partition, code } => {
                write!(
                    f,
                    "log reader: partition {partition}: broker error code {code}"
                )
            }
            Error::Malformed(m) => write!(f, "log reader: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// Reads a topic's partitions from given offsets onwards, a fetch at a time.
pub struct LogReader {
    addr: String,
    topic: String,
    /// Per partition: the next offset to fetch.
    next: Vec<i64>,
    conn: Option<TcpStream>,
    correlation: i32,
    pub max_wait: Duration,
}

impl LogReader {
    /// `bootstrap`: the broker's `host:port` (the first, if several).
    pub fn new(bootstrap: &str, topic: &str, partitions: i32) -> LogReader {
        LogReader {
            addr: bootstrap.split(',').next().unwrap_or("").trim().to_owned(),
            topic: topic.to_owned(),
            next: vec![0; partitions.max(0) as usize],
            conn: None,
            correlation: 0,
            max_wait: Duration::from_millis(100),
        }
    }

    /// One Fetch over every partition; the whole batches it returned, in
    /// log order per partition, each partition's position moved past them.
    /// After a connection error the next call connects again.
    pub fn fetch(&mut self) -> Result<Vec<(i32, Batch)>, Error> {
        let request = self.fetch_request();
        let response = match self.round_trip(&request) {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        let mut out = Vec::new();
        let mut r = Reader::new(&response);
        let correlation = r.i32()?;
        if correlation != self.correlation {
            self.conn = None;
            return Err(Error::Malformed(format!(
                "correlation id {correlation}, expected {}",
                self.correlation
            )));
        }
        let _throttle = r.i32()?;
        for _ in 0..r.i32()? {
            let _topic = r.string()?;
            for _ in 0..r.i32()? {
                let partition = r.i32()?;
                let code = r.i16()?;
                let _high_watermark = r.i64()?;
                let _last_stable = r.i64()?;
                let aborted = r.i32()?;
                for _ in 0..aborted.max(0) {
                    let _producer = r.i64()?;
                    let _first = r.i64()?;
                }
                let records = r.bytes()?;
                if code != 0 {
                    return Err(Error::Broker { partition, code });
                }
                let Some(next) = self.next.get_mut(partition as usize) else {
                    return Err(Error::Malformed(format!(
                        "partition {partition} not asked for"
                    )));
                };
                for batch in batches(records.unwrap_or_default())? {
                    if batch.last_offset < *next {
                        continue; // before the position: seen already
                    }
                    let from = *next;
                    *next = batch.last_offset + 1;
                    let mut batch = batch;
                    batch.records.retain(|(o, _, _)| *o >= from);
                    out.push((partition, batch));
                }
            }
        }
        Ok(out)
    }

    fn fetch_request(&mut self) -> Vec<u8> {
        self.correlation = self.correlation.wrapping_add(1);
        let mut b = Vec::with_capacity(64 + 16 * self.next.len());
        b.extend_from_slice(&1i16.to_be_bytes()); // Fetch
        b.extend_from_slice(&4i16.to_be_bytes()); // version 4
        b.extend_from_slice(&self.correlation.to_be_bytes());
        put_string(&mut b, "strait-log-reader");
        b.extend_from_slice(&(-1i32).to_be_bytes()); // replica id: a consumer
        b.extend_from_slice(&(self.max_wait.as_millis() as i32).to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes()); // min bytes
        b.extend_from_slice(&(16i32 << 20).to_be_bytes()); // max bytes
        b.push(0); // read_uncommitted: markers decide, here
        b.extend_from_slice(&1i32.to_be_bytes());
        put_string(&mut b, &self.topic);
        b.extend_from_slice(&(self.next.len() as i32).to_be_bytes());
        for (p, offset) in self.next.iter().enumerate() {
            b.extend_from_slice(&(p as i32).to_be_bytes());
            b.extend_from_slice(&offset.to_be_bytes());
            b.extend_from_slice(&(1i32 << 20).to_be_bytes());
        }
        b
    }

    fn round_trip(&mut self, request: &[u8]) -> Result<Vec<u8>, Error> {
        if self.conn.is_none() {
            let c = TcpStream::connect(&self.addr)?;
            c.set_nodelay(true)?;
            c.set_read_timeout(Some(self.max_wait + Duration::from_secs(10)))?;
            self.conn = Some(c);
        }
        let c = self.conn.as_mut().expect("connected");
        c.write_all(&(request.len() as i32).to_be_bytes())?;
        c.write_all(request)?;
        let mut len = [0u8; 4];
        c.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if !(4..=256 << 20).contains(&len) {
            return Err(Error::Malformed(format!("response of {len} bytes")));
        }
        let mut body = vec![0u8; len as usize];
        c.read_exact(&mut body)?;
        Ok(body)
    }
}

/// What read_committed shows of `topic` on a single-broker cluster, read
/// with [`LogReader`] from the beginning: at least `expect` records, then
/// until a fetch brings nothing more (so duplicates after them are seen).
/// Panics when `timeout` passes first. Records come without headers and
/// timestamps.
pub fn read_committed(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
    timeout: Duration,
) -> (Vec<crate::Rec>, Tally) {
    let deadline = std::time::Instant::now() + timeout;
    let mut reader = LogReader::new(bootstrap, topic, partitions);
    let mut views: Vec<Committed> = (0..partitions).map(|_| Committed::default()).collect();
    let mut got = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "read_committed {topic}: {} of {expect} records in {timeout:?}",
            got.len()
        );
        let batches = match reader.fetch() {
            Ok(b) => b,
            // Unknown topic or partition: not created yet.
            Err(Error::Broker { code: 3, .. }) | Err(Error::Io(_)) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let quiet = batches.is_empty();
        for (p, batch) in batches {
            got.extend(
                views[p as usize]
                    .push(p, batch)
                    .into_iter()
                    .map(|r| crate::Rec {
                        partition: r.partition,
                        key: r.key,
                        value: r.value,
                        headers: Vec::new(),
                        timestamp: None,
                    }),
            );
        }
        if quiet && got.len() >= expect {
            return (got, Tally::sum(&views));
        }
    }
}

fn put_string(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as i16).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// The whole record batches in `data` (a Fetch response's records); a
/// batch cut off at the end (the response's size limit) is left out.
pub fn batches(mut data: &[u8]) -> Result<Vec<Batch>, Error> {
    let mut out = Vec::new();
    while data.len() >= 12 {
        let size = i32::from_be_bytes(data[8..12].try_into().unwrap());
        if size < 49 {
            return Err(Error::Malformed(format!("batch of {size} bytes")));
        }
        let total = 12 + size as usize;
        if data.len() < total {
            break;
        }
        out.push(batch(&data[..total])?);
        data = &data[total..];
    }
    Ok(out)
}

/// One record batch (magic 2), its CRC checked.
pub fn batch(data: &[u8]) -> Result<Batch, Error> {
    let mut r = Reader::new(data);
    let base_offset = r.i64()?;
    let _length = r.i32()?;
    let _leader_epoch = r.i32()?;
    let magic = r.i8()?;
    if magic != 2 {
        return Err(Error::Malformed(format!("record batch magic {magic}")));
    }
    let crc = r.i32()? as u32;
    if crc32c(&data[21..]) != crc {
        return Err(Error::Malformed(format!(
            "batch at offset {base_offset}: CRC mismatch"
        )));
    }
    let attributes = r.i16()?;
    let last_delta = r.i32()?;
    let _base_ts = r.i64()?;
    let _max_ts = r.i64()?;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let _base_sequence = r.i32()?;
    let count = r.i32()?;
    let transactional = attributes & 0x10 != 0;
    let is_control = attributes & 0x20 != 0;
    let body = r.rest();
    let plain;
    let body = match attributes & 0x07 {
        0 => body,
        3 => {
            plain = lz4(body)?;
            &plain[..]
        }
        c => {
            return Err(Error::Malformed(format!(
                "batch at offset {base_offset}: codec {c} (only none and lz4 are read)"
            )))
        }
    };
    let mut r = Reader::new(body);
    let mut records = Vec::with_capacity(count.clamp(0, 4096) as usize);
    let mut control = None;
    for _ in 0..count.max(0) {
        let _len = r.varint()?;
        let _attrs = r.i8()?;
        let _ts_delta = r.varint()?;
        let offset = base_offset + r.varint()?;
        let key = r.varbytes()?;
        let value = r.varbytes()?;
        for _ in 0..r.varint()? {
            let _k = r.varbytes()?;
            let _v = r.varbytes()?;
        }
        if is_control {
            // Key: version (int16), type (int16: 0 abort, 1 commit).
            let k = key.unwrap_or_default();
            if k.len() < 4 {
                return Err(Error::Malformed(format!("control record at {offset}")));
            }
            control = Some(i16::from_be_bytes([k[2], k[3]]) == 1);
        } else {
            records.push((offset, key, value));
        }
    }
    if is_control && control.is_none() {
        return Err(Error::Malformed(format!(
            "control batch at {base_offset} without a record"
        )));
    }
    Ok(Batch {
        base_offset,
        last_offset: base_offset + last_delta as i64,
        producer_id,
        producer_epoch,
        transactional,
        control,
        records,
    })
}

fn lz4(data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    lz4_flex::frame::FrameDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| Error::Malformed(format!("lz4: {e}")))?;
    Ok(out)
}

/// CRC-32C (Castagnoli), as record batches carry it.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.data.len() < n {
            return Err(Error::Malformed(format!(
                "{n} bytes wanted, {} left",
                self.data.len()
            )));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    fn i8(&mut self) -> Result<i8, Error> {
        Ok(self.take(1)?[0] as i8)
    }

    fn i16(&mut self) -> Result<i16, Error> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn i32(&mut self) -> Result<i32, Error> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn i64(&mut self) -> Result<i64, Error> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn string(&mut self) -> Result<String, Error> {
        let n = self.i16()?;
        let b = self.take(n.max(0) as usize)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn bytes(&mut self) -> Result<Option<&'a [u8]>, Error> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(n as usize)?))
    }

    /// A zigzag varint (records use them for lengths and deltas).
    fn varint(&mut self) -> Result<i64, Error> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(Error::Malformed("varint longer than 10 bytes".into()))
    }

    fn varbytes(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let n = self.varint()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(n as usize)?.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pid: i64, epoch: i16, txn: bool, offsets: &[i64]) -> Batch {
        Batch {
            base_offset: offsets[0],
            last_offset: *offsets.last().unwrap(),
            producer_id: pid,
            producer_epoch: epoch,
            transactional: txn,
            control: None,
            records: offsets
                .iter()
                .map(|o| (*o, None, Some(format!("v{o}").into_bytes())))
                .collect(),
        }
    }

    fn marker(pid: i64, epoch: i16, offset: i64, commit: bool) -> Batch {
        Batch {
            base_offset: offset,
            last_offset: offset,
            producer_id: pid,
            producer_epoch: epoch,
            transactional: true,
            control: Some(commit),
            records: Vec::new(),
        }
    }

    fn offsets(r: Vec<Record>) -> Vec<i64> {
        r.into_iter().map(|r| r.offset).collect()
    }

    #[test]
    fn markers_decide_what_a_transaction_shows() {
        let mut c = Committed::default();
        assert_eq!(offsets(c.push(0, data(-1, -1, false, &[0, 1]))), [0, 1]);
        assert!(c.push(0, data(7, 0, true, &[2, 3])).is_empty());
        assert!(c.push(0, data(8, 0, true, &[4])).is_empty());
        assert_eq!(offsets(c.push(0, marker(7, 0, 5, true))), [2, 3]);
        assert!(c.push(0, marker(8, 0, 6, false)).is_empty());
        // Producer 7 fenced (epoch 1) with no marker: 7's open records go.
        assert!(c.push(0, data(7, 1, true, &[7])).is_empty());
        assert!(c.push(0, data(7, 2, true, &[8, 9])).is_empty());
        assert_eq!(offsets(c.push(0, marker(7, 2, 10, true))), [8, 9]);
        assert!(c.push(0, data(9, 0, true, &[11])).is_empty());
        assert_eq!(
            c.tally(),
            Tally {
                shown: 6,
                aborted: 2,
                open: 1,
                commit_markers: 2,
                abort_markers: 1
            }
        );
    }

    #[test]
    fn the_checksum_is_castagnoli() {
        // RFC 3720's test vector: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let mut seed = 1u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = batches(&bytes);
            let _ = batch(&bytes);
        }
    }
}
