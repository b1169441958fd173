//! Property tests over every decoder of outside input in `common`: whatever
//! the bytes, a decoder answers with a value or an error, never a panic.
//! MirrorMaker 2 internal records (offset syncs, checkpoints, heartbeats),
//! coordination values (what another process, or an operator with etcdctl,
//! wrote), and config files. Run in CI with the rest of `cargo test`;
//! `PROPTEST_CASES` raises the number of cases.

use proptest::prelude::*;
use strait_common::config::Config;
use strait_common::coord::values::{
    decode, FlagDoc, LeaderDoc, LoadDoc, OwnerDoc, PlanDoc, TopicOverrideDoc, WorkerDoc, WriterDoc,
};
use strait_common::formats::{Checkpoint, Heartbeat, OffsetSync};

const VALID: &str = r#"deployment = "prod"
[clusters.us]
bootstrap = "127.0.0.1:9092"
[clusters.dr]
bootstrap = "127.0.0.1:9093"
[[flows]]
source = "us"
target = "dr"
topics = ["orders.*"]
checkpoint_interval = "2s"
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mirrormaker_2_records_decode_or_are_refused(
        key in proptest::collection::vec(any::<u8>(), 0..64),
        value in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = OffsetSync::decode(&key, &value);
        let _ = Checkpoint::decode(&key, &value);
        let _ = Heartbeat::decode(&key, &value);
    }

    #[test]
    fn a_valid_record_cut_anywhere_is_refused(cut in 0usize..40, upstream in any::<i64>(), downstream in any::<i64>()) {
        let sync = OffsetSync { topic: "orders".into(), partition: 3, upstream_offset: upstream, downstream_offset: downstream };
        let key = sync.encode_key().unwrap();
        let value = sync.encode_value();
        prop_assert_eq!(OffsetSync::decode(&key, &value).unwrap(), sync);
        if cut < value.len() {
            prop_assert!(OffsetSync::decode(&key, &value[..cut]).is_err());
        }
        if cut < key.len() {
            prop_assert!(OffsetSync::decode(&key[..cut], &value).is_err());
        }
    }

    #[test]
    fn coordination_values_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode::<WorkerDoc>(&bytes);
        let _ = decode::<PlanDoc>(&bytes);
        let _ = decode::<WriterDoc>(&bytes);
        let _ = decode::<OwnerDoc>(&bytes);
        let _ = decode::<LoadDoc>(&bytes);
        let _ = decode::<LeaderDoc>(&bytes);
        let _ = decode::<FlagDoc>(&bytes);
        let _ = decode::<TopicOverrideDoc>(&bytes);
    }

    #[test]
    fn json_shaped_coordination_values_decode_or_are_refused(
        format in any::<i64>(), id in "[ -~]{0,12}", n in any::<i64>(),
    ) {
        let text = format!(r#"{{"format":{format},"id":"{}","epoch":{n},"units":[],"worker":"{}","lease":{n}}}"#,
            id.replace(['"', '\\'], ""), id.replace(['"', '\\'], ""));
        let _ = decode::<WorkerDoc>(text.as_bytes());
        let _ = decode::<PlanDoc>(text.as_bytes());
        let _ = decode::<LoadDoc>(text.as_bytes());
    }

    #[test]
    fn any_config_text_parses_or_is_refused(text in "(?s).{0,300}") {
        let _ = Config::parse(&text);
    }

    /// A valid file with one line replaced by junk: parsed or refused with
    /// a message, never a panic.
    #[test]
    fn a_valid_config_with_one_line_changed_parses_or_is_refused(line in 0usize..10, junk in "[ -~]{0,40}") {
        let mut lines: Vec<String> = VALID.lines().map(str::to_owned).collect();
        let at = line % lines.len();
        lines[at] = junk;
        if let Err(e) = Config::parse(&lines.join("\n")) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
