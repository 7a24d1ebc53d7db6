//! Request bodies to events: bounded reading, gzip (by `Content-Encoding` or magic bytes, never
//! unpacked past the decoded-size limit), and decoding through [`nhiwatch_decode::Reader`].

use std::borrow::Cow;
use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use flate2::read::MultiGzDecoder;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use nhiwatch_decode::{Format, ReadOptions, Reader, Reject, Sinks};
use nhiwatch_model::Event;

use crate::error::ApiError;

/// Gzip's magic bytes.
const GZIP: [u8; 2] = [0x1f, 0x8b];

/// Reads a body of at most `limit` bytes (413 beyond, before reading when `Content-Length`
/// says so).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::too_large("the request body", limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::too_large("the request body", limit))
        }
        Err(_) => Err(ApiError::bad_request(
            "the request body could not be read to its end",
        )),
    }
}

/// Undoes gzip, declared (`Content-Encoding: gzip`) or recognised by its magic bytes, up to
/// twice nested; the result is at most `limit` bytes. A zip archive is refused: its entries
/// cannot be bounded before they are unpacked.
pub(crate) fn unpack<'b>(
    headers: &HeaderMap,
    body: &'b [u8],
    limit: usize,
) -> Result<Cow<'b, [u8]>, ApiError> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity" | "gzip" | "x-gzip") => {}
        Some(other) => {
            return Err(ApiError::unsupported(format!(
                "Content-Encoding `{other}` is not supported; send gzip or no encoding"
            )))
        }
    }
    let mut data = Cow::Borrowed(body);
    for _ in 0..2 {
        if !data.starts_with(&GZIP) {
            break;
        }
        let mut out = Vec::new();
        MultiGzDecoder::new(&data[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|err| ApiError::bad_request(format!("the gzip stream is corrupt: {err}")))?;
        if out.len() > limit {
            return Err(ApiError::too_large("the decompressed body", limit));
        }
        data = Cow::Owned(out);
    }
    if data.starts_with(&GZIP) {
        return Err(ApiError::unsupported(
            "the body is gzip nested more than twice over",
        ));
    }
    if data.starts_with(b"PK\x03\x04") {
        return Err(ApiError::unsupported(
            "zip archives are not accepted over HTTP; send JSON lines, a JSON document or OTLP, gzipped if you like",
        ));
    }
    Ok(data)
}

/// What a body decoded to.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// The events, owned.
    pub events: Vec<Event<'static>>,
    /// Records that could not be decoded.
    pub rejects: Vec<Reject>,
    /// Whether the body held more events than the limit (the rest were not kept).
    pub over_limit: bool,
}

/// Decodes a body with the reader: JSON lines of any supported format, whole JSON documents,
/// envelopes (`{"Records": [...]}`), OTLP JSON or protobuf. `format` forces one format.
pub(crate) fn decode(data: &[u8], format: Option<Format>, max_events: usize) -> Decoded {
    let options = ReadOptions {
        max_document_bytes: data.len().max(1),
        format,
        ..ReadOptions::default()
    };
    let mut reader = Reader::new(options, None);
    let mut decoded = Decoded::default();
    {
        let Decoded {
            events,
            rejects,
            over_limit,
        } = &mut decoded;
        let mut on_event = |event: Event<'_>| {
            if events.len() < max_events {
                events.push(event.into_owned());
            } else {
                *over_limit = true;
            }
        };
        let mut on_reject = |reject: Reject| rejects.push(reject);
        let mut sinks = Sinks {
            event: &mut on_event,
            reject: &mut on_reject,
        };
        reader.read_bytes("body", data, &mut sinks);
        reader.finish(&mut sinks);
    }
    decoded
}

/// The rejects as the client sees them: where and why, at most `limit` of them, without the
/// record (the client has it).
pub(crate) fn rejects_json(rejects: &[Reject], limit: usize) -> serde_json::Value {
    rejects
        .iter()
        .take(limit)
        .map(|r| {
            serde_json::json!({
                "line": r.line,
                "index": r.index,
                "field": r.field,
                "reason": r.reason,
            })
        })
        .collect()
}

/// Spans in a rejected OTLP JSON document (at least 1), for `partialSuccess.rejectedSpans`.
pub(crate) fn spans_in(record: &str) -> u64 {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(record) else {
        return 1;
    };
    let count = |value: &serde_json::Value, key: &str| -> Vec<serde_json::Value> {
        value
            .get(key)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let spans: usize = count(&doc, "resourceSpans")
        .iter()
        .flat_map(|r| count(r, "scopeSpans"))
        .map(|s| count(&s, "spans").len())
        .sum();
    (spans as u64).max(1)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn unpacks_gzip_by_magic_and_nested_but_bounded() {
        let headers = HeaderMap::new();
        let plain = b"{\"a\":1}\n".repeat(100);
        assert_eq!(&*unpack(&headers, &plain, 1 << 20).unwrap(), &plain[..]);
        assert_eq!(
            &*unpack(&headers, &gzip(&plain), 1 << 20).unwrap(),
            &plain[..]
        );
        assert_eq!(
            &*unpack(&headers, &gzip(&gzip(&plain)), 1 << 20).unwrap(),
            &plain[..]
        );
        let err = unpack(&headers, &gzip(&gzip(&gzip(&plain))), 1 << 20).unwrap_err();
        assert_eq!(err.status.as_u16(), 415);
        // A small body that inflates past the limit is refused without inflating it all.
        let bomb = gzip(&vec![b' '; 10 << 20]);
        assert!(bomb.len() < 20_000);
        assert_eq!(
            unpack(&headers, &bomb, 1 << 20)
                .unwrap_err()
                .status
                .as_u16(),
            413
        );
        assert_eq!(
            unpack(&headers, &[0x1f, 0x8b, 1, 2, 3], 100)
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
        assert_eq!(
            unpack(&headers, b"PK\x03\x04rest", 100)
                .unwrap_err()
                .status
                .as_u16(),
            415
        );
        let mut brotli = HeaderMap::new();
        brotli.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(
            unpack(&brotli, b"{}", 100).unwrap_err().status.as_u16(),
            415
        );
    }

    #[test]
    fn counts_spans_of_a_rejected_document() {
        let doc = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{}]},{"spans":[{}]}]}]}"#;
        assert_eq!(spans_in(doc), 3);
        assert_eq!(spans_in("not json"), 1);
    }
}
