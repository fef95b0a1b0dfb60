// The generated TypeScript client (the page's committed build, static/js/generated) under
// Node against the example server's binary, run by example-server/tests/node_client.rs:
// chat between two clients, a method call answered with a typed exception, an error
// frame, both clients coming back by themselves after the server restarts, the
// streaming methods (`/v1/websocket`), a JSON Web Token refreshed before it expires, and
// the HTTP fallback where WebSockets are refused (and the move back once they pass), and
// a client moving to its alternate server when its server drains (SIGTERM), and the
// client's traceparent continued in the server's spans, exported over OTLP/HTTP.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { createRequire } from "node:module";
import { createHmac } from "node:crypto";

const { WebSocket } = createRequire(process.env.STREAMPOD_TYPESCRIPT_PACKAGE)("ws");
const { Client, InvalidRequestError, MethodCallError, StreamCallRefused } = await import(process.env.STREAMPOD_CLIENT);
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

/** The example binary on a free port, started and stopped (by its PID) by the test. */
class ExampleServer {
  constructor(port, extraArgs) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}/`;
    this.args = ["--bind", `127.0.0.1:${port}`, "--database-url", database, "--token", "ann-secret-key=1", "--log", "warn", ...extraArgs];
    this.process = null;
  }

  async start() {
    this.process = spawn(binary, this.args, { stdio: ["ignore", "inherit", "inherit"] });
    for (let i = 0; i < 300; i++) {
      if (this.process.exitCode !== null) throw new Error(`the example server exited with ${this.process.exitCode}`);
      try {
        if ((await fetch(`${this.url}health`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error("the example server did not come up in 15 s");
  }

  async stop() {
    const running = this.process;
    this.process = null;
    if (running === null || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGTERM");
    await exited;
  }
}

const servers = [];
const clients = [];
// Closed and stopped whatever happens, so no reconnect timer or server outlives a failure.
after(async () => {
  clients.forEach((client) => client.close());
  await Promise.all(servers.map((server) => server.stop()));
});

async function startServer(...extraArgs) {
  const server = new ExampleServer(await freePort(), extraArgs);
  servers.push(server);
  await server.start();
  return server;
}

function newClient(server, options = {}) {
  const client = new Client({ url: server.url, WebSocket, backoffInitialMs: 50, backoffMaxMs: 500, ...options });
  clients.push(client);
  return client;
}

/** Resolves with the first value `register(listener)` hands a listener that `pick` accepts. */
function next(register, pick, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 15_000);
    timer.unref();
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

test("chat, typed method calls, errors and a server restart", { timeout: 60_000 }, async () => {
  const server = await startServer();
  const ann = newClient(server, { authKey: "ann-secret-key" });
  const bob = newClient(server);
  const states = [];
  bob.onState((change) => states.push(change.state));
  // Each joins the lobby whenever its socket opens (again). One join each: the server
  // answers a second subscribe to a room the session is in with nothing.
  const firstJoins = [ann, bob].map((client) =>
    next(
      (listener) => client.on("chat", listener),
      (message) => (message.className === "ChatHistory" && message.data.channelId === "lobby" ? true : undefined),
      "the first join's ChatHistory",
    ),
  );
  for (const client of [ann, bob]) client.onOpen(() => void join(client, "lobby").catch(() => {}));
  ann.connect();
  bob.connect();
  await Promise.all([opened(ann), opened(bob)]);
  await Promise.all(firstJoins);

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
  // The member list names users: signed-in callers only (ann), with the count.
  const members = await ann.chat.members("lobby");
  assert.equal(members.members.length, 2);
  assert.equal(members.count, 2);
  await assert.rejects(bob.chat.members("lobby"), (error) => {
    assert.ok(error instanceof MethodCallError, String(error));
    assert.equal(error.status, 401);
    return true;
  });
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
  await server.stop();
  await next((l) => bob.onState(l), (change) => (change.state === "reconnecting" ? true : undefined), "bob to notice");
  assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: "lost", channelId: "lobby" } }), false, "nothing is sent while down");
  const rejoined = Promise.all([ann, bob].map((client) => next((l) => client.on("chat", l), (m) => (m.className === "ChatHistory" ? true : undefined), "a re-join")));
  await server.start();
  await rejoined;
  const again = chatFrom(bob, "back again");
  assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: "back again", channelId: "lobby" } }), true);
  await again;
  assert.ok(states.includes("reconnecting") && states.at(-1) === "open", states.join(" "));

  ann.close();
  bob.close();
});

test("streaming methods: a room's messages, a user's notifications, refusals and exceptions", { timeout: 60_000 }, async () => {
  const server = await startServer();
  const ann = newClient(server, { authKey: "ann-secret-key" });
  const bob = newClient(server);
  ann.connect();
  await opened(ann);
  await join(ann, "lobby");

  // bob follows the lobby through `chat.messages` only (no /websocket socket of his own).
  const room = await bob.chat.messages("lobby");
  assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: "streamed", channelId: "lobby" } }), true);
  const first = await room.next();
  assert.equal(first.value.content, "streamed");
  assert.ok(first.value.timestamp instanceof Date);

  // The method's typed exception ends the iteration.
  const nowhere = await bob.chat.messages("");
  await assert.rejects(nowhere.next(), (error) => {
    assert.ok(error instanceof InvalidRequestError, String(error));
    assert.equal(error.data.field, "channelId");
    return true;
  });

  // Login-only: refused with the open result without a key, opened with one.
  await assert.rejects(bob.notification.notifications(), (error) => {
    assert.ok(error instanceof StreamCallRefused, String(error));
    assert.equal(error.result, "authenticationFailed");
    return true;
  });
  const notes = await ann.notification.notifications();
  // Two listeners of user 1: ann's /websocket session and her notifications call.
  assert.equal(await ann.notification.sendNotification(1, "to myself"), 2);
  const note = await notes.next();
  assert.equal(note.value.text, "to myself");

  // Closing a call ends its iteration; the other goes on.
  room.close();
  assert.deepEqual(await room.next(), { value: undefined, done: true });
  assert.equal(await ann.notification.sendNotification(1, "again"), 2);
  assert.equal((await notes.next()).value.text, "again");
  ann.close();
  bob.close();
});

test("a client that loses its socket gets what it missed, once and in order (room history)", { timeout: 60_000 }, async () => {
  const server = await startServer("--room-history", "1000");
  const room = "recovery";
  const ann = newClient(server, { authKey: "ann-secret-key" });
  const bob = newClient(server);
  const heard = [];
  const joins = [];
  bob.on("chat", (message) => {
    if (message.className === "ChatMessage" && message.data.channelId === room) heard.push(message.data.content);
  });
  bob.onJoined((joined) => joins.push(joined));
  const joined = [ann, bob].map((client) => {
    const history = next((l) => client.on("chat", l), (m) => (m.className === "ChatHistory" ? true : undefined), "the first join");
    client.onOpen(() => void join(client, room).catch(() => {}));
    client.connect();
    return history;
  });
  await Promise.all(joined);
  assert.ok(joins.length > 0 && joins[0].position.epoch !== "", "the room keeps history");

  const say = (n) => assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: `r-${n}`, channelId: room } }), true);
  for (let n = 0; n < 10; n++) say(n);
  await next((l) => bob.on("chat", l), (m) => (m.className === "ChatMessage" && m.data.content === "r-9" ? true : undefined), "r-9");

  // Bob's TCP connection dies without a close handshake while ann goes on talking.
  bob.socket.terminate();
  for (let n = 10; n < 60; n++) say(n);
  await next((l) => bob.on("chat", l), (m) => (m.className === "ChatMessage" && m.data.content === "r-59" ? true : undefined), "r-59");
  const expected = Array.from({ length: 60 }, (_, n) => `r-${n}`);
  assert.deepEqual(heard, expected, "every message once, in order");
  assert.ok(joins.some((j) => j.recovering && j.recovered), JSON.stringify(joins));
});

test("a streaming call whose socket is lost goes on by itself: nothing missed, nothing twice (room history)", { timeout: 60_000 }, async () => {
  const server = await startServer("--room-history", "1000");
  const room = "resume";
  const ann = newClient(server, { authKey: "ann-secret-key" });
  const bob = newClient(server);
  ann.connect();
  await opened(ann);
  await join(ann, room);
  const say = (n) => assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: `s-${n}`, channelId: room } }), true);

  // bob follows the room through `chat.messages` only.
  const messages = await bob.chat.messages(room);
  const heard = [];
  const resumed = [];
  messages.onresume = (recovered) => resumed.push(recovered);
  const read = async (upTo) => {
    while (heard.length < upTo) {
      const { value, done } = await messages.next();
      assert.equal(done, false, "the call goes on");
      heard.push(value.content);
    }
  };
  for (let n = 0; n < 10; n++) say(n);
  await read(10);

  // Bob's streaming socket dies without a close handshake while ann goes on talking.
  bob.methodSocket.socket.terminate();
  for (let n = 10; n < 60; n++) say(n);
  await read(60);
  assert.deepEqual(heard, Array.from({ length: 60 }, (_, n) => `s-${n}`), "every message once, in order");
  assert.equal(messages.resumes, 1);
  assert.deepEqual(resumed, [true], "recovered");
  messages.close();
  ann.close();
  bob.close();
});

test("a new identity keeps no streaming call of the old one: calls that can resume are opened again with the new key", { timeout: 60_000 }, async () => {
  const server = await startServer("--room-history", "1000");
  const ann = newClient(server, { authKey: "ann-secret-key" });
  const poster = newClient(server);
  poster.connect();
  await opened(poster);
  await join(poster, "switch");
  const notes = await ann.notification.notifications();
  const room = await ann.chat.messages("switch");
  assert.equal(poster.send("chat", { className: "ChatMessage", data: { senderName: "p", content: "before", channelId: "switch" } }), true);
  assert.equal((await room.next()).value.content, "before");

  // Ann signs out: her notifications (signed-in only, no positions) end; the room's
  // call is opened again, anonymously, from where it was.
  ann.setAuthKey(null);
  await assert.rejects(notes.next(), (error) => error.lost === true);
  assert.equal(poster.send("chat", { className: "ChatMessage", data: { senderName: "p", content: "after", channelId: "switch" } }), true);
  assert.equal((await room.next()).value.content, "after");
  assert.equal(room.resumes, 1);
  room.close();
  ann.close();
  poster.close();
});

const JWT_SECRET = "a secret of the node test, at least thirty-two bytes long";

/** An HS256 JSON Web Token of `claims`, signed with JWT_SECRET. */
function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", JWT_SECRET).update(body).digest("base64url")}`;
}

