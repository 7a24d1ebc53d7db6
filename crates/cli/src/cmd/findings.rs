//! `nhiwatch findings`: list stored findings, filtered by kind, risk, time and identity.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use nhiwatch_model::{FindingKind, Timestamp};
use nhiwatch_store::FindingQuery;

use crate::cmd::detect::{table_header, write_finding, FindingFormat};
use crate::cmd::ingest::DataArgs;
use crate::cmd::investigate::parse_time;

/// Arguments of `nhiwatch findings`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    store: DataArgs,
    /// Only findings of this kind (e.g. `out_of_scope`); may be given several times.
    #[arg(long, value_name = "KIND", value_parser = parse_kind)]
    kind: Vec<FindingKind>,
    /// Only findings with at least this risk (0-100).
    #[arg(long, value_name = "RISK", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    min_risk: u8,
    /// Only findings at or after this time (RFC 3339, or `YYYY-MM-DD`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<Timestamp>,
    /// Only findings before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Timestamp>,
    /// Only this identity's findings.
    #[arg(long, value_name = "ID")]
    identity: Option<String>,
    /// How to print findings.
    #[arg(long, value_enum, default_value = "table")]
    format: FindingFormat,
}

fn parse_kind(text: &str) -> Result<FindingKind, String> {
    FindingKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == text)
        .ok_or_else(|| {
            let names: Vec<_> = FindingKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "unknown finding kind `{text}`; expected one of {}",
                names.join(", ")
            )
        })
}

/// Runs `findings`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open_read_only()?;
    let findings = store.findings(&FindingQuery {
        identity: args.identity,
        kinds: args.kind,
        min_risk: args.min_risk,
        since: args.since,
        until: args.until,
    })?;
    let mut out = BufWriter::new(io::stdout().lock());
    let written = (|| -> io::Result<()> {
        if args.format == FindingFormat::Table {
            out.write_all(table_header().as_bytes())?;
        }
        for finding in &findings {
            write_finding(&mut out, args.format, finding)?;
        }
        out.flush()
    })();
    match written {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => return Err(err.into()),
        _ => {}
    }
    eprintln!("nhiwatch: {} findings", findings.len());
    Ok(ExitCode::SUCCESS)
}
