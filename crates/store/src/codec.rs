//! Byte encodings of everything the store keeps.
//!
//! Values are compact binary records with a leading version byte, so the format can grow without
//! guessing. Enumerations are stored as one-byte codes fixed here (never derived from declaration
//! order, so reordering a model enum cannot change what stored bytes mean). Strings are a LEB128
//! length and UTF-8 bytes. An event's raw record is deflated on its own, so reading an event's
//! normalised fields never inflates anything.
//!
//! Every decoder here treats its input as untrusted: a stored value may have been altered on disk,
//! so a short, overlong or malformed value is a [`Corrupt`] error, never a panic.

use std::borrow::Cow;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use nhiwatch_model::{
    ActionClass, Decision, Event, Finding, FindingKind, Identity, IdentityKind, Outcome, Source,
    Timestamp,
};
use serde_json::value::RawValue;

use crate::{Content, Profile, RiskPoint};

/// A stored value that cannot be read: what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt(pub &'static str);

macro_rules! codes {
    ($encode:ident, $ty:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        /// The stored code of a value (fixed forever: add new codes, never renumber).
        pub(crate) fn $encode(value: $ty) -> u8 {
            match value { $($ty::$variant => $code),+ }
        }
    };
    ($encode:ident, $decode:ident, $ty:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        codes!($encode, $ty { $($variant = $code),+ });
        /// The value of a stored code.
        pub(crate) fn $decode(code: u8) -> Result<$ty, Corrupt> {
            match code {
                $($code => Ok($ty::$variant),)+
                _ => Err(Corrupt(concat!("unknown ", stringify!($ty), " code"))),
            }
        }
    };
}

codes!(source_code, source_of, Source {
    Cloudtrail = 0, K8sAudit = 1, GithubAudit = 2, Otel = 3, AgentTrace = 4, Jsonl = 5,
});
codes!(identity_kind_code, identity_kind_of, IdentityKind {
    Role = 0, ServiceAccount = 1, ApiKey = 2, Workload = 3, Agent = 4, Bot = 5, User = 6, Unknown = 7,
});
codes!(action_class_code, action_class_of, ActionClass {
    Read = 0, List = 1, Write = 2, Delete = 3, Permission = 4, Exec = 5, Auth = 6, Other = 7,
});
codes!(outcome_code, outcome_of, Outcome { Success = 0, Denied = 1, Error = 2 });
codes!(decision_code, decision_of, Decision { Allow = 0, Review = 1, StepUp = 2, Block = 3 });
codes!(finding_kind_code, FindingKind {
    OutOfScope = 0, DeniedAttempts = 1, WorkflowDeviation = 2, NovelAction = 3, NovelResource = 4,
    SensitiveAccess = 5, RareSequence = 6, Enumeration = 7, TimeAnomaly = 8, VolumeAnomaly = 9,
    RateAnomaly = 10, NewOrigin = 11, PrivilegeEscalation = 12, DefenseEvasion = 13, Rule = 14,
});

// ---------------------------------------------------------------------------------------------
// Primitive writers and a bounds-checked reader.

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn put_str(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

pub(crate) fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Reads a stored value front to back, failing (never panicking) when it runs short.
pub(crate) struct Reader<'v> {
    bytes: &'v [u8],
    pos: usize,
}

impl<'v> Reader<'v> {
    pub(crate) fn new(bytes: &'v [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'v [u8], Corrupt> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(Corrupt("value is shorter than its fields"))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Corrupt> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Corrupt> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Corrupt("length is longer than 64 bits"))
    }

    pub(crate) fn str(&mut self) -> Result<&'v str, Corrupt> {
        let len = usize::try_from(self.varint()?).map_err(|_| Corrupt("length out of range"))?;
        std::str::from_utf8(self.take(len)?).map_err(|_| Corrupt("text is not UTF-8"))
    }

    pub(crate) fn rest(&mut self) -> &'v [u8] {
        let rest = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        rest
    }

    pub(crate) fn expect_version(&mut self, version: u8) -> Result<(), Corrupt> {
        if self.u8()? == version {
            Ok(())
        } else {
            Err(Corrupt("unknown record version"))
        }
    }
}

