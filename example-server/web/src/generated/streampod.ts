// The streampod client runtime, shipped by streampod-codegen beside the generated models:
// do not edit (regenerate instead). No dependencies; browsers and Node >= 20 (pass the
// `ws` package's WebSocket where the global one is missing).

/** A model of the generated protocol, as `decodeProtocol` returns it. */
export interface ProtocolValue {
  readonly className: string;
  readonly data: unknown;
}

/** What the runtime needs from the generated module. */
export interface ProtocolCodec<P extends ProtocolValue> {
  /** Decodes `{"className": …, "data": …}`; throws on an unknown class or bad data. */
  decode(className: string, data: unknown): P;
  /** Encodes a value as `{"className": …, "data": …}`. */
  encode(value: P): { className: string; data: { [key: string]: unknown } };
  /** The generated `Error` subclass of an exception, or `undefined` for other classes. */
  exception(className: string, data: unknown): Error | undefined;
}

/** The part of a WebSocket the client uses: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((this: never, event: never) => unknown) | null;
  onmessage: ((this: never, event: never) => unknown) | null;
  onclose: ((this: never, event: never) => unknown) | null;
  onerror: ((this: never, event: never) => unknown) | null;
}

/** A WebSocket constructor (`WebSocket`, or `import { WebSocket } from "ws"`). */
export type WebSocketConstructor = new (url: string, protocols?: string) => WebSocketLike;

/** The codes of streampod's error frames. */
export type StreamErrorCode =
  | "invalid_json"
  | "invalid_frame"
  | "unknown_command"
  | "unknown_endpoint"
  | "unknown_class"
  | "invalid_data"
  | "unauthenticated"
  | "forbidden"
  | "binary_not_supported"
  | "internal"
  | "rate_limited"
  | "auth_expiring"
  | "auth_expired"
  | "auth_revoked";

/** An error frame from the server: a frame of this client was refused. */
export class StreamError extends Error {
  constructor(
    readonly code: StreamErrorCode | string,
    message: string,
    readonly endpoint: string | undefined,
  ) {
    super(message);
    this.name = "StreamError";
  }
}

/** A method call that failed without a typed exception: HTTP status and the server's message. */
export class MethodCallError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "MethodCallError";
  }
}

/** Where the connection is. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/**
 * What carries the session: a WebSocket, or the HTTP fallback (`events`: Server-Sent
 * Events from the server, POSTs to it) where WebSockets do not pass.
 */
export type Transport = "websocket" | "events";

/** A change of connection state; `retryInMs` is set while reconnecting. */
export interface StateChange {
  readonly state: ConnectionState;
  /** Reconnection attempts since the socket was last open. */
  readonly attempt: number;
  readonly retryInMs?: number;
  /** Why the socket closed, when it did. */
  readonly reason?: string;
  /** What carries the session, once open. */
  readonly transport?: Transport;
}

/** Where a message of a history channel sits in its channel. */
export interface Position {
  readonly epoch: string;
  readonly offset: number;
}

/** The server joined this client to a history channel (see `recovered`). */
export interface Joined {
  readonly endpoint: string;
  readonly channel: string;
  readonly position: Position;
  /** The client asked to recover this channel (it had a position). */
  readonly recovering: boolean;
  /** Every message after the client's position follows; false: some are gone, reload. */
  readonly recovered: boolean;
  readonly replayed: number;
}

/** Where a received message came from. */
export interface MessageContext {
  readonly endpoint: string;
  /** The history channel and offset, for channels that keep history. */
  readonly channel?: string;
  readonly offset?: number;
}

/** How a client connects; only `url` is required. */
export interface ClientOptions {
  /** The server's base URL (`http://localhost:8080/`); the socket is `<url>websocket`. */
  readonly url: string;
  /** The key sent in the `auth` command (and as `Authorization` on method calls). */
  readonly authKey?: string | null;
  /** The WebSocket constructor; defaults to the global one. */
  readonly WebSocket?: WebSocketConstructor;
  /** `fetch` for method calls; defaults to the global one. */
  readonly fetch?: typeof fetch;
  /** A ping goes out this often (default 20 000 ms, as Serverpod's clients). */
  readonly keepaliveMs?: number;
  /** A socket silent this long is closed and reconnected (default 40 000 ms). */
  readonly deadAfterMs?: number;
  /** The first reconnect waits up to this long (default 250 ms), doubling per attempt… */
  readonly backoffInitialMs?: number;
  /** …up to this (default 10 000 ms); each wait is random in [0, limit] (full jitter). */
  readonly backoffMaxMs?: number;
  /** Positions kept for recovery, least recently heard dropped first (default 128). */
  readonly maxRecoveredChannels?: number;
  /**
   * Called when the server says the key expires within a minute (`auth_expiring`):
   * return a fresh key of the same user (a refreshed token) and it is sent at once with
   * `refreshAuthKey`, keeping every stream and streaming call; return `null` to let the
   * key lapse (the session is then signed out, its calls end).
   */
  readonly onAuthExpiring?: () => Promise<string | null> | string | null;
  /**
   * Where a WebSocket cannot open, or dies as soon as it opens (a proxy that refuses or
   * kills upgrades), carry the session over HTTP instead: Server-Sent Events from
   * `<url>websocket/events`, POSTs to it (default true). Everything else stays the same:
   * sign-in, recovery, keepalive. WebSockets are tried again every `webSocketRetryMs`.
   */
  readonly fallback?: boolean;
  /** While on the HTTP fallback, a WebSocket is tried this often (default 60 000 ms). */
  readonly webSocketRetryMs?: number;
  /**
   * Other addresses of the same service (the servers of a cluster), taken in turn: when
   * connecting fails, or a server closes the socket because it drains for a restart
   * (1012) or goes away (1001), the client reconnects to the next one, and method calls
   * follow it. History channels lose nothing across the move (recovery).
   */
  readonly alternateUrls?: readonly string[];
  /**
   * The caller's W3C `traceparent` (`00-<trace id>-<span id>-<flags>`, e.g. from your
   * OpenTelemetry setup's propagator), asked for each message sent, each method call
   * and each streaming-method call opened: it goes with them (a `"traceparent"` key, a
   * `traceparent` header), so the server's spans continue the caller's trace. Return
   * `null` to send none.
   */
  readonly traceparent?: () => string | null | undefined;
}

