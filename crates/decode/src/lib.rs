//! # nhiwatch-decode
//!
//! Turns provider telemetry, exactly as the providers write it, into nhiwatch's normalised
//! [`Event`]s (DESIGN.md, "Normalised event").
//!
//! Two layers:
//! - **Record decoders**, one module per format ([`cloudtrail`], [`k8s`], [`github`], [`otel`],
//!   [`agent`], [`mapped`], [`normalised`]). Each turns one JSON record (as borrowed text) into
//!   zero or more events that borrow from it, or a [`DecodeError`] naming the field at fault.
//! - **The [`Reader`]**: files, directories, `.gz`, `.zip` and standard input; JSON lines,
//!   whole documents and envelopes (`{"Records": [...]}`, Kubernetes `EventList`, JSON arrays);
//!   format detection per record ([`sniff`]); bounded record sizes; and every record that cannot
//!   be decoded reported as a [`Reject`] with its file, line and reason, while the rest flows on.

#![warn(missing_docs)]

use std::borrow::Cow;
use std::fmt;

use nhiwatch_model::Event;

pub mod agent;
pub mod aws;
pub mod cloudtrail;
pub mod github;
mod json;
pub mod k8s;
pub mod mapped;
pub mod normalised;
pub mod otel;
mod raw;
mod reader;
mod sniff;

pub use reader::{is_documentation, ReadOptions, ReadStats, Reader, Reject, Sinks};
pub use sniff::sniff;

/// Why a record could not be decoded. The [`Reader`] adds where (file, line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The field at fault, as a dotted path in the record (`userIdentity.arn`), when one is.
    pub field: Option<Cow<'static, str>>,
    /// What is wrong, in words a person can act on.
    pub reason: Cow<'static, str>,
}

impl DecodeError {
    /// An error about the record as a whole.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        DecodeError {
            field: None,
            reason: reason.into(),
        }
    }

    /// An error about one field.
    pub fn field(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        DecodeError {
            field: Some(field.into()),
            reason: reason.into(),
        }
    }

    /// A JSON syntax or type error from serde_json, with its column.
    pub fn json(err: &serde_json::Error) -> Self {
        DecodeError::new(format!("invalid JSON: {err}"))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads a provider timestamp: RFC 3339, or RFC 3339 without an offset
/// (`2022-12-11 19:42:55.000`, as Panther writes its UTC times), read as UTC.
pub(crate) fn parse_time(text: &str) -> Option<nhiwatch_model::Timestamp> {
    use nhiwatch_model::Timestamp;
    if let Ok(time) = Timestamp::parse_rfc3339(text) {
        return Some(time);
    }
    if !text.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    // `text` followed by `Z`, without allocating; longer texts are no timestamps.
    let mut buf = [b'Z'; 40];
    buf.get_mut(..text.len())?.copy_from_slice(text.as_bytes());
    let with_zone = std::str::from_utf8(buf.get(..=text.len())?).ok()?;
    Timestamp::parse_rfc3339(with_zone).ok()
}

/// A record format nhiwatch can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// One AWS CloudTrail record.
    CloudTrail,
    /// One Kubernetes audit.k8s.io/v1 `Event`.
    K8sAudit,
    /// One GitHub audit log entry.
    GithubAudit,
    /// One OTLP JSON `ExportTraceServiceRequest` (or `TracesData`) document.
    OtlpJson,
    /// One AI-agent transcript with OpenAI-style `tool_calls`.
    AgentTrace,
    /// One of nhiwatch's own normalised events, read back.
    Normalised,
    /// Generic JSON, decoded through a field mapping ([`mapped::Mapping`]).
    Mapped,
}

impl Format {
    /// A short name for messages and the `--input-format` option.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::CloudTrail => "cloudtrail",
            Format::K8sAudit => "k8s_audit",
            Format::GithubAudit => "github_audit",
            Format::OtlpJson => "otlp_json",
            Format::AgentTrace => "agent_trace",
            Format::Normalised => "normalised",
            Format::Mapped => "mapped",
        }
    }
}

/// Decodes one record of a known format into events that borrow from it.
pub trait RecordDecoder {
    /// Decodes `record` (one JSON value as text), handing each event to `emit`. A record may
    /// yield no event (a Kubernetes stage held back until its final stage) or several (the tool
    /// calls of one agent transcript). An error rejects the record; events already emitted stand.
    fn decode<'a>(
        &mut self,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError>;

    /// Called once at the end of all input: emit anything held back.
    fn finish(&mut self, emit: &mut dyn FnMut(Event<'static>)) {
        let _ = emit;
    }
}

/// One decoder per format, with their state (caches, held-back stages), dispatching on [`Format`].
pub struct Decoders {
    cloudtrail: cloudtrail::CloudTrailDecoder,
    k8s: k8s::K8sAuditDecoder,
    github: github::GithubAuditDecoder,
    otlp: otel::OtlpJsonDecoder,
    agent: agent::AgentTraceDecoder,
    normalised: normalised::NormalisedDecoder,
    mapped: Option<mapped::MappedDecoder>,
}

impl Decoders {
    /// Decoders for every format; generic JSON is decoded only when a mapping is given.
    pub fn new(mapping: Option<mapped::Mapping>) -> Self {
        Decoders {
            cloudtrail: Default::default(),
            k8s: Default::default(),
            github: Default::default(),
            otlp: Default::default(),
            agent: Default::default(),
            normalised: Default::default(),
            mapped: mapping.map(mapped::MappedDecoder::new),
        }
    }

    /// Whether a generic field mapping was configured.
    pub fn has_mapping(&self) -> bool {
        self.mapped.is_some()
    }

    /// Decodes one record of the given format.
    pub fn decode<'a>(
        &mut self,
        format: Format,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        self.decoder(format)?.decode(record, emit)
    }

    /// Emits whatever any decoder held back; call at the end of all input.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Event<'static>)) {
        self.cloudtrail.finish(emit);
        self.k8s.finish(emit);
        self.github.finish(emit);
        self.otlp.finish(emit);
        self.agent.finish(emit);
        self.normalised.finish(emit);
        if let Some(mapped) = &mut self.mapped {
            mapped.finish(emit);
        }
    }

    fn decoder(&mut self, format: Format) -> Result<&mut dyn RecordDecoder, DecodeError> {
        Ok(match format {
            Format::CloudTrail => &mut self.cloudtrail,
            Format::K8sAudit => &mut self.k8s,
            Format::GithubAudit => &mut self.github,
            Format::OtlpJson => &mut self.otlp,
            Format::AgentTrace => &mut self.agent,
            Format::Normalised => &mut self.normalised,
            Format::Mapped => match &mut self.mapped {
                Some(mapped) => mapped,
                None => {
                    return Err(DecodeError::new(
                        "generic JSON needs a field mapping (--mapping FILE)",
                    ))
                }
            },
        })
    }
}

impl Default for Decoders {
    fn default() -> Self {
        Decoders::new(None)
    }
}