/// The first 16 bytes of the BLAKE3 hash of length-prefixed parts: the store's natural keys.
pub(crate) fn key16(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    key
}

/// The natural key of an event: its source and the source's own id. Ids are only unique within
/// a source (a CloudTrail `eventID` and a Kubernetes `auditID` may collide), so both are keyed.
pub(crate) fn event_key(source: Source, id: &str) -> [u8; 16] {
    key16(&[b"event", &[source_code(source)], id.as_bytes()])
}

/// The natural key of a finding: its stable id.
pub(crate) fn finding_key(id: &str) -> [u8; 16] {
    key16(&[b"finding", id.as_bytes()])
}

// ---------------------------------------------------------------------------------------------
// Events.

const EVENT_VERSION: u8 = 1;
const INFERRED: u16 = 1;
const SESSION: u16 = 1 << 1;
const CREDENTIAL: u16 = 1 << 2;
const RESOURCE: u16 = 1 << 3;
const ERROR: u16 = 1 << 4;
const SRC_IP: u16 = 1 << 5;
const USER_AGENT: u16 = 1 << 6;
const BYTES_OUT: u16 = 1 << 7;
const RECORDS: u16 = 1 << 8;

/// How the raw record is kept.
const RAW_STORED: u8 = 0;
const RAW_DEFLATED: u8 = 1;

/// Raw records shorter than this are kept as they are: deflate cannot win much on them.
const MIN_DEFLATE: usize = 96;

/// A reusable raw-deflate compressor (the state is ~300 KiB; making one per record would cost
/// more than compressing).
pub(crate) struct Deflater(Compress);

impl Deflater {
    pub(crate) fn new() -> Self {
        Deflater(Compress::new(Compression::fast(), false))
    }

    /// Appends `input` deflated to `out`; false (and `out` as it was) when deflate failed.
    fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        self.0.reset();
        out.reserve(input.len() / 2 + 64);
        loop {
            let consumed = self.0.total_in() as usize;
            match self
                .0
                .compress_vec(&input[consumed..], out, FlushCompress::Finish)
            {
                Ok(Status::StreamEnd) => return true,
                Ok(_) => out.reserve(out.capacity().max(64)),
                Err(_) => {
                    out.truncate(start);
                    return false;
                }
            }
        }
    }
}

/// A reusable raw-deflate decompressor.
pub(crate) struct Inflater(Decompress);

impl Inflater {
    pub(crate) fn new() -> Self {
        Inflater(Decompress::new(false))
    }

    fn inflate(&mut self, input: &[u8], len: usize) -> Result<Vec<u8>, Corrupt> {
        self.0.reset(false);
        let mut out = Vec::with_capacity(len);
        match self
            .0
            .decompress_vec(input, &mut out, FlushDecompress::Finish)
        {
            Ok(Status::StreamEnd) if out.len() == len => Ok(out),
            _ => Err(Corrupt("raw record does not inflate to its stored length")),
        }
    }
}

