//! TypeScript from model files: the example's models as a snapshot, and every generated
//! module type-checked by the real `tsc --strict` (installed by `npm ci` in
//! `codegen/typescript`, which `tests/run-all.sh` runs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn typescript_of(dir: &Path) -> String {
    streampod_codegen::configure()
        .typescript_out("unused.ts")
        .generate(dir)
        .unwrap()
        .typescript
        .unwrap()
}

fn example_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../example-server/models")
}

fn tsc() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("typescript");
    let tsc = root.join("node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "{} is missing: run `npm ci` in {} (tests/run-all.sh does)",
        tsc.display(),
        root.display()
    );
    tsc
}

/// `tsc --strict` on `source` as `dir/protocol.ts` with the runtime beside it, emitting
/// `protocol.js` and `streampod.js` unless `no_emit`; its complaints when it has any.
fn compile(source: &str, dir: &Path, no_emit: bool) -> Result<(), String> {
    let file = dir.join("protocol.ts");
    streampod_codegen::write_typescript(&file, source).unwrap();
    let output = Command::new(tsc())
        .args(["--strict", "--target", "es2022", "--module", "es2022"])
        .args(["--lib", "es2022,dom"])
        .args([
            "--noUnusedParameters",
            "--noUnusedLocals",
            "--noImplicitReturns",
        ])
        .arg("--exactOptionalPropertyTypes")
        .arg(if no_emit { "--noEmit" } else { "--declaration" })
        .arg(&file)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn type_check(source: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    compile(source, dir.path(), true)
}

#[test]
fn the_example_models_as_typescript() {
    insta::assert_snapshot!(typescript_of(&example_models()));
}

#[test]
fn generated_typescript_passes_tsc_strict() {
    type_check(&typescript_of(&example_models())).unwrap();
}

#[test]
fn other_packages_models_are_named_not_emitted_wrong() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let error = streampod_codegen::configure()
        .typescript_out("unused.ts")
        .module("kit", fixtures.join("kit"), "crate::kit")
        .shared("common", fixtures.join("shared"), "crate::common")
        .generate(fixtures.join("app"))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("another package's model has no TypeScript yet"),
        "{message}"
    );
}

/// The whole grammar the fixtures use (hierarchies, records, pgvector types, `dynamic`,
/// keywords, nested directories) passes tsc --strict.
#[test]
fn every_fixture_model_passes_tsc_strict() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    type_check(&typescript_of(&fixtures)).unwrap();
}

/// A field added to a model is in the TypeScript type on the next generation, and a
/// frontend that gives it the wrong type no longer compiles.
#[test]
fn a_new_field_is_typed_in_the_frontend() {
    let generate = |yaml: &str| {
        streampod_codegen::configure()
            .typescript_out("unused.ts")
            .generate_sources([("note.yaml", yaml.to_owned())])
            .unwrap()
            .typescript
            .unwrap()
    };
    let frontend = "\nexport const note: Note = { text: \"hi\", stars: 3 };\n";
    let before = generate("class: Note\nfields:\n  text: String\n");
    let complaint = type_check(&(before + frontend)).unwrap_err();
    assert!(
        complaint.contains("'stars' does not exist in type 'Note'"),
        "{complaint}"
    );

    let after = generate("class: Note\nfields:\n  text: String\n  stars: int\n");
    type_check(&(after.clone() + frontend)).unwrap();
    let wrong = "\nexport const note: Note = { text: \"hi\", stars: \"many\" };\n";
    let complaint = type_check(&(after + wrong)).unwrap_err();
    assert!(
        complaint.contains("Type 'string' is not assignable to type 'number'"),
        "{complaint}"
    );
}

/// Typed method calls: a schema's methods become functions of the client, their
/// argument and answer types checked by tsc; a type the models do not define is refused.
#[test]
fn method_schemas_become_typed_calls() {
    let schema: streampod_codegen::MethodSchema = serde_json::from_str(
        r#"{"endpoints":[{"name":"chat","methods":[{"name":"history","args":[{"name":"channelId","type":"String"},{"name":"before","type":"int?"}],"returns":"List<ChatMessage>","exceptions":["InvalidRequest"],"requireLogin":false,"scopes":[]},{"name":"clear","args":[],"returns":"void","exceptions":[],"requireLogin":true,"scopes":["admin"]}]}]}"#,
    )
    .unwrap();
    let module = streampod_codegen::configure()
        .typescript_out("unused.ts")
        .methods(schema.clone())
        .generate(example_models())
        .unwrap()
        .typescript
        .unwrap();
    let frontend = "\nexport async function use(client: Client): Promise<string[]> {\n  await client.chat.clear();\n  const page = await client.chat.history(\"lobby\");\n  return page.map((m) => m.content);\n}\n";
    type_check(&(module.clone() + frontend)).unwrap();
    let wrong = "\nexport async function use(client: Client): Promise<void> {\n  await client.chat.history(7);\n}\n";
    let complaint = type_check(&(module + wrong)).unwrap_err();
    assert!(
        complaint.contains("not assignable to parameter of type 'string'"),
        "{complaint}"
    );

    let mut unknown = schema;
    unknown.endpoints[0].methods[0].returns = "List<ChatMesage>".into();
    let error = streampod_codegen::configure()
        .typescript_out("unused.ts")
        .methods(unknown)
        .generate(example_models())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("chat.history: answer: 'ChatMesage' is no model"),
        "{error}"
    );
}

