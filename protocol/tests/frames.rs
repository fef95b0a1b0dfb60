//! Frames: encode → parse is the identity for every frame kind.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;

use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::Value;
use streampod_protocol::frame::{BatchFrame, ErrorFrame, Frame, FrameError, MessageFrame, RawData};
use streampod_protocol::ErrorCode;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

proptest! {
    #[test]
    fn message_frames_round_trip(endpoint in ".*", class_name in ".*", data in json_value(), traceparent in proptest::option::of(".*")) {
        let raw = RawValue::from_string(data.to_string()).unwrap();
        let frame = Frame::Message(MessageFrame {
            endpoint: Cow::Owned(endpoint),
            class_name: Cow::Owned(class_name),
            data: &raw,
            at: None,
            traceparent: traceparent.map(Cow::Owned),
        });
        let text = frame.to_json();
        prop_assert_eq!(Frame::parse(&text).unwrap(), frame);
    }

    #[test]
    fn command_frames_round_trip(key in proptest::option::of(".*")) {
        for frame in [Frame::Ping, Frame::Pong, Frame::Auth { key: key.clone().map(Cow::Owned) }] {
            let text = frame.to_json();
            prop_assert_eq!(Frame::parse(&text).unwrap(), frame);
        }
    }

    #[test]
    fn error_frames_round_trip(
        code in error_code(),
        message in ".*",
        endpoint in proptest::option::of(".*"),
        class_name in proptest::option::of(".*"),
    ) {
        let mut error = ErrorFrame::new(code, message);
        error.endpoint = endpoint.map(Cow::Owned);
        error.class_name = class_name.map(Cow::Owned);
        let frame = Frame::Error(error);
        let text = frame.to_json();
        prop_assert_eq!(Frame::parse(&text).unwrap(), frame);
    }

    #[test]
    fn batch_frames_round_trip_and_unpack_in_order(
        endpoint in ".*",
        items in proptest::collection::vec((".*", json_value()), 0..6),
    ) {
        let raws: Vec<Box<RawValue>> = items.iter().map(|(_, data)| RawValue::from_string(data.to_string()).unwrap()).collect();
        let frame = Frame::Batch(BatchFrame {
            endpoint: Cow::Owned(endpoint.clone()),
            messages: items.iter().zip(&raws).map(|((class_name, _), raw)| (Cow::Owned(class_name.clone()), RawData(raw))).collect(),
        });
        let text = frame.to_json();
        let parsed = Frame::parse(&text).unwrap();
        prop_assert_eq!(&parsed, &frame);
        let messages = parsed.into_messages();
        prop_assert_eq!(messages.len(), items.len());
        for (message, ((class_name, _), raw)) in messages.iter().zip(items.iter().zip(&raws)) {
            prop_assert_eq!(&*message.endpoint, endpoint.as_str());
            prop_assert_eq!(&*message.class_name, class_name.as_str());
            prop_assert_eq!(message.data.get(), raw.get());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".*") {
        let _ = Frame::parse(&text);
        let _ = streampod_protocol::method_stream::MethodStreamFrame::parse(&text);
    }

    /// Streaming-method frames with arbitrary names, ids and payload text survive a
    /// round trip in both key forms.
    #[test]
    fn method_stream_frames_round_trip(endpoint in ".*", method in ".*", parameter in proptest::option::of(".*"), data in ".*", id in any::<u128>()) {
        use streampod_protocol::method_stream::{CallId, KeyForm, MethodStreamFrame};
        let call = CallId { endpoint, method, connection_id: uuid::Uuid::from_u128(id) };
        let object = serde_json::json!({"className": "String", "data": data}).to_string();
        let frame = MethodStreamFrame::Message { call, parameter, object, at: None };
        for form in [KeyForm::Short, KeyForm::Long] {
            let (parsed, read) = MethodStreamFrame::parse(&frame.to_json(form)).unwrap();
            prop_assert_eq!(&parsed, &frame);
            prop_assert_eq!(read, form);
        }
    }
}

#[test]
fn golden_frames() {
    let data =
        RawValue::from_string(r#"{"__className__":"ChatMessage","content":"hi"}"#.into()).unwrap();
    let frame = Frame::Message(MessageFrame {
        endpoint: "chat".into(),
        class_name: "ChatMessage".into(),
        data: &data,
        at: None,
        traceparent: None,
    });
    assert_eq!(
        frame.to_json(),
        r#"{"endpoint":"chat","object":{"className":"ChatMessage","data":{"__className__":"ChatMessage","content":"hi"}}}"#
    );
    assert_eq!(Frame::Ping.to_json(), r#"{"command":"ping","args":{}}"#);
    assert_eq!(Frame::Pong.to_json(), r#"{"command":"pong"}"#);
    assert_eq!(
        Frame::Auth {
            key: Some("Bearer x".into())
        }
        .to_json(),
        r#"{"command":"auth","args":{"key":"Bearer x"}}"#
    );
}

#[test]
fn error_frames_bound_what_they_echo() {
    let huge = "é".repeat(500_000);
    let error = ErrorFrame::new(ErrorCode::UnknownEndpoint, format!("no endpoint '{huge}'"))
        .with_endpoint(huge.as_str())
        .with_class_name(huge.as_str());
    let text = error.to_json();
    assert!(text.len() < 1024, "{} bytes", text.len());
    let Frame::Error(parsed) = Frame::parse(&text).unwrap() else {
        panic!("an error frame");
    };
    let endpoint = parsed.endpoint.unwrap();
    assert!(endpoint.len() <= ErrorFrame::ECHO_LIMIT + '…'.len_utf8());
    assert!(endpoint.ends_with('…') && huge.starts_with(endpoint.trim_end_matches('…')));
    assert!(parsed.message.len() <= ErrorFrame::MESSAGE_LIMIT + '…'.len_utf8());
}

#[test]
fn history_frames_round_trip() {
    use streampod_protocol::history::{JoinedFrame, Position, RecoverFrame};
    let texts = [
        r#"{"endpoint":"chat","object":{"className":"Hi","data":{}},"channel":"room-1","offset":7}"#,
        r#"{"command":"joined","args":{"endpoint":"chat","channel":"room-1","position":{"epoch":"e1","offset":7},"recovering":true,"recovered":false,"replayed":0}}"#,
        r#"{"command":"recover","args":{"channels":{"a":{"epoch":"e1","offset":3},"b":{"epoch":"e2","offset":0}}}}"#,
    ];
    for text in texts {
        assert_eq!(Frame::parse(text).unwrap().to_json(), text);
    }
    let Frame::Recover(RecoverFrame { channels }) = Frame::parse(texts[2]).unwrap() else {
        panic!("a recover frame");
    };
    assert_eq!(channels[1], ("b".to_owned(), Position::new("e2", 0)));
    let Frame::Joined(JoinedFrame { position, .. }) = Frame::parse(texts[1]).unwrap() else {
        panic!("a joined frame");
    };
    assert_eq!(position.offset, 7);
}

#[test]
fn history_frames_refuse_what_they_cannot_hold() {
    let half = r#"{"endpoint":"chat","object":{"className":"Hi","data":{}},"channel":"room-1"}"#;
    assert!(matches!(Frame::parse(half), Err(FrameError::Shape(_))));
    let long_epoch = format!(
        r#"{{"command":"recover","args":{{"channels":{{"a":{{"epoch":"{}","offset":3}}}}}}}}"#,
        "e".repeat(65)
    );
    assert!(matches!(
        Frame::parse(&long_epoch),
        Err(FrameError::Shape(_))
    ));
    let channels: Vec<String> = (0..1025)
        .map(|n| format!(r#""c{n}":{{"epoch":"e","offset":1}}"#))
        .collect();
    let too_many = format!(
        r#"{{"command":"recover","args":{{"channels":{{{}}}}}}}"#,
        channels.join(",")
    );
    assert!(matches!(Frame::parse(&too_many), Err(FrameError::Shape(_))));
    assert!(matches!(
        Frame::parse(r#"{"command":"recover"}"#),
        Err(FrameError::Shape(_))
    ));
}