/// Appends the stored form of `event` to `out`.
pub(crate) fn encode_event(event: &Event<'_>, deflater: &mut Deflater, out: &mut Vec<u8>) {
    let optional_texts = [
        (SESSION, event.identity.session.as_deref()),
        (CREDENTIAL, event.identity.credential.as_deref()),
        (RESOURCE, event.resource.as_deref()),
        (ERROR, event.error.as_deref()),
        (SRC_IP, event.src_ip.as_deref()),
        (USER_AGENT, event.user_agent.as_deref()),
    ];
    let mut flags = 0u16;
    if event.time_inferred {
        flags |= INFERRED;
    }
    for (bit, text) in optional_texts {
        if text.is_some() {
            flags |= bit;
        }
    }
    if event.bytes_out.is_some() {
        flags |= BYTES_OUT;
    }
    if event.records.is_some() {
        flags |= RECORDS;
    }
    out.push(EVENT_VERSION);
    out.extend_from_slice(&flags.to_le_bytes());
    put_i64(out, event.time.0);
    out.push(source_code(event.source));
    out.push(identity_kind_code(event.identity.kind));
    out.push(action_class_code(event.action_class));
    out.push(outcome_code(event.outcome));
    put_str(out, &event.id);
    put_str(out, &event.identity.id);
    put_str(out, &event.action);
    for text in optional_texts.iter().filter_map(|(_, t)| *t) {
        put_str(out, text);
    }
    for number in [event.bytes_out, event.records].into_iter().flatten() {
        put_u64(out, number);
    }
    let raw = event.raw.get().as_bytes();
    put_varint(out, raw.len() as u64);
    let method_at = out.len();
    out.push(RAW_DEFLATED);
    let deflated = raw.len() >= MIN_DEFLATE && deflater.deflate(raw, out);
    if !deflated || out.len() - method_at > raw.len() {
        out.truncate(method_at);
        out.push(RAW_STORED);
        out.extend_from_slice(raw);
    }
}

/// Reads a stored event. With an [`Inflater`] the raw record is restored; without one the
/// event's `raw` is JSON `null` (the normalised fields are all there, nothing is inflated).
pub(crate) fn decode_event<'v>(
    value: &'v [u8],
    inflater: Option<&mut Inflater>,
) -> Result<Event<'v>, Corrupt> {
    let mut r = Reader::new(value);
    r.expect_version(EVENT_VERSION)?;
    let flags = r.u16()?;
    let time = Timestamp(r.i64()?);
    let source = source_of(r.u8()?)?;
    let kind = identity_kind_of(r.u8()?)?;
    let action_class = action_class_of(r.u8()?)?;
    let outcome = outcome_of(r.u8()?)?;
    let id = r.str()?;
    let identity_id = r.str()?;
    let action = r.str()?;
    let mut optional = |bit: u16| -> Result<Option<Cow<'v, str>>, Corrupt> {
        Ok(if flags & bit != 0 {
            Some(Cow::Borrowed(r.str()?))
        } else {
            None
        })
    };
    let session = optional(SESSION)?;
    let credential = optional(CREDENTIAL)?;
    let resource = optional(RESOURCE)?;
    let error = optional(ERROR)?;
    let src_ip = optional(SRC_IP)?;
    let user_agent = optional(USER_AGENT)?;
    let bytes_out = if flags & BYTES_OUT != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    let records = if flags & RECORDS != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    let raw_len = usize::try_from(r.varint()?).map_err(|_| Corrupt("length out of range"))?;
    let method = r.u8()?;
    let stored = r.rest();
    let raw = match (inflater, method) {
        (None, RAW_STORED | RAW_DEFLATED) => Cow::Borrowed(RawValue::NULL),
        (Some(_), RAW_STORED) => {
            if stored.len() != raw_len {
                return Err(Corrupt("raw record is not its stored length"));
            }
            let text =
                std::str::from_utf8(stored).map_err(|_| Corrupt("raw record is not UTF-8"))?;
            Cow::Borrowed(
                serde_json::from_str::<&RawValue>(text)
                    .map_err(|_| Corrupt("raw record is not JSON"))?,
            )
        }
        (Some(inflater), RAW_DEFLATED) => {
            let bytes = inflater.inflate(stored, raw_len)?;
            let text = String::from_utf8(bytes).map_err(|_| Corrupt("raw record is not UTF-8"))?;
            Cow::Owned(RawValue::from_string(text).map_err(|_| Corrupt("raw record is not JSON"))?)
        }
        _ => return Err(Corrupt("unknown raw record encoding")),
    };
    Ok(Event {
        id: Cow::Borrowed(id),
        time,
        time_inferred: flags & INFERRED != 0,
        source,
        identity: Identity {
            id: Cow::Borrowed(identity_id),
            kind,
            session,
            credential,
        },
        action: Cow::Borrowed(action),
        action_class,
        resource,
        outcome,
        error,
        src_ip,
        user_agent,
        bytes_out,
        records,
        raw,
    })
}

