//! Wire formats of the internal topics, byte-compatible with Apache Kafka
//! MirrorMaker 2 (docs/formats.md).
//!
//! Fields are concatenated in order: INT16/INT32/INT64 big-endian, STRING is
//! an INT16 length (0..=32767) followed by that many bytes of UTF-8. Decoders
//! never panic: a negative or over-long length, a truncated record, trailing
//! bytes, invalid UTF-8 or an unknown version is a [`FormatError`].

use thiserror::Error;

/// Why a record of an internal topic could not be decoded or encoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("truncated {what}: needed {needed} more byte(s) at byte {at}")]
    Truncated {
        what: &'static str,
        at: usize,
        needed: usize,
    },
    #[error("invalid string length {len} in {what} at byte {at}")]
    BadLength {
        what: &'static str,
        at: usize,
        len: i16,
    },
    #[error("string in {what} at byte {at} is not UTF-8")]
    NotUtf8 { what: &'static str, at: usize },
    #[error("unsupported {what} version {version} (this strait reads version 0)")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("{extra} unexpected trailing byte(s) after {what}")]
    Trailing { what: &'static str, extra: usize },
    #[error("string of {len} bytes is too long for the format (max 32767)")]
    TooLong { len: usize },
}

/// Offset sync: record `upstream_offset` of the source partition
/// `topic/partition` was written at `downstream_offset` on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSync {
    pub topic: String,
    pub partition: i32,
    pub upstream_offset: i64,
    pub downstream_offset: i64,
}

/// Checkpoint: a source group's position, translated. `topic` is the remote
/// topic name on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub upstream_offset: i64,
    pub downstream_offset: i64,
    pub metadata: String,
}

/// Heartbeat emitted on the source and replicated like data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub source_alias: String,
    pub target_alias: String,
    pub timestamp_ms: i64,
}

const VERSION_0: i16 = 0;

impl OffsetSync {
    pub fn encode_key(&self) -> Result<Vec<u8>, FormatError> {
        let mut w = Writer::default();
        w.string(&self.topic)?;
        w.i32(self.partition);
        Ok(w.0)
    }

    /// The value has no version field: 16 bytes.
    pub fn encode_value(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.i64(self.upstream_offset);
        w.i64(self.downstream_offset);
        w.0
    }

    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, FormatError> {
        let mut k = Reader::new(key, "offset sync key");
        let topic = k.string()?;
        let partition = k.i32()?;
        k.finish()?;
        let mut v = Reader::new(value, "offset sync value");
        let upstream_offset = v.i64()?;
        let downstream_offset = v.i64()?;
        v.finish()?;
        Ok(OffsetSync {
            topic,
            partition,
            upstream_offset,
            downstream_offset,
        })
    }
}

impl Checkpoint {
    pub fn encode_key(&self) -> Result<Vec<u8>, FormatError> {
        let mut w = Writer::default();
        w.string(&self.group)?;
        w.string(&self.topic)?;
        w.i32(self.partition);
        Ok(w.0)
    }

    pub fn encode_value(&self) -> Result<Vec<u8>, FormatError> {
        let mut w = Writer::default();
        w.i16(VERSION_0);
        w.i64(self.upstream_offset);
        w.i64(self.downstream_offset);
        w.string(&self.metadata)?;
        Ok(w.0)
    }

    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, FormatError> {
        let mut k = Reader::new(key, "checkpoint key");
        let group = k.string()?;
        let topic = k.string()?;
        let partition = k.i32()?;
        k.finish()?;
        let mut v = Reader::new(value, "checkpoint value");
        v.version()?;
        let upstream_offset = v.i64()?;
        let downstream_offset = v.i64()?;
        let metadata = v.string()?;
        v.finish()?;
        Ok(Checkpoint {
            group,
            topic,
            partition,
            upstream_offset,
            downstream_offset,
            metadata,
        })
    }
}

impl Heartbeat {
    pub fn encode_key(&self) -> Result<Vec<u8>, FormatError> {
        let mut w = Writer::default();
        w.string(&self.source_alias)?;
        w.string(&self.target_alias)?;
        Ok(w.0)
    }

