//! The usual lens's learned profiles across restarts.
//!
//! The engine learns every identity's profile while it judges (behind the poisoning guard). With
//! a data folder the server keeps what it learned in [`SNAPSHOT_FILE`] there, an ordinary
//! baseline file (`nhiwatch detect --baseline DIR/baseline.bin` and `nhiwatch learn --merge`
//! read it):
//!
//! - **written** every [`crate::Config::snapshot_every`] (default [`DEFAULT_SNAPSHOT_EVERY`])
//!   when the engine has judged something since the last one, and once more at a graceful
//!   shutdown (SIGTERM, Ctrl-C) after the engine has drained its queues. Between batches the
//!   engine thread copies the profiles and hands the copy to a writer thread (copying costs
//!   the engine about a tenth of what encoding would: with 100,000 identities, 0.3 s against
//!   3.7 s in a debug build); the writer encodes the copy, drops it, and puts the bytes in a
//!   temporary file, fsyncs it, renames it over the snapshot and fsyncs the folder
//!   ([`nhiwatch_baseline::write_atomically`]), so the file is always a whole snapshot, never part of one. The
//!   copy lives only until it is encoded, the bytes until they are written. A write still
//!   going on when the next is due makes that one wait for the following tick; a failed write
//!   is logged, counted in `/metrics`, and tried again at the next tick.
//!
//! Otherwise only the engine holds the profiles: the baseline it starts from moves into it (the
//! engine factory keeps no copy), and `/metrics` reads figures about snapshots, not profiles.
//! - **read** at start ([`starting_baseline`]). After a kill -9 the server comes back with the
//!   last periodic snapshot: what was learned after it is lost (the events themselves are in
//!   the evidence store).
//!
//! A snapshot that cannot be read (corrupted, truncated, or written by a build with another
//! baseline format) does not stop the server: it is moved aside to
//! `baseline.bin.unreadable-<unix seconds>`, a warning on standard error names both files and
//! the reason, `/metrics` shows `nhiwatch_baseline_snapshot_set_aside 1`, and the usual lens
//! starts without it (from `--baseline` if given), learning every identity again. Evidence
//! keeps flowing; the profiles can be rebuilt from the stored events (`nhiwatch export --data
//! DIR > events.jsonl`, `nhiwatch learn events.jsonl --out learned.bin`, then `--baseline`). A snapshot the operating system will not let the server read (say,
//! permissions) is a different matter: the server refuses to start and says so.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nhiwatch_baseline::{write_atomically, Baseline, Profile};
use nhiwatch_detect::Engine;

use crate::metrics::{Metrics, SnapshotWritten};
use crate::ServerError;

/// The snapshot's file name in the data folder.
pub const SNAPSHOT_FILE: &str = "baseline.bin";

/// How often the learned profiles are written by default.
pub const DEFAULT_SNAPSHOT_EVERY: Duration = Duration::from_secs(300);

/// The snapshot file of a data folder.
pub fn snapshot_path(data: &Path) -> PathBuf {
    data.join(SNAPSHOT_FILE)
}

/// Now, in whole seconds since the Unix epoch.
fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A snapshot found unreadable at start, and where it was moved.
#[derive(Debug)]
pub struct SetAside {
    /// The snapshot's place.
    pub from: PathBuf,
    /// Where it is now.
    pub to: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

impl std::fmt::Display for SetAside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the learned baseline {} cannot be read ({}); it was moved to {} and the usual lens starts without it, learning every identity again",
            self.from.display(),
            self.reason,
            self.to.display()
        )
    }
}

/// What the usual lens starts from.
#[derive(Debug, Default)]
pub struct Start {
    /// The profiles.
    pub baseline: Baseline,
    /// Identities whose profile came from the data folder's snapshot.
    pub from_snapshot: usize,
    /// Identities whose profile came from the given baseline file.
    pub from_file: usize,
    /// The snapshot, when it could not be read and was moved aside.
    pub set_aside: Option<SetAside>,
}

