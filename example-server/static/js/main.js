// The example's chat page, on the client streampod-codegen generates from the models
// (./generated: the models, their codecs, typed method calls, and the runtime).
// Built into ../static/js by `STREAMPOD_UPDATE_WEB=1 cargo test -p example-server --test web_client`.
import { Client, InvalidRequestError, MethodCallError, } from "./generated/protocol.js";
function element(id) {
    const found = document.getElementById(id);
    if (found === null)
        throw new Error(`the page has no #${id}`);
    return found;
}
const ui = {
    name: element("name"),
    room: element("room"),
    token: element("token"),
    join: element("join"),
    members: element("members"),
    status: element("status"),
    rooms: element("rooms"),
    log: element("log"),
    memberList: element("member-list"),
    compose: element("compose"),
    message: element("message"),
    send: element("send"),
};
/**
 * `?via=methods`: the page follows its room through the streaming method
 * `chat.messages` and posts with `chat.post` (HTTP), with no `/websocket` stream at
 * all; a lost streaming socket is resumed by the client, nothing missed.
 */
const viaMethods = new URLSearchParams(location.search).get("via") === "methods";
/** The page's own state: the room shown and what of it is on screen. */
const state = {
    client: null,
    /** In `?via=methods`: the call that follows the room. */
    following: null,
    room: null,
    /** Rooms joined on this page, for the room list. */
    rooms: [],
    /** Stored ids already shown: a message that comes live and in a ChatHistory shows once. */
    seen: new Set(),
    oldest: null,
    newest: null,
    /** The room whose first ChatHistory placed the "older" button. */
    pagedFrom: null,
    /** The socket came back: the next ChatHistory covers the gap. */
    rejoined: false,
};
function line(text, kind, meta) {
    const item = document.createElement("li");
    if (kind !== "")
        item.className = kind;
    if (meta !== "") {
        const span = document.createElement("span");
        span.className = "meta";
        span.textContent = meta;
        item.appendChild(span);
    }
    item.appendChild(document.createTextNode(text));
    return item;
}
function show(text, kind, meta) {
    ui.log.appendChild(line(text, kind, meta));
    ui.log.scrollTop = ui.log.scrollHeight;
}
/** A chat message as a line, or null when it was shown already. */
function chatLine(message) {
    const id = message.id ?? null;
    if (id !== null) {
        if (state.seen.has(id))
            return null;
        state.seen.add(id);
        if (message.channelId === state.room) {
            if (state.oldest === null || id < state.oldest)
                state.oldest = id;
            if (state.newest === null || id > state.newest)
                state.newest = id;
        }
    }
    const time = message.timestamp?.toLocaleTimeString() ?? "";
    const item = line(message.content, "chat", time);
    const author = document.createElement("strong");
    author.className = "author";
    author.textContent = `${message.senderName}: `;
    item.insertBefore(author, item.lastChild);
    return item;
}
/** Shows a failed call where it happened: a typed exception's message, or the status. */
function showFailure(what, error) {
    if (error instanceof InvalidRequestError)
        show(error.data.message, "error", what);
    else if (error instanceof MethodCallError)
        show(error.message, "error", `${what} (${error.status})`);
    else
        show(String(error), "error", what);
}
/** "Older messages" at the top of the log while the room has more stored. */
function olderButton(hasMore) {
    document.getElementById("older")?.remove();
    if (!hasMore)
        return;
    const item = document.createElement("li");
    item.id = "older";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "older messages";
    button.addEventListener("click", () => void loadOlder());
    item.appendChild(button);
    ui.log.prepend(item);
}
/** Pages back from the oldest message shown. */
async function loadOlder() {
    const client = state.client;
    const room = state.room;
    if (client === null || room === null)
        return;
    try {
        const page = await client.chat.history(room, state.oldest, 50);
        const lines = page.messages.map(chatLine).filter((item) => item !== null);
        const button = document.getElementById("older");
        for (const item of lines.reverse()) {
            if (button !== null)
                button.after(item);
            else
                ui.log.prepend(item);
        }
        olderButton(page.hasMore);
    }
    catch (error) {
        showFailure("history", error);
    }
}
/**
 * The member list, from the room's RoomUpdate (presence: every server's members; the
 * count, and the names while there are at most 100, sent to the room's members only).
 */
