//! Reading the store: an identity's events, findings by kind and risk, identities, risk
//! history, actions used, profiles, and whole-table scans for export.

use std::ops::ControlFlow;

use nhiwatch_model::{Event, Finding, FindingKind, Source, Timestamp};
use redb::ReadTransaction;

use crate::codec::{
    decode_event, decode_finding, decode_profile, decode_risk, event_key, finding_kind_code,
    Inflater,
};
use crate::tables::{
    decode_head, ActionUse, IdentitySummary, ItemKey, ACTIONS, BATCHES, FINDINGS_BY_KIND, HEAD_KEY,
    IDENTITIES, IDENTITY_NO, META,
};
use crate::{BatchHeader, Content, Head, Profile, RiskPoint, Store, StoreError};

/// Which findings [`Store::findings`] returns.
#[derive(Clone, Debug, Default)]
pub struct FindingQuery {
    /// Only this identity's.
    pub identity: Option<String>,
    /// Only these kinds (all when empty).
    pub kinds: Vec<FindingKind>,
    /// Only those with at least this risk.
    pub min_risk: u8,
    /// Only those at or after this time.
    pub since: Option<Timestamp>,
    /// Only those before this time.
    pub until: Option<Timestamp>,
}

/// A visitor of stored values, for scans.
type ValueVisitor<'f> = dyn FnMut(&[u8]) -> Result<ControlFlow<()>, StoreError> + 'f;

/// A visitor of events; return `ControlFlow::Break(())` to stop early.
pub type EventVisitor<'f> = dyn FnMut(&Event<'_>) -> ControlFlow<()> + 'f;

/// How far before a finding its evidence events are looked for ([`Store::evidence`]): an
/// episode's events are at most the episode gap apart, and an episode holds a bounded number
/// of them.
pub const EVIDENCE_LOOKBACK: i64 = 31 * 86_400 * 1_000_000_000;

fn identity_no(txn: &ReadTransaction, identity: &str) -> Result<Option<u32>, StoreError> {
    Ok(txn
        .open_table(IDENTITY_NO)?
        .get(identity)?
        .map(|v| v.value()))
}

fn key_range(no: u32, from: Timestamp, to: Timestamp) -> std::ops::Range<ItemKey> {
    (no, from.0, [0; 16])..(no, to.0, [0; 16])
}

impl Store {
    /// Visits the events of `identity` with `from <= time < to`, in time order. With `raw` each
    /// event's raw record is inflated; without it `raw` is JSON `null` and nothing is inflated.
    pub fn visit_events(
        &self,
        identity: &str,
        from: Timestamp,
        to: Timestamp,
        raw: bool,
        visit: &mut EventVisitor<'_>,
    ) -> Result<(), StoreError> {
        let txn = self.read()?;
        let Some(no) = identity_no(&txn, identity)? else {
            return Ok(());
        };
        let table = txn.open_table(Content::Events.items())?;
        let mut inflater = raw.then(Inflater::new);
        for entry in table.range(key_range(no, from, to))? {
            let (_, value) = entry?;
            let event = decode_event(value.value(), inflater.as_mut())?;
            if visit(&event).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The events of `identity` with `from <= time < to`, in time order (see
    /// [`Store::visit_events`] for `raw`).
    pub fn events(
        &self,
        identity: &str,
        from: Timestamp,
        to: Timestamp,
        raw: bool,
    ) -> Result<Vec<Event<'static>>, StoreError> {
        let mut events = Vec::new();
        self.visit_events(identity, from, to, raw, &mut |event| {
            events.push(event.clone().into_owned());
            ControlFlow::Continue(())
        })?;
        Ok(events)
    }

    /// The events of `identity` with these source ids (from any source: ids are unique only
    /// within one), with their raw records, searching back in time from `until` (inclusive)
    /// for at most `lookback` nanoseconds: how a finding's evidence is found, from the finding's
    /// identity and time. Only keys are compared until an event matches.
    pub fn find_events(
        &self,
        identity: &str,
        ids: &[&str],
        until: Timestamp,
        lookback: i64,
    ) -> Result<Vec<Event<'static>>, StoreError> {
        let txn = self.read()?;
        let Some(no) = identity_no(&txn, identity)? else {
            return Ok(Vec::new());
        };
        let mut wanted: Vec<[u8; 16]> = ids
            .iter()
            .flat_map(|id| Source::ALL.map(|source| event_key(source, id)))
            .collect();
        let items = txn.open_table(Content::Events.items())?;
        let mut inflater = Inflater::new();
        let mut found = Vec::new();
        let from = Timestamp(until.0.saturating_sub(lookback));
        let to = Timestamp(until.0.saturating_add(1));
        for entry in items.range(key_range(no, from, to))?.rev() {
            let (key, value) = entry?;
            let natural = key.value().2;
            if let Some(at) = wanted.iter().position(|k| *k == natural) {
                wanted.swap_remove(at);
                found.push(decode_event(value.value(), Some(&mut inflater))?.into_owned());
                if found.len() == ids.len() {
                    break;
                }
            }
        }
        found.reverse();
        Ok(found)
    }

    /// The first `limit` evidence events of `finding` that the store still holds, with their
    /// raw records, in time order (looked for up to [`EVIDENCE_LOOKBACK`] before the finding).
    pub fn evidence(
        &self,
        finding: &Finding,
        limit: usize,
    ) -> Result<Vec<Event<'static>>, StoreError> {
        let ids: Vec<&str> = finding
            .evidence
            .event_ids
            .iter()
            .take(limit)
            .map(String::as_str)
            .collect();
        self.find_events(&finding.identity, &ids, finding.time, EVIDENCE_LOOKBACK)
    }