impl Start {
    /// One line for the log saying where the profiles came from; `None` when there are none.
    pub fn describe(&self, given: Option<&Path>, data: Option<&Path>) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(data) = data.filter(|_| self.from_snapshot > 0) {
            parts.push(format!(
                "{} from {}",
                self.from_snapshot,
                snapshot_path(data).display()
            ));
        }
        if let Some(given) = given.filter(|_| self.from_file > 0) {
            parts.push(format!("{} from {}", self.from_file, given.display()));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "the usual lens starts from the learned profiles of {} identities ({})",
                self.baseline.len(),
                parts.join(", ")
            )
        })
    }
}

/// The profiles the usual lens starts from: the snapshot in `data` (when there is one), and
/// the baseline file `given` (`--baseline`).
///
/// Per identity, the snapshot wins; `given` adds the identities the snapshot does not know.
/// (The snapshot already holds what the server started from last time, `given` included, plus
/// what it learned since: merging `given` in again would count its history twice.) To start
/// over from a new baseline file, stop the server and remove the snapshot.
///
/// Errors name the file: `given` unreadable (the messages of `nhiwatch detect --baseline`), or
/// a snapshot that cannot be read from disk or moved aside.
pub fn starting_baseline(given: Option<&Path>, data: Option<&Path>) -> Result<Start, ServerError> {
    let given = given
        .map(|path| Baseline::load(path).map_err(|e| ServerError::Baseline(e.to_string())))
        .transpose()?;
    let mut start = Start::default();
    let snapshot = match data {
        Some(data) => read_snapshot(&snapshot_path(data), &mut start)?,
        None => None,
    };
    start.baseline = match (given, snapshot) {
        (Some(mut given), Some(snapshot)) => {
            for (id, _) in snapshot.iter() {
                if let Some(slot) = given.find(id) {
                    *given.profile_mut(slot) = Profile::default();
                }
            }
            // An empty profile is what merging starts from: the snapshot's profile replaces
            // the given one, and the action names of both are kept.
            given.merge(&snapshot);
            start.from_file = given.len() - snapshot.len();
            start.from_snapshot = snapshot.len();
            given
        }
        (Some(given), None) => {
            start.from_file = given.len();
            given
        }
        (None, Some(snapshot)) => {
            start.from_snapshot = snapshot.len();
            snapshot
        }
        (None, None) => Baseline::new(),
    };
    Ok(start)
}

/// Reads the snapshot at `path`: `None` when there is none, or when it cannot be decoded (it
/// is then moved aside and `start.set_aside` says so).
fn read_snapshot(path: &Path, start: &mut Start) -> Result<Option<Baseline>, ServerError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(ServerError::Baseline(format!(
                "cannot read the learned baseline {}: {err}; make it readable, or move it away to start the usual lens without it",
                path.display()
            )))
        }
    };
    let err = match Baseline::from_bytes(&bytes, &path.display().to_string()) {
        Ok(baseline) => return Ok(Some(baseline)),
        Err(err) => err,
    };
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".unreadable-{}", unix_seconds()));
    let aside = PathBuf::from(aside);
    if let Err(rename) = std::fs::rename(path, &aside) {
        return Err(ServerError::Baseline(format!(
            "{err}; it cannot be moved aside to {}: {rename}; move or delete it and start again",
            aside.display()
        )));
    }
    start.set_aside = Some(SetAside {
        from: path.to_path_buf(),
        to: aside,
        reason: err.to_string(),
    });
    Ok(None)
}

/// Writes the engine's learned profiles to the data folder, driven from the engine thread: at
/// each [`Snapshots::tick`] when something was judged since the last snapshot, and at
/// [`Snapshots::finish`].
pub(crate) struct Snapshots {
    path: PathBuf,
    every: Duration,
    metrics: Arc<Metrics>,
    /// The write in progress; it answers whether it succeeded.
    writing: Option<JoinHandle<bool>>,
    /// The engine has judged something since the last snapshot was taken.
    changed: bool,
}

