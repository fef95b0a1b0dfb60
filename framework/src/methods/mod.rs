//! Endpoint methods callable over HTTP, as Serverpod's request/response methods.
//!
//! Mark an inherent `impl` block with [`#[endpoint]`](macro@crate::endpoint) and register it with
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
//! `E` is [`EndpointError`](crate::EndpointError) (500, details only in the log), a generated exception (400
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

pub(crate) mod answer;
pub(crate) mod args;
pub(crate) mod call_context;
pub(crate) mod error;
pub(crate) mod info;
pub(crate) mod input;
pub(crate) mod probe;
pub(crate) mod registry;
pub(crate) mod table;

pub use call_context::Session;
pub use error::{IntoMethodError, MethodError};
pub use input::{InputError, MethodStream};
pub use table::Methods;