type Listener<T> = (value: T) => void;

/** Listeners by key; `add` returns the function that removes the listener. */
class Listeners<T> {
  private readonly all = new Set<Listener<T>>();

  add(listener: Listener<T>): () => void {
    this.all.add(listener);
    return () => this.all.delete(listener);
  }

  emit(value: T): void {
    for (const listener of [...this.all]) listener(value);
  }
}

const OPEN = 1;
const CLOSED = 3;

/** A WebSocket that opened and closed within this long is taken for a blocked one. */
const DIED_AT_ONCE_MS = 3_000;

/** Calls a `WebSocketLike` handler (typed to take anything) with `event`. */
function fire(handler: ((this: never, event: never) => unknown) | null, event: unknown): void {
  if (handler !== null) (handler as unknown as (event: unknown) => unknown)(event);
}

/**
 * The HTTP fallback, as a `WebSocketLike`: the session's frames arrive as Server-Sent
 * Events on one `fetch` of `<base>websocket/events` (read as a stream, so it works in
 * Node too); the client's frames go out as POSTs of JSON arrays to the session's URL,
 * one POST at a time so they arrive in order. Nothing reconnects here: a lost stream
 * closes it like a lost socket, and the client reconnects (and recovers) as usual.
 */
class EventStreamSocket implements WebSocketLike {
  readyState = 0;
  readonly protocol = "streampod.v1";
  onopen: ((this: never, event: never) => unknown) | null = null;
  onmessage: ((this: never, event: never) => unknown) | null = null;
  onclose: ((this: never, event: never) => unknown) | null = null;
  onerror: ((this: never, event: never) => unknown) | null = null;
  private postUrl = "";
  private readonly outbox: string[] = [];
  private posting = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly base: string,
    private readonly fetchFn: typeof fetch,
  ) {
    void this.read();
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error("the event stream is not open");
    this.outbox.push(data);
    void this.flush();
  }

  close(code = 1000, reason = ""): void {
    this.finish(code, reason);
  }

  private async read(): Promise<void> {
    // Called unbound: the browser's `fetch` refuses any `this` but the window.
    const fetchFn = this.fetchFn;
    let response: Response;
    try {
      response = await fetchFn(new URL("websocket/events", this.base).toString(), {
        headers: { accept: "text/event-stream" },
        cache: "no-store",
        signal: this.abort.signal,
      });
    } catch (error) {
      this.finish(1006, `the event stream could not open: ${String(error)}`);
      return;
    }
    if (!response.ok || response.body === null) {
      this.finish(1006, `the event stream answered ${response.status}`);
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += value;
        for (let end = pending.indexOf("\n\n"); end >= 0; end = pending.indexOf("\n\n")) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          this.event(block);
          if (this.readyState === CLOSED) return;
        }
      }
    } catch {
      // Cut: closed below.
    }
    this.finish(1006, "the event stream ended");
  }

  /** One event: `session` opens, `close` closes, anything else is a frame. */
  private event(block: string): void {
    let name = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
    }
    // Comments (`: ping`) keep proxies from timing the stream out; nothing to do.
    if (data.length === 0) return;
    const text = data.join("\n");
    if (name === "session") {
      const session: unknown = JSON.parse(text);
      const token = isObject(session) && typeof session["session"] === "string" ? session["session"] : "";
      this.postUrl = new URL(`websocket/events/${token}`, this.base).toString();
      this.readyState = OPEN;
      fire(this.onopen, {});
    } else if (name === "close") {
      const close: unknown = JSON.parse(text);
      const code = isObject(close) && typeof close["code"] === "number" ? close["code"] : 1005;
      const reason = isObject(close) && typeof close["reason"] === "string" ? close["reason"] : "";
      this.finish(code, reason);
    } else if (this.readyState === OPEN) {
      fire(this.onmessage, { data: text });
    }
  }

  /** Sends what is waiting, one POST at a time. */
  private async flush(): Promise<void> {
    if (this.posting) return;
    this.posting = true;
    const fetchFn = this.fetchFn;
    while (this.outbox.length > 0 && this.readyState === OPEN) {
      const batch = this.outbox.splice(0);
      try {
        const response = await fetchFn(this.postUrl, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: `[${batch.join(",")}]`,
        });
        if (!response.ok) this.finish(1006, `sending answered ${response.status}`);
      } catch (error) {
        this.finish(1006, `sending failed: ${String(error)}`);
      }
    }
    this.posting = false;
  }

  private finish(code: number, reason: string): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.outbox.length = 0;
    this.abort.abort();
    fire(this.onclose, { code, reason });
  }
}

/**
 * One WebSocket to a streampod server under the `streampod.v1` subprotocol, reconnected
 * with jittered exponential backoff, plus method calls over `fetch`.
 *
 * Sends are honest: `send` returns `false` when the socket is not open, and nothing is
 * queued behind the caller's back. After every reconnect the client first signs in
 * again, then asks to recover the channels it has positions for, then calls the `open`
 * listeners (where an app re-joins its channels); messages already seen are dropped.
 */
