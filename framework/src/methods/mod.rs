//! Endpoint methods callable over HTTP, as Serverpod's request/response methods.
//!
//! Mark an inherent `impl` block with [`#[endpoint]`](crate::endpoint::definition) and register it with
//! [`ServerBuilder::methods`](crate::ServerBuilder::methods). Each `pub async fn` becomes
//! `POST /<endpoint>/<methodName>` (camelCase), taking a JSON object of named arguments
//! and answering with the JSON of its return value:
//!
//! ```no_run
//! # streampod::__doc_models!();
//! use streampod::{endpoint, EndpointError, Session};
//!
//! struct Greeter;
//!
//! #[endpoint]
//! impl Greeter {
//!     /// `POST /greeter/hello` with `{"name":"ann","times":2}` answers `"hello ann hello ann"`.
//!     pub async fn hello(&self, session: &Session<Protocol>, name: String, times: i64) -> Result<String, EndpointError> {
//!         let _ = session.authenticated_user_id();
//!         Ok(vec![format!("hello {name}"); times.max(0) as usize].join(" "))
//!     }
//! }
//! ```
//!
//! Method shapes: the `&Session<P>` argument is optional (it must come first when
//! present); arguments are any type with a Serverpod JSON form (scalars, `Option`, `Vec`,
//! maps, generated models and enums), matched by camelCase name, `Option` ones may be
//! left out; the return type is `Result<R, E>` or a plain `R` (`()` answers `null`).
//! `E` is [`EndpointError`] (500, details only in the log), a generated exception (400
//! with `{"className":…,"data":…}`) or [`MethodError`] (its own status).
//!
//! Call shapes, as Serverpod's clients send them: `POST /<endpoint>/<method>` (4.0
//! clients) or `POST /<endpoint>` with `"method"` in the body (2.x/3.x); URL query
//! parameters are merged into the arguments and override a body argument of the same
//! name, in Serverpod's order. An endpoint registered with a module prefix
//! (`.methods("serverpod_auth.status", …)`) is reached as Serverpod's module endpoints
//! are, `POST /serverpod_auth.status/<method>`. The key travels in the `Authorization`
//! header (`Bearer`/`Basic` unwrapped); `?auth=` is refused on method calls, with a
//! message saying so, because URLs end up in access logs (Serverpod 2.9/3.4 accept it;
//! its own clients send the header). Browsers on other origins are answered by
//! [`Cors`](crate::Cors).
//!
//! Statuses: 404 unknown endpoint or method (Serverpod says 400 for an unknown method; a
//! missing resource is what it is, and a Dart client then raises its not-found exception
//! rather than bad-request), 400 bad JSON or missing, extra or ill-typed arguments
//! (naming the argument), 401 no valid key for a login-only method, 403 missing scope,
//! 413 body over [`ServerConfig::max_body_size`](crate::ServerConfig), 500 for anything
//! else. Every error body is JSON.

pub(crate) mod input;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use http::StatusCode;
use serde_json::value::RawValue;

use crate::auth::{AuthInfo, Scope};
use crate::cluster::ClusterError;
use crate::endpoint::definition::EndpointError;
use crate::endpoint::server_handle::ServerHandle;
use crate::messages::central::MessageCentral;
use crate::messages::PostError;
use crate::methods::input::Inputs;
use crate::protocol::schema::{ArgSignature, EndpointSchema, MethodSchema, MethodSignature};
use crate::protocol::wire::{FromWire, Wire, WireValue};
use crate::protocol::{ModelSet, SerializableException};

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

/// Reads a type's [`WireValue::model_type`] and [`IntoMethodError::exception_class`] for
/// the method schema without demanding the traits: a type that lacks them is already
/// reported where the call decodes or answers it, once (autoref specialization: the
/// `…Fallback` traits apply only when the real impls do not).
#[doc(hidden)]
#[derive(Debug)]
pub struct TypeProbe<T>(std::marker::PhantomData<T>);

