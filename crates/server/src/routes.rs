//! The HTTP API: the route table (what the router serves and the OpenAPI test checks), the
//! guard every route passes (token, scope, rate), and the handlers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use nhiwatch_decode::{Format, Reject};
use nhiwatch_model::{Event, FindingKind, Severity, Timestamp};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::auth::{Scope, Tokens};
use crate::config::Limits;
use crate::durable::{EvidenceSink, RejectLog};
use crate::error::{ApiError, ErrorCode, Flavor};
use crate::ingest::{self, Decoded};
use crate::metrics::{Gauges, Metrics, Refusal};
use crate::worker::{DecideJob, FindingFilter, KeptFinding, Queues, View};

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.yaml");

/// Rejects listed in an ingest answer, at most.
const REJECTS_SHOWN: usize = 20;

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Events,
    OtlpTraces,
    Decide,
    Identities,
    Identity,
    Findings,
    Health,
    Metrics,
    OpenApi,
}

/// One route of the API.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, with `{name}` for a path parameter.
    pub path: &'static str,
    /// The scope a token needs; `None` for a public route.
    pub scope: Option<Scope>,
    endpoint: Endpoint,
}

/// Every route the server serves.
pub const ROUTES: [Route; 9] = [
    Route {
        method: "POST",
        path: "/v1/events",
        scope: Some(Scope::Ingest),
        endpoint: Endpoint::Events,
    },
    Route {
        method: "POST",
        path: "/v1/otlp/v1/traces",
        scope: Some(Scope::Ingest),
        endpoint: Endpoint::OtlpTraces,
    },
    Route {
        method: "POST",
        path: "/v1/decide",
        scope: Some(Scope::Decide),
        endpoint: Endpoint::Decide,
    },
    Route {
        method: "GET",
        path: "/v1/identities",
        scope: Some(Scope::Read),
        endpoint: Endpoint::Identities,
    },
    Route {
        method: "GET",
        path: "/v1/identities/{id}",
        scope: Some(Scope::Read),
        endpoint: Endpoint::Identity,
    },
    Route {
        method: "GET",
        path: "/v1/findings",
        scope: Some(Scope::Read),
        endpoint: Endpoint::Findings,
    },
    Route {
        method: "GET",
        path: "/healthz",
        scope: None,
        endpoint: Endpoint::Health,
    },
    Route {
        method: "GET",
        path: "/metrics",
        scope: Some(Scope::Read),
        endpoint: Endpoint::Metrics,
    },
    Route {
        method: "GET",
        path: "/v1/openapi",
        scope: None,
        endpoint: Endpoint::OpenApi,
    },
];

/// Everything the handlers share.
pub(crate) struct App {
    /// `None` serves without tokens (`--no-auth`, loopback only).
    pub tokens: Option<Tokens>,
    pub limits: Limits,
    pub queues: Queues,
    pub view: Arc<RwLock<View>>,
    pub metrics: Arc<Metrics>,
    pub sink: Option<Arc<dyn EvidenceSink>>,
    pub rejects: Option<Arc<RejectLog>>,
    pub decide_seq: AtomicU64,
}

/// Who sent a request: the token's name.
#[derive(Clone, Debug)]
struct Caller(Arc<str>);

type Shared = Arc<App>;

/// The router over `app`.
pub(crate) fn router(app: Shared) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let handler: MethodRouter<Shared> = match route.endpoint {
            Endpoint::Events => post(events),
            Endpoint::OtlpTraces => post(otlp_traces),
            Endpoint::Decide => post(decide),
            Endpoint::Identities => get(identities),
            Endpoint::Identity => get(identity),
            Endpoint::Findings => get(findings),
            Endpoint::Health => get(health),
            Endpoint::Metrics => get(metrics),
            Endpoint::OpenApi => get(openapi),
        };
        let guarded = handler.route_layer(middleware::from_fn_with_state(
            (Arc::clone(&app), route),
            guard,
        ));
        router = router.route(route.path, guarded);
    }
    router
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; GET /v1/openapi describes the API",
            )
        })
        .with_state(app)
}

/// The error flavour of a request to `endpoint`: OTLP clients get `google.rpc.Status`.
fn flavor(endpoint: Endpoint, headers: &HeaderMap) -> Flavor {
    if endpoint != Endpoint::OtlpTraces {
        return Flavor::Json;
    }
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/x-protobuf"));
    if protobuf {
        Flavor::OtlpProtobuf
    } else {
        Flavor::OtlpJson
    }
}