export class StreampodClient<P extends ProtocolValue> {
  private socket: WebSocketLike | null = null;
  /** Which of `url` and `alternateUrls` is in use. */
  private urlIndex = 0;
  /** What the next (re)connection uses. */
  private transport: Transport = "websocket";
  /** While on the fallback: the timer of the next WebSocket try. */
  private probeTimer: ReturnType<typeof setTimeout> | null = null;
  private methodSocket: MethodSocket | null = null;
  private stateNow: ConnectionState = "closed";
  private attempt = 0;
  private stopped = true;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private keepaliveTimer: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private authKey: string | null;
  private readonly positions = new Map<string, Position>();
  private readonly messageListeners = new Map<string, Listeners<[P, MessageContext]>>();
  private readonly anyMessage = new Listeners<[P, MessageContext]>();
  private readonly errors = new Listeners<StreamError>();
  private readonly states = new Listeners<StateChange>();
  private readonly opens = new Listeners<void>();
  private readonly joins = new Listeners<Joined>();

  constructor(
    private readonly protocol: ProtocolCodec<P>,
    private readonly options: ClientOptions,
  ) {
    this.authKey = options.authKey ?? null;
  }

  /** The connection's state now. */
  get state(): ConnectionState {
    return this.stateNow;
  }

  /** Opens the socket (and keeps reopening it until `close`). */
  connect(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  /** Closes the socket (and the streaming-method socket, ending its calls) for good. */
  close(): void {
    this.methodSocket?.close();
    this.methodSocket = null;
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.stopProbe();
    this.stopKeepalive();
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, "client closed");
    this.setState({ state: "closed", attempt: this.attempt });
  }

  /** Sends `message` to `endpoint`; `false` (nothing sent) when the socket is not open. */
  send(endpoint: string, message: P): boolean {
    const traceparent = this.options.traceparent?.();
    const frame: { [key: string]: unknown } = { endpoint, object: this.protocol.encode(message) };
    if (traceparent) frame["traceparent"] = traceparent;
    return this.sendFrame(frame);
  }

  /** Changes the key: sent at once when open, and on every reconnect (`null` signs out). */
  setAuthKey(key: string | null): void {
    this.authKey = key;
    this.sendFrame({ command: "auth", args: { key } });
    // Streaming calls were authorized with the old key: none keeps its identity. Their
    // socket goes; calls that can resume open again with the new key (and end if it
    // may not open them), the others end as lost.
    const calls = this.methodSocket;
    this.methodSocket = null;
    calls?.drop("identity changed");
  }

  /**
   * A fresh key of the same user (a refreshed token), sent at once on both sockets: the
   * session's streams stay (the `auth` command) and so do the streaming calls of that
   * user (streampod's `msa` frame), which then last as long as the new key. To change who
   * is signed in, use `setAuthKey`.
   */
  refreshAuthKey(key: string): void {
    this.authKey = key;
    this.sendFrame({ command: "auth", args: { key } });
    this.methodSocket?.send("msa", { auth: `Bearer ${key}` });
  }

  /** Calls `listener` with every message from `endpoint`. */
  on(endpoint: string, listener: (message: P, context: MessageContext) => void): () => void {
    let listeners = this.messageListeners.get(endpoint);
    if (listeners === undefined) {
      listeners = new Listeners();
      this.messageListeners.set(endpoint, listeners);
    }
    return listeners.add(([message, context]) => listener(message, context));
  }

  /** Calls `listener` with every message from any endpoint. */
  onMessage(listener: (message: P, context: MessageContext) => void): () => void {
    return this.anyMessage.add(([message, context]) => listener(message, context));
  }

  /** Calls `listener` with each error frame (and frames this client could not decode). */
  onError(listener: (error: StreamError) => void): () => void {
    return this.errors.add(listener);
  }

  /** Calls `listener` on every change of connection state. */
  onState(listener: (change: StateChange) => void): () => void {
    return this.states.add(listener);
  }

  /** Calls `listener` each time the socket opens, after auth and recover went out. */
  onOpen(listener: () => void): () => void {
    return this.opens.add(listener);
  }

  /** Calls `listener` with each `joined` frame of a history channel. */
  onJoined(listener: (joined: Joined) => void): () => void {
    return this.joins.add(listener);
  }

  /** The last position heard on `channel`, if it keeps history. */
  position(channel: string): Position | undefined {
    return this.positions.get(channel);
  }

  /**
   * Calls `POST <url><endpoint>/<method>` with named, already encoded arguments; the
   * answer's JSON. A typed exception is thrown as its generated `Error` subclass,
   * anything else as a `MethodCallError`.
   */
  async call(endpoint: string, method: string, args: { [name: string]: unknown }): Promise<unknown> {
    const fetchFn = this.options.fetch ?? globalThis.fetch;
    const headers: { [name: string]: string } = { "content-type": "application/json" };
    if (this.authKey !== null && this.authKey !== "") headers["authorization"] = `Bearer ${this.authKey}`;
    const traceparent = this.options.traceparent?.();
    if (traceparent) headers["traceparent"] = traceparent;
    const url = new URL(`${endpoint}/${method}`, baseUrl(this.url())).toString();
    let response: Response;
    try {
      response = await fetchFn(url, { method: "POST", headers, body: JSON.stringify(args) });
    } catch (error) {
      throw new MethodCallError(0, "unreachable", `${endpoint}.${method}: ${String(error)}`);
    }
    const text = await response.text();
    let body: unknown = null;
    try {
      body = text === "" ? null : JSON.parse(text);
    } catch {
      throw new MethodCallError(response.status, "invalid_json", `${endpoint}.${method}: the answer is not JSON`);
    }
    if (response.ok) return body;
    if (isObject(body) && typeof body["className"] === "string") {
      const exception = this.protocol.exception(body["className"], body["data"]);
      if (exception !== undefined) throw exception;
    }
    const error = isObject(body) && isObject(body["error"]) ? body["error"] : {};
    const code = typeof error["code"] === "string" ? error["code"] : `http_${response.status}`;
    const message = typeof error["message"] === "string" ? error["message"] : `${endpoint}.${method} answered ${response.status}`;
    throw new MethodCallError(response.status, code, message);
  }

