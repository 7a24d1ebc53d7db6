//! Kubernetes audit events (`audit.k8s.io/v1` and `v1beta1` `Event`), as the API server writes
//! them (log backend: one JSON object per line; webhook backend: `EventList`, opened by the
//! [`Reader`](crate::Reader)) and as the managed services deliver them:
//!
//! - **EKS** (CloudWatch Logs export, Panther's `Amazon.EKS.Audit`): the API server's JSON as is.
//! - **AKS** diagnostic logs (`{"category": "kube-audit", "properties": {"log": "<event JSON>"},
//!   "time": ...}`): the event is read from the `properties.log` string; `raw` is the whole
//!   record. Its strings are unescaped from that string, so these events own their text.
//! - **GKE** Cloud Audit Logs (`{"protoPayload": {"serviceName": "k8s.io", "methodName":
//!   "io.k8s.core.v1.pods.get", "resourceName": "core/v1/namespaces/ns/pods/x", ...}}`), see
//!   *GKE* below.
//!
//! # Normalisation
//!
//! - **id** = `auditID`; a record without one gets a [`content_id`].
//! - **time** = `stageTimestamp`, else `requestReceivedTimestamp`, else `timestamp` (v1beta1),
//!   else Panther's `p_event_time` (AKS: then the record's `time`); times without a UTC offset
//!   (as Panther writes them) are UTC. None readable: the time of reading, flagged
//!   `time_inferred`.
//! - **identity.id** = `user.username`. When the request impersonated someone
//!   (`impersonatedUser`), the event is attributed to the impersonated user and the real,
//!   authenticated user is kept in `identity.session` — as an assumed-role session name says who
//!   assumed a role — with the real user's credential.
//! - **identity.kind** from the name: `system:serviceaccount:<ns>:<name>` and GCP service
//!   accounts (`*.gserviceaccount.com`) → `service_account`; other `system:` users (nodes
//!   `system:node:*`, `system:kube-controller-manager`, `system:kube-scheduler`,
//!   `system:apiserver`, ...) and EKS's `eks:*` control-plane users → `workload`; AWS role ARNs
//!   (EKS access entries) → `role`; e-mail addresses → `user`; `system:anonymous` and any other
//!   name (certificate users such as `kubernetes-admin`) → `unknown`, since the name does not
//!   say what acted.
//! - **identity.credential** = `user.extra["authentication.kubernetes.io/credential-id"]`
//!   (`JTI=...` for service-account tokens, `X509SHA256=...` for certificates), else EKS's
//!   `user.extra.accessKeyId`. **identity.session** = the pod a service-account token is bound
//!   to (`user.extra["authentication.kubernetes.io/pod-name"]`), else EKS's
//!   `user.extra.sessionName`.
//! - **action** = `k8s:<verb>/<resource>[/<subresource>]` (`k8s:get/secrets`,
//!   `k8s:create/pods/exec`). A non-resource request (no `objectRef`: `/healthz`, `/version`,
//!   `/apis/apps/v1`) is `k8s:<verb>/<path>`, the `requestURI`'s path without its leading `/` and
//!   query (`k8s:get/healthz`); no built-in resource is named like the first segment of such a
//!   path. A record with neither is `k8s:<verb>`. A missing verb is `unknown`.
//! - **action_class** ([`classify`]), first match wins:
//!
//!   | request | class |
//!   |---|---|
//!   | subresource `exec`, `attach`, `portforward`, `proxy` (any verb: websocket exec is a `get`) | `exec` |
//!   | verb `impersonate`, `escalate`, `bind` | `permission` |
//!   | `tokenreviews`, `*subjectaccessreviews`, `selfsubjectrulesreviews`, `selfsubjectreviews` | `auth` |
//!   | `create serviceaccounts/token` (a token request), `create certificatesigningrequests` | `auth` |
//!   | writes and deletes of `roles`, `rolebindings`, `clusterroles`, `clusterrolebindings`, `serviceaccounts`, `certificatesigningrequests/approval` | `permission` |
//!   | `get` | `read` |
//!   | `list`, `watch` | `list` |
//!   | `create`, `update`, `patch` | `write` |
//!   | `delete`, `deletecollection` | `delete` |
//!   | anything else | `other` |
//!
//! - **resource**, as DESIGN.md writes it, from `objectRef`: `k8s:<ns>/<resource>[/<name>[/<sub>]]`
//!   for namespaced objects (`k8s:prod/secrets/db-password`), `k8s:<resource>[/<name>[/<sub>]]`
//!   for cluster-scoped ones (`k8s:clusterroles/admin`), `k8s:namespaces/<name>` for a namespace
//!   itself. The API group is left out (resource names are unique across the built-in groups;
//!   `objectRef.apiGroup` stays in `raw`), so a policy glob `k8s:prod/secrets/*` matches whichever
//!   group version the client used. A non-resource request's resource is its path (`/healthz`).
//! - **outcome**: `responseStatus.code` 401 or 403, or the annotation
//!   `authorization.k8s.io/decision: forbid` → `denied`; another code ≥ 400, or the `Panic`
//!   stage → `error`; else `success`. **error** = `responseStatus.reason`, else its `message`,
//!   else the code's Kubernetes reason (`Forbidden`).
//! - **src_ip** = `sourceIPs[0]`; **user_agent** = `userAgent`.
//!
//! # Stages: one event per request
//!
//! The API server may log a request at several stages under one `auditID`: `RequestReceived`,
//! `ResponseStarted` (long-running requests: watch, exec), then `ResponseComplete` or `Panic`.
//! The final stage is emitted as soon as it arrives; an earlier stage is held (owned) until its
//! final stage replaces it, and emitted by `finish` if that never comes. Memory is bounded
//! ([`StageLimits`]): beyond `held` requests or `held_bytes` of records, the oldest held stage is
//! emitted early. Emitted audit IDs are remembered (the last `recent` of them, as keyed hashes)
//! so that a later stage of a request already reported is dropped, and a final record seen
//! before is dropped when it says the same thing (stage, time, identity, action, resource,
//! outcome, source IP: a log shipped twice). A final record that reuses an emitted `auditID` but
//! says something else is emitted as its own event (the `Audit-ID` header is client-settable,
//! and hand-edited traces copy ids). Records without `stage` or `auditID` (Panther-shaped and
//! GKE single entries) are emitted at once.
//!
//! # Required fields
//!
//! A record must say who acted or what was done: with neither `verb` nor `user.username` it is
//! rejected (field `verb`). Either alone is enough — partial records (Panther's rule tests)
//! still carry evidence — and the missing part is `unknown`. A value of the wrong JSON type
//! anywhere the decoder reads is rejected with its dotted path (`objectRef.namespace`).
//!
//! # GKE
//!
//! `protoPayload.methodName` (required) is `io.k8s.<group>.<version>.<resource>[.<sub>].<verb>`:
//! the action is built from it as above. The resource is `resourceName` without its
//! `<group>/<version>/` prefix, in the same scheme as above (`k8s:ns/pods/x`). The identity is
//! `authenticationInfo.principalEmail` (else `authoritySelector`). The outcome is `denied` for
//! `status.code` 7 (PERMISSION_DENIED) or 16 (UNAUTHENTICATED) or an `authorizationInfo` entry
//! with `granted: false`, `error` for another non-zero code. id = `insertId`, else
//! `operation.id` (the audit ID); time = `timestamp`, else `receiveTimestamp`; src_ip =
//! `requestMetadata.callerIp`; user_agent = `requestMetadata.callerSuppliedUserAgent`. A
//! long-running request's entries share `operation.id`, the first with `first: true`, the last
//! with `last: true`: they are merged like stages.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use nhiwatch_model::{
    content_id, ActionClass, Event, Identity, IdentityKind, Outcome, Source, Text, Timestamp,
};
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::agent::Str;
use crate::json::{self, Field, Json, Shape};
use crate::{parse_time, DecodeError, RecordDecoder};

/// Decodes Kubernetes audit records, merging the stages of one request into one event.
#[derive(Debug, Default)]
pub struct K8sAuditDecoder {
    stages: Stages,
}

impl K8sAuditDecoder {
    /// A decoder whose stage bookkeeping stays within `limits`.
    pub fn with_limits(limits: StageLimits) -> Self {
        K8sAuditDecoder {
            stages: Stages {
                limits,
                ..Stages::default()
            },
        }
    }
}

impl RecordDecoder for K8sAuditDecoder {
    fn decode<'a>(
        &mut self,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        let decoded = decode_record(record, &self.stages.keys)?;
        self.stages.route(decoded, emit);
        Ok(())
    }

    fn finish(&mut self, emit: &mut dyn FnMut(Event<'static>)) {
        self.stages.flush(emit);
    }
}

/// Bounds on what the decoder keeps while it merges stages (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageLimits {
    /// Requests whose early stage is held, waiting for the final stage. Default 100,000.
    pub held: usize,
    /// Bytes of held records (their raw JSON). Default 256 MiB.
    pub held_bytes: usize,
    /// Emitted audit IDs remembered to drop later stages and duplicates. Default 262,144.
    pub recent: usize,
}

impl Default for StageLimits {
    fn default() -> Self {
        StageLimits {
            held: 100_000,
            held_bytes: 256 << 20,
            recent: 1 << 18,
        }
    }
}

/// The stage at which the API server logged a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    fn parse(name: &str) -> Option<Stage> {
        Some(match name {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            _ => return None,
        })
    }

    fn is_final(self) -> bool {
        matches!(self, Stage::ResponseComplete | Stage::Panic)
    }
}

/// One decoded record, with what the stage merging needs.
struct Decoded<'a> {
    event: Event<'a>,
    /// The request's key (a keyed hash of its audit ID) and stage, when the record has both.
    staged: Option<(u64, Stage)>,
}

/// What became of an audit ID already emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Emitted from an early stage (evicted or flushed): any later stage is dropped.
    Early,
    /// Emitted from a final stage with this fingerprint.
    Final(u64),
}

/// An early stage waiting for its final stage.
#[derive(Debug)]
struct Held {
    seq: u64,
    bytes: usize,
    event: Event<'static>,
}

