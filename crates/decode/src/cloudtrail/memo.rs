//! Identities already resolved, by the exact text of their `userIdentity` object.
//!
//! A role session, a user's key or a service makes many calls in a row, and CloudTrail writes
//! the same `userIdentity` object, byte for byte, into the record of each (the OTRF
//! exfiltration set: 4 distinct objects in 103 records). That object is close to half of a
//! record's bytes, and reading it and resolving the identity is a good part of decoding one;
//! comparing the next bytes with an object read before costs a few nanoseconds.
//!
//! Identical bytes read identically, so a hit is exact: the object ends where the remembered one
//! ended, it was validated when first read (at the same depth, a record's top level), and its
//! identity resolves as it did then. What the identity takes from the rest of the call (whether
//! an IAM user acts through the console) is decided per record by the caller.

use std::borrow::Cow;

use nhiwatch_model::{Identity, IdentityKind, Text};

use super::Resolved;

/// Remembered objects. Direct-mapped: a record's object goes to the slot its first bytes
/// choose.
const SLOTS: usize = 128;
/// How many of an object's first bytes choose its slot. They hold its type and principal id
/// (`{"type":"AssumedRole","principalId":"AROA…:session",…`), which tell sessions apart.
/// Shorter objects are not remembered: they are cheap to read.
const PREFIX: usize = 128;

/// The memo of one decoder.
#[derive(Default)]
pub(super) struct IdentityMemo {
    /// Empty until the first object is read, then [`SLOTS`] long.
    slots: Vec<Slot>,
}

impl std::fmt::Debug for IdentityMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remembered = self.slots.iter().filter(|s| s.remembered.is_some()).count();
        f.debug_struct("IdentityMemo")
            .field("remembered", &remembered)
            .finish()
    }
}

/// One slot. An object is copied in only when its first bytes come to the slot a second time
/// in a row (the `seen` fingerprint): objects that never recur (every call a new session)
/// cost a hash and a compare, not a copy, and do not push out one that recurs.
#[derive(Default)]
struct Slot {
    /// The full hash of the first bytes of the object last read for this slot.
    seen: u64,
    remembered: Option<Remembered>,
}

/// One object and what it resolved to.
struct Remembered {
    /// Reused for the next object the slot holds.
    text: String,
    resolved: Kept,
}

/// A [`Resolved`] without a lifetime: texts as spans of the object's text.
struct Kept {
    id: KeptText,
    kind: IdentityKind,
    session: Option<KeptText>,
    credential: Option<KeptText>,
    partition: &'static str,
    account: Option<KeptText>,
    iam_user: bool,
}

/// A text of a resolved identity: a span of the object's text (what a later identical object
/// lends from its own bytes), or a text made when resolving (an ARN composed from parts, an
/// unescaped string).
enum KeptText {
    Span { start: usize, len: usize },
    Made(Box<str>),
}

impl KeptText {
    fn keep(text: &str, object: &str) -> Self {
        let offset = (text.as_ptr() as usize).wrapping_sub(object.as_ptr() as usize);
        if offset <= object.len() && text.len() <= object.len() - offset {
            KeptText::Span {
                start: offset,
                len: text.len(),
            }
        } else {
            KeptText::Made(text.into())
        }
    }

    fn lend<'a>(&self, object: &'a str) -> Text<'a> {
        match self {
            KeptText::Span { start, len } => {
                Cow::Borrowed(object.get(*start..start + len).unwrap_or_default())
            }
            KeptText::Made(text) => Cow::Owned(text.to_string()),
        }
    }
}

/// Where an object not recalled would be remembered: what [`IdentityMemo::recall`] found, for
/// [`IdentityMemo::remember`] to use without hashing again.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Probe {
    /// The slot and the full hash of the object's first bytes; `None` for a short object.
    place: Option<(usize, u64)>,
}