/// Every request passes here: the token and its scope, the token's rate, and the count of
/// refusals.
async fn guard(
    State((app, route)): State<(Shared, Route)>,
    mut request: Request,
    next: Next,
) -> Response {
    let flavor = flavor(route.endpoint, request.headers());
    let response = match admit(&app, route, request.headers()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(err) => err.with_flavor(flavor).into_response(),
    };
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    if let Some(why) = Refusal::of_response(response.status().as_u16(), code) {
        app.metrics.refused(why);
    }
    response
}

fn admit(app: &App, route: Route, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let (Some(scope), Some(tokens)) = (route.scope, &app.tokens) else {
        return Ok(Caller(Arc::from("anonymous")));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Tokens::bearer)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send an API token as `Authorization: Bearer TOKEN`",
            )
        })?;
    let principal = tokens.verify(presented).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the API token is not valid",
        )
    })?;
    if !principal.allows(scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token lacks the `{scope}` scope"),
        ));
    }
    if let Err(wait) = principal.admit(Instant::now()) {
        return Err(ApiError {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "this token is over its request rate; retry after the time in Retry-After",
            )
        });
    }
    Ok(Caller(Arc::from(principal.name.as_str())))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What an accepted ingest request led to.
struct Accepted {
    events: usize,
    rejects: Vec<Reject>,
}

/// The shared half of both ingest endpoints: room in the engine's queue, durability, then
/// the queue. Nothing is stored when the request is refused.
async fn accept(app: &Shared, caller: &Caller, decoded: Decoded) -> Result<Accepted, ApiError> {
    let Decoded {
        events,
        rejects,
        over_limit,
    } = decoded;
    if over_limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body holds more than {} events; split it",
                app.limits.max_events_per_request
            ),
        ));
    }
    let permit = match app.queues.ingest.try_reserve() {
        Ok(permit) => permit,
        Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {
            return Err(ApiError::overloaded("ingest"))
        }
        Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => {
            return Err(ApiError::unavailable())
        }
    };
    let (sink, log) = (app.sink.clone(), app.rejects.clone());
    let who = Arc::clone(&caller.0);
    let (events, rejects, stored) = tokio::task::spawn_blocking(move || {
        let stored = match &sink {
            Some(sink) if !events.is_empty() => sink.append(&events, &[], &[]),
            _ => Ok(Vec::new()),
        };
        if let (Ok(_), Some(log), false) = (&stored, &log, rejects.is_empty()) {
            if let Err(err) = log.append(&who, &rejects) {
                eprintln!(
                    "nhiwatch: cannot keep {} rejected records aside in {}: {err}",
                    rejects.len(),
                    log.path().display()
                );
            }
        }
        (events, rejects, stored)
    })
    .await
    .map_err(|_| ApiError::internal("the evidence store write did not finish"))?;
    if app.sink.is_some() && !events.is_empty() {
        app.metrics.store_write(stored.as_ref().err());
    }
    let held = match stored {
        Ok(held) => held,
        Err(err) => {
            eprintln!(
                "nhiwatch: cannot store a batch of {} events: {err}",
                events.len()
            );
            return Err(ApiError::not_stored(err.kind));
        }
    };
    for event in &events {
        app.metrics.events_in(event.source, 1);
    }
    app.metrics.rejected(rejects.len() as u64);
    let count = events.len();
    // Events the store already held were judged when first acknowledged: a client's retry
    // must not count them twice.
    let repeated = held.iter().filter(|h| **h).count();
    let events: Vec<Event<'static>> = if repeated == 0 {
        events
    } else {
        app.metrics.repeated(repeated as u64);
        events
            .into_iter()
            .zip(held)
            .filter_map(|(event, held)| (!held).then_some(event))
            .collect()
    };
    if !events.is_empty() {
        permit.send(events);
    }
    Ok(Accepted {
        events: count,
        rejects,
    })
}

/// Refuses early, before the body is read, when the ingest queue is already full.
fn ingest_room(app: &App) -> Result<(), ApiError> {
    if app.queues.ingest.is_closed() {
        Err(ApiError::unavailable())
    } else if app.queues.ingest.capacity() == 0 {
        Err(ApiError::overloaded("ingest"))
    } else {
        Ok(())
    }
}

