#!/usr/bin/env bash
# Runs the generator over Serverpod's own test-server models, with its test module, the
# legacy auth module and the shared test package as modules, and compiles what it
# generates: the figure in the streampod-codegen crate docs.
#
#   bash codegen/check-serverpod.sh <serverpod checkout>
#
# The checkout is Serverpod's repository (github.com/serverpod/serverpod) as a work
# tree; nothing of it is copied into this one. Prints the per-file report of the test
# server's models and ends with "compiled: N model files" when the generated Rust builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
serverpod="$(cd "${1:?usage: check-serverpod.sh <serverpod checkout>}" && pwd)"
tests="$serverpod/tests"
module="$tests/serverpod_test_module/serverpod_test_module_server/lib/src"
auth="$serverpod/modules/legacy/serverpod_auth/serverpod_auth_server/lib/src/models"
shared="$tests/serverpod_test_shared/lib/src/shared"
runtime="::streampod_protocol::__codegen"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

check() {
    cargo run -q --manifest-path "$root/Cargo.toml" -p streampod-codegen --example check_models -- \
        --runtime "$runtime" "$@" || true
}

for part in "module:$module" "auth:$auth" "serverpod_test_shared:$shared"; do
    check "${part#*:}" --out "$scratch/${part%%:*}.rs" | tail -1
done
check "$tests/serverpod_test_server/lib/src/models" \
    --module "module=$module" --module "auth=$auth" \
    --shared "serverpod_test_shared=$shared" --out "$scratch/app.rs"

mkdir -p "$scratch/crate/src"
cat > "$scratch/crate/Cargo.toml" <<EOF
[package]
name = "serverpod-models-check"
version = "0.0.0"
edition = "2021"

[dependencies]
streampod-protocol = { path = "$root/protocol" }

[workspace]
EOF
{
    echo '#![allow(warnings)]'
    for name in module auth serverpod_test_shared app; do
        echo "pub mod $name { include!(\"$scratch/$name.rs\"); }"
    done
} > "$scratch/crate/src/lib.rs"
CARGO_TARGET_DIR="$root/target/serverpod-check" cargo build -q --manifest-path "$scratch/crate/Cargo.toml"
echo "compiled: $(grep -c '^pub struct\|^pub enum' "$scratch/app.rs") types of the test server's models"
