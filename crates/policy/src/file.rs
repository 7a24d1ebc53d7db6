//! The policy file as written (YAML), read with serde_norway.
//!
//! Every value that can be wrong — a glob, a workflow, hours, a duration, an IAM file — is checked
//! *while* it is deserialised, by a newtype whose `Deserialize` validates it. That is deliberate:
//! serde_norway attaches the line, column and key path (`identities[2].allow[0].action`) to an
//! error raised inside deserialisation, and offers no positions afterwards.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use nhiwatch_model::{Decision, IdentityKind, Severity};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::hours::Hours;
use crate::iam::{self, IamDocument};
use crate::pattern::{compile, Flavour};
use crate::util::{checked_str, parse_duration, OneOrMany};
use crate::workflow::Workflow;

thread_local! {
    /// The folder relative `iam_policy` paths resolve against, while a policy file is read.
    static BASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Sets the folder for relative `iam_policy` paths for the duration of one read.
pub(crate) struct BaseDir {
    previous: Option<PathBuf>,
}

impl BaseDir {
    pub(crate) fn enter(dir: Option<&Path>) -> BaseDir {
        let previous = BASE_DIR.with(|cell| cell.replace(dir.map(Path::to_path_buf)));
        BaseDir { previous }
    }
}

impl Drop for BaseDir {
    fn drop(&mut self) {
        let previous = self.previous.take();
        BASE_DIR.with(|cell| *cell.borrow_mut() = previous);
    }
}

/// The top level of a policy file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    pub identities: Vec<RawEntry>,
    /// Whether an identity that no entry matches is itself a finding.
    #[serde(default)]
    pub require_declared: bool,
}

/// One entry of `identities`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntry {
    #[serde(rename = "match")]
    pub pattern: Glob<IdentityGlob>,
    pub kind: Option<IdentityKind>,
    pub owner: Option<String>,
    #[serde(default)]
    pub allow: Vec<RawRule>,
    #[serde(default)]
    pub deny: Vec<RawRule>,
    pub iam_policy: Option<OneOrMany<IamFile>>,
    #[serde(default)]
    pub tools: Vec<RawTool>,
    pub workflow: Option<RawWorkflow>,
    pub hours: Option<HoursText>,
    #[serde(default)]
    pub sensitive: Vec<RawSensitive>,
    #[serde(default)]
    pub decision: BTreeMap<Severity, Decision>,
}

/// An `allow` or `deny` rule.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub action: Glob<ActionGlob>,
    pub resource: Option<OneOrMany<Glob<ResourceGlob>>>,
}

/// One entry of `tools`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTool {
    pub name: Glob<ActionGlob>,
    pub paths: Option<OneOrMany<Glob<PathGlob>>>,
    pub hosts: Option<OneOrMany<Glob<HostGlob>>>,
    pub targets: Option<OneOrMany<Glob<ResourceGlob>>>,
}

/// `workflow`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkflow {
    pub steps: WorkflowText,
    pub window: Option<DurationText>,
}

/// One `sensitive` item: an action glob, or `{action, resource}` (either or both).
#[derive(Debug)]
pub(crate) struct RawSensitive {
    pub action: Option<Glob<ActionGlob>>,
    pub resource: Option<Glob<ResourceGlob>>,
}

/// What kind of text a [`Glob`] is, and so how it compiles.
pub(crate) trait GlobKind {
    const FLAVOUR: Flavour;
}

macro_rules! glob_kinds {
    ($($(#[$doc:meta])* $name:ident => $flavour:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name;
        impl GlobKind for $name {
            const FLAVOUR: Flavour = $flavour;
        }
    )*};
}

glob_kinds! {
    /// `match`: a glob on identity ids.
    IdentityGlob => Flavour::Exact;
    /// An action glob.
    ActionGlob => Flavour::Action;
    /// A resource glob.
    ResourceGlob => Flavour::Exact;
    /// A tool's `paths`.
    PathGlob => Flavour::Path;
    /// A tool's `hosts`.
    HostGlob => Flavour::Host;
}

/// A glob's text, checked to compile when read.
pub(crate) struct Glob<K> {
    pub text: String,
    kind: std::marker::PhantomData<K>,
}

impl<K> fmt::Debug for Glob<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de, K: GlobKind> Deserialize<'de> for Glob<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "a glob", |text| {
            compile(text, K::FLAVOUR)?;
            Ok(Glob {
                text: text.to_owned(),
                kind: std::marker::PhantomData,
            })
        })
    }
}

/// The documents of one `iam_policy` file, read when the policy is read.
pub(crate) struct IamFile {
    pub docs: Vec<IamDocument>,
}

impl fmt::Debug for IamFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IamFile({} documents)", self.docs.len())
    }
}

impl<'de> Deserialize<'de> for IamFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "the path of an IAM policy file", |text| {
            let written = Path::new(text);
            let path = match BASE_DIR.with(|cell| cell.borrow().clone()) {
                Some(base) if written.is_relative() => base.join(written),
                _ => written.to_path_buf(),
            };
            if !path.is_file() {
                return Err(format!(
                    "IAM policy file `{text}` not found (looked for {})",
                    path.display()
                ));
            }
            let docs = iam::load_file(&path)
                .map_err(|e| format!("IAM policy file `{text}` is not valid: {e}"))?;
            Ok(IamFile { docs })
        })
    }
}

/// `workflow.steps`, compiled when read.
pub(crate) struct WorkflowText(pub Workflow);

impl fmt::Debug for WorkflowText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for WorkflowText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "a workflow expression", |text| {
            Workflow::parse(text).map(WorkflowText)
        })
    }
}

/// A duration (`30m`), in nanoseconds.
#[derive(Debug)]
pub(crate) struct DurationText(pub i64);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(deserializer, "a duration such as `30m`", |text| {
            parse_duration(text).map(DurationText)
        })
    }
}

/// `hours`: one string or a list of them, compiled when read.
pub(crate) struct HoursText(pub Hours);

impl fmt::Debug for HoursText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for HoursText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let OneOrMany(ranges) = OneOrMany::<HoursRange>::deserialize(deserializer)?;
        let texts: Vec<String> = ranges.into_iter().map(|r| r.0).collect();
        Hours::parse(&texts)
            .map(HoursText)
            .map_err(de::Error::custom)
    }
}

/// One string of `hours`, checked on its own so that an error points at it.
struct HoursRange(String);

impl<'de> Deserialize<'de> for HoursRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_str(
            deserializer,
            "approved hours such as `Mon-Fri 05:00-21:00 UTC`",
            |text| {
                Hours::parse(&[text])?;
                Ok(HoursRange(text.to_owned()))
            },
        )
    }
}

impl<'de> Deserialize<'de> for RawSensitive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Both {
            action: Option<Glob<ActionGlob>>,
            resource: Option<Glob<ResourceGlob>>,
        }

        struct Item;

        impl<'de> Visitor<'de> for Item {
            type Value = RawSensitive;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action glob, or a map with `action` and/or `resource`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                let action = Glob::deserialize(de::value::StrDeserializer::<E>::new(text))?;
                Ok(RawSensitive {
                    action: Some(action),
                    resource: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let both = Both::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if both.action.is_none() && both.resource.is_none() {
                    return Err(de::Error::custom(
                        "a sensitive item needs an `action` or a `resource`",
                    ));
                }
                Ok(RawSensitive {
                    action: both.action,
                    resource: both.resource,
                })
            }
        }

        deserializer.deserialize_any(Item)
    }
}
