//! Walking the chain: every batch present, every header hashing to its recorded hash and naming
//! its predecessor's, every content's items hashing to the root in the header, every item filed
//! under the identity and time it states, and the recorded head at the end of the chain.

use std::fmt;

use nhiwatch_model::Timestamp;
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};
use serde::Serialize;

use crate::chain::{BatchHeader, Hash, RootHasher};
use crate::codec::item_head;
use crate::tables::{decode_head, BATCHES, HEAD_KEY, IDENTITY_NO, META, PRUNED};
use crate::{Content, Counts, Head, Store, StoreError};

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The batch that is altered or missing, when one can be named.
    pub batch: Option<u64>,
    /// Its items' time range, when its header can be read.
    pub time_range: Option<(Timestamp, Timestamp)>,
    /// When it was committed, when its header can be read.
    pub committed_at: Option<Timestamp>,
    /// What is wrong.
    pub what: String,
}

impl Problem {
    fn at(header: &BatchHeader, what: String) -> Self {
        Problem {
            batch: Some(header.number),
            time_range: header.time_range(),
            committed_at: Some(header.committed_at),
            what,
        }
    }

    fn bare(batch: Option<u64>, what: String) -> Self {
        Problem {
            batch,
            time_range: None,
            committed_at: None,
            what,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(batch) = self.batch {
            write!(f, "batch {batch}")?;
            match (self.time_range, self.committed_at) {
                (Some((first, last)), Some(at)) => {
                    write!(f, " (items {first} to {last}, committed {at})")?
                }
                (None, Some(at)) => write!(f, " (committed {at})")?,
                _ => {}
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.what)
    }
}

/// What [`Store::verify`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Batches that verified, from batch 0.
    pub batches: u64,
    /// Items whose hashes were recomputed.
    pub items: Counts,
    /// Items the chain records that retention has removed (their roots still chain).
    pub pruned: Counts,
    /// The recorded head.
    pub head: Option<Head>,
    /// The batch whose hash is the expected head, when one was given and found.
    pub anchor: Option<u64>,
    /// The first problem, if any. Verification stops there.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// Whether everything verified.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

impl Store {
    /// Walks the whole chain from batch 0 and reports the first altered or missing batch.
    ///
    /// With `expect_head` (a head printed after an earlier ingest and kept elsewhere) it also
    /// checks that some batch has exactly that hash: the chain up to that point is the one that
    /// was anchored. Without an anchor, a chain rewritten from its start by someone with write
    /// access to the file verifies; see the crate documentation.
    pub fn verify(&self, expect_head: Option<Hash>) -> Result<VerifyReport, StoreError> {
        let txn = self.read()?;
        let mut report = walk(&txn, 0, expect_head)?;
        if report.problem.is_none() {
            if let Some(expected) = expect_head.filter(|_| report.anchor.is_none()) {
                report.problem = Some(Problem::bare(
                    None,
                    format!(
                        "no batch has the expected head {expected}: the chain was rewritten or \
                         truncated after that head was recorded"
                    ),
                ));
            }
        }
        Ok(report)
    }

    /// Verifies the last batch, its link to the one before, and the recorded head: what a
    /// writer checks on open before appending.
    pub(crate) fn check_tail(&self) -> Result<Option<Problem>, StoreError> {
        let txn = self.read()?;
        let last = txn
            .open_table(BATCHES)?
            .last()?
            .map(|(number, _)| number.value());
        Ok(walk(&txn, last.unwrap_or(0), None)?.problem)
    }
}

/// Verifies batches from `start` to the end of the chain, then the head and stray items.
fn walk(
    txn: &ReadTransaction,
    start: u64,
    expect_head: Option<Hash>,
) -> Result<VerifyReport, StoreError> {
    let batches = txn.open_table(BATCHES)?;
    let pruned = txn.open_table(PRUNED)?;
    let mut report = VerifyReport {
        head: txn
            .open_table(META)?
            .get(HEAD_KEY)?
            .map(|v| decode_head(v.value()))
            .transpose()?,
        ..VerifyReport::default()
    };
    let mut prev: Option<BatchHeader> = None;
    if start > 0 {
        match batches
            .get(start - 1)?
            .map(|v| BatchHeader::decode(v.value()))
        {
            Some(Ok(header)) => prev = Some(header),
            Some(Err(err)) => {
                report.problem = Some(Problem::bare(
                    Some(start - 1),
                    format!("its header cannot be read ({})", err.0),
                ));
                return Ok(report);
            }
            None => {
                report.problem = Some(Problem::bare(Some(start - 1), "missing".into()));
                return Ok(report);
            }
        }
    }
    let mut expected = start;
    for entry in batches.range(start..)? {
        let (number, value) = entry?;
        let number = number.value();
        let header = match BatchHeader::decode(value.value()) {
            Ok(header) if number == expected => header,
            Ok(_) => {
                report.problem = Some(Problem::bare(
                    Some(expected),
                    format!("missing: the chain goes on at batch {number}"),
                ));
                return Ok(report);
            }
            Err(err) => {
                report.problem = Some(Problem::bare(
                    Some(number),
                    format!("its header cannot be read ({})", err.0),
                ));
                return Ok(report);
            }
        };
        if let Some(problem) = check_batch(txn, &header, prev.as_ref(), &pruned, &mut report)? {
            report.problem = Some(problem);
            return Ok(report);
        }
        if expect_head == Some(header.hash) {
            report.anchor = Some(number);
        }
        report.batches += 1;
        expected = number + 1;
        prev = Some(header);
    }
    report.problem = check_end(txn, prev.as_ref(), report.head)?;
    Ok(report)
}

/// Checks one batch: its header's hash, its link, and each content not removed by retention.
fn check_batch(
    txn: &ReadTransaction,
    header: &BatchHeader,
    prev: Option<&BatchHeader>,
    pruned: &impl ReadableTable<u64, u8>,
    report: &mut VerifyReport,
) -> Result<Option<Problem>, StoreError> {
    if header.compute_hash() != header.hash {
        return Ok(Some(Problem::at(
            header,
            "its header was altered: it does not hash to its recorded hash".into(),
        )));
    }
    let prev_hash = prev.map_or(Hash::ZERO, |p| p.hash);
    if header.prev != prev_hash {
        return Ok(Some(match prev {
            Some(prev) => Problem::at(
                prev,
                format!(
                    "altered or replaced: batch {} was chained to a different batch {}",
                    header.number, prev.number
                ),
            ),
            None => Problem::at(header, "it does not start the chain".into()),
        }));
    }
    let bits = pruned.get(header.number)?.map_or(0, |v| v.value());
    for content in Content::ALL {
        let section = header.section(content);
        if bits & content.bit() != 0 {
            *report.pruned.get_mut(content) += u64::from(section.count);
            continue;
        }
        if let Some(what) = check_items(txn, header, content)? {
            return Ok(Some(Problem::at(header, what)));
        }
        *report.items.get_mut(content) += u64::from(section.count);
    }
    Ok(None)
}

/// Recomputes a content's root from the stored items; what is wrong, if anything.
fn check_items(
    txn: &ReadTransaction,
    header: &BatchHeader,
    content: Content,
) -> Result<Option<String>, StoreError> {
    let number = header.number;
    let section = header.section(content);
    let loc = txn.open_table(content.loc())?;
    let items = txn.open_table(content.items())?;
    let identity_numbers = txn.open_table(IDENTITY_NO)?;
    let name = content.as_str();
    let mut root = RootHasher::new();
    let mut count = 0u32;
    for entry in loc.range((number, 0)..=(number, u32::MAX))? {
        let (at, key) = entry?;
        let seq = at.value().1;
        let (no, time, natural) = key.value();
        if seq != count {
            return Ok(Some(format!("{name} item {count} is missing")));
        }
        let Some(value) = items.get((no, time, natural))? else {
            return Ok(Some(format!("{name} item {seq} is missing")));
        };
        let value = value.value();
        root.item(seq, value);
        let head = match item_head(content, value) {
            Ok(head) => head,
            Err(err) => {
                return Ok(Some(format!(
                    "{name} item {seq} was altered: it cannot be read ({})",
                    err.0
                )))
            }
        };
        let filed_under = identity_numbers
            .get(head.identity.as_ref())?
            .map(|v| v.value());
        if head.time != time || head.key != natural || filed_under != Some(no) {
            return Ok(Some(format!(
                "{name} item {seq} is filed under another identity or time than it states"
            )));
        }
        count += 1;
    }
    if count != section.count {
        return Ok(Some(format!(
            "{count} {name} are stored but the chain records {}: items are missing",
            section.count
        )));
    }
    if root.finish() != section.root {
        return Ok(Some(format!(
            "its {name} were altered: they do not hash to the root the chain records"
        )));
    }
    Ok(None)
}

/// Checks that the recorded head is the last batch and that no items lie beyond it.
fn check_end(
    txn: &ReadTransaction,
    last: Option<&BatchHeader>,
    head: Option<Head>,
) -> Result<Option<Problem>, StoreError> {
    let consistent = match (head, last) {
        (None, None) => true,
        (Some(head), Some(last)) => head.batch == last.number && head.hash == last.hash,
        _ => false,
    };
    if !consistent {
        return Ok(Some(match (head, last) {
            (Some(head), last) if last.is_none_or(|l| head.batch > l.number) => {
                let missing = last.map_or(0, |l| l.number + 1);
                Problem::bare(
                    Some(missing),
                    format!(
                        "missing: the recorded head is batch {} but the chain ends before \
                         batch {missing}",
                        head.batch
                    ),
                )
            }
            (_, Some(last)) => Problem::at(
                last,
                "the recorded head does not name this last batch and its hash".into(),
            ),
            (_, None) => Problem::bare(None, "a head is recorded but no batch is stored".into()),
        }));
    }
    let end = last.map(|l| l.number);
    for content in Content::ALL {
        let loc = txn.open_table(content.loc())?;
        let items = txn.open_table(content.items())?.len()?;
        if items != loc.len()? {
            return Ok(Some(Problem::bare(
                None,
                format!(
                    "{items} {} are stored but {} are placed in batches: items were added \
                     outside the chain",
                    content.as_str(),
                    loc.len()?
                ),
            )));
        }
        let last_batch = loc.last()?.map(|(key, _)| key.value().0);
        if let Some(batch) = last_batch {
            if end.is_none_or(|end| batch > end) {
                return Ok(Some(Problem::bare(
                    Some(batch),
                    format!(
                        "{} are stored for batch {batch}, which the chain does not hold",
                        content.as_str()
                    ),
                )));
            }
        }
    }
    Ok(None)
}
