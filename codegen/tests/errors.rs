//! Every rejected input: the error names the file, line and column, says what is wrong
//! and, where it can, what to write instead. All errors of a run are reported together.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

/// Generates from `files` and returns the headline of every diagnostic, with the
/// temporary directory shown as `models`.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    match streampod_codegen::configure().generate(dir.path()) {
        Ok(_) => Vec::new(),
        Err(streampod_codegen::Error::Models(diagnostics)) => diagnostics
            .iter()
            .map(|d| {
                d.headline()
                    .replace(&dir.path().display().to_string(), "models")
            })
            .collect(),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn one(files: &[(&str, &str)]) -> String {
    let mut all = errors(files);
    assert_eq!(all.len(), 1, "expected exactly one error, got {all:#?}");
    all.remove(0)
}

#[test]
fn unknown_type_with_suggestion() {
    assert_eq!(
        one(&[("chat_message.yaml", "class: ChatMessage\nfields:\n  senderName: String\n  content: String\n  channelId: String\n  id: int\n  author: Strin\n")]),
        "models/chat_message.yaml:7:11: unknown type 'Strin' (did you mean 'String'?)"
    );
    // Inside generics and after other text, the column points at the name itself.
    assert_eq!(
        one(&[
            (
                "a.yaml",
                "class: A\nfields:\n  x: Map<String, List<ChatMesage>>?\n"
            ),
            ("b.yaml", "class: ChatMessage\n")
        ]),
        "models/a.yaml:3:23: unknown type 'ChatMesage' (did you mean 'ChatMessage'?)"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: Object\n")]),
        "models/a.yaml:3:6: unknown type 'Object' (did you mean 'dynamic'?)"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: 'Lst<int>'\n")]),
        "models/a.yaml:3:7: 'Lst' takes no type arguments; generic types are List, Set and Map (did you mean 'List'?)"
    );
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let all = errors(&[
        ("a.yaml", "class: A\nfields:\n  x: Strin\n  y: innt\n"),
        ("b.yaml", "class: B\nfeilds:\n  x: int\n"),
    ]);
    assert_eq!(
        all,
        [
            "models/a.yaml:3:6: unknown type 'Strin' (did you mean 'String'?)",
            "models/a.yaml:4:6: unknown type 'innt' (did you mean 'int'?)",
            "models/b.yaml:2:1: unknown key 'feilds' in a class file (did you mean 'fields'?)",
        ]
    );
}

#[test]
fn unknown_keys_and_options() {
    assert_eq!(
        one(&[("a.yaml", "enum: A\nvalues:\n  - x\nserialised: byName\n")]),
        "models/a.yaml:4:1: unknown key 'serialised' in a enum file (did you mean 'serialized'?)"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: int, defualt=3\n")]),
        "models/a.yaml:3:11: unknown field option 'defualt' (did you mean 'default'?)"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: int?, scope=everyone\n")]),
        "models/a.yaml:3:12: scope is all, serverOnly or none, not 'everyone'"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: int, jsonKey\n")]),
        "models/a.yaml:3:11: option 'jsonKey' needs a value: jsonKey=name"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: int, database\n")]),
        "models/a.yaml:3:11: 'database' (deprecated) keeps a field off the wire; write scope=serverOnly"
    );
}

#[test]
fn duplicate_fields_and_names() {
    // YAML itself rejects a repeated key.
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: int\n  x: String\n")]),
        "models/a.yaml:4:3: duplicate key 'x' (first on line 3)"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  userId: int\n  user_id: int\n")]),
        "models/a.yaml:4:3: fields 'userId' and 'user_id' both become the Rust field 'user_id'; rename one"
    );
    assert_eq!(
        one(&[(
            "a.yaml",
            "class: A\nfields:\n  x: int\n  y: int, jsonKey=x\n"
        )]),
        "models/a.yaml:4:3: fields 'x' and 'y' both use the JSON key 'x'"
    );
    assert_eq!(
        one(&[
            ("a.yaml", "class: Chat\n"),
            ("b.yaml", "\nenum: Chat\nvalues:\n  - x\n")
        ]),
        "models/b.yaml:2:7: 'Chat' is already defined at models/a.yaml:1:8"
    );
    assert_eq!(
        one(&[("a.yaml", "enum: A\nvalues:\n  - one\n  - two\n  - one\n")]),
        "models/a.yaml:5:5: duplicate enum value 'one'"
    );
}

#[test]
fn invalid_identifiers() {
    assert_eq!(
        one(&[("a.yaml", "class: chat_message\n")]),
        "models/a.yaml:1:8: invalid name 'chat_message': model and enum names are UpperCamelCase letters and digits, like 'ChatMessage'"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  Sender Name: String\n")]),
        "models/a.yaml:3:3: invalid field name 'Sender Name': start with a lowercase letter and use letters, digits and '_'"
    );
    assert_eq!(
        one(&[("a.yaml", "class: Protocol\n")]),
        "models/a.yaml:1:8: 'Protocol' is reserved (a built-in or generated type name); choose another name"
    );
    assert_eq!(
        one(&[("a.yaml", "enum: A\nvalues:\n  - 1st\n")]),
        "models/a.yaml:3:5: invalid enum value '1st': use letters, digits and '_', starting with a letter"
    );
}

