//! A batch being built: items encoded (and raw records deflated) in the caller's thread, before
//! the commit, so the write transaction only inserts bytes.

use nhiwatch_model::{Event, Finding};
use rustc_hash::FxHashSet;

use crate::codec::{self, Deflater};
use crate::{Content, Counts, Profile, RiskPoint, StoreError};

/// One encoded item waiting for its commit.
pub(crate) struct Item {
    pub identity: String,
    pub time: i64,
    pub key: [u8; 16],
    /// An event without a time of its own (found again by its key alone).
    pub inferred: bool,
    pub value: Vec<u8>,
}

/// Items to append together: one [`crate::Store::append`] commits them as one chained batch, all
/// or nothing. An item whose natural key is already in the batch is dropped here; one already in
/// the store is dropped at the commit.
pub struct Batch {
    pub(crate) items: [Vec<Item>; 4],
    seen: FxHashSet<[u8; 16]>,
    pub(crate) duplicates: Counts,
    deflater: Deflater,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch {
            items: Default::default(),
            seen: FxHashSet::default(),
            duplicates: Counts::default(),
            deflater: Deflater::new(),
        }
    }

    /// Adds an event (its raw record deflated). False when an event with the same source and id
    /// is already in the batch.
    pub fn add_event(&mut self, event: &Event<'_>) -> bool {
        let mut value = Vec::with_capacity(160 + event.raw.get().len() / 3);
        codec::encode_event(event, &mut self.deflater, &mut value);
        self.push(
            Content::Events,
            Item {
                identity: event.identity.id.to_string(),
                time: event.time.0,
                key: codec::event_key(event.source, &event.id),
                inferred: event.time_inferred,
                value,
            },
        )
    }

    /// Adds a finding. False when a finding with the same id is already in the batch.
    pub fn add_finding(&mut self, finding: &Finding) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(finding)?;
        Ok(self.push(
            Content::Findings,
            Item {
                identity: finding.identity.clone(),
                time: finding.time.0,
                key: codec::finding_key(&finding.id),
                inferred: false,
                value,
            },
        ))
    }

    /// Adds a point of an identity's risk history. False when the same point (identity, time,
    /// cause) is already in the batch.
    pub fn add_risk(&mut self, point: &RiskPoint) -> bool {
        let mut value = Vec::with_capacity(32 + point.identity.len() + point.cause.len());
        codec::encode_risk(point, &mut value);
        self.push_encoded(Content::Risks, value)
    }

    /// Adds a version of an identity's profile. False when the same profile is already in the
    /// batch.
    pub fn add_profile(&mut self, profile: &Profile) -> bool {
        let mut value = Vec::with_capacity(32 + profile.identity.len() + profile.data.len());
        codec::encode_profile(profile, &mut value);
        self.push_encoded(Content::Profiles, value)
    }

    /// Items in the batch, of one content.
    pub fn len_of(&self, content: Content) -> usize {
        self.items[content.index()].len()
    }

    /// Items in the batch, all contents.
    pub fn len(&self) -> usize {
        self.items.iter().map(Vec::len).sum()
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        for items in &mut self.items {
            items.clear();
        }
        self.seen.clear();
        self.duplicates = Counts::default();
    }

    /// Adds a value whose head (identity, time, key) is read back from its encoding, so that the
    /// key is computed by the same code that recomputes it at retention time.
    fn push_encoded(&mut self, content: Content, value: Vec<u8>) -> bool {
        let Ok(head) = codec::item_head(content, &value) else {
            // Our own encoding always reads back; nothing to store if it somehow did not.
            debug_assert!(false, "an encoded {} does not read back", content.as_str());
            return false;
        };
        let item = Item {
            identity: head.identity.into_owned(),
            time: head.time,
            key: head.key,
            inferred: head.inferred,
            value,
        };
        self.push(content, item)
    }

    fn push(&mut self, content: Content, item: Item) -> bool {
        if !self.seen.insert(item.key) {
            *self.duplicates.get_mut(content) += 1;
            return false;
        }
        self.items[content.index()].push(item);
        true
    }
}
