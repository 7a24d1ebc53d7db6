//! `nhiwatch export`: write the evidence store's events, findings or risk history as JSON lines
//! for a data lake. Events are written in the normalised-event contract with their raw records,
//! so `nhiwatch normalize`, `detect` and `ingest` read an export back.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::cmd::ingest::DataArgs;

/// What to export.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Table {
    /// Normalised events with their raw records.
    #[default]
    Events,
    /// Findings.
    Findings,
    /// Risk history points.
    Risk,
}

/// The export format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
}

/// Arguments of `nhiwatch export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    store: DataArgs,
    /// What to export.
    #[arg(long, value_enum, default_value_t)]
    table: Table,
    /// The output format.
    #[arg(long, value_enum, default_value_t)]
    format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Leave events' raw records out (`raw` is `null`): smaller, and nothing is inflated.
    #[arg(long)]
    no_raw: bool,
}

/// Runs `export`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open_read_only()?;
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let mut lines = 0u64;
    let mut error: Option<io::Error> = None;
    let ExportFormat::Jsonl = args.format;
    let mut write = |value: &dyn erased::Line| -> ControlFlow<()> {
        match value.write_line(&mut out) {
            Ok(()) => {
                lines += 1;
                ControlFlow::Continue(())
            }
            Err(err) => {
                error = Some(err);
                ControlFlow::Break(())
            }
        }
    };
    match args.table {
        Table::Events => store.export_events(!args.no_raw, &mut |event| write(event))?,
        Table::Findings => store.export_findings(&mut |finding| write(finding))?,
        Table::Risk => store.export_risks(&mut |point| write(point))?,
    }
    let flushed = match error {
        Some(err) => Err(err),
        None => out.flush(),
    };
    match flushed {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            return Err(err).context("cannot write the export")
        }
        _ => {}
    }
    eprintln!("nhiwatch: exported {lines} lines");
    Ok(ExitCode::SUCCESS)
}

/// Writing any serialisable record as one JSON line, through one closure.
mod erased {
    use std::io::{self, Write};

    use super::Serialize;

    /// A record that can be written as a JSON line.
    pub trait Line {
        /// Writes the record and a newline.
        fn write_line(&self, out: &mut dyn Write) -> io::Result<()>;
    }

    impl<T: Serialize> Line for T {
        fn write_line(&self, mut out: &mut dyn Write) -> io::Result<()> {
            serde_json::to_writer(&mut out, self)?;
            out.write_all(b"\n")
        }
    }
}