function showMembers(update) {
    ui.members.textContent = `${update.members} in ${update.channelId}`;
    const items = update.names.map((name) => {
        const item = document.createElement("li");
        item.textContent = name;
        return item;
    });
    if (update.names.length === 0 && update.members > 0) {
        const many = document.createElement("li");
        many.textContent = "too many to list";
        items.push(many);
    }
    ui.memberList.replaceChildren(...items);
}
function missedNotice() {
    const item = line("more messages came while you were offline than are shown here: ", "notice", "");
    const reload = document.createElement("button");
    reload.type = "button";
    reload.textContent = "reload";
    reload.addEventListener("click", () => location.reload());
    item.appendChild(reload);
    ui.log.appendChild(item);
}
/** On every join (and re-join after a reconnect): the newest stored messages. */
function showHistory(history) {
    if (history.channelId !== state.room)
        return;
    if (state.rejoined) {
        state.rejoined = false;
        const first = history.messages[0];
        const seenUpTo = state.newest;
        // The page may not reach back to what this page had: if the room has a message
        // between the two, more was said while away than one page holds. Say so rather
        // than leave a silent gap.
        if (history.hasMore && seenUpTo !== null && first?.id != null && first.id > seenUpTo) {
            state.client?.chat
                .history(history.channelId, first.id, 1)
                .then((page) => {
                const before = page.messages[0];
                if (before?.id != null && before.id > seenUpTo)
                    missedNotice();
            })
                .catch((error) => showFailure("history", error));
        }
    }
    for (const message of history.messages)
        showChat(message);
    if (state.pagedFrom !== state.room) {
        state.pagedFrom = state.room;
        olderButton(history.hasMore);
    }
}
function showChat(message) {
    const item = chatLine(message);
    if (item === null)
        return;
    ui.log.appendChild(item);
    ui.log.scrollTop = ui.log.scrollHeight;
}
function receive(message, endpoint) {
    switch (message.className) {
        case "ChatMessage":
            showChat(message.data);
            break;
        case "ChatHistory":
            showHistory(message.data);
            break;
        case "RoomUpdate":
            if (message.data.channelId === state.room)
                showMembers(message.data);
            break;
        case "AnnouncementMessage":
        case "NotificationMessage":
            show(message.data.text, "notice", endpoint);
            break;
        case "SystemNotification":
        case "UserNotification":
            show(`${message.data.title}: ${message.data.body}`, "notice", endpoint);
            break;
        case "InvalidRequest":
            show(message.data.message, "error", "refused");
            break;
        default:
            show(JSON.stringify(message.data), "", message.className);
    }
}
function nickname() {
    return ui.name.value.trim() || "guest";
}
function subscribe(channelId, subscribe) {
    const data = subscribe ? { channelId, subscribe, nickname: nickname() } : { channelId, subscribe };
    return state.client?.send("chat", { className: "ChannelSubscription", data }) ?? false;
}
/** The connection badge: its text, and its colour through `body[data-connection]`. */
function showState(change) {
    const online = change.state === "open";
    // Sending needs the socket and a room.
    ui.message.disabled = !online || state.room === null;
    ui.send.disabled = ui.message.disabled;
    document.body.dataset["connection"] = change.state;
    const why = change.reason ? ` (${change.reason})` : "";
    if (online)
        ui.status.textContent = change.transport === "events" ? "online (HTTP fallback)" : "online";
    else if (change.state === "reconnecting" && change.retryInMs !== undefined)
        ui.status.textContent = `offline, retrying in ${(change.retryInMs / 1000).toFixed(1)} s${why}`;
    else if (change.state === "reconnecting")
        ui.status.textContent = `reconnecting…${why}`;
    else if (change.state === "connecting")
        ui.status.textContent = "connecting…";
    else
        ui.status.textContent = `offline${why}`;
}
/** In `?via=methods`: follows `room` through `chat.messages`, until another room is followed. */
async function follow(client, room) {
    state.following?.close();
    const messages = await client.chat.messages(room);
    state.following = messages;
    // Its socket was lost and it went on on a new one: say so when values may be missing.
    messages.onresume = (recovered) => {
        if (!recovered)
            missedNotice();
    };
    showState({ state: "open", attempt: 0 });
    for await (const message of messages)
        showChat(message);
}
function connect() {
    const token = ui.token.value.trim();
    // The page's directory: /websocket at the root, /rt/websocket when mounted under /rt/.
    const client = new Client({ url: new URL(".", location.href).toString(), authKey: token || null });
    if (viaMethods) {
        // No stream socket: the badge follows the room's call.
        showState({ state: "connecting", attempt: 0 });
        return client;
    }
    client.onState(showState);
    client.onMessage((message, context) => receive(message, context.endpoint));
    client.onError((error) => show(error.message, "error", error.code));
    client.onOpen(() => {
        // The key went first (in the auth command, never in the URL); a reconnect re-joins,
        // and the join's ChatHistory brings what was said meanwhile.
        if (state.room !== null) {
            state.rejoined = state.seen.size > 0;
            subscribe(state.room, true);
        }
    });
    client.connect();
    return client;
}
function showRooms() {
    ui.rooms.replaceChildren(...state.rooms.map((name) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = name;
        button.disabled = name === state.room;
        button.addEventListener("click", () => {
            ui.room.value = name;
            join();
        });
        item.appendChild(button);
        return item;
    }));
}
function join() {
    const next = ui.room.value.trim();
    if (next === "")
        return;
    if (state.client === null)
        state.client = connect();
    else if (viaMethods) {
        void follow(state.client, next).catch((error) => showFailure("messages", error));
    }
    else {
        if (state.room !== null && state.room !== next)
            subscribe(state.room, false);
        subscribe(next, true);
    }
    if (next !== state.room) {
        state.oldest = null;
        state.newest = null;
        state.pagedFrom = null;
        olderButton(false);
        ui.memberList.replaceChildren();
        ui.members.textContent = "";
    }
    state.room = next;
    const online = viaMethods || state.client.state === "open";
    ui.message.disabled = !online;
    ui.send.disabled = !online;
    if (!state.rooms.includes(next))
        state.rooms.push(next);
    showRooms();
    show(`joined ${next}`, "notice", "");
}
ui.join.addEventListener("click", join);
// Connected from the start, so the badge says what the connection does; Join picks the
// room (and the name it is joined with).
state.client = connect();
ui.token.addEventListener("change", () => {
    const client = state.client;
    if (client === null)
        return;
    // A new identity keeps nothing the old one joined: sign in, then join again.
    client.setAuthKey(ui.token.value.trim() || null);
    if (state.room !== null)
        subscribe(state.room, true);
});
ui.compose.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = ui.message.value.trim();
    const room = state.room;
    if (content === "" || room === null || state.client === null)
        return;
    if (viaMethods) {
        state.client.chat
            .post(room, nickname(), content)
            .then(() => {
            ui.message.value = "";
        })
            .catch((error) => showFailure("post", error));
        return;
    }
    const message = { senderName: nickname(), content, channelId: room };
    if (state.client.send("chat", { className: "ChatMessage", data: message }))
        ui.message.value = "";
    else
        show("not sent: the connection is down; it is kept in the box", "error", "offline");
});
