//! The typed Rust client: joins the lobby, announces in it through the generated typed
//! call (signed in as an admin), prints what arrives, and exits once the announcement
//! came back. `cargo run --bin client -- http://127.0.0.1:8080`.

use std::process::ExitCode;
use std::time::Duration;

use streampod::client::{Client, Incoming};
use streampod_walkthrough::models::{ChannelSubscription, MethodCalls, Protocol};

#[tokio::main]
async fn main() -> ExitCode {
    let server = std::env::args().nth(1);
    let server = server.as_deref().unwrap_or("http://127.0.0.1:8080");
    match tokio::time::timeout(Duration::from_secs(20), run(server)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("no announcement within 20 s");
            ExitCode::FAILURE
        }
    }
}

async fn run(server: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::<Protocol>::builder(server)
        .auth_key("root-key")
        // Runs after every (re)connect: (re-)join the room.
        .on_connect(|client| async move {
            let join = ChannelSubscription {
                channel_id: "lobby".into(),
                subscribe: true,
            };
            let _ = client.send("chat", join);
        })
        .connect()
        .await?;
    while let Some(incoming) = client.recv().await {
        let Incoming::Message {
            message: Protocol::ChatMessage(chat),
            ..
        } = incoming
        else {
            continue;
        };
        println!("{}: {}", chat.sender_name, chat.content);
        if chat.sender_name == "server" {
            // Joined: announce through the typed call `POST /announcements/announce`.
            let members = client
                .announcements()
                .announce("lobby", "hello from Rust")
                .await?;
            println!("announced to {members} member(s)");
        } else if chat.sender_name == "announcer" {
            break;
        }
    }
    client.close().await;
    Ok(())
}
