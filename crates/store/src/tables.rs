//! The redb tables and the small records of the derived ones.
//!
//! | table | key | value | what |
//! |---|---|---|---|
//! | `meta` | name | bytes | format version, chain head, newest item time per content, next identity number |
//! | `batches` | batch | header | the chain ([`crate::BatchHeader`]) |
//! | `pruned` | batch | content bits | contents of a batch removed by retention |
//! | `events`, `findings`, `risks`, `profiles` | (identity no, time, natural key) | item | the items, clustered by identity and time |
//! | `<content>.loc` | (batch, seq) | item key | where a batch's items are, in order (for verify and retention) |
//! | `inferred` | natural key | (identity no, time) | events without a timestamp of their own (their time is when they were read, so only this finds them again) |
//! | `findings.kind` | (kind, time, identity no, natural key) | | findings by kind and time |
//! | `identity.no` | identity | identity no | |
//! | `identities` | identity no | summary | derived: kind, counts, first/last seen, latest risk (identities with events, findings or risk points) |
//! | `actions` | (identity no, action) | counts | derived: permitted-vs-used support |
//!
//! An item's key holds its natural key (16 bytes of BLAKE3 over what identifies it: an event's
//! source and id, a finding's id, ...), so the idempotence check is a lookup in the item table
//! itself, next to where the item goes: a batch dirties the pages at the end of each identity's
//! range, not one random page per item as a separate hash index would.
//!
//! Only `batches` and the four item tables are evidence covered by the chain; the rest are
//! indexes and summaries derived from them when items were appended.

use nhiwatch_model::{Decision, IdentityKind, Timestamp};
use redb::TableDefinition;
use serde::Serialize;

use crate::codec::{
    decision_code, decision_of, identity_kind_code, identity_kind_of, put_i64, put_str, put_u64,
    Corrupt, Reader,
};
use crate::Content;

/// An item's key in its content table: identity number, time, natural key.
pub(crate) type ItemKey = (u32, i64, [u8; 16]);
/// Where an item sits in the chain: batch and sequence.
pub(crate) type Loc = (u64, u32);

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
pub(crate) const PRUNED: TableDefinition<u64, u8> = TableDefinition::new("pruned");
pub(crate) const INFERRED: TableDefinition<&[u8; 16], (u32, i64)> =
    TableDefinition::new("inferred");
pub(crate) const FINDINGS_BY_KIND: TableDefinition<(u8, i64, u32, [u8; 16]), ()> =
    TableDefinition::new("findings.kind");
pub(crate) const IDENTITY_NO: TableDefinition<&str, u32> = TableDefinition::new("identity.no");
pub(crate) const IDENTITIES: TableDefinition<u32, &[u8]> = TableDefinition::new("identities");
/// Per identity and action: events, denied, errored, first time, last time.
pub(crate) type ActionCounts = (u64, u64, u64, i64, i64);
pub(crate) const ACTIONS: TableDefinition<(u32, &str), ActionCounts> =
    TableDefinition::new("actions");

const EVENTS: TableDefinition<ItemKey, &[u8]> = TableDefinition::new("events");
const FINDINGS: TableDefinition<ItemKey, &[u8]> = TableDefinition::new("findings");
const RISKS: TableDefinition<ItemKey, &[u8]> = TableDefinition::new("risks");
const PROFILES: TableDefinition<ItemKey, &[u8]> = TableDefinition::new("profiles");
const EVENTS_LOC: TableDefinition<Loc, ItemKey> = TableDefinition::new("events.loc");
const FINDINGS_LOC: TableDefinition<Loc, ItemKey> = TableDefinition::new("findings.loc");
const RISKS_LOC: TableDefinition<Loc, ItemKey> = TableDefinition::new("risks.loc");
const PROFILES_LOC: TableDefinition<Loc, ItemKey> = TableDefinition::new("profiles.loc");

impl Content {
    /// The table holding this content's items.
    pub(crate) fn items(self) -> TableDefinition<'static, ItemKey, &'static [u8]> {
        match self {
            Content::Events => EVENTS,
            Content::Findings => FINDINGS,
            Content::Risks => RISKS,
            Content::Profiles => PROFILES,
        }
    }

    /// The table locating this content's items by batch and sequence.
    pub(crate) fn loc(self) -> TableDefinition<'static, Loc, ItemKey> {
        match self {
            Content::Events => EVENTS_LOC,
            Content::Findings => FINDINGS_LOC,
            Content::Risks => RISKS_LOC,
            Content::Profiles => PROFILES_LOC,
        }
    }

    /// The bit of this content in the `pruned` table.
    pub(crate) fn bit(self) -> u8 {
        1 << self.index()
    }
}

