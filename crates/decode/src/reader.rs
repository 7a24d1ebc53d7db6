//! Reading inputs: files, directories, `.gz`, `.zip` and standard input, as JSON lines, whole
//! JSON documents, envelopes of records or OTLP protobuf, with every bad record reported.
//!
//! Memory stays bounded whatever the input: lines are read through a reusable buffer and cut at
//! [`ReadOptions::max_record_bytes`] (the rest of an over-long line is skipped, not buffered),
//! and a multi-line document is read whole only up to [`ReadOptions::max_document_bytes`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::bufread::MultiGzDecoder;
use nhiwatch_model::Event;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::mapped::Mapping;
use crate::sniff::{envelope, sniff, Envelope};
use crate::{DecodeError, Decoders, Format};

/// How much of a rejected record is kept in its [`Reject`].
const REJECT_KEEP_BYTES: usize = 64 * 1024;

/// Limits and choices for reading input.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// A record (line) longer than this is rejected without being held in memory.
    pub max_record_bytes: usize,
    /// A multi-line JSON document, or a protobuf message, larger than this is rejected.
    pub max_document_bytes: usize,
    /// Decode every record as this format instead of detecting it.
    pub format: Option<Format>,
    /// Incremented with the bytes read from each input (before decompression), for progress.
    pub progress: Option<Arc<AtomicU64>>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_record_bytes: 16 << 20,
            max_document_bytes: 1 << 30,
            format: None,
            progress: None,
        }
    }
}

/// A record that could not be decoded: where it was, why, and the record itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    /// The input it came from (`-` for standard input; `archive.zip!entry` inside a zip).
    pub file: String,
    /// 1-based line where the record starts; 0 when the input has no lines (protobuf, an
    /// unreadable file).
    pub line: u64,
    /// 0-based position within its envelope (`Records`, `items`, an array), when in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// The record as read (invalid UTF-8 replaced), cut to 64 KiB.
    pub record: String,
    /// Whether `record` was cut.
    pub truncated: bool,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(index) = self.index {
            write!(f, " (record {index})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Counts kept while reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records seen (envelope members counted one by one).
    pub records: u64,
    /// Events produced.
    pub events: u64,
    /// Records rejected (and unreadable inputs).
    pub rejects: u64,
    /// Files passed over while walking a directory because their name says they are not
    /// telemetry ([`is_documentation`]): rule files, READMEs, licences. Named files are always read.
    pub skipped_files: u64,
}

/// Whether a file met while walking a directory is documentation or configuration rather than
/// telemetry (`.yaml`, `.yml`, `.md`, `.txt`, `LICENSE*`), so it is counted and passed over
/// instead of being rejected line by line.
pub fn is_documentation(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.starts_with("license")
        || [".yaml", ".yml", ".md", ".txt"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Reads inputs and decodes them, handing events and rejects to callbacks.
///
/// Events borrow from the reader's buffers and live only for the call; keep one with
/// [`Event::into_owned`].
pub struct Reader {
    decoders: Decoders,
    options: ReadOptions,
    hint: Option<Format>,
    stats: ReadStats,
}

/// Where a record stands in its input.
#[derive(Clone, Copy)]
struct Place<'n> {
    file: &'n str,
    line: u64,
    index: Option<u64>,
}

/// The two callbacks every read takes.
pub struct Sinks<'s> {
    /// Receives each decoded event.
    pub event: &'s mut dyn FnMut(Event<'_>),
    /// Receives each rejected record.
    pub reject: &'s mut dyn FnMut(Reject),
}

