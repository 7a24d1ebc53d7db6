//! What the decode crate's integration tests share: where the corpus is, and reading input through
//! the public `Reader`.

// Each test crate uses what it needs of this module.
#![allow(dead_code)]

use nhiwatch_decode::{ReadOptions, Reader, Reject, Sinks};
use nhiwatch_model::Event;

/// The corpus of telemetry written by others, beside the repository.
pub const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus");

/// Everything a reader makes of some input, in input order, held-back stages included.
pub struct Read {
    pub events: Vec<Event<'static>>,
    pub rejects: Vec<Reject>,
}

/// Runs `feed` on a reader with default options and collects what it makes.
pub fn read(feed: impl FnOnce(&mut Reader, &mut Sinks<'_>)) -> Read {
    let mut events = Vec::new();
    let mut rejects = Vec::new();
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut sinks = Sinks {
        event: &mut |event| events.push(event.into_owned()),
        reject: &mut |reject| rejects.push(reject),
    };
    feed(&mut reader, &mut sinks);
    reader.finish(&mut sinks);
    Read { events, rejects }
}