/// The stage merging state: held early stages and recently emitted audit IDs, both bounded.
#[derive(Debug, Default)]
struct Stages {
    limits: StageLimits,
    /// Keys audit IDs and fingerprints with a per-process secret, so that no client-chosen
    /// `Audit-ID` can collide with another on purpose.
    keys: RandomState,
    seq: u64,
    held: FxHashMap<u64, Held>,
    /// (key, seq) in arrival order; entries whose request is no longer held (or held again
    /// under a later seq) are stale and skipped.
    order: VecDeque<(u64, u64)>,
    held_bytes: usize,
    recent: FxHashMap<u64, Seen>,
    recent_order: VecDeque<u64>,
}

impl Stages {
    fn route<'a>(&mut self, decoded: Decoded<'a>, emit: &mut dyn FnMut(Event<'a>)) {
        let Some((key, stage)) = decoded.staged else {
            emit(decoded.event);
            return;
        };
        if !stage.is_final() {
            if !self.recent.contains_key(&key) {
                self.hold(key, decoded.event.into_owned(), emit);
            }
            return;
        }
        let fingerprint = self.fingerprint(&decoded.event, stage);
        if let Some(held) = self.held.remove(&key) {
            self.held_bytes -= held.bytes;
        } else {
            match self.recent.get(&key) {
                Some(Seen::Early) => return,
                Some(Seen::Final(seen)) if *seen == fingerprint => return,
                Some(Seen::Final(_)) => {
                    emit(decoded.event);
                    return;
                }
                None => {}
            }
        }
        self.remember(key, Seen::Final(fingerprint));
        emit(decoded.event);
    }

    fn hold<'a>(&mut self, key: u64, event: Event<'static>, emit: &mut dyn FnMut(Event<'a>)) {
        self.seq += 1;
        let bytes = event.raw.get().len() + HELD_OVERHEAD;
        let seq = self.seq;
        if let Some(old) = self.held.insert(key, Held { seq, bytes, event }) {
            self.held_bytes -= old.bytes;
        }
        self.held_bytes += bytes;
        self.order.push_back((key, seq));
        while self.held.len() > self.limits.held || self.held_bytes > self.limits.held_bytes {
            match self.pop_oldest() {
                Some(event) => emit(event),
                None => break,
            }
        }
        if self.order.len() > 2 * self.held.len() + 1024 {
            let held = &self.held;
            self.order
                .retain(|(key, seq)| held.get(key).is_some_and(|h| h.seq == *seq));
        }
    }

    /// Removes the oldest held stage, remembering that its request was reported.
    fn pop_oldest(&mut self) -> Option<Event<'static>> {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.held.get(&key).is_some_and(|h| h.seq == seq) {
                let held = self.held.remove(&key)?;
                self.held_bytes -= held.bytes;
                self.remember(key, Seen::Early);
                return Some(held.event);
            }
        }
        None
    }

    fn flush(&mut self, emit: &mut dyn FnMut(Event<'static>)) {
        while let Some(event) = self.pop_oldest() {
            emit(event);
        }
        self.order.clear();
    }

    fn remember(&mut self, key: u64, seen: Seen) {
        if self.limits.recent == 0 {
            return;
        }
        if self.recent.insert(key, seen).is_none() {
            self.recent_order.push_back(key);
            while self.recent_order.len() > self.limits.recent {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// What a final record says, hashed: two records with the same fingerprint are one request.
    fn fingerprint(&self, event: &Event<'_>, stage: Stage) -> u64 {
        self.keys.hash_one((
            stage,
            (!event.time_inferred).then_some(event.time.0),
            &*event.identity.id,
            event.identity.session.as_deref(),
            &*event.action,
            event.resource.as_deref(),
            event.outcome,
            event.src_ip.as_deref(),
        ))
    }
}

/// Bytes counted for a held event besides its raw record (strings, map entry).
const HELD_OVERHEAD: usize = 256;

fn decode_record<'a>(record: &'a str, keys: &RandomState) -> Result<Decoded<'a>, DecodeError> {
    let text = record.trim_ascii();
    if !text.starts_with('{') {
        return Err(DecodeError::new(
            "not a Kubernetes audit event: expected a JSON object",
        ));
    }
    let rec = Record::read(text)?;
    // The reader validated the whole record, skipped values included: the raw record needs no
    // second parse.
    let raw: &'a RawValue = crate::raw::parsed_record(text)?;
    if let Some(payload) = rec.proto_payload {
        return gke(rec, payload, raw, keys);
    }
    if rec.properties.is_present() {
        return aks(rec, raw, keys);
    }
    native(rec, Cow::Borrowed(raw), text, keys)
}

// ---------------------------------------------------------------------------------------------
// Reading a record: one pass of the JSON reader over its text, which keeps the values of the
// keys below and skips (validating) everything else. Whether a record is a native event, a GKE
// entry or an AKS wrapper is known only at its end, so values are kept as read and their types
// checked when the decoder uses them: a wrong type is an error only where the decoder reads
// the value, and is reported with its dotted path, in the order the decoder reads the fields.

/// The members of a JSON object the decoder reads: each known key's value goes to its slot.
trait Members<'a>: Default {
    /// The known keys, as an error names one that appears twice (an alias by its first name).
    const KEYS: &'static [&'static str];

    /// Reads the value of `key` into its slot and returns the key's index in [`Members::KEYS`];
    /// skips the value of any other key.
    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>>;
}

/// An object, read before the decoder knows whether it needs it: its members, or what is
/// wrong with it, reported only if it is read ([`Object::read`]).
#[derive(Default)]
enum Object<T> {
    /// Missing or `null`.
    #[default]
    Absent,
    Members(T),
    /// Not an object, but this ("a string", ...).
    Not(&'static str),
    /// An object with this known key twice: two values for one field, which readers of the
    /// record would take differently, so none is taken.
    Twice(&'static str),
}

impl<'a, T: Members<'a>> Object<T> {
    /// Reads the next value, which should be an object.
    fn parse(json: &mut Json<'a>) -> json::Result<Self> {
        let mut members = T::default();
        let (mut seen, mut twice) = (0u64, None);
        let shape = json.object(|json, key| {
            if let Some(index) = members.member(json, key)? {
                let bit = 1u64 << (index % 64);
                if seen & bit != 0 {
                    twice = twice.or(T::KEYS.get(index).copied());
                }
                seen |= bit;
            }
            Ok(())
        })?;
        Ok(match (shape, twice) {
            (Shape::Object, None) => Object::Members(members),
            (Shape::Object, Some(key)) => Object::Twice(key),
            (Shape::Null, _) => Object::Absent,
            (Shape::Other(found), _) => Object::Not(found),
        })
    }

    /// Whether the record has the object (or something else where it should be).
    fn is_present(&self) -> bool {
        !matches!(self, Object::Absent)
    }

    /// The members (none when the object is absent), or an error naming `field`.
    fn read(self, field: &'static str) -> Result<T, DecodeError> {
        match self {
            Object::Absent => Ok(T::default()),
            Object::Members(members) => Ok(members),
            Object::Not(found) => Err(DecodeError::field(
                field,
                format!("expected an object, found {found}"),
            )),
            Object::Twice(key) => Err(DecodeError::field(
                field,
                format!("expected an object, found an object: duplicate field `{key}`"),
            )),
        }
    }
}

/// The first string of an array of strings (`sourceIPs`, `user.extra` values); the other
/// elements are skipped.
#[derive(Default)]
enum FirstString<'a> {
    /// Missing, `null` or `[]`.
    #[default]
    Absent,
    Text(Text<'a>),
    /// Not an array, but this.
    Not(&'static str),
    /// An array whose first element is this, not a string.
    NotText(&'static str),
}

impl<'a> FirstString<'a> {
    /// Reads the next value, which should be an array of strings.
    fn parse(json: &mut Json<'a>) -> json::Result<Self> {
        if !json.at_array() {
            return Ok(match json.field()? {
                Field::Absent => FirstString::Absent,
                other => FirstString::Not(other.found()),
            });
        }
        let mut first = None;
        json.array(|json| {
            if first.is_some() {
                return json.skip();
            }
            first = Some(match json.field()? {
                Field::Text(text) => FirstString::Text(text),
                other => FirstString::NotText(other.found()),
            });
            Ok(())
        })?;
        Ok(first.unwrap_or_default())
    }

    /// The string, when not empty; an error naming `field` when the value is not an array of
    /// strings.
    fn read(self, field: &'static str) -> Result<Option<Text<'a>>, DecodeError> {
        let found = match self {
            FirstString::Absent => return Ok(None),
            FirstString::Text(text) => return Ok(Some(text).filter(|text| !text.is_empty())),
            FirstString::Not(found) => found,
            FirstString::NotText(element) => {
                return Err(DecodeError::field(
                    field,
                    format!(
                        "expected an array of strings, found an array: its first element is \
                         {element}"
                    ),
                ))
            }
        };
        Err(DecodeError::field(
            field,
            format!("expected an array of strings, found {found}"),
        ))
    }
}

/// A boolean field; an error naming `field` when not a boolean.
fn boolean(value: Field<'_>, field: &'static str) -> Result<Option<bool>, DecodeError> {
    match value {
        Field::Absent => Ok(None),
        Field::Bool(flag) => Ok(Some(flag)),
        other => Err(DecodeError::field(
            field,
            format!("expected a boolean, found {}", other.found()),
        )),
    }
}

/// `responseStatus.code`: an integer from 0 to 65535 (not `200.0`, nor `"200"`).
fn http_code(value: Field<'_>, field: &'static str) -> Result<Option<u16>, DecodeError> {
    match value {
        Field::Absent => Ok(None),
        Field::Number(number) => number.parse().map(Some).map_err(|_| {
            DecodeError::field(
                field,
                format!("expected an HTTP status code, found a number: {number} is not one"),
            )
        }),
        other => Err(DecodeError::field(
            field,
            format!("expected an HTTP status code, found {}", other.found()),
        )),
    }
}

/// The fields read from a record: a native event's, and a GKE entry's and an AKS wrapper's
/// own (their inner fields are read once the record is known to be one).
#[derive(Default)]
struct Record<'a> {
    audit_id: Field<'a>,
    stage: Field<'a>,
    verb: Field<'a>,
    request_uri: Field<'a>,
    user_agent: Field<'a>,
    source_ips: FirstString<'a>,
    user: Object<User<'a>>,
    impersonated_user: Object<User<'a>>,
    object_ref: Object<ObjectRef<'a>>,
    response_status: Object<ResponseStatus<'a>>,
    annotations: Object<Annotations<'a>>,
    stage_timestamp: Field<'a>,
    request_received: Field<'a>,
    /// v1beta1's event time; GKE's entry time.
    timestamp: Field<'a>,
    p_event_time: Field<'a>,
    // GKE Cloud Audit Logs.
    /// `protoPayload`'s text, when not null.
    proto_payload: Option<&'a str>,
    insert_id: Field<'a>,
    receive_timestamp: Field<'a>,
    operation: Object<Operation<'a>>,
    // AKS diagnostic logs.
    properties: Object<Properties<'a>>,
    time: Field<'a>,
}

impl<'a> Record<'a> {
    /// Reads a record's text (an object: the caller checked that it starts with `{`).
    fn read(text: &'a str) -> Result<Self, DecodeError> {
        let mut json = Json::new(text);
        let record = Object::<Record<'a>>::parse(&mut json)?;
        json.finish()?;
        match record {
            Object::Members(record) => Ok(record),
            Object::Twice(key) => Err(DecodeError::new(format!(
                "invalid JSON: duplicate field `{key}`"
            ))),
            Object::Absent | Object::Not(_) => Err(DecodeError::new(
                "not a Kubernetes audit event: expected a JSON object",
            )),
        }
    }
}

impl<'a> Members<'a> for Record<'a> {
    const KEYS: &'static [&'static str] = &[
        "auditID",
        "stage",
        "verb",
        "requestURI",
        "userAgent",
        "sourceIPs",
        "user",
        "impersonatedUser",
        "objectRef",
        "responseStatus",
        "annotations",
        "stageTimestamp",
        "requestReceivedTimestamp",
        "timestamp",
        "p_event_time",
        "protoPayload",
        "insertId",
        "receiveTimestamp",
        "operation",
        "properties",
        "time",
    ];

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>> {
        let (slot, index) = match key {
            "auditID" => (&mut self.audit_id, 0),
            "stage" => (&mut self.stage, 1),
            "verb" => (&mut self.verb, 2),
            "requestURI" => (&mut self.request_uri, 3),
            "userAgent" => (&mut self.user_agent, 4),
            "sourceIPs" => {
                self.source_ips = FirstString::parse(json)?;
                return Ok(Some(5));
            }
            "user" => {
                self.user = Object::parse(json)?;
                return Ok(Some(6));
            }
            "impersonatedUser" => {
                self.impersonated_user = Object::parse(json)?;
                return Ok(Some(7));
            }
            "objectRef" => {
                self.object_ref = Object::parse(json)?;
                return Ok(Some(8));
            }
            "responseStatus" => {
                self.response_status = Object::parse(json)?;
                return Ok(Some(9));
            }
            "annotations" => {
                self.annotations = Object::parse(json)?;
                return Ok(Some(10));
            }
            "stageTimestamp" => (&mut self.stage_timestamp, 11),
            "requestReceivedTimestamp" => (&mut self.request_received, 12),
            "timestamp" => (&mut self.timestamp, 13),
            "p_event_time" => (&mut self.p_event_time, 14),
            "protoPayload" => {
                let payload = json.raw()?;
                self.proto_payload = (payload != "null").then_some(payload);
                return Ok(Some(15));
            }
            "insertId" => (&mut self.insert_id, 16),
            "receiveTimestamp" => (&mut self.receive_timestamp, 17),
            "operation" => {
                self.operation = Object::parse(json)?;
                return Ok(Some(18));
            }
            "properties" => {
                self.properties = Object::parse(json)?;
                return Ok(Some(19));
            }
            "time" => (&mut self.time, 20),
            _ => return json.skip().map(|()| None),
        };
        *slot = json.field()?;
        Ok(Some(index))
    }
}

/// `user` and `impersonatedUser`.
#[derive(Default)]
struct User<'a> {
    username: Field<'a>,
    extra: Object<Extra<'a>>,
}

impl<'a> Members<'a> for User<'a> {
    const KEYS: &'static [&'static str] = &["username", "extra"];

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>> {
        let index = match key {
            "username" => {
                self.username = json.field()?;
                0
            }
            "extra" => {
                self.extra = Object::parse(json)?;
                1
            }
            _ => return json.skip().map(|()| None),
        };
        Ok(Some(index))
    }
}