#[test]
fn rust_keywords_are_escaped_not_errors() {
    assert!(errors(&[(
        "a.yaml",
        "class: A\nfields:\n  type: String\n  self: int\n  fn: bool\n  crate: int\n"
    )])
    .is_empty());
}

#[test]
fn cycles_without_indirection() {
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  b: B\n"), ("b.yaml", "class: B\nfields:\n  a: A\n")]),
        "models/a.yaml:3:3: 'A' contains itself through non-nullable fields (A.b -> B.a -> A), so no value of it can be built; make one of these fields nullable or a List"
    );
    assert_eq!(
        one(&[("a.yaml", "class: Node\nfields:\n  next: Node\n")]),
        "models/a.yaml:3:3: 'Node' contains itself through non-nullable fields (Node.next -> Node), so no value of it can be built; make one of these fields nullable or a List"
    );
    // Nullable or collection links make a buildable type: no error, the link is boxed.
    assert!(errors(&[
        ("a.yaml", "class: A\nfields:\n  b: B?\n"),
        ("b.yaml", "class: B\nfields:\n  a: A\n  all: List<A>\n")
    ])
    .is_empty());
}

#[test]
fn inheritance_mistakes() {
    assert_eq!(
        one(&[
            ("a.yaml", "class: A\nextends: Bee\n"),
            ("b.yaml", "class: Be\n")
        ]),
        "models/a.yaml:2:10: unknown parent class 'Bee' (did you mean 'Be'?)"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nextends: E\n"), ("e.yaml", "exception: E\n")]),
        "models/a.yaml:2:10: 'A' cannot extend 'E': a class extends a class and an exception an exception"
    );
    assert_eq!(
        one(&[
            ("a.yaml", "class: A\nextends: S\n"),
            ("s.yaml", "enum: S\nvalues:\n  - x\n")
        ]),
        "models/a.yaml:2:10: 'S' is an enum; only classes and exceptions can be extended"
    );
    assert_eq!(
        one(&[
            ("a.yaml", "class: A\nextends: P\nfields:\n  name: String\n"),
            ("p.yaml", "class: P\nfields:\n  name: String\n")
        ]),
        "models/a.yaml:4:3: field 'name' is already defined by the parent class 'P'; remove it here"
    );
    let looped = errors(&[
        ("a.yaml", "class: A\nextends: B\n"),
        ("b.yaml", "class: B\nextends: A\n"),
    ]);
    assert!(
        looped
            .iter()
            .any(|e| e.contains("extends itself through its parents")),
        "{looped:#?}"
    );
}

#[test]
fn unsupported_grammar_says_why() {
    assert_eq!(
        one(&[("a.yaml", "enum: A\nproperties:\n  x: int\nvalues:\n  - a\n")]),
        "models/a.yaml:5:5: enum value 'a' needs its 'x' property (or give the property a default)"
    );
    assert_eq!(
        one(&[(
            "a.yaml",
            "enum: A\nproperties:\n  x: int\nvalues:\n  - a:\n      y: 1\n      x: 2\n"
        )]),
        "models/a.yaml:6:7: 'y' is not a property of enum 'A' (did you mean 'x'?)"
    );
    assert_eq!(
        one(&[(
            "a.yaml",
            "enum: A\nproperties:\n  x: List<int>\nvalues:\n  - a\n"
        )]),
        "models/a.yaml:3:6: an enum property is a scalar: bool, int, double, String, DateTime, Duration, UuidValue, Uri or BigInt"
    );
    assert_eq!(
        one(&[(
            "a.yaml",
            "enum: A\nproperties:\n  x: int\nvalues:\n  - a:\n      x: many\n"
        )]),
        "models/a.yaml:6:10: 'many' is not an int default"
    );
    assert_eq!(
        one(&[(
            "a.yaml",
            "class: A\nfields:\n  x: '(int, int x, {String x})'\n"
        )]),
        "models/a.yaml:3:7: two fields of this record are both named 'x'"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: module:auth:UserInfo\n")]),
        "models/a.yaml:3:18: unknown module 'auth': its types need its models, given with Builder::module(\"auth\", dir, rust_path)"
    );
}