impl Reader {
    /// A reader with the given limits; generic JSON is decoded when a mapping is given.
    pub fn new(options: ReadOptions, mapping: Option<Mapping>) -> Self {
        Reader {
            decoders: Decoders::new(mapping),
            options,
            hint: None,
            stats: ReadStats::default(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// Reads a file, a directory (recursively, in name order, skipping hidden entries) or `-`
    /// for standard input. An input that cannot be opened or read is reported as a reject.
    pub fn read_path(&mut self, path: &Path, sinks: &mut Sinks<'_>) {
        let name = path.display().to_string();
        if name == "-" {
            let stdin = io::stdin();
            let mut lock = stdin.lock();
            self.read_buffered(&name, &mut lock, 0, sinks);
            return;
        }
        let result = if path.is_dir() {
            self.read_dir(path, sinks, 0)
        } else {
            self.read_file(path, sinks)
        };
        if let Err(err) = result {
            self.reject_input(&name, format!("cannot read input: {err}"), sinks);
        }
    }

    /// Reads an in-memory input (an HTTP body, a test fixture) named `name` in rejects.
    pub fn read_bytes(&mut self, name: &str, bytes: &[u8], sinks: &mut Sinks<'_>) {
        let mut cursor = Cursor::new(bytes);
        self.read_buffered(name, &mut cursor, 0, sinks);
    }

    /// Emits whatever the decoders held back. Call once, after the last input.
    pub fn finish(&mut self, sinks: &mut Sinks<'_>) {
        let stats = &mut self.stats;
        self.decoders.finish(&mut |event| {
            stats.events += 1;
            (sinks.event)(event);
        });
    }

    fn read_dir(&mut self, dir: &Path, sinks: &mut Sinks<'_>, depth: usize) -> io::Result<()> {
        if depth > 64 {
            return Err(io::Error::other("directories nested more than 64 deep"));
        }
        let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let result = if path.is_dir() {
                self.read_dir(&path, sinks, depth + 1)
            } else if is_documentation(&path) {
                self.stats.skipped_files += 1;
                Ok(())
            } else {
                self.read_file(&path, sinks)
            };
            if let Err(err) = result {
                self.reject_input(
                    &path.display().to_string(),
                    format!("cannot read input: {err}"),
                    sinks,
                );
            }
        }
        Ok(())
    }

    fn read_file(&mut self, path: &Path, sinks: &mut Sinks<'_>) -> io::Result<()> {
        let name = path.display().to_string();
        let mut file = File::open(path)?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut file, &mut magic)?;
        file.rewind()?;
        if magic[..n] == *b"PK\x03\x04" {
            return self.read_zip(&name, file, sinks);
        }
        let counted = Counted {
            inner: file,
            progress: self.options.progress.clone(),
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, counted);
        self.read_buffered(&name, &mut buffered, 0, sinks);
        Ok(())
    }

    fn read_zip<R: Read + Seek>(
        &mut self,
        name: &str,
        input: R,
        sinks: &mut Sinks<'_>,
    ) -> io::Result<()> {
        let mut archive = zip::ZipArchive::new(input).map_err(io::Error::other)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(io::Error::other)?;
            if entry.is_dir() {
                continue;
            }
            // A name that does not decode still names the entry, lossily.
            let entry_name = match entry.name() {
                Ok(inner) => format!("{name}!{inner}"),
                Err(_) => format!("{name}!{}", String::from_utf8_lossy(entry.name_raw())),
            };
            let mut buffered = BufReader::with_capacity(256 * 1024, &mut entry);
            self.read_buffered(&entry_name, &mut buffered, 1, sinks);
        }
        Ok(())
    }

    /// Reads one stream, unwrapping gzip and zip, then JSON or protobuf.
    fn read_buffered(
        &mut self,
        name: &str,
        input: &mut dyn BufRead,
        depth: u8,
        sinks: &mut Sinks<'_>,
    ) {
        if let Err(err) = self.read_stream(name, input, depth, sinks) {
            self.reject_input(name, format!("cannot read input: {err}"), sinks);
        }
    }