/// `user.extra`: string arrays keyed by the authenticator. (Panther rewrites `.` and `/` in
/// these keys: `authentication_kubernetes_io_slash_pod-name`.)
#[derive(Default)]
struct Extra<'a> {
    credential_id: FirstString<'a>,
    pod_name: FirstString<'a>,
    access_key_id: FirstString<'a>,
    session_name: FirstString<'a>,
}

impl<'a> Members<'a> for Extra<'a> {
    const KEYS: &'static [&'static str] = &[
        "authentication.kubernetes.io/credential-id",
        "authentication.kubernetes.io/pod-name",
        "accessKeyId",
        "sessionName",
    ];

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>> {
        let (slot, index) = match key {
            "authentication.kubernetes.io/credential-id"
            | "authentication_kubernetes_io_slash_credential-id" => (&mut self.credential_id, 0),
            "authentication.kubernetes.io/pod-name"
            | "authentication_kubernetes_io_slash_pod-name" => (&mut self.pod_name, 1),
            "accessKeyId" => (&mut self.access_key_id, 2),
            "sessionName" => (&mut self.session_name, 3),
            _ => return json.skip().map(|()| None),
        };
        *slot = FirstString::parse(json)?;
        Ok(Some(index))
    }
}

#[derive(Default)]
struct ObjectRef<'a> {
    resource: Field<'a>,
    subresource: Field<'a>,
    namespace: Field<'a>,
    name: Field<'a>,
}

impl<'a> Members<'a> for ObjectRef<'a> {
    const KEYS: &'static [&'static str] = &["resource", "subresource", "namespace", "name"];

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>> {
        let (slot, index) = match key {
            "resource" => (&mut self.resource, 0),
            "subresource" => (&mut self.subresource, 1),
            "namespace" => (&mut self.namespace, 2),
            "name" => (&mut self.name, 3),
            _ => return json.skip().map(|()| None),
        };
        *slot = json.field()?;
        Ok(Some(index))
    }
}

#[derive(Default)]
struct ResponseStatus<'a> {
    code: Field<'a>,
    reason: Field<'a>,
    message: Field<'a>,
}

impl<'a> Members<'a> for ResponseStatus<'a> {
    const KEYS: &'static [&'static str] = &["code", "reason", "message"];

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>> {
        let (slot, index) = match key {
            "code" => (&mut self.code, 0),
            "reason" => (&mut self.reason, 1),
            "message" => (&mut self.message, 2),
            _ => return json.skip().map(|()| None),
        };
        *slot = json.field()?;
        Ok(Some(index))
    }
}

/// `annotations`: only the authorizer's decision is read.
#[derive(Default)]
struct Annotations<'a> {
    decision: Field<'a>,
}

impl<'a> Members<'a> for Annotations<'a> {
    const KEYS: &'static [&'static str] = &["authorization.k8s.io/decision"];

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>> {
        if key != "authorization.k8s.io/decision" {
            return json.skip().map(|()| None);
        }
        self.decision = json.field()?;
        Ok(Some(0))
    }
}

/// An AKS record's `properties`.
#[derive(Default)]
struct Properties<'a> {
    log: Field<'a>,
}

impl<'a> Members<'a> for Properties<'a> {
    const KEYS: &'static [&'static str] = &["log"];

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>> {
        if key != "log" {
            return json.skip().map(|()| None);
        }
        self.log = json.field()?;
        Ok(Some(0))
    }
}

/// A GKE entry's `operation`.
#[derive(Default)]
struct Operation<'a> {
    id: Field<'a>,
    first: Field<'a>,
    last: Field<'a>,
}

impl<'a> Members<'a> for Operation<'a> {
    const KEYS: &'static [&'static str] = &["id", "first", "last"];

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<Option<usize>> {
        let (slot, index) = match key {
            "id" => (&mut self.id, 0),
            "first" => (&mut self.first, 1),
            "last" => (&mut self.last, 2),
            _ => return json.skip().map(|()| None),
        };
        *slot = json.field()?;
        Ok(Some(index))
    }
}