const now = () => Math.floor(Date.now() / 1000);

test("a token about to expire is refreshed through onAuthExpiring: the session and its streaming calls go on past the old expiry", { timeout: 60_000 }, async () => {
  const server = await startServer("--jwt-secret", JWT_SECRET);
  const lapsing = () => jwt({ sub: "1", iat: now(), exp: now() + 3 });
  // Ann's app hands a fresh token once her calls are open; Bob's never does.
  let callsOpen;
  const open = new Promise((resolve) => (callsOpen = resolve));
  let asked = 0;
  const ann = newClient(server, {
    authKey: lapsing(),
    onAuthExpiring: async () => {
      asked += 1;
      await open;
      return jwt({ sub: "1", iat: now(), exp: now() + 600 });
    },
  });
  const bob = newClient(server, { authKey: lapsing() });
  const errors = { ann: [], bob: [] };
  ann.onError((error) => errors.ann.push(error.code));
  bob.onError((error) => errors.bob.push(error.code));
  ann.connect();
  bob.connect();
  await opened(ann);
  await opened(bob);
  await join(ann, "fresh");
  // Streaming calls opened with the lapsing token: each lasts as long as its key.
  const annRoom = await ann.chat.messages("fresh");
  const bobRoom = await bob.chat.messages("fresh");
  callsOpen();
  await new Promise((resolve) => setTimeout(resolve, 4_500));

  assert.equal(asked, 1, "asked once, at the notice");
  assert.deepEqual(errors.ann, ["auth_expiring"], "refreshed: never signed out");
  assert.ok(errors.bob.includes("auth_expired"), `not refreshed: signed out (${errors.bob})`);
  await assert.rejects(bobRoom.next(), (error) => error.lost === false, "Bob's call ended with his key");
  // Ann is still in the room on both sockets.
  const back = chatFrom(ann, "after the old expiry");
  assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "a", content: "after the old expiry", channelId: "fresh" } }), true);
  await back;
  assert.equal((await annRoom.next()).value.content, "after the old expiry");
  annRoom.close();
  ann.close();
  bob.close();
});

