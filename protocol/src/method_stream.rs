//! Serverpod's streaming-method protocol (`/v1/websocket`, Serverpod 2.1 and later):
//! many method calls on one socket, each keyed by a connection id (`cid`), each with a
//! stream of answers and any number of input streams.
//!
//! Every frame is `{"type": T, "data": {…}}` (`data` left out when empty). Released
//! clients use short keys; the 2.1 pre-releases used long ones for the same messages.
//! [`MethodStreamFrame::parse`] accepts both and says which one a peer used
//! ([`KeyForm`]), so the answer can be written in the same form
//! ([`MethodStreamFrame::to_json`]).
//!
//! | message | short type | long type | data keys (short / long) |
//! |---|---|---|---|
//! | ping, pong | `ping`, `pong` | `ping_command`, `pong_command` | none |
//! | open a call | `omsc` | `open_method_stream_command` | `en m cid args is auth? am?` / `endpoint method connectionId args inputStreams authentication?` |
//! | the open's result | `omsr` | `open_method_stream_response` | `en m cid res` / `endpoint method connectionId responseType` |
//! | a message, either way | `msm` | `method_message` | `en m cid p? o` / `endpoint method connectionId parameter? object` |
//! | an exception thrown | `msse` | `method_stream_serializable_exception` | `en m cid p? ex` / `… parameter? exception` |
//! | close a stream | `cmsc` | `close_method_stream_command` | `en m cid p? cr` / `… parameter? reason` |
//! | a frame that made no sense | `brm` | `bad_request_message` | `req` / `request` |
//! | where a call stands (streampod) | `msp` | `method_stream_position` | `en m cid pos? rec` / `… position? recovered` |
//!
//! streampod's extension, for clients that ask for it (Serverpod's never do, and never
//! see any of it): an open with `pos` (`true`, or the position `{"epoch":…,"offset":…}`
//! to resume after) gets an `msp` right after its `success`, saying where the call's
//! channel stands and whether everything after the given position follows (`rec`);
//! its answer messages then carry their offset (`at`), so a client that lost its socket
//! opens the call again from the last one it got. `pos` is absent from `msp` when the
//! call has no positions to give (its channel keeps no history).
//! `args` is a string holding the JSON object of named arguments; `is` names the
//! arguments that are input streams; `o` and `ex` are `{"className":…,"data":…}`; `p`
//! names the input stream a message, exception or close is for (absent: the method's own
//! answer stream); `res` is one of [`OpenResult`]; `cr` is `done` or `error`. A `cmsc`
//! without `p` ends the whole call.
//!
//! One exchange of each kind, client (→) and server (←):
//!
//! ```text
//! → {"type":"ping"}
//! ← {"type":"pong"}
//! → {"type":"omsc","data":{"en":"chat","m":"echo","cid":"0f8fad5b-d9cb-469f-a165-70867728950e","args":"{\"times\":2}","is":["words"]}}
//! ← {"type":"omsr","data":{"en":"chat","m":"echo","cid":"0f8fad5b-…","res":"success"}}
//! → {"type":"msm","data":{"en":"chat","m":"echo","cid":"0f8fad5b-…","p":"words","o":{"className":"String","data":"hi"}}}
//! ← {"type":"msm","data":{"en":"chat","m":"echo","cid":"0f8fad5b-…","o":{"className":"String","data":"hi hi"}}}
//! → {"type":"cmsc","data":{"en":"chat","m":"echo","cid":"0f8fad5b-…","p":"words","cr":"done"}}
//! ← {"type":"msse","data":{"en":"chat","m":"echo","cid":"0f8fad5b-…","ex":{"className":"InvalidRequest","data":{"message":"…"}}}}
//! ← {"type":"cmsc","data":{"en":"chat","m":"echo","cid":"0f8fad5b-…","cr":"error"}}
//! → {"type":"nonsense"}
//! ← {"type":"brm","data":{"req":"{\"type\":\"nonsense\"}"}}
//! ```
//!
//! ```
//! use streampod_protocol::method_stream::{KeyForm, MethodStreamFrame, OpenResult};
//!
//! let text = r#"{"type":"omsc","data":{"en":"chat","m":"messages","cid":"0f8fad5b-d9cb-469f-a165-70867728950e","args":"{\"channelId\":\"lobby\"}","is":[]}}"#;
//! let (frame, form) = MethodStreamFrame::parse(text)?;
//! let MethodStreamFrame::Open(open) = frame else { panic!("an open") };
//! assert_eq!((open.call.endpoint.as_str(), open.call.method.as_str()), ("chat", "messages"));
//! assert_eq!(form, KeyForm::Short);
//!
//! let answer = MethodStreamFrame::OpenResponse { call: open.call, result: OpenResult::Success };
//! assert!(answer.to_json(form).contains(r#""res":"success""#));
//! # Ok::<(), streampod_protocol::method_stream::MethodStreamError>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::frame::write_str;
use crate::history::Position;
use crate::wire::{FromWire, Wire, WireValue};