/// Reads a native audit event. `raw` is what the event keeps (the record itself, or a
/// placeholder the AKS wrapper replaces); `whole` is the record hashed for an id when it has no
/// `auditID`.
fn native<'a>(
    rec: Record<'a>,
    raw: Cow<'a, RawValue>,
    whole: &str,
    keys: &RandomState,
) -> Result<Decoded<'a>, DecodeError> {
    let verb = rec.verb.nonempty("verb")?;
    let user = rec.user.read("user")?;
    let username = user.username.nonempty("user.username")?;
    if verb.is_none() && username.is_none() {
        return Err(DecodeError::field(
            "verb",
            "is missing, and so is user.username: an audit event says who did what",
        ));
    }
    let impersonated = rec.impersonated_user.read("impersonatedUser")?;
    let target = impersonated
        .username
        .nonempty("impersonatedUser.username")?;
    let extra = user.extra.read("user.extra")?;
    let credential = extra
        .credential_id
        .read("user.extra[authentication.kubernetes.io/credential-id]")?;
    let access_key = extra.access_key_id.read("user.extra.accessKeyId")?;
    let pod = extra
        .pod_name
        .read("user.extra[authentication.kubernetes.io/pod-name]")?;
    let session_name = extra.session_name.read("user.extra.sessionName")?;
    let (credential, session) = (credential.or(access_key), pod.or(session_name));
    let identity = match (target, username) {
        (Some(target), real) => Identity {
            kind: user_kind(&target),
            id: target,
            session: real,
            credential,
        },
        (None, Some(name)) => Identity {
            kind: user_kind(&name),
            id: name,
            session,
            credential,
        },
        (None, None) => Identity::new("unknown", IdentityKind::Unknown),
    };

    let object_ref = rec.object_ref.read("objectRef")?;
    let verb = verb.unwrap_or(Cow::Borrowed("unknown"));
    let (action, action_class, resource) =
        match object_ref.resource.nonempty("objectRef.resource")? {
            Some(kind) => {
                let sub = object_ref.subresource.nonempty("objectRef.subresource")?;
                let namespace = object_ref.namespace.nonempty("objectRef.namespace")?;
                let name = object_ref.name.nonempty("objectRef.name")?;
                let target = Target {
                    resource: &kind,
                    sub: sub.as_deref(),
                };
                let resource = object_path(namespace.as_deref(), &target, name.as_deref());
                (
                    target.action(&verb),
                    classify(&verb, Some(&kind), sub.as_deref()),
                    Some(Cow::Owned(resource)),
                )
            }
            None => {
                let path = rec.request_uri.nonempty("requestURI")?.map(before_query);
                let action = match path.as_deref().map(|p| p.trim_matches('/')) {
                    Some(p) if !p.is_empty() => format!("k8s:{verb}/{p}"),
                    _ => format!("k8s:{verb}"),
                };
                (action, classify(&verb, None, None), path)
            }
        };

    let stage = match rec.stage.nonempty("stage")? {
        Some(name) => Some(Stage::parse(&name).ok_or_else(|| {
            DecodeError::field(
                "stage",
                format!(
                    "{name:?} is not an audit stage (RequestReceived, ResponseStarted, \
                     ResponseComplete, Panic)"
                ),
            )
        })?),
        None => None,
    };
    let status = rec.response_status.read("responseStatus")?;
    let code = http_code(status.code, "responseStatus.code")?;
    let annotations = rec.annotations.read("annotations")?;
    let forbidden = annotations
        .decision
        .nonempty("annotations.decision")?
        .as_deref()
        == Some("forbid");
    let reason = status.reason.nonempty("responseStatus.reason")?;
    let message = status.message.nonempty("responseStatus.message")?;
    let (outcome, error) = if stage == Some(Stage::Panic) {
        (
            Outcome::Error,
            Some(message.or(reason).unwrap_or(Cow::Borrowed("Panic"))),
        )
    } else if forbidden || matches!(code, Some(401 | 403)) {
        let code = code.unwrap_or(403);
        (
            Outcome::Denied,
            Some(reason.or(message).unwrap_or_else(|| status_reason(code))),
        )
    } else {
        match code {
            Some(code) if code >= 400 => (
                Outcome::Error,
                Some(reason.or(message).unwrap_or_else(|| status_reason(code))),
            ),
            _ => (Outcome::Success, None),
        }
    };

    let (time, time_inferred) = first_time([
        (rec.stage_timestamp, "stageTimestamp"),
        (rec.request_received, "requestReceivedTimestamp"),
        (rec.timestamp, "timestamp"),
        (rec.p_event_time, "p_event_time"),
    ])?;
    let audit_id = rec.audit_id.nonempty("auditID")?;
    let staged = match (&audit_id, stage) {
        (Some(id), Some(stage)) => Some((keys.hash_one(&**id), stage)),
        _ => None,
    };
    let id = audit_id.unwrap_or_else(|| Cow::Owned(content_id(whole.as_bytes())));
    Ok(Decoded {
        event: Event {
            id,
            time,
            time_inferred,
            source: Source::K8sAudit,
            identity,
            action: Cow::Owned(action),
            action_class,
            resource,
            outcome,
            error,
            src_ip: rec.source_ips.read("sourceIPs")?,
            user_agent: rec.user_agent.nonempty("userAgent")?,
            bytes_out: None,
            records: None,
            raw,
        },
        staged,
    })
}

/// An AKS diagnostic-log record: the audit event is the JSON text in `properties.log`.
fn aks<'a>(
    outer: Record<'a>,
    raw: &'a RawValue,
    keys: &RandomState,
) -> Result<Decoded<'a>, DecodeError> {
    let properties = outer.properties.read("properties")?;
    let log = properties.log.nonempty("properties.log")?.ok_or_else(|| {
        DecodeError::field(
            "properties.log",
            "is missing: an AKS kube-audit record carries the audit event there",
        )
    })?;
    let inner_text = log.trim_ascii();
    if !inner_text.starts_with('{') {
        return Err(DecodeError::field(
            "properties.log",
            "is not a Kubernetes audit event (a JSON object)",
        ));
    }
    let within = |err: DecodeError| DecodeError {
        field: Some(match err.field {
            Some(field) => Cow::Owned(format!("properties.log.{field}")),
            None => Cow::Borrowed("properties.log"),
        }),
        reason: err.reason,
    };
    let inner = Record::read(inner_text).map_err(within)?;
    let decoded = native(inner, Cow::Borrowed(RawValue::NULL), raw.get(), keys).map_err(within)?;
    let mut event = decoded.event.into_owned();
    event.raw = Cow::Borrowed(raw);
    if event.time_inferred {
        let (time, inferred) =
            first_time([(outer.time, "time"), (outer.p_event_time, "p_event_time")])?;
        if !inferred {
            (event.time, event.time_inferred) = (time, false);
        }
    }
    Ok(Decoded {
        event,
        staged: decoded.staged,
    })
}

// A GKE entry's `protoPayload` is read with serde_json (GKE entries are a small share of
// Kubernetes audit volume): the reader hands over its text, already validated, as a borrowed
// `RawValue`, and each field is read with its dotted path.

#[derive(Default, Deserialize)]
#[serde(default)]
struct ProtoPayload<'a> {
    #[serde(borrow, rename = "methodName")]
    method_name: Option<&'a RawValue>,
    #[serde(borrow, rename = "resourceName")]
    resource_name: Option<&'a RawValue>,
    #[serde(borrow, rename = "authenticationInfo")]
    authentication_info: Option<&'a RawValue>,
    #[serde(borrow, rename = "authorizationInfo")]
    authorization_info: Option<&'a RawValue>,
    #[serde(borrow, rename = "requestMetadata")]
    request_metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow, rename = "serviceName")]
    service_name: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct AuthenticationInfo<'a> {
    #[serde(borrow, rename = "principalEmail")]
    principal_email: Option<&'a RawValue>,
    #[serde(borrow, rename = "authoritySelector")]
    authority_selector: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RequestMetadata<'a> {
    #[serde(borrow, rename = "callerIp")]
    caller_ip: Option<&'a RawValue>,
    /// As Panther's samples spell it.
    #[serde(borrow, rename = "callerIP")]
    caller_ip_upper: Option<&'a RawValue>,
    #[serde(borrow, rename = "callerSuppliedUserAgent")]
    user_agent: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct GrpcStatus<'a> {
    #[serde(borrow)]
    code: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Grant {
    #[serde(default)]
    granted: Option<bool>,
}

/// gRPC's PERMISSION_DENIED and UNAUTHENTICATED.
const GRPC_DENIED: [i64; 2] = [7, 16];

/// A GKE Cloud Audit Logs entry for the Kubernetes API; `payload` is its `protoPayload`'s text.
fn gke<'a>(
    rec: Record<'a>,
    payload: &'a str,
    raw: &'a RawValue,
    keys: &RandomState,
) -> Result<Decoded<'a>, DecodeError> {
    let payload = crate::raw::parsed_record(payload)?;
    let payload = object::<ProtoPayload<'a>>(Some(payload), "protoPayload")?.unwrap_or_default();
    if let Some(service) = text(payload.service_name, "protoPayload.serviceName")? {
        if service != "k8s.io" {
            return Err(DecodeError::field(
                "protoPayload.serviceName",
                format!("is {service:?}: not a Kubernetes API call (k8s.io)"),
            ));
        }
    }
    let method = text(payload.method_name, "protoPayload.methodName")?.ok_or_else(|| {
        DecodeError::field(
            "protoPayload.methodName",
            "is missing: a GKE audit entry names the Kubernetes API call",
        )
    })?;
    let call = gke_method(&method);
    let auth = object::<AuthenticationInfo<'a>>(
        payload.authentication_info,
        "protoPayload.authenticationInfo",
    )?
    .unwrap_or_default();
    let principal = match text(
        auth.principal_email,
        "protoPayload.authenticationInfo.principalEmail",
    )? {
        Some(email) => Some(email),
        None => text(
            auth.authority_selector,
            "protoPayload.authenticationInfo.authoritySelector",
        )?,
    };
    let identity = match principal {
        Some(name) => {
            let kind = user_kind(&name);
            Identity::new(name, kind)
        }
        None => Identity::new("unknown", IdentityKind::Unknown),
    };

    let resource = match text(payload.resource_name, "protoPayload.resourceName")? {
        Some(name) => Some(Cow::Owned(gke_resource(&without_group_version(name)))),
        None => call
            .target
            .as_ref()
            .map(|t| Cow::Owned(object_path(None, t, None))),
    };
    let (action, action_class) = match &call.target {
        Some(target) => (
            target.action(call.verb),
            classify(call.verb, Some(target.resource), target.sub),
        ),
        None => match call.path {
            Some(path) => (
                format!("k8s:{}/{path}", call.verb),
                classify(call.verb, None, None),
            ),
            None => (
                format!("k8s:{}", call.verb),
                classify(call.verb, None, None),
            ),
        },
    };

    let status =
        object::<GrpcStatus<'a>>(payload.status, "protoPayload.status")?.unwrap_or_default();
    let code = read::<i64>(
        status.code,
        "protoPayload.status.code",
        "a gRPC status code",
    )?
    .unwrap_or(0);
    let message = text(status.message, "protoPayload.status.message")?;
    let grants = read::<Vec<Grant>>(
        payload.authorization_info,
        "protoPayload.authorizationInfo",
        "an array of authorization checks",
    )?
    .unwrap_or_default();
    let refused = grants.iter().any(|g| g.granted == Some(false));
    let (outcome, error) = if refused || GRPC_DENIED.contains(&code) {
        let fallback = if code == 16 {
            "UNAUTHENTICATED"
        } else {
            "PERMISSION_DENIED"
        };
        (
            Outcome::Denied,
            Some(message.unwrap_or(Cow::Borrowed(fallback))),
        )
    } else if code != 0 {
        (
            Outcome::Error,
            Some(message.unwrap_or_else(|| Cow::Owned(format!("gRPC status {code}")))),
        )
    } else {
        (Outcome::Success, None)
    };

    let metadata =
        object::<RequestMetadata<'a>>(payload.request_metadata, "protoPayload.requestMetadata")?
            .unwrap_or_default();
    let src_ip = match text(metadata.caller_ip, "protoPayload.requestMetadata.callerIp")? {
        Some(ip) => Some(ip),
        None => text(
            metadata.caller_ip_upper,
            "protoPayload.requestMetadata.callerIP",
        )?,
    };

    let operation = rec.operation.read("operation")?;
    let operation_id = operation.id.nonempty("operation.id")?;
    let first_entry = boolean(operation.first, "operation.first")?;
    let last_entry = boolean(operation.last, "operation.last")?;
    let stage = match (first_entry, last_entry) {
        (_, Some(true)) => Some(Stage::ResponseComplete),
        (Some(true), _) => Some(Stage::ResponseStarted),
        _ => None,
    };
    let staged = match (&operation_id, stage) {
        (Some(id), Some(stage)) => Some((keys.hash_one(&**id), stage)),
        _ => None,
    };
    let id = match rec.insert_id.nonempty("insertId")? {
        Some(id) => id,
        None => operation_id.unwrap_or_else(|| Cow::Owned(content_id(raw.get().as_bytes()))),
    };
    let (time, time_inferred) = first_time([
        (rec.timestamp, "timestamp"),
        (rec.receive_timestamp, "receiveTimestamp"),
        (rec.p_event_time, "p_event_time"),
    ])?;
    Ok(Decoded {
        event: Event {
            id,
            time,
            time_inferred,
            source: Source::K8sAudit,
            identity,
            action: Cow::Owned(action),
            action_class,
            resource,
            outcome,
            error,
            src_ip,
            user_agent: text(
                metadata.user_agent,
                "protoPayload.requestMetadata.callerSuppliedUserAgent",
            )?,
            bytes_out: None,
            records: None,
            raw: Cow::Borrowed(raw),
        },
        staged,
    })
}

