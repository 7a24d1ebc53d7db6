//! A set of profiles, one per identity, and its file format.
//!
//! ## File format
//!
//! ```text
//! offset  size  field
//!      0     8  magic  "NHIWBASE"
//!      8     4  format version, little-endian u32 (FORMAT_VERSION)
//!     12     8  payload length in bytes, little-endian u64
//!     20    16  the first 16 bytes of the payload's BLAKE3 hash
//!     36     …  payload: postcard (serde, varint-encoded) of the action names and the
//!               (identity id, profile) pairs, sorted by identity id
//! ```
//!
//! postcard writes integers as varints and nothing else besides the values, so a profile costs
//! about what its counts need (a typical identity: 1-4 KiB); the checksum turns any corruption
//! into a clear error instead of a wrong baseline, and the version refuses files another
//! format wrote. Keys inside profiles are [`crate::hash`] keys, stable across processes, so
//! files written by separate learners merge ([`Baseline::merge`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::peer;
use crate::profile::Profile;

/// The first bytes of every baseline file.
pub const MAGIC: [u8; 8] = *b"NHIWBASE";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 36;

/// Why a baseline could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not start with the baseline magic.
    #[error("{origin}: not an nhiwatch baseline (it does not start with \"NHIWBASE\"); write one with `nhiwatch learn`")]
    NotABaseline {
        /// The file.
        origin: String,
    },
    /// The file was written in another format version.
    #[error("{origin}: baseline format version {found}, but this nhiwatch reads version {expected}; learn it again with `nhiwatch learn`")]
    Version {
        /// The file.
        origin: String,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The file is shorter or longer than its header says.
    #[error("{origin}: baseline is truncated or padded: the header announces {expected} payload bytes, the file has {found}")]
    Length {
        /// The file.
        origin: String,
        /// Payload bytes the header announces.
        expected: u64,
        /// Payload bytes present.
        found: u64,
    },
    /// The baseline could not be encoded.
    #[error("cannot encode the baseline: {0}")]
    Encode(String),
    /// The payload does not match its checksum, or does not decode.
    #[error("{origin}: baseline is corrupted: {reason}")]
    Corrupted {
        /// The file.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// The payload as read back.
#[derive(Deserialize)]
struct Payload {
    actions: Vec<(u64, String)>,
    identities: Vec<(String, Profile)>,
}

/// The payload as written: the same encoding as [`Payload`], borrowed from the baseline, so
/// that writing does not copy every profile.
#[derive(Serialize)]
struct PayloadRef<'a> {
    actions: Vec<(u64, &'a str)>,
    identities: Vec<(&'a str, &'a Profile)>,
}

/// Profiles by identity id, and the names of the actions their keys stand for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    ids: Vec<String>,
    profiles: Vec<Profile>,
    index: FxHashMap<String, u32>,
    actions: BTreeMap<u64, String>,
}

impl Baseline {
    /// An empty baseline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Identities held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no identity is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The slot of an identity's profile.
    #[inline]
    pub fn find(&self, identity: &str) -> Option<usize> {
        self.index.get(identity).map(|&i| i as usize)
    }

    /// The slot of an identity's profile, made empty if it has none.
    #[inline]
    pub fn insert(&mut self, identity: &str) -> usize {
        if let Some(i) = self.find(identity) {
            return i;
        }
        let i = self.ids.len();
        self.ids.push(identity.to_owned());
        self.profiles.push(Profile::default());
        self.index.insert(identity.to_owned(), i as u32);
        i
    }

    /// The identity id of a slot.
    pub fn id(&self, slot: usize) -> &str {
        &self.ids[slot]
    }

    /// The profile in a slot.
    #[inline]
    pub fn profile(&self, slot: usize) -> &Profile {
        &self.profiles[slot]
    }

    /// The profile in a slot, to update.
    #[inline]
    pub fn profile_mut(&mut self, slot: usize) -> &mut Profile {
        &mut self.profiles[slot]
    }

    /// The profile of an identity.
    pub fn get(&self, identity: &str) -> Option<&Profile> {
        self.find(identity).map(|i| &self.profiles[i])
    }

    /// Every (identity, profile), in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Profile)> {
        self.ids.iter().map(String::as_str).zip(&self.profiles)
    }

    /// Records the name behind an action key (for explanations).
    #[inline]
    pub fn name_action(&mut self, key: u64, name: &str) {
        self.actions.entry(key).or_insert_with(|| name.to_owned());
    }

    /// The name behind an action key.
    pub fn action_name(&self, key: u64) -> Option<&str> {
        self.actions.get(&key).map(String::as_str)
    }

    /// Adds `other`: profiles of the same identity merge ([`Profile::merge`]), others are
    /// added. Merging baselines learned on disjoint event sets gives the baseline of their
    /// union; the order of merges does not matter.
    pub fn merge(&mut self, other: &Baseline) {
        for (id, profile) in other.iter() {
            let slot = self.insert(id);
            self.profiles[slot].merge(profile);
        }
        for (key, name) in &other.actions {
            self.name_action(*key, name);
        }
    }

    /// Profiles of peer groups ([`peer::group_of`]) with at least two members, each the merge
    /// of its members' profiles.
    pub fn peers(&self) -> Peers {
        let mut groups: BTreeMap<String, (Profile, u32)> = BTreeMap::new();
        for (id, profile) in self.iter() {
            if let Some(group) = peer::group_of(id) {
                let entry = groups
                    .entry(group)
                    .or_insert_with(|| (Profile::default(), 0));
                entry.0.merge(profile);
                entry.1 += 1;
            }
        }
        Peers {
            groups: groups
                .into_iter()
                .filter(|(_, (_, members))| *members >= 2)
                .map(|(name, (profile, members))| (name, profile, members))
                .collect(),
        }
    }

    /// Bytes held by the profiles (inline and heap), for the memory target.
    pub fn profile_bytes(&self) -> usize {
        self.profiles.iter().map(Profile::bytes).sum()
    }

    /// Gives back spare capacity in every profile.
    pub fn shrink(&mut self) {
        for profile in &mut self.profiles {
            profile.shrink();
        }
    }

    /// The file's bytes (see the module documentation).
    pub fn to_bytes(&self) -> Result<Vec<u8>, BaselineError> {
        let mut identities: Vec<(&str, &Profile)> = self
            .ids
            .iter()
            .map(String::as_str)
            .zip(&self.profiles)
            .collect();
        identities.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let payload = PayloadRef {
            actions: self.actions.iter().map(|(k, v)| (*k, v.as_str())).collect(),
            identities,
        };
        let body = postcard::to_allocvec(&payload)
            .map_err(|err| BaselineError::Encode(err.to_string()))?;
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&blake3::hash(&body).as_bytes()[..16]);
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }

    /// Reads a baseline from its file's bytes; `origin` names the file in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Baseline, BaselineError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(BaselineError::NotABaseline {
                origin: origin.to_owned(),
            });
        }
        if bytes.len() < HEADER {
            return Err(BaselineError::Length {
                origin: origin.to_owned(),
                expected: HEADER as u64,
                found: bytes.len() as u64,
            });
        }
        let word = |range: std::ops::Range<usize>| -> u64 {
            let mut buf = [0u8; 8];
            buf[..range.len()].copy_from_slice(&bytes[range]);
            u64::from_le_bytes(buf)
        };
        let version = word(8..12) as u32;
        if version != FORMAT_VERSION {
            return Err(BaselineError::Version {
                origin: origin.to_owned(),
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        let length = word(12..20);
        let body = &bytes[HEADER..];
        if body.len() as u64 != length {
            return Err(BaselineError::Length {
                origin: origin.to_owned(),
                expected: length,
                found: body.len() as u64,
            });
        }
        if blake3::hash(body).as_bytes()[..16] != bytes[20..36] {
            return Err(BaselineError::Corrupted {
                origin: origin.to_owned(),
                reason: "the payload does not match its checksum".into(),
            });
        }
        let payload: Payload =
            postcard::from_bytes(body).map_err(|err| BaselineError::Corrupted {
                origin: origin.to_owned(),
                reason: format!("the payload does not decode: {err}"),
            })?;
        let mut baseline = Baseline::new();
        for (key, name) in payload.actions {
            baseline.actions.insert(key, name);
        }
        for (id, profile) in payload.identities {
            if !profile.is_valid() {
                return Err(BaselineError::Corrupted {
                    origin: origin.to_owned(),
                    reason: format!("the profile of {id} is malformed"),
                });
            }
            if baseline.find(&id).is_some() {
                return Err(BaselineError::Corrupted {
                    origin: origin.to_owned(),
                    reason: format!("{id} appears twice"),
                });
            }
            let slot = baseline.insert(&id);
            baseline.profiles[slot] = profile;
        }
        Ok(baseline)
    }

    /// Writes the file atomically ([`write_atomically`]: a reader or a crash never finds half
    /// a baseline); returns its size in bytes.
    pub fn save(&self, path: &Path) -> Result<u64, BaselineError> {
        let bytes = self.to_bytes()?;
        write_atomically(path, &bytes).map_err(|source| BaselineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(bytes.len() as u64)
    }

    /// Reads a file written by [`Baseline::save`].
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let bytes = std::fs::read(path).map_err(|source| BaselineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Baseline::from_bytes(&bytes, &path.display().to_string())
    }
}

/// Merged profiles of peer groups, sorted by group name.
#[derive(Clone, Debug, Default)]
pub struct Peers {
    groups: Vec<(String, Profile, u32)>,
}

impl Peers {
    /// The slot of a group.
    pub fn find(&self, group: &str) -> Option<usize> {
        self.groups
            .binary_search_by(|g| g.0.as_str().cmp(group))
            .ok()
    }

    /// A group's name, merged profile and member count.
    pub fn get(&self, slot: usize) -> (&str, &Profile, u32) {
        let (name, profile, members) = &self.groups[slot];
        (name, profile, *members)
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Writes `bytes` to `path` so that no reader and no crash ever finds part of them: a temporary
/// file beside it (`PATH.tmp`) is written and fsynced, renamed over `path`, and the folder is
/// fsynced so that the rename itself is durable. The temporary file is removed on failure.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(err) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    sync_folder(path)
}

/// Makes a rename in `path`'s folder durable.
fn sync_folder(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::File::open(folder)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