/// Which generation of key names a peer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// `omsc`, `en`, `cid`, …: every released client.
    Short,
    /// `open_method_stream_command`, `endpoint`, `connectionId`, …: the 2.1 pre-releases.
    Long,
}

/// What opening a call came to (`res`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenResult {
    /// The call is open.
    Success,
    /// No such endpoint or method.
    EndpointNotFound,
    /// The method needs a signed-in key and the call had none that is valid.
    AuthenticationFailed,
    /// The key lacks a scope the method needs.
    AuthorizationDeclined,
    /// The arguments do not fit the method.
    InvalidArguments,
}

impl OpenResult {
    const ALL: [OpenResult; 5] = [
        OpenResult::Success,
        OpenResult::EndpointNotFound,
        OpenResult::AuthenticationFailed,
        OpenResult::AuthorizationDeclined,
        OpenResult::InvalidArguments,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OpenResult::Success => "success",
            OpenResult::EndpointNotFound => "endpointNotFound",
            OpenResult::AuthenticationFailed => "authenticationFailed",
            OpenResult::AuthorizationDeclined => "authorizationDeclined",
            OpenResult::InvalidArguments => "invalidArguments",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|result| result.as_str() == name)
    }
}

/// Why a stream closed (`cr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// It ended normally.
    Done,
    /// It ended with an error (an exception went before it, or none could be sent).
    Error,
}

impl CloseReason {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Done => "done",
            CloseReason::Error => "error",
        }
    }
}

/// Which call a frame is about: the endpoint, the method and the call's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId {
    /// The endpoint (`en`).
    pub endpoint: String,
    /// The method (`m`).
    pub method: String,
    /// The id the client chose for the call (`cid`).
    pub connection_id: Uuid,
}

/// A client opening a call (`omsc`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenCall {
    /// The call.
    pub call: CallId,
    /// The JSON object of named arguments, as text (`args`).
    pub args: String,
    /// The arguments that are input streams (`is`).
    pub input_streams: Vec<String>,
    /// The call's own auth key (`auth`), as sent.
    pub authentication: Option<String>,
    /// Serverpod 4's web auth mode (`am`): how a browser's cookie may authenticate.
    pub auth_mode: Option<String>,
    /// streampod's extension (`pos`): the client wants positions, and to resume after
    /// one if it gives one. `None` for Serverpod's clients.
    pub resume: Option<Resume>,
    /// streampod's extension (`traceparent`): the W3C trace context of the caller, so
    /// the server's handling of the call continues its trace. `None` for Serverpod's
    /// clients.
    pub traceparent: Option<String>,
}

/// What a client that wants positions asks of a call (`pos` of `omsc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Positions from now on (`true`).
    Fresh,
    /// Everything after this position first, then on (`{"epoch":…,"offset":…}`).
    After(Position),
}

impl<'de> Deserialize<'de> for Resume {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Flag(bool),
            After(Position),
        }
        match Form::deserialize(deserializer)? {
            Form::Flag(true) => Ok(Self::Fresh),
            Form::Flag(false) => Err(serde::de::Error::custom(
                "'false' asks for nothing: leave the key out",
            )),
            Form::After(position) => Ok(Self::After(position)),
        }
    }
}

