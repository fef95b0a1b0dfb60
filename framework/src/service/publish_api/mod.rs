//! The publish API for backends that are not written in Rust: `POST /api/publish`,
//! `/api/broadcast`, `/api/history` and `/api/presence`, with a server API key, and
//! its OpenAPI description at `GET /api/openapi.json`. Each request is translated into
//! one operation of the message central; limits (body size, calls per address, refused
//! keys per address) are the service's own, and every answer is JSON.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::api_key::PublishApi;
use super::call::{read_body, RequestBody};
use super::response::{self, ResponseBody};
use super::state::ServiceState;
use crate::messages::idempotency::{Answer, Claim};
use crate::messages::{Delivery, HistoryError, Reach};
use crate::methods::MethodError;
use crate::protocol::history::Position;
use crate::protocol::ModelSet;
use crate::util::log_limit::RateLimitedLog;

/// Where the API's routes start.
pub(crate) const PREFIX: &str = "/api/";

/// The OpenAPI 3.1 description of the API, served at `/api/openapi.json`.
const OPENAPI: &str = include_str!("openapi.json");

/// Most messages `/api/history` answers with at once, and its default.
const MAX_HISTORY_PAGE: usize = 1_000;
/// Most members `/api/presence` lists at once, and its default.
const MAX_PRESENCE_PAGE: usize = 1_000;
/// Longest idempotency key taken.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Whether `path` is one of the API's.
pub(crate) fn is_api_path(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// Answers a request under `/api/`.
pub(crate) async fn handle<P: ModelSet, B: RequestBody>(
    server: &ServiceState<P>,
    api: &PublishApi,
    request: Request<B>,
    path: &str,
    remote_addr: SocketAddr,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let operation = match path.strip_prefix(PREFIX) {
        Some(operation @ ("publish" | "broadcast" | "history" | "presence")) => operation,
        Some("openapi.json") if request.method() == Method::GET => {
            return response::with_type(StatusCode::OK, "application/json", OPENAPI);
        }
        _ => {
            return response::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "the publish API has /api/publish, /api/broadcast, /api/history and /api/presence (POST), and /api/openapi.json",
            )
        }
    };
    let response = match admit(server, api, &request, remote_addr) {
        Err(refused) => response::method_error(&refused),
        Ok(()) => {
            let idempotency_key = request
                .headers()
                .get("idempotency-key")
                .map(|value| value.to_str().map(str::to_owned));
            match idempotency_key {
                None => respond(outcome(server, request, operation).await),
                Some(Ok(key)) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => {
                    once(server, request, operation, &key).await
                }
                Some(_) => response::method_error(&MethodError::bad_request(format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                ))),
            }
        }
    };
    server.streams.metrics.method_call(
        "api",
        operation,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The method, the calls-per-address limit and the API key.
fn admit<P: ModelSet, B>(
    server: &ServiceState<P>,
    api: &PublishApi,
    request: &Request<B>,
    remote_addr: SocketAddr,
) -> Result<(), MethodError> {
    if request.method() != Method::POST {
        return Err(MethodError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the publish API takes POST with a JSON body",
        ));
    }
    if let Some(limiter) = &server.call_limiter {
        limiter.take(remote_addr.ip()).map_err(|retry_after| {
            MethodError::rate_limited(
                "too many calls from this address; wait and retry",
                retry_after,
            )
        })?;
    }
    let authentication = &server.streams.authentication;
    if let Err(retry_after) = authentication.throttled(remote_addr.ip()) {
        return Err(MethodError::rate_limited(
            "too many refused API keys from this address: the key was not checked; retry after the Retry-After seconds",
            retry_after,
        ));
    }
    let headers = request.headers();
    let offered = headers
        .get("x-api-key")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|value| value.to_str().ok())
        .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).trim());
    match offered {
        Some(key) if api.accepts(key) => Ok(()),
        offered => {
            authentication.count_refused(remote_addr.ip());
            static REFUSED: RateLimitedLog = RateLimitedLog::new(Duration::from_secs(10));
            if let Some(left_out) = REFUSED.ready() {
                tracing::info!(target: "streampod::api", peer = %remote_addr.ip(), with_key = offered.is_some(), left_out, "publish API call refused: no valid API key");
            }
            Err(MethodError::unauthenticated(
                "the publish API needs the server's API key: Authorization: Bearer <key>, or X-API-Key: <key>",
            ))
        }
    }
}

