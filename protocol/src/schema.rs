//! What a server's HTTP methods take and answer, as JSON a client generator reads.
//!
//! A server built with `#[endpoint]` methods describes them with
//! `ServerBuilder::method_schema()`; `streampod-codegen` reads the same JSON
//! (`Builder::methods`, or `streampod-codegen typescript … --methods FILE`) to give the
//! TypeScript client one typed function per method. The Rust signatures are the one
//! source of truth: types are written in the model files' syntax (`List<ChatMessage>?`),
//! as [`WireValue::model_type`](crate::wire::WireValue::model_type) spells them.
//!
//! ```
//! use streampod_protocol::schema::MethodSchema;
//!
//! let json = r#"{"endpoints":[{"name":"chat","methods":[{"name":"history",
//!     "args":[{"name":"channelId","type":"String"},{"name":"before","type":"int?"}],
//!     "returns":"ChatHistory","exceptions":["InvalidRequest"],
//!     "requireLogin":false,"scopes":[]}]}]}"#;
//! let schema: MethodSchema = serde_json::from_str(json)?;
//! assert_eq!(schema.endpoints[0].methods[0].args[1].ty, "int?");
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::{Deserialize, Serialize};

/// Every endpoint with HTTP methods, in registration order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSchema {
    /// The endpoints.
    pub endpoints: Vec<EndpointSchema>,
}

/// One endpoint's methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSchema {
    /// The endpoint's name as registered (`chat`, `serverpod_auth.status`).
    pub name: String,
    /// Its methods, in declaration order.
    pub methods: Vec<MethodSignature>,
}

/// One method: `POST /<endpoint>/<name>` with its named arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodSignature {
    /// The camelCase name on the wire.
    pub name: String,
    /// The method's doc comment (empty when it has none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docs: String,
    /// The arguments, in declaration order; nullable ones (`int?`) may be left out.
    pub args: Vec<ArgSignature>,
    /// Whether the method is a streaming method, opened over `/v1/websocket` rather
    /// than called over HTTP (it returns a stream or takes input streams).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub streaming: bool,
    /// The input streams the client feeds while a streaming method runs, by parameter
    /// name; each type is the item type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_streams: Vec<ArgSignature>,
    /// The answer's type; `void` answers `null`. A streaming method that returns a
    /// stream answers `Stream<T>`.
    pub returns: String,
    /// Exception classes the method throws (as `{"className":…,"data":…}` with 400).
    pub exceptions: Vec<String>,
    /// Whether the call needs a signed-in key.
    pub require_login: bool,
    /// Scopes the key needs.
    pub scopes: Vec<String>,
}

/// One named argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgSignature {
    /// The camelCase name on the wire.
    pub name: String,
    /// Its type in model-file syntax.
    #[serde(rename = "type")]
    pub ty: String,
}