/// One frame of the streaming-method protocol.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MethodStreamFrame {
    /// Keepalive request; answered with [`MethodStreamFrame::Pong`].
    Ping,
    /// Keepalive answer.
    Pong,
    /// Open a call.
    Open(OpenCall),
    /// What opening a call came to.
    OpenResponse {
        /// The call.
        call: CallId,
        /// The result.
        result: OpenResult,
    },
    /// A value on a stream: from the client to an input stream (`parameter` set), from
    /// the server on the answer stream (`parameter` absent).
    Message {
        /// The call.
        call: CallId,
        /// The input stream, or `None` for the answer stream.
        parameter: Option<String>,
        /// `{"className":…,"data":…}`, as JSON text.
        object: String,
        /// The value's offset in its channel (`at`), for a call that asked for
        /// positions; `None` otherwise.
        at: Option<u64>,
    },
    /// An exception on a stream, `{"className":…,"data":…}`.
    Exception {
        /// The call.
        call: CallId,
        /// The input stream, or `None` for the answer stream.
        parameter: Option<String>,
        /// `{"className":…,"data":…}`, as JSON text.
        exception: String,
    },
    /// A stream ends: one input stream (`parameter` set) or the whole call.
    Close {
        /// The call.
        call: CallId,
        /// The input stream, or `None` for the call.
        parameter: Option<String>,
        /// Why.
        reason: CloseReason,
    },
    /// Where a call that asked for positions stands (streampod's extension), sent
    /// right after its `success`.
    Position {
        /// The call.
        call: CallId,
        /// The newest position of the call's channel when the call opened; `None` when
        /// the call gives no positions.
        position: Option<Position>,
        /// Whether everything after the position the client resumed from follows
        /// before anything new; `false` when it asked to resume and cannot.
        recovered: bool,
    },
    /// A fresh key for the socket's calls (streampod's extension): every open call
    /// signed in as the same user with the same scopes takes the new key's expiry and
    /// goes on; later opens without a key of their own use it. `None` forgets the
    /// socket's key for later opens.
    Auth {
        /// The key, as for an open's `authentication`.
        key: Option<String>,
    },
    /// The server's answer to [`MethodStreamFrame::Auth`].
    AuthResponse {
        /// `success`, or `authenticationFailed` when the key was refused (the calls keep
        /// their keys, and end when those expire).
        result: OpenResult,
        /// How many open calls took the new key.
        refreshed: u32,
        /// Why the key was refused (`expired`, `bad_signature`, `revoked`, …).
        reason: Option<String>,
    },
    /// The other side sent a frame that made no sense; `request` is that frame's text.
    BadRequest {
        /// The frame as it came (the server cuts it to a bounded length).
        request: String,
    },
}

/// Why a text frame is no streaming-method frame; the server answers it with a
/// [`MethodStreamFrame::BadRequest`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MethodStreamError {
    /// Not a JSON object with a string `type`.
    #[error("not a streaming-method frame (expected {{\"type\":…,\"data\":{{…}}}}): {0}")]
    Json(#[source] serde_json::Error),
    /// A `type` this protocol does not have.
    #[error("unknown message type '{0}'")]
    UnknownType(String),
    /// A key the message needs is missing.
    #[error("'{kind}' needs '{key}' in its data")]
    Missing {
        /// The message type.
        kind: &'static str,
        /// The key, in the form the frame used.
        key: &'static str,
    },
    /// A key has a value of the wrong shape.
    #[error("'{key}' of '{kind}': {reason}")]
    Invalid {
        /// The message type.
        kind: &'static str,
        /// The key, in the form the frame used.
        key: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// The message types: (short name, long name).
const TYPES: [(&str, &str); 10] = [
    ("ping", "ping_command"),
    ("pong", "pong_command"),
    ("omsc", "open_method_stream_command"),
    ("omsr", "open_method_stream_response"),
    ("msm", "method_message"),
    ("msse", "method_stream_serializable_exception"),
    ("cmsc", "close_method_stream_command"),
    ("brm", "bad_request_message"),
    ("msp", "method_stream_position"),
    ("msa", "method_stream_auth"),
];

/// A data key in both forms.
#[derive(Clone, Copy)]
struct Key {
    short: &'static str,
    long: &'static str,
}

impl Key {
    fn name(self, form: KeyForm) -> &'static str {
        match form {
            KeyForm::Short => self.short,
            KeyForm::Long => self.long,
        }
    }
}

const ENDPOINT: Key = Key {
    short: "en",
    long: "endpoint",
};
const METHOD: Key = Key {
    short: "m",
    long: "method",
};
const CONNECTION_ID: Key = Key {
    short: "cid",
    long: "connectionId",
};
const ARGS: Key = Key {
    short: "args",
    long: "args",
};
const INPUT_STREAMS: Key = Key {
    short: "is",
    long: "inputStreams",
};
const AUTHENTICATION: Key = Key {
    short: "auth",
    long: "authentication",
};
const AUTH_MODE: Key = Key {
    short: "am",
    long: "authMode",
};
const RESPONSE: Key = Key {
    short: "res",
    long: "responseType",
};
const PARAMETER: Key = Key {
    short: "p",
    long: "parameter",
};
const OBJECT: Key = Key {
    short: "o",
    long: "object",
};
const EXCEPTION: Key = Key {
    short: "ex",
    long: "exception",
};
const CLOSE_REASON: Key = Key {
    short: "cr",
    long: "reason",
};
const REQUEST: Key = Key {
    short: "req",
    long: "request",
};
const RESUME: Key = Key {
    short: "pos",
    long: "position",
};
const TRACEPARENT: Key = Key {
    short: "traceparent",
    long: "traceparent",
};
const AT: Key = Key {
    short: "at",
    long: "offset",
};
const REFRESHED: Key = Key {
    short: "calls",
    long: "refreshedCalls",
};
const REASON: Key = Key {
    short: "why",
    long: "refusal",
};
const RECOVERED: Key = Key {
    short: "rec",
    long: "recovered",
};

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow, default)]
    data: Option<HashMap<String, &'a RawValue>>,
}