#[test]
fn scopes_defaults_and_server_only_types() {
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  secret: String, scope=serverOnly\n")]),
        "models/a.yaml:3:11: field 'secret' has a restricted scope and so must be nullable: 'String?'"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x: int, required\n")]),
        "models/a.yaml:3:11: 'required' only applies to nullable fields; non-nullable fields are always required"
    );
    assert_eq!(
        one(&[(
            "a.yaml",
            "class: A\nfields:\n  name: String, default=anonymous\n"
        )]),
        "models/a.yaml:3:17: String defaults are quoted: default='anonymous'"
    );
    assert_eq!(
        one(&[
            ("a.yaml", "class: A\nfields:\n  s: S, default=hart\n"),
            ("s.yaml", "enum: S\nvalues:\n  - heart\n")
        ]),
        "models/a.yaml:3:9: 'hart' is not a value of enum 'S' (did you mean 'heart'?)"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  l: List<int>, default=1\n")]),
        "models/a.yaml:3:17: only scalar and enum fields can have a default"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  s: Secret?\n"), ("s.yaml", "class: Secret\nserverOnly: true\n")]),
        "models/a.yaml:3:3: field 's' of client-visible 'A' has the server-only type 'Secret'; make the field scope=serverOnly or 'A' serverOnly"
    );
    assert_eq!(
        one(&[("a.yaml", "enum: A\ndefault: onee\nvalues:\n  - one\n")]),
        "models/a.yaml:2:10: default 'onee' is not a value of enum 'A' (did you mean 'one'?)"
    );
}

#[test]
fn malformed_files() {
    assert_eq!(
        one(&[("a.yaml", "fields:\n  x: int\n")]),
        "models/a.yaml:1:1: missing 'class:', 'exception:' or 'enum:' naming the model"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nenum: B\n")]),
        "models/a.yaml:2:1: a model file declares one model; found a second 'class:', 'exception:' or 'enum:'"
    );
    assert_eq!(
        one(&[("a.yaml", "- just\n- a list\n")]),
        "models/a.yaml:1:1: a model file is a mapping with 'class:', 'exception:' or 'enum:'"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n  x:\n")]),
        "models/a.yaml:3:3: field 'x' needs a type, like 'x: String'"
    );
    assert_eq!(
        one(&[("a.yaml", "class: A\nserverOnly: maybe\n")]),
        "models/a.yaml:2:13: 'serverOnly' must be true or false"
    );
    let syntax = one(&[("a.yaml", "class: A\nfields:\n  x: [int\n")]);
    assert!(
        syntax.starts_with("models/a.yaml:4:1: invalid YAML"),
        "{syntax}"
    );
}

#[test]
fn newcomer_mistakes_get_the_fix() {
    // Other languages' names for Serverpod's types, in any case.
    for (written, meant) in [
        ("integer", "int"),
        ("Integer", "int"),
        ("string", "String"),
        ("boolean", "bool"),
        ("float", "double"),
        ("Uuid", "UuidValue"),
        ("url", "Uri"),
    ] {
        assert_eq!(
            one(&[("a.yaml", &format!("class: A\nfields:\n  x: {written}\n"))]),
            format!("models/a.yaml:3:6: unknown type '{written}' (did you mean '{meant}'?)")
        );
    }
    // A name that is nothing known says what it could be.
    let custom = one(&[("a.yaml", "class: A\nfields:\n  x: MyDartClass\n")]);
    assert!(
        custom.contains("custom Dart classes (extraClasses) cannot be used"),
        "{custom}"
    );
    let postgis = one(&[("a.yaml", "class: A\nfields:\n  x: GeographyPoint\n")]);
    assert!(
        postgis.contains("PostGIS types need Serverpod's database layer"),
        "{postgis}"
    );
    // A tab in the indentation is named as such, not as serde_yaml's parse error.
    assert_eq!(
        one(&[("a.yaml", "class: A\nfields:\n\tx: int\n")]),
        "models/a.yaml:3:1: a tab in the indentation: YAML indents with spaces only"
    );
    // Misaligned keys say the indentation is off.
    let misaligned = one(&[("a.yaml", "class: A\nfields:\n    x: int\n  y: int\n")]);
    assert!(
        misaligned.contains("the indentation does not line up"),
        "{misaligned}"
    );
    // A file that fails to parse does not make its type unknown everywhere else.
    let errors = errors(&[
        ("a.yaml", "class: A\nfields:\n  b: B\n  bs: List<B>\n"),
        ("b.yaml", "class: B\nfields:\n\tx: int\n"),
    ]);
    assert_eq!(
        errors,
        ["models/b.yaml:3:1: a tab in the indentation: YAML indents with spaces only"]
    );
}

#[test]
fn the_report_shows_every_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("a.yaml"),
        "class: A\nfields:\n  x: Strin\n  y: Bool\n",
    )
    .unwrap();
    let err = streampod_codegen::configure()
        .generate(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 |   x: Strin\n  |      ^^^^^"), "{err}");
    assert!(err.contains("4 |   y: Bool\n  |      ^^^^"), "{err}");
    assert!(
        err.ends_with("streampod-codegen: 2 errors in model files"),
        "{err}"
    );
}
