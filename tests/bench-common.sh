# Sourced by the bench scripts: raises the open-file limit, builds the release binaries
# once, and stops every process a script records in PIDS, by PID, when it exits.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== building release binaries"
cargo build --release --quiet -p example-server -p streampod-tests --bins

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
