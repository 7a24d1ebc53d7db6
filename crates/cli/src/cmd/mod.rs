//! One module per subcommand.

pub mod access_report;
pub mod demo;
pub mod detect;
pub mod eval;
pub mod normalize;
pub mod policy;
pub mod simulate;