/// Reads the keys of one frame's `data`.
struct Data<'a> {
    kind: &'static str,
    form: KeyForm,
    values: HashMap<String, &'a RawValue>,
}

impl<'a> Data<'a> {
    fn raw(&self, key: Key) -> Option<&'a RawValue> {
        self.values
            .get(key.name(self.form))
            .copied()
            .filter(|raw| raw.get() != "null")
    }

    fn invalid(&self, key: Key, reason: impl fmt::Display) -> MethodStreamError {
        MethodStreamError::Invalid {
            kind: self.kind,
            key: key.name(self.form),
            reason: reason.to_string(),
        }
    }

    fn optional<T: serde::de::DeserializeOwned>(
        &self,
        key: Key,
    ) -> Result<Option<T>, MethodStreamError> {
        self.raw(key)
            .map(|raw| serde_json::from_str(raw.get()).map_err(|e| self.invalid(key, e)))
            .transpose()
    }

    fn required<T: serde::de::DeserializeOwned>(&self, key: Key) -> Result<T, MethodStreamError> {
        self.optional(key)?.ok_or(MethodStreamError::Missing {
            kind: self.kind,
            key: key.name(self.form),
        })
    }

    fn object(&self, key: Key) -> Result<String, MethodStreamError> {
        let raw = self.raw(key).ok_or(MethodStreamError::Missing {
            kind: self.kind,
            key: key.name(self.form),
        })?;
        #[derive(Deserialize)]
        struct Wrapped<'b> {
            #[serde(rename = "className")]
            _class_name: &'b str,
            #[serde(borrow, rename = "data")]
            _data: Option<&'b RawValue>,
        }
        serde_json::from_str::<Wrapped<'_>>(raw.get()).map_err(|e| {
            self.invalid(
                key,
                format_args!("expected {{\"className\":…,\"data\":…}}: {e}"),
            )
        })?;
        Ok(raw.get().to_owned())
    }

    fn call(&self) -> Result<CallId, MethodStreamError> {
        let id: String = self.required(CONNECTION_ID)?;
        let connection_id = Uuid::parse_str(&id)
            .map_err(|e| self.invalid(CONNECTION_ID, format_args!("not a UUID: {e}")))?;
        Ok(CallId {
            endpoint: self.required(ENDPOINT)?,
            method: self.required(METHOD)?,
            connection_id,
        })
    }
}