impl IdentityMemo {
    /// When `rest` starts with an object remembered: its length and its resolution, with texts
    /// borrowed from `rest`; otherwise where the object would be remembered.
    #[inline]
    pub(super) fn recall<'a>(&self, rest: &'a str) -> Result<(usize, Resolved<'a>), Probe> {
        let place = slot_of(rest);
        let miss = Probe { place };
        let (slot, _) = place.ok_or(miss)?;
        let remembered = self
            .slots
            .get(slot)
            .and_then(|slot| slot.remembered.as_ref())
            .ok_or(miss)?;
        let len = remembered.text.len();
        let object = rest
            .get(..len)
            .filter(|o| *o == remembered.text)
            .ok_or(miss)?;
        let kept = &remembered.resolved;
        let resolved = Resolved {
            identity: Identity {
                id: kept.id.lend(object),
                kind: kept.kind,
                session: kept.session.as_ref().map(|t| t.lend(object)),
                credential: kept.credential.as_ref().map(|t| t.lend(object)),
            },
            partition: kept.partition,
            account: kept.account.as_ref().map(|t| t.lend(object)),
            iam_user: kept.iam_user,
        };
        Ok((len, resolved))
    }

    /// Notes that the object `text` (a whole `userIdentity` object, read and validated at a
    /// record's top level, that [`IdentityMemo::recall`] probed) resolved to `resolved`,
    /// remembering it when its slot saw its first bytes last time too.
    pub(super) fn remember(&mut self, text: &str, probe: Probe, resolved: &Resolved<'_>) {
        let Some((slot, hash)) = probe.place else {
            return;
        };
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, Slot::default);
        }
        let Some(slot) = self.slots.get_mut(slot) else {
            return;
        };
        if std::mem::replace(&mut slot.seen, hash) != hash {
            return;
        }
        let identity = &resolved.identity;
        let keep = |t: &Text<'_>| KeptText::keep(t, text);
        let kept = Kept {
            id: keep(&identity.id),
            kind: identity.kind,
            session: identity.session.as_ref().map(keep),
            credential: identity.credential.as_ref().map(keep),
            partition: resolved.partition,
            account: resolved.account.as_ref().map(keep),
            iam_user: resolved.iam_user,
        };
        match &mut slot.remembered {
            Some(entry) => {
                entry.text.clear();
                entry.text.push_str(text);
                entry.resolved = kept;
            }
            empty => {
                *empty = Some(Remembered {
                    text: text.to_owned(),
                    resolved: kept,
                })
            }
        }
    }
}

/// The slot chosen by the first [`PREFIX`] bytes of `text`, and their full hash; `None` when
/// `text` is shorter. Four words are mixed at a time, in independent lanes, so that the
/// multiplies overlap.
#[inline]
fn slot_of(text: &str) -> Option<(usize, u64)> {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let prefix = text.as_bytes().first_chunk::<PREFIX>()?;
    let mut lanes = [0u64; 4];
    for words in prefix.chunks_exact(32) {
        for (lane, word) in lanes.iter_mut().zip(words.chunks_exact(8)) {
            let word = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or_default());
            *lane = (lane.rotate_left(5) ^ word).wrapping_mul(K);
        }
    }
    let hash = lanes.into_iter().fold(0u64, |hash, lane| {
        (hash.rotate_left(5) ^ lane).wrapping_mul(K)
    });
    // The multiply leaves its best-mixed bits at the top.
    Some(((hash >> (64 - SLOTS.trailing_zeros())) as usize, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT: &str = r#"{"type":"AssumedRole","principalId":"AROAEXAMPLE:build-42","arn":"arn:aws:sts::111122223333:assumed-role/deployer/build-42","accountId":"111122223333","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::111122223333:role/deployer"}}}"#;

    fn resolved(object: &str) -> Resolved<'_> {
        let issuer = object.find("arn:aws:iam").expect("an issuer ARN");
        let end = issuer + object[issuer..].find('"').expect("a closing quote");
        Resolved {
            identity: Identity {
                id: Cow::Borrowed(&object[issuer..end]),
                kind: IdentityKind::Role,
                session: Some(Cow::Borrowed("build-42")),
                credential: None,
                // Made while resolving: kept as a copy.
            },
            partition: "aws",
            account: Some(Cow::Owned("111122223333".to_owned())),
            iam_user: false,
        }
    }

    #[test]
    fn only_the_same_bytes_are_recalled() {
        let mut memo = IdentityMemo::default();
        let probe = memo.recall(OBJECT).expect_err("nothing remembered yet");
        memo.remember(OBJECT, probe, &resolved(OBJECT));
        let probe = memo
            .recall(OBJECT)
            .expect_err("remembered on the second sighting");
        memo.remember(OBJECT, probe, &resolved(OBJECT));

        let record = format!("{OBJECT},\"eventTime\":\"2024-05-01T08:00:00Z\"}}");
        let (len, recalled) = memo.recall(&record).expect("the same object");
        assert_eq!(len, OBJECT.len());
        assert_eq!(
            recalled.identity.id,
            "arn:aws:iam::111122223333:role/deployer"
        );
        assert!(
            matches!(&recalled.identity.id, Cow::Borrowed(id) if record.as_ptr() < id.as_ptr()),
            "the id is lent by the record being read"
        );
        assert_eq!(recalled.identity.session.as_deref(), Some("build-42"));
        assert_eq!(recalled.account.as_deref(), Some("111122223333"));

        // One byte different, anywhere (within the first bytes or after them), or cut short.
        let other_session = OBJECT.replace("build-42", "build-43");
        let other_issuer = OBJECT.replace("role/deployer\"", "role/deployes\"");
        assert!(memo.recall(&other_session).is_err());
        assert!(memo.recall(&other_issuer).is_err());
        assert!(memo.recall(&OBJECT[..OBJECT.len() - 1]).is_err());
    }

    #[test]
    fn short_objects_are_not_remembered() {
        let short = r#"{"type":"AWSService","invokedBy":"ec2.amazonaws.com"}"#;
        let mut memo = IdentityMemo::default();
        for _ in 0..3 {
            let probe = memo.recall(short).expect_err("a short object is read");
            memo.remember(short, probe, &resolved(OBJECT));
        }
    }
}