  /**
   * Opens the streaming method `endpoint.method` (Serverpod 2.1+, on `<url>v1/websocket`,
   * one socket shared by every call, opened with the first) with named, already encoded
   * arguments; `inputs` encodes each input stream's values, `decode` the answers.
   * Resolves once the server opened the call; rejects with `StreamCallRefused` (its
   * `result` says why) or `StreamCallLost`.
   */
  openStream<T, I extends { [name: string]: (value: never) => WrappedValue }>(
    endpoint: string,
    method: string,
    args: { [name: string]: unknown },
    inputs: I,
    decode: (data: unknown) => T,
  ): Promise<MethodStreamCall<T, { [K in keyof I]: InputSink<Parameters<I[K]>[0]> }>> {
    // Each open (and reopen) is authorized with the key the client has then.
    const authentication = (): string | null => (this.authKey !== null && this.authKey !== "" ? `Bearer ${this.authKey}` : null);
    const reopen = async (call: MethodStreamCall<T, { [K in keyof I]: InputSink<Parameters<I[K]>[0]> }>, after: Position): Promise<void> => {
      try {
        await this.streamingSocket().reopen(call, args, after, authentication());
      } catch (error) {
        // The server is gone or refuses sockets (draining): the next address, if any.
        if (!(error instanceof StreamCallRefused)) this.nextUrl();
        throw error;
      }
    };
    return this.streamingSocket().open(endpoint, method, args, inputs, decode, authentication(), reopen);
  }

  /** The streaming-method socket, opened again if it was lost. */
  private streamingSocket(): MethodSocket {
    if (this.methodSocket === null || this.methodSocket.lost) {
      this.methodSocket = new MethodSocket(this.protocol, { ...this.options, url: this.url() }, socketConstructor(this.options));
    }
    return this.methodSocket;
  }

