//! WebSocket text frames: Serverpod's streaming-endpoint JSON plus streampod's error frame.
//!
//! | frame | JSON |
//! |---|---|
//! | endpoint message (both ways) | `{"endpoint":"chat","object":{"className":"ChatMessage","data":{…}}}` |
//! | ping (client) | `{"command":"ping","args":{}}` |
//! | pong (server) | `{"command":"pong"}` |
//! | auth (client) | `{"command":"auth","args":{"key":"Bearer …"}}` (`null` signs out) |
//! | error (server) | `{"error":{"code":"unknown_endpoint","message":"…","endpoint":"chatt"}}` |
//! | batch (server, streampod extension) | `{"endpoint":"chat","batch":[{"className":…,"data":…},…]}` |
//!
//! Channel history adds a `channel` and `offset` to message frames, a `joined` frame
//! and a `recover` command, all under the `streampod.v1` subprotocol: see
//! [`crate::history`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;
use crate::history::{ChannelOffset, JoinedFrame, RecoverFrame};
use crate::model::{EncodeError, ModelSet};

/// One decoded text frame. Strings borrow from the frame text where they have no escapes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// A model sent to or from an endpoint.
    Message(MessageFrame<'a>),
    /// Keepalive request; the server answers [`Frame::Pong`].
    Ping,
    /// Keepalive answer.
    Pong,
    /// Sets (or with `None`, clears) the session's auth key.
    Auth {
        /// The key as sent, possibly wrapped as `Bearer …`/`Basic …`
        /// (see [`crate::auth::unwrap_key`]).
        key: Option<Cow<'a, str>>,
    },
    /// The server rejected a frame.
    Error(ErrorFrame<'a>),
    /// Several messages from one endpoint in one frame (a batched broadcast); read them
    /// one by one with [`Frame::into_messages`].
    Batch(BatchFrame<'a>),
    /// The server joined the session to a history channel (`streampod.v1`).
    Joined(JoinedFrame),
    /// The client's last positions, to recover from on its next joins (`streampod.v1`).
    Recover(RecoverFrame),
}

/// Messages from one endpoint sent as one frame: `{"endpoint":…,"batch":[…]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFrame<'a> {
    /// The endpoint every message is from.
    pub endpoint: Cow<'a, str>,
    /// The messages, in order: `(className, data)`.
    pub messages: Vec<(Cow<'a, str>, RawData<'a>)>,
}

/// A model's undecoded JSON, compared by its text.
#[derive(Debug, Clone, Copy)]
pub struct RawData<'a>(pub &'a RawValue);

impl PartialEq for RawData<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// An endpoint message: `{"endpoint":…,"object":{"className":…,"data":…}}`.
#[derive(Debug, Clone)]
pub struct MessageFrame<'a> {
    /// The endpoint the message is for (client → server) or from (server → client).
    pub endpoint: Cow<'a, str>,
    /// The model's class name, used to decode `data`.
    pub class_name: Cow<'a, str>,
    /// The model's JSON, undecoded until the endpoint is known.
    pub data: &'a RawValue,
    /// For a message from a history channel (`streampod.v1`): the channel and the
    /// message's position there.
    pub at: Option<ChannelOffset<'a>>,
    /// The W3C `traceparent` of the sender's span (optional, client → server): the
    /// server's span for the message continues that trace (feature `otel`).
    pub traceparent: Option<Cow<'a, str>>,
}

impl PartialEq for MessageFrame<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.endpoint == other.endpoint
            && self.class_name == other.class_name
            && self.data.get() == other.data.get()
            && self.at == other.at
            && self.traceparent == other.traceparent
    }
}

