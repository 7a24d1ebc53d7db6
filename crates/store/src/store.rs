//! Opening the store, appending batches, and retention.

use std::fs;
use std::path::{Path, PathBuf};

use nhiwatch_model::Timestamp;
use redb::{
    Builder, ConcurrencyMode, Database, DatabaseError, Durability, ReadOnlyDatabase,
    ReadTransaction, ReadableDatabase, ReadableTable, Table, TableError, WriteTransaction,
};
use rustc_hash::FxHashMap;

use crate::batch::Batch;
use crate::chain::{BatchHeader, Hash, RootHasher, Section};
use crate::codec::{finding_kind_code, item_head};
use crate::tables::{
    decode_head, decode_newest, encode_head, encode_newest, ActionCounts, IdentitySummary, ItemKey,
    LatestRisk, ACTIONS, BATCHES, FINDINGS_BY_KIND, FORMAT, FORMAT_KEY, HEAD_KEY, IDENTITIES,
    IDENTITY_NO, INFERRED, META, NEWEST_KEY, NEXT_IDENTITY_KEY, PRUNED,
};
use crate::{Content, Counts, Receipt, StoreError};

/// The database file inside the data folder.
pub const FILE_NAME: &str = "nhiwatch.redb";

/// How long items are kept. Times count back from the store's *present*: the newest item time
/// stored, but never later than the wall clock (so one record dated in the future cannot expire
/// everything, and replaying last year's logs does not expire them on arrival).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep events this many nanoseconds; `None` keeps them forever.
    pub events: Option<i64>,
    /// Keep findings and risk history this many nanoseconds; `None` keeps them forever.
    pub findings: Option<i64>,
}

impl Retention {
    /// Items of `content` older than this are expired, given the store's newest item time.
    pub fn cutoff(&self, content: Content, now: Timestamp, newest: i64) -> Option<i64> {
        let window = match content {
            Content::Events => self.events,
            Content::Findings | Content::Risks => self.findings,
            Content::Profiles => None,
        }?;
        (newest != i64::MIN).then(|| newest.min(now.0).saturating_sub(window))
    }
}

/// Settings of a store opened for writing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Retention, applied when batches are appended (expired items are not stored) and by
    /// [`Store::compact_step`].
    pub retention: Retention,
}

/// What one [`Store::compact_step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Items removed.
    pub removed: u64,
    /// Whether expired items remain (call again).
    pub more: bool,
}

pub(crate) enum Handle {
    Writer(Database),
    Reader(ReadOnlyDatabase),
}

/// The evidence store: one redb database file in a data folder. One process writes at a time;
/// any number of processes may read while it does (redb's single-writer mode).
pub struct Store {
    pub(crate) db: Handle,
    path: PathBuf,
    retention: Retention,
}

/// The most redb keeps of the file in memory (its page cache). redb's default, 1 GiB, fills as
/// the file grows: a server's resident memory climbed with its store, by about the bytes
/// written, towards that size. Appends touch the B-tree's upper pages and one leaf per
/// identity (items are keyed by identity and time); those fit here many times over, and the
/// operating system's page cache holds the rest of the file for reads.
const CACHE_BYTES: usize = 16 << 20;

fn builder() -> Builder {
    let mut builder = Builder::new();
    builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    builder.set_cache_size(CACHE_BYTES);
    builder
}