test("a client whose WebSockets are refused goes over the HTTP fallback and moves back once they pass, losing nothing (room history)", { timeout: 60_000 }, async () => {
  const server = await startServer("--room-history", "1000");
  const room = "fallback";
  // A network that refuses upgrades until `open` is set: the socket closes (1006) unopened.
  const gate = { open: false };
  function GatedWebSocket(url, protocols) {
    if (gate.open) return new WebSocket(url, protocols);
    const refused = { readyState: 0, protocol: "", onopen: null, onmessage: null, onclose: null, onerror: null, send() {}, close() {} };
    setTimeout(() => {
      refused.readyState = 3;
      refused.onerror?.({});
      refused.onclose?.({ code: 1006, reason: "" });
    }, 5);
    return refused;
  }
  const ann = newClient(server, { authKey: "ann-secret-key" });
  const bob = newClient(server, { WebSocket: GatedWebSocket, webSocketRetryMs: 500 });
  const transports = [];
  bob.onState((change) => {
    if (change.state === "open") transports.push(change.transport);
  });
  const heard = [];
  bob.on("chat", (message) => {
    if (message.className === "ChatMessage" && message.data.channelId === room) heard.push(message.data.content);
  });
  const joined = [ann, bob].map((client) => {
    const history = next((l) => client.on("chat", l), (m) => (m.className === "ChatHistory" ? true : undefined), "the first join");
    client.onOpen(() => void join(client, room).catch(() => {}));
    client.connect();
    return history;
  });
  await Promise.all(joined);
  assert.deepEqual(transports, ["events"], "the first session goes over the fallback");

  const say = (n) => assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: `f-${n}`, channelId: room } }), true);
  for (let n = 0; n < 10; n++) say(n);
  await next((l) => bob.on("chat", l), (m) => (m.className === "ChatMessage" && m.data.content === "f-9" ? true : undefined), "f-9");
  // Bob is heard too: his frames go up as POSTs.
  assert.equal(bob.send("chat", { className: "ChatMessage", data: { senderName: "bob", content: "bob over http", channelId: room } }), true);
  await chatFrom(ann, "bob over http");

  // The network lets WebSockets through again: within the retry interval the client
  // moves to one, and what was said around the move arrives once, in order.
  gate.open = true;
  const moved = next((l) => bob.onState(l), (change) => (change.state === "open" && change.transport === "websocket" ? true : undefined), "the move to a WebSocket");
  for (let n = 10; n < 20; n++) say(n);
  await moved;
  for (let n = 20; n < 30; n++) say(n);
  await next((l) => bob.on("chat", l), (m) => (m.className === "ChatMessage" && m.data.content === "f-29" ? true : undefined), "f-29");
  const expected = Array.from({ length: 30 }, (_, n) => `f-${n}`);
  assert.deepEqual(heard.filter((content) => content.startsWith("f-")), expected, "every message once, in order");
  assert.deepEqual(transports, ["events", "websocket"]);
});