/// An error frame: `{"error":{"code":…,"message":…,"endpoint":…,"className":…}}`.
///
/// Its fields often echo what the client sent, so the encoded frame bounds them: the
/// endpoint and class name are cut to [`ErrorFrame::ECHO_LIMIT`] bytes and the message
/// to [`ErrorFrame::MESSAGE_LIMIT`], ending in `…`. A bad 1 MiB frame gets a small
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame<'a> {
    /// What went wrong, from a closed set.
    pub code: ErrorCode,
    /// A sentence for a developer reading the frame.
    pub message: Cow<'a, str>,
    /// The endpoint the rejected frame named, when it named one.
    pub endpoint: Option<Cow<'a, str>>,
    /// The class the rejected frame named, when it named one.
    pub class_name: Option<Cow<'a, str>>,
}

impl<'a> ErrorFrame<'a> {
    /// Most bytes of a client-chosen name (endpoint, class) an error frame repeats.
    pub const ECHO_LIMIT: usize = 128;
    /// Most bytes of an error frame's message.
    pub const MESSAGE_LIMIT: usize = 512;

    /// An error frame with only a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'a, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            endpoint: None,
            class_name: None,
        }
    }

    /// Names the endpoint the rejected frame was for.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<Cow<'a, str>>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Names the class the rejected frame carried.
    #[must_use]
    pub fn with_class_name(mut self, class_name: impl Into<Cow<'a, str>>) -> Self {
        self.class_name = Some(class_name.into());
        self
    }

    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(64 + self.message.len());
        self.encode(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"error\":{\"code\":");
        write_str(out, self.code.as_str());
        out.extend_from_slice(b",\"message\":");
        write_bounded(out, &self.message, Self::MESSAGE_LIMIT);
        if let Some(endpoint) = &self.endpoint {
            out.extend_from_slice(b",\"endpoint\":");
            write_bounded(out, endpoint, Self::ECHO_LIMIT);
        }
        if let Some(class_name) = &self.class_name {
            out.extend_from_slice(b",\"className\":");
            write_bounded(out, class_name, Self::ECHO_LIMIT);
        }
        out.extend_from_slice(b"}}");
    }
}

/// Why a text frame could not be read. Each maps to the [`ErrorCode`] the server answers with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The text is not JSON.
    #[error("frame is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The JSON is not one of the frame shapes.
    #[error("not a streampod frame: {0}")]
    Shape(String),
    /// A `command` frame names an unknown command.
    #[error("unknown command '{0}'; known commands: ping, auth, recover")]
    UnknownCommand(String),
}

impl FrameError {
    /// The error code the server answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotJson(_) => ErrorCode::InvalidJson,
            Self::Shape(_) => ErrorCode::InvalidFrame,
            Self::UnknownCommand(_) => ErrorCode::UnknownCommand,
        }
    }
}

