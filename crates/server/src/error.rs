//! Structured errors: a status, a stable code and a message that says what the client can fix,
//! never an internal path or cause. OTLP clients get a `google.rpc.Status`, in the encoding of
//! their request, as the OTLP/HTTP specification requires.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use crate::durable::SinkFailure;

/// How an error body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `{"error": {"code", "message"}}`.
    Json,
    /// A protobuf-encoded `google.rpc.Status` (an OTLP/HTTP protobuf request).
    OtlpProtobuf,
    /// A JSON-encoded `google.rpc.Status` (an OTLP/HTTP JSON request).
    OtlpJson,
}

/// `google.rpc.Status`, as OTLP/HTTP returns it for a failed request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    /// A gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The stable code of an error answer, kept in the response's extensions for the metrics.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErrorCode(pub &'static str);

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    pub flavor: Flavor,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            flavor: Flavor::Json,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn too_large(what: &str, limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("{what} is over the {limit}-byte limit"),
        )
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// The engine's queue is full: come back shortly.
    pub fn overloaded(what: &str) -> Self {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("the {what} queue is full; retry after the time in Retry-After"),
            )
        }
    }

    /// The engine is gone (shutting down, or failed).
    pub fn unavailable() -> Self {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the detection engine is not running; retry later",
            )
        }
    }

    /// The evidence store could not take the events: out of space, or stopped after a failed
    /// write (both 503, which OTLP exporters and collectors retry), or a fault of the server
    /// (500). Nothing was stored.
    pub fn not_stored(failure: SinkFailure) -> Self {
        let (code, message) = match failure {
            SinkFailure::NoSpace => (
                "storage_full",
                "the evidence store is out of disk space (the disk is full, or a quota or file size limit was reached); nothing from this request was stored; retry after the time in Retry-After",
            ),
            SinkFailure::Stopped => (
                "storage_failed",
                "the evidence store stopped taking writes after a write failed (such as on a full disk) and needs a restart of the server; nothing from this request was stored; retry after the time in Retry-After",
            ),
            SinkFailure::Other => return ApiError::internal("the events could not be made durable"),
        };
        ApiError {
            retry_after: Some(30),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// Something on the server failed; the detail went to the server's log, not the client.
    pub fn internal(what: &str) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what}; the server log has the cause"),
        )
    }

    pub fn with_flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// The gRPC code OTLP clients read (google.rpc.Code).
    fn grpc_code(&self) -> i32 {
        match self.status.as_u16() {
            400 | 404 | 405 | 413 | 415 => 3, // INVALID_ARGUMENT
            401 => 16,                        // UNAUTHENTICATED
            403 => 7,                         // PERMISSION_DENIED
            429 => 8,                         // RESOURCE_EXHAUSTED
            503 => 14,                        // UNAVAILABLE
            _ => 13,                          // INTERNAL
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (content_type, body) = match self.flavor {
            Flavor::Json => (
                "application/json",
                serde_json::json!({"error": {"code": self.code, "message": self.message}})
                    .to_string()
                    .into_bytes(),
            ),
            Flavor::OtlpJson => (
                "application/json",
                serde_json::json!({"code": self.grpc_code(), "message": self.message})
                    .to_string()
                    .into_bytes(),
            ),
            Flavor::OtlpProtobuf => (
                "application/x-protobuf",
                RpcStatus {
                    code: self.grpc_code(),
                    message: self.message.clone(),
                }
                .encode_to_vec(),
            ),
        };
        let mut response = (self.status, body).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"nhiwatch\""),
            );
        }
        response
    }
}