test("a client given two servers moves to the other when its server drains on SIGTERM", { timeout: 60_000 }, async () => {
  const draining = await startServer("--drain-seconds", "1");
  const other = await startServer();
  const room = "drain";
  const ann = newClient(draining, { alternateUrls: [other.url] });
  const bob = newClient(other);
  const closes = [];
  ann.onState((change) => {
    if (change.state === "reconnecting" && change.reason !== undefined) closes.push(change.reason);
  });
  for (const client of [ann, bob]) {
    client.onOpen(() => void join(client, room).catch(() => {}));
    const first = next((l) => client.on("chat", l), (m) => (m.className === "ChatHistory" ? true : undefined), "the first join");
    client.connect();
    await first;
  }
  // Ann's server drains: /health says so at once, then her socket is closed with 1012
  // and she comes back on the other server, where bob hears her.
  const rejoined = next((l) => ann.on("chat", l), (m) => (m.className === "ChatHistory" ? true : undefined), "the join on the other server");
  draining.process.kill("SIGTERM");
  for (let i = 0; i < 100; i++) {
    const health = await fetch(`${draining.url}health`).catch(() => null);
    if (health !== null && health.status === 503) {
      assert.equal((await health.json()).status, "draining");
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await rejoined;
  assert.ok(closes.some((reason) => reason.startsWith("1012")), JSON.stringify(closes));
  const heard = chatFrom(bob, "ann after the move");
  assert.equal(ann.send("chat", { className: "ChatMessage", data: { senderName: "ann", content: "ann after the move", channelId: room } }), true);
  await heard;
});

test("a client's traceparent goes on in the server's spans, which the server exports over OTLP/HTTP", { timeout: 60_000 }, async () => {
  // A collector: every POST's path, content type and body.
  const exports = [];
  const collector = createHttpServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      exports.push({ path: request.url, type: request.headers["content-type"], body: Buffer.concat(chunks) });
      response.writeHead(200, { "content-type": "application/x-protobuf" });
      response.end();
    });
  });
  await new Promise((resolve) => collector.listen(0, "127.0.0.1", resolve));
  after(() => collector.close());
  const server = await startServer("--otlp-endpoint", `http://127.0.0.1:${collector.address().port}`);

  const messageTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const callTrace = "0af7651916cd43dd8448eb211c80319c";
  const streamTrace = "5cf92f3577b34da6a3ce929d0e0e4799";
  let traceparent = `00-${messageTrace}-00f067aa0ba902b7-01`;
  const client = newClient(server, { traceparent: () => traceparent });
  client.connect();
  await opened(client);
  await join(client, "traced");
  traceparent = `00-${callTrace}-b7ad6b7169203331-01`;
  await client.chat.history("traced");
  traceparent = `00-${streamTrace}-00f067aa0ba902b8-01`;
  const room = await client.chat.messages("traced");
  room.close();
  traceparent = null;

  // The server sends what is left when it stops.
  await server.stop();
  const traces = exports.filter((e) => e.path === "/v1/traces");
  assert.ok(traces.length > 0, "nothing exported");
  assert.ok(traces.every((e) => e.type === "application/x-protobuf"));
  const all = Buffer.concat(traces.map((e) => e.body));
  // Trace ids travel as their 16 bytes.
  assert.ok(all.includes(Buffer.from(messageTrace, "hex")), "the message's trace is not in the server's spans");
  assert.ok(all.includes(Buffer.from(callTrace, "hex")), "the call's trace is not in the server's spans");
  assert.ok(all.includes(Buffer.from(streamTrace, "hex")), "the streaming call's trace is not in the server's spans");
  assert.ok(all.includes(Buffer.from("streampod-example")), "no service name");
});