impl Snapshots {
    /// Snapshots to `path` every `every`, counted in `metrics`.
    pub fn new(path: PathBuf, every: Duration, metrics: Arc<Metrics>) -> Self {
        Snapshots {
            path,
            every,
            metrics,
            writing: None,
            changed: false,
        }
    }

    /// How often [`Snapshots::tick`] is due.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Notes that the engine judged something (and so may have learned).
    pub fn touch(&mut self) {
        self.changed = true;
    }

    /// The periodic snapshot: copies the profiles (the only part done on the engine thread,
    /// about a tenth of the cost of encoding them) and hands the copy to a writer thread,
    /// which encodes it, drops it, and writes the bytes. Skipped when nothing changed, or
    /// while the previous write is still going on.
    pub fn tick(&mut self, engine: &Engine) {
        if let Some(writing) = self.writing.take() {
            if !writing.is_finished() {
                self.writing = Some(writing);
                return;
            }
            self.reap(writing);
        }
        if !self.changed {
            return;
        }
        let Some(baseline) = engine.baseline() else {
            return;
        };
        self.changed = false;
        let started = Instant::now();
        let copy = baseline.clone();
        let job = self.job(copy.len(), started.elapsed());
        let spawned = std::thread::Builder::new()
            .name("nhiwatch-snapshot".into())
            .spawn(move || {
                let started = Instant::now();
                let bytes = job.encode(&copy);
                drop(copy);
                bytes.is_some_and(|bytes| job.write(&bytes, started))
            });
        match spawned {
            Ok(writing) => self.writing = Some(writing),
            Err(err) => {
                eprintln!(
                    "nhiwatch: cannot start writing the learned baseline {}: {err}; trying again in {:?}",
                    self.path.display(),
                    self.every
                );
                self.metrics.snapshot_failed();
                self.changed = true;
            }
        }
    }

    /// The last snapshot, once the engine has finished: waits for a write in progress, then
    /// encodes the profiles (no copy: the engine judges nothing more) and writes them, on
    /// this thread, when they changed since.
    pub fn finish(mut self, engine: &Engine) {
        if let Some(writing) = self.writing.take() {
            self.reap(writing);
        }
        let Some(baseline) = engine.baseline().filter(|_| self.changed) else {
            return;
        };
        let started = Instant::now();
        let job = self.job(baseline.len(), Duration::ZERO);
        let Some(bytes) = job.encode(baseline) else {
            return;
        };
        if job.write(&bytes, started) {
            eprintln!(
                "nhiwatch: wrote the learned profiles of {} identities to {} ({} bytes)",
                baseline.len(),
                self.path.display(),
                bytes.len()
            );
        }
    }

    /// Waits for a write; a failed one is tried again at the next tick.
    fn reap(&mut self, writing: JoinHandle<bool>) {
        if !writing.join().unwrap_or(false) {
            self.changed = true;
        }
    }