/// Reads, unpacks and decodes a body off the async threads.
async fn decode_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    format: Option<Format>,
) -> Result<Decoded, ApiError> {
    let bytes = ingest::read_body(headers, body, app.limits.max_body_bytes).await?;
    let headers = headers.clone();
    let (limit, max_events) = (
        app.limits.max_decoded_bytes,
        app.limits.max_events_per_request,
    );
    tokio::task::spawn_blocking(move || {
        let data = ingest::unpack(&headers, &bytes, limit)?;
        Ok(ingest::decode(&data, format, max_events))
    })
    .await
    .map_err(|_| ApiError::internal("decoding the body failed"))?
}

async fn events(
    State(app): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingest_room(&app)?;
    let decoded = decode_body(&app, &headers, body, None).await?;
    if decoded.events.is_empty() && !decoded.rejects.is_empty() && !decoded.over_limit {
        app.metrics.rejected(decoded.rejects.len() as u64);
        let first = &decoded.rejects[0];
        return Err(ApiError::bad_request(format!(
            "no record could be decoded ({} rejected); the first, line {}: {}",
            decoded.rejects.len(),
            first.line,
            first.field.as_ref().map_or_else(
                || first.reason.clone(),
                |field| format!("field `{field}`: {}", first.reason)
            )
        )));
    }
    let accepted = accept(&app, &caller, decoded).await?;
    let body = serde_json::json!({
        "accepted": accepted.events,
        "rejected": accepted.rejects.len(),
        "rejects": ingest::rejects_json(&accepted.rejects, REJECTS_SHOWN),
        "durable": app.sink.is_some(),
    });
    Ok(json_response(
        StatusCode::ACCEPTED,
        body.to_string().into_bytes(),
    ))
}

async fn otlp_traces(
    State(app): State<Shared>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let flavor = flavor(Endpoint::OtlpTraces, &headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start()
        .to_ascii_lowercase();
    if flavor == Flavor::OtlpJson && !content_type.starts_with("application/json") {
        return Err(ApiError::unsupported(
            "OTLP/HTTP takes Content-Type application/x-protobuf or application/json",
        )
        .with_flavor(flavor));
    }
    let outcome = async {
        ingest_room(&app)?;
        let decoded = if flavor == Flavor::OtlpProtobuf {
            let bytes = ingest::read_body(&headers, body, app.limits.max_body_bytes).await?;
            let (headers, limit) = (headers.clone(), app.limits.max_decoded_bytes);
            tokio::task::spawn_blocking(move || decode_protobuf(&headers, &bytes, limit))
                .await
                .map_err(|_| ApiError::internal("decoding the body failed"))??
        } else {
            decode_body(&app, &headers, body, Some(Format::OtlpJson)).await?
        };
        if decoded.events.is_empty() && !decoded.rejects.is_empty() {
            app.metrics.rejected(decoded.rejects.len() as u64);
            let reasons: Vec<String> = decoded.rejects.iter().map(|r| r.to_string()).collect();
            return Err(ApiError::bad_request(format!(
                "not a valid OTLP trace export: {}",
                reasons.join("; ")
            )));
        }
        accept(&app, &caller, decoded).await
    }
    .await
    .map_err(|err| err.with_flavor(flavor))?;
    let rejected: u64 = accepted_spans_rejected(&outcome.rejects);
    let partial = (rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: rejected as i64,
        error_message: outcome
            .rejects
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    });
    let (content_type, body) = if flavor == Flavor::OtlpProtobuf {
        let response = ExportTraceServiceResponse {
            partial_success: partial,
        };
        ("application/x-protobuf", response.encode_to_vec())
    } else {
        let body = match partial {
            Some(p) => serde_json::json!({"partialSuccess": {
                "rejectedSpans": p.rejected_spans,
                "errorMessage": p.error_message,
            }}),
            None => serde_json::json!({}),
        };
        ("application/json", body.to_string().into_bytes())
    };
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn accepted_spans_rejected(rejects: &[Reject]) -> u64 {
    rejects.iter().map(|r| ingest::spans_in(&r.record)).sum()
}

/// An OTLP protobuf export: all its spans, or a 400 naming the one at fault. An empty export
/// is valid and yields nothing.
fn decode_protobuf(headers: &HeaderMap, bytes: &[u8], limit: usize) -> Result<Decoded, ApiError> {
    let data = ingest::unpack(headers, bytes, limit)?;
    let mut decoded = Decoded::default();
    if data.is_empty() {
        return Ok(decoded);
    }
    let events = &mut decoded.events;
    nhiwatch_decode::otel::decode_protobuf(&data, &mut |event: Event<'static>| events.push(event))
        .map_err(|err| ApiError::bad_request(format!("not a valid OTLP trace export: {err}")))?;
    Ok(decoded)
}

async fn decide(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if app.queues.decide.is_closed() {
        return Err(ApiError::unavailable());
    }
    let bytes = ingest::read_body(&headers, body, app.limits.max_decide_bytes).await?;
    let started = Instant::now();
    let event = crate::decide::event(&bytes, || {
        let seq = app.decide_seq.fetch_add(1, Ordering::Relaxed);
        format!("decide-{:x}-{seq:x}", Timestamp::now().0)
    })?;
    let event_id = event.id.to_string();
    let (reply, answer) = tokio::sync::oneshot::channel();
    match app.queues.decide.try_send(DecideJob { event, reply }) {
        Ok(()) => {}
        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
            return Err(ApiError::overloaded("decision"))
        }
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
            return Err(ApiError::unavailable())
        }
    }
    let assessment = answer.await.map_err(|_| ApiError::unavailable())?;
    let body = crate::decide::answer(&assessment, &event_id);
    app.metrics.decide_latency.observe(started.elapsed());
    Ok(json_response(StatusCode::OK, body))
}