/// A resource (and subresource) acted on.
struct Target<'t> {
    resource: &'t str,
    sub: Option<&'t str>,
}

impl Target<'_> {
    /// `k8s:<verb>/<resource>[/<sub>]`.
    fn action(&self, verb: &str) -> String {
        let mut action = String::with_capacity(
            5 + verb.len() + self.resource.len() + self.sub.map_or(0, |s| s.len() + 1),
        );
        action.push_str("k8s:");
        action.push_str(verb);
        action.push('/');
        action.push_str(self.resource);
        if let Some(sub) = self.sub {
            action.push('/');
            action.push_str(sub);
        }
        action
    }
}

/// What a GKE `methodName` says.
struct MethodCall<'m> {
    verb: &'m str,
    /// The resource, for a resource request.
    target: Option<Target<'m>>,
    /// The path, for a non-resource request (`readyz`).
    path: Option<&'m str>,
}

/// Splits `io.k8s.<group>.<version>.<resource>[.<sub>].<verb>`. Without a version segment the
/// call is a non-resource request: `io.k8s.<path>.<verb>`, or `io.k8s.<path>` (verb unknown).
fn gke_method(method: &str) -> MethodCall<'_> {
    let rest = method.strip_prefix("io.k8s.").unwrap_or(method);
    let segments: Vec<&str> = rest.split('.').collect();
    match segments.iter().position(|s| is_version(s)) {
        Some(v) => match &segments[v + 1..] {
            [resource, verb] => MethodCall {
                verb,
                target: Some(Target {
                    resource,
                    sub: None,
                }),
                path: None,
            },
            [resource, sub, .., verb] => MethodCall {
                verb,
                target: Some(Target {
                    resource,
                    sub: Some(sub),
                }),
                path: None,
            },
            [resource] => MethodCall {
                verb: "unknown",
                target: Some(Target {
                    resource,
                    sub: None,
                }),
                path: None,
            },
            [] => MethodCall {
                verb: "unknown",
                target: None,
                path: None,
            },
        },
        None => match rest.rsplit_once('.') {
            Some((path, verb)) => MethodCall {
                verb,
                target: None,
                path: Some(path),
            },
            None => MethodCall {
                verb: "unknown",
                target: None,
                path: Some(rest).filter(|p| !p.is_empty()),
            },
        },
    }
}

/// An API version segment: `v1`, `v1beta1`, `v2alpha3`.
fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|stage| {
            tail.strip_prefix(stage)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// GKE's `resourceName` (`core/v1/namespaces/ns/pods/x`) without `<group>/<version>/`.
fn without_group_version(name: Text<'_>) -> Text<'_> {
    let cut = name.split_once('/').and_then(|(_, rest)| {
        let (version, tail) = rest.split_once('/').unwrap_or((rest, ""));
        is_version(version).then(|| name.len() - tail.len())
    });
    match cut {
        Some(start) => slice(name, start..),
        None => name,
    }
}

/// A GKE resource path (`namespaces/ns/pods/x`, `clusterroles/x`) in the scheme of the module
/// docs (`k8s:ns/pods/x`, `k8s:clusterroles/x`); a non-resource path (`/readyz`) is kept.
fn gke_resource(path: &str) -> String {
    if path.starts_with('/') || path.is_empty() {
        return path.to_owned();
    }
    match path.strip_prefix("namespaces/") {
        Some(rest) if rest.contains('/') => format!("k8s:{rest}"),
        _ => format!("k8s:{path}"),
    }
}

/// A sub-slice of a text, borrowed when the text is.
fn slice(text: Text<'_>, range: std::ops::RangeFrom<usize>) -> Text<'_> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(&s[range]),
        Cow::Owned(s) => Cow::Owned(s[range].to_owned()),
    }
}

/// A request URI's path, without its query.
fn before_query(uri: Text<'_>) -> Text<'_> {
    match uri.find('?') {
        Some(end) => match uri {
            Cow::Borrowed(s) => Cow::Borrowed(&s[..end]),
            Cow::Owned(mut s) => {
                s.truncate(end);
                Cow::Owned(s)
            }
        },
        None => uri,
    }
}

/// The resource path of an object, see the module docs.
fn object_path(namespace: Option<&str>, target: &Target<'_>, name: Option<&str>) -> String {
    let mut path = String::with_capacity(64);
    path.push_str("k8s:");
    match (target.resource, namespace) {
        // A namespace's own `objectRef.namespace` is itself (or absent).
        ("namespaces", _) | (_, None) => {}
        (_, Some(namespace)) => {
            path.push_str(namespace);
            path.push('/');
        }
    }
    path.push_str(target.resource);
    for part in [name, target.sub].into_iter().flatten() {
        path.push('/');
        path.push_str(part);
    }
    path
}

/// The class of a Kubernetes request (the table in the module docs).
pub fn classify(verb: &str, resource: Option<&str>, subresource: Option<&str>) -> ActionClass {
    use ActionClass::*;
    if matches!(
        subresource,
        Some("exec" | "attach" | "portforward" | "proxy")
    ) {
        return Exec;
    }
    if matches!(verb, "impersonate" | "escalate" | "bind") {
        return Permission;
    }
    let by_verb = match verb {
        "get" => Read,
        "list" | "watch" => List,
        "create" | "update" | "patch" => Write,
        "delete" | "deletecollection" => Delete,
        _ => Other,
    };
    let Some(resource) = resource else {
        return by_verb;
    };
    match (resource, subresource) {
        (
            "tokenreviews"
            | "subjectaccessreviews"
            | "selfsubjectaccessreviews"
            | "localsubjectaccessreviews"
            | "selfsubjectrulesreviews"
            | "selfsubjectreviews",
            _,
        ) => Auth,
        ("serviceaccounts", Some("token")) | ("certificatesigningrequests", None)
            if verb == "create" =>
        {
            Auth
        }
        (
            "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings" | "serviceaccounts",
            _,
        )
        | ("certificatesigningrequests", Some("approval"))
            if matches!(by_verb, Write | Delete) =>
        {
            Permission
        }
        _ => by_verb,
    }
}

/// What sort of principal a Kubernetes user name is (see the module docs).
fn user_kind(name: &str) -> IdentityKind {
    if name.starts_with("system:serviceaccount:") || name.ends_with(".gserviceaccount.com") {
        IdentityKind::ServiceAccount
    } else if name == "system:anonymous" {
        IdentityKind::Unknown
    } else if name.starts_with("system:") || name.starts_with("eks:") {
        IdentityKind::Workload
    } else if name.starts_with("arn:aws")
        && (name.contains(":role/") || name.contains(":assumed-role/"))
    {
        IdentityKind::Role
    } else if name.contains('@') {
        IdentityKind::User
    } else {
        IdentityKind::Unknown
    }
}

/// The Kubernetes `StatusReason` of an HTTP code, for responses that carry no reason.
fn status_reason(code: u16) -> Text<'static> {
    Cow::Borrowed(match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => return Cow::Owned(format!("HTTP {code}")),
    })
}

// ---------------------------------------------------------------------------------------------
// serde_json field readers, for a GKE entry's `protoPayload` and the GitHub decoder: every field
// is captured as raw JSON and read with its dotted path, so that a value of the wrong type is
// rejected with the field named.

/// Reads `field` as a `T`; `None` when absent or null. A value of another type is an error
/// naming the field and saying what was expected.
pub(crate) fn read<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    field: &'static str,
    expected: &'static str,
) -> Result<Option<T>, DecodeError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    serde_json::from_str(raw.get()).map(Some).map_err(|err| {
        let mut detail = err.to_string();
        if let Some(at) = detail.rfind(" at line ") {
            detail.truncate(at);
        }
        DecodeError::field(
            field,
            format!(
                "expected {expected}, found {}: {detail}",
                json::found(raw.get())
            ),
        )
    })
}

