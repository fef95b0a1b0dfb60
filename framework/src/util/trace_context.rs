//! Traces across nodes (feature `otel`): the W3C `traceparent` of the current span, to
//! send along with a post or call, and spans that continue a trace begun elsewhere (on
//! the posting node, or in the client that made an HTTP call). Without the feature
//! there is no trace context: nothing is written or read, and the spans are never made.
//!
//! A `traceparent` is `00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags, 2 hex>`
//! (W3C Trace Context, version 00); anything else is ignored.

/// The W3C `traceparent` of the current span, when it is part of an OpenTelemetry
/// trace.
#[cfg(feature = "otel")]
pub(crate) fn current() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The W3C `traceparent` of the current span: none without the `otel` feature.
#[cfg(not(feature = "otel"))]
pub(crate) fn current() -> Option<String> {
    None
}

/// `span`, continuing the remote trace `traceparent` names (when it is a valid one).
#[cfg(feature = "otel")]
pub(crate) fn continue_from(span: tracing::Span, traceparent: Option<&str>) -> tracing::Span {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if let Some(remote) = traceparent.and_then(parse) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    span
}

/// `span` as it is: no trace context without the `otel` feature.
#[cfg(not(feature = "otel"))]
pub(crate) fn continue_from(span: tracing::Span, _traceparent: Option<&str>) -> tracing::Span {
    span
}

/// `traceparent` as a remote span context, if it is a valid version-00 one.
#[cfg(feature = "otel")]
fn parse(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let mut parts = traceparent.trim().split('-');
    let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    let context = SpanContext::new(trace, span, flags, true, TraceState::default());
    context.is_valid().then_some(context)
}

/// The span of a post to `channel` (`streampod::post`), entered while the post is
/// encoded: its context is what the envelope carries.
#[cfg(feature = "otel")]
pub(crate) fn post_span(channel: Option<&str>) -> tracing::span::EnteredSpan {
    let channel = channel.map(crate::util::peer_text::PeerText);
    tracing::info_span!(target: "streampod::post", "post", channel = channel.as_ref().map(tracing::field::display)).entered()
}

/// No span without the `otel` feature.
#[cfg(not(feature = "otel"))]
pub(crate) fn post_span(_channel: Option<&str>) -> tracing::span::EnteredSpan {
    tracing::Span::none().entered()
}

/// The span of a global message delivered on node `node` (`streampod::deliver`),
/// continuing the poster's trace.
#[cfg(feature = "otel")]
pub(crate) fn deliver_span(
    channel: Option<&str>,
    node: Option<u64>,
    traceparent: Option<&str>,
) -> tracing::Span {
    let channel = channel.map(crate::util::peer_text::PeerText);
    let span = tracing::info_span!(
        target: "streampod::deliver",
        "deliver",
        channel = channel.as_ref().map(tracing::field::display),
        node,
    );
    continue_from(span, traceparent)
}

/// No span without the `otel` feature.
#[cfg(not(feature = "otel"))]
pub(crate) fn deliver_span(_: Option<&str>, _: Option<u64>, _: Option<&str>) -> tracing::Span {
    tracing::Span::none()
}

/// The span of an HTTP method call to `path` (`streampod::call`), continuing the
/// caller's trace from its `traceparent` header.
#[cfg(feature = "otel")]
pub(crate) fn call_span(path: &str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(target: "streampod::call", "method_call", path = %crate::util::peer_text::PeerText(path));
    continue_from(span, traceparent)
}

/// No span without the `otel` feature.
#[cfg(not(feature = "otel"))]
pub(crate) fn call_span(_: &str, _: Option<&str>) -> tracing::Span {
    tracing::Span::none()
}

#[cfg(all(test, feature = "otel"))]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_when_valid_only() {
        let valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = parse(valid).unwrap();
        assert_eq!(
            context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(context.span_id().to_string(), "b7ad6b7169203331");
        assert!(context.is_sampled() && context.is_remote());
        for invalid in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
            "00-xyz7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(parse(invalid).is_none(), "{invalid}");
        }
    }
}