impl<T> TypeProbe<T> {
    /// A probe of `T`.
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Default for TypeProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The real reads, for types with the traits.
#[doc(hidden)]
pub trait ProbeTypes {
    /// `T::model_type()`.
    fn model_type(&self) -> String;
    /// `T::exception_class()`.
    fn exception_class(&self) -> Option<&'static str>;
}

impl<T: WireValue> ProbeTypes for TypeProbe<T> {
    fn model_type(&self) -> String {
        T::model_type()
    }

    fn exception_class(&self) -> Option<&'static str> {
        None
    }
}

/// The fallback reads, for a type without [`WireValue`] (a program that does not compile).
#[doc(hidden)]
pub trait ProbeTypesFallback {
    /// Empty.
    fn model_type(&self) -> String;
    /// `None`.
    fn exception_class(&self) -> Option<&'static str>;
}

impl<T> ProbeTypesFallback for &TypeProbe<T> {
    fn model_type(&self) -> String {
        String::new()
    }

    fn exception_class(&self) -> Option<&'static str> {
        None
    }
}

/// An error type's exception class, for the method schema (see [`TypeProbe`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct ErrorProbe<E>(std::marker::PhantomData<E>);

impl<E> ErrorProbe<E> {
    /// A probe of `E`.
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<E> Default for ErrorProbe<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: IntoMethodError> ProbeTypes for ErrorProbe<E> {
    fn model_type(&self) -> String {
        String::new()
    }

    fn exception_class(&self) -> Option<&'static str> {
        E::exception_class()
    }
}

impl<E> ProbeTypesFallback for &ErrorProbe<E> {
    fn model_type(&self) -> String {
        String::new()
    }

    fn exception_class(&self) -> Option<&'static str> {
        None
    }
}

/// The future of one method call: the encoded JSON answer or an error.
#[doc(hidden)]
pub type MethodFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, MethodError>> + Send + 'a>>;

/// One step of a streaming-method call's answer.
#[doc(hidden)]
#[derive(Debug)]
pub enum Answer {
    /// The call is open: the client may be told `success`. A method without input
    /// streams is run first (so what it subscribes to is in place when the client
    /// hears `success`); one with inputs is opened at once, as its client sends
    /// inputs only after `success`.
    Opened,
    /// A value, as `{"className":…,"data":…}` JSON text.
    Value(Vec<u8>),
    /// The error that ends the call.
    Failed(MethodError),
}

/// The answer stream of one streaming-method call.
#[doc(hidden)]
pub type OutputStream<'a> = Pin<Box<dyn Stream<Item = Answer> + Send + 'a>>;

/// The answer of a value or an error; `class_name` from
/// [`wrapped_class`](crate::protocol::method_stream::wrapped_class).
fn answer_of<T: WireValue>(class_name: &str, item: Result<T, MethodError>) -> Answer {
    let value = match item {
        Ok(value) => value,
        Err(error) => return Answer::Failed(error),
    };
    let mut object = Vec::with_capacity(256);
    match crate::protocol::method_stream::write_wrapped(&mut object, class_name, &value) {
        Ok(()) => Answer::Value(object),
        Err(e) => Answer::Failed(MethodError::internal(format_args!(
            "cannot encode a stream value: {e}"
        ))),
    }
}