fn open_error(path: &Path, err: DatabaseError) -> StoreError {
    match err {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Busy(path.to_path_buf()),
        err => StoreError::Open {
            path: path.to_path_buf(),
            source: err.into(),
        },
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir` for writing. redb recovers an interrupted
    /// commit on open; then the last batch is verified, and a chain whose end does not verify is
    /// refused ([`StoreError::Broken`]) rather than appended to.
    pub fn open(dir: &Path, options: Options) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(|err| StoreError::Open {
            path: dir.to_path_buf(),
            source: err.into(),
        })?;
        let path = dir.join(FILE_NAME);
        let db = builder()
            .create(&path)
            .map_err(|err| open_error(&path, err))?;
        let store = Store {
            db: Handle::Writer(db),
            path,
            retention: options.retention,
        };
        store
            .initialise()
            .map_err(|err| err.in_storage(&store.path))?;
        if let Some(problem) = store.check_tail()? {
            return Err(StoreError::Broken(Box::new(problem)));
        }
        Ok(store)
    }

    /// Opens the store in `dir` for reading, alongside a writer if one is running. A store left
    /// by a killed writer is first recovered (by opening it for writing, briefly).
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Err(StoreError::Missing(dir.to_path_buf()));
        }
        let db = match builder().open_read_only(&path) {
            Err(DatabaseError::RepairAborted) => {
                drop(
                    builder()
                        .open(&path)
                        .map_err(|err| open_error(&path, err))?,
                );
                builder().open_read_only(&path)
            }
            other => other,
        }
        .map_err(|err| open_error(&path, err))?;
        let store = Store {
            db: Handle::Reader(db),
            path,
            retention: Retention::default(),
        };
        store.check_format()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(match &self.db {
            Handle::Writer(db) => db.begin_read()?,
            Handle::Reader(db) => db.begin_read()?,
        })
    }

    /// A durable write transaction: committed with an fsync before `commit` returns
    /// ([`Durability::Immediate`]), in two phases with the allocator state saved (quick repair),
    /// so recovery after a crash does not walk the whole file.
    fn write(&self) -> Result<WriteTransaction, StoreError> {
        let Handle::Writer(db) = &self.db else {
            return Err(StoreError::ReadOnly);
        };
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let txn = self.read()?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(TableError::TableDoesNotExist(_)) => {
                return Err(StoreError::Missing(self.path.clone()))
            }
            Err(err) => return Err(err.into()),
        };
        let found = meta
            .get(FORMAT_KEY)?
            .and_then(|v| v.value().try_into().ok().map(u32::from_le_bytes));
        match found {
            Some(FORMAT) => Ok(()),
            found => Err(StoreError::Format {
                path: self.path.clone(),
                found: found.unwrap_or(0),
                expected: FORMAT,
            }),
        }
    }

    /// Creates every table of a new store and records the format.
    fn initialise(&self) -> Result<(), StoreError> {
        match self.check_format() {
            Err(StoreError::Missing(_)) => {}
            other => return other,
        }
        let txn = self.write()?;
        {
            for content in Content::ALL {
                txn.open_table(content.items())?;
                txn.open_table(content.loc())?;
            }
            txn.open_table(BATCHES)?;
            txn.open_table(PRUNED)?;
            txn.open_table(INFERRED)?;
            txn.open_table(FINDINGS_BY_KIND)?;
            txn.open_table(IDENTITY_NO)?;
            txn.open_table(IDENTITIES)?;
            txn.open_table(ACTIONS)?;
            let mut meta = txn.open_table(META)?;
            meta.insert(FORMAT_KEY, FORMAT.to_le_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Commits a batch: its new items (those whose natural key the store does not hold yet, and
    /// that retention has not expired) become one batch chained to the last, durably on disk when
    /// this returns `Ok`. A batch with nothing new commits nothing (the receipt's `batch` is
    /// `None`). On success `batch` is emptied for reuse; on error it is left as it was, and the
    /// store is unchanged.
    pub fn append(&self, batch: &mut Batch) -> Result<Receipt, StoreError> {
        self.append_batch(batch)
            .map_err(|err| err.in_storage(&self.path))
    }

    fn append_batch(&self, batch: &mut Batch) -> Result<Receipt, StoreError> {
        let mut receipt = Receipt {
            duplicates: batch.duplicates,
            ..Receipt::default()
        };
        if !batch.is_empty() {
            let txn = self.write()?;
            receipt.batch = write_batch(&txn, batch, &self.retention, &mut receipt)?;
            if receipt.batch.is_some() {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
        }
        batch.clear();
        Ok(receipt)
    }

    /// Removes expired items in one small transaction (at most `budget` items), so that ingest,
    /// which needs the single write lock for each batch, is never held up for long. Run it in a
    /// loop beside ingest until it reports no more work.
    ///
    /// Retention works batch by batch: a content of a batch is removed when its newest item is
    /// older than the cutoff. Its root stays in the batch header, so the chain still verifies;
    /// the batch is marked pruned first, so a crash part-way leaves a state the next step
    /// finishes.
    pub fn compact_step(&self, now: Timestamp, budget: usize) -> Result<Compaction, StoreError> {
        self.compact(now, budget)
            .map_err(|err| err.in_storage(&self.path))
    }

    fn compact(&self, now: Timestamp, budget: usize) -> Result<Compaction, StoreError> {
        let txn = self.write()?;
        let mut removed = 0u64;
        let mut more = false;
        {
            let meta = txn.open_table(META)?;
            let newest = newest_of(&meta)?.into_iter().max().unwrap_or(i64::MIN);
            drop(meta);
            let batches = txn.open_table(BATCHES)?;
            let mut pruned = txn.open_table(PRUNED)?;
            let mut inferred = txn.open_table(INFERRED)?;
            let mut by_kind = txn.open_table(FINDINGS_BY_KIND)?;
            for entry in batches.range::<u64>(..)? {
                let (number, value) = entry?;
                let number = number.value();
                let header = BatchHeader::decode(value.value())?;
                for content in [Content::Events, Content::Findings, Content::Risks] {
                    let section = header.section(content);
                    let expired = self
                        .retention
                        .cutoff(content, now, newest)
                        .is_some_and(|cutoff| section.count > 0 && section.last.0 < cutoff);
                    if !expired {
                        continue;
                    }
                    let mut loc = txn.open_table(content.loc())?;
                    let mut items = txn.open_table(content.items())?;
                    let bits = pruned.get(number)?.map_or(0, |v| v.value());
                    let has_items = loc
                        .range((number, 0)..=(number, u32::MAX))?
                        .next()
                        .is_some();
                    if bits & content.bit() != 0 && !has_items {
                        continue;
                    }
                    if removed as usize >= budget {
                        more = true;
                        break;
                    }
                    pruned.insert(number, bits | content.bit())?;
                    let take = budget - removed as usize;
                    let doomed: Vec<(u32, ItemKey)> = loc
                        .range((number, 0)..=(number, u32::MAX))?
                        .take(take)
                        .map(|entry| entry.map(|(k, v)| (k.value().1, v.value())))
                        .collect::<Result<_, _>>()?;
                    for (seq, key) in doomed {
                        loc.remove((number, seq))?;
                        let Some(value) = items.remove(key)? else {
                            continue;
                        };
                        let head = item_head(content, value.value())?;
                        let (no, time, natural) = key;
                        if head.inferred {
                            inferred.remove(&natural)?;
                        }
                        if let Some(kind) = head.kind {
                            by_kind.remove((finding_kind_code(kind), time, no, natural))?;
                        }
                        removed += 1;
                    }
                }
                if more {
                    break;
                }
            }
        }
        if removed > 0 {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(Compaction { removed, more })
    }
}

fn newest_of(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<[i64; 4], StoreError> {
    Ok(match meta.get(NEWEST_KEY)? {
        Some(value) => decode_newest(value.value())?,
        None => [i64::MIN; 4],
    })
}

/// Identity numbers and summaries touched by one batch, written back once at its end.
struct Identities<'t> {
    numbers_table: Table<'t, &'static str, u32>,
    summaries_table: Table<'t, u32, &'static [u8]>,
    next: u32,
    numbers: FxHashMap<String, u32>,
    touched: FxHashMap<u32, IdentitySummary>,
}

impl<'t> Identities<'t> {
    fn new(txn: &'t WriteTransaction, next: u32) -> Result<Self, StoreError> {
        Ok(Identities {
            numbers_table: txn.open_table(IDENTITY_NO)?,
            summaries_table: txn.open_table(IDENTITIES)?,
            next,
            numbers: FxHashMap::default(),
            touched: FxHashMap::default(),
        })
    }

    /// The identity's number, numbering it if it is new.
    fn number(&mut self, identity: &str) -> Result<u32, StoreError> {
        if let Some(&no) = self.numbers.get(identity) {
            return Ok(no);
        }
        let known = self.numbers_table.get(identity)?.map(|no| no.value());
        let no = match known {
            Some(no) => no,
            None => {
                let no = self.next;
                self.next = no
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Corrupt("more than 2^32 identities".into()))?;
                self.numbers_table.insert(identity, no)?;
                no
            }
        };
        self.numbers.insert(identity.to_owned(), no);
        Ok(no)
    }

    /// The summary of a numbered identity, to update.
    fn summary(&mut self, no: u32, identity: &str) -> Result<&mut IdentitySummary, StoreError> {
        Ok(match self.touched.entry(no) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let summary = match self.summaries_table.get(no)? {
                    Some(value) => IdentitySummary::decode(value.value())?,
                    None => IdentitySummary::new(identity),
                };
                entry.insert(summary)
            }
        })
    }

    /// Writes the touched summaries; the next identity number.
    fn write(mut self) -> Result<u32, StoreError> {
        for (no, summary) in &self.touched {
            self.summaries_table
                .insert(*no, summary.encode().as_slice())?;
        }
        Ok(self.next)
    }
}

/// Per identity, per action: the counts this batch adds.
type ActionDeltas = FxHashMap<u32, FxHashMap<String, ActionCounts>>;

/// Writes a batch's new items and its header into `txn`; `None` when nothing was new.
fn write_batch(
    txn: &WriteTransaction,
    batch: &Batch,
    retention: &Retention,
    receipt: &mut Receipt,
) -> Result<Option<BatchHeader>, StoreError> {
    let now = Timestamp::now();
    let mut meta = txn.open_table(META)?;
    let head = meta
        .get(HEAD_KEY)?
        .map(|value| decode_head(value.value()))
        .transpose()?;
    let number = head.map_or(0, |h| h.batch + 1);
    let prev = head.map_or(Hash::ZERO, |h| h.hash);
    let mut newest = newest_of(&meta)?;
    let batch_newest = batch
        .items
        .iter()
        .flatten()
        .map(|item| item.time)
        .max()
        .unwrap_or(i64::MIN);
    let present = newest
        .iter()
        .copied()
        .max()
        .unwrap_or(i64::MIN)
        .max(batch_newest);

    let mut inferred = txn.open_table(INFERRED)?;
    let mut by_kind = txn.open_table(FINDINGS_BY_KIND)?;
    let next_identity = meta
        .get(NEXT_IDENTITY_KEY)?
        .and_then(|v| v.value().try_into().ok().map(u32::from_le_bytes))
        .unwrap_or(0);
    let mut identities = Identities::new(txn, next_identity)?;
    let mut actions = ActionDeltas::default();
    let mut sections = [Section {
        count: 0,
        root: Hash::ZERO,
        first: Timestamp(0),
        last: Timestamp(0),
    }; 4];
    for content in Content::ALL {
        let cutoff = retention.cutoff(content, now, present);
        let mut items = txn.open_table(content.items())?;
        let mut loc = txn.open_table(content.loc())?;
        let mut root = RootHasher::new();
        let (mut seq, mut first, mut last) = (0u32, i64::MAX, i64::MIN);
        for item in &batch.items[content.index()] {
            let events = content == Content::Events;
            if cutoff.is_some_and(|cutoff| item.time < cutoff) {
                *receipt.expired.get_mut(content) += 1;
                if events {
                    receipt.events_held.push(false);
                }
                continue;
            }
            let no = identities.number(&item.identity)?;
            let key = (no, item.time, item.key);
            let stored = if item.inferred {
                inferred.get(&item.key)?.is_some()
            } else {
                items.get(key)?.is_some()
            };
            if events {
                receipt.events_held.push(stored);
            }
            if stored {
                *receipt.duplicates.get_mut(content) += 1;
                continue;
            }
            let head = item_head(content, &item.value)?;
            match content {
                Content::Events => {
                    let summary = identities.summary(no, &item.identity)?;
                    summary.events += 1;
                    summary.first_seen = Some(
                        summary
                            .first_seen
                            .map_or(Timestamp(item.time), |t| t.min(Timestamp(item.time))),
                    );
                    summary.last_seen = Some(
                        summary
                            .last_seen
                            .map_or(Timestamp(item.time), |t| t.max(Timestamp(item.time))),
                    );
                    if let Some((action, outcome, kind)) = &head.action {
                        summary.kind = *kind;
                        add_action(&mut actions, no, action, *outcome, item.time);
                    }
                }
                Content::Findings => {
                    identities.summary(no, &item.identity)?.findings += 1;
                    if let Some(kind) = head.kind {
                        by_kind.insert((finding_kind_code(kind), item.time, no, item.key), ())?;
                    }
                }
                Content::Risks => {
                    let point = crate::codec::decode_risk(&item.value)?;
                    let summary = identities.summary(no, &item.identity)?;
                    if summary.risk.is_none_or(|latest| latest.time <= point.time) {
                        summary.risk = Some(LatestRisk {
                            time: point.time,
                            risk: point.risk,
                            decision: point.decision,
                        });
                    }
                }
                Content::Profiles => {}
            }
            items.insert(key, item.value.as_slice())?;
            loc.insert((number, seq), key)?;
            if item.inferred {
                inferred.insert(&item.key, (no, item.time))?;
            }
            root.item(seq, &item.value);
            first = first.min(item.time);
            last = last.max(item.time);
            seq = seq
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt("more than 2^32 items in one batch".into()))?;
        }
        *receipt.stored.get_mut(content) = u64::from(seq);
        if seq > 0 {
            newest[content.index()] = newest[content.index()].max(last);
        }
        sections[content.index()] = Section {
            count: seq,
            root: root.finish(),
            first: Timestamp(if seq > 0 { first } else { 0 }),
            last: Timestamp(if seq > 0 { last } else { 0 }),
        };
    }
    if sections.iter().all(|s| s.count == 0) {
        return Ok(None);
    }
    let next_identity = identities.write()?;
    write_actions(txn, actions)?;
    let header = BatchHeader::new(number, now, prev, sections);
    txn.open_table(BATCHES)?
        .insert(number, header.encode().as_slice())?;
    meta.insert(HEAD_KEY, encode_head(number, &header.hash).as_slice())?;
    meta.insert(NEWEST_KEY, encode_newest(&newest).as_slice())?;
    meta.insert(NEXT_IDENTITY_KEY, next_identity.to_le_bytes().as_slice())?;
    Ok(Some(header))
}

fn add_action(
    actions: &mut ActionDeltas,
    no: u32,
    action: &str,
    outcome: nhiwatch_model::Outcome,
    time: i64,
) {
    let per_identity = actions.entry(no).or_default();
    let delta = match per_identity.get_mut(action) {
        Some(delta) => delta,
        None => per_identity
            .entry(action.to_owned())
            .or_insert((0, 0, 0, i64::MAX, i64::MIN)),
    };
    delta.0 += 1;
    match outcome {
        nhiwatch_model::Outcome::Success => {}
        nhiwatch_model::Outcome::Denied => delta.1 += 1,
        nhiwatch_model::Outcome::Error => delta.2 += 1,
    }
    delta.3 = delta.3.min(time);
    delta.4 = delta.4.max(time);
}

fn write_actions(txn: &WriteTransaction, actions: ActionDeltas) -> Result<(), StoreError> {
    let mut table = txn.open_table(ACTIONS)?;
    for (no, per_identity) in actions {
        for (action, delta) in per_identity {
            let merged = match table.get((no, action.as_str()))? {
                Some(old) => {
                    let old = old.value();
                    (
                        old.0 + delta.0,
                        old.1 + delta.1,
                        old.2 + delta.2,
                        old.3.min(delta.3),
                        old.4.max(delta.4),
                    )
                }
                None => delta,
            };
            table.insert((no, action.as_str()), merged)?;
        }
    }
    Ok(())
}

impl Counts {
    /// The count of one content.
    pub fn get(&self, content: Content) -> u64 {
        match content {
            Content::Events => self.events,
            Content::Findings => self.findings,
            Content::Risks => self.risks,
            Content::Profiles => self.profiles,
        }
    }

    /// The count of one content, to change.
    pub fn get_mut(&mut self, content: Content) -> &mut u64 {
        match content {
            Content::Events => &mut self.events,
            Content::Findings => &mut self.findings,
            Content::Risks => &mut self.risks,
            Content::Profiles => &mut self.profiles,
        }
    }
}
