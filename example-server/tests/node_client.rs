//! The generated TypeScript client under Node against the example server's binary:
//! `tests/node/client.test.mjs` under `node --test` (chat, typed method calls and
//! exceptions, error frames, reconnecting after a restart). It loads the page's committed
//! build (`static/js/generated`), which `web_client.rs` keeps current, and the `ws`
//! package from `codegen/typescript` (`npm ci` there; Node 20 has no global WebSocket).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn the_typescript_client_chats_calls_and_reconnects_under_node() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let typescript = root.join("../codegen/typescript");
    assert!(
        typescript.join("node_modules/ws").exists(),
        "run `npm ci` in {} (tests/run-all.sh does)",
        typescript.display()
    );
    // The committed ES modules, where Node reads `.js` as a module.
    let client = tempfile::tempdir().unwrap();
    for file in ["protocol.js", "streampod.js"] {
        std::fs::copy(
            root.join("static/js/generated").join(file),
            client.path().join(file),
        )
        .unwrap();
    }
    std::fs::write(client.path().join("package.json"), r#"{"type":"module"}"#).unwrap();
    let database = format!("sqlite:{}", client.path().join("chat.db").display());

    let output = Command::new("node")
        .arg("--test")
        .arg(root.join("tests/node/client.test.mjs"))
        .env("STREAMPOD_CLIENT", client.path().join("protocol.js"))
        .env(
            "STREAMPOD_TYPESCRIPT_PACKAGE",
            typescript.join("package.json"),
        )
        .env(
            "STREAMPOD_EXAMPLE_SERVER",
            env!("CARGO_BIN_EXE_example-server"),
        )
        .env("STREAMPOD_DATABASE_URL", database)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
