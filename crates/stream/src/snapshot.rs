//! Profile snapshots: a partition's identity profiles, kept in the JetStream object store when
//! the partition changes hands.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "NHIWSNAP"
//!      8     4  format version, little-endian u32 (1)
//!     12     4  partition, little-endian u32
//!     16     8  stream sequence the profiles have learned up to, little-endian u64
//!     24     …  the profiles: an nhiwatch baseline (nhiwatch_baseline::Baseline::to_bytes,
//!               which carries its own version and checksum)
//! ```
//!
//! The object store chunks large objects, so a partition of many identities is not limited by
//! the server's message size.

use async_nats::jetstream::object_store::{GetErrorKind, ObjectStore};
use nhiwatch_baseline::Baseline;
use tokio::io::AsyncReadExt;

use crate::StreamError;

const MAGIC: &[u8; 8] = b"NHIWSNAP";
const VERSION: u32 = 1;
const HEADER: usize = 24;

/// The object holding a partition's profiles.
pub fn object_name(partition: u32) -> String {
    format!("partition-{partition:04}")
}

/// Encodes a snapshot of `baseline` for `partition`, learned up to stream sequence `seq`.
pub fn encode(partition: u32, seq: u64, baseline: &Baseline) -> Result<Vec<u8>, StreamError> {
    let body = baseline.to_bytes().map_err(|err| StreamError::Snapshot {
        partition,
        reason: err.to_string(),
    })?;
    let mut bytes = Vec::with_capacity(HEADER + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&partition.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Decodes a snapshot: the profiles and the stream sequence they have learned up to.
pub fn decode(partition: u32, bytes: &[u8]) -> Result<(Baseline, u64), StreamError> {
    let bad = |reason: String| StreamError::Snapshot { partition, reason };
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(bad("not an nhiwatch profile snapshot".into()));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != VERSION {
        return Err(bad(format!(
            "snapshot format version {version}, this nhiwatch reads {VERSION}"
        )));
    }
    let stored = word(12);
    if stored != partition {
        return Err(bad(format!("the object holds partition {stored}")));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[16..24]);
    let name = format!("profiles of partition {partition}");
    let baseline =
        Baseline::from_bytes(&bytes[HEADER..], &name).map_err(|err| bad(err.to_string()))?;
    Ok((baseline, u64::from_le_bytes(seq)))
}

/// Reads a partition's snapshot; `None` when there is none.
pub async fn load(
    store: &ObjectStore,
    partition: u32,
) -> Result<Option<(Baseline, u64)>, StreamError> {
    let name = object_name(partition);
    let mut object = match store.get(&name).await {
        Ok(object) => object,
        Err(err) if err.kind() == GetErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(StreamError::nats(
                format!("cannot read the object {name}"),
                err,
            ))
        }
    };
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|err| StreamError::nats(format!("cannot read the object {name}"), err))?;
    decode(partition, &bytes).map(Some)
}

/// Writes a partition's snapshot, replacing the previous one.
pub async fn save(store: &ObjectStore, partition: u32, bytes: &[u8]) -> Result<(), StreamError> {
    let name = object_name(partition);
    let mut reader = bytes;
    store
        .put(name.as_str(), &mut reader)
        .await
        .map_err(|err| StreamError::nats(format!("cannot write the object {name}"), err))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhiwatch_baseline::Learner;
    use nhiwatch_model::Event;

    #[test]
    fn round_trips_and_refuses_another_partition() {
        let line = r#"{"id":"e1","time":"2026-03-02T10:00:00Z","source":"cloudtrail","identity":{"id":"arn:aws:iam::1:role/r","kind":"role"},"action":"s3:GetObject","action_class":"read","outcome":"success","raw":{}}"#;
        let event: Event<'_> = serde_json::from_str(line).unwrap();
        let mut learner = Learner::new();
        learner.observe(&event);
        let baseline = learner.finish();
        let bytes = encode(3, 41, &baseline).unwrap();
        let (back, seq) = decode(3, &bytes).unwrap();
        assert_eq!(seq, 41);
        assert_eq!(back.len(), 1);
        assert!(back.get("arn:aws:iam::1:role/r").is_some());
        let err = decode(4, &bytes).unwrap_err().to_string();
        assert!(err.contains("holds partition 3"), "{err}");
        let err = decode(3, &bytes[..30]).unwrap_err().to_string();
        assert!(err.contains("partition 3"), "{err}");
    }
}
