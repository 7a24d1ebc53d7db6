//! One module per subcommand.

pub mod access_report;
pub mod demo;
pub mod detect;
pub mod eval;
pub mod export;
pub mod findings;
pub mod ingest;
pub mod investigate;
pub mod learn;
pub mod normalize;
pub mod policy;
pub mod publish;
pub mod rules;
pub mod serve;
pub mod simulate;
pub mod verify;
pub mod worker;