/// The answer stream of a method returning a stream: `open` runs the method (when the
/// stream is first polled) and gives its stream or the error that refused the call.
/// `has_inputs`: the method takes input streams (see [`Answer::Opened`]).
#[doc(hidden)]
pub fn answer_stream<'a, F, S, T>(has_inputs: bool, open: F) -> OutputStream<'a>
where
    F: Future<Output = Result<S, MethodError>> + Send + 'a,
    S: Stream<Item = Result<T, MethodError>> + Send + 'a,
    T: WireValue + Send + 'a,
{
    let class_name = crate::protocol::method_stream::wrapped_class::<T>();
    let opened = futures_util::stream::once(open).flat_map(move |opened| {
        let first = (!has_inputs).then_some(Answer::Opened);
        match opened {
            Ok(stream) => {
                let class_name = class_name.clone();
                futures_util::stream::iter(first)
                    .chain(stream.map(move |item| answer_of(&class_name, item)))
                    .left_stream()
            }
            Err(error) => {
                futures_util::stream::iter(first.into_iter().chain([Answer::Failed(error)]))
                    .right_stream()
            }
        }
    });
    if has_inputs {
        Box::pin(futures_util::stream::iter([Answer::Opened]).chain(opened))
    } else {
        Box::pin(opened)
    }
}

/// The answer stream of a streaming method that returns one value (it takes input
/// streams): that value, then the end.
#[doc(hidden)]
pub fn answer_value<'a, T: WireValue>(
    call: impl Future<Output = Result<T, MethodError>> + Send + 'a,
) -> OutputStream<'a> {
    let class_name = crate::protocol::method_stream::wrapped_class::<T>();
    Box::pin(
        futures_util::stream::iter([Answer::Opened]).chain(futures_util::stream::once(
            async move { answer_of(&class_name, call.await) },
        )),
    )
}

/// A type whose `#[endpoint]` impl block makes methods callable over HTTP. Implemented
/// by the macro; register with [`ServerBuilder::methods`](crate::ServerBuilder::methods).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no HTTP methods for `{P}`",
    note = "put `#[streampod::endpoint]` on an `impl` block of `{Self}` with `pub async fn` methods taking `&Session<{P}>`"
)]
pub trait Methods<P: ModelSet>: Send + Sync + 'static {
    /// The methods, in declaration order.
    #[doc(hidden)]
    fn method_table(&self) -> &'static [MethodInfo];

    /// The argument, answer and exception types of the method at `index` of the table.
    #[doc(hidden)]
    fn method_types(&self, index: usize) -> MethodTypes;

    /// Calls the method at `index` of the table with decoded `args`.
    #[doc(hidden)]
    fn call_method<'a>(
        &'a self,
        index: usize,
        session: &'a Session<P>,
        args: Args,
    ) -> MethodFuture<'a>;

    /// Opens the streaming method at `index`: decodes `args` now (an error refuses the
    /// open), and returns the answer stream, which runs the method when first polled.
    #[doc(hidden)]
    fn open_stream<'a>(
        &'a self,
        index: usize,
        session: &'a Session<P>,
        args: Args,
        inputs: Inputs,
    ) -> Result<OutputStream<'a>, MethodError>;
}

impl<P: ModelSet, T: Methods<P>> Methods<P> for Arc<T> {
    fn method_table(&self) -> &'static [MethodInfo] {
        (**self).method_table()
    }

    fn method_types(&self, index: usize) -> MethodTypes {
        (**self).method_types(index)
    }

    fn call_method<'a>(
        &'a self,
        index: usize,
        session: &'a Session<P>,
        args: Args,
    ) -> MethodFuture<'a> {
        (**self).call_method(index, session, args)
    }

    fn open_stream<'a>(
        &'a self,
        index: usize,
        session: &'a Session<P>,
        args: Args,
        inputs: Inputs,
    ) -> Result<OutputStream<'a>, MethodError> {
        (**self).open_stream(index, session, args, inputs)
    }
}

/// The named arguments of one call.
#[doc(hidden)]
#[derive(Debug)]
pub struct Args {
    values: HashMap<String, Box<RawValue>>,
    method: &'static MethodInfo,
}

impl Args {
    /// The arguments `values` of a call to `method`.
    pub fn new(values: HashMap<String, Box<RawValue>>, method: &'static MethodInfo) -> Self {
        Self { values, method }
    }