/// Serves a request with an idempotency key: once per key within the window.
async fn once<P: ModelSet, B: RequestBody>(
    server: &ServiceState<P>,
    request: Request<B>,
    operation: &str,
    key: &str,
) -> Response<ResponseBody> {
    let claimed = match server.streams.messages.claim_once(key) {
        Claim::First(claimed) => claimed,
        Claim::Pending => {
            return response::method_error(&MethodError::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "a request with this Idempotency-Key is still being served; retry in a moment",
            ))
        }
        Claim::Done(answer) => {
            let mut response = response::json(
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
                answer.body.get().as_bytes().to_vec(),
            );
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
    };
    let outcome = outcome(server, request, operation).await;
    // A success, or a post that may have gone out, is kept: a retry gets it again and
    // posts nothing. Any other failure posted nothing, and the key is free to retry.
    let kept = match &outcome {
        Ok(body) => Some((StatusCode::OK, body.to_string())),
        Err(error) if error.status() == StatusCode::GATEWAY_TIMEOUT => {
            Some((error.status(), error.body().to_owned()))
        }
        Err(_) => None,
    };
    if let Some((status, body)) = kept {
        if let Ok(body) = RawValue::from_string(body) {
            claimed.settle(Answer {
                status: status.as_u16(),
                body,
            });
        }
    }
    respond(outcome)
}

/// Reads the body and runs the operation: its answer's JSON, or why not.
async fn outcome<P: ModelSet, B: RequestBody>(
    server: &ServiceState<P>,
    request: Request<B>,
    operation: &str,
) -> Result<Value, MethodError> {
    let config = &server.streams.config;
    let body = read_body(request, config.max_body_size, config.http_body_timeout).await?;
    match operation {
        "publish" => publish(server, &body).await,
        "broadcast" => broadcast(server, &body).await,
        "history" => history(server, &body).await,
        _ => presence(server, &body).await,
    }
}

/// The response for an operation's outcome.
fn respond(outcome: Result<Value, MethodError>) -> Response<ResponseBody> {
    match outcome {
        Ok(body) => response::json(StatusCode::OK, body.to_string().into_bytes()),
        Err(error) => response::method_error(&error),
    }
}

/// A JSON body as `T`, or 400 saying what is wrong.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, MethodError> {
    serde_json::from_slice(body)
        .map_err(|error| MethodError::bad_request(format!("the request body does not fit: {error}")))
}

/// A message as channels carry it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Model<'a> {
    class_name: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl Model<'_> {
    fn decode<P: ModelSet>(&self) -> Result<P, MethodError> {
        P::decode(&self.class_name, self.data).map_err(|error| {
            MethodError::new(StatusCode::BAD_REQUEST, "invalid_message", error)
        })
    }
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum ReachName {
    #[default]
    Local,
    Global,
}

fn check_channel<P: ModelSet>(server: &ServiceState<P>, channel: &str) -> Result<(), MethodError> {
    let limit = server.streams.config.max_channel_name_len;
    if channel.is_empty() || channel.len() > limit {
        return Err(MethodError::bad_request(format!(
            "'channel' must be 1 to {limit} bytes"
        )));
    }
    Ok(())
}

/// The answer of a post: the local delivery report, or the servers the cluster reached.
fn delivered(delivery: Result<Delivery, MethodError>) -> Result<Value, MethodError> {
    Ok(match delivery? {
        Delivery::Local(report) => json!({
            "reach": "local",
            "delivered": report.delivered,
            "dropped": report.dropped,
            "disconnected": report.disconnected,
        }),
        Delivery::Published => json!({"reach": "global"}),
    })
}

fn post_error(error: crate::messages::PostError) -> MethodError {
    match error {
        crate::messages::PostError::TooLarge { .. } => MethodError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            error,
        ),
        other => other.into(),
    }
}

