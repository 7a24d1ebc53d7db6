//! Flip bytes of the database file itself, as an attacker or a failing disk would, and check
//! that `verify` names the batch.
//!
//! redb stores pages, not records: a stored event is somewhere inside a B-tree leaf page, and
//! copy-on-write may leave stale copies of it in free pages. The test writes a marker (a user
//! agent) that only batch 1's events carry, closes the store, flips one byte in *every* copy of
//! the marker in the file, and reopens. redb does not checksum leaf pages on an ordinary read
//! (only when it repairs after a crash), so the change reaches the store's own check: verify
//! must fail and name batch 1.

mod common;

use nhiwatch_store::{Batch, Options, Store};

const MARKER: &[u8] = b"marker-7f3a9c-batch-1";

fn store_with_marked_batch(dir: &std::path::Path) {
    let store = Store::open(dir, Options::default()).expect("open");
    let mut batch = Batch::new();
    for (number, agent) in [(0u64, "plain"), (1, "marker-7f3a9c-batch-1"), (2, "plain")] {
        for n in number * 100..number * 100 + 100 {
            batch.add_event(&common::event(n, agent));
        }
        let receipt = store.append(&mut batch).expect("append");
        assert_eq!(receipt.batch.map(|b| b.number), Some(number));
    }
    assert!(store.verify(None).expect("verify").ok());
}

#[test]
fn a_flipped_byte_in_the_file_fails_verify_naming_the_batch() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    store_with_marked_batch(dir.path());
    let path = dir.path().join(nhiwatch_store::FILE_NAME);
    let mut bytes = std::fs::read(&path).expect("read the file");
    let mut flipped = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(MARKER.len()).position(|w| w == MARKER) {
        let i = at + found + 3; // `k` of "marker" becomes `j`: still UTF-8, still a string
        bytes[i] ^= 0x01;
        flipped += 1;
        at = i;
    }
    assert!(
        flipped >= 100,
        "the marker is stored in each of batch 1's events"
    );
    std::fs::write(&path, &bytes).expect("write the file back");

    let store = Store::open_read_only(dir.path()).expect("redb opens the altered file");
    let report = store.verify(None).expect("verify runs");
    let problem = report.problem.expect("verify fails");
    assert_eq!(problem.batch, Some(1), "{problem}");
    assert!(problem.what.contains("events were altered"), "{problem}");
    assert_eq!(report.batches, 1, "batch 0 verified before the problem");
    drop(store);
    // A writer refuses to go on from such a chain... once the altered batch is the last one;
    // here batch 2 is last and intact, so the writer opens, and verify keeps failing.
    let store = Store::open(dir.path(), Options::default()).expect("the tail verifies");
    assert_eq!(
        store.verify(None).expect("verify").problem.map(|p| p.batch),
        Some(Some(1))
    );
}

#[test]
fn a_flipped_byte_in_the_last_batch_stops_the_writer() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    store_with_marked_batch(dir.path());
    // Append a batch carrying the marker last, then flip it.
    {
        let store = Store::open(dir.path(), Options::default()).expect("open");
        let mut batch = Batch::new();
        for n in 300..310 {
            batch.add_event(&common::event(n, "marker-7f3a9c-batch-1"));
        }
        store.append(&mut batch).expect("append");
    }
    let path = dir.path().join(nhiwatch_store::FILE_NAME);
    let mut bytes = std::fs::read(&path).expect("read the file");
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(MARKER.len()).position(|w| w == MARKER) {
        bytes[at + found + 3] ^= 0x01;
        at += found + 4;
    }
    std::fs::write(&path, &bytes).expect("write the file back");
    match Store::open(dir.path(), Options::default()) {
        Err(nhiwatch_store::StoreError::Broken(problem)) => {
            assert_eq!(problem.batch, Some(3), "{problem}")
        }
        Err(err) => panic!("expected the chain check to refuse, got {err}"),
        Ok(_) => panic!("a writer opened an altered chain"),
    }
}