    /// Findings matching the query, in time order.
    pub fn findings(&self, query: &FindingQuery) -> Result<Vec<Finding>, StoreError> {
        let txn = self.read()?;
        let items = txn.open_table(Content::Findings.items())?;
        let since = query.since.unwrap_or(Timestamp(i64::MIN));
        let until = query.until.unwrap_or(Timestamp(i64::MAX));
        let wanted = |finding: &Finding| {
            finding.risk >= query.min_risk
                && (query.kinds.is_empty() || query.kinds.contains(&finding.kind))
        };
        let mut out = Vec::new();
        if let Some(identity) = &query.identity {
            let Some(no) = identity_no(&txn, identity)? else {
                return Ok(out);
            };
            for entry in items.range(key_range(no, since, until))? {
                let finding = decode_finding(entry?.1.value())?;
                if wanted(&finding) {
                    out.push(finding);
                }
            }
        } else {
            let by_kind = txn.open_table(FINDINGS_BY_KIND)?;
            let kinds = if query.kinds.is_empty() {
                FindingKind::ALL.to_vec()
            } else {
                query.kinds.clone()
            };
            for kind in kinds {
                let code = finding_kind_code(kind);
                let range = (code, since.0, 0, [0; 16])..(code, until.0, 0, [0; 16]);
                for entry in by_kind.range(range)? {
                    let (_, time, no, natural) = entry?.0.value();
                    let Some(value) = items.get((no, time, natural))? else {
                        return Err(StoreError::Corrupt(format!(
                            "the kind index names a finding at {} that is not stored",
                            Timestamp(time)
                        )));
                    };
                    let finding = decode_finding(value.value())?;
                    if wanted(&finding) {
                        out.push(finding);
                    }
                }
            }
        }
        out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Every identity the store has seen, with its summary, in identity order.
    pub fn identities(&self) -> Result<Vec<IdentitySummary>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(IDENTITIES)?;
        let mut out = Vec::new();
        for entry in table.range::<u32>(..)? {
            out.push(IdentitySummary::decode(entry?.1.value())?);
        }
        out.sort_by(|a, b| a.identity.cmp(&b.identity));
        Ok(out)
    }

    /// One identity's summary.
    pub fn identity(&self, identity: &str) -> Result<Option<IdentitySummary>, StoreError> {
        let txn = self.read()?;
        let Some(no) = identity_no(&txn, identity)? else {
            return Ok(None);
        };
        let table = txn.open_table(IDENTITIES)?;
        let summary = table.get(no)?;
        Ok(summary
            .map(|v| IdentitySummary::decode(v.value()))
            .transpose()?)
    }

