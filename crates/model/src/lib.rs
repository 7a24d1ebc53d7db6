//! # nhiwatch-model
//!
//! The data contracts of nhiwatch (see DESIGN.md): the normalised [`Event`] every decoder
//! produces, the [`Identity`] it is attributed to, the [`Finding`] every detector reports, and
//! the small building blocks they share ([`Timestamp`], [`Interner`]).
//!
//! This crate depends on nothing else in the workspace; every other crate depends on it.

#![warn(missing_docs)]

mod event;
mod finding;
mod intern;
mod time;

pub use event::{content_id, ActionClass, Event, Identity, IdentityKind, Outcome, Source, Text};
pub use finding::{Decision, Evidence, Finding, FindingKind, Severity, BASE_FRAMEWORKS};
pub use intern::{Interner, Sym};
pub use time::{TimeError, Timestamp};