// ---------------------------------------------------------------------------------------------
// Risk points and profiles.

const RISK_VERSION: u8 = 1;
const PROFILE_VERSION: u8 = 1;

pub(crate) fn encode_risk(point: &RiskPoint, out: &mut Vec<u8>) {
    out.push(RISK_VERSION);
    put_i64(out, point.time.0);
    out.push(point.risk);
    out.push(decision_code(point.decision));
    put_str(out, &point.identity);
    put_str(out, &point.cause);
}

pub(crate) fn decode_risk(value: &[u8]) -> Result<RiskPoint, Corrupt> {
    let mut r = Reader::new(value);
    r.expect_version(RISK_VERSION)?;
    let time = Timestamp(r.i64()?);
    let risk = r.u8()?;
    let decision = decision_of(r.u8()?)?;
    let identity = r.str()?.to_owned();
    let cause = r.str()?.to_owned();
    Ok(RiskPoint {
        identity,
        time,
        risk,
        decision,
        cause,
    })
}

pub(crate) fn encode_profile(profile: &Profile, out: &mut Vec<u8>) {
    out.push(PROFILE_VERSION);
    put_i64(out, profile.time.0);
    out.extend_from_slice(&profile.version.to_le_bytes());
    put_str(out, &profile.identity);
    out.extend_from_slice(&profile.data);
}

pub(crate) fn decode_profile(value: &[u8]) -> Result<Profile, Corrupt> {
    let mut r = Reader::new(value);
    r.expect_version(PROFILE_VERSION)?;
    let time = Timestamp(r.i64()?);
    let version = r.u32()?;
    let identity = r.str()?.to_owned();
    let data = r.rest().to_vec();
    Ok(Profile {
        identity,
        time,
        version,
        data,
    })
}

pub(crate) fn decode_finding(value: &[u8]) -> Result<Finding, Corrupt> {
    serde_json::from_slice(value).map_err(|_| Corrupt("finding is not valid JSON"))
}

// ---------------------------------------------------------------------------------------------
// What every stored item shares.

/// The parts of a stored item that its keys and indexes are made of.
pub(crate) struct ItemHead<'v> {
    /// The identity it belongs to.
    pub identity: Cow<'v, str>,
    /// Its time (event time, finding time, risk time, profile time).
    pub time: i64,
    /// Its natural key, for idempotent re-ingest.
    pub key: [u8; 16],
    /// A finding's kind (for the kind index).
    pub kind: Option<FindingKind>,
    /// An event's action and outcome (for the action summary).
    pub action: Option<(Cow<'v, str>, Outcome, IdentityKind)>,
    /// An event whose time is when it was read, not a time of its own.
    pub inferred: bool,
}

