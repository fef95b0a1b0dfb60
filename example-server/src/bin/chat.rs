//! A terminal chat client on the typed Rust client:
//!
//! ```text
//! cargo run -p example-server --bin chat -- --name ann --room lobby [--server http://127.0.0.1:8080] [--token TOKEN]
//! ```
//!
//! Lines typed are posted to the room; everything the room, your notifications and the
//! announcements bring is printed. It reconnects by itself and re-joins the room. `/who`
//! lists the room's members (a typed method call; signed in with `--token` only).

use std::time::Duration;

use clap::Parser;
use example_server::models::{
    ChannelSubscription, ChatHistory, ChatMessage, MethodCalls, Protocol, RoomMembers,
};
use streampod::client::{Backoff, CallError, Client, ConnectionState, Incoming};
use streampod::protocol::types::DateTime;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Chat in a room of the streampod example server from a terminal.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The server.
    #[arg(
        long,
        env = "STREAMPOD_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Your display name.
    #[arg(long)]
    name: String,
    /// The room to join.
    #[arg(long, default_value = "lobby")]
    room: String,
    /// A demo token to sign in with (for notifications).
    #[arg(long, env = "STREAMPOD_TOKEN")]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let room = args.room.clone();
    let name = args.name.clone();
    let mut builder = Client::<Protocol>::builder(&args.server)
        .backoff(Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(10),
        ))
        .on_connect(move |client| {
            let (room, name) = (room.clone(), name.clone());
            async move {
                let join = ChannelSubscription {
                    channel_id: room,
                    subscribe: true,
                    nickname: Some(name),
                };
                if let Err(error) = client.send("chat", join) {
                    eprintln!("could not join: {error}");
                }
            }
        });
    if let Some(token) = &args.token {
        builder = builder.auth_key(token);
    }
    let client = match builder.connect().await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!(
        "connected to {}; type to chat in '{}', /who for its members, Ctrl-D to quit",
        args.server, args.room
    );

    let printer = tokio::spawn({
        let client = client.clone();
        async move {
            while let Some(incoming) = client.recv().await {
                print_incoming(incoming);
            }
        }
    });
    let mut states = client.state_changes();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            if let ConnectionState::Reconnecting { attempt, delay } = state {
                eprintln!(
                    "(connection lost; retry {attempt} in {:.1} s)",
                    delay.as_secs_f64()
                );
            } else if state == ConnectionState::Connected {
                eprintln!("(reconnected)");
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let content = line.trim();
        if content.is_empty() {
            continue;
        }
        if content == "/who" {
            match client.chat().members(&args.room).await {
                Ok(members) => println!("{}", members_line(&args.room, &members)),
                Err(CallError::Unauthenticated { .. }) => {
                    eprintln!("(only signed-in users list members: start with --token)");
                }
                Err(error) => eprintln!("(members unknown: {error})"),
            }
            continue;
        }
        let message = ChatMessage {
            sender_name: args.name.clone(),
            content: content.to_owned(),
            timestamp: DateTime::from(std::time::SystemTime::now()),
            channel_id: args.room.clone(),
            exclude_sender: false,
            sender_id: None,
            id: None,
        };
        if let Err(error) = client.send("chat", message) {
            eprintln!("(not sent: {error})");
        }
    }
    client.close().await;
    printer.abort();
    std::process::ExitCode::SUCCESS
}

fn print_incoming(incoming: Incoming<Protocol>) {
    match incoming {
        Incoming::Message { message, endpoint } => match message {
            Protocol::ChatMessage(chat) => println!("{}", chat_line(&chat)),
            Protocol::ChatHistory(history) => {
                for line in history_lines(&history) {
                    println!("{line}");
                }
            }
            Protocol::RoomUpdate(update) => {
                println!("({} in {})", update.members, update.channel_id);
            }
            Protocol::NotificationMessage(note) => println!("* {}", note.text),
            Protocol::AnnouncementMessage(announcement) => println!("** {}", announcement.text),
            Protocol::SystemNotification(notice) => {
                println!("** {}: {}", notice.title, notice.body);
            }
            Protocol::UserNotification(notice) => println!("* {}: {}", notice.title, notice.body),
            Protocol::InvalidRequest(refused) => eprintln!("(refused: {})", refused.message),
            other => println!("({endpoint}: {other:?})"),
        },
        Incoming::Error { code, message } => eprintln!("(error {code}: {message})"),
        Incoming::Closed(close) => eprintln!("(the server {close}; reconnecting)"),
        Incoming::Joined {
            channel,
            recovering: true,
            recovered: false,
            ..
        } => eprintln!("(messages in {channel} were missed while disconnected)"),
        _ => {}
    }
}

/// A chat message as the terminal shows it: `[12:00:00] ann: hi`.
fn chat_line(chat: &ChatMessage) -> String {
    format!(
        "[{}] {}: {}",
        chat.timestamp.format("%H:%M:%S"),
        chat.sender_name,
        chat.content
    )
}

/// `/who`'s answer: `(3 in lobby: ann, bob, cy)`, saying when the list is cut short.
fn members_line(room: &str, members: &RoomMembers) -> String {
    let more = usize::try_from(members.count)
        .unwrap_or(usize::MAX)
        .saturating_sub(members.members.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "({} in {room}: {}{more})",
        members.count,
        members.members.join(", ")
    )
}

/// A joined room's stored messages as chat lines, under a line that says how many and
/// whether older ones exist.
fn history_lines(history: &ChatHistory) -> Vec<String> {
    let older = if history.has_more {
        ", older ones kept"
    } else {
        ""
    };
    let mut lines = vec![format!(
        "(history of {}: {} messages{older})",
        history.channel_id,
        history.messages.len()
    )];
    lines.extend(history.messages.iter().map(chat_line));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_reads_like_the_chat_it_was() {
        let message = |content: &str| ChatMessage {
            id: Some(1),
            sender_name: "ann (guest 1)".into(),
            content: content.into(),
            timestamp: DateTime::from(std::time::UNIX_EPOCH),
            channel_id: "lobby".into(),
            exclude_sender: false,
            sender_id: None,
        };
        let history = ChatHistory {
            channel_id: "lobby".into(),
            messages: vec![message("hi"), message("there")],
            has_more: true,
        };
        assert_eq!(
            history_lines(&history),
            [
                "(history of lobby: 2 messages, older ones kept)",
                "[00:00:00] ann (guest 1): hi",
                "[00:00:00] ann (guest 1): there",
            ]
        );
    }
}