impl MethodStreamFrame {
    /// Reads a text frame in either key form, and says which.
    ///
    /// # Errors
    ///
    /// A [`MethodStreamError`] naming what is wrong; answer it with a
    /// [`MethodStreamFrame::BadRequest`].
    pub fn parse(text: &str) -> Result<(Self, KeyForm), MethodStreamError> {
        let envelope: Envelope<'_> = serde_json::from_str(text).map_err(MethodStreamError::Json)?;
        let (index, form) = TYPES
            .iter()
            .enumerate()
            .find_map(|(index, (short, long))| {
                if *short == envelope.kind {
                    Some((index, KeyForm::Short))
                } else if *long == envelope.kind {
                    Some((index, KeyForm::Long))
                } else {
                    None
                }
            })
            .ok_or_else(|| MethodStreamError::UnknownType(envelope.kind.clone()))?;
        let data = Data {
            kind: TYPES[index].0,
            form,
            values: envelope.data.unwrap_or_default(),
        };
        let frame = match data.kind {
            "ping" => Self::Ping,
            "pong" => Self::Pong,
            "omsc" => Self::Open(OpenCall {
                call: data.call()?,
                args: data.required(ARGS)?,
                input_streams: data.optional(INPUT_STREAMS)?.unwrap_or_default(),
                authentication: data.optional(AUTHENTICATION)?,
                auth_mode: data.optional(AUTH_MODE)?,
                resume: data.optional(RESUME)?,
                traceparent: data.optional(TRACEPARENT)?,
            }),
            "omsr" => {
                let name: String = data.required(RESPONSE)?;
                let result = OpenResult::from_name(&name).ok_or_else(|| {
                    data.invalid(RESPONSE, format_args!("unknown response type '{name}'"))
                })?;
                Self::OpenResponse {
                    call: data.call()?,
                    result,
                }
            }
            "msm" => Self::Message {
                call: data.call()?,
                parameter: data.optional(PARAMETER)?,
                object: data.object(OBJECT)?,
                at: data.optional(AT)?,
            },
            "msp" => Self::Position {
                call: data.call()?,
                position: data.optional(RESUME)?,
                recovered: data.optional(RECOVERED)?.unwrap_or(false),
            },
            "msa" => match data.optional::<String>(RESPONSE)? {
                Some(name) => Self::AuthResponse {
                    result: OpenResult::from_name(&name).ok_or_else(|| {
                        data.invalid(RESPONSE, format_args!("unknown response type '{name}'"))
                    })?,
                    refreshed: data.optional(REFRESHED)?.unwrap_or(0),
                    reason: data.optional(REASON)?,
                },
                None => Self::Auth {
                    key: data.optional(AUTHENTICATION)?,
                },
            },
            "msse" => Self::Exception {
                call: data.call()?,
                parameter: data.optional(PARAMETER)?,
                exception: data.object(EXCEPTION)?,
            },
            "cmsc" => {
                let name: String = data.required(CLOSE_REASON)?;
                let reason = match name.as_str() {
                    "done" => CloseReason::Done,
                    "error" => CloseReason::Error,
                    _ => {
                        return Err(data.invalid(
                            CLOSE_REASON,
                            format_args!("'{name}' is neither 'done' nor 'error'"),
                        ))
                    }
                };
                Self::Close {
                    call: data.call()?,
                    parameter: data.optional(PARAMETER)?,
                    reason,
                }
            }
            _ => Self::BadRequest {
                request: data.required(REQUEST)?,
            },
        };
        Ok((frame, form))
    }