    /// Decodes and removes argument `name`; a missing `Option` argument is `None`.
    ///
    /// # Errors
    ///
    /// A 400 [`MethodError`] naming the argument.
    pub fn take<T: WireValue>(&mut self, name: &'static str) -> Result<T, MethodError> {
        match self.values.remove(name) {
            Some(raw) => serde_json::from_str::<FromWire<T>>(raw.get())
                .map(|value| value.0)
                .map_err(|e| {
                    MethodError::bad_request(format!(
                        "argument '{name}' of '{}': {e}",
                        self.method.name
                    ))
                }),
            None => T::when_absent().ok_or_else(|| {
                MethodError::bad_request(format!(
                    "missing argument '{name}' of '{}'",
                    self.method.name
                ))
            }),
        }
    }

    /// Fails if arguments the method does not take are left.
    ///
    /// # Errors
    ///
    /// A 400 [`MethodError`] naming the first unexpected argument.
    pub fn finish(self) -> Result<(), MethodError> {
        let mut extra: Vec<&String> = self.values.keys().collect();
        extra.sort();
        match extra.first() {
            None => Ok(()),
            Some(name) => Err(MethodError::bad_request(format!(
                "unexpected argument '{name}'; '{}' takes {}",
                self.method.name,
                if self.method.args.is_empty() {
                    "no arguments".to_owned()
                } else {
                    self.method.args.join(", ")
                }
            ))),
        }
    }
}

/// The named arguments of a call: the body (a JSON object, or nothing but whitespace)
/// plus `?name=value` pairs of the query (Serverpod merges them in); a query value that
/// is valid JSON is taken as JSON, anything else as a string. A query value overrides
/// a body argument of the same name, as in Serverpod.
///
/// # Errors
///
/// A 400 [`MethodError`] when the body is not a JSON object.
#[doc(hidden)]
pub fn parse_args(
    body: &[u8],
    query: Option<&str>,
) -> Result<HashMap<String, Box<RawValue>>, MethodError> {
    let mut args = if body.iter().all(u8::is_ascii_whitespace) {
        HashMap::new()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            MethodError::bad_request(format!(
                "the body must be a JSON object of named arguments: {e}"
            ))
        })?
    };
    let Some(query) = query else {
        return Ok(args);
    };
    // Query parameters override body arguments of the same name, in Serverpod's order
    // (`queryParameters.addAll(uri.queryParameters)`).
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let raw = RawValue::from_string(value.to_string())
            .ok()
            .filter(|_| serde_json::from_str::<serde::de::IgnoredAny>(&value).is_ok())
            .or_else(|| serde_json::value::to_raw_value(&value).ok());
        if let Some(raw) = raw {
            args.insert(name.into_owned(), raw);
        }
    }
    Ok(args)
}

/// A failed method call: an HTTP status and a JSON body.
pub struct MethodError {
    status: StatusCode,
    body: String,
    /// What the log gets for a 500; never sent.
    detail: Option<String>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u32>,
    /// Whether the body is a serializable exception, `{"className":…,"data":…}`.
    exception: bool,
}

