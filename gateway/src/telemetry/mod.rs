//! Traces with OpenTelemetry: a span for each part of a connection this gateway plays
//! (`outbound` with its `stream.open`; `stream.accept` with its `policy.decision` and
//! `upstream.connect`; `ingress.request`; `egress.decision`), exported over OTLP/gRPC
//! (on the tree's tonic) in batches from a thread of the SDK's. The W3C trace context
//! crosses clusters in the stream header's extension and at the ingress in HTTP
//! headers ([`traceparent`]), so one request across gateways is one trace.
//!
//! Off unless `[tracing] otlp_endpoint` is set; then roots are sampled by the configured
//! ratio and children follow their parent's decision (a sampled caller's trace is
//! always completed here). When off, a caller's trace context still passes through
//! unchanged, and access-log lines carry its trace id.

pub mod config;
pub mod traceparent;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use config::TracingSettings;
pub use traceparent::TraceParent;

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint {endpoint}: {reason}")]
pub struct TracingError {
    /// The endpoint.
    pub endpoint: String,
    /// Why.
    pub reason: String,
}

/// A gateway's tracer; cheap to clone. The default traces nothing.
#[derive(Clone, Default)]
pub struct Tracing {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("on", &self.inner.is_some())
            .finish()
    }
}

impl Tracing {
    /// Starts exporting to `settings`' endpoint (connected lazily: a collector that is
    /// not up yet only loses the batches sent before it is). Needs a tokio runtime.
    pub fn start(
        settings: &TracingSettings,
        cluster: &str,
        id: &str,
    ) -> Result<Self, TracingError> {
        let fail = |reason: String| TracingError {
            endpoint: settings.otlp_endpoint.clone(),
            reason,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.otlp_endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(format!("isthmus-gateway-{cluster}"))
            .with_attribute(KeyValue::new("isthmus.cluster", cluster.to_owned()))
            .with_attribute(KeyValue::new("isthmus.gateway.id", id.to_owned()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("isthmus-gateway");
        Ok(Self {
            inner: Some(Arc::new(Inner { provider, tracer })),
        })
    }

    /// Starts span `name` of `kind`, a child of `parent` (this gateway's span) or of
    /// `remote` (a caller's trace context), else a root.
    pub fn span(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Parent<'_>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let remote = match parent {
            Parent::Remote(Some(p)) => Some(p),
            Parent::Span(span) => span.remote,
            _ => None,
        };
        let Some(inner) = &self.inner else {
            // Off: the caller's context passes through as it came.
            return Span { cx: None, remote };
        };
        let parent_cx = match parent {
            Parent::Span(span) => span.cx.clone().unwrap_or_default(),
            Parent::Remote(Some(p)) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                opentelemetry::trace::SpanId::from_bytes(p.span_id),
                TraceFlags::new(p.flags),
                true,
                TraceState::default(),
            )),
            Parent::Remote(None) | Parent::Root => Context::new(),
        };
        let span = inner
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&inner.tracer, &parent_cx);
        Span {
            cx: Some(parent_cx.with_span(span)),
            remote,
        }
    }

    /// Exports what is still batched and stops (at drain).
    pub fn shutdown(&self) {
        if let Some(inner) = &self.inner
            && let Err(e) = inner.provider.shutdown()
        {
            tracing::warn!(error = %e, "trace export did not finish");
        }
    }
}

/// What a new span descends from.
#[derive(Debug, Clone, Copy)]
pub enum Parent<'a> {
    /// Nothing: a root.
    Root,
    /// The trace context a caller sent, if it sent one.
    Remote(Option<TraceParent>),
    /// A span of this gateway's.
    Span(&'a Span),
}

/// One span of this gateway's, or none when tracing is off; ends when dropped.
#[derive(Debug, Default)]
pub struct Span {
    cx: Option<Context>,
    /// The caller's trace context (kept for passing on when nothing is traced here).
    remote: Option<TraceParent>,
}

impl Span {
    /// The trace context to send onward: this span's, or when nothing is traced here
    /// the caller's as it came.
    pub fn traceparent(&self) -> Option<TraceParent> {
        match &self.cx {
            Some(cx) => {
                let span = cx.span();
                let sc = span.span_context();
                sc.is_valid().then(|| TraceParent {
                    trace_id: sc.trace_id().to_bytes(),
                    span_id: sc.span_id().to_bytes(),
                    flags: sc.trace_flags().to_u8(),
                })
            }
            None => self.remote,
        }
    }

    /// The trace id and this span's id for the access log (the caller's trace id alone
    /// when nothing is traced here).
    pub fn ids(&self) -> (Option<String>, Option<String>) {
        match (&self.cx, self.traceparent()) {
            (Some(_), Some(p)) => (Some(p.trace_hex()), Some(p.span_hex())),
            (None, Some(p)) => (Some(p.trace_hex()), None),
            _ => (None, None),
        }
    }

    /// Adds an attribute.
    pub fn set(&self, attribute: KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(attribute);
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&self, why: &str) {
        if let Some(cx) = &self.cx {
            cx.span().set_status(Status::error(why.to_owned()));
        }
    }

    /// Ends the span now (dropping it does too).
    pub fn end(self) {}
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

/// A span that is one instant: started and ended at once (a decision).
pub fn event(tracing: &Tracing, name: &'static str, parent: &Span, attributes: Vec<KeyValue>) {
    tracing
        .span(name, SpanKind::Internal, Parent::Span(parent), attributes)
        .end();
}