    /// The frame's text in `form`.
    pub fn to_json(&self, form: KeyForm) -> String {
        let mut out = Vec::with_capacity(128);
        // The type's name in `form`; every `short` below is in TYPES.
        let kind = |short: &'static str| -> &'static str {
            TYPES
                .iter()
                .find(|(s, _)| *s == short)
                .map_or(short, |(s, l)| match form {
                    KeyForm::Short => s,
                    KeyForm::Long => l,
                })
        };
        let mut writer = Writer {
            out: &mut out,
            form,
            first: true,
        };
        match self {
            Self::Ping => writer.start(kind("ping"), false),
            Self::Pong => writer.start(kind("pong"), false),
            Self::Open(open) => {
                writer.start(kind("omsc"), true);
                writer.call(&open.call);
                writer.string(ARGS, &open.args);
                writer.key(INPUT_STREAMS);
                let names: Vec<&str> = open.input_streams.iter().map(String::as_str).collect();
                // Serializing strings into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *writer.out, &names);
                if let Some(auth) = &open.authentication {
                    writer.string(AUTHENTICATION, auth);
                }
                if let Some(mode) = &open.auth_mode {
                    writer.string(AUTH_MODE, mode);
                }
                match &open.resume {
                    None => {}
                    Some(Resume::Fresh) => {
                        writer.key(RESUME);
                        writer.out.extend_from_slice(b"true");
                    }
                    Some(Resume::After(position)) => writer.position(RESUME, position),
                }
                if let Some(traceparent) = &open.traceparent {
                    writer.string(TRACEPARENT, traceparent);
                }
            }
            Self::OpenResponse { call, result } => {
                writer.start(kind("omsr"), true);
                writer.call(call);
                writer.string(RESPONSE, result.as_str());
            }
            Self::Message {
                call,
                parameter,
                object,
                at,
            } => {
                writer.start(kind("msm"), true);
                writer.call(call);
                writer.parameter(parameter.as_deref());
                writer.key(OBJECT);
                writer.out.extend_from_slice(object.as_bytes());
                if let Some(at) = at {
                    writer.key(AT);
                    writer.out.extend_from_slice(at.to_string().as_bytes());
                }
            }
            Self::Position {
                call,
                position,
                recovered,
            } => {
                writer.start(kind("msp"), true);
                writer.call(call);
                if let Some(position) = position {
                    writer.position(RESUME, position);
                }
                writer.key(RECOVERED);
                writer
                    .out
                    .extend_from_slice(if *recovered { b"true" } else { b"false" });
            }
            Self::Exception {
                call,
                parameter,
                exception,
            } => {
                writer.start(kind("msse"), true);
                writer.call(call);
                writer.parameter(parameter.as_deref());
                writer.key(EXCEPTION);
                writer.out.extend_from_slice(exception.as_bytes());
            }
            Self::Close {
                call,
                parameter,
                reason,
            } => {
                writer.start(kind("cmsc"), true);
                writer.call(call);
                writer.parameter(parameter.as_deref());
                writer.string(CLOSE_REASON, reason.as_str());
            }
            Self::Auth { key } => {
                writer.start(kind("msa"), true);
                if let Some(key) = key {
                    writer.string(AUTHENTICATION, key);
                }
            }
            Self::AuthResponse {
                result,
                refreshed,
                reason,
            } => {
                writer.start(kind("msa"), true);
                writer.string(RESPONSE, result.as_str());
                writer.key(REFRESHED);
                writer
                    .out
                    .extend_from_slice(refreshed.to_string().as_bytes());
                if let Some(reason) = reason {
                    writer.string(REASON, reason);
                }
            }
            Self::BadRequest { request } => {
                writer.start(kind("brm"), true);
                writer.string(REQUEST, request);
            }
        }
        let has_data = !matches!(self, Self::Ping | Self::Pong);
        if has_data {
            out.push(b'}');
        }
        out.push(b'}');
        // Only JSON text was written.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `value` wrapped as a stream value travels (`o` of `msm`): `{"className":…,"data":…}`,
/// the class being the value's model type without `?` (`"int"`, `"ChatMessage"`,
/// `"List<String>"`), or `"null"` for a null value, as Serverpod's serialization manager
/// names them.
///
/// ```
/// use streampod_protocol::method_stream::{unwrap_value, wrap_value};
///
/// assert_eq!(wrap_value(&Some(7_i64)).unwrap(), r#"{"className":"int","data":7}"#);
/// assert_eq!(wrap_value(&None::<i64>).unwrap(), r#"{"className":"null","data":null}"#);
/// assert_eq!(unwrap_value::<i64>(r#"{"className":"int","data":7}"#).unwrap(), 7);
/// ```
///
/// # Errors
///
/// Whatever encoding the value reports.
pub fn wrap_value<T: WireValue>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    write_wrapped(&mut out, &wrapped_class::<T>(), value)?;
    // Only JSON text was written.
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// The class name values of `T` are wrapped with (see [`wrap_value`]): its model type
/// without `?`. Worked out once per stream, not per value.
pub fn wrapped_class<T: WireValue>() -> String {
    let mut class_name = T::model_type();
    if class_name.ends_with('?') {
        class_name.pop();
    }
    class_name
}

/// Appends [`wrap_value`]'s text to `out`, with `class_name` from [`wrapped_class`].
///
/// # Errors
///
/// Whatever encoding the value reports (`out` may then hold part of it).
pub fn write_wrapped<T: WireValue>(
    out: &mut Vec<u8>,
    class_name: &str,
    value: &T,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    out.extend_from_slice(br#"{"className":"#);
    write_str(out, class_name);
    out.extend_from_slice(br#","data":"#);
    let data = out.len();
    serde_json::to_writer(&mut *out, &Wire(value))?;
    if &out[data..] == b"null" {
        out.truncate(start);
        out.extend_from_slice(br#"{"className":"null","data":null"#);
    }
    out.push(b'}');
    Ok(())
}

/// A stream value's `{"className":…,"data":…}` split into its class name and its data
/// (as JSON text; `null` when absent).
#[derive(Debug, Deserialize)]
pub struct Wrapped<'a> {
    /// The class name (empty when absent).
    #[serde(rename = "className", default)]
    pub class_name: String,
    /// The data, as JSON text.
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

impl<'a> Wrapped<'a> {
    /// Reads `object`.
    ///
    /// # Errors
    ///
    /// When `object` is not a JSON object.
    pub fn parse(object: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(object)
    }

    /// The data as JSON text (`null` when absent).
    pub fn data(&self) -> &'a str {
        self.data.map_or("null", RawValue::get)
    }
}

/// The value in a stream value's `{"className":…,"data":…}`, decoded as `T` (the data
/// decides; the class name is not checked, so a `Stream<int?>` takes `"null"` and `"int"`).
///
/// # Errors
///
/// When `object` is not such an object or its data is no `T`.
pub fn unwrap_value<T: WireValue>(object: &str) -> Result<T, serde_json::Error> {
    let wrapped = Wrapped::parse(object)?;
    serde_json::from_str::<FromWire<T>>(wrapped.data()).map(|value| value.0)
}

/// What follows the object of an answer-stream `msm` frame (see [`answer_message_head`]).
pub const ANSWER_MESSAGE_TAIL: &str = "}}";

/// The text of an answer-stream [`MethodStreamFrame::Message`] of `call` in `form` up to
/// its object: a server writes it once per call, then per value the head, the object
/// and [`ANSWER_MESSAGE_TAIL`].
///
/// ```
/// use streampod_protocol::method_stream::{answer_message_head, CallId, KeyForm, MethodStreamFrame, ANSWER_MESSAGE_TAIL};
///
/// let call = CallId {
///     endpoint: "chat".into(),
///     method: "messages".into(),
///     connection_id: uuid::Uuid::nil(),
/// };
/// let object = r#"{"className":"int","data":1}"#;
/// let text = format!("{}{object}{ANSWER_MESSAGE_TAIL}", answer_message_head(&call, KeyForm::Short));
/// let frame = MethodStreamFrame::Message { call, parameter: None, object: object.into(), at: None };
/// assert_eq!(text, frame.to_json(KeyForm::Short));
/// ```
pub fn answer_message_head(call: &CallId, form: KeyForm) -> String {
    let mut text = MethodStreamFrame::Message {
        call: call.clone(),
        parameter: None,
        object: String::new(),
        at: None,
    }
    .to_json(form);
    text.truncate(text.len() - ANSWER_MESSAGE_TAIL.len());
    text
}

/// Writes one frame's keys in one form.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
    form: KeyForm,
    first: bool,
}

impl Writer<'_> {
    fn start(&mut self, kind: &str, with_data: bool) {
        self.out.extend_from_slice(b"{\"type\":");
        write_str(self.out, kind);
        if with_data {
            self.out.extend_from_slice(b",\"data\":{");
        }
    }

    fn key(&mut self, key: Key) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, key.name(self.form));
        self.out.push(b':');
    }

