//! Cross-origin access for browser clients (Flutter web, a page served elsewhere):
//! which origins may call the server's methods. Applied with tower-http's `CorsLayer`.

use std::time::Duration;

use http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which web origins may call the server from a browser.
///
/// The convenience server ([`ServerBuilder::bind`](crate::ServerBuilder::bind)) answers
/// like Serverpod by default: any origin (`Access-Control-Allow-Origin: *`), `POST`,
/// and `OPTIONS` preflights answered 200 with the headers Serverpod's clients send
/// (`Content-Type`, `Authorization`, `Accept`, `User-Agent`, `X-Requested-With`),
/// cached by browsers for 10 minutes. Credentials (cookies) are never allowed: streampod
/// authenticates with the `Authorization` header. A mounted service
/// ([`into_service`](crate::ServerBuilder::into_service)) leaves CORS to the host app
/// (add `tower_http::cors::CorsLayer` there) unless [`ServerBuilder::cors`] is called.
/// Browsers apply no CORS to WebSockets, so the convenience server answers the upgrade
/// without these headers.
///
/// ```
/// use streampod::Cors;
///
/// let only_my_app = Cors::origins(["https://app.example.com"])?;
/// assert!(Cors::origins(["https://app.example.com/path"]).is_err());
/// # let _ = (only_my_app, Cors::any_origin(), Cors::disabled());
/// # Ok::<(), streampod::InvalidOrigin>(())
/// ```
///
/// [`ServerBuilder::cors`]: crate::ServerBuilder::cors
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors(Policy);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Policy {
    AnyOrigin,
    Origins(Vec<HeaderValue>),
    Disabled,
}

/// Text given to [`Cors::origins`] that is not a web origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a web origin; write scheme, host and port only, like https://app.example.com or http://localhost:8080")]
pub struct InvalidOrigin(String);

/// How long browsers may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

impl Cors {
    /// Any origin may call: `Access-Control-Allow-Origin: *`, as Serverpod answers.
    pub fn any_origin() -> Self {
        Self(Policy::AnyOrigin)
    }

    /// Only these origins (`https://app.example.com`) may call; others get no CORS
    /// headers, so browsers block them. Responses carry `Vary: Origin`.
    ///
    /// # Errors
    ///
    /// [`InvalidOrigin`] for text that is not exactly an origin (a path, a trailing
    /// `/`, no scheme).
    pub fn origins(
        origins: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Self, InvalidOrigin> {
        origins
            .into_iter()
            .map(|origin| {
                let origin = origin.as_ref();
                let canonical = url::Url::parse(origin)
                    .ok()
                    .map(|url| url.origin().ascii_serialization());
                match canonical {
                    Some(canonical) if canonical == origin => HeaderValue::from_str(origin)
                        .map_err(|_| InvalidOrigin(origin.to_owned())),
                    _ => Err(InvalidOrigin(origin.to_owned())),
                }
            })
            .collect::<Result<_, _>>()
            .map(|origins| Self(Policy::Origins(origins)))
    }

    /// No CORS headers at all: browsers on other origins cannot call.
    pub fn disabled() -> Self {
        Self(Policy::Disabled)
    }

    /// The tower-http layer for this policy; `None` when disabled.
    pub(crate) fn layer(&self) -> Option<CorsLayer> {
        let allow_origin = match &self.0 {
            Policy::AnyOrigin => AllowOrigin::any(),
            Policy::Origins(origins) => AllowOrigin::list(origins.iter().cloned()),
            Policy::Disabled => return None,
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow_origin)
                .allow_methods([Method::POST])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    header::ACCEPT,
                    header::USER_AGENT,
                    HeaderName::from_static("x-requested-with"),
                ])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

impl Default for Cors {
    /// [`Cors::any_origin`], Serverpod's behaviour.
    fn default() -> Self {
        Self::any_origin()
    }
}
