//! The message central: named channels with listeners, and posting to them.
//!
//! A listener is a session that joined the channel (it receives each message as a frame
//! from the endpoint it joined through), a callback, or a [`ChannelStream`]. A post
//! encodes the message once per endpoint name and shares the frame with every session's
//! queue; it never waits for a consumer.
//!
//! ```no_run
//! # streampod::__doc_models!();
//! use streampod::messages::{Delivery, Reach};
//! # fn demo(server: streampod::ServerHandle<Protocol>) {
//! let messages = server.messages();
//! let delivery = messages
//!     .post_message("room-1", ChatMessage { content: "hi".into() }, Reach::Local)
//!     .expect("encodable");
//! if let Delivery::Local(report) = delivery {
//!     println!("{} delivered, {} dropped", report.delivered, report.dropped);
//! }
//! # }
//! ```
//!
//! The modules below hold one concept each and depend on each other one way:
//! `delivery` (what a post carries and did), `queue` (a stream's buffer), `history` (a
//! node's kept posts), `gate` (a session joining a cluster channel with history) and
//! `hooks` (presence's types and hooks) ←
//! `channel` (listeners by channel) ← `central` (posting and delivery) ← `listener`,
//! `stream`, `broadcast`, `pacing`, `presence`, `ingress` (each adding its part of the
//! API).

pub(crate) mod broadcast;
pub(crate) mod central;
pub(crate) mod channel;
pub(crate) mod delivery;
pub(crate) mod feed;
pub(crate) mod gate;
pub(crate) mod history;
mod history_read;
pub(crate) mod hooks;
pub(crate) mod idempotency;
mod idempotency_keys;
mod ingress;
pub(crate) mod listener;
pub(crate) mod membership;
pub(crate) mod pacing;
pub(crate) mod presence;
pub(crate) mod queue;
mod revocation;
pub(crate) mod stream;
mod user_budget;

pub use broadcast::Broadcast;
pub use central::MessageCentral;
pub use channel::ChannelConfig;
pub use delivery::{Delivery, DeliveryReport, MessageStats, PostError, Reach};
pub use feed::ChannelFeed;
pub use history::{HistoryConfig, DEFAULT_HISTORY_BYTES};
pub use history_read::{HistoryEntry, HistoryError, HistoryPage};
pub use listener::ListenerHandle;
pub use pacing::{Batched, Throttle, Throttled};
pub use presence::{Member, PresenceChange};
pub use stream::ChannelStream;

pub use crate::session::owned::JoinError;
pub use membership::{Recovery, SessionMessages};
