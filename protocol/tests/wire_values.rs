//! Every value kind: golden JSON from Serverpod's documented format, and encode → decode
//! round trips over generated values.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;

use chrono::{TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use streampod_protocol::types::{
    BigInt, Bits, Bytes, DateTime, Duration, EntryMap, EntrySet, SparseVector, Uri, Uuid,
};
use streampod_protocol::wire::{FromWire, Wire, WireValue};

fn encode<T: WireValue>(value: &T) -> String {
    serde_json::to_string(&Wire(value)).unwrap()
}

fn decode<T: WireValue>(json: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str::<FromWire<T>>(json).map(|v| v.0)
}

/// `value` encodes to exactly `json`, and `json` decodes to `value`.
fn golden<T: WireValue + PartialEq + Debug>(value: &T, json: &str) {
    assert_eq!(encode(value), json, "encoding {value:?}");
    assert_eq!(&decode::<T>(json).unwrap(), value, "decoding {json}");
}

fn round_trips<T: WireValue + PartialEq + Debug>(value: &T) -> Result<(), TestCaseError> {
    let json = encode(value);
    let back: T = decode(&json).map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
    prop_assert_eq!(&back, value, "via {}", json);
    Ok(())
}

fn noon() -> DateTime {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

#[test]
fn golden_scalars() {
    golden(&true, "true");
    golden(&42_i64, "42");
    golden(&-7_i64, "-7");
    golden(&1.5_f64, "1.5");
    golden(&String::from("héllo \"q\"\n"), r#""héllo \"q\"\n""#);
}

#[test]
fn golden_datetime_is_dart_iso8601_utc() {
    golden(&noon(), r#""2026-01-01T12:00:00.000Z""#);
    golden(
        &(noon() + TimeDelta::milliseconds(5)),
        r#""2026-01-01T12:00:00.005Z""#,
    );
    golden(
        &(noon() + TimeDelta::microseconds(5)),
        r#""2026-01-01T12:00:00.000005Z""#,
    );
    // Accepted on decode: integer milliseconds and offsets.
    assert_eq!(decode::<DateTime>("1767268800000").unwrap(), noon());
    assert_eq!(
        decode::<DateTime>(r#""2026-01-01T13:00:00+01:00""#).unwrap(),
        noon()
    );
}

#[test]
fn golden_duration_is_milliseconds() {
    let value = TimeDelta::days(1) + TimeDelta::hours(2) + TimeDelta::milliseconds(100);
    golden(&value, "93600100");
    golden(&TimeDelta::milliseconds(-1500), "-1500");
}

#[test]
fn golden_pgvector_values() {
    golden(&vec![1.0, 2.5], "[1.0,2.5]");
    let sparse = SparseVector::from_dense(&[1.0, 0.0, 2.5]);
    golden(&sparse, r#""{1:1.0,3:2.5}/3""#);
    assert_eq!(decode::<SparseVector>("[1.0,0,2.5]").unwrap(), sparse);
    golden(&Bits(vec![true, false, true]), r#""101""#);
    assert_eq!(
        decode::<Bits>("[true,0,1]").unwrap(),
        Bits(vec![true, false, true])
    );
    assert!(decode::<Bits>(r#""12""#)
        .unwrap_err()
        .to_string()
        .contains("'12'"));
}

#[test]
fn golden_entry_maps_and_sets() {
    // Keys and elements Rust cannot hash: Serverpod's `[{"k":…,"v":…}]` and arrays.
    let map: EntryMap<f64, String> = [(0.5, "half".to_owned()), (2.0, "two".to_owned())]
        .into_iter()
        .collect();
    golden(&map, r#"[{"k":0.5,"v":"half"},{"k":2.0,"v":"two"}]"#);
    let nested: EntryMap<Vec<i64>, i64> = [(vec![1, 2], 3)].into_iter().collect();
    golden(&nested, r#"[{"k":[1,2],"v":3}]"#);
    let set: EntrySet<Vec<f64>> = [vec![1.5], vec![]].into_iter().collect();
    golden(&set, "[[1.5],[]]");
    // Equal keys and elements collapse, the last value winning, as a Dart map reads them.
    assert_eq!(
        decode::<EntryMap<f64, i64>>(r#"[{"k":1.0,"v":1},{"k":1.0,"v":2}]"#).unwrap(),
        [(1.0, 2)].into_iter().collect()
    );
    assert_eq!(decode::<EntrySet<f64>>("[1.0,1.0,2.0]").unwrap().len(), 2);
}

#[test]
fn entry_collections_refuse_lists_that_would_cost_quadratic_time() {
    use streampod_protocol::types::MAX_DECODED_ENTRIES;
    let list = |n: usize| {
        let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!("[{}]", items.join(","))
    };
    assert_eq!(
        decode::<EntrySet<f64>>(&list(MAX_DECODED_ENTRIES))
            .unwrap()
            .len(),
        MAX_DECODED_ENTRIES
    );
    let err = decode::<EntrySet<f64>>(&list(MAX_DECODED_ENTRIES + 1)).unwrap_err();
    assert!(err.to_string().contains("at most 4096 entries"), "{err}");
    let entries: Vec<String> = (0..=MAX_DECODED_ENTRIES)
        .map(|i| format!(r#"{{"k":{i},"v":0}}"#))
        .collect();
    let err = decode::<EntryMap<f64, i64>>(&format!("[{}]", entries.join(","))).unwrap_err();
    assert!(
        err.to_string().contains("an EntryMap decodes at most"),
        "{err}"
    );
}

#[test]
fn a_bigint_of_a_megabyte_of_digits_is_refused_at_once() {
    use streampod_protocol::wire::MAX_BIGINT_DIGITS;
    let digits = |n: usize| format!("\"-{}\"", "9".repeat(n));
    assert_eq!(
        decode::<BigInt>(&digits(MAX_BIGINT_DIGITS))
            .unwrap()
            .to_string()
            .len(),
        MAX_BIGINT_DIGITS + 1
    );
    let started = std::time::Instant::now();
    let err = decode::<BigInt>(&digits(1_000_000)).unwrap_err();
    assert!(
        err.to_string()
            .contains("a BigInt of 1000000 digits exceeds the limit of 10000"),
        "{err}"
    );
    // Refused without parsing (a parse of a million digits takes seconds).
    assert!(started.elapsed() < std::time::Duration::from_millis(500));
    // A malformed one is quoted in part only.
    let err = decode::<BigInt>(&format!("\"{}x\"", "1".repeat(5_000))).unwrap_err();
    assert!(err.to_string().len() < 300, "{err}");
}

#[test]
fn golden_uuid_uri_bigint_bytes() {
    golden(
        &Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap(),
        r#""550e8400-e29b-41d4-a716-446655440000""#,
    );
    assert_eq!(
        decode::<Uuid>(r#""550E8400-E29B-41D4-A716-446655440000""#).unwrap(),
        Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap()
    );
    golden(
        &Uri::parse("https://serverpod.dev/docs?x=1#top").unwrap(),
        r#""https://serverpod.dev/docs?x=1#top""#,
    );
    // The text is kept: no '/' added after the host, relative references decode.
    golden(
        &Uri::parse("https://serverpod.dev").unwrap(),
        r#""https://serverpod.dev""#,
    );
    golden(&Uri::parse("/foo/bar?x=1").unwrap(), r#""/foo/bar?x=1""#);
    golden(
        &"-123456789012345678901234567890".parse::<BigInt>().unwrap(),
        r#""-123456789012345678901234567890""#,
    );
    assert_eq!(decode::<BigInt>("12").unwrap(), BigInt::from(12));
    golden(
        &Bytes::from_static(&[1, 2, 3]),
        r#""decode('AQID', 'base64')""#,
    );
    golden(&Bytes::new(), r#""decode('', 'base64')""#);
    assert_eq!(
        decode::<Bytes>(r#""AQID""#).unwrap(),
        Bytes::from_static(&[1, 2, 3])
    );
}

#[test]
fn golden_containers() {
    golden(&vec![1_i64, 2, 3], "[1,2,3]");
    golden(&HashSet::from([String::from("a")]), r#"["a"]"#);
    golden(&HashMap::from([(String::from("a"), 1_i64)]), r#"{"a":1}"#);
    // Non-string keys: an array of {"k","v"} entries, as Serverpod writes them.
    golden(
        &HashMap::from([(1_i64, String::from("a"))]),
        r#"[{"k":1,"v":"a"}]"#,
    );
    golden(
        &HashMap::from([(noon(), vec![Some(TimeDelta::seconds(1)), None])]),
        r#"[{"k":"2026-01-01T12:00:00.000Z","v":[1000,null]}]"#,
    );
    golden(&None::<i64>, "null");
    golden(&Some(vec![Some(noon())]), r#"["2026-01-01T12:00:00.000Z"]"#);
}

#[test]
fn bool_accepts_zero_and_one() {
    assert!(decode::<bool>("1").unwrap());
    assert!(!decode::<bool>("0").unwrap());
    assert!(decode::<bool>("2").is_err());
}

#[test]
fn rejections_name_the_expected_form() {
    let cases: [(&str, String); 7] = [
        (
            "DateTime",
            decode::<DateTime>(r#""yesterday""#)
                .unwrap_err()
                .to_string(),
        ),
        ("UUID", decode::<Uuid>(r#""xyz""#).unwrap_err().to_string()),
        (
            "URI",
            decode::<Uri>(r#""not a uri""#).unwrap_err().to_string(),
        ),
        (
            "BigInt",
            decode::<BigInt>(r#""1e5""#).unwrap_err().to_string(),
        ),
        (
            "base64",
            decode::<Bytes>(r#""decode('%%', 'base64')""#)
                .unwrap_err()
                .to_string(),
        ),
        (
            "{\"k\"",
            decode::<HashMap<i64, i64>>(r#"{"1":2}"#)
                .unwrap_err()
                .to_string(),
        ),
        (
            "object",
            decode::<HashMap<String, i64>>(r#"[{"k":"a","v":1}]"#)
                .unwrap_err()
                .to_string(),
        ),
    ];
    for (needle, message) in cases {
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle}"
        );
    }
}

fn datetime() -> impl Strategy<Value = DateTime> {
    // Years about -95,000 to +95,000, microsecond precision (the wire's precision).
    (-3_000_000_000_000_000_000_i64..3_000_000_000_000_000_000)
        .prop_map(|micros| DateTime::from_timestamp_micros(micros).unwrap())
}

fn duration() -> impl Strategy<Value = Duration> {
    (-1_000_000_000_000_000_i64..1_000_000_000_000_000).prop_map(TimeDelta::milliseconds)
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        "[a-z]{1,8}",
        "[a-z0-9.-]{1,12}",
        "(/[a-zA-Z0-9%_.~-]{0,6}){0,3}",
        proptest::option::of("[a-z=&0-9]{0,10}"),
    )
        .prop_filter_map("must parse", |(scheme, host, path, query)| {
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            Uri::parse(format!("{scheme}://{host}{path}{query}")).ok()
        })
}

proptest! {
    #[test]
    fn scalars_round_trip(b in any::<bool>(), i in any::<i64>(), f in any::<f64>().prop_filter("finite", |f| f.is_finite()), s in ".*") {
        round_trips(&b)?;
        round_trips(&i)?;
        round_trips(&f)?;
        round_trips(&s)?;
    }

    #[test]
    fn datetime_round_trips(value in datetime()) {
        round_trips(&value)?;
    }

    #[test]
    fn duration_round_trips(value in duration()) {
        round_trips(&value)?;
    }

    #[test]
    fn uuid_uri_bigint_bytes_round_trip(
        uuid in any::<u128>().prop_map(Uuid::from_u128),
        url in uri(),
        big in proptest::collection::vec(any::<u32>(), 0..6).prop_flat_map(|digits| (Just(digits), any::<bool>()))
            .prop_map(|(digits, negative)| {
                let magnitude = BigInt::from_slice(num_bigint::Sign::Plus, &digits);
                if negative { -magnitude } else { magnitude }
            }),
        bytes in proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
    ) {
        round_trips(&uuid)?;
        round_trips(&url)?;
        round_trips(&big)?;
        round_trips(&bytes)?;
    }

    #[test]
    fn nested_containers_round_trip(
        list in proptest::collection::vec(proptest::option::of(datetime()), 0..5),
        set in proptest::collection::hash_set(any::<i64>(), 0..5),
        by_string in proptest::collection::hash_map(".*", proptest::collection::vec(duration(), 0..3), 0..4),
        by_uuid in proptest::collection::hash_map(any::<u128>().prop_map(Uuid::from_u128), proptest::option::of(".*"), 0..4),
        deep in proptest::collection::vec(proptest::collection::hash_map(any::<bool>(), proptest::collection::hash_set(".{0,4}", 0..3), 0..2), 0..3),
    ) {
        round_trips(&list)?;
        round_trips(&set)?;
        round_trips(&by_string)?;
        round_trips(&by_uuid)?;
        round_trips(&deep)?;
    }
}
