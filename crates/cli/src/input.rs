//! Reading the inputs named on the command line, shared by every subcommand that reads telemetry:
//! the options, the progress bar, the rejects file and the end-of-run reject count.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use nhiwatch_decode::mapped::Mapping;
use nhiwatch_decode::{Format, ReadOptions, ReadStats, Reader, Reject, Sinks};
use nhiwatch_model::Event;

/// Input options every telemetry-reading subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct InputArgs {
    /// Files or directories to read (recursively; `.gz` and `.zip` are unpacked); `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILES")]
    pub paths: Vec<PathBuf>,
    /// Write every rejected record, with its file, line and reason, to this JSON-lines file.
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// A field mapping (YAML) for generic JSON lines that are not a supported provider format.
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// Decode every record as this format instead of detecting it.
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    pub input_format: Option<Format>,
    /// Reject records (lines) longer than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_record_bytes: usize,
    /// Reject multi-line documents and binary inputs larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub max_document_bytes: usize,
    /// Do not print each reject on standard error (they are still counted and kept aside).
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_format(name: &str) -> Result<Format, String> {
    const ALL: [Format; 7] = [
        Format::CloudTrail,
        Format::K8sAudit,
        Format::GithubAudit,
        Format::OtlpJson,
        Format::AgentTrace,
        Format::Normalised,
        Format::Mapped,
    ];
    ALL.into_iter()
        .find(|format| format.as_str() == name)
        .ok_or_else(|| {
            let names: Vec<_> = ALL.iter().map(|f| f.as_str()).collect();
            format!(
                "unknown format `{name}`; expected one of {}",
                names.join(", ")
            )
        })
}

/// Reads every input, handing each event to `on_event`; rejects are printed (unless quiet),
/// written to the rejects file and counted. Returns the read counts.
pub fn read_all(
    args: &InputArgs,
    on_event: &mut dyn FnMut(Event<'_>),
) -> anyhow::Result<ReadStats> {
    let mapping = args
        .mapping
        .as_deref()
        .map(|path| {
            Mapping::load(path).with_context(|| format!("cannot load mapping {}", path.display()))
        })
        .transpose()?;
    let progress = Arc::new(AtomicU64::new(0));
    let options = ReadOptions {
        max_record_bytes: args.max_record_bytes,
        max_document_bytes: args.max_document_bytes,
        format: args.input_format,
        progress: Some(progress.clone()),
    };
    let mut rejects_file = args
        .rejects
        .as_deref()
        .map(|path| {
            File::create(path)
                .map(BufWriter::new)
                .with_context(|| format!("cannot create rejects file {}", path.display()))
        })
        .transpose()?;
    let bar = progress_bar(&args.paths);
    let mut reader = Reader::new(options, mapping);
    let mut write_error = None;
    let mut seen = 0u64;
    {
        let mut on_reject = |reject: Reject| {
            if !args.quiet {
                eprintln!(
                    "nhiwatch: rejected {}",
                    crate::output::sanitize(&reject.to_string())
                );
            }
            if let Some(file) = &mut rejects_file {
                let written = serde_json::to_writer(&mut *file, &reject)
                    .map_err(std::io::Error::from)
                    .and_then(|()| file.write_all(b"\n"));
                if let Err(err) = written {
                    write_error.get_or_insert(err);
                }
            }
        };
        let mut on_each = |event: Event<'_>| {
            seen += 1;
            if seen.is_multiple_of(65_536) {
                if let Some(bar) = &bar {
                    bar.set_position(progress.load(Ordering::Relaxed));
                }
            }
            on_event(event);
        };
        let mut sinks = Sinks {
            event: &mut on_each,
            reject: &mut on_reject,
        };
        for path in &args.paths {
            reader.read_path(path, &mut sinks);
        }
        reader.finish(&mut sinks);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(err) = write_error {
        return Err(err).context("cannot write the rejects file");
    }
    if let Some(mut file) = rejects_file {
        file.flush().context("cannot write the rejects file")?;
    }
    Ok(reader.stats())
}

/// A byte-based progress bar when standard error is a terminal and the input is large enough
/// to be worth one.
fn progress_bar(paths: &[PathBuf]) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = paths.iter().map(|p| size_of_input(p, 0)).sum();
    if total < 32 << 20 {
        return None;
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn size_of_input(path: &Path, depth: usize) -> u64 {
    if depth > 64 {
        return 0;
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| size_of_input(&entry.path(), depth + 1))
                    .sum()
            })
            .unwrap_or(0),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}
