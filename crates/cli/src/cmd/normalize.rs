//! `nhiwatch normalize`: decode telemetry and print normalised events, then a summary.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use nhiwatch_model::{Event, Source};

use crate::input::{read_all, InputArgs};
use crate::output::cell;

/// How `normalize` prints events.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventFormat {
    /// One normalised event per line, as JSON (the DESIGN.md contract, raw record included).
    #[default]
    Jsonl,
    /// A fixed-width table for people (raw record left out).
    Table,
}

/// Arguments of `nhiwatch normalize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    input: InputArgs,
    /// How to print the events.
    #[arg(long, value_enum, default_value_t)]
    format: EventFormat,
    /// How many identities the summary lists.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Exit status when every input was read but some records were rejected.
pub const EXIT_REJECTS: u8 = 3;

/// Runs `normalize`: events to standard output, summary and rejects to standard error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut per_source: BTreeMap<Source, u64> = BTreeMap::new();
    let mut per_identity: BTreeMap<String, u64> = BTreeMap::new();
    let mut write_error: Option<io::Error> = None;
    if args.format == EventFormat::Table {
        let header = format!(
            "{} {} {} {} {} {} {}\n",
            cell("time", 24),
            cell("source", 12),
            cell("identity", 48),
            cell("action", 36),
            cell("class", 10),
            cell("outcome", 7),
            "resource"
        );
        out.write_all(header.as_bytes())?;
    }
    let stats = read_all(&args.input, &mut |event: Event<'_>| {
        *per_source.entry(event.source).or_default() += 1;
        match per_identity.get_mut(event.identity.id.as_ref()) {
            Some(count) => *count += 1,
            None => {
                per_identity.insert(event.identity.id.to_string(), 1);
            }
        }
        if write_error.is_some() {
            return;
        }
        let written = match args.format {
            EventFormat::Jsonl => serde_json::to_writer(&mut out, &event)
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n")),
            EventFormat::Table => out.write_all(table_row(&event).as_bytes()),
        };
        if let Err(err) = written {
            write_error = Some(err);
        }
    })?;
    match write_error {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Some(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Some(err) => return Err(err.into()),
        None => {}
    }
    if let Err(err) = out.flush() {
        if err.kind() != io::ErrorKind::BrokenPipe {
            return Err(err.into());
        }
    }
    let mut summary = format!(
        "nhiwatch: {} records read, {} events, {} rejected\n",
        stats.records, stats.events, stats.rejects
    );
    if stats.skipped_files > 0 {
        summary.push_str(&format!(
            "  {} documentation/config files in directories passed over (name them to read them)\n",
            stats.skipped_files
        ));
    }
    for (source, count) in &per_source {
        summary.push_str(&format!(
            "  source {:<14} {count:>10} events\n",
            source.as_str()
        ));
    }
    let mut top: Vec<_> = per_identity.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    summary.push_str(&format!("  {} identities; busiest:\n", per_identity.len()));
    for (identity, count) in top.into_iter().take(args.top) {
        summary.push_str(&format!(
            "  {count:>10}  {}\n",
            crate::output::sanitize(identity)
        ));
    }
    eprint!("{summary}");
    Ok(if stats.rejects > 0 {
        ExitCode::from(EXIT_REJECTS)
    } else {
        ExitCode::SUCCESS
    })
}

fn table_row(event: &Event<'_>) -> String {
    format!(
        "{} {} {} {} {} {} {}\n",
        cell(&event.time.to_string(), 24),
        cell(event.source.as_str(), 12),
        cell(&event.identity.id, 48),
        cell(&event.action, 36),
        cell(event.action_class.as_str(), 10),
        cell(event.outcome.as_str(), 7),
        crate::output::sanitize(event.resource.as_deref().unwrap_or("-"))
    )
}
