//! Per-unit record tracking: which records were sent to the target and which
//! the target acknowledged, and from that the only position that may be
//! committed: just past the highest *contiguous* acknowledged record.
//!
//! Records are tracked in the order they were read, not by offset
//! arithmetic, so gaps in source offsets (compaction, transaction markers)
//! need no special case: the record after 10 may be 14.

use std::collections::VecDeque;

use strait_common::model::{NextOffset, RecordOffset};

#[derive(Debug)]
struct Entry {
    offset: RecordOffset,
    bytes: u64,
    /// `Some(downstream)` once acknowledged; `Some(None)` for a record the
    /// flow chose to skip (counted, never committed past silently).
    done: Option<Option<i64>>,
}

/// A record whose delivery completed, in source order, leaving the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub upstream: RecordOffset,
    /// Where the record landed on the target; `None` if it was skipped.
    pub downstream: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AckError {
    /// No record with this offset is in flight: an acknowledgement from an
    /// earlier session of the unit, or a bug. Never moves progress.
    Unknown(RecordOffset),
    /// The record was already acknowledged.
    Twice(RecordOffset),
}

/// The window of records of one unit that were sent and not yet committed.
#[derive(Debug, Default)]
pub struct InFlight {
    window: VecDeque<Entry>,
    bytes: u64,
    /// Just past the last record that left the window: the commit position.
    acknowledged: Option<NextOffset>,
}

impl InFlight {
    /// Records that a record was handed to the producer. Offsets must grow.
    pub fn sent(&mut self, offset: RecordOffset, bytes: u64) {
        if let Some(last) = self.window.back() {
            assert!(
                offset > last.offset,
                "records must be sent in source order: {} after {}",
                offset,
                last.offset
            );
        }
        self.window.push_back(Entry {
            offset,
            bytes,
            done: None,
        });
        self.bytes += bytes;
    }

    /// Marks a record acknowledged at `downstream` (or skipped with `None`).
    pub fn complete(
        &mut self,
        offset: RecordOffset,
        downstream: Option<i64>,
    ) -> Result<(), AckError> {
        let i = self
            .window
            .binary_search_by_key(&offset, |e| e.offset)
            .map_err(|_| AckError::Unknown(offset))?;
        let e = &mut self.window[i];
        if e.done.is_some() {
            return Err(AckError::Twice(offset));
        }
        e.done = Some(downstream);
        self.bytes -= e.bytes;
        Ok(())
    }

    /// Removes the acknowledged prefix of the window and returns it in source
    /// order; the commit position moves past it.
    pub fn drain_contiguous(&mut self, out: &mut Vec<Completed>) {
        while let Some(Entry {
            offset,
            done: Some(downstream),
            ..
        }) = self.window.front()
        {
            out.push(Completed {
                upstream: *offset,
                downstream: *downstream,
            });
            self.acknowledged = Some(offset.next());
            self.window.pop_front();
        }
    }

    /// The position that may be committed: every record before it was
    /// acknowledged by the target (or skipped by configuration).
    pub fn acknowledged(&self) -> Option<NextOffset> {
        self.acknowledged
    }

    /// Bytes sent and not acknowledged.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records sent and not yet out of the window.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// True when nothing is waiting for the target.
    pub fn settled(&self) -> bool {
        self.window.iter().all(|e| e.done.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut InFlight) -> Vec<(i64, Option<i64>)> {
        let mut out = Vec::new();
        w.drain_contiguous(&mut out);
        out.into_iter()
            .map(|c| (c.upstream.0, c.downstream))
            .collect()
    }

    #[test]
    fn commit_position_never_passes_an_unacknowledged_record() {
        let mut w = InFlight::default();
        for o in [10, 11, 14, 15] {
            w.sent(RecordOffset(o), 100);
        }
        assert_eq!(w.bytes(), 400);
        w.complete(RecordOffset(11), Some(2)).unwrap();
        w.complete(RecordOffset(15), Some(4)).unwrap();
        assert!(drain(&mut w).is_empty(), "10 is still in flight");
        assert_eq!(w.acknowledged(), None);
        w.complete(RecordOffset(10), Some(1)).unwrap();
        assert_eq!(drain(&mut w), vec![(10, Some(1)), (11, Some(2))]);
        assert_eq!(w.acknowledged(), Some(NextOffset(12)));
        assert_eq!(w.bytes(), 100, "only 14 is in flight");
        assert!(!w.settled());
        w.complete(RecordOffset(14), Some(3)).unwrap();
        assert_eq!(drain(&mut w), vec![(14, Some(3)), (15, Some(4))]);
        assert_eq!(
            w.acknowledged(),
            Some(NextOffset(16)),
            "gap 12..14 is compaction"
        );
        assert!(w.is_empty());
    }

    #[test]
    fn a_refused_record_holds_progress_until_skipped() {
        let mut w = InFlight::default();
        w.sent(RecordOffset(0), 1);
        w.sent(RecordOffset(1), 1);
        w.complete(RecordOffset(1), Some(0)).unwrap();
        // Record 0 was refused: never completed, progress stays put.
        assert!(drain(&mut w).is_empty());
        w.complete(RecordOffset(0), None).unwrap();
        assert_eq!(drain(&mut w), vec![(0, None), (1, Some(0))]);
        assert_eq!(w.acknowledged(), Some(NextOffset(2)));
    }

    #[test]
    fn unknown_and_repeated_acknowledgements_are_refused() {
        let mut w = InFlight::default();
        w.sent(RecordOffset(5), 1);
        assert_eq!(
            w.complete(RecordOffset(4), Some(0)),
            Err(AckError::Unknown(RecordOffset(4)))
        );
        w.complete(RecordOffset(5), Some(0)).unwrap();
        assert_eq!(
            w.complete(RecordOffset(5), Some(0)),
            Err(AckError::Twice(RecordOffset(5)))
        );
        assert_eq!(w.bytes(), 0, "bytes are released once");
    }

    #[test]
    #[should_panic(expected = "source order")]
    fn records_out_of_source_order_are_a_bug() {
        let mut w = InFlight::default();
        w.sent(RecordOffset(5), 1);
        w.sent(RecordOffset(5), 1);
    }
}