impl<'a> Frame<'a> {
    /// Reads one text frame.
    ///
    /// ```
    /// use streampod_protocol::frame::Frame;
    /// let Frame::Message(message) =
    ///     Frame::parse(r#"{"endpoint":"chat","object":{"className":"ChatMessage","data":{"content":"hi"}}}"#)?
    /// else { unreachable!() };
    /// assert_eq!(message.endpoint, "chat");
    /// assert_eq!(message.data.get(), r#"{"content":"hi"}"#);
    /// # Ok::<(), streampod_protocol::frame::FrameError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`FrameError`]; [`FrameError::code`] gives the error frame's code.
    pub fn parse(text: &'a str) -> Result<Self, FrameError> {
        let raw: RawFrame<'a> = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                FrameError::Shape(e.to_string())
            } else {
                FrameError::NotJson(e)
            }
        })?;
        match raw {
            RawFrame {
                endpoint: Some(endpoint),
                batch: Some(batch),
                object: None,
                command: None,
                error: None,
                ..
            } => Ok(Frame::Batch(BatchFrame {
                endpoint: endpoint.0,
                messages: batch
                    .into_iter()
                    .map(|o| (o.class_name.0, RawData(o.data)))
                    .collect(),
            })),
            RawFrame {
                endpoint: Some(endpoint),
                object: Some(object),
                command: None,
                error: None,
                batch: None,
                channel,
                offset,
                traceparent,
                ..
            } => Ok(Frame::Message(MessageFrame {
                endpoint: endpoint.0,
                class_name: object.class_name.0,
                data: object.data,
                traceparent: traceparent.map(|traceparent| traceparent.0),
                at: match (channel, offset) {
                    (Some(channel), Some(offset)) => Some(ChannelOffset {
                        channel: channel.0,
                        offset,
                    }),
                    (None, None) => None,
                    _ => {
                        return Err(FrameError::Shape(
                            "a message's 'channel' and 'offset' come together".into(),
                        ))
                    }
                },
            })),
            RawFrame {
                endpoint: None,
                object: None,
                command: Some(command),
                error: None,
                batch: None,
                args,
                ..
            } => Self::command(command.0, args),
            RawFrame {
                endpoint: None,
                object: None,
                command: None,
                error: Some(error),
                batch: None,
                ..
            } => {
                let code =
                    error
                        .code
                        .0
                        .parse()
                        .map_err(|e: crate::error_code::UnknownErrorCode| {
                            FrameError::Shape(e.to_string())
                        })?;
                Ok(Frame::Error(ErrorFrame {
                    code,
                    message: error.message.0,
                    endpoint: error.endpoint.map(|e| e.0),
                    class_name: error.class_name.map(|c| c.0),
                }))
            }
            RawFrame {
                endpoint: Some(_),
                object: None,
                ..
            } => Err(FrameError::Shape(
                "an endpoint message needs an 'object' with 'className' and 'data'".into(),
            )),
            RawFrame {
                endpoint: None,
                object: Some(_),
                ..
            } => Err(FrameError::Shape(
                "an endpoint message needs an 'endpoint'".into(),
            )),
            _ => Err(FrameError::Shape(
                "expected {\"endpoint\":…,\"object\":…} or {\"command\":…,\"args\":…}".into(),
            )),
        }
    }

    fn command(name: Cow<'a, str>, args: Option<&'a RawValue>) -> Result<Self, FrameError> {
        match &*name {
            "ping" => Ok(Frame::Ping),
            "pong" => Ok(Frame::Pong),
            "recover" => {
                let args = args.map_or("null", RawValue::get);
                RecoverFrame::parse_args(args)
                    .map(Frame::Recover)
                    .map_err(FrameError::Shape)
            }
            "joined" => {
                let args = args.map_or("null", RawValue::get);
                serde_json::from_str(args)
                    .map(Frame::Joined)
                    .map_err(|e| FrameError::Shape(format!("joined args: {e}")))
            }
            "auth" => {
                let args = args.ok_or_else(|| {
                    FrameError::Shape("the auth command needs \"args\":{\"key\":…}".into())
                })?;
                let args: AuthArgs<'a> = serde_json::from_str(args.get()).map_err(|e| {
                    FrameError::Shape(format!(
                        "auth args: {e}; expected {{\"key\": string or null}}"
                    ))
                })?;
                Ok(Frame::Auth {
                    key: args.key.map(|k| k.0),
                })
            }
            _ => Err(FrameError::UnknownCommand(name.into_owned())),
        }
    }

    /// Appends the frame's JSON text to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Message(message) => {
                write_frame_head(out, &message.endpoint, b"object");
                write_raw_object(out, &message.class_name, message.data.get());
                out.push(b'}');
                if let Some(at) = &message.at {
                    append_offset(out, &at.channel, at.offset);
                }
                if let Some(traceparent) = &message.traceparent {
                    append_traceparent(out, traceparent);
                }
            }
            Frame::Joined(joined) => joined.encode(out),
            Frame::Recover(recover) => recover.encode(out),
            Frame::Ping => out.extend_from_slice(PING.as_bytes()),
            Frame::Pong => out.extend_from_slice(PONG.as_bytes()),
            Frame::Auth { key } => {
                out.extend_from_slice(b"{\"command\":\"auth\",\"args\":{\"key\":");
                match key {
                    Some(key) => write_str(out, key),
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b"}}");
            }
            Frame::Error(error) => error.encode(out),
            Frame::Batch(batch) => {
                write_frame_head(out, &batch.endpoint, b"batch");
                out.push(b'[');
                for (i, (class_name, data)) in batch.messages.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_raw_object(out, class_name, data.0.get());
                }
                out.extend_from_slice(b"]}");
            }
        }
    }

    /// The endpoint messages this frame carries: one for a message frame, each of a
    /// batch's in order, none for other frames. Clients use this to unpack batches.
    pub fn into_messages(self) -> Vec<MessageFrame<'a>> {
        match self {
            Frame::Message(message) => vec![message],
            Frame::Batch(batch) => batch
                .messages
                .into_iter()
                .map(|(class_name, data)| MessageFrame {
                    endpoint: batch.endpoint.clone(),
                    class_name,
                    data: data.0,
                    at: None,
                    traceparent: None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.encode(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The ping frame's text.
pub const PING: &str = r#"{"command":"ping","args":{}}"#;
/// The pong frame's text.
pub const PONG: &str = r#"{"command":"pong"}"#;

/// The WebSocket subprotocol (`Sec-WebSocket-Protocol`) a client requests to receive
/// streampod's extended frames: error frames and batch frames. A socket opened without
/// it gets only what a Serverpod client understands (endpoint frames and `pong`): errors
/// are logged on the server, a batch arrives as separate endpoint frames.
pub const EXTENDED_SUBPROTOCOL: &str = "streampod.v1";

/// Appends an endpoint message frame carrying `message` to `out`, encoding the model
/// straight into the buffer.
///
/// ```
/// # use streampod_protocol::{frame, ModelSet, DecodeError, EncodeError};
/// # use serde_json::value::RawValue;
/// # struct Hello;
/// # impl ModelSet for Hello {
/// #     fn class_name(&self) -> &'static str { "Hello" }
/// #     fn decode(_: &str, _: &RawValue) -> Result<Self, DecodeError> { Ok(Hello) }
/// #     fn encode_data(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> { out.extend_from_slice(b"{}"); Ok(()) }
/// #     fn class_names() -> &'static [&'static str] { &["Hello"] }
/// #     fn model(&self) -> &(dyn std::any::Any + Send + Sync) { self }
/// # }
/// let mut out = Vec::new();
/// frame::encode_message("chat", &Hello, &mut out)?;
/// assert_eq!(out, br#"{"endpoint":"chat","object":{"className":"Hello","data":{}}}"#);
/// # Ok::<(), EncodeError>(())
/// ```
///
/// # Errors
///
/// When the model cannot be encoded ([`EncodeError`]); `out` is then left as it was.
pub fn encode_message<P: ModelSet>(
    endpoint: &str,
    message: &P,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    write_frame_head(out, endpoint, b"object");
    if let Err(e) = encode_object(message, out) {
        out.truncate(start);
        return Err(e);
    }
    out.push(b'}');
    Ok(())
}

/// Appends a batch frame carrying `messages`, in order, to `out`.
///
/// # Errors
///
/// When a model cannot be encoded; `out` is then left as it was.
pub fn encode_batch<'m, P: ModelSet + 'm>(
    endpoint: &str,
    messages: impl IntoIterator<Item = &'m P>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    write_frame_head(out, endpoint, b"batch");
    out.push(b'[');
    for (i, message) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Err(e) = encode_object(message, out) {
            out.truncate(start);
            return Err(e);
        }
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// Appends `message` as a frame's object, `{"className":…,"data":…}`: the part of a
/// message frame that does not depend on the endpoint (what cluster nodes exchange).
///
/// # Errors
///
/// When the model cannot be encoded; `out` may then hold a partial object.
pub fn encode_object<P: ModelSet>(message: &P, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_object_head(out, message.class_name());
    message.encode_data(out)?;
    out.push(b'}');
    Ok(())
}

/// `{"className":"…","data":<data>}` from already encoded data.
fn write_raw_object(out: &mut Vec<u8>, class_name: &str, data: &str) {
    write_object_head(out, class_name);
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
}

/// `{"className":"…","data":`
fn write_object_head(out: &mut Vec<u8>, class_name: &str) {
    out.extend_from_slice(b"{\"className\":");
    write_str(out, class_name);
    out.extend_from_slice(b",\"data\":");
}

/// Appends a message frame around `object`, a JSON object as written by
/// [`encode_object`] (not checked: it is copied as is).
pub fn encode_message_with_object(endpoint: &str, object: &str, out: &mut Vec<u8>) {
    write_frame_head(out, endpoint, b"object");
    out.extend_from_slice(object.as_bytes());
    out.push(b'}');
}

/// Adds a channel and offset to the message frame that `out` ends with (just encoded
/// by [`encode_message`] or [`encode_message_with_object`]): what a `streampod.v1`
/// client gets from a history channel.
///
/// ```
/// use streampod_protocol::frame;
/// let mut out = Vec::new();
/// frame::encode_message_with_object("chat", r#"{"className":"Hi","data":{}}"#, &mut out);
/// frame::append_offset(&mut out, "room-1", 7);
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     r#"{"endpoint":"chat","object":{"className":"Hi","data":{}},"channel":"room-1","offset":7}"#
/// );
/// ```
pub fn append_offset(out: &mut Vec<u8>, channel: &str, offset: u64) {
    if out.last() == Some(&b'}') {
        out.pop();
    }
    out.extend_from_slice(b",\"channel\":");
    write_str(out, channel);
    out.extend_from_slice(b",\"offset\":");
    crate::history::write_u64(out, offset);
    out.push(b'}');
}

/// Adds the sender's W3C `traceparent` to the message frame that `out` ends with, so
/// the server's handling continues the sender's trace.
///
/// ```
/// use streampod_protocol::frame;
/// let mut out = Vec::new();
/// frame::encode_message_with_object("chat", r#"{"className":"Hi","data":{}}"#, &mut out);
/// frame::append_traceparent(&mut out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(
///     String::from_utf8(out).unwrap(),
///     r#"{"endpoint":"chat","object":{"className":"Hi","data":{}},"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#
/// );
/// ```
pub fn append_traceparent(out: &mut Vec<u8>, traceparent: &str) {
    if out.last() == Some(&b'}') {
        out.pop();
    }
    out.extend_from_slice(b",\"traceparent\":");
    write_str(out, traceparent);
    out.push(b'}');
}

/// `{"endpoint":"…","<key>":`
fn write_frame_head(out: &mut Vec<u8>, endpoint: &str, key: &[u8]) {
    out.extend_from_slice(b"{\"endpoint\":");
    write_str(out, endpoint);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
}

/// Appends `value` as a JSON string literal.
pub(crate) fn write_str(out: &mut Vec<u8>, value: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// Writes `value` as a JSON string, cut at a character boundary to at most `limit`
/// bytes (plus `…` when cut).
fn write_bounded(out: &mut Vec<u8>, value: &str, limit: usize) {
    if value.len() <= limit {
        return write_str(out, value);
    }
    let mut end = limit;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    write_str(out, &format!("{}…", &value[..end]));
}

/// The union of all frame shapes, for one pass of serde.
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow, default)]
    endpoint: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    object: Option<RawObject<'a>>,
    #[serde(borrow, default)]
    command: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    args: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<RawError<'a>>,
    #[serde(borrow, default)]
    batch: Option<Vec<RawObject<'a>>>,
    #[serde(borrow, default)]
    channel: Option<CowStr<'a>>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(borrow, default)]
    traceparent: Option<CowStr<'a>>,
}

#[derive(Deserialize)]
struct RawObject<'a> {
    #[serde(borrow, rename = "className")]
    class_name: CowStr<'a>,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct RawError<'a> {
    #[serde(borrow)]
    code: CowStr<'a>,
    #[serde(borrow)]
    message: CowStr<'a>,
    #[serde(borrow, default)]
    endpoint: Option<CowStr<'a>>,
    #[serde(borrow, default, rename = "className")]
    class_name: Option<CowStr<'a>>,
}

#[derive(Deserialize)]
struct AuthArgs<'a> {
    #[serde(borrow, default)]
    key: Option<CowStr<'a>>,
}

/// A string that borrows from the input unless it has escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CowVisitor;
        impl<'de> Visitor<'de> for CowVisitor {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(value.to_owned())))
            }
        }
        deserializer.deserialize_str(CowVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> ErrorCode {
        Frame::parse(text).unwrap_err().code()
    }

    #[test]
    fn reads_serverpod_frames() {
        assert_eq!(
            Frame::parse(r#"{"command":"ping","args":{}}"#).unwrap(),
            Frame::Ping
        );
        // Serverpod kills the session on a ping without args; we do not.
        assert_eq!(Frame::parse(r#"{"command":"ping"}"#).unwrap(), Frame::Ping);
        assert_eq!(
            Frame::parse(r#"{"command":"auth","args":{"key":"Bearer k"}}"#).unwrap(),
            Frame::Auth {
                key: Some("Bearer k".into())
            }
        );
        assert_eq!(
            Frame::parse(r#"{"command":"auth","args":{"key":null}}"#).unwrap(),
            Frame::Auth { key: None }
        );
        let Frame::Message(message) = Frame::parse(
            r#"{"endpoint":"ch\u0061t","object":{"className":"A","data":{"x": [1, 2]}}}"#,
        )
        .unwrap() else {
            panic!("not a message")
        };
        assert_eq!(message.endpoint, "chat");
        assert_eq!(message.data.get(), r#"{"x": [1, 2]}"#);
    }

    #[test]
    fn borrows_unescaped_strings() {
        let text = r#"{"endpoint":"chat","object":{"className":"A","data":{}}}"#;
        let Frame::Message(message) = Frame::parse(text).unwrap() else {
            panic!("not a message")
        };
        assert!(matches!(message.endpoint, Cow::Borrowed(_)));
        assert!(matches!(message.class_name, Cow::Borrowed(_)));
    }

    #[test]
    fn classifies_bad_frames() {
        assert_eq!(code_of("hello"), ErrorCode::InvalidJson);
        assert_eq!(code_of(r#"{"endpoint":"chat""#), ErrorCode::InvalidJson);
        assert_eq!(code_of("[]"), ErrorCode::InvalidFrame);
        assert_eq!(code_of("{}"), ErrorCode::InvalidFrame);
        assert_eq!(
            code_of(r#"{"endpoint":5,"object":{}}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(code_of(r#"{"endpoint":"chat"}"#), ErrorCode::InvalidFrame);
        assert_eq!(
            code_of(r#"{"object":{"className":"A","data":{}}}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code_of(r#"{"endpoint":"chat","object":{"data":{}}}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(code_of(r#"{"command":"auth"}"#), ErrorCode::InvalidFrame);
        assert_eq!(
            code_of(r#"{"command":"auth","args":{"key":3}}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(
            code_of(r#"{"command":"dance","args":{}}"#),
            ErrorCode::UnknownCommand
        );
        assert_eq!(
            code_of(r#"{"command":"ping","endpoint":"chat","object":{"className":"A","data":{}}}"#),
            ErrorCode::InvalidFrame
        );
    }

    #[test]
    fn error_frames_have_the_documented_shape() {
        let frame = ErrorFrame::new(
            ErrorCode::UnknownEndpoint,
            "no endpoint 'chatt'; did you mean 'chat'?",
        )
        .with_endpoint("chatt");
        assert_eq!(
            frame.to_json(),
            r#"{"error":{"code":"unknown_endpoint","message":"no endpoint 'chatt'; did you mean 'chat'?","endpoint":"chatt"}}"#
        );
        assert_eq!(Frame::parse(&frame.to_json()).unwrap(), Frame::Error(frame));
        assert_eq!(
            code_of(r#"{"error":{"code":"bogus","message":""}}"#),
            ErrorCode::InvalidFrame
        );
    }
}
