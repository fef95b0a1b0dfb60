//! Serving one HTTP method call: route, read the body (bounded), authenticate, check
//! access, call, answer with JSON.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::header;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use tracing::Instrument;

use super::response::{json, method_error, ResponseBody};
use super::state::ServiceState;
use crate::util::log_limit::RateLimitedLog;
use crate::util::trace_context;
use crate::util::panic_text::panic_message;
use crate::util::peer_text::ErrorText;
use crate::methods::Session;
use crate::methods::args::{parse_args, Args};
use crate::methods::info::MethodInfo;
use crate::auth::KeyCheck;
use crate::methods::MethodError;
use crate::protocol::{auth, ModelSet};

/// A request body the service can read: any `http_body::Body` of bytes.
pub(crate) trait RequestBody:
    hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static
{
}

/// Whether `remote_addr` may make another HTTP call now
/// ([`ServerConfig::http_call_rate_limit`](crate::ServerConfig::http_call_rate_limit));
/// the 429 to answer if not.
pub(crate) fn admit<P: ModelSet>(
    server: &ServiceState<P>,
    remote_addr: SocketAddr,
) -> Result<(), MethodError> {
    let Some(limiter) = &server.call_limiter else {
        return Ok(());
    };
    limiter.take(remote_addr.ip()).map_err(|retry_after| {
        static LIMITED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
        if let Some(suppressed) = LIMITED.ready() {
            tracing::info!(target: "streampod::call", suppressed, "an address called past the HTTP call rate limit; answered 429");
        }
        MethodError::rate_limited(
            "too many HTTP calls from this address; wait and retry",
            retry_after,
        )
    })
}

