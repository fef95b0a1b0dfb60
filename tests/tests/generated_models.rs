//! The code generated from the codegen fixtures compiles (this crate's build.rs) and
//! reads and writes Serverpod's JSON: golden documents round-trip exactly.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use serde_json::value::RawValue;
use streampod::__codegen::{BigInt, Bytes, DateTime, Duration, Uri, Uuid};
use streampod::protocol::frame::{self, Frame};
use streampod::{ModelEnum, ModelSet, SerializableException, SerializableModel};
use streampod_tests::fixtures::*;

fn noon() -> DateTime {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

/// `json` decodes to `value`, and `value` encodes back to exactly `json`.
fn golden<T: SerializableModel + PartialEq + std::fmt::Debug>(value: &T, json: &str) {
    let decoded: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(&decoded, value);
    assert_eq!(serde_json::to_string(value).unwrap(), json);
}

fn chat() -> ChatMessage {
    ChatMessage {
        sender_name: "ann".into(),
        content: "hi".into(),
        timestamp: Some(noon()),
        channel_id: "room-1".into(),
        priority: Priority::Urgent,
    }
}

#[test]
fn chat_message_golden() {
    golden(
        &chat(),
        r#"{"__className__":"ChatMessage","senderName":"ann","content":"hi","timestamp":"2026-01-01T12:00:00.000Z","channelId":"room-1","priority":"urgent"}"#,
    );
}

#[test]
fn class_name_is_optional_on_decode_and_missing_fields_use_null_or_default() {
    let decoded: ChatMessage =
        serde_json::from_str(r#"{"senderName":"ann","content":"hi","channelId":"room-1"}"#)
            .unwrap();
    assert_eq!(decoded.timestamp, None);
    assert_eq!(decoded.priority, Priority::Normal);
    // Unknown fields from newer clients are ignored.
    let decoded: ChatMessage =
        serde_json::from_str(r#"{"senderName":"a","content":"b","channelId":"c","mood":"happy"}"#)
            .unwrap();
    assert_eq!(decoded.sender_name, "a");
    // A missing non-nullable field without default is an error naming it.
    let err =
        serde_json::from_str::<ChatMessage>(r#"{"senderName":"a","content":"b"}"#).unwrap_err();
    assert!(err.to_string().contains("channelId"), "{err}");
}

#[test]
fn every_type_golden() {
    let value = EveryType {
        a_bool: true,
        an_int: -42,
        a_double: 0.25,
        a_string: "s".into(),
        a_date_time: noon(),
        a_duration: Duration::milliseconds(1500),
        a_uuid: Uuid::from_u128(1),
        a_uri: Uri::parse("https://serverpod.dev/a?b=c").unwrap(),
        a_big_int: "-98765432109876543210".parse::<BigInt>().unwrap(),
        some_bytes: Bytes::from_static(b"hi"),
        maybe_int: None,
        int_list: vec![1, 2],
        nullable_items: Some(vec![Some("x".into()), None]),
        tags: HashSet::from(["t".to_owned()]),
        counts: HashMap::from([("c".to_owned(), 3)]),
        by_day: HashMap::from([(noon(), vec![Some(Duration::seconds(2)), None])]),
        suits: HashMap::from([(Suit::InProgress, HashSet::from([Uuid::from_u128(2)]))]),
        deep: vec![HashMap::from([("k".to_owned(), vec![HashSet::from([7])])])],
        message: Some(chat()),
        messages: vec![],
    };
    golden(
        &value,
        concat!(
            r#"{"__className__":"EveryType","aBool":true,"anInt":-42,"aDouble":0.25,"aString":"s","#,
            r#""aDateTime":"2026-01-01T12:00:00.000Z","aDuration":1500,"#,
            r#""aUuid":"00000000-0000-0000-0000-000000000001","aUri":"https://serverpod.dev/a?b=c","#,
            r#""aBigInt":"-98765432109876543210","someBytes":"decode('aGk=', 'base64')","#,
            r#""intList":[1,2],"nullableItems":["x",null],"tags":["t"],"counts":{"c":3},"#,
            r#""byDay":[{"k":"2026-01-01T12:00:00.000Z","v":[2000,null]}],"#,
            r#""suits":[{"k":2,"v":["00000000-0000-0000-0000-000000000002"]}],"#,
            r#""deep":[{"k":[[7]]}],"#,
            r#""message":{"__className__":"ChatMessage","senderName":"ann","content":"hi","timestamp":"2026-01-01T12:00:00.000Z","channelId":"room-1","priority":"urgent"},"#,
            r#""messages":[]}"#
        ),
    );
}

#[test]
fn defaults_fill_missing_fields() {
    let before = streampod::__codegen::now();
    let value: Defaults = serde_json::from_str("{}").unwrap();
    assert!(value.flag);
    assert_eq!(value.count, -3);
    assert_eq!(value.ratio, 0.5);
    assert_eq!(value.label, "a, b");
    assert!(value.created >= before && value.created <= streampod::__codegen::now());
    assert_eq!(value.epoch.timestamp(), 0);
    assert_eq!(value.timeout, Duration::milliseconds(94_230_100));
    assert_eq!(value.id.get_version_num(), 4);
    assert_eq!(value.sortable.get_version_num(), 7);
    assert_eq!(
        value.fixed,
        Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap()
    );
    assert_eq!(value.home.as_str(), "https://serverpod.dev/");
    assert_eq!(value.huge.to_string(), "123456789012345678901234567890");
    assert_eq!(value.suit, Some(Suit::Spades));
    assert_eq!(value.retries, Some(3));
    // A default never overrides a value that is present; an explicit null is the
    // default, as in Serverpod's generated Dart (`retries ?? 3`).
    let value: Defaults = serde_json::from_str(r#"{"count":9,"retries":null}"#).unwrap();
    assert_eq!((value.count, value.retries), (9, Some(3)));
}

#[test]
fn keyword_fields_and_json_keys() {
    let value = Keywords {
        r#type: "t".into(),
        self_: Some(1),
        r#match: Some(false),
        async_value: None,
        renamed: "r".into(),
    };
    golden(
        &value,
        r#"{"__className__":"Keywords","type":"t","self":1,"match":false,"renamed_on_wire":"r"}"#,
    );
}

#[test]
fn recursive_models_and_server_only_fields() {
    let grandparent = Person {
        name: "g".into(),
        parent: None,
        children: vec![],
        record: None,
        secret_note: Some("kept".into()),
    };
    let person = Person {
        name: "p".into(),
        parent: Some(Box::new(grandparent)),
        children: vec![],
        record: Some(UserRecord {
            name: "r".into(),
            password_hash: Some("hash".into()),
            cache: None,
            company: None,
        }),
        secret_note: Some("never sent".into()),
    };
    let json = serde_json::to_string(&person).unwrap();
    assert_eq!(
        json,
        r#"{"__className__":"Person","name":"p","parent":{"__className__":"Person","name":"g","children":[]},"children":[]}"#
    );
    // Server-only fields are not read from the wire either; they take their default.
    let decoded: Person = serde_json::from_str(
        r#"{"name":"p","children":[],"record":{"name":"x"},"secretNote":"injected"}"#,
    )
    .unwrap();
    assert_eq!(decoded.record, None);
    assert_eq!(decoded.secret_note.as_deref(), Some("none"));
    let user: UserRecord = serde_json::from_str(r#"{"name":"n","passwordHash":"leak"}"#).unwrap();
    assert_eq!(user.password_hash, None);
}

#[test]
fn enums_by_name_and_by_index() {
    assert_eq!(
        serde_json::to_string(&Priority::Urgent).unwrap(),
        r#""urgent""#
    );
    assert_eq!(serde_json::to_string(&Suit::InProgress).unwrap(), "2");
    assert_eq!(serde_json::from_str::<Suit>("1").unwrap(), Suit::Spades);
    // Priority has `default: normal`: unknown names fall back to it.
    assert_eq!(
        serde_json::from_str::<Priority>(r#""someday""#).unwrap(),
        Priority::Normal
    );
    // Suit has no default: unknown indexes are errors that list the values.
    let err = serde_json::from_str::<Suit>("7").unwrap_err().to_string();
    assert!(
        err.contains("unknown Suit value") && err.contains("hearts, spades, inProgress"),
        "{err}"
    );
    assert!(
        serde_json::from_str::<Suit>(r#""hearts""#).is_err(),
        "byIndex enums are not read by name"
    );
    assert_eq!(Suit::VALUES, [Suit::Hearts, Suit::Spades, Suit::InProgress]);
    assert_eq!(Priority::Low.name(), "low");
}

#[test]
fn exceptions_are_errors() {
    fn as_exception<E: SerializableException>(e: E) -> Box<dyn std::error::Error> {
        Box::new(e)
    }
    let err = as_exception(RoomNotFound {
        room_id: "r1".into(),
        message: None,
    });
    assert!(err.to_string().contains("r1"));
    assert_eq!(RoomNotFound::CLASS_NAME, "RoomNotFound");
}

#[test]
fn protocol_decodes_by_class_name() {
    assert_eq!(
        Protocol::class_names(),
        [
            "ChatMessage",
            "Defaults",
            "Embedding",
            "Envelope",
            "EveryType",
            "Animal",
            "Circle",
            "Dog",
            "Drawing",
            "Puppy",
            "Square",
            "Keywords",
            "Person",
            "RoomNotFound",
            "Records",
            "ServerpodForms"
        ],
        "server-only UserRecord is not on the wire, nor sealed Shape (it has no values)"
    );
    let data =
        RawValue::from_string(r#"{"senderName":"ann","content":"hi","channelId":"room-1"}"#.into())
            .unwrap();
    let Protocol::ChatMessage(message) = Protocol::decode("ChatMessage", &data).unwrap() else {
        panic!("wrong variant")
    };
    assert_eq!(message.sender_name, "ann");

    let err = Protocol::decode("ChatMesage", &data)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("unknown className 'ChatMesage'; known classes: ChatMessage, Defaults"),
        "{err}"
    );
    let err = Protocol::decode("Keywords", &data).unwrap_err().to_string();
    assert!(
        err.starts_with("invalid data for 'Keywords': missing field `type`"),
        "{err}"
    );
    assert!(Protocol::decode("UserRecord", &data).is_err());
}

#[test]
fn protocol_encodes_frames_in_one_pass() {
    let message = Protocol::from(chat());
    assert_eq!(message.class_name(), "ChatMessage");
    let mut out = Vec::new();
    frame::encode_message("chat", &message, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        r#"{"endpoint":"chat","object":{"className":"ChatMessage","data":{"__className__":"ChatMessage","senderName":"ann","content":"hi","timestamp":"2026-01-01T12:00:00.000Z","channelId":"room-1","priority":"urgent"}}}"#
    );
    let Frame::Message(parsed) = Frame::parse(&text).unwrap() else {
        panic!("not a message frame")
    };
    assert_eq!(
        Protocol::decode(&parsed.class_name, parsed.data).unwrap(),
        message
    );
}

#[test]
fn serverpod_forms_golden() {
    use streampod::__codegen::{EntryMap, EntrySet};
    let person = Person {
        name: "ann".into(),
        parent: None,
        children: Vec::new(),
        record: None,
        secret_note: Some("none".into()),
    };
    let forms = ServerpodForms {
        big: "-1234567890123456789099999999".parse().unwrap(),
        mixed: "model".into(),
        link: Some(Uri::parse("https://serverpod.dev").unwrap()),
        code: "c".into(),
        rank: 1,
        created_at: None,
        trailing: 2,
        weights: [(0.5, "half".to_owned())].into_iter().collect(),
        ratios: [1.5, 2.5].into_iter().collect(),
        by_person: Some([(person.clone(), 7)].into_iter().collect()),
        by_list: Some([(vec![1, 2], "x".to_owned())].into_iter().collect()),
        people: Some(EntrySet::from_iter([person])),
        nullable_keys: Some(EntryMap::from_iter([
            (None, "none".to_owned()),
            (Some(1), "one".to_owned()),
        ])),
    };
    golden(
        &forms,
        r#"{"__className__":"ServerpodForms","big":"-1234567890123456789099999999","mixed":"model","link":"https://serverpod.dev","code":"c","rank":1,"trailing":2,"weights":[{"k":0.5,"v":"half"}],"ratios":[1.5,2.5],"byPerson":[{"k":{"__className__":"Person","name":"ann","children":[]},"v":7}],"byList":[{"k":[1,2],"v":"x"}],"people":[{"__className__":"Person","name":"ann","children":[]}],"nullableKeys":[{"k":null,"v":"none"},{"k":1,"v":"one"}]}"#,
    );
}

#[test]
fn an_explicit_null_decodes_to_the_default_like_dart() {
    // Dart reads `json['x'] ?? default`: null and absent are the same for a defaulted field.
    let explicit: ServerpodForms = serde_json::from_str(
        r#"{"big":null,"mixed":null,"link":null,"code":"c","rank":1,"trailing":2,"weights":[],"ratios":[]}"#,
    )
    .unwrap();
    let absent: ServerpodForms =
        serde_json::from_str(r#"{"code":"c","rank":1,"trailing":2,"weights":[],"ratios":[]}"#)
            .unwrap();
    assert_eq!(explicit, absent);
    // `defaultModel=` wins over `default=`, and the Uri keeps its text (no '/' added).
    assert_eq!(explicit.mixed, "model");
    assert_eq!(
        explicit.link.as_ref().map(Uri::as_str),
        Some("https://serverpod.dev")
    );
    assert_eq!(explicit.big.to_string(), "-1234567890123456789099999999");
    // A defaulted nullable int: null means the default, not None.
    let defaults: Defaults = serde_json::from_str(r#"{"retries":null,"suit":null}"#).unwrap();
    assert_eq!(defaults.retries, Some(3));
    assert_eq!(defaults.suit, Some(Suit::Spades));
    // A field without a default still rejects null when it is not nullable.
    let err = serde_json::from_str::<ServerpodForms>(
        r#"{"code":null,"rank":1,"trailing":2,"weights":[],"ratios":[]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("null"), "{err}");
}

#[test]
fn uris_keep_their_text_and_relative_references_decode() {
    for text in ["https://serverpod.dev", "/foo/bar?x=1", "mailto:a@b.c"] {
        let json = format!(
            r#"{{"code":"c","rank":1,"trailing":2,"weights":[],"ratios":[],"link":"{text}"}}"#
        );
        let forms: ServerpodForms = serde_json::from_str(&json).unwrap();
        assert_eq!(forms.link.as_ref().map(Uri::as_str), Some(text));
        assert!(serde_json::to_string(&forms)
            .unwrap()
            .contains(&format!(r#""link":"{text}""#)));
    }
    let err = serde_json::from_str::<ServerpodForms>(
        r#"{"code":"c","rank":1,"trailing":2,"weights":[],"ratios":[],"link":"a b"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("invalid URI 'a b'"), "{err}");
}

#[test]
fn pgvector_fields_golden() {
    use streampod::__codegen::{Bits, SparseVector};
    let embedding = Embedding {
        dense: vec![0.5, 1.0, -2.0],
        half: Some(vec![1.0, 0.25]),
        sparse: SparseVector::from_dense(&[0.0, 3.0, 0.0, 0.0, 1.5]),
        flags: Bits(vec![true, false, false, true]),
        flag_set: None,
    };
    golden(
        &embedding,
        r#"{"__className__":"Embedding","dense":[0.5,1.0,-2.0],"half":[1.0,0.25],"sparse":"{2:3.0,5:1.5}/5","flags":"1001"}"#,
    );
}

#[test]
fn inheritance_flattens_fields_and_parent_typed_fields_hold_any_descendant() {
    let circle = Circle {
        label: "c".into(),
        radius: 1.5,
        created_at: Some(noon()),
    };
    // The parent's fields first, the child's own, then the parent's `tail` field.
    golden(
        &circle,
        r#"{"__className__":"Circle","label":"c","radius":1.5,"createdAt":"2026-01-01T12:00:00.000Z"}"#,
    );
    let drawing = Drawing {
        shapes: vec![
            circle.clone().into(),
            Shape::Square(Square {
                label: "s".into(),
                side: 2.0,
                created_at: None,
            }),
        ],
        main: None,
        pet: AnyAnimal::Puppy(Puppy {
            name: "rex".into(),
            good_boy: true,
            age_weeks: 9,
        }),
        pets: Some(HashMap::from([(
            "old".to_owned(),
            AnyAnimal::Animal(Animal { name: "cat".into() }),
        )])),
        dog: Some(AnyDog::Dog(Dog {
            name: "fido".into(),
            good_boy: false,
        })),
    };
    golden(
        &drawing,
        r#"{"__className__":"Drawing","shapes":[{"__className__":"Circle","label":"c","radius":1.5,"createdAt":"2026-01-01T12:00:00.000Z"},{"__className__":"Square","label":"s","side":2.0}],"pet":{"__className__":"Puppy","name":"rex","goodBoy":true,"ageWeeks":9},"pets":{"old":{"__className__":"Animal","name":"cat"}},"dog":{"__className__":"Dog","name":"fido","goodBoy":false}}"#,
    );
}

#[test]
fn hierarchies_decode_by_class_name_and_say_what_fits() {
    // Without a class name a non-sealed parent decodes as itself...
    let pet: AnyAnimal = serde_json::from_str(r#"{"name":"cat"}"#).unwrap();
    assert_eq!(pet, AnyAnimal::Animal(Animal { name: "cat".into() }));
    // ...a sealed one cannot: it has no values of its own.
    let err = serde_json::from_str::<Shape>(r#"{"label":"x","radius":1}"#).unwrap_err();
    assert!(err.to_string().contains("Circle, Square"), "{err}");
    // A class outside the hierarchy is refused by name, even with the right fields.
    let err =
        serde_json::from_str::<AnyDog>(r#"{"__className__":"Animal","name":"cat"}"#).unwrap_err();
    assert!(err.to_string().contains("'Animal' is not a Dog"), "{err}");
    // The member's own decoding errors come through.
    let err =
        serde_json::from_str::<Shape>(r#"{"__className__":"Circle","label":"x"}"#).unwrap_err();
    assert!(err.to_string().contains("radius"), "{err}");
}

#[test]
fn records_golden_in_serverpods_p_and_n_form() {
    use streampod::__codegen::EntryMap;
    let records = Records {
        pair: (1, "a".into()),
        single: Some(("s".into(),)),
        with_named: RecordsWithNamedRecord {
            id: "x".into(),
            optional_uri: None,
            count: 2,
        },
        only_named: Some(RecordsOnlyNamedRecord { at: noon() }),
        list_of_pairs: vec![(Suit::Hearts, 0.5)],
        by_record: Some(EntryMap::from_iter([(("k".to_owned(),), 3)])),
        nested: Some(RecordsNestedRecord {
            p1: (4, 5),
            flag: Some((true,)),
        }),
    };
    golden(
        &records,
        r#"{"__className__":"Records","pair":{"p":[1,"a"]},"single":{"p":["s"]},"withNamed":{"p":["x"],"n":{"optionalUri":null,"count":2}},"onlyNamed":{"n":{"at":"2026-01-01T12:00:00.000Z"}},"listOfPairs":[{"p":[0,0.5]}],"byRecord":[{"k":{"p":["k"]},"v":3}],"nested":{"p":[{"p":[4,5]}],"n":{"flag":{"p":[true]}}}}"#,
    );
    // A missing nullable named field reads as null; a missing "p" is named in the error.
    let named: Records = serde_json::from_str(
        r#"{"pair":{"p":[1,"a"]},"withNamed":{"p":["x"],"n":{"count":2}},"listOfPairs":[]}"#,
    )
    .unwrap();
    assert_eq!(named.with_named.optional_uri, None);
    let err = serde_json::from_str::<Records>(
        r#"{"pair":{"n":{}},"withNamed":{"p":["x"],"n":{"count":2}},"listOfPairs":[]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("`p`"), "{err}");
    let err = serde_json::from_str::<Records>(
        r#"{"pair":{"p":[1]},"withNamed":{"p":["x"],"n":{"count":2}},"listOfPairs":[]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"p\""), "{err}");
}

#[test]
fn module_and_shared_package_types_come_from_their_own_crates() {
    use streampod_tests::{app, common, kit};
    let profile = app::Profile {
        badge: kit::Badge {
            title: "first".into(),
            level: kit::Level::Gold,
        },
        badges: vec![None],
        by_level: HashMap::from([(kit::Level::Bronze, 2)]),
        reward: Some(kit::AnyReward::BonusReward(kit::BonusReward {
            points: 5,
            multiplier: 1.5,
        })),
        note: common::SharedNote { text: "n".into() },
        qualified_note: None,
    };
    golden(
        &profile,
        r#"{"__className__":"Profile","badge":{"__className__":"Badge","title":"first","level":"gold"},"badges":[null],"byLevel":[{"k":"bronze","v":2}],"reward":{"__className__":"BonusReward","points":5,"multiplier":1.5},"note":{"__className__":"SharedNote","text":"n"}}"#,
    );
    // A class here may extend one of the shared package's.
    golden(
        &app::LongNote {
            text: "t".into(),
            pages: 3,
        },
        r#"{"__className__":"LongNote","text":"t","pages":3}"#,
    );
    // The app's Protocol holds only its own models.
    assert_eq!(app::Protocol::class_names(), ["LongNote", "Profile"]);
}

#[test]
fn enhanced_enum_properties_are_constants_and_the_wire_sends_the_name() {
    assert_eq!(Planet::Saturn.label(), "Saturn, ringed");
    assert_eq!(
        (Planet::Earth.moons(), Planet::Mercury.moons()),
        (1, 0),
        "a property default fills a value that leaves it out"
    );
    assert_eq!(
        (Planet::Saturn.ringed(), Planet::Earth.ringed()),
        (Some(true), None)
    );
    assert_eq!(
        serde_json::to_string(&streampod::__codegen::wire::Wire(&Planet::Saturn)).unwrap(),
        r#""saturn""#
    );
}

#[test]
fn dynamic_fields_keep_class_name_and_data() {
    use streampod::__codegen::Dynamic;
    let envelope = Envelope {
        payload: Some(Dynamic::from_model(&chat()).unwrap()),
        items: vec![Some(Dynamic::new("int", serde_json::json!(7))), None],
        by_key: None,
    };
    let json = serde_json::to_string(&envelope).unwrap();
    assert!(
        json.starts_with(
            r#"{"__className__":"Envelope","payload":{"className":"ChatMessage","data":{"__className__":"ChatMessage","#
        ),
        "{json}"
    );
    assert!(
        json.ends_with(r#""items":[{"className":"int","data":7},null]}"#),
        "{json}"
    );
    let back: Envelope = serde_json::from_str(&json).unwrap();
    assert_eq!(back, envelope);
    let payload = back.payload.unwrap();
    assert_eq!(payload.decode::<ChatMessage>().unwrap(), chat());
    assert_eq!(
        payload.decode_in::<Protocol>().unwrap(),
        Protocol::ChatMessage(chat())
    );
    assert!(payload.decode::<Person>().is_err());
    // Not the wrapped form: the error says what is.
    let err = serde_json::from_str::<Envelope>(r#"{"payload":7,"items":[]}"#).unwrap_err();
    assert!(err.to_string().contains("className"), "{err}");
}

#[test]
fn a_module_prefixed_class_name_in_the_data_still_decodes() {
    // Serverpod 3 writes a module's class as "module.Class" in `__className__`; the tag
    // inside model data is informational here (the frame's className chose the type).
    let decoded: ChatMessage = serde_json::from_str(
        r#"{"__className__":"chat_module.ChatMessage","senderName":"ann","content":"hi","channelId":"room-1"}"#,
    )
    .unwrap();
    assert_eq!(decoded.sender_name, "ann");
    let pet: AnyAnimal =
        serde_json::from_str(r#"{"__className__":"zoo.Dog","name":"rex","goodBoy":true}"#).unwrap();
    assert!(matches!(pet, AnyAnimal::Dog(_)), "{pet:?}");
}