    fn string(&mut self, key: Key, value: &str) {
        self.key(key);
        write_str(self.out, value);
    }

    fn call(&mut self, call: &CallId) {
        self.string(ENDPOINT, &call.endpoint);
        self.string(METHOD, &call.method);
        self.string(CONNECTION_ID, &call.connection_id.hyphenated().to_string());
    }

    fn position(&mut self, key: Key, position: &Position) {
        self.key(key);
        // A string and a number: cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, position);
    }

    fn parameter(&mut self, parameter: Option<&str>) {
        if let Some(parameter) = parameter {
            self.string(PARAMETER, parameter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn call() -> CallId {
        CallId {
            endpoint: "chat".into(),
            method: "echo".into(),
            connection_id: Uuid::parse_str(CID).unwrap(),
        }
    }

    fn object(text: &str) -> String {
        text.to_owned()
    }

    fn every_frame() -> Vec<MethodStreamFrame> {
        vec![
            MethodStreamFrame::Ping,
            MethodStreamFrame::Pong,
            MethodStreamFrame::Open(OpenCall {
                call: call(),
                args: r#"{"times":2}"#.into(),
                input_streams: vec!["words".into()],
                authentication: Some("Bearer key".into()),
                auth_mode: None,
                resume: Some(Resume::After(Position::new("e1", 16))),
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            }),
            MethodStreamFrame::OpenResponse {
                call: call(),
                result: OpenResult::InvalidArguments,
            },
            MethodStreamFrame::Message {
                call: call(),
                parameter: Some("words".into()),
                object: object(r#"{"className":"String","data":"hi"}"#),
                at: None,
            },
            MethodStreamFrame::Message {
                call: call(),
                parameter: None,
                object: object(r#"{"className":"ChatMessage","data":{"content":"x"}}"#),
                at: Some(17),
            },
            MethodStreamFrame::Position {
                call: call(),
                position: Some(Position::new("e1", 17)),
                recovered: true,
            },
            MethodStreamFrame::Position {
                call: call(),
                position: None,
                recovered: false,
            },
            MethodStreamFrame::Exception {
                call: call(),
                parameter: None,
                exception: object(r#"{"className":"InvalidRequest","data":{"message":"no"}}"#),
            },
            MethodStreamFrame::Close {
                call: call(),
                parameter: Some("words".into()),
                reason: CloseReason::Done,
            },
            MethodStreamFrame::Close {
                call: call(),
                parameter: None,
                reason: CloseReason::Error,
            },
            MethodStreamFrame::Auth {
                key: Some("Bearer fresh".into()),
            },
            MethodStreamFrame::Auth { key: None },
            MethodStreamFrame::AuthResponse {
                result: OpenResult::Success,
                refreshed: 2,
                reason: None,
            },
            MethodStreamFrame::AuthResponse {
                result: OpenResult::AuthenticationFailed,
                refreshed: 0,
                reason: Some("expired".into()),
            },
            MethodStreamFrame::BadRequest {
                request: r#"{"type":"nonsense"}"#.into(),
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_in_both_forms() {
        for frame in every_frame() {
            for form in [KeyForm::Short, KeyForm::Long] {
                let text = frame.to_json(form);
                let (parsed, read_form) =
                    MethodStreamFrame::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(parsed, frame, "{text}");
                assert_eq!(read_form, form, "{text}");
            }
        }
    }

    #[test]
    fn frames_as_released_clients_send_them() {
        let open = format!(
            r#"{{"type":"omsc","data":{{"en":"chat","m":"messages","cid":"{CID}","args":"{{\"channelId\":\"lobby\"}}","is":[],"auth":"k"}}}}"#
        );
        let (frame, form) = MethodStreamFrame::parse(&open).unwrap();
        assert_eq!(form, KeyForm::Short);
        let MethodStreamFrame::Open(open) = frame else {
            panic!("an open")
        };
        assert_eq!(open.args, r#"{"channelId":"lobby"}"#);
        assert_eq!(open.authentication.as_deref(), Some("k"));
        assert_eq!(
            MethodStreamFrame::parse(r#"{"type":"ping"}"#).unwrap(),
            (MethodStreamFrame::Ping, KeyForm::Short)
        );
        assert_eq!(
            MethodStreamFrame::Pong.to_json(KeyForm::Short),
            r#"{"type":"pong"}"#
        );
        let response = MethodStreamFrame::OpenResponse {
            call: call(),
            result: OpenResult::Success,
        };
        assert_eq!(
            response.to_json(KeyForm::Short),
            format!(
                r#"{{"type":"omsr","data":{{"en":"chat","m":"echo","cid":"{CID}","res":"success"}}}}"#
            )
        );
    }

    #[test]
    fn frames_as_the_pre_releases_sent_them() {
        let close = format!(
            r#"{{"type":"close_method_stream_command","data":{{"endpoint":"chat","method":"echo","connectionId":"{CID}","parameter":"words","reason":"done"}}}}"#
        );
        let (frame, form) = MethodStreamFrame::parse(&close).unwrap();
        assert_eq!(form, KeyForm::Long);
        assert_eq!(
            frame,
            MethodStreamFrame::Close {
                call: call(),
                parameter: Some("words".into()),
                reason: CloseReason::Done
            }
        );
        assert_eq!(
            MethodStreamFrame::Pong.to_json(KeyForm::Long),
            r#"{"type":"pong_command"}"#
        );
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        let cases = [
            ("[]", "not a streaming-method frame"),
            (r#"{"type":"nonsense"}"#, "unknown message type 'nonsense'"),
            (
                r#"{"type":"omsc","data":{"en":"chat","m":"x","args":"{}"}}"#,
                "'omsc' needs 'cid'",
            ),
            (
                r#"{"type":"omsc","data":{"en":"chat","m":"x","cid":"nope","args":"{}"}}"#,
                "'cid' of 'omsc': not a UUID",
            ),
            (
                &format!(
                    r#"{{"type":"cmsc","data":{{"en":"a","m":"b","cid":"{CID}","cr":"later"}}}}"#
                ),
                "'cr' of 'cmsc': 'later' is neither",
            ),
            (
                &format!(
                    r#"{{"type":"omsr","data":{{"en":"a","m":"b","cid":"{CID}","res":"maybe"}}}}"#
                ),
                "unknown response type 'maybe'",
            ),
            (
                &format!(
                    r#"{{"type":"msm","data":{{"en":"a","m":"b","cid":"{CID}","o":{{"data":1}}}}}}"#
                ),
                "'o' of 'msm': expected {\"className\"",
            ),
            (
                &format!(
                    r#"{{"type":"method_message","data":{{"endpoint":"a","method":"b","connectionId":"{CID}"}}}}"#
                ),
                "'msm' needs 'object'",
            ),
        ];
        for (text, expected) in cases {
            let error = MethodStreamFrame::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