  private open(): void {
    const transport = this.options.fallback === false ? "websocket" : this.transport;
    this.setState({ state: this.attempt === 0 ? "connecting" : "reconnecting", attempt: this.attempt });
    const socket: WebSocketLike =
      transport === "events"
        ? new EventStreamSocket(baseUrl(this.url()), this.options.fetch ?? globalThis.fetch)
        : new (socketConstructor(this.options))(socketUrl(this.url(), "websocket"), "streampod.v1");
    this.socket = socket;
    let openedAt = 0;
    let heard = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      openedAt = Date.now();
      this.attempt = 0;
      this.lastHeard = Date.now();
      // The key first, so what follows happens under the signed-in identity; the key
      // never goes in the URL (URLs end up in logs).
      if (this.authKey !== null) this.sendFrame({ command: "auth", args: { key: this.authKey } });
      if (this.positions.size > 0) {
        const channels: { [channel: string]: Position } = {};
        for (const [channel, position] of this.positions) channels[channel] = position;
        this.sendFrame({ command: "recover", args: { channels } });
      }
      this.startKeepalive();
      if (transport === "events") this.scheduleProbe();
      this.setState({ state: "open", attempt: 0, transport });
      this.opens.emit();
    };
    socket.onmessage = (event: never) => {
      if (this.socket !== socket) return;
      this.lastHeard = Date.now();
      heard = true;
      const data: unknown = (event as { data: unknown }).data;
      if (typeof data === "string") this.receive(data);
    };
    socket.onclose = (event: never) => {
      if (this.socket !== socket) return;
      const { code, reason } = event as { code?: number; reason?: string };
      this.socket = null;
      this.stopKeepalive();
      this.stopProbe();
      const why = reason !== undefined && reason !== "" ? `${code ?? ""} ${reason}` : `closed (${code ?? "no code"})`;
      // Never opened, or cut without a close frame as soon as it did, before a frame
      // came: a proxy that refuses or kills upgrades (or a server that is down).
      const diedAtOnce = openedAt === 0 || (code === 1006 && !heard && Date.now() - openedAt < DIED_AT_ONCE_MS);
      if (transport === "websocket" && diedAtOnce && this.options.fallback !== false) {
        // The HTTP fallback says which, at once.
        this.transport = "events";
        this.reconnectNow(why);
        return;
      }
      // The fallback did not open either: the next round starts with a WebSocket, on
      // the next address if there are several.
      if (openedAt === 0) {
        this.transport = "websocket";
        this.nextUrl();
      }
      // Draining for a restart, or going away: another server takes over, at once.
      if ((code === 1012 || code === 1001) && this.nextUrl()) {
        this.reconnectNow(why);
        return;
      }
      this.retry(why);
    };
    socket.onerror = () => {
      // A close event follows; reconnecting starts there.
    };
  }

  /** While on the fallback: tries a WebSocket in `webSocketRetryMs`, and moves to it if it opens. */
  private scheduleProbe(): void {
    this.stopProbe();
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      const current = this.socket;
      if (current === null || this.stopped) return;
      let probe: WebSocketLike;
      try {
        probe = new (socketConstructor(this.options))(socketUrl(this.url(), "websocket"), "streampod.v1");
      } catch {
        this.scheduleProbe();
        return;
      }
      let opened = false;
      probe.onopen = () => {
        opened = true;
        probe.close(1000, "probe");
        if (this.socket !== current) return;
        // WebSockets pass again: move over (recovery fills the gap, as after a cut).
        this.transport = "websocket";
        this.socket = null;
        this.stopKeepalive();
        current.close(1000, "moving to a WebSocket");
        this.reconnectNow("moving to a WebSocket");
      };
      probe.onclose = () => {
        if (!opened && this.socket === current) this.scheduleProbe();
      };
      probe.onerror = () => {};
    }, this.options.webSocketRetryMs ?? 60_000);
  }

  /** The address in use: `url`, or one of `alternateUrls`. */
  private url(): string {
    const urls = [this.options.url, ...(this.options.alternateUrls ?? [])];
    return urls[this.urlIndex % urls.length] ?? this.options.url;
  }

  /** Moves to the next address; false when there is only one. */
  private nextUrl(): boolean {
    if ((this.options.alternateUrls ?? []).length === 0) return false;
    this.urlIndex += 1;
    return true;
  }

  /** Reconnects without waiting (another transport or server, not another try of the same). */
  private reconnectNow(reason: string): void {
    if (this.stopped) return;
    this.setState({ state: "reconnecting", attempt: this.attempt, retryInMs: 0, reason });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) this.open();
    }, 0);
  }

  private stopProbe(): void {
    if (this.probeTimer !== null) clearTimeout(this.probeTimer);
    this.probeTimer = null;
  }

  private retry(reason: string): void {
    if (this.stopped) return;
    const limit = Math.min(this.options.backoffMaxMs ?? 10_000, (this.options.backoffInitialMs ?? 250) * 2 ** this.attempt);
    const delay = Math.random() * limit;
    this.attempt += 1;
    this.setState({ state: "reconnecting", attempt: this.attempt, retryInMs: delay, reason });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) this.open();
    }, delay);
  }

  private startKeepalive(): void {
    this.stopKeepalive();
    const every = this.options.keepaliveMs ?? 20_000;
    const deadAfter = this.options.deadAfterMs ?? 40_000;
    this.keepaliveTimer = setInterval(() => {
      const socket = this.socket;
      if (socket === null) return;
      if (Date.now() - this.lastHeard >= deadAfter) {
        // Silent too long: the connection is dead even if TCP has not noticed.
        this.socket = null;
        this.stopKeepalive();
        socket.close(4000, "no answer to keepalive");
        this.retry(`no frame for ${deadAfter} ms`);
        return;
      }
      this.sendFrame({ command: "ping", args: {} });
    }, Math.min(every, deadAfter / 2));
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer !== null) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
  }

  private setState(change: StateChange): void {
    this.stateNow = change.state;
    this.states.emit(change);
  }

  private sendFrame(frame: unknown): boolean {
    const socket = this.socket;
    if (socket === null || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  private receive(text: string): void {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      this.errors.emit(new StreamError("invalid_json", "the server sent a frame that is not JSON", undefined));
      return;
    }
    if (!isObject(frame)) return;
    const endpoint = typeof frame["endpoint"] === "string" ? frame["endpoint"] : undefined;
    if (isObject(frame["error"])) {
      const error = frame["error"];
      this.errors.emit(
        new StreamError(
          typeof error["code"] === "string" ? error["code"] : "internal",
          typeof error["message"] === "string" ? error["message"] : "error frame without a message",
          typeof error["endpoint"] === "string" ? error["endpoint"] : endpoint,
        ),
      );
      if (error["code"] === "auth_expiring") this.authExpiring();
    } else if (endpoint !== undefined && Array.isArray(frame["batch"])) {
      for (const object of frame["batch"]) this.deliver(endpoint, object, {});
    } else if (endpoint !== undefined && isObject(frame["object"])) {
      const channel = typeof frame["channel"] === "string" ? frame["channel"] : undefined;
      const offset = typeof frame["offset"] === "number" ? frame["offset"] : undefined;
      if (channel !== undefined && offset !== undefined && !this.advance(channel, offset)) return;
      this.deliver(endpoint, frame["object"], channel !== undefined && offset !== undefined ? { channel, offset } : {});
    } else if (frame["command"] === "joined" && isObject(frame["args"])) {
      this.joined(frame["args"]);
    }
    // `pong` and commands this version does not know need nothing.
  }

  /** Asks the app for a fresh key (`onAuthExpiring`) and sends it. */
  private authExpiring(): void {
    const refresh = this.options.onAuthExpiring;
    if (refresh === undefined) return;
    const asked = this.authKey;
    Promise.resolve()
      .then(() => refresh())
      .then(
        (key) => {
          // Unless the app changed the key meanwhile.
          if (typeof key === "string" && key !== "" && this.authKey === asked && !this.stopped) this.refreshAuthKey(key);
        },
        (error: unknown) => this.errors.emit(new StreamError("auth_refresh_failed", `onAuthExpiring failed: ${String(error)}`, undefined)),
      );
  }

  /** Moves `channel`'s position to `offset`; false when the message was seen already. */
  private advance(channel: string, offset: number): boolean {
    const position = this.positions.get(channel);
    if (position === undefined) return true;
    if (offset <= position.offset) return false;
    // Re-inserted: the map's order is least recently heard first.
    this.positions.delete(channel);
    this.positions.set(channel, { epoch: position.epoch, offset });
    return true;
  }

  private joined(args: { [key: string]: unknown }): void {
    const position = isObject(args["position"]) ? args["position"] : {};
    const epoch = typeof position["epoch"] === "string" ? position["epoch"] : "";
    const offset = typeof position["offset"] === "number" ? position["offset"] : 0;
    const channel = typeof args["channel"] === "string" ? args["channel"] : "";
    const recovering = args["recovering"] === true;
    const recovered = args["recovered"] === true;
    const previous = this.positions.get(channel);
    this.positions.delete(channel);
    if (epoch !== "") {
      // Recovered: replays follow from the old position. Otherwise start at the join.
      const from = recovered && previous !== undefined && previous.epoch === epoch ? previous.offset : offset;
      this.positions.set(channel, { epoch, offset: from });
      const limit = this.options.maxRecoveredChannels ?? 128;
      for (const oldest of this.positions.keys()) {
        if (this.positions.size <= limit) break;
        this.positions.delete(oldest);
      }
    }
    this.joins.emit({
      endpoint: typeof args["endpoint"] === "string" ? args["endpoint"] : "",
      channel,
      position: { epoch, offset },
      recovering,
      recovered,
      replayed: typeof args["replayed"] === "number" ? args["replayed"] : 0,
    });
  }

  private deliver(endpoint: string, object: unknown, at: { channel?: string; offset?: number }): void {
    let message: P;
    try {
      const value = isObject(object) ? object : {};
      message = this.protocol.decode(String(value["className"]), value["data"]);
    } catch (error) {
      this.errors.emit(new StreamError("invalid_data", `a message from ${endpoint}: ${String(error)}`, endpoint));
      return;
    }
    const context: MessageContext = { endpoint, ...at };
    this.messageListeners.get(endpoint)?.emit([message, context]);
    this.anyMessage.emit([message, context]);
  }
}

