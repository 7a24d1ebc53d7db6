//! Partitions: which partition an identity's events belong to, which partitions a worker may
//! own, and which live worker owns each one.
//!
//! ## The partition function (stable: never change it)
//!
//! ```text
//! h = first 8 bytes of BLAKE3(identity.id as UTF-8), read as a little-endian u64
//! partition = (h × P) >> 64            (P = the number of partitions, 1..=MAX_PARTITIONS)
//! ```
//!
//! BLAKE3 is a fixed specification (no seed, no per-process randomness, no library-version
//! drift), so every publisher and worker, in any process, of any nhiwatch version, sends an
//! identity to the same partition. The multiply-shift maps the hash onto `0..P` without the
//! bias of a modulo. Changing this function, or P for an existing stream, would move identities
//! between partitions and split their state; `tests::fixed_vectors` pins it.
//!
//! ## Ownership: rendezvous hashing
//!
//! Each partition is owned by the live worker with the highest score
//! `BLAKE3(worker name, 0x00, partition as u32 LE)` among the workers that may own it
//! ([`owner`]). When a worker joins, it takes from each other worker about 1/(W+1) of their
//! partitions, and nothing else moves; when one leaves, only its partitions move, spread over
//! the rest. No coordinator and no stored assignment: every worker computes the same answer
//! from the same member list.

use std::fmt;

/// Most partitions a stream may have.
pub const MAX_PARTITIONS: u32 = 4096;

/// The subjects events are published to: `nhiwatch.events.<partition>`.
pub const EVENTS_SUBJECT_PREFIX: &str = "nhiwatch.events";

/// The partition of an identity, out of `partitions` (see the module documentation). A
/// `partitions` of 0 is taken as 1.
pub fn partition_of(identity: &str, partitions: u32) -> u32 {
    let hash = blake3::hash(identity.as_bytes());
    let mut word = [0u8; 8];
    word.copy_from_slice(&hash.as_bytes()[..8]);
    let h = u64::from_le_bytes(word);
    ((u128::from(h) * u128::from(partitions.max(1))) >> 64) as u32
}

/// The subject of a partition's events.
pub fn subject(partition: u32) -> String {
    format!("{EVENTS_SUBJECT_PREFIX}.{partition}")
}

/// A worker's score for a partition; the highest score owns it.
pub fn score(worker: &str, partition: u32) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(worker.as_bytes());
    hasher.update(&[0]);
    hasher.update(&partition.to_le_bytes());
    let mut word = [0u8; 8];
    word.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(word)
}

/// The owner of `partition` among `workers` (rendezvous hashing; ties, which need equal
/// 64-bit scores, go to the smaller name). `None` when there is no worker.
pub fn owner<'w>(partition: u32, workers: impl IntoIterator<Item = &'w str>) -> Option<&'w str> {
    workers
        .into_iter()
        .map(|w| (score(w, partition), std::cmp::Reverse(w), w))
        .max()
        .map(|(_, _, w)| w)
}

/// A set of partitions, written `0-7`, `0-3,8,10-11` or `all`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionSet {
    /// Sorted, without repeats.
    members: Vec<u32>,
}

impl PartitionSet {
    /// Every partition of `0..partitions`.
    pub fn all(partitions: u32) -> Self {
        PartitionSet {
            members: (0..partitions).collect(),
        }
    }

    /// Parses `all`, or a comma-separated list of partitions and inclusive ranges, checking each
    /// against `partitions` (the stream's count).
    pub fn parse(text: &str, partitions: u32) -> Result<Self, String> {
        let text = text.trim();
        if text == "all" {
            return Ok(PartitionSet::all(partitions));
        }
        let number = |s: &str| -> Result<u32, String> {
            let n: u32 = s
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` in `{text}` is not a partition number"))?;
            if n >= partitions {
                return Err(format!(
                    "partition {n} in `{text}` does not exist: there are {partitions} (0-{})",
                    partitions.saturating_sub(1)
                ));
            }
            Ok(n)
        };
        let mut members = Vec::new();
        for part in text.split(',') {
            match part.split_once('-') {
                Some((from, to)) => {
                    let (from, to) = (number(from)?, number(to)?);
                    if from > to {
                        return Err(format!("range `{part}` in `{text}` runs backwards"));
                    }
                    members.extend(from..=to);
                }
                None => members.push(number(part)?),
            }
        }
        members.sort_unstable();
        members.dedup();
        if members.is_empty() {
            return Err("no partitions given".into());
        }
        Ok(PartitionSet { members })
    }

    /// Whether the set holds `partition`.
    pub fn contains(&self, partition: u32) -> bool {
        self.members.binary_search(&partition).is_ok()
    }

    /// The partitions, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.members.iter().copied()
    }

    /// How many partitions.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl FromIterator<u32> for PartitionSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut members: Vec<u32> = iter.into_iter().collect();
        members.sort_unstable();
        members.dedup();
        PartitionSet { members }
    }
}

impl fmt::Display for PartitionSet {
    /// Ranges, as [`PartitionSet::parse`] reads them: `0-3,8,10-11`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.members.len() {
            let start = self.members[i];
            let mut end = start;
            while i + 1 < self.members.len() && self.members[i + 1] == end + 1 {
                i += 1;
                end += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These values are the contract between publishers and workers of every version; if this
    /// test fails, the partition function changed and existing streams would be mis-routed.
    #[test]
    fn fixed_vectors() {
        let cases: [(&str, u32, u32); 6] = [
            ("arn:aws:iam::111122223333:role/ci-deployer", 12, 9),
            ("system:serviceaccount:payments:api", 12, 2),
            ("github-actions[bot]", 12, 7),
            ("agent:support-bot", 64, 25),
            // BLAKE3("") = af1349b9f5f9a1a6…: 0xa6a1f9f5b94913af × 12 >> 64 = 7.
            ("", 12, 7),
            ("arn:aws:iam::111122223333:role/ci-deployer", 1, 0),
        ];
        let got: Vec<(&str, u32, u32)> = cases
            .iter()
            .map(|&(id, p, _)| (id, p, partition_of(id, p)))
            .collect();
        assert_eq!(got, cases.to_vec());
    }

    #[test]
    fn spreads_identities_evenly() {
        let mut counts = [0u32; 12];
        for i in 0..12_000 {
            counts[partition_of(&format!("arn:aws:iam::1:role/r{i}"), 12) as usize] += 1;
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn rendezvous_moves_only_what_it_must() {
        let three = ["w-a", "w-b", "w-c"];
        let four = ["w-a", "w-b", "w-c", "w-d"];
        for p in 0..256 {
            let before = owner(p, three).unwrap();
            let after = owner(p, four).unwrap();
            assert!(
                after == before || after == "w-d",
                "partition {p} moved between old workers"
            );
        }
        assert_eq!(owner(3, []), None);
    }

    #[test]
    fn parses_and_prints_sets() {
        let set = PartitionSet::parse("8, 0-3,10-11,2", 12).unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(set.to_string(), "0-3,8,10-11");
        assert_eq!(PartitionSet::parse("all", 4).unwrap().to_string(), "0-3");
        assert!(PartitionSet::parse("0-12", 12)
            .unwrap_err()
            .contains("partition 12"));
        assert!(PartitionSet::parse("5-2", 12)
            .unwrap_err()
            .contains("backwards"));
        assert!(PartitionSet::parse("x", 12).unwrap_err().contains("`x`"));
    }
}
