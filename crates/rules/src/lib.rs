//! # nhiwatch-rules
//!
//! Detection rules teams already keep, run next to nhiwatch's lenses:
//!
//! - **Sigma rules** (specification 2.1): detection rules, single- or multi-document (Sigma 1
//!   collections with `action: global/reset/repeat` too), with their `logsource` mapped to
//!   nhiwatch's sources (`aws`/`cloudtrail` → CloudTrail, `kubernetes`/`audit` → Kubernetes
//!   audit, `github`/`audit` → GitHub audit, `opentelemetry` → OTel, `nhiwatch`/`<source>`).
//!   They are evaluated on the **raw provider record**, with field names as the rule writes
//!   them (dotted paths walk into nested objects), with every modifier of the specification
//!   and every condition form. Sigma filters tune them.
//! - **Sigma correlation rules** (`event_count`, `value_count`, `temporal`, `temporal_ordered`,
//!   `value_sum`, `value_avg`) with `group-by`, `timespan` and aliases, evaluated as a stream
//!   with bounded memory.
//! - **Native rules** (`nhiwatch: event` / `nhiwatch: sequence`) over the normalised event and
//!   the lens results (`out_of_scope`, `sensitive`, `first_sight`, ...): identity-aware
//!   sequences such as "within 10m, the same identity: denied `iam:*` calls, then a successful
//!   `sts:AssumeRole`". See `docs/rules.md` in the repository.
//!
//! [`RuleSet`] loads and compiles rules (errors name the file, line and column); [`Evaluator`]
//! runs them over a stream; [`RulesDetector`] plugs them into the engine, producing findings of
//! kind `rule`; [`run_tests`] runs the example events kept next to each rule.
//!
//! Cost: rules are indexed by source and by the exact values they require of a key field
//! (`eventName`, `verb`, `action`), so an event reads one or two fields from its raw text and
//! evaluates only the rules filed under their values; the record is parsed (once) only when one
//! of those needs it.

#![warn(missing_docs)]

mod condition;
mod correlation;
mod detection;
mod detector;
mod document;
mod error;
mod eval;
mod pattern;
mod record;
mod sequence;
mod set;
mod tags;
mod testing;

pub use detector::RulesDetector;
pub use document::{Level, LogSourceMap};
pub use error::{LoadErrors, RuleError};
pub use eval::{Evaluator, Hit, Limits, Origin};
pub use record::{Lens, Subject};
pub use set::{IndexKey, IndexSummary, LoadOptions, RuleInfo, RuleKind, RuleSet, Skipped};
pub use testing::{run_tests, CaseResult, TestReport};