impl fmt::Debug for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodError")
            .field("status", &self.status)
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl MethodError {
    /// An error with `status` and body `{"error":{"code":…,"message":…}}`.
    pub fn new(status: StatusCode, code: &str, message: impl fmt::Display) -> Self {
        let body = serde_json::json!({"error": {"code": code, "message": message.to_string()}});
        Self {
            status,
            body: body.to_string(),
            detail: None,
            retry_after: None,
            exception: false,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl fmt::Display) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl fmt::Display) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 with a fixed message; `detail` goes to the log only.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self {
            detail: Some(detail.to_string()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal server error",
            )
        }
    }

    /// A generated exception as Serverpod sends it: 400 with `{"className":…,"data":…}`.
    pub fn exception<E: SerializableException>(exception: &E) -> Self {
        match serde_json::to_string(exception) {
            Ok(data) => Self {
                status: StatusCode::BAD_REQUEST,
                body: format!(
                    r#"{{"className":{},"data":{data}}}"#,
                    serde_json::json!(E::CLASS_NAME)
                ),
                detail: None,
                retry_after: None,
                exception: true,
            },
            Err(error) => Self::internal(format_args!("cannot encode {}: {error}", E::CLASS_NAME)),
        }
    }

    /// A cluster publish that failed: 503 `cluster_unavailable` with `Retry-After: 1`
    /// when the post was certainly not published (Redis unreachable, publish queue
    /// full: retrying is safe), 504 `cluster_unconfirmed` without it when the post may
    /// have gone out anyway (retrying may deliver it twice).
    pub fn cluster(error: &ClusterError) -> Self {
        if error.may_have_been_delivered() {
            Self::new(StatusCode::GATEWAY_TIMEOUT, "cluster_unconfirmed", error)
        } else {
            Self {
                retry_after: Some(1),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable", error)
            }
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Seconds the client should wait before retrying (`Retry-After`), when set.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    /// The JSON body.
    pub fn body(&self) -> &str {
        &self.body
    }

    pub(crate) fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// Whether the body is a serializable exception (`{"className":…,"data":…}`), which
    /// a streaming call sends as `msse`.
    pub fn is_exception(&self) -> bool {
        self.exception
    }
}

/// Errors a method may return in `Result<R, E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned as an endpoint method error",
    note = "return `EndpointError` (500), `MethodError` (any status) or an `exception:` model (400)"
)]
pub trait IntoMethodError {
    /// The status and body to answer with.
    fn into_method_error(self) -> MethodError;

    /// The exception class a client sees (for the [method schema](crate::ServerBuilder::method_schema)),
    /// or `None` when the error is no typed exception.
    fn exception_class() -> Option<&'static str> {
        None
    }
}

impl IntoMethodError for MethodError {
    fn into_method_error(self) -> MethodError {
        self
    }
}

/// A cluster failure behind the error answers as [`MethodError::cluster`] says; any
/// other error is a 500.
impl IntoMethodError for EndpointError {
    fn into_method_error(self) -> MethodError {
        let inner = self.into_inner();
        let cluster = match inner.downcast_ref::<PostError>() {
            Some(PostError::Cluster(error)) => Some(error),
            _ => inner.downcast_ref::<ClusterError>(),
        };
        match cluster {
            Some(error) => MethodError::cluster(error),
            None => MethodError::internal(inner),
        }
    }
}

/// A failed post: [`MethodError::cluster`] for cluster failures, 500 otherwise.
impl From<PostError> for MethodError {
    fn from(error: PostError) -> Self {
        match &error {
            PostError::Cluster(cluster) => Self::cluster(cluster),
            _ => Self::internal(error),
        }
    }
}

impl<E: SerializableException> IntoMethodError for E {
    fn into_method_error(self) -> MethodError {
        MethodError::exception(&self)
    }

    fn exception_class() -> Option<&'static str> {
        Some(E::CLASS_NAME)
    }
}

/// Encodes a plain return value.
#[doc(hidden)]
pub fn respond_value<R: WireValue>(value: &R) -> Result<Vec<u8>, MethodError> {
    serde_json::to_vec(&Wire(value))
        .map_err(|e| MethodError::internal(format_args!("cannot encode the result: {e}")))
}

/// Converts a method's error.
#[doc(hidden)]
pub fn into_method_error<E: IntoMethodError>(error: E) -> MethodError {
    error.into_method_error()
}

/// One registered method endpoint: its name and its methods.
type Registered<P> = (Arc<str>, Arc<dyn Methods<P>>);

/// Method endpoints by name, in registration order.
pub(crate) struct MethodEndpoints<P: ModelSet> {
    list: Vec<Registered<P>>,
}

impl<P: ModelSet> Default for MethodEndpoints<P> {
    fn default() -> Self {
        Self { list: Vec::new() }
    }
}