/// Meta keys.
pub(crate) const FORMAT_KEY: &str = "format";
pub(crate) const HEAD_KEY: &str = "head";
pub(crate) const NEWEST_KEY: &str = "newest";
pub(crate) const NEXT_IDENTITY_KEY: &str = "next_identity";

/// The store format this build reads and writes.
pub(crate) const FORMAT: u32 = 1;

/// What the store keeps about one identity, updated as items are appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentitySummary {
    /// The identity's id.
    pub identity: String,
    /// Its kind, as its latest event gave it.
    pub kind: IdentityKind,
    /// Events stored for it (ever; retention does not lower it).
    pub events: u64,
    /// Its earliest event.
    pub first_seen: Option<Timestamp>,
    /// Its latest event.
    pub last_seen: Option<Timestamp>,
    /// Findings stored for it.
    pub findings: u64,
    /// Its latest risk point: time, risk, decision.
    pub risk: Option<LatestRisk>,
}

/// The latest risk of an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LatestRisk {
    /// When.
    pub time: Timestamp,
    /// Risk 0-100.
    pub risk: u8,
    /// The decision.
    pub decision: Decision,
}

const SUMMARY_VERSION: u8 = 1;

impl IdentitySummary {
    pub(crate) fn new(identity: &str) -> Self {
        IdentitySummary {
            identity: identity.to_owned(),
            kind: IdentityKind::Unknown,
            events: 0,
            first_seen: None,
            last_seen: None,
            findings: 0,
            risk: None,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.identity.len());
        out.push(SUMMARY_VERSION);
        out.push(identity_kind_code(self.kind));
        put_u64(&mut out, self.events);
        put_i64(&mut out, self.first_seen.map_or(i64::MAX, |t| t.0));
        put_i64(&mut out, self.last_seen.map_or(i64::MIN, |t| t.0));
        put_u64(&mut out, self.findings);
        match self.risk {
            Some(risk) => {
                out.push(1);
                put_i64(&mut out, risk.time.0);
                out.push(risk.risk);
                out.push(decision_code(risk.decision));
            }
            None => out.push(0),
        }
        put_str(&mut out, &self.identity);
        out
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader::new(value);
        r.expect_version(SUMMARY_VERSION)?;
        let kind = identity_kind_of(r.u8()?)?;
        let events = r.u64()?;
        let first = r.i64()?;
        let last = r.i64()?;
        let findings = r.u64()?;
        let risk = match r.u8()? {
            0 => None,
            _ => Some(LatestRisk {
                time: Timestamp(r.i64()?),
                risk: r.u8()?,
                decision: decision_of(r.u8()?)?,
            }),
        };
        let identity = r.str()?.to_owned();
        Ok(IdentitySummary {
            identity,
            kind,
            events,
            first_seen: (first != i64::MAX).then_some(Timestamp(first)),
            last_seen: (last != i64::MIN).then_some(Timestamp(last)),
            findings,
            risk,
        })
    }
}

/// One action an identity used: the store's support for permitted-vs-used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionUse {
    /// The action.
    pub action: String,
    /// Events with this action (ever stored; retention does not lower it).
    pub events: u64,
    /// Of which the provider denied.
    pub denied: u64,
    /// Of which failed otherwise.
    pub errored: u64,
    /// The earliest.
    pub first_seen: Timestamp,
    /// The latest.
    pub last_seen: Timestamp,
}

/// Encodes the chain head for `meta`.
pub(crate) fn encode_head(number: u64, hash: &crate::Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    put_u64(&mut out, number);
    out.extend_from_slice(&hash.0);
    out
}

/// Decodes the chain head from `meta`.
pub(crate) fn decode_head(value: &[u8]) -> Result<crate::Head, Corrupt> {
    let mut r = Reader::new(value);
    let batch = r.u64()?;
    let hash = crate::Hash(r.array()?);
    Ok(crate::Head { batch, hash })
}

/// Encodes the newest item time per content.
pub(crate) fn encode_newest(newest: &[i64; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    for time in newest {
        put_i64(&mut out, *time);
    }
    out
}

/// Decodes the newest item time per content.
pub(crate) fn decode_newest(value: &[u8]) -> Result<[i64; 4], Corrupt> {
    let mut r = Reader::new(value);
    let mut newest = [i64::MIN; 4];
    for time in &mut newest {
        *time = r.i64()?;
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_round_trip() {
        let mut summary = IdentitySummary::new("arn:aws:iam::1:role/x");
        assert_eq!(
            IdentitySummary::decode(&summary.encode()),
            Ok(summary.clone())
        );
        summary.events = 3;
        summary.first_seen = Some(Timestamp(1));
        summary.last_seen = Some(Timestamp(2));
        summary.risk = Some(LatestRisk {
            time: Timestamp(2),
            risk: 80,
            decision: Decision::Block,
        });
        assert_eq!(IdentitySummary::decode(&summary.encode()), Ok(summary));
    }
}
