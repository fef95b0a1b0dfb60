//! streampod: typed real-time endpoints for Rust, ported from Serverpod's streaming
//! endpoints.
//!
//! 1. Write models in YAML and generate them from `build.rs` with
//!    `streampod_codegen::compile_or_exit("models")`; bring them in with
//!    [`include_models!`].
//! 2. Implement [`Endpoint`] for the generated `Protocol`.
//! 3. Register endpoints on a [`Server`] and bind it. Clients open one WebSocket at
//!    `GET /websocket` and exchange Serverpod-format JSON frames.
//!
//! ```no_run
//! # streampod::__doc_models!();
//! use streampod::{Endpoint, EndpointError, Server, StreamingSession};
//!
//! struct Echo;
//!
//! impl Endpoint<Protocol> for Echo {
//!     async fn handle_stream_message(
//!         &self,
//!         session: &StreamingSession<Protocol>,
//!         message: Protocol,
//!     ) -> Result<(), EndpointError> {
//!         session.send_stream_message(message)?;
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), streampod::StartError> {
//!     let server = Server::builder().endpoint("echo", Echo).bind("127.0.0.1:8080").await?;
//!     server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
//!     Ok(())
//! }
//! ```
//!
//! Bad input never takes a server down: frames that cannot be used get an error frame
//! (`{"error":{"code":…,"message":…}}`, codes in [`protocol::ErrorCode`]) and the socket
//! stays open; protocol violations close it with the RFC 6455 code (1007 invalid UTF-8,
//! 1009 too large); a slow consumer is closed with 1008 without delaying anyone else.
//!
//! # Architecture
//!
//! One core (a session's state and the message central) that every transport goes
//! through: a socket or an HTTP call only translates its frames into core operations,
//! so limits, encoding, recovery and accounting hold on every path. The source has a
//! folder per concept; each uses only those above it in this list (lowest first; a
//! test, `tests/tests/layering.rs`, enforces the order):
//!
//! 1. `util`: leaf helpers (backoff, rate-limited log, one-way flag, panic text).
//! 2. `ws`: the RFC 6455 codec: one opcode and header type, text and control frames,
//!    the reader and the writer.
//! 3. `config`, `auth`, `metrics`, `rate_limit`: leaves the runtime reads.
//! 4. `session`: one socket's state: its bounded queue and slow-consumer policy, what
//!    its streams own and the limits on it, the registry, the memory guard.
//! 5. `cluster`: the backplane seam and its Redis implementation.
//! 6. `messages`: the message central: channels, encode-once delivery, broadcasts,
//!    pacing, history and join-with-recovery, presence.
//! 7. `endpoint`: the [`Endpoint`] trait and registry, [`StreamingSession`], the
//!    [`ServerHandle`].
//! 8. `methods`: `#[endpoint]` method tables: arguments, errors, answers, input
//!    streams, registry and schema, the call's [`Session`].
//! 9. `transport`: what every socket shares (context, writer task, keepalive, close
//!    answers) and one module per protocol: `/websocket`, `/v1/websocket`.
//! 10. `service`: the tower [`Service`](tower_service::Service): upgrades, HTTP calls,
//!     `/health`, `/metrics`, static files, CORS, connection admission.
//! 11. `server`: the builder, the stand-alone server and its accept loop, TLS.
//!
//! [`client`] stands apart: it uses only the protocol crate and `util`.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The guides link items of every feature; a build without some of them shows those
// links as plain text instead of failing (`cargo doc` works for every feature set).
#![cfg_attr(
    not(all(
        feature = "server",
        feature = "client",
        feature = "redis",
        feature = "nats"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]
#![doc(test(no_crate_inject, attr(deny(rust_2018_idioms))))]

// Unit tests use the doc examples' models, which name the crate `streampod`.
#[cfg(all(test, feature = "server"))]
extern crate self as streampod;

// The server side, a folder per concept in the order of the crate docs' architecture
// section (checked by tests/tests/layering.rs).
#[cfg(feature = "server")]
macro_rules! server_modules {
    ($($(#[$attr:meta])* $vis:vis mod $name:ident;)*) => {
        $(
            #[cfg(feature = "server")]
            #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
            $(#[$attr])*
            $vis mod $name;
        )*
    };
}

#[cfg(feature = "server")]
server_modules! {
    pub mod auth;
    pub mod cluster;
    mod config;
    mod endpoint;
    pub mod messages;
    pub mod methods;
    mod metrics;
    mod rate_limit;
    mod server;
    pub mod service;
    mod session;
    mod transport;
    mod ws;
}

#[cfg(all(feature = "server", feature = "tls"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "server", feature = "tls"))))]
pub use server::tls;

/// The guides of `framework/docs/` (the README links them): how to build a server, and
/// what channels, clusters, limits, the TypeScript client, axum and the wire do.
///
/// Their code blocks use the example server's models: the `streampod-tests` crate
/// compiles them (with the README), so they are shown here, not tested here.
pub mod guide {
    /// A guide: its page in the docs, its title for the compiler's `missing_docs`.
    macro_rules! guide {
        ($name:ident, $file:literal, $title:literal) => {
            #[cfg_attr(all(doc, not(doctest)), doc = include_str!($file))]
            #[cfg_attr(any(not(doc), doctest), doc = $title)]
            pub mod $name {}
        };
    }
    guide!(server, "../docs/server.md", "Building a server.");
    guide!(
        channels,
        "../docs/channels.md",
        "Channels and broadcasting."
    );
    guide!(cluster, "../docs/cluster.md", "Clusters.");
    guide!(limits, "../docs/limits.md", "Limits and timeouts.");
    guide!(
        typescript,
        "../docs/typescript.md",
        "Browser and Node clients."
    );
    guide!(
        axum,
        "../docs/axum.md",
        "Mounting streampod in an axum app."
    );
    guide!(wire, "../docs/wire.md", "The wire.");
}

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
mod util;

pub use streampod_protocol as protocol;
pub use streampod_protocol::{ModelEnum, ModelSet, SerializableException, SerializableModel};
#[cfg(feature = "server")]
pub use {
    config::{ServerConfig, SlowConsumerPolicy},
    endpoint::definition::{Endpoint, EndpointError},
    endpoint::server_handle::ServerHandle,
    endpoint::streaming_session::StreamingSession,
    methods::{InputError, IntoMethodError, MethodError, MethodStream, Methods, Session},
    rate_limit::RateLimit,
    server::builder::{ServerBuilder, StartError},
    server::serve::Server,
    service::cors::{Cors, InvalidOrigin},
    service::StreampodService,
    session::state::{SendError, SessionHandle, SessionId},
    streampod_macros::endpoint,
    util::log_limit::RateLimitedLog,
    util::peer_text::PeerText,
};

/// Items generated code refers to. Not a public API.
#[doc(hidden)]
pub use streampod_protocol::__codegen;

/// Items the `#[endpoint]` macro's expansion refers to. Not a public API.
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod __private {
    pub use crate::methods::answer::{
        answer_feed, answer_stream, answer_value, respond_value, Answer, MethodFuture, OutputStream,
    };
    pub use crate::methods::args::{parse_args, Args};
    pub use crate::methods::error::into_method_error;
    pub use crate::methods::info::{MethodInfo, MethodTypes};
    pub use crate::methods::input::Inputs;
    pub use crate::methods::probe::{ErrorProbe, ProbeTypes, ProbeTypesFallback, TypeProbe};
    pub use crate::methods::table::Methods;
    pub use crate::methods::Session;
    pub use crate::protocol::ModelSet;
    pub use crate::ws::echo::{echo as ws_echo, EchoExtensions};
    pub use futures_util::StreamExt;
    pub use std::boxed::Box;
}

/// Includes the models `streampod-codegen` generated into `OUT_DIR` (`protocol.rs`, or
/// the file name given).
///
/// ```text
/// streampod::include_models!();            // $OUT_DIR/protocol.rs
/// streampod::include_models!("chat.rs");   // $OUT_DIR/chat.rs
/// ```
#[macro_export]
macro_rules! include_models {
    () => {
        include!(concat!(env!("OUT_DIR"), "/protocol.rs"));
    };
    ($file:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $file));
    };
}

/// A one-model `Protocol` for this crate's doc examples (doc tests have no build script).
#[doc(hidden)]
#[macro_export]
macro_rules! __doc_models {
    () => {
        /// A chat message.
        #[derive(
            Debug,
            Clone,
            PartialEq,
            $crate::__codegen::serde::Serialize,
            $crate::__codegen::serde::Deserialize,
        )]
        #[serde(crate = "streampod::__codegen::serde", tag = "__className__")]
        pub struct ChatMessage {
            /// The text.
            pub content: String,
        }
        impl $crate::SerializableModel for ChatMessage {
            const CLASS_NAME: &'static str = "ChatMessage";
        }
        $crate::__codegen::impl_model_wire!(ChatMessage, "ChatMessage");
        /// The doc examples' model set.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Protocol {
            /// A chat message.
            ChatMessage(ChatMessage),
        }
        impl From<ChatMessage> for Protocol {
            fn from(message: ChatMessage) -> Self {
                Self::ChatMessage(message)
            }
        }
        impl $crate::ModelSet for Protocol {
            fn class_name(&self) -> &'static str {
                "ChatMessage"
            }
            fn decode(
                class_name: &str,
                data: &$crate::__codegen::RawValue,
            ) -> Result<Self, $crate::__codegen::DecodeError> {
                match class_name {
                    "ChatMessage" => $crate::__codegen::decode_model(data).map(Self::ChatMessage),
                    _ => Err($crate::__codegen::unknown_class::<Self>(class_name)),
                }
            }
            fn encode_data(&self, out: &mut Vec<u8>) -> Result<(), $crate::__codegen::EncodeError> {
                let Self::ChatMessage(message) = self;
                $crate::__codegen::encode_model(message, out)
            }
            fn class_names() -> &'static [&'static str] {
                &["ChatMessage"]
            }
            fn model(&self) -> &(dyn ::std::any::Any + Send + Sync) {
                let Self::ChatMessage(message) = self;
                message
            }
        }
    };
}
