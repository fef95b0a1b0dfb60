// The TypeScript side of the wire vectors (codegen/tests/fixtures/wire-vectors.json),
// run with `node --test` by codegen/tests/typescript.rs on the module generated from
// codegen/tests/fixtures/wire: every input decodes and encodes exactly to its canonical
// JSON, or is refused. tests/tests/wire_vectors.rs holds the Rust models to the same file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const { decodeProtocol, encodeProtocol } = await import(process.env.STREAMPOD_MODULE);
const { vectors } = JSON.parse(readFileSync(process.env.STREAMPOD_VECTORS, "utf8"));

test("the vector file has every vector", () => {
  assert.ok(vectors.length >= 7);
});

for (const vector of vectors) {
  test(vector.name, () => {
    if (vector.rejects) {
      assert.throws(() => decodeProtocol(vector.className, vector.input));
      return;
    }
    const decoded = decodeProtocol(vector.className, vector.input);
    assert.equal(decoded.className, vector.className);
    const encoded = encodeProtocol(decoded);
    // Through JSON text, as it goes on the wire.
    assert.deepEqual(JSON.parse(JSON.stringify(encoded.data)), vector.canonical);
  });
}

test("decoded values have their TypeScript types", () => {
  const { data } = decodeProtocol("WireSample", vectors[0].input);
  assert.ok(data.at instanceof Date);
  assert.equal(data.at.getTime(), Date.UTC(2026, 11, 3, 7, 52, 8, 123));
  assert.equal(typeof data.big, "bigint");
  assert.equal(data.big, -123456789012345678901234567890n);
  assert.deepEqual([...data.blob], [0, 1, 2, 255]);
  assert.ok(data.unique instanceof Set);
  assert.ok(data.byId instanceof Map);
  assert.equal(data.byId.get(1), "one");
  assert.equal(data.renamed, "by its json key");
  assert.equal(data.child.label, "kid");
});

test("a changed Date drops the microseconds it was decoded with", () => {
  const decoded = decodeProtocol("WireSample", vectors[0].input);
  decoded.data.at.setTime(decoded.data.at.getTime() + 1);
  assert.equal(encodeProtocol(decoded).data.at, "2026-12-03T07:52:08.124Z");
});
