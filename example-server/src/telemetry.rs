//! Traces to an OpenTelemetry collector over OTLP/HTTP (`--otlp-endpoint`): streampod's
//! spans (sessions, frames, method calls, posts and their deliveries on other nodes,
//! joined by the W3C `traceparent`; feature `otel`) go out in batches through
//! `tracing-opentelemetry`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::registry::LookupSpan;

/// The exporting pipeline: flush or shut it down before the process exits, or the last
/// batch is lost.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

/// The traces endpoint of the collector at `endpoint`: `/v1/traces` added to a URL
/// that names none (`http://127.0.0.1:4318` → `http://127.0.0.1:4318/v1/traces`).
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

impl Traces {
    /// A pipeline exporting to the OTLP/HTTP collector at `endpoint` (protobuf, batches
    /// sent from the SDK's own thread), spans tagged with `service`.
    ///
    /// # Errors
    ///
    /// When the endpoint is not a URL the exporter can use.
    pub fn otlp(
        endpoint: &str,
        service: &str,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(endpoint))
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that hands spans to this pipeline.
    pub fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("streampod"))
    }

    /// Sends every finished span now (waits for the collector's answer).
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "traces not flushed to the collector");
        }
    }

    /// Sends what is left and stops the pipeline.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "the trace pipeline did not shut down cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
