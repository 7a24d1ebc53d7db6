//! Triage marks: a person acknowledged a finding, or judged it benign.
//!
//! Marks are appended to `triage.jsonl` in the data folder, one JSON object a line, and made
//! durable (`fsync`) before the request is answered; the file is read back when the UI starts.
//! It is append-only, so a mark's history stays visible: who, when, what, why.
//!
//! A benign mark feeds the baseline through the server's [`crate::BenignHook`]: what was new in
//! the evidence (actions, transitions, resources, origins, hours) is learned as usual for the
//! identity, although [`nhiwatch_baseline::Quarantine`] never learns what a finding was raised
//! on by itself. Rates and volumes are not: the windows they were counted in are gone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use nhiwatch_model::Timestamp;
use serde::{Deserialize, Serialize};

/// The triage file inside the data folder.
pub(crate) const FILE_NAME: &str = "triage.jsonl";

/// Longest note kept with a mark, in characters.
pub(crate) const MAX_NOTE_CHARS: usize = 1000;

/// What a person decided about a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mark {
    /// Seen; someone is on it.
    Acknowledged,
    /// Expected behaviour: the baseline should learn it.
    Benign,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Acknowledged => "acknowledged",
            Mark::Benign => "benign",
        }
    }

    pub fn parse(text: &str) -> Option<Mark> {
        match text {
            "acknowledged" | "ack" => Some(Mark::Acknowledged),
            "benign" => Some(Mark::Benign),
            _ => None,
        }
    }
}

/// One mark, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub finding: String,
    pub identity: String,
    pub mark: Mark,
    /// The token name of who marked it (`anonymous` without authentication).
    pub by: String,
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// The marks, in memory and on disk.
pub(crate) struct Triage {
    path: PathBuf,
    file: Mutex<File>,
    marks: RwLock<HashMap<String, Vec<Record>>>,
}

impl Triage {
    /// Opens (creating) the file in `dir` and reads the marks it holds.
    pub fn open(dir: &Path) -> std::io::Result<Triage> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut marks: HashMap<String, Vec<Record>> = HashMap::new();
        let mut unreadable = 0;
        for line in BufReader::new(File::open(&path)?).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(record) => marks
                    .entry(record.finding.clone())
                    .or_default()
                    .push(record),
                Err(_) => unreadable += 1,
            }
        }
        if unreadable > 0 {
            eprintln!(
                "nhiwatch: {unreadable} lines of {} could not be read and are ignored",
                path.display()
            );
        }
        Ok(Triage {
            path,
            file: Mutex::new(file),
            marks: RwLock::new(marks),
        })
    }

    /// Appends a mark durably, then makes it visible.
    pub fn record(&self, record: Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        {
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line)?;
            file.sync_data()?;
        }
        self.marks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(record.finding.clone())
            .or_default()
            .push(record);
        Ok(())
    }

    /// The latest mark of a finding.
    pub fn status(&self, finding: &str) -> Option<Mark> {
        let marks = self.marks.read().unwrap_or_else(|e| e.into_inner());
        marks.get(finding).and_then(|m| m.last()).map(|r| r.mark)
    }

    /// Every mark of a finding, oldest first.
    pub fn history(&self, finding: &str) -> Vec<Record> {
        let marks = self.marks.read().unwrap_or_else(|e| e.into_inner());
        marks.get(finding).cloned().unwrap_or_default()
    }

    /// The findings whose latest mark is benign, as (finding id, identity).
    pub fn benign(&self) -> Vec<(String, String)> {
        let marks = self.marks.read().unwrap_or_else(|e| e.into_inner());
        marks
            .values()
            .filter_map(|m| m.last())
            .filter(|r| r.mark == Mark::Benign)
            .map(|r| (r.finding.clone(), r.identity.clone()))
            .collect()
    }

    /// Marks recorded in all (changes whenever one is added).
    pub fn count(&self) -> usize {
        let marks = self.marks.read().unwrap_or_else(|e| e.into_inner());
        marks.values().map(Vec::len).sum()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(finding: &str, mark: Mark) -> Record {
        Record {
            finding: finding.into(),
            identity: "id<1>".into(),
            mark,
            by: "admin".into(),
            time: Timestamp(1_700_000_000_000_000_000),
            note: "expected \u{1b} run".into(),
        }
    }

    #[test]
    fn marks_survive_a_restart_and_keep_their_history() {
        let dir = tempfile::tempdir().unwrap();
        let triage = Triage::open(dir.path()).unwrap();
        assert_eq!(triage.status("f-1"), None);
        triage.record(record("f-1", Mark::Acknowledged)).unwrap();
        triage.record(record("f-1", Mark::Benign)).unwrap();
        triage.record(record("f-2", Mark::Acknowledged)).unwrap();
        drop(triage);
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        let triage = Triage::open(dir.path()).unwrap();
        assert_eq!(triage.status("f-1"), Some(Mark::Benign));
        assert_eq!(triage.history("f-1").len(), 2);
        assert_eq!(triage.history("f-1")[0], record("f-1", Mark::Acknowledged));
        assert_eq!(triage.count(), 3);
        assert_eq!(triage.benign(), [("f-1".to_owned(), "id<1>".to_owned())]);
        assert_eq!(Mark::parse("ack"), Some(Mark::Acknowledged));
        assert_eq!(Mark::parse("delete"), None);
    }
}