/// Reads `field` as an object of type `T` (absent or null: `None`).
fn object<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<T>, DecodeError> {
    match raw {
        Some(value) if !value.get().starts_with('{') => Err(DecodeError::field(
            field,
            format!("expected an object, found {}", json::found(value.get())),
        )),
        _ => read(raw, field, "an object"),
    }
}

/// Reads `field` as a string, borrowed unless it has escapes; absent, null or empty: `None`.
pub(crate) fn text<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<Text<'a>>, DecodeError> {
    Ok(read::<Str<'a>>(raw, field, "a string")?
        .map(|s| s.0)
        .filter(|s| !s.is_empty()))
}

/// The first readable time among `candidates`, else now (`true`: inferred). A present but
/// unreadable time (`"redacted"`) is passed over; a time of the wrong JSON type is an error.
fn first_time<'a>(
    candidates: impl IntoIterator<Item = (Field<'a>, &'static str)>,
) -> Result<(Timestamp, bool), DecodeError> {
    for (value, field) in candidates {
        if let Some(time) = value.text(field)?.as_deref().and_then(parse_time) {
            return Ok((time, false));
        }
    }
    Ok((Timestamp::now(), true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `get secrets` by a service-account token bound to a pod, as kube-apiserver 1.29+ logs it.
    const GET_SECRET: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5b1a6d0e-9f1c-4b51-8a3e-0c5d7a1e2f40","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db-password","verb":"get","user":{"username":"system:serviceaccount:ci:deployer","uid":"d7f1","groups":["system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=8f0e2c1a"],"authentication.kubernetes.io/node-name":["node-1"],"authentication.kubernetes.io/pod-name":["deployer-7c9f"],"authentication.kubernetes.io/pod-uid":["1b2c"]}},"sourceIPs":["10.1.2.3","10.0.0.1"],"userAgent":"kubectl/v1.30.1 (linux/amd64)","objectRef":{"resource":"secrets","namespace":"prod","name":"db-password","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-05-01T10:00:00.123456Z","stageTimestamp":"2024-05-01T10:00:00.125001Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}"#;

    fn decode_with(decoder: &mut K8sAuditDecoder, record: &str) -> Vec<Event<'static>> {
        let mut out = Vec::new();
        decoder
            .decode(record, &mut |e| out.push(e.into_owned()))
            .unwrap_or_else(|err| panic!("{err}: {record}"));
        out
    }

    fn one(record: &str) -> Event<'static> {
        let mut events = decode_with(&mut K8sAuditDecoder::default(), record);
        assert_eq!(events.len(), 1, "{record}");
        events.remove(0)
    }

    fn finish(decoder: &mut K8sAuditDecoder) -> Vec<Event<'static>> {
        let mut out = Vec::new();
        decoder.finish(&mut |e| out.push(e));
        out
    }

    fn error(record: &str) -> DecodeError {
        match K8sAuditDecoder::default().decode(record, &mut |_| {}) {
            Err(err) => err,
            Ok(()) => panic!("accepted: {record}"),
        }
    }

    /// `record` with its `stage` and `auditID` replaced.
    fn staged(stage: &str, id: &str) -> String {
        GET_SECRET
            .replace("ResponseComplete", stage)
            .replace("5b1a6d0e-9f1c-4b51-8a3e-0c5d7a1e2f40", id)
    }

    #[test]
    fn a_service_account_reading_a_secret() {
        let event = one(GET_SECRET);
        assert_eq!(event.id, "5b1a6d0e-9f1c-4b51-8a3e-0c5d7a1e2f40");
        assert_eq!(event.source, Source::K8sAudit);
        assert_eq!(event.identity.id, "system:serviceaccount:ci:deployer");
        assert_eq!(event.identity.kind, IdentityKind::ServiceAccount);
        assert_eq!(event.identity.credential.as_deref(), Some("JTI=8f0e2c1a"));
        assert_eq!(event.identity.session.as_deref(), Some("deployer-7c9f"));
        assert_eq!(event.action, "k8s:get/secrets");
        assert_eq!(event.action_class, ActionClass::Read);
        assert_eq!(
            event.resource.as_deref(),
            Some("k8s:prod/secrets/db-password")
        );
        assert_eq!((event.outcome, event.error), (Outcome::Success, None));
        assert_eq!(event.src_ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(
            event.user_agent.as_deref(),
            Some("kubectl/v1.30.1 (linux/amd64)")
        );
        assert_eq!(event.time.to_string(), "2024-05-01T10:00:00.125001Z");
        assert!(!event.time_inferred);
        assert_eq!(event.raw.get(), GET_SECRET);
    }

    #[test]
    fn strings_borrow_from_the_record() {
        let mut decoder = K8sAuditDecoder::default();
        let mut borrowed = None;
        decoder
            .decode(GET_SECRET, &mut |e| {
                borrowed = Some((
                    matches!(e.id, Cow::Borrowed(_)),
                    matches!(e.identity.id, Cow::Borrowed(_)),
                    matches!(e.raw, Cow::Borrowed(_)),
                ))
            })
            .unwrap();
        assert_eq!(borrowed, Some((true, true, true)));
    }

    #[test]
    fn stages_of_one_request_make_one_event() {
        let mut decoder = K8sAuditDecoder::default();
        assert!(decode_with(&mut decoder, &staged("RequestReceived", "a")).is_empty());
        assert!(decode_with(&mut decoder, &staged("ResponseStarted", "a")).is_empty());
        let done = decode_with(&mut decoder, &staged("ResponseComplete", "a"));
        assert_eq!(done.len(), 1);
        assert!(done[0].raw.get().contains("ResponseComplete"));
        // The same final record again (a log shipped twice), and a late early stage: nothing.
        assert!(decode_with(&mut decoder, &staged("ResponseComplete", "a")).is_empty());
        assert!(decode_with(&mut decoder, &staged("RequestReceived", "a")).is_empty());
        assert!(finish(&mut decoder).is_empty());
    }

    #[test]
    fn a_reused_audit_id_that_says_something_else_is_its_own_event() {
        let mut decoder = K8sAuditDecoder::default();
        assert_eq!(decode_with(&mut decoder, GET_SECRET).len(), 1);
        let other = GET_SECRET.replace("ci:deployer", "ci:intruder");
        let events = decode_with(&mut decoder, &other);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].identity.id, "system:serviceaccount:ci:intruder");
    }

    #[test]
    fn a_request_that_never_completes_is_emitted_at_finish() {
        let mut decoder = K8sAuditDecoder::default();
        let exec = staged("ResponseStarted", "x").replace(
            r#""resource":"secrets""#,
            r#""resource":"pods","subresource":"exec""#,
        );
        assert!(decode_with(&mut decoder, &exec).is_empty());
        let held = finish(&mut decoder);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].id, "x");
        assert_eq!(held[0].action, "k8s:get/pods/exec");
        assert_eq!(held[0].action_class, ActionClass::Exec);
        assert!(finish(&mut decoder).is_empty(), "emitted once");
        // Its final stage, arriving after all, is not a second event.
        assert!(decode_with(&mut decoder, &staged("ResponseComplete", "x")).is_empty());
    }

    #[test]
    fn held_stages_are_bounded_by_count_and_emitted_oldest_first() {
        let mut decoder = K8sAuditDecoder::with_limits(StageLimits {
            held: 2,
            ..StageLimits::default()
        });
        for id in ["a", "b"] {
            assert!(decode_with(&mut decoder, &staged("RequestReceived", id)).is_empty());
        }
        // A newer stage of a held request replaces it without growing the map.
        assert!(decode_with(&mut decoder, &staged("ResponseStarted", "a")).is_empty());
        let evicted = decode_with(&mut decoder, &staged("RequestReceived", "c"));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].id, "b", "the oldest held stage goes first");
        assert!(decode_with(&mut decoder, &staged("ResponseComplete", "b")).is_empty());
        let done = decode_with(&mut decoder, &staged("ResponseComplete", "a"));
        assert_eq!(done.len(), 1);
        let rest: Vec<_> = finish(&mut decoder).into_iter().map(|e| e.id).collect();
        assert_eq!(rest, ["c"]);
    }

    #[test]
    fn held_stages_are_bounded_by_bytes() {
        let mut decoder = K8sAuditDecoder::with_limits(StageLimits {
            held_bytes: GET_SECRET.len() * 2 + 2 * HELD_OVERHEAD,
            ..StageLimits::default()
        });
        let mut emitted = 0;
        for n in 0..10 {
            emitted += decode_with(&mut decoder, &staged("RequestReceived", &n.to_string())).len();
        }
        assert_eq!(emitted, 8);
        assert_eq!(finish(&mut decoder).len(), 2);
    }

    #[test]
    fn the_order_queue_does_not_grow_with_completed_requests() {
        let mut decoder = K8sAuditDecoder::default();
        for n in 0..5_000 {
            let id = n.to_string();
            decode_with(&mut decoder, &staged("RequestReceived", &id));
            assert_eq!(
                decode_with(&mut decoder, &staged("ResponseComplete", &id)).len(),
                1
            );
        }
        assert!(decoder.stages.held.is_empty());
        assert!(decoder.stages.order.len() <= 1024 + 1);
    }

    #[test]
    fn remembered_ids_are_bounded() {
        let mut decoder = K8sAuditDecoder::with_limits(StageLimits {
            recent: 2,
            ..StageLimits::default()
        });
        for id in ["a", "b", "c"] {
            assert_eq!(
                decode_with(&mut decoder, &staged("ResponseComplete", id)).len(),
                1
            );
        }
        assert_eq!(decoder.stages.recent.len(), 2);
        // "a" has been forgotten, "c" has not.
        assert_eq!(
            decode_with(&mut decoder, &staged("ResponseComplete", "a")).len(),
            1
        );
        assert!(decode_with(&mut decoder, &staged("ResponseComplete", "c")).is_empty());
    }

    #[test]
    fn records_without_stage_or_audit_id_are_emitted_at_once() {
        let mut decoder = K8sAuditDecoder::default();
        let bare = r#"{"kind":"Event","verb":"create","objectRef":{"resource":"pods","namespace":"default"},"responseStatus":{"code":201}}"#;
        let events = decode_with(&mut decoder, bare);
        assert_eq!(events.len(), 1);
        assert_eq!(
            decode_with(&mut decoder, bare).len(),
            1,
            "no id to merge on"
        );
        let event = &events[0];
        assert_eq!(event.id, content_id(bare.as_bytes()));
        assert_eq!(event.identity.id, "unknown");
        assert_eq!(event.action, "k8s:create/pods");
        assert_eq!(event.resource.as_deref(), Some("k8s:default/pods"));
        assert!(event.time_inferred);
        let started = staged("ResponseStarted", "").replace(r#""auditID":"","#, "");
        assert_eq!(decode_with(&mut decoder, &started).len(), 1);
    }

    #[test]
    fn refusals_and_failures() {
        let with = |status: &str| one(&GET_SECRET.replace(r#"{"metadata":{},"code":200}"#, status));
        let forbidden = with(
            r#"{"metadata":{},"status":"Failure","message":"secrets \"db\" is forbidden","reason":"Forbidden","code":403}"#,
        );
        assert_eq!(
            (forbidden.outcome, forbidden.error.as_deref()),
            (Outcome::Denied, Some("Forbidden"))
        );
        let unauthorized = with(r#"{"code":401,"message":"Unauthorized"}"#);
        assert_eq!(
            (unauthorized.outcome, unauthorized.error.as_deref()),
            (Outcome::Denied, Some("Unauthorized"))
        );
        let missing = with(r#"{"code":404}"#);
        assert_eq!(
            (missing.outcome, missing.error.as_deref()),
            (Outcome::Error, Some("NotFound"))
        );
        let odd = with(r#"{"code":418}"#);
        assert_eq!(odd.error.as_deref(), Some("HTTP 418"));
        let fine = with(r#"{"code":101}"#);
        assert_eq!(fine.outcome, Outcome::Success);
        let by_annotation = one(&GET_SECRET.replace(
            r#""authorization.k8s.io/decision":"allow""#,
            r#""authorization.k8s.io/decision":"forbid""#,
        ));
        assert_eq!(by_annotation.outcome, Outcome::Denied);
        let panic = one(&staged("Panic", "p"));
        assert_eq!(
            (panic.outcome, panic.error.as_deref()),
            (Outcome::Error, Some("Panic"))
        );
    }

    #[test]
    fn impersonation_is_attributed_to_the_impersonated_user() {
        let record = GET_SECRET.replace(
            r#""sourceIPs""#,
            r#""impersonatedUser":{"username":"system:serviceaccount:prod:payments","groups":["system:serviceaccounts"]},"sourceIPs""#,
        );
        let event = one(&record);
        assert_eq!(event.identity.id, "system:serviceaccount:prod:payments");
        assert_eq!(event.identity.kind, IdentityKind::ServiceAccount);
        assert_eq!(
            event.identity.session.as_deref(),
            Some("system:serviceaccount:ci:deployer"),
            "the real user is kept as the session"
        );
        assert_eq!(event.identity.credential.as_deref(), Some("JTI=8f0e2c1a"));
    }

    #[test]
    fn non_resource_requests_use_the_path() {
        let event = one(
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"h","stage":"ResponseComplete","requestURI":"/healthz?verbose=1","verb":"get","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"sourceIPs":["10.128.5.42"],"userAgent":"ELB-HealthChecker/2.0","responseStatus":{"code":200},"requestReceivedTimestamp":"2024-11-13 18:34:10.595141000","stageTimestamp":"2024-11-13 18:34:10.595494000"}"#,
        );
        assert_eq!(event.action, "k8s:get/healthz");
        assert_eq!(event.resource.as_deref(), Some("/healthz"));
        assert_eq!(event.action_class, ActionClass::Read);
        assert_eq!(event.identity.kind, IdentityKind::Unknown);
        assert_eq!(
            event.time.to_string(),
            "2024-11-13T18:34:10.595494Z",
            "Panther's times without an offset are UTC"
        );
        let root = one(r#"{"verb":"get","requestURI":"/","user":{"username":"u"}}"#);
        assert_eq!(root.action, "k8s:get");
        let who_only = one(r#"{"user":{"username":"system:anonymous"},"sourceIPs":["127.0.0.1"]}"#);
        assert_eq!(who_only.action, "k8s:unknown");
        assert_eq!(who_only.src_ip.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn resources_follow_the_path_scheme() {
        let cases = [
            (
                r#"{"resource":"clusterroles","name":"admin","apiGroup":"rbac.authorization.k8s.io"}"#,
                "k8s:clusterroles/admin",
            ),
            (
                r#"{"resource":"namespaces","namespace":"foo","name":"foo"}"#,
                "k8s:namespaces/foo",
            ),
            (
                r#"{"resource":"pods","namespace":"d","name":"p","subresource":"exec"}"#,
                "k8s:d/pods/p/exec",
            ),
            (r#"{"resource":"secrets"}"#, "k8s:secrets"),
        ];
        for (object_ref, resource) in cases {
            let record =
                format!(r#"{{"verb":"get","user":{{"username":"u"}},"objectRef":{object_ref}}}"#);
            assert_eq!(one(&record).resource.as_deref(), Some(resource), "{record}");
        }
    }

    #[test]
    fn classes_follow_the_table() {
        use ActionClass::*;
        let cases = [
            ("get", Some("secrets"), None, Read),
            ("list", Some("secrets"), None, List),
            ("watch", Some("pods"), None, List),
            ("create", Some("pods"), None, Write),
            ("patch", Some("deployments"), None, Write),
            ("delete", Some("configmaps"), None, Delete),
            ("deletecollection", Some("pods"), None, Delete),
            ("create", Some("pods"), Some("exec"), Exec),
            ("get", Some("pods"), Some("exec"), Exec),
            ("create", Some("pods"), Some("attach"), Exec),
            ("create", Some("pods"), Some("portforward"), Exec),
            ("get", Some("nodes"), Some("proxy"), Exec),
            ("get", Some("pods"), Some("log"), Read),
            ("create", Some("clusterrolebindings"), None, Permission),
            ("patch", Some("clusterroles"), None, Permission),
            ("delete", Some("rolebindings"), None, Permission),
            ("get", Some("roles"), None, Read),
            ("create", Some("serviceaccounts"), None, Permission),
            ("create", Some("serviceaccounts"), Some("token"), Auth),
            ("create", Some("tokenreviews"), None, Auth),
            ("create", Some("selfsubjectrulesreviews"), None, Auth),
            ("create", Some("certificatesigningrequests"), None, Auth),
            (
                "update",
                Some("certificatesigningrequests"),
                Some("approval"),
                Permission,
            ),
            ("impersonate", Some("users"), None, Permission),
            ("escalate", Some("clusterroles"), None, Permission),
            ("bind", Some("clusterroles"), None, Permission),
            ("get", None, None, Read),
            ("unknown", None, None, Other),
        ];
        for (verb, resource, sub, class) in cases {
            assert_eq!(
                classify(verb, resource, sub),
                class,
                "{verb} {resource:?} {sub:?}"
            );
        }
    }

    #[test]
    fn kinds_follow_the_user_name() {
        use IdentityKind::*;
        let cases = [
            ("system:serviceaccount:kube-system:coredns", ServiceAccount),
            ("gke-sa@proj.iam.gserviceaccount.com", ServiceAccount),
            ("system:node:ip-10-0-0-1.ec2.internal", Workload),
            ("system:kube-controller-manager", Workload),
            ("system:apiserver", Workload),
            ("eks:addon-manager", Workload),
            (
                "arn:aws:sts::123412341234:assumed-role/DevAdministrator/s",
                Role,
            ),
            ("admin@example.com", User),
            ("system:anonymous", Unknown),
            ("kubernetes-admin", Unknown),
        ];
        for (name, kind) in cases {
            assert_eq!(user_kind(name), kind, "{name}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (r#"{"verb":5,"user":{"username":"u"}}"#, "verb"),
            (r#"{"verb":"get","user":"u"}"#, "user"),
            (
                r#"{"verb":"get","user":{"username":["u"]}}"#,
                "user.username",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"objectRef":{"resource":"pods","namespace":1}}"#,
                "objectRef.namespace",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"sourceIPs":"1.2.3.4"}"#,
                "sourceIPs",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"sourceIPs":[7]}"#,
                "sourceIPs",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"responseStatus":{"code":"403"}}"#,
                "responseStatus.code",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"responseStatus":{"code":70000}}"#,
                "responseStatus.code",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"stage":"Halfway"}"#,
                "stage",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"stageTimestamp":12}"#,
                "stageTimestamp",
            ),
            (
                r#"{"verb":"get","user":{"username":"u","extra":{"authentication.kubernetes.io/pod-name":"p"}}}"#,
                "user.extra[authentication.kubernetes.io/pod-name]",
            ),
            (r#"{"auditID":"x","kind":"Event"}"#, "verb"),
            (r#"{"kind":0}"#, "verb"),
            (
                r#"{"category":"kube-audit","properties":{"log":"{\"verb\":1}"}}"#,
                "properties.log.verb",
            ),
            (
                r#"{"category":"kube-audit","properties":{}}"#,
                "properties.log",
            ),
            (
                r#"{"category":"kube-audit","properties":{"log":"I0101 apiserver started"}}"#,
                "properties.log",
            ),
            (
                r#"{"protoPayload":{"serviceName":"k8s.io"}}"#,
                "protoPayload.methodName",
            ),
            (
                r#"{"protoPayload":{"serviceName":"compute.googleapis.com","methodName":"v1.compute.instances.list","resourceName":"k8s.io"}}"#,
                "protoPayload.serviceName",
            ),
            (
                r#"{"protoPayload":{"methodName":"io.k8s.core.v1.pods.get","authorizationInfo":[{"granted":"yes"}]}}"#,
                "protoPayload.authorizationInfo",
            ),
        ];
        for (record, field) in cases {
            let err = error(record);
            assert_eq!(err.field.as_deref(), Some(field), "{record}: {err}");
        }
        let err = error(r#"{"verb":"get","user":"u"}"#);
        assert!(
            err.reason.contains("expected an object, found a string"),
            "{err}"
        );
        for bad in ["", "[1,2]", "{", r#"{"verb":"get","verb":"list"}"#, "\u{1}"] {
            let err = error(bad);
            assert!(err.field.is_none(), "{bad:?}: {err}");
        }
    }

    #[test]
    fn wrong_types_are_reported_only_where_the_decoder_reads() {
        let reasons = [
            (
                r#"{"verb":"get","user":{"username":"u"},"sourceIPs":[7,"1.2.3.4"]}"#,
                "field `sourceIPs`: expected an array of strings, found an array: its first \
                 element is a number",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"responseStatus":{"code":200.0}}"#,
                "field `responseStatus.code`: expected an HTTP status code, found a number: 200.0 \
                 is not one",
            ),
            (
                r#"{"verb":"get","user":{"username":"u","username":"v"}}"#,
                "field `user`: expected an object, found an object: duplicate field `username`",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"verb":"list"}"#,
                "invalid JSON: duplicate field `verb`",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"operation":{"first":1}}"#,
                "",
            ),
            (
                r#"{"verb":"get","user":{"username":"u"},"requestObject":{"a":1,"a":[}}"#,
                "invalid JSON at column 67: expected a JSON value",
            ),
        ];
        for (record, reason) in reasons {
            match K8sAuditDecoder::default().decode(record, &mut |_| {}) {
                Ok(()) => assert_eq!(reason, "", "{record}"),
                Err(err) => assert_eq!(err.to_string(), reason, "{record}"),
            }
        }
        // The fields of the other shapes are not read: a GKE entry's `user`, an AKS
        // wrapper's `verb`.
        let gke =
            r#"{"protoPayload":{"methodName":"io.k8s.core.v1.pods.list"},"user":7,"verb":[]}"#;
        assert_eq!(one(gke).action, "k8s:list/pods");
        let aks = r#"{"verb":{},"properties":{"log":"{\"verb\":\"get\"}"}}"#;
        assert_eq!(one(aks).action, "k8s:get");
    }

    #[test]
    fn aks_records_carry_the_event_in_properties_log() {
        let record = r#"{"time":"2024-03-20T10:00:00.5Z","category":"kube-audit","operationName":"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read","properties":{"log":"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"verb\":\"create\",\"user\":{\"username\":\"system:serviceaccount:default:backdoor-sa\"},\"sourceIPs\":[\"1.2.3.4\"],\"objectRef\":{\"resource\":\"serviceaccounts\",\"subresource\":\"token\",\"namespace\":\"default\",\"name\":\"backdoor-sa\",\"apiVersion\":\"v1\"},\"responseStatus\":{\"code\":201}}","stream":"stdout","pod":"kube-apiserver-5f6"}}"#;
        let event = one(record);
        assert_eq!(
            event.identity.id,
            "system:serviceaccount:default:backdoor-sa"
        );
        assert_eq!(event.action, "k8s:create/serviceaccounts/token");
        assert_eq!(event.action_class, ActionClass::Auth);
        assert_eq!(
            event.resource.as_deref(),
            Some("k8s:default/serviceaccounts/backdoor-sa/token")
        );
        assert_eq!(event.src_ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(event.time.to_string(), "2024-03-20T10:00:00.500Z");
        assert!(!event.time_inferred);
        assert_eq!(event.raw.get(), record, "raw is the whole record");
        assert_eq!(event.id, content_id(record.as_bytes()));
    }

    #[test]
    fn gke_entries_are_read_from_the_proto_payload() {
        let record = r#"{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"system:serviceaccount:prod:api"},"authorizationInfo":[{"granted":false,"permission":"io.k8s.core.v1.secrets.get","resource":"core/v1/namespaces/prod/secrets/tls"}],"methodName":"io.k8s.core.v1.secrets.get","requestMetadata":{"callerIp":"10.4.0.7","callerSuppliedUserAgent":"python-requests/2.31"},"resourceName":"core/v1/namespaces/prod/secrets/tls","serviceName":"k8s.io","status":{"code":7,"message":"PERMISSION_DENIED"}},"insertId":"a1b2c3","resource":{"type":"k8s_cluster","labels":{"cluster_name":"c","location":"europe-west1","project_id":"p"}},"timestamp":"2024-02-02T08:00:00.000001Z","logName":"projects/p/logs/cloudaudit.googleapis.com%2Fdata_access","operation":{"id":"9f1e","producer":"k8s.io","first":true,"last":true}}"#;
        let event = one(record);
        assert_eq!(event.id, "a1b2c3");
        assert_eq!(event.identity.id, "system:serviceaccount:prod:api");
        assert_eq!(event.identity.kind, IdentityKind::ServiceAccount);
        assert_eq!(event.action, "k8s:get/secrets");
        assert_eq!(event.action_class, ActionClass::Read);
        assert_eq!(event.resource.as_deref(), Some("k8s:prod/secrets/tls"));
        assert_eq!(
            (event.outcome, event.error.as_deref()),
            (Outcome::Denied, Some("PERMISSION_DENIED"))
        );
        assert_eq!(event.src_ip.as_deref(), Some("10.4.0.7"));
        assert_eq!(event.user_agent.as_deref(), Some("python-requests/2.31"));
        assert_eq!(event.time.to_string(), "2024-02-02T08:00:00.000001Z");

        // A long-running call: first and last entries share the operation id.
        let mut decoder = K8sAuditDecoder::default();
        let exec = record
            .replace("secrets.get", "pods.exec.create")
            .replace("secrets/tls", "pods/web/exec");
        let first = exec.replace(r#""last":true"#, r#""last":false"#);
        assert!(decode_with(&mut decoder, &first).is_empty());
        let last = decode_with(&mut decoder, &exec.replace(r#""first":true,"#, ""));
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].action, "k8s:create/pods/exec");
        assert_eq!(last[0].action_class, ActionClass::Exec);
        assert_eq!(last[0].resource.as_deref(), Some("k8s:prod/pods/web/exec"));
        assert!(finish(&mut decoder).is_empty());
    }

    #[test]
    fn gke_method_names_split_into_verb_and_resource() {
        let cases = [
            ("io.k8s.core.v1.pods.get", "get", Some(("pods", None)), None),
            (
                "io.k8s.core.v1.pods.exec.create",
                "create",
                Some(("pods", Some("exec"))),
                None,
            ),
            (
                "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
                "create",
                Some(("clusterrolebindings", None)),
                None,
            ),
            (
                "io.k8s.networking.v1beta1.ingresses.list",
                "list",
                Some(("ingresses", None)),
                None,
            ),
            ("io.k8s.readyz", "unknown", None, Some("readyz")),
            ("io.k8s.healthz.get", "get", None, Some("healthz")),
        ];
        for (method, verb, target, path) in cases {
            let call = gke_method(method);
            assert_eq!(call.verb, verb, "{method}");
            assert_eq!(call.target.map(|t| (t.resource, t.sub)), target, "{method}");
            assert_eq!(call.path, path, "{method}");
        }
        for (name, stripped) in [
            ("core/v1/namespaces/d/pods/p", "namespaces/d/pods/p"),
            (
                "rbac.authorization.k8s.io/v1/clusterroles/x",
                "clusterroles/x",
            ),
            ("core/v1/secrets", "secrets"),
            ("/readyz", "/readyz"),
            ("core/v1", ""),
        ] {
            assert_eq!(without_group_version(Cow::Borrowed(name)), stripped);
        }
        for (segment, version) in [
            ("v1", true),
            ("v1beta1", true),
            ("v2alpha3", true),
            ("v1beta", false),
            ("vx", false),
            ("apps", false),
        ] {
            assert_eq!(is_version(segment), version, "{segment}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let mut decoder = K8sAuditDecoder::default();
            let _ = decoder.decode(&text, &mut |_| {});
            decoder.finish(&mut |_| {});
        }

        #[test]
        fn edited_records_never_panic(
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<char>()), 1..6),
        ) {
            let mut record: Vec<char> = GET_SECRET.chars().collect();
            for (at, c) in edits {
                let i = at.index(record.len());
                record[i] = c;
            }
            let record: String = record.into_iter().collect();
            let mut decoder = K8sAuditDecoder::with_limits(StageLimits { held: 1, held_bytes: 1, recent: 1 });
            for _ in 0..2 {
                let _ = decoder.decode(&record, &mut |_| {});
            }
            decoder.finish(&mut |_| {});
        }

        /// The reader refuses a record as JSON exactly when serde_json refuses its text.
        #[test]
        fn records_are_refused_as_json_exactly_when_serde_json_refuses_them(
            edits in proptest::collection::vec(
                (
                    any::<proptest::sample::Index>(),
                    0u8..3,
                    proptest::sample::select(&JSON_CHARS[..]),
                ),
                1..4,
            ),
        ) {
            let mut record: Vec<char> = GET_SECRET.chars().collect();
            for (at, edit, c) in edits {
                let i = at.index(record.len());
                match edit {
                    0 => {
                        record.remove(i);
                    }
                    1 => record.insert(i, c),
                    _ => record[i] = c,
                }
            }
            let record: String = record.into_iter().collect();
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&record).is_ok();
            let ours = K8sAuditDecoder::default().decode(&record, &mut |_| {});
            let refused = matches!(
                &ours,
                Err(err) if err.field.is_none() && err.reason.starts_with("invalid JSON at")
            );
            if record.trim_ascii().starts_with('{') {
                prop_assert_eq!(refused, !theirs, "{} {:?}", record, ours);
            } else {
                prop_assert!(ours.is_err());
            }
        }
    }

    /// Characters that make and break JSON, for random edits.
    const JSON_CHARS: [char; 17] = [
        '"', '\\', ',', ':', '{', '}', '[', ']', '-', '.', 'e', '0', 'n', 't', ' ', '\u{1}', 'é',
    ];
}