async fn publish<P: ModelSet>(server: &ServiceState<P>, body: &[u8]) -> Result<Value, MethodError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Publish<'a> {
        channel: String,
        #[serde(borrow)]
        message: Model<'a>,
        #[serde(default)]
        reach: ReachName,
    }
    let request: Publish<'_> = parse(body)?;
    check_channel(server, &request.channel)?;
    let message: P = request.message.decode()?;
    let messages = &server.streams.messages;
    if request.reach == ReachName::Global && messages.cluster_state().is_some() {
        let servers = messages
            .post_global(&request.channel, message)
            .await
            .map_err(post_error)?;
        return Ok(json!({"reach": "global", "servers": servers}));
    }
    delivered(
        messages
            .post_message(&request.channel, message, Reach::Local)
            .map_err(post_error),
    )
}

async fn broadcast<P: ModelSet>(
    server: &ServiceState<P>,
    body: &[u8],
) -> Result<Value, MethodError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Broadcast<'a> {
        endpoint: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(borrow)]
        message: Model<'a>,
        #[serde(default)]
        reach: ReachName,
    }
    let request: Broadcast<'_> = parse(body)?;
    if request.endpoint.is_empty() {
        return Err(MethodError::bad_request("'endpoint' names the endpoint the message is framed from"));
    }
    let message: P = request.message.decode()?;
    let messages = &server.streams.messages;
    let target = match &request.user {
        Some(user) => messages.to_user(user, &request.endpoint),
        None => messages.to_all(&request.endpoint),
    };
    if request.reach == ReachName::Global && messages.cluster_state().is_some() {
        let servers = target.post_confirmed(message).await.map_err(post_error)?;
        return Ok(json!({"reach": "global", "servers": servers}));
    }
    delivered(target.post(message).map_err(post_error))
}

async fn history<P: ModelSet>(server: &ServiceState<P>, body: &[u8]) -> Result<Value, MethodError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Since {
        epoch: String,
        offset: u64,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct History {
        channel: String,
        #[serde(default)]
        since: Option<Since>,
        #[serde(default)]
        limit: Option<usize>,
    }
    let request: History = parse(body)?;
    check_channel(server, &request.channel)?;
    let limit = request.limit.unwrap_or(MAX_HISTORY_PAGE).min(MAX_HISTORY_PAGE);
    let since = request
        .since
        .map(|since| Position::new(since.epoch.as_str(), since.offset));
    let page = server
        .streams
        .messages
        .history(&request.channel, since, limit)
        .await
        .map_err(|error| match error {
            HistoryError::NotKept(_) => {
                MethodError::new(StatusCode::NOT_FOUND, "no_history", error)
            }
            HistoryError::Cluster(cluster) => MethodError::cluster(&cluster),
        })?;
    serde_json::to_value(page).map_err(MethodError::internal)
}

async fn presence<P: ModelSet>(server: &ServiceState<P>, body: &[u8]) -> Result<Value, MethodError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Presence {
        channel: String,
        #[serde(default)]
        limit: Option<usize>,
    }
    let request: Presence = parse(body)?;
    check_channel(server, &request.channel)?;
    let messages = &server.streams.messages;
    if !messages.has_presence(&request.channel) {
        return Err(MethodError::new(
            StatusCode::NOT_FOUND,
            "no_presence",
            format!(
                "channel '{}' keeps no presence (configure it with ChannelConfig::with_presence)",
                request.channel
            ),
        ));
    }
    let limit = request.limit.unwrap_or(MAX_PRESENCE_PAGE).min(MAX_PRESENCE_PAGE);
    let cluster = |error: crate::cluster::ClusterError| MethodError::cluster(&error);
    let count = messages.presence_count(&request.channel).await.map_err(cluster)?;
    let members = messages
        .presence(&request.channel, limit)
        .await
        .map_err(cluster)?;
    Ok(json!({"count": count, "members": members}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_is_json_and_names_every_route() {
        let description: Value = serde_json::from_str(OPENAPI).expect("JSON");
        assert!(description["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        for route in ["publish", "broadcast", "history", "presence"] {
            let path = format!("/api/{route}");
            assert!(description["paths"][&path]["post"].is_object(), "{path}");
        }
    }
}