    fn read_stream(
        &mut self,
        name: &str,
        input: &mut dyn BufRead,
        depth: u8,
        sinks: &mut Sinks<'_>,
    ) -> io::Result<()> {
        let head = fill(input)?;
        if head.is_empty() {
            return Ok(());
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            if depth >= 2 {
                self.reject_input(
                    name,
                    "compressed more than twice over; refusing to unpack further".into(),
                    sinks,
                );
                return Ok(());
            }
            let mut unzipped = BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(input));
            return self.read_stream(name, &mut unzipped, depth + 1, sinks);
        }
        if head.starts_with(b"PK\x03\x04") {
            if depth >= 2 {
                self.reject_input(
                    name,
                    "archive nested more than twice over; refusing to unpack further".into(),
                    sinks,
                );
                return Ok(());
            }
            let Some(bytes) = self.read_bounded(name, input, sinks)? else {
                return Ok(());
            };
            return self.read_zip(name, Cursor::new(bytes), sinks);
        }
        let first = head
            .iter()
            .copied()
            .find(|b| !b" \t\r\n".contains(b) && !matches!(b, 0xEF | 0xBB | 0xBF));
        match first {
            None => Ok(()),
            Some(b'{' | b'[') => self.read_json(name, input, sinks),
            Some(_) if looks_textual(head) => self.read_json(name, input, sinks),
            Some(_) => {
                let Some(bytes) = self.read_bounded(name, input, sinks)? else {
                    return Ok(());
                };
                if !self.read_protobuf(&bytes, sinks) {
                    // Not protobuf either: read it as lines, so any good record still goes through.
                    self.read_json(name, &mut Cursor::new(&bytes[..]), sinks)?;
                }
                Ok(())
            }
        }
    }

    /// JSON lines, or (when the first value spans lines) a stream of whole documents.
    fn read_json(
        &mut self,
        name: &str,
        input: &mut dyn BufRead,
        sinks: &mut Sinks<'_>,
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut line_no = 0u64;
        let mut first_record = true;
        loop {
            if !first_record {
                // The common case: the whole line is in the input's buffer already, and is
                // decoded from there rather than copied out first.
                let available = fill(input)?;
                let max = self.options.max_record_bytes;
                if let Some(end) = memchr::memchr(b'\n', available).filter(|&end| end < max) {
                    line_no += 1;
                    let place = Place {
                        file: name,
                        line: line_no,
                        index: None,
                    };
                    let line = available.get(..end).unwrap_or_default();
                    if let Some(text) = self.line_text(place, line, sinks) {
                        self.record(place, text, sinks);
                    }
                    input.consume(end + 1);
                    continue;
                }
            }
            let line = next_line(input, &mut buf, self.options.max_record_bytes)?;
            line_no += 1;
            let place = Place {
                file: name,
                line: line_no,
                index: None,
            };
            let len = match line {
                Line::Eof => return Ok(()),
                Line::TooLong(len) => {
                    self.stats.records += 1;
                    let reason = format!(
                        "record is {len} bytes, over the {}-byte limit (--max-record-bytes)",
                        self.options.max_record_bytes
                    );
                    self.reject_kept(place, DecodeError::new(reason), &buf, true, sinks);
                    continue;
                }
                Line::Complete => buf.len(),
            };
            let Some(text) = self.line_text(place, &buf[..len], sinks) else {
                continue;
            };
            if std::mem::take(&mut first_record) {
                if let Err(err) = serde_json::from_str::<&RawValue>(text) {
                    if err.is_eof() {
                        // The first value goes on past its line: a pretty-printed document.
                        return self.read_document(name, line_no, buf, input, sinks);
                    }
                }
            }
            self.record(place, text, sinks);
        }
    }

    /// The text of a line: `None` for a blank line, or (rejected) for one that is not UTF-8.
    fn line_text<'l>(
        &mut self,
        place: Place<'_>,
        line: &'l [u8],
        sinks: &mut Sinks<'_>,
    ) -> Option<&'l str> {
        let text = trim_line(line);
        if text.is_empty() {
            return None;
        }
        match std::str::from_utf8(text) {
            Ok(text) => Some(text),
            Err(err) => {
                let reason = format!("invalid UTF-8 at byte {}", err.valid_up_to());
                self.reject(place, DecodeError::new(reason), text, sinks);
                None
            }
        }
    }

    /// A multi-line document (or several, concatenated), starting with `first` at `first_line`.
    fn read_document(
        &mut self,
        name: &str,
        first_line: u64,
        mut first: Vec<u8>,
        input: &mut dyn BufRead,
        sinks: &mut Sinks<'_>,
    ) -> io::Result<()> {
        let limit = self.options.max_document_bytes;
        let mut rest = input.take((limit.saturating_sub(first.len()) as u64).saturating_add(1));
        rest.read_to_end(&mut first)?;
        if first.len() > limit {
            self.reject(
                Place {
                    file: name,
                    line: first_line,
                    index: None,
                },
                DecodeError::new(format!(
                    "multi-line JSON document over the {limit}-byte limit (--max-document-bytes); \
                     write one record per line to stream it"
                )),
                &first,
                sinks,
            );
            return Ok(());
        }
        let text = match std::str::from_utf8(&first) {
            Ok(text) => text,
            Err(err) => {
                let line = first_line + count_lines(&first[..err.valid_up_to()]);
                let reason = format!("invalid UTF-8 at byte {}", err.valid_up_to());
                self.reject(
                    Place {
                        file: name,
                        line,
                        index: None,
                    },
                    DecodeError::new(reason),
                    &first,
                    sinks,
                );
                return Ok(());
            }
        };
        let mut counted_to = 0usize;
        let mut line = first_line;
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
        loop {
            match values.next() {
                None => return Ok(()),
                Some(Ok(value)) => {
                    let offset = offset_in(text, value.get());
                    line += count_lines(&text.as_bytes()[counted_to..offset]);
                    counted_to = offset;
                    self.record(
                        Place {
                            file: name,
                            line,
                            index: None,
                        },
                        value.get(),
                        sinks,
                    );
                }
                Some(Err(err)) => {
                    let at = first_line + err.line() as u64 - 1;
                    let tail = &text[counted_to.min(text.len())..];
                    self.reject(
                        Place {
                            file: name,
                            line: at,
                            index: None,
                        },
                        DecodeError::json(&err),
                        tail.as_bytes(),
                        sinks,
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Decodes an OTLP protobuf export; false (and nothing emitted) when it is not one.
    fn read_protobuf(&mut self, bytes: &[u8], sinks: &mut Sinks<'_>) -> bool {
        let stats = &mut self.stats;
        let mut events = 0;
        let decoded = crate::otel::decode_protobuf(bytes, &mut |event| {
            events += 1;
            (sinks.event)(event);
        });
        stats.records += u64::from(decoded.is_ok());
        stats.events += events;
        decoded.is_ok()
    }

    /// Reads a whole stream into memory, up to the document limit.
    fn read_bounded(
        &mut self,
        name: &str,
        input: &mut dyn BufRead,
        sinks: &mut Sinks<'_>,
    ) -> io::Result<Option<Vec<u8>>> {
        let limit = self.options.max_document_bytes;
        let mut bytes = Vec::new();
        input.take(limit as u64 + 1).read_to_end(&mut bytes)?;
        if bytes.len() > limit {
            self.reject_input(
                name,
                format!("binary input over the {limit}-byte limit (--max-document-bytes)"),
                sinks,
            );
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// One record: an envelope is opened and its members decoded one by one.
    fn record(&mut self, place: Place<'_>, text: &str, sinks: &mut Sinks<'_>) {
        let Some(kind) = envelope(text) else {
            self.single(place, text, sinks);
            return;
        };
        let members = match kind {
            Envelope::Records => {
                serde_json::from_str::<RecordsEnvelope<'_>>(text).map(|e| e.records)
            }
            Envelope::EventList => {
                serde_json::from_str::<EventListEnvelope<'_>>(text).map(|e| e.items)
            }
            Envelope::Array => serde_json::from_str::<Vec<&RawValue>>(text),
        };
        let members = match members {
            Ok(members) => members,
            Err(err) => {
                let place = Place {
                    line: place.line + err.line() as u64 - 1,
                    ..place
                };
                self.reject(place, DecodeError::json(&err), text.as_bytes(), sinks);
                return;
            }
        };
        let mut counted_to = 0usize;
        let mut line = place.line;
        for (index, member) in members.iter().enumerate() {
            let offset = offset_in(text, member.get());
            line += count_lines(&text.as_bytes()[counted_to..offset]);
            counted_to = offset;
            self.single(
                Place {
                    file: place.file,
                    line,
                    index: Some(index as u64),
                },
                member.get(),
                sinks,
            );
        }
    }

    fn single(&mut self, place: Place<'_>, text: &str, sinks: &mut Sinks<'_>) {
        self.stats.records += 1;
        let format = match self.options.format {
            Some(format) => format,
            None => match sniff(text).or(self.hint.filter(|_| self.decoders.has_mapping())) {
                Some(format) => format,
                None if self.decoders.has_mapping() => Format::Mapped,
                None => {
                    if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
                        self.reject_counted(place, DecodeError::json(&err), text.as_bytes(), sinks);
                        return;
                    }
                    let err = DecodeError::new(
                        "unrecognised record: not CloudTrail, Kubernetes audit, GitHub audit, OTLP, \
                         an agent trace or a normalised event (give --mapping for generic JSON)",
                    );
                    self.reject_counted(place, err, text.as_bytes(), sinks);
                    return;
                }
            },
        };
        self.hint = Some(format);
        let stats = &mut self.stats;
        let result = self.decoders.decode(format, text, &mut |event| {
            stats.events += 1;
            (sinks.event)(event);
        });
        if let Err(err) = result {
            let err = DecodeError {
                field: err.field,
                reason: format!("{} record: {}", format.as_str(), err.reason).into(),
            };
            self.reject_counted(place, err, text.as_bytes(), sinks);
        }
    }

    /// Rejects a record not yet counted as read.
    fn reject(&mut self, place: Place<'_>, err: DecodeError, record: &[u8], sinks: &mut Sinks<'_>) {
        self.stats.records += 1;
        self.reject_counted(place, err, record, sinks);
    }

    fn reject_counted(
        &mut self,
        place: Place<'_>,
        err: DecodeError,
        record: &[u8],
        sinks: &mut Sinks<'_>,
    ) {
        self.reject_kept(place, err, record, false, sinks);
    }

    /// Reports a reject; `already_cut` says `record` is the head of a longer record.
    fn reject_kept(
        &mut self,
        place: Place<'_>,
        err: DecodeError,
        record: &[u8],
        already_cut: bool,
        sinks: &mut Sinks<'_>,
    ) {
        self.stats.rejects += 1;
        let keep = record.len().min(REJECT_KEEP_BYTES);
        (sinks.reject)(Reject {
            file: place.file.to_owned(),
            line: place.line,
            index: place.index,
            field: err.field.map(|f| f.into_owned()),
            reason: err.reason.into_owned(),
            record: String::from_utf8_lossy(&record[..keep]).into_owned(),
            truncated: already_cut || keep < record.len(),
        });
    }

    fn reject_input(&mut self, name: &str, reason: String, sinks: &mut Sinks<'_>) {
        self.stats.rejects += 1;
        (sinks.reject)(Reject {
            file: name.to_owned(),
            line: 0,
            index: None,
            field: None,
            reason,
            record: String::new(),
            truncated: false,
        });
    }
}

#[derive(Deserialize)]
struct RecordsEnvelope<'a> {
    #[serde(borrow, rename = "Records")]
    records: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct EventListEnvelope<'a> {
    #[serde(borrow, default)]
    items: Vec<&'a RawValue>,
}

/// Counts bytes read from the underlying input into the progress counter.
struct Counted<R> {
    inner: R,
    progress: Option<Arc<AtomicU64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(progress) = &self.progress {
            progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

enum Line {
    Eof,
    Complete,
    TooLong(u64),
}

/// Reads one line into `buf` (newline included), holding at most `max` bytes: a longer line is
/// consumed to its end and reported as [`Line::TooLong`], with its first 64 KiB left in `buf`.
fn next_line(input: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let mut total = 0u64;
    let mut too_long = false;
    loop {
        let available = fill(input)?;
        if available.is_empty() {
            return Ok(match (total, too_long) {
                (0, _) => Line::Eof,
                (_, true) => Line::TooLong(total),
                _ => Line::Complete,
            });
        }
        let (take, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            if buf.len() + take > max {
                too_long = true;
                let keep = REJECT_KEEP_BYTES.saturating_sub(buf.len()).min(take);
                buf.extend_from_slice(&available[..keep]);
                buf.truncate(REJECT_KEEP_BYTES);
            } else {
                buf.extend_from_slice(&available[..take]);
            }
        }
        total += take as u64;
        input.consume(take);
        if done {
            return Ok(if too_long {
                Line::TooLong(total)
            } else {
                Line::Complete
            });
        }
    }
}

/// `fill_buf`, retried when a signal interrupts it.
fn fill(input: &mut dyn BufRead) -> io::Result<&[u8]> {
    while let Err(err) = input.fill_buf() {
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    input.fill_buf()
}

fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(n)
}

/// The line without its line ending, byte-order mark or surrounding blanks.
fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    line.trim_ascii()
}

/// Whether the start of a stream is text (valid UTF-8 without control characters other than
/// blanks), so it is read as lines even though it does not open with JSON.
fn looks_textual(head: &[u8]) -> bool {
    let head = &head[..head.len().min(4096)];
    let text = match std::str::from_utf8(head) {
        Ok(_) => head,
        // A multi-byte character cut at the end of the sample is still text.
        Err(err) if err.error_len().is_none() => &head[..err.valid_up_to()],
        Err(_) => return false,
    };
    !text.iter().any(|&b| b < 0x20 && !b"\t\r\n".contains(&b))
}

fn count_lines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Byte offset of `inner`, a slice of `outer`, within it.
fn offset_in(outer: &str, inner: &str) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (Vec<Event<'static>>, Vec<Reject>) {
        let mut events = Vec::new();
        let mut rejects = Vec::new();
        let mut reader = Reader::new(
            ReadOptions {
                max_record_bytes: 4096,
                ..Default::default()
            },
            None,
        );
        let mut sinks = Sinks {
            event: &mut |e| events.push(e.into_owned()),
            reject: &mut |r| rejects.push(r),
        };
        reader.read_bytes("test", bytes, &mut sinks);
        reader.finish(&mut sinks);
        (events, rejects)
    }

    const NORMALISED: &str = r#"{"id":"e1","time":"2024-01-01T00:00:00Z","source":"jsonl","identity":{"id":"x","kind":"bot"},"action":"a:b","action_class":"read","outcome":"success","raw":{}}"#;

    #[test]
    fn bad_lines_are_rejected_with_their_line_and_the_rest_flows() {
        let input = format!(
            "{NORMALISED}\n\n{{\"truncated\": \n\u{0}\u{1}garbage\n{}\n{NORMALISED}\r\n",
            "x".repeat(5000)
        );
        let (events, rejects) = read(input.as_bytes());
        assert_eq!(events.len(), 2);
        let lines: Vec<u64> = rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5], "{rejects:?}");
        assert!(rejects[0].reason.contains("EOF"), "{}", rejects[0]);
    }

    #[test]
    fn over_long_lines_are_cut_not_buffered() {
        let input = format!("{}\n{NORMALISED}\n", "y".repeat(100_000));
        let (events, rejects) = read(input.as_bytes());
        assert_eq!(events.len(), 1);
        assert_eq!(rejects.len(), 1);
        assert!(
            rejects[0].reason.contains("over the 4096-byte limit"),
            "{}",
            rejects[0]
        );
        assert!(rejects[0].truncated);
        assert_eq!(rejects[0].record.len(), REJECT_KEEP_BYTES);
    }

    #[test]
    fn invalid_utf8_is_named() {
        let input = [b"\xff\xfe{}\n".as_slice(), NORMALISED.as_bytes()].concat();
        let (events, rejects) = read(&input);
        assert_eq!(events.len(), 1);
        assert!(
            rejects[0].reason.contains("invalid UTF-8"),
            "{}",
            rejects[0]
        );
    }

    #[test]
    fn pretty_printed_documents_and_arrays_keep_line_numbers() {
        let pretty = format!("[\n  {NORMALISED},\n  {{\"who\": 1}}\n]\n");
        let (events, rejects) = read(pretty.as_bytes());
        assert_eq!(events.len(), 1);
        assert_eq!(rejects.len(), 1);
        assert_eq!(
            (rejects[0].line, rejects[0].index),
            (3, Some(1)),
            "{}",
            rejects[0]
        );
    }

    #[test]
    fn gzip_is_unpacked() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(format!("{NORMALISED}\n{NORMALISED}\n").as_bytes())
            .unwrap();
        let (events, rejects) = read(&gz.finish().unwrap());
        assert_eq!((events.len(), rejects.len()), (2, 0));
    }

    #[test]
    fn empty_and_blank_inputs_yield_nothing() {
        assert_eq!(read(b"").0.len(), 0);
        let (events, rejects) = read(b"\n\n   \n");
        assert_eq!((events.len(), rejects.len()), (0, 0));
    }
}