    pub fn encode_value(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.i16(VERSION_0);
        w.i64(self.timestamp_ms);
        w.0
    }

    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, FormatError> {
        let mut k = Reader::new(key, "heartbeat key");
        let source_alias = k.string()?;
        let target_alias = k.string()?;
        k.finish()?;
        let mut v = Reader::new(value, "heartbeat value");
        v.version()?;
        let timestamp_ms = v.i64()?;
        v.finish()?;
        Ok(Heartbeat {
            source_alias,
            target_alias,
            timestamp_ms,
        })
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn string(&mut self, s: &str) -> Result<(), FormatError> {
        let len = i16::try_from(s.len()).map_err(|_| FormatError::TooLong { len: s.len() })?;
        self.i16(len);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, at: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let rest = &self.buf[self.at..];
        if rest.len() < n {
            return Err(FormatError::Truncated {
                what: self.what,
                at: self.at,
                needed: n - rest.len(),
            });
        }
        self.at += n;
        Ok(&rest[..n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, FormatError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, FormatError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, FormatError> {
        let at = self.at;
        let len = self.i16()?;
        if len < 0 {
            return Err(FormatError::BadLength {
                what: self.what,
                at,
                len,
            });
        }
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| FormatError::NotUtf8 {
                what: self.what,
                at: at + 2,
            })
    }

    fn version(&mut self) -> Result<(), FormatError> {
        match self.i16()? {
            VERSION_0 => Ok(()),
            version => Err(FormatError::UnknownVersion {
                what: self.what,
                version,
            }),
        }
    }

    fn finish(self) -> Result<(), FormatError> {
        match self.buf.len() - self.at {
            0 => Ok(()),
            extra => Err(FormatError::Trailing {
                what: self.what,
                extra,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn offset_sync_matches_the_documented_example() {
        let sync = OffsetSync {
            topic: "orders".into(),
            partition: 3,
            upstream_offset: 1000,
            downstream_offset: 900,
        };
        assert_eq!(
            sync.encode_key().unwrap(),
            hex("00 06 6f 72 64 65 72 73 00 00 00 03")
        );
        assert_eq!(
            sync.encode_value(),
            hex("00 00 00 00 00 00 03 e8 00 00 00 00 00 00 03 84")
        );
        let back = OffsetSync::decode(&sync.encode_key().unwrap(), &sync.encode_value()).unwrap();
        assert_eq!(back, sync);
    }

    #[test]
    fn checkpoint_round_trips_with_version_zero() {
        let cp = Checkpoint {
            group: "billing".into(),
            topic: "us.orders".into(),
            partition: 7,
            upstream_offset: 42,
            downstream_offset: 40,
            metadata: "m".into(),
        };
        let value = cp.encode_value().unwrap();
        assert_eq!(&value[..2], &[0, 0], "version 0 leads the value");
        assert_eq!(value.len(), 2 + 8 + 8 + 2 + 1);
        assert_eq!(
            Checkpoint::decode(&cp.encode_key().unwrap(), &value).unwrap(),
            cp
        );
    }

    #[test]
    fn heartbeat_is_ten_bytes_and_round_trips() {
        let hb = Heartbeat {
            source_alias: "us".into(),
            target_alias: "dr".into(),
            timestamp_ms: 1_700_000_000_123,
        };
        let value = hb.encode_value();
        assert_eq!(value.len(), 10);
        assert_eq!(
            Heartbeat::decode(&hb.encode_key().unwrap(), &value).unwrap(),
            hb
        );
    }

    #[test]
    fn decoders_reject_garbage_with_a_reason() {
        let good_key = hex("00 02 61 62 00 00 00 01");
        let good_value = [0u8; 16];
        // Truncated key: string length says 6, only 2 bytes follow.
        assert!(matches!(
            OffsetSync::decode(&hex("00 06 61 62"), &good_value),
            Err(FormatError::Truncated { .. })
        ));
        // Negative string length.
        assert!(matches!(
            OffsetSync::decode(&hex("ff ff 00 00 00 01"), &good_value),
            Err(FormatError::BadLength { len: -1, .. })
        ));
        // Short value.
        assert!(matches!(
            OffsetSync::decode(&good_key, &[0u8; 15]),
            Err(FormatError::Truncated { needed: 1, .. })
        ));
        // Trailing bytes.
        assert!(matches!(
            OffsetSync::decode(&good_key, &[0u8; 17]),
            Err(FormatError::Trailing { extra: 1, .. })
        ));
        // Invalid UTF-8.
        assert!(matches!(
            OffsetSync::decode(&hex("00 01 ff 00 00 00 01"), &good_value),
            Err(FormatError::NotUtf8 { .. })
        ));
        // Unknown version.
        let mut v = Heartbeat {
            source_alias: "a".into(),
            target_alias: "b".into(),
            timestamp_ms: 1,
        }
        .encode_value();
        v[1] = 1;
        assert!(matches!(
            Heartbeat::decode(&hex("00 01 61 00 01 62"), &v),
            Err(FormatError::UnknownVersion { version: 1, .. })
        ));
        // Empty input.
        assert!(Checkpoint::decode(&[], &[]).is_err());
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes() {
        // A deterministic pseudo-random sweep over short inputs, including
        // every prefix of valid encodings.
        let cp = Checkpoint {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
            upstream_offset: 5,
            downstream_offset: 6,
            metadata: String::new(),
        };
        let (k, v) = (cp.encode_key().unwrap(), cp.encode_value().unwrap());
        for i in 0..=k.len() {
            for j in 0..=v.len() {
                let ok = Checkpoint::decode(&k[..i], &v[..j]).is_ok();
                assert_eq!(ok, i == k.len() && j == v.len());
            }
        }
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let x: u64 = rng.random();
            let len = (x % 24) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = OffsetSync::decode(&bytes, &bytes);
            let _ = Checkpoint::decode(&bytes, &bytes);
            let _ = Heartbeat::decode(&bytes, &bytes);
        }
    }

    #[test]
    fn encoders_refuse_strings_over_32767_bytes() {
        let sync = OffsetSync {
            topic: "x".repeat(32768),
            partition: 0,
            upstream_offset: 0,
            downstream_offset: 0,
        };
        assert_eq!(sync.encode_key(), Err(FormatError::TooLong { len: 32768 }));
    }
}