function baseUrl(url: string): string {
  return url.endsWith("/") ? url : `${url}/`;
}

/** `path` below the base URL, as a WebSocket URL. */
function socketUrl(base: string, path: string): string {
  const url = new URL(path, baseUrl(base));
  url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
  return url.toString();
}

function socketConstructor(options: ClientOptions): WebSocketConstructor {
  const Socket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (Socket === undefined) {
    throw new Error("no WebSocket: pass options.WebSocket (e.g. the `ws` package's) on Node < 22");
  }
  return Socket;
}

/** A value on a method stream: `{"className": …, "data": …}`. */
export interface WrappedValue {
  readonly className: string;
  readonly data: unknown;
}

/** The server refused to open a streaming call; `result` is its open result. */
export class StreamCallRefused extends Error {
  constructor(
    readonly result: "endpointNotFound" | "authenticationFailed" | "authorizationDeclined" | "invalidArguments" | string,
    readonly endpoint: string,
    readonly method: string,
  ) {
    super(`${endpoint}.${method}: the server refused the call (${result})`);
    this.name = "StreamCallRefused";
  }
}

/** A streaming call ended with an error: the socket was lost (`lost`), or the method failed without a typed exception. */
export class StreamCallError extends Error {
  constructor(
    message: string,
    readonly lost: boolean,
    /** The exception's class when the method threw one this client has no type for. */
    readonly className?: string,
  ) {
    super(message);
    this.name = "StreamCallError";
  }
}

type CallEvent<T> = { value: T } | { error: Error } | { done: true };

/** What the streaming-method socket needs of an open call. */
interface CallHandle {
  readonly endpoint: string;
  readonly method: string;
  readonly id: string;
  /** Decodes and queues a value (at `at` of its channel, when the call has positions); a value that does not decode fails the call. */
  deliver(data: unknown, at: number | undefined): void;
  /** Where the call stands (streampod's `msp`): its channel's position, and whether a resume was recovered. */
  position(position: Position | undefined, recovered: boolean): void;
  /** The socket was lost: the call goes on on a new one if it can, else ends with `error`. */
  lose(error: Error): void;
  /** Ends the call with `error`. */
  fail(error: Error): void;
  /** Ends the call. */
  finish(): void;
}

/** Tries to open a streaming call again after its socket was lost, before it fails. */
const MAX_RESUME_ATTEMPTS = 8;

/** Where an input sink sends. */
interface InputTarget {
  sendInput(parameter: string, value: WrappedValue): boolean;
  closeInput(parameter: string): void;
}

/**
 * One open streaming-method call: iterate it (`for await`) for the method's values; it
 * ends when the method ends, throwing its exception if it threw one. `close()` (or
 * leaving the loop early) closes the call, and the server cancels the method. Values
 * wait here until read.
 *
 * A call without input streams on a channel that keeps history goes on by itself when
 * its socket is lost: it is opened again on a new socket (jittered waits, up to
 * `MAX_RESUME_ATTEMPTS` tries) from the last value it got, and everything missed comes
 * first, once and in order. `resumes` counts those; `onresume` hears each, with
 * `recovered` false when values in between could not all be recovered (reload then).
 */
export class MethodStreamCall<T, I> implements AsyncIterable<T>, CallHandle, InputTarget {
  private readonly events: CallEvent<T>[] = [];
  private waiting: ((event: CallEvent<T>) => void) | null = null;
  private ended = false;
  /** Where the call resumes from: its last value's position (or where it began). */
  private last: Position | undefined = undefined;
  /** Opened again; its position frame says whether it recovered. */
  private resuming = false;
  /** How many times the call went on on a new socket. */
  resumes = 0;
  /** Hears each time the call went on on a new socket; `recovered` false: values in between may be missing. */
  onresume: ((recovered: boolean) => void) | null = null;
  /** A sink per input stream, to send values to the method. */
  readonly inputs: I;

  /** @internal */
  constructor(
    private socket: MethodSocket,
    readonly endpoint: string,
    readonly method: string,
    public id: string,
    private readonly decode: (data: unknown) => T,
    inputs: (target: InputTarget) => I,
    private readonly reopen: ((call: MethodStreamCall<T, I>, after: Position) => Promise<void>) | null,
  ) {
    this.inputs = inputs(this);
  }

  /** @internal Being opened again: the next position frame says whether it recovered. */
  resumingNow(): void {
    this.resuming = true;
  }

  /** @internal The call's new socket and id, once opened again. */
  moved(socket: MethodSocket, id: string): void {
    this.socket = socket;
    this.id = id;
    this.resumes += 1;
  }