impl<P: ModelSet> MethodEndpoints<P> {
    pub(crate) fn insert(&mut self, name: &str, methods: Arc<dyn Methods<P>>) -> bool {
        if self.get(name).is_some() {
            return false;
        }
        self.list.push((Arc::from(name), methods));
        true
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registered<P>> {
        self.list.iter().find(|(n, _)| &**n == name)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|(n, _)| &**n)
    }

    /// Every endpoint's methods with their types, for client generators.
    pub(crate) fn schema(&self) -> MethodSchema {
        let endpoints = self
            .list
            .iter()
            .map(|(name, methods)| EndpointSchema {
                name: name.to_string(),
                methods: methods
                    .method_table()
                    .iter()
                    .enumerate()
                    .map(|(index, info)| {
                        let types = methods.method_types(index);
                        let signatures = |names: &[&str], types: Vec<String>| {
                            names
                                .iter()
                                .zip(types)
                                .map(|(name, ty)| ArgSignature {
                                    name: (*name).to_owned(),
                                    ty,
                                })
                                .collect()
                        };
                        MethodSignature {
                            name: info.name.to_owned(),
                            docs: info.docs.to_owned(),
                            args: signatures(info.args, types.args),
                            streaming: info.streaming,
                            input_streams: signatures(info.input_streams, types.input_streams),
                            returns: types.returns,
                            exceptions: types.exception.map(str::to_owned).into_iter().collect(),
                            require_login: info.require_login,
                            scopes: info.scopes.iter().map(|s| (*s).to_owned()).collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        MethodSchema { endpoints }
    }
}

/// The session of one HTTP method call: who is calling, and the server's message
/// central and handle, so a call can post to channels and reach streaming sessions.
pub struct Session<P: ModelSet> {
    pub(crate) auth: Option<Arc<AuthInfo>>,
    pub(crate) remote_addr: SocketAddr,
    pub(crate) endpoint: Arc<str>,
    pub(crate) method: &'static str,
    pub(crate) server: ServerHandle<P>,
}

impl<P: ModelSet> fmt::Debug for Session<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint)
            .field("method", &self.method)
            .field("remote_addr", &self.remote_addr)
            .field("user", &self.auth.as_ref().map(|a| &a.user_id))
            .finish()
    }
}

impl<P: ModelSet> Session<P> {
    /// Who is calling, if signed in.
    pub fn auth(&self) -> Option<&AuthInfo> {
        self.auth.as_deref()
    }

    /// The caller's user id, if signed in.
    pub fn authenticated_user_id(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.user_id.as_str())
    }

    /// Whether the caller is signed in with `scope`.
    pub fn has_scope(&self, scope: &Scope) -> bool {
        self.auth.as_ref().is_some_and(|a| a.has_scope(scope))
    }

    /// The caller's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The endpoint called.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The method called (camelCase, as on the wire).
    pub fn method(&self) -> &str {
        self.method
    }

    /// The message central: post to channels, broadcast to sessions.
    pub fn messages(&self) -> MessageCentral<P> {
        self.server.messages()
    }

    /// The server handle.
    pub fn server(&self) -> &ServerHandle<P> {
        &self.server
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_json_or_strings() {
        let args = parse_args(
            br#"{"kept": 1}"#,
            Some("id=42&name=ann&flag=true&kept=2&list=%5B1%2C2%5D"),
        )
        .unwrap();
        let get = |name: &str| args[name].get().to_owned();
        assert_eq!(get("id"), "42");
        assert_eq!(get("name"), "\"ann\"");
        assert_eq!(get("flag"), "true");
        assert_eq!(get("kept"), "2", "the query overrides the body, as in Serverpod");
        assert_eq!(get("list"), "[1,2]");
        assert!(parse_args(b"  \n", None).unwrap().is_empty());
        assert_eq!(parse_args(b"[1]", None).unwrap_err().status(), 400);
    }
}