/// Streaming methods: a typed call to iterate, typed input sinks, refused misuse.
#[test]
fn streaming_methods_become_typed_stream_calls() {
    let schema: streampod_codegen::MethodSchema = serde_json::from_str(
        r#"{"endpoints":[{"name":"chat","methods":[
            {"name":"messages","args":[{"name":"channelId","type":"String"}],"streaming":true,"returns":"Stream<ChatMessage>","exceptions":["InvalidRequest"],"requireLogin":false,"scopes":[]},
            {"name":"shout","args":[],"streaming":true,"inputStreams":[{"name":"lines","type":"ChatMessage"},{"name":"counts","type":"int?"}],"returns":"Stream<String>","exceptions":[],"requireLogin":false,"scopes":[]},
            {"name":"total","args":[],"streaming":true,"inputStreams":[{"name":"numbers","type":"int"}],"returns":"int","exceptions":[],"requireLogin":false,"scopes":[]}
        ]}]}"#,
    )
    .unwrap();
    let module = streampod_codegen::configure()
        .typescript_out("unused.ts")
        .methods(schema)
        .generate(example_models())
        .unwrap()
        .typescript
        .unwrap();
    let frontend = r#"
export async function use(client: Client, message: ChatMessage): Promise<string[]> {
  const seen: string[] = [];
  for await (const heard of await client.chat.messages("lobby")) seen.push(heard.content);
  const shout = await client.chat.shout();
  shout.inputs.lines.send(message);
  shout.inputs.counts.send(null);
  shout.inputs.counts.close();
  for await (const line of shout) seen.push(line);
  const total = await client.chat.total();
  total.inputs.numbers.send(2);
  const sum: number | undefined = (await total.next()).value;
  seen.push(String(sum));
  return seen;
}
"#;
    type_check(&(module.clone() + frontend)).unwrap();
    let wrong = r#"
export async function use(client: Client): Promise<void> {
  const shout = await client.chat.shout();
  shout.inputs.lines.send("not a message");
}
"#;
    let complaint = type_check(&(module + wrong)).unwrap_err();
    assert!(
        complaint.contains("not assignable to parameter of type 'ChatMessage'"),
        "{complaint}"
    );
}

/// The compiled module under Node: Serverpod JSON decodes to typed values (Date,
/// defaults, null for absent nullable fields, enum fallback) and encodes back.
#[test]
fn generated_codecs_round_trip_serverpod_json_under_node() {
    let dir = tempfile::tempdir().unwrap();
    compile(&typescript_of(&example_models()), dir.path(), false).unwrap();
    let script = r#"
import { decodeProtocol, encodeProtocol, ChatMessageCodec, NotificationLevelCodec } from "./protocol.js";
import assert from "node:assert/strict";
const wire = { className: "ChatMessage", data: { senderName: "ann (guest 7)", content: "hi",
  timestamp: "2026-12-03T07:52:08.123Z", channelId: "lobby", excludeSender: false, id: 42 } };
const decoded = decodeProtocol(wire.className, wire.data);
assert.equal(decoded.className, "ChatMessage");
assert.ok(decoded.data.timestamp instanceof Date);
assert.equal(decoded.data.senderId, null);
assert.deepEqual(encodeProtocol(decoded), { className: "ChatMessage",
  data: { __className__: "ChatMessage", ...wire.data } });
// Defaults fill what is absent; a wrong type names where it is.
const bare = ChatMessageCodec.fromJson({ senderName: "a", content: "b", channelId: "c" });
assert.equal(bare.excludeSender, false);
assert.ok(bare.timestamp instanceof Date);
assert.throws(() => ChatMessageCodec.fromJson({ senderName: 1 }), /ChatMessage.senderName: expected a string/);
assert.throws(() => decodeProtocol("Nope", {}), /className/);
// An enum value from a newer server decodes to the fallback.
assert.equal(NotificationLevelCodec.fromJson("fireworks"), "info");
"#;
    std::fs::write(dir.path().join("check.mjs"), script).unwrap();
    let output = Command::new("node")
        .arg("check.mjs")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_node(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) {
    let mut command = Command::new("node");
    command.args(args).current_dir(dir);
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The wire vectors the Rust models are held to (`tests/tests/wire_vectors.rs`), under
/// `node --test` with the TypeScript generated from the same models.
#[test]
fn the_shared_wire_vectors_under_node_test() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    compile(&typescript_of(&fixtures.join("wire")), dir.path(), false).unwrap();
    std::fs::write(dir.path().join("package.json"), r#"{"type":"module"}"#).unwrap();
    let test = Path::new(env!("CARGO_MANIFEST_DIR")).join("typescript/test/vectors.test.mjs");
    run_node(
        dir.path(),
        &["--test", test.to_str().unwrap()],
        &[
            ("STREAMPOD_MODULE", &dir.path().join("protocol.js")),
            ("STREAMPOD_VECTORS", &fixtures.join("wire-vectors.json")),
        ],
    );
}

/// The command-line generator writes the same TypeScript, and says what is wrong.
#[test]
fn the_command_line_writes_typescript_and_reports_errors() {
    let cli = env!("CARGO_BIN_EXE_streampod-codegen");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("protocol.ts");
    let status = Command::new(cli)
        .arg("typescript")
        .arg(example_models())
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        typescript_of(&example_models())
    );

    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("a.yaml"), "class: A\nfields:\n  x: Strin\n").unwrap();
    let output = Command::new(cli).arg("check").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did you mean 'String'"), "{stderr}");
    let usage = Command::new(cli).arg("nonsense").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}
