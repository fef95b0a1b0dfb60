// The generated TypeScript client under Node: joins the lobby, announces in it through the
// typed call (signed in as an admin), prints what arrives, and exits once the announcement
// came back. `npm start -- http://127.0.0.1:8080/`; in a browser the same code runs as is.
import { Client, type ClientOptions } from "./generated/protocol.js";

declare const process: { argv: string[]; exitCode?: number };

/** Node 22 and browsers have a WebSocket; Node 20 takes the `ws` package's. */
async function webSocket(): Promise<ClientOptions["WebSocket"]> {
  if ("WebSocket" in globalThis) return undefined;
  const name = "ws";
  const ws = await import(name);
  return ws.WebSocket;
}

const url = process.argv[2] ?? "http://127.0.0.1:8080/";
const WebSocket = await webSocket();
const client = new Client({ url, authKey: "root-key", ...(WebSocket ? { WebSocket } : {}) });
const timer = setTimeout(() => {
  console.error("no announcement within 20 s");
  process.exitCode = 1;
  client.close();
}, 20_000);

// (Re-)join the room whenever the socket opens.
client.onOpen(() => {
  client.send("chat", { className: "ChannelSubscription", data: { channelId: "lobby", subscribe: true } });
});
client.on("chat", (message) => {
  if (message.className !== "ChatMessage") return;
  const chat = message.data;
  console.log(`${chat.senderName}: ${chat.content}`);
  if (chat.senderName === "server") {
    // Joined: announce through the typed call `POST /announcements/announce`.
    client.announcements.announce("lobby", "hello from TypeScript").then(
      (members) => console.log(`announced to ${members} member(s)`),
      (error: unknown) => {
        console.error(error);
        process.exitCode = 1;
      },
    );
  } else if (chat.senderName === "announcer") {
    clearTimeout(timer);
    client.close();
  }
});
client.connect();