/// Query of `GET /v1/identities`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitiesQuery {
    limit: Option<usize>,
}

async fn identities(
    State(app): State<Shared>,
    query: Result<Query<IdentitiesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let (total, list) = app
        .view
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .identities(limit);
    let body = serde_json::json!({"total": total, "identities": list});
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

async fn identity(
    State(app): State<Shared>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let (summary, findings) = {
        let view = app.view.read().unwrap_or_else(|e| e.into_inner());
        let filter = FindingFilter {
            identity: Some(id.clone()),
            limit: 100,
            ..FindingFilter::default()
        };
        (view.identity(&id), view.findings(&filter))
    };
    let Some(summary) = summary else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such identity has been seen",
        ));
    };
    #[derive(Serialize)]
    struct Answer<'a> {
        identity: nhiwatch_store::IdentitySummary,
        findings: Vec<&'a KeptFinding>,
    }
    let answer = Answer {
        identity: summary,
        findings: findings.iter().map(|f| &**f).collect(),
    };
    Ok(json_response(StatusCode::OK, to_json(&answer)?))
}

/// Query of `GET /v1/findings`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingsQuery {
    identity: Option<String>,
    kind: Option<FindingKind>,
    min_severity: Option<Severity>,
    since: Option<Timestamp>,
    limit: Option<usize>,
}

async fn findings(
    State(app): State<Shared>,
    query: Result<Query<FindingsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let filter = FindingFilter {
        identity: query.identity,
        kind: query.kind,
        min_severity: query.min_severity,
        since: query.since,
        limit: query.limit.unwrap_or(100).clamp(1, 10_000),
    };
    let list = app
        .view
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .findings(&filter);
    #[derive(Serialize)]
    struct Answer<'a> {
        findings: Vec<&'a KeptFinding>,
    }
    let answer = Answer {
        findings: list.iter().map(|f| &**f).collect(),
    };
    Ok(json_response(StatusCode::OK, to_json(&answer)?))
}

fn to_json(answer: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(answer).map_err(|_| ApiError::internal("the answer could not be written"))
}

async fn health(State(app): State<Shared>) -> Response {
    if app.queues.decide.is_closed() || app.queues.ingest.is_closed() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"status":"unavailable"}"#.to_vec(),
        )
    } else if app.metrics.store_stopped() {
        let mut response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"status":"storage_failed"}"#.to_vec(),
        );
        // Counted with the store's refusals, not as load.
        response
            .extensions_mut()
            .insert(ErrorCode("storage_failed"));
        response
    } else {
        json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
    }
}

async fn metrics(State(app): State<Shared>) -> Response {
    let queues = &app.queues;
    let gauges = Gauges {
        ingest_queue: queues.ingest.max_capacity() - queues.ingest.capacity(),
        ingest_capacity: queues.ingest.max_capacity(),
        decide_queue: queues.decide.max_capacity() - queues.decide.capacity(),
        decide_capacity: queues.decide.max_capacity(),
        identities: app
            .view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .identity_count(),
    };
    let mut response = app.metrics.render(gauges).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    response
}
