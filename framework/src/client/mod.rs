//! The typed Rust client: one WebSocket to a streampod (or Serverpod) server, typed
//! sends and receives, HTTP method calls, keepalive, and automatic reconnection.
//!
//! ```no_run
//! # streampod::__doc_models!();
//! use streampod::client::{Client, Incoming};
//!
//! # async fn run() -> Result<(), streampod::client::ClientError> {
//! let client = Client::<Protocol>::builder("http://127.0.0.1:8080")
//!     .auth_key("ann-secret-1")
//!     // Runs after every (re)connect: re-send subscriptions here.
//!     .on_connect(|client| async move {
//!         let _ = client.send("chat", ChatMessage { content: "hello again".into() });
//!     })
//!     .connect()
//!     .await?;
//! client.send("chat", ChatMessage { content: "hi".into() })?;
//! while let Some(incoming) = client.recv().await {
//!     if let Incoming::Message { endpoint, message } = incoming {
//!         println!("{endpoint}: {message:?}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `https://`/`wss://` servers need the `tls` feature (rustls with the public web roots;
//! [`ClientBuilder::add_root_certificate`] for a self-signed one). Method calls work
//! without a socket through [`MethodClient`].

mod calls;
mod connection;
mod error;
mod method_streams;
mod positions;
mod text;
mod transport;

pub use crate::protocol::method_stream::OpenResult;
pub use calls::{
    AsMethodClient, CallException, MethodClient, NamedArgs, NoException, DEFAULT_CALL_TIMEOUT,
    DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MAX_STREAM_QUEUE_BYTES,
};
pub use connection::{Client, ClientBuilder, ConnectionState, Incoming};
pub use error::{BoxError, CallError, ClientError, CloseInfo};
pub use method_streams::{InputSink, StreamCall, StreamCallError, MAX_RESUME_ATTEMPTS};
pub use serde_json::json;

pub use crate::util::backoff::Backoff;