/// Answers `POST /<endpoint>/<method>` or `POST /<endpoint>` with `"method"` in the body.
pub(crate) async fn handle<P: ModelSet, B: RequestBody>(
    server: &ServiceState<P>,
    request: Request<B>,
    path: &str,
    remote_addr: SocketAddr,
) -> Response<ResponseBody> {
    let started = std::time::Instant::now();
    // Only names the server knows become metric labels: a client cannot grow them.
    let mut called: Option<(Arc<str>, &'static str)> = None;
    let admitted = admit(server, remote_addr);
    let outcome = match admitted {
        Ok(()) => {
            // The caller's trace goes on here (feature `otel`).
            let traceparent = request
                .headers()
                .get("traceparent")
                .and_then(|value| value.to_str().ok());
            let span = trace_context::call_span(path, traceparent);
            call(server, request, path, remote_addr, &mut called)
                .instrument(span)
                .await
        }
        Err(refused) => Err(refused),
    };
    let response = match outcome {
        Ok(answer) => json(StatusCode::OK, answer),
        Err(error) => method_error(&error),
    };
    let (endpoint, method) = called
        .as_ref()
        .map_or(("unknown", "unknown"), |(endpoint, method)| {
            (&**endpoint, *method)
        });
    server.streams.metrics.method_call(
        endpoint,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn call<P: ModelSet, B: RequestBody>(
    server: &ServiceState<P>,
    request: Request<B>,
    path: &str,
    remote_addr: SocketAddr,
    called: &mut Option<(Arc<str>, &'static str)>,
) -> Result<Vec<u8>, MethodError> {
    let path = path.trim_matches('/').to_owned();
    let (endpoint_name, path_method) = match path.split_once('/') {
        Some((endpoint, method)) if !method.contains('/') => {
            (endpoint.to_owned(), Some(method.to_owned()))
        }
        Some(_) => {
            return Err(MethodError::not_found(format!(
                "no route for {} /{path}",
                request.method()
            )))
        }
        None => (path.clone(), None),
    };
    let Some((endpoint_name, methods)) = server.methods.get(&endpoint_name).cloned() else {
        let hint = crate::protocol::suggest::closest(&endpoint_name, server.methods.names(), 2)
            .map(|name| format!(" (did you mean '{name}'?)"))
            .unwrap_or_default();
        return Err(MethodError::not_found(format!(
            "no endpoint named '{endpoint_name}'{hint}"
        )));
    };
    if request.method() != Method::POST {
        return Err(MethodError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "endpoint methods are called with POST",
        ));
    }

    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| auth::unwrap_key(value).into_owned());
    let query = request.uri().query().map(str::to_owned);
    let body = read_body(
        request,
        server.streams.config.max_body_size,
        server.streams.config.http_body_timeout,
    )
    .await?;
    let mut args = parse_args(&body, query.as_deref())?;

    let method_name = match path_method {
        Some(name) => name,
        None => match args.remove("method") {
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map_err(|_| MethodError::bad_request("\"method\" must be a string"))?,
            None => {
                return Err(MethodError::bad_request(format!(
                    "name the method: POST /{endpoint_name}/<method>, or \"method\" in the body"
                )))
            }
        },
    };
    let table = methods.method_table();
    let Some(index) = table.iter().position(|m| m.name == method_name) else {
        let hint = crate::protocol::suggest::closest(&method_name, table.iter().map(|m| m.name), 2)
            .map(|name| format!(" (did you mean '{name}'?)"))
            .unwrap_or_default();
        return Err(MethodError::not_found(format!(
            "endpoint '{endpoint_name}' has no method '{method_name}'{hint}"
        )));
    };
    let info: &'static MethodInfo = &table[index];
    *called = Some((endpoint_name.clone(), info.name));
    if info.streaming {
        return Err(MethodError::bad_request(format!(
            "'{endpoint_name}.{}' is a streaming method: open it over the /v1/websocket socket",
            info.name
        )));
    }
    let auth_in_query = query
        .as_deref()
        .is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "auth"));
    if key.is_none() && auth_in_query && !info.args.contains(&"auth") {
        // Serverpod 2.x/3.x took `?auth=` here; keys in URLs end up in access logs.
        let message = "?auth= is not accepted on method calls (URLs end up in logs): send the key in the Authorization header";
        return Err(if info.require_login || !info.scopes.is_empty() {
            MethodError::unauthenticated(message)
        } else {
            MethodError::bad_request(message)
        });
    }

    let mut refusal = None;
    let auth = match &key {
        Some(key) => match server.streams.authentication.check(remote_addr.ip(), key).await {
            KeyCheck::Accepted(auth) => Some(Arc::new(auth)),
            KeyCheck::Refused(why) => {
                refusal = Some(why);
                None
            }
            KeyCheck::Throttled(retry_after) => {
                return Err(MethodError::rate_limited(
                    "too many refused auth keys from this address: the key was not checked; retry after the Retry-After seconds",
                    retry_after,
                ));
            }
        },
        None => None,
    };
    if let Some(auth) = &auth {
        server
            .streams
            .messages
            .spend_user_budget(&auth.user_id)
            .map_err(|(limit, retry_after)| {
                MethodError::rate_limited(
                    format!(
                        "this user called more than {} times per second across their sessions; wait and retry",
                        limit.per_second
                    ),
                    retry_after,
                )
            })?;
    }
    if info.require_login || !info.scopes.is_empty() {
        let Some(auth) = &auth else {
            let message = |why: &dyn std::fmt::Display| {
                format!("'{endpoint_name}.{}' requires a signed-in caller: {why}", info.name)
            };
            return Err(match refusal {
                Some(refusal) => MethodError::refused_key(message(&refusal), refusal),
                None => MethodError::unauthenticated(message(&"no Authorization header")),
            });
        };
        if let Some(missing) = info
            .scopes
            .iter()
            .find(|s| !auth.scopes.iter().any(|held| held.as_str() == **s))
        {
            return Err(MethodError::forbidden(format!(
                "'{endpoint_name}.{}' requires the scope '{missing}'",
                info.name
            )));
        }
    }

    let session = Session {
        auth,
        remote_addr,
        endpoint: endpoint_name.clone(),
        method: info.name,
        server: server.handle.clone(),
        messages: server.handle.messages(),
    };
    let span = tracing::info_span!(
        target: "streampod::call",
        "call",
        endpoint = %endpoint_name,
        method = info.name,
        peer = %remote_addr,
        user = session.authenticated_user_id().unwrap_or("-"),
    );
    let outcome = AssertUnwindSafe(methods.call_method(index, &session, Args::new(args, info)))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let result = match outcome {
        Ok(result) => result,
        Err(panic) => Err(MethodError::internal(panic_message(&*panic))),
    };
    if let Err(error) = &result {
        span.in_scope(|| match error.detail() {
            Some(detail) => tracing::error!(target: "streampod::call", error = %ErrorText(detail), "method failed"),
            None => tracing::debug!(target: "streampod::call", status = %error.status(), "method refused the call"),
        });
    }
    result
}

/// The body, at most `limit` bytes, arriving within `timeout`.
pub(crate) async fn read_body<B: RequestBody>(
    request: Request<B>,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, MethodError> {
    let too_large = || {
        MethodError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let collected =
        tokio::time::timeout(timeout, Limited::new(request.into_body(), limit).collect())
            .await
            .map_err(|_| {
                MethodError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ),
                )
            })?;
    let bytes = collected
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                MethodError::bad_request(format!("could not read the request body: {error}"))
            }
        })?
        .to_bytes();
    Ok(bytes)
}
