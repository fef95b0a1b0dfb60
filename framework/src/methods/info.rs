//! What the `#[endpoint]` macro records about each method: its name, arguments, input
//! streams and access rules ([`MethodInfo`]), and its types ([`MethodTypes`]).

/// What the `#[endpoint]` macro records about one method.
#[doc(hidden)]
#[derive(Debug)]
pub struct MethodInfo {
    /// The camelCase name on the wire.
    pub name: &'static str,
    /// The method's doc comment.
    pub docs: &'static str,
    /// Argument names, camelCase, in declaration order (input streams not included).
    pub args: &'static [&'static str],
    /// Input stream names, camelCase, in declaration order.
    pub input_streams: &'static [&'static str],
    /// Whether the method is opened over `/v1/websocket` rather than called over HTTP.
    pub streaming: bool,
    /// Whether a signed-in session is required.
    pub require_login: bool,
    /// Scopes required.
    pub scopes: &'static [&'static str],
}

/// What the `#[endpoint]` macro records about one method's types, in model-file syntax
/// (from [`WireValue::model_type`](crate::protocol::wire::WireValue::model_type)).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct MethodTypes {
    /// The arguments' types, in the table's order.
    pub args: Vec<String>,
    /// The input streams' item types, in the table's order.
    pub input_streams: Vec<String>,
    /// The answer's type (`void` for `()`).
    pub returns: String,
    /// The exception class of the error type, if it is one.
    pub exception: Option<&'static str>,
}