/// Reads what keys and indexes need from a stored value of the given content.
pub(crate) fn item_head(content: Content, value: &[u8]) -> Result<ItemHead<'_>, Corrupt> {
    Ok(match content {
        Content::Events => {
            let event = decode_event(value, None)?;
            ItemHead {
                key: event_key(event.source, &event.id),
                time: event.time.0,
                action: Some((event.action, event.outcome, event.identity.kind)),
                identity: event.identity.id,
                kind: None,
                inferred: event.time_inferred,
            }
        }
        Content::Findings => {
            let finding = decode_finding(value)?;
            ItemHead {
                key: finding_key(&finding.id),
                time: finding.time.0,
                identity: Cow::Owned(finding.identity),
                kind: Some(finding.kind),
                action: None,
                inferred: false,
            }
        }
        Content::Risks => {
            let point = decode_risk(value)?;
            ItemHead {
                key: key16(&[
                    b"risk",
                    point.identity.as_bytes(),
                    &point.time.0.to_le_bytes(),
                    point.cause.as_bytes(),
                ]),
                time: point.time.0,
                identity: Cow::Owned(point.identity),
                kind: None,
                action: None,
                inferred: false,
            }
        }
        Content::Profiles => {
            let profile = decode_profile(value)?;
            ItemHead {
                key: key16(&[
                    b"profile",
                    profile.identity.as_bytes(),
                    &profile.time.0.to_le_bytes(),
                    &profile.version.to_le_bytes(),
                    &profile.data,
                ]),
                time: profile.time.0,
                identity: Cow::Owned(profile.identity),
                kind: None,
                action: None,
                inferred: false,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(raw: &str) -> Event<'static> {
        Event {
            id: "e-1".into(),
            time: Timestamp(1_600_000_000_000_000_123),
            time_inferred: true,
            source: Source::K8sAudit,
            identity: Identity {
                id: "system:serviceaccount:ns:sa".into(),
                kind: IdentityKind::ServiceAccount,
                session: None,
                credential: Some("token-1".into()),
            },
            action: "k8s:get/secrets".into(),
            action_class: ActionClass::Read,
            resource: Some("k8s:ns/secrets/db".into()),
            outcome: Outcome::Denied,
            error: Some("Forbidden".into()),
            src_ip: Some("10.0.0.1".into()),
            user_agent: None,
            bytes_out: Some(0),
            records: Some(7),
            raw: Cow::Owned(RawValue::from_string(raw.to_owned()).unwrap()),
        }
    }

    fn round_trip(raw: &str) {
        let original = event(raw);
        let mut out = Vec::new();
        encode_event(&original, &mut Deflater::new(), &mut out);
        let back = decode_event(&out, Some(&mut Inflater::new())).unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&original).unwrap()
        );
        let lean = decode_event(&out, None).unwrap();
        assert_eq!(lean.raw.get(), "null");
        assert_eq!(lean.resource.as_deref(), Some("k8s:ns/secrets/db"));
    }

    #[test]
    fn events_round_trip_with_short_and_long_raw_records() {
        round_trip(r#"{"auditID":"e-1"}"#);
        let long = format!(r#"{{"auditID":"e-1","pad":"{}"}}"#, "abc".repeat(200));
        round_trip(&long);
    }

    #[test]
    fn long_raw_records_are_deflated() {
        let long = format!(r#"{{"pad":"{}"}}"#, "abc".repeat(400));
        let mut out = Vec::new();
        encode_event(&event(&long), &mut Deflater::new(), &mut out);
        assert!(out.len() < long.len() / 4, "{} bytes", out.len());
    }

    #[test]
    fn every_truncation_and_flip_is_an_error_not_a_panic() {
        let long = format!(r#"{{"pad":"{}"}}"#, "xyz".repeat(100));
        let mut out = Vec::new();
        encode_event(&event(&long), &mut Deflater::new(), &mut out);
        let mut inflater = Inflater::new();
        for cut in 0..out.len() {
            assert!(decode_event(&out[..cut], Some(&mut inflater)).is_err());
        }
        for i in 0..out.len() {
            let mut flipped = out.clone();
            flipped[i] ^= 0x55;
            let _ = decode_event(&flipped, Some(&mut inflater));
        }
    }

    #[test]
    fn codes_round_trip() {
        let codes: std::collections::BTreeSet<u8> = FindingKind::ALL
            .into_iter()
            .map(finding_kind_code)
            .collect();
        assert_eq!(codes.len(), FindingKind::ALL.len());
        for source in Source::ALL {
            assert_eq!(source_of(source_code(source)), Ok(source));
        }
        assert!(decision_of(9).is_err());
    }

    #[test]
    fn event_keys_separate_sources() {
        assert_ne!(
            event_key(Source::Cloudtrail, "x"),
            event_key(Source::K8sAudit, "x")
        );
        assert_eq!(event_key(Source::Otel, "x"), event_key(Source::Otel, "x"));
    }
}
