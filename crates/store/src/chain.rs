//! The hash chain: each committed batch's header names the hash of every content it holds and
//! the hash of the batch before it.
//!
//! ```text
//! root(content)  = BLAKE3("nhiwatch-store/content/v1" ‖ for each item in order: seq ‖ len ‖ value)
//! hash(batch n)  = BLAKE3("nhiwatch-store/batch/v1" ‖ n ‖ committed_at ‖ hash(batch n-1)
//!                         ‖ for each content: count ‖ root ‖ first time ‖ last time)
//! ```
//!
//! Batch 0 chains to the all-zero hash. The last batch's hash is the chain's *head*.

use std::fmt;
use std::str::FromStr;

use nhiwatch_model::Timestamp;
use serde::{Serialize, Serializer};

use crate::codec::{put_i64, put_u64, Corrupt, Reader};

/// A BLAKE3 hash, printed as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash batch 0 chains to.
    pub const ZERO: Hash = Hash([0; 32]);
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Hash {
    type Err = String;

    /// Parses 64 hex digits.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.len() != 64 || !text.is_ascii() {
            return Err(format!(
                "`{text}` is not a chain hash (64 hex digits expected)"
            ));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("`{text}` is not a chain hash (not hexadecimal)"))?;
        }
        Ok(Hash(out))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What a batch holds: every item belongs to one content, and each content has its own hash
/// root, count and time range in the batch header (so retention can drop one content of a batch
/// and keep its root in the chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// Normalised events with their raw records.
    Events,
    /// Findings.
    Findings,
    /// Risk history points.
    Risks,
    /// Identity profiles (opaque, versioned blobs).
    Profiles,
}

impl Content {
    /// Every content, in header order.
    pub const ALL: [Content; 4] = [
        Content::Events,
        Content::Findings,
        Content::Risks,
        Content::Profiles,
    ];

    /// Position in [`Content::ALL`] and in the header.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The plural noun for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Content::Events => "events",
            Content::Findings => "findings",
            Content::Risks => "risk points",
            Content::Profiles => "profiles",
        }
    }
}

/// One content's part of a batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Section {
    /// Items of this content in the batch.
    pub count: u32,
    /// Hash over the items (see the module documentation).
    pub root: Hash,
    /// Earliest item time (meaningless when `count` is 0).
    pub first: Timestamp,
    /// Latest item time (meaningless when `count` is 0).
    pub last: Timestamp,
}

/// Hashes a content's items in order into its root.
pub(crate) struct RootHasher(blake3::Hasher);

impl RootHasher {
    pub(crate) fn new() -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"nhiwatch-store/content/v1");
        RootHasher(hasher)
    }

    pub(crate) fn item(&mut self, seq: u32, value: &[u8]) {
        self.0.update(&seq.to_le_bytes());
        self.0.update(&(value.len() as u64).to_le_bytes());
        self.0.update(value);
    }

    pub(crate) fn finish(&self) -> Hash {
        Hash(*self.0.finalize().as_bytes())
    }
}

/// A committed batch: its place in the chain and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchHeader {
    /// Position in the chain, from 0, without gaps.
    pub number: u64,
    /// Wall-clock time of the commit.
    pub committed_at: Timestamp,
    /// Hash of the batch before (zero for batch 0).
    pub prev: Hash,
    /// Per content, in [`Content::ALL`] order.
    pub sections: [Section; 4],
    /// This batch's hash: over everything above.
    pub hash: Hash,
}

const HEADER_VERSION: u8 = 1;

impl BatchHeader {
    /// Builds a header and computes its hash.
    pub(crate) fn new(
        number: u64,
        committed_at: Timestamp,
        prev: Hash,
        sections: [Section; 4],
    ) -> Self {
        let mut header = BatchHeader {
            number,
            committed_at,
            prev,
            sections,
            hash: Hash::ZERO,
        };
        header.hash = header.compute_hash();
        header
    }

    /// The hash the header's fields give (equal to `hash` unless the header was altered).
    pub fn compute_hash(&self) -> Hash {
        let mut body = Vec::with_capacity(256);
        self.encode_body(&mut body);
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"nhiwatch-store/batch/v1");
        hasher.update(&body);
        Hash(*hasher.finalize().as_bytes())
    }

    /// The section of one content.
    pub fn section(&self, content: Content) -> &Section {
        &self.sections[content.index()]
    }

    /// Items in the batch, all contents.
    pub fn items(&self) -> u64 {
        self.sections.iter().map(|s| u64::from(s.count)).sum()
    }

    /// Earliest and latest item time over all contents, when the batch holds any.
    pub fn time_range(&self) -> Option<(Timestamp, Timestamp)> {
        self.sections
            .iter()
            .filter(|s| s.count > 0)
            .fold(None, |range, s| match range {
                None => Some((s.first, s.last)),
                Some((a, b)) => Some((a.min(s.first), b.max(s.last))),
            })
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(HEADER_VERSION);
        put_u64(out, self.number);
        put_i64(out, self.committed_at.0);
        out.extend_from_slice(&self.prev.0);
        for section in &self.sections {
            out.extend_from_slice(&section.count.to_le_bytes());
            out.extend_from_slice(&section.root.0);
            put_i64(out, section.first.0);
            put_i64(out, section.last.0);
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_body(&mut out);
        out.extend_from_slice(&self.hash.0);
        out
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader::new(value);
        r.expect_version(HEADER_VERSION)?;
        let number = r.u64()?;
        let committed_at = Timestamp(r.i64()?);
        let prev = Hash(r.array()?);
        let mut sections = [Section {
            count: 0,
            root: Hash::ZERO,
            first: Timestamp(0),
            last: Timestamp(0),
        }; 4];
        for section in &mut sections {
            section.count = r.u32()?;
            section.root = Hash(r.array()?);
            section.first = Timestamp(r.i64()?);
            section.last = Timestamp(r.i64()?);
        }
        let hash = Hash(r.array()?);
        if !r.rest().is_empty() {
            return Err(Corrupt("batch header has trailing bytes"));
        }
        Ok(BatchHeader {
            number,
            committed_at,
            prev,
            sections,
            hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_print_and_parse() {
        let hash = Hash([0xab; 32]);
        let text = hash.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<Hash>(), Ok(hash));
        assert!("xyz".parse::<Hash>().is_err());
        assert!("g".repeat(64).parse::<Hash>().is_err());
    }

    #[test]
    fn headers_round_trip_and_every_field_is_hashed() {
        let mut root = RootHasher::new();
        root.item(0, b"value");
        let section = Section {
            count: 1,
            root: root.finish(),
            first: Timestamp(5),
            last: Timestamp(9),
        };
        let empty = Section {
            count: 0,
            root: RootHasher::new().finish(),
            first: Timestamp(0),
            last: Timestamp(0),
        };
        let header = BatchHeader::new(
            3,
            Timestamp(77),
            Hash([1; 32]),
            [section, empty, empty, empty],
        );
        let bytes = header.encode();
        assert_eq!(BatchHeader::decode(&bytes), Ok(header.clone()));
        assert_eq!(header.time_range(), Some((Timestamp(5), Timestamp(9))));
        for i in 0..bytes.len() - 32 {
            let mut altered = bytes.clone();
            altered[i] ^= 1;
            if let Ok(decoded) = BatchHeader::decode(&altered) {
                assert_ne!(
                    decoded.compute_hash(),
                    decoded.hash,
                    "byte {i} is not hashed"
                );
            }
        }
        assert!(BatchHeader::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