    fn job(&self, identities: usize, pause: Duration) -> Job {
        Job {
            path: self.path.clone(),
            identities: identities as u64,
            pause,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// One snapshot on its way to disk.
struct Job {
    path: PathBuf,
    identities: u64,
    /// What it cost the engine thread.
    pause: Duration,
    metrics: Arc<Metrics>,
}

impl Job {
    /// The file's bytes; `None` (logged and counted) when the profiles cannot be encoded.
    fn encode(&self, baseline: &Baseline) -> Option<Vec<u8>> {
        match baseline.to_bytes() {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                eprintln!(
                    "nhiwatch: cannot snapshot the learned baseline to {}: {err}",
                    self.path.display()
                );
                self.metrics.snapshot_failed();
                None
            }
        }
    }

    /// Writes the snapshot, encoded since `started`; whether that worked (a failure is logged
    /// and counted).
    fn write(&self, bytes: &[u8], started: Instant) -> bool {
        match write_atomically(&self.path, bytes) {
            Ok(()) => {
                self.metrics.snapshot_written(SnapshotWritten {
                    bytes: bytes.len() as u64,
                    identities: self.identities,
                    pause: self.pause,
                    write: started.elapsed(),
                    unix_seconds: unix_seconds(),
                });
                true
            }
            Err(err) => {
                eprintln!(
                    "nhiwatch: cannot write the learned baseline {}: {err}; the previous snapshot stays",
                    self.path.display()
                );
                self.metrics.snapshot_failed();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nhiwatch_baseline::Learner;
    use nhiwatch_detect::EngineConfig;
    use nhiwatch_model::Event;

    use super::*;

    /// An event of `identity` doing `action`, `day` days into March 2026.
    fn line(identity: &str, action: &str, day: u32) -> String {
        format!(
            r#"{{"id":"{identity}-{action}-{day}","time":"2026-03-{:02}T10:00:00Z","source":"cloudtrail","identity":{{"id":"{identity}","kind":"role"}},"action":"{action}","action_class":"read","outcome":"success","raw":{{}}}}"#,
            day + 1
        )
    }

    /// A baseline learned from `events` (identity, action) pairs, each seen on 4 days.
    fn learned(events: &[(&str, &str)]) -> Baseline {
        let mut learner = Learner::new();
        for day in 0..4 {
            for (identity, action) in events {
                let line = line(identity, action, day);
                let event: Event<'_> = serde_json::from_str(&line).unwrap();
                learner.observe(&event);
            }
        }
        learner.finish()
    }

    fn events_of(baseline: &Baseline, identity: &str) -> u64 {
        baseline.get(identity).map_or(0, |p| p.events)
    }

    #[test]
    fn the_snapshot_wins_per_identity_and_the_given_file_adds_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let given_path = dir.path().join("given.bin");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let given = learned(&[("a", "s3:GetObject"), ("b", "s3:PutObject")]);
        given.save(&given_path).unwrap();

        let nothing = starting_baseline(None, Some(&data)).unwrap();
        assert!(nothing.baseline.is_empty());
        assert_eq!(nothing.describe(None, Some(&data)), None);

        let only_given = starting_baseline(Some(&given_path), Some(&data)).unwrap();
        assert_eq!(only_given.baseline, given);
        assert_eq!((only_given.from_file, only_given.from_snapshot), (2, 0));

        // The snapshot: `a` learned further (its history from the given file included), and
        // `c`, which the given file does not know.
        let snapshot = learned(&[
            ("a", "s3:GetObject"),
            ("a", "s3:GetObject"),
            ("a", "ec2:DescribeInstances"),
            ("c", "sqs:SendMessage"),
        ]);
        snapshot.save(&snapshot_path(&data)).unwrap();
        let both = starting_baseline(Some(&given_path), Some(&data)).unwrap();
        assert_eq!(both.baseline.len(), 3);
        assert_eq!(events_of(&both.baseline, "a"), events_of(&snapshot, "a"));
        assert_eq!(events_of(&both.baseline, "b"), events_of(&given, "b"));
        assert_eq!(events_of(&both.baseline, "c"), events_of(&snapshot, "c"));
        assert_eq!(
            both.baseline.get("a"),
            snapshot.get("a"),
            "a's profile is the snapshot's, not a merge"
        );
        let names = |b: &Baseline| {
            ["s3:PutObject", "ec2:DescribeInstances"]
                .map(|n| b.action_name(nhiwatch_baseline::hash::key(n)).is_some())
        };
        assert_eq!(names(&both.baseline), [true, true], "action names of both");
        assert_eq!((both.from_snapshot, both.from_file), (2, 1));
        let line = both.describe(Some(&given_path), Some(&data)).unwrap();
        assert!(line.contains("3 identities"), "{line}");
        assert!(line.contains(&format!("2 from {}", snapshot_path(&data).display())));
        assert!(line.contains(&format!("1 from {}", given_path.display())));

        let only_snapshot = starting_baseline(None, Some(&data)).unwrap();
        assert_eq!(only_snapshot.baseline, snapshot);
    }

    #[test]
    fn an_unreadable_snapshot_is_set_aside_and_an_unreadable_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let snapshot = snapshot_path(data);
        let mut bytes = learned(&[("a", "s3:GetObject")]).to_bytes().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&snapshot, &bytes).unwrap();
        let given_path = data.join("given.bin");
        let given = learned(&[("b", "s3:PutObject")]);
        given.save(&given_path).unwrap();

        let start = starting_baseline(Some(&given_path), Some(data)).unwrap();
        assert_eq!(start.baseline, given, "the given file still counts");
        let aside = start.set_aside.expect("set aside");
        assert_eq!(aside.from, snapshot);
        assert!(!snapshot.exists());
        assert_eq!(std::fs::read(&aside.to).unwrap(), bytes, "kept as it was");
        let warning = aside.to_string();
        assert!(warning.contains("checksum"), "{warning}");
        assert!(
            warning.contains(&aside.to.display().to_string()),
            "{warning}"
        );
        assert!(
            warning.contains(&format!("{} cannot be read", snapshot.display())),
            "{warning}"
        );

        // A broken --baseline stops the start with detect's message, naming the file.
        std::fs::write(&given_path, b"not a baseline").unwrap();
        let err = starting_baseline(Some(&given_path), Some(data))
            .unwrap_err()
            .to_string();
        let detect = Baseline::load(&given_path).unwrap_err().to_string();
        assert_eq!(err, detect);
        assert!(err.contains("given.bin"), "{err}");
        let missing = data.join("missing.bin");
        let err = starting_baseline(Some(&missing), None).unwrap_err();
        assert!(err.to_string().contains("missing.bin"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_snapshot_that_cannot_be_opened_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the snapshot file should be: reading it fails, but not for want of it.
        std::fs::create_dir(snapshot_path(dir.path())).unwrap();
        let err = starting_baseline(None, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the learned baseline"), "{err}");
        assert!(err.contains(SNAPSHOT_FILE), "{err}");
    }

    #[test]
    fn snapshots_are_written_when_something_changed_and_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = snapshot_path(dir.path());
        let metrics = Arc::new(Metrics::default());
        let mut snapshots = Snapshots::new(path.clone(), Duration::from_secs(1), metrics.clone());
        let mut engine = Engine::with_baseline(
            None,
            EngineConfig::default(),
            Baseline::new(),
            nhiwatch_detect::detectors::UsualConfig::default(),
        );
        let judge = |engine: &mut Engine, identity: &str| {
            let line = line(identity, "s3:GetObject", 0);
            let event: Event<'_> = serde_json::from_str(&line).unwrap();
            engine.process(&event, &mut |_| {});
        };
        snapshots.tick(&engine);
        assert!(!path.exists(), "nothing judged, nothing written");

        judge(&mut engine, "a");
        snapshots.touch();
        snapshots.tick(&engine);
        let writing = snapshots.writing.take().expect("a write");
        snapshots.reap(writing);
        assert_eq!(metrics.snapshots(), (1, 0));
        assert!(Baseline::load(&path).unwrap().get("a").is_some());
        snapshots.tick(&engine);
        assert!(snapshots.writing.is_none(), "nothing changed since");

        judge(&mut engine, "b");
        snapshots.touch();
        snapshots.finish(&engine);
        assert_eq!(metrics.snapshots(), (2, 0));
        let written = Baseline::load(&path).unwrap();
        assert!(written.get("a").is_some() && written.get("b").is_some());

        // A write that fails is counted and tried again at the next tick.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        let mut failing = Snapshots::new(blocked.clone(), Duration::from_secs(1), metrics.clone());
        failing.touch();
        failing.tick(&engine);
        let writing = failing.writing.take().expect("a write");
        failing.reap(writing);
        assert_eq!(metrics.snapshots(), (2, 1));
        assert!(failing.changed, "to be tried again");
    }
}