    /// The risk history of `identity` with `from <= time < to`, in time order.
    pub fn risk_history(
        &self,
        identity: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<RiskPoint>, StoreError> {
        let txn = self.read()?;
        let Some(no) = identity_no(&txn, identity)? else {
            return Ok(Vec::new());
        };
        let table = txn.open_table(Content::Risks.items())?;
        let mut out = Vec::new();
        for entry in table.range(key_range(no, from, to))? {
            out.push(decode_risk(entry?.1.value())?);
        }
        Ok(out)
    }

    /// The distinct actions `identity` used, with counts and first and last use, most used
    /// first: what permitted-vs-used compares with the entitlements.
    pub fn actions(&self, identity: &str) -> Result<Vec<ActionUse>, StoreError> {
        let txn = self.read()?;
        let Some(no) = identity_no(&txn, identity)? else {
            return Ok(Vec::new());
        };
        let table = txn.open_table(ACTIONS)?;
        let mut out = Vec::new();
        for entry in table.range((no, "")..(no.saturating_add(1), ""))? {
            let (key, value) = entry?;
            let (events, denied, errored, first, last) = value.value();
            out.push(ActionUse {
                action: key.value().1.to_owned(),
                events,
                denied,
                errored,
                first_seen: Timestamp(first),
                last_seen: Timestamp(last),
            });
        }
        out.sort_by(|a, b| {
            b.events
                .cmp(&a.events)
                .then_with(|| a.action.cmp(&b.action))
        });
        Ok(out)
    }

    /// The latest profile stored for `identity`.
    pub fn profile(&self, identity: &str) -> Result<Option<Profile>, StoreError> {
        let txn = self.read()?;
        let Some(no) = identity_no(&txn, identity)? else {
            return Ok(None);
        };
        let table = txn.open_table(Content::Profiles.items())?;
        let last = table
            .range(key_range(no, Timestamp(i64::MIN), Timestamp(i64::MAX)))?
            .next_back()
            .transpose()?;
        Ok(last.map(|(_, v)| decode_profile(v.value())).transpose()?)
    }

    /// The chain's head: the last batch and its hash (`None` for an empty store).
    pub fn head(&self) -> Result<Option<Head>, StoreError> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        let head = meta.get(HEAD_KEY)?;
        Ok(head.map(|v| decode_head(v.value())).transpose()?)
    }

    /// One batch's header.
    pub fn batch(&self, number: u64) -> Result<Option<BatchHeader>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(BATCHES)?;
        let header = table.get(number)?;
        Ok(header.map(|v| BatchHeader::decode(v.value())).transpose()?)
    }

    /// Visits every stored event (by identity, then time), for export. See
    /// [`Store::visit_events`] for `raw`.
    pub fn export_events(&self, raw: bool, visit: &mut EventVisitor<'_>) -> Result<(), StoreError> {
        let mut inflater = raw.then(Inflater::new);
        self.scan(Content::Events, &mut |value| {
            Ok(visit(&decode_event(value, inflater.as_mut())?))
        })
    }

    /// Visits every stored finding (by identity, then time), for export.
    pub fn export_findings(
        &self,
        visit: &mut dyn FnMut(&Finding) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.scan(Content::Findings, &mut |value| {
            Ok(visit(&decode_finding(value)?))
        })
    }

    /// Visits every stored risk point (by identity, then time), for export.
    pub fn export_risks(
        &self,
        visit: &mut dyn FnMut(&RiskPoint) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.scan(Content::Risks, &mut |value| Ok(visit(&decode_risk(value)?)))
    }

    fn scan(&self, content: Content, visit: &mut ValueVisitor<'_>) -> Result<(), StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(content.items())?;
        for entry in table.range::<ItemKey>(..)? {
            if visit(entry?.1.value())?.is_break() {
                break;
            }
        }
        Ok(())
    }
}