  /** The next value, or the end. */
  next(): Promise<IteratorResult<T, undefined>> {
    const take = (event: CallEvent<T>): IteratorResult<T, undefined> => {
      if ("value" in event) return { value: event.value, done: false };
      if ("error" in event) throw event.error;
      return { value: undefined, done: true };
    };
    const queued = this.events.shift();
    if (queued !== undefined) return Promise.resolve().then(() => take(queued));
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise<CallEvent<T>>((resolve) => {
      this.waiting = resolve;
    }).then(take);
  }

  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    return {
      next: () => this.next(),
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  /** Closes the call; the server cancels the method. */
  close(): void {
    if (this.ended) return;
    this.socket.closeCall(this);
    this.push({ done: true });
  }

  /** @internal */
  deliver(data: unknown, at: number | undefined): void {
    if (at !== undefined && this.last !== undefined) this.last = { epoch: this.last.epoch, offset: at };
    let value: T;
    try {
      value = this.decode(data);
    } catch (error) {
      this.socket.closeCall(this);
      this.fail(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    this.push({ value });
  }

  /** @internal */
  position(position: Position | undefined, recovered: boolean): void {
    const resumed = this.resuming;
    this.resuming = false;
    if (!resumed || !recovered) this.last = position;
    if (resumed) this.onresume?.(recovered);
  }

  /** @internal */
  lose(error: Error): void {
    const after = this.last;
    if (this.ended || this.reopen === null || after === undefined) {
      this.fail(error);
      return;
    }
    void this.resume(after, error);
  }

  private async resume(after: Position, error: Error): Promise<void> {
    for (let attempt = 1; attempt <= MAX_RESUME_ATTEMPTS && !this.ended; attempt++) {
      // Every call of a lost socket resumes at once: spread them out (full jitter).
      const limit = Math.min(10_000, 100 * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * limit));
      if (this.ended || this.reopen === null) return;
      try {
        await this.reopen(this, after);
        return;
      } catch (refused) {
        if (refused instanceof StreamCallRefused) {
          this.fail(refused);
          return;
        }
      }
    }
    this.fail(error);
  }

  /** @internal */
  fail(error: Error): void {
    this.push({ error });
  }

  /** @internal */
  finish(): void {
    this.push({ done: true });
  }

  /** @internal */
  sendInput(parameter: string, value: WrappedValue): boolean {
    return !this.ended && this.socket.send("msm", { en: this.endpoint, m: this.method, cid: this.id, p: parameter, o: value });
  }

  /** @internal */
  closeInput(parameter: string): void {
    if (!this.ended) this.socket.send("cmsc", { en: this.endpoint, m: this.method, cid: this.id, p: parameter, cr: "done" });
  }

  private push(event: CallEvent<T>): void {
    if (this.ended) return;
    if (!("value" in event)) this.ended = true;
    const waiting = this.waiting;
    if (waiting !== null) {
      this.waiting = null;
      waiting(event);
    } else {
      this.events.push(event);
    }
  }
}

/** Sends values on one input stream of a call. */
export class InputSink<V> {
  /** @internal */
  constructor(
    private readonly target: InputTarget,
    private readonly parameter: string,
    private readonly encode: (value: V) => WrappedValue,
  ) {}

  /** Sends `value`; `false` (nothing sent) when the call or its socket has ended. */
  send(value: V): boolean {
    return this.target.sendInput(this.parameter, this.encode(value));
  }

  /** Ends the input stream: the method sees its end. */
  close(): void {
    this.target.closeInput(this.parameter);
  }
}

type Opening = {
  call: CallHandle;
  resolve: () => void;
  reject: (error: Error) => void;
};

/** The `/v1/websocket` socket streaming calls share (Serverpod's short keys). */
class MethodSocket {
  private readonly socket: WebSocketLike;
  private readonly openings = new Map<string, Opening>();
  private readonly calls = new Map<string, CallHandle>();
  private readonly outbox: string[] = [];
  private keepalive: ReturnType<typeof setInterval> | null = null;
  private lastHeard = Date.now();
  private readonly traceparent: (() => string | null | undefined) | undefined;
  lost = false;

  constructor(
    private readonly protocol: ProtocolCodec<ProtocolValue>,
    options: ClientOptions,
    Socket: WebSocketConstructor,
  ) {
    this.traceparent = options.traceparent;
    this.socket = new Socket(socketUrl(options.url, "v1/websocket"));
    this.socket.onopen = () => {
      for (const text of this.outbox.splice(0)) this.socket.send(text);
      const every = options.keepaliveMs ?? 20_000;
      const deadAfter = options.deadAfterMs ?? 40_000;
      this.keepalive = setInterval(() => {
        if (Date.now() - this.lastHeard >= deadAfter) {
          this.socket.close(4000, "no answer to keepalive");
          this.end();
          return;
        }
        this.socket.send(JSON.stringify({ type: "ping" }));
      }, Math.min(every, deadAfter / 2));
    };
    this.socket.onmessage = (event: never) => {
      this.lastHeard = Date.now();
      const data: unknown = (event as { data: unknown }).data;
      if (typeof data === "string") this.receive(data);
    };
    this.socket.onclose = () => this.end();
    this.socket.onerror = () => {
      // A close event follows.
    };
  }

  open<T, I>(
    endpoint: string,
    method: string,
    args: { [name: string]: unknown },
    inputs: { [name: string]: (value: never) => WrappedValue },
    decode: (data: unknown) => T,
    authentication: string | null,
    reopen: (call: MethodStreamCall<T, I>, after: Position) => Promise<void>,
  ): Promise<MethodStreamCall<T, I>> {
    const id = randomUuid();
    // A call with input streams cannot go on from a position: it is not reopened.
    const resumable = Object.keys(inputs).length === 0;
    const call = new MethodStreamCall<T, I>(
      this,
      endpoint,
      method,
      id,
      decode,
      (target) => {
        const sinks: { [name: string]: InputSink<never> } = {};
        for (const [name, encode] of Object.entries(inputs)) sinks[name] = new InputSink(target, name, encode);
        return sinks as I;
      },
      resumable ? reopen : null,
    );
    const data: { [key: string]: unknown } = { en: endpoint, m: method, cid: id, args: JSON.stringify(args), is: Object.keys(inputs) };
    if (authentication !== null) data["auth"] = authentication;
    // streampod's extension: positions, so the call can go on after a lost socket.
    if (resumable) data["pos"] = true;
    return this.start(call, data).then(() => call);
  }

  /** Opens `call` again on this socket, after `after`, as a new call id. */
  reopen<T, I>(call: MethodStreamCall<T, I>, args: { [name: string]: unknown }, after: Position, authentication: string | null): Promise<void> {
    const id = randomUuid();
    const data: { [key: string]: unknown } = { en: call.endpoint, m: call.method, cid: id, args: JSON.stringify(args), is: [], pos: after };
    if (authentication !== null) data["auth"] = authentication;
    const handle: CallHandle = {
      endpoint: call.endpoint,
      method: call.method,
      id,
      deliver: (value, at) => call.deliver(value, at),
      position: (position, recovered) => call.position(position, recovered),
      lose: (error) => call.lose(error),
      fail: (error) => call.fail(error),
      finish: () => call.finish(),
    };
    // Its position frame may be read before the open's promise settles.
    call.resumingNow();
    return this.start(handle, data).then(() => call.moved(this, id));
  }

  private start(call: CallHandle, data: { [key: string]: unknown }): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.lost) {
        reject(new StreamCallError(`${call.endpoint}.${call.method}: the streaming-method socket is closed`, true));
        return;
      }
      this.openings.set(call.id, { call, resolve, reject });
      // streampod's extension: the server's handling of the call continues the caller's trace.
      const traceparent = this.traceparent?.();
      if (traceparent) data["traceparent"] = traceparent;
      this.send("omsc", data);
    });
  }

  send(type: string, data: { [key: string]: unknown }): boolean {
    if (this.lost) return false;
    const text = JSON.stringify({ type, data });
    if (this.socket.readyState === OPEN) this.socket.send(text);
    else this.outbox.push(text);
    return true;
  }

  closeCall(call: CallHandle): void {
    if (this.calls.delete(call.id)) {
      this.send("cmsc", { en: call.endpoint, m: call.method, cid: call.id, cr: "done" });
    }
  }

  /** Closes the socket: its calls end (the client closed), none resumes. */
  close(): void {
    this.socket.close(1000, "client closed");
    this.end(false);
  }

  /** Closes the socket as if lost: calls that can resume open again on a new socket. */
  drop(reason: string): void {
    this.socket.close(1000, reason);
    this.end();
  }

  private end(resume = true): void {
    if (this.lost) return;
    this.lost = true;
    if (this.keepalive !== null) clearInterval(this.keepalive);
    for (const { call, reject } of this.openings.values()) {
      reject(new StreamCallError(`${call.endpoint}.${call.method}: the connection was lost`, true));
    }
    this.openings.clear();
    for (const call of this.calls.values()) {
      const error = new StreamCallError(`${call.endpoint}.${call.method}: the connection was lost`, true);
      if (resume) call.lose(error);
      else call.fail(error);
    }
    this.calls.clear();
  }

  private receive(text: string): void {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!isObject(frame) || typeof frame["type"] !== "string") return;
    const data = isObject(frame["data"]) ? frame["data"] : {};
    const id = typeof data["cid"] === "string" ? data["cid"] : "";
    const toAnswer = data["p"] === undefined;
    switch (frame["type"]) {
      case "ping":
        this.socket.send(JSON.stringify({ type: "pong" }));
        return;
      case "omsr": {
        const opening = this.openings.get(id);
        if (opening === undefined) return;
        this.openings.delete(id);
        if (data["res"] === "success") {
          this.calls.set(id, opening.call);
          opening.resolve();
        } else {
          opening.reject(new StreamCallRefused(String(data["res"]), opening.call.endpoint, opening.call.method));
        }
        return;
      }
      case "msm": {
        const object = isObject(data["o"]) ? data["o"] : {};
        const at = typeof data["at"] === "number" ? data["at"] : undefined;
        if (toAnswer) this.calls.get(id)?.deliver(object["data"], at);
        return;
      }
      case "msp": {
        const position = isObject(data["pos"]) ? data["pos"] : undefined;
        const at =
          position !== undefined && typeof position["epoch"] === "string" && typeof position["offset"] === "number"
            ? { epoch: position["epoch"], offset: position["offset"] }
            : undefined;
        this.calls.get(id)?.position(at, data["rec"] === true);
        return;
      }
      case "msse": {
        const call = this.calls.get(id);
        if (call === undefined || !toAnswer) return;
        this.calls.delete(id);
        const exception = isObject(data["ex"]) ? data["ex"] : {};
        const className = String(exception["className"]);
        call.fail(
          this.protocol.exception(className, exception["data"]) ??
            new StreamCallError(`${call.endpoint}.${call.method} threw ${className}`, false, className),
        );
        return;
      }
      case "cmsc": {
        const call = this.calls.get(id);
        if (call === undefined || !toAnswer) return;
        this.calls.delete(id);
        if (data["cr"] === "error") call.fail(new StreamCallError(`${call.endpoint}.${call.method} ended with an error`, false));
        else call.finish();
        return;
      }
      case "brm":
        this.socket.close(1000, "bad request");
        this.end();
        return;
      default:
        return;
    }
  }
}

/** A random (version 4) UUID. */
function randomUuid(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (crypto?.randomUUID !== undefined) return crypto.randomUUID();
  const hex = [...Array(32)].map(() => Math.floor(Math.random() * 16).toString(16));
  hex[12] = "4";
  hex[16] = ((parseInt(hex[16] ?? "0", 16) & 0x3) | 0x8).toString(16);
  const text = hex.join("");
  return `${text.slice(0, 8)}-${text.slice(8, 12)}-${text.slice(12, 16)}-${text.slice(16, 20)}-${text.slice(20)}`;
}

function isObject(value: unknown): value is { [key: string]: unknown } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
