// The generated TypeScript client (the page's committed build, static/js/generated) under
// Node against the example server's binary, run by example-server/tests/node_client.rs:
// chat between two clients, a method call answered with a typed exception, an error
// frame, and both clients coming back by themselves after the server restarts.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { createRequire } from "node:module";

const { WebSocket } = createRequire(process.env.STREAMPOD_TYPESCRIPT_PACKAGE)("ws");
const { Client, InvalidRequestError, MethodCallError } = await import(process.env.STREAMPOD_CLIENT);
const binary = process.env.STREAMPOD_EXAMPLE_SERVER;
const database = process.env.STREAMPOD_DATABASE_URL;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const port = await freePort();
const url = `http://127.0.0.1:${port}/`;
let server = null;

async function startServer() {
  server = spawn(binary, ["--bind", `127.0.0.1:${port}`, "--database-url", database, "--token", "ann-secret-key=1", "--log", "warn"], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  for (let i = 0; i < 300; i++) {
    if (server.exitCode !== null) throw new Error(`the example server exited with ${server.exitCode}`);
    try {
      if ((await fetch(`${url}health`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("the example server did not come up in 15 s");
}

async function stopServer() {
  const running = server;
  server = null;
  if (running === null || running.exitCode !== null) return;
  const exited = new Promise((resolve) => running.once("exit", resolve));
  running.kill("SIGTERM");
  await exited;
}

after(() => stopServer());

/** Resolves with the first value `register(listener)` hands a listener that `pick` accepts. */
function next(register, pick, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 15_000);
    const remove = register((...values) => {
      const picked = pick(...values);
      if (picked === undefined) return;
      clearTimeout(timer);
      remove();
      resolve(picked);
    });
  });
}

function chatFrom(client, content) {
  return next(
    (listener) => client.on("chat", listener),
    (message) => (message.className === "ChatMessage" && message.data.content === content ? message.data : undefined),
    `"${content}"`,
  );
}

function opened(client) {
  return client.state === "open" ? Promise.resolve() : next((l) => client.onState(l), (change) => (change.state === "open" ? true : undefined), "open");
}

function join(client, channelId) {
  const history = next(
    (listener) => client.on("chat", listener),
    (message) => (message.className === "ChatHistory" && message.data.channelId === channelId ? message.data : undefined),
    `the ChatHistory of ${channelId}`,
  );
  assert.equal(client.send("chat", { className: "ChannelSubscription", data: { channelId, subscribe: true, nickname: "n" } }), true);
  return history;
}

const clients = [];
// Closed whatever happens, so no reconnect timer keeps Node running after a failure.
after(() => clients.forEach((client) => client.close()));

test("chat, typed method calls, errors and a server restart", { timeout: 60_000 }, async () => {
  await startServer();
  const options = { url, WebSocket, backoffInitialMs: 50, backoffMaxMs: 500 };
  const ann = new Client({ ...options, authKey: "ann-secret-key" });
  const bob = new Client(options);
  clients.push(ann, bob);
  const states = [];
  bob.onState((change) => states.push(change.state));
  // Each re-joins the lobby whenever its socket opens again.
  for (const client of [ann, bob]) client.onOpen(() => void join(client, "lobby").catch(() => {}));
  ann.connect();
  bob.connect();
  await Promise.all([opened(ann), opened(bob)]);
  await Promise.all([join(ann, "lobby"), join(bob, "lobby")]);

  // Chat: ann's message reaches bob, typed (a Date, an id from the database), from user 1.
  const heard = chatFrom(bob, "hello from node");
  assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: "hello from node", channelId: "lobby" } }), true);
  const message = await heard;
  assert.ok(message.timestamp instanceof Date);
  assert.equal(typeof message.id, "number");
  assert.match(message.senderName, /user 1/);

  // Typed method calls: an answer, and a typed exception with its fields.
  const page = await bob.chat.history("lobby");
  assert.ok(page.messages.some((m) => m.content === "hello from node"));
  const members = await bob.chat.members("lobby");
  assert.equal(members.members.length, 2);
  await assert.rejects(bob.chat.history("lobby", null, 500), (error) => {
    assert.ok(error instanceof InvalidRequestError, String(error));
    assert.equal(error.data.field, "limit");
    return true;
  });
  // A login-only method without a key: a MethodCallError with the HTTP status.
  await assert.rejects(bob.notification.sendNotification(1, "hi"), (error) => {
    assert.ok(error instanceof MethodCallError, String(error));
    assert.equal(error.status, 401);
    return true;
  });

  // An error frame: a message to an endpoint that does not exist.
  const refused = next((l) => bob.onError(l), (error) => error, "an error frame");
  bob.send("nope", { className: "ChatMessage", data: { senderName: "b", content: "x", channelId: "lobby" } });
  const error = await refused;
  assert.equal(error.code, "unknown_endpoint");

  // The server restarts: both notice, reconnect by themselves and re-join; chat goes on.
  await stopServer();
  await next((l) => bob.onState(l), (change) => (change.state === "reconnecting" ? true : undefined), "bob to notice");
  assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: "lost", channelId: "lobby" } }), false, "nothing is sent while down");
  const rejoined = Promise.all([ann, bob].map((client) => next((l) => client.on("chat", l), (m) => (m.className === "ChatHistory" ? true : undefined), "a re-join")));
  await startServer();
  await rejoined;
  const again = chatFrom(bob, "back again");
  assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: "back again", channelId: "lobby" } }), true);
  await again;
  assert.ok(states.includes("reconnecting") && states.at(-1) === "open", states.join(" "));

  ann.close();
  bob.close();
});
