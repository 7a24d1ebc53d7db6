//! AWS IAM identity-based policy documents as entitlements, evaluated the way AWS evaluates
//! identity policies within one account:
//!
//! 1. every statement of every document is considered;
//! 2. a matching `Deny` wins (explicit deny);
//! 3. otherwise a matching `Allow` is needed;
//! 4. otherwise the request is implicitly denied.
//!
//! A statement matches when its `Action` (or `NotAction`) admits the action, its `Resource` (or
//! `NotResource`) admits the resource, and its `Condition` holds. Action names compare
//! case-insensitively; resources case-sensitively. Wildcards are IAM's: `*` (any run of
//! characters) and `?` (one character), nothing else. An ARN pattern is matched segment by
//! segment (`arn:partition:service:region:account:resource`), so a `*` in the region cannot eat
//! into the account; the resource part may itself hold colons.
//!
//! What cannot be evaluated from telemetry is never silently ignored:
//! - **Conditions.** `IpAddress` / `NotIpAddress` on `aws:SourceIp` are evaluated against the
//!   event's source IP (a request from an AWS service, which has no `aws:SourceIp`, follows AWS's
//!   missing-key rule: the positive operator fails, the negated one holds). Every other condition
//!   is *unknown*: an `Allow` that depends on one is taken to apply, and a `Deny` that depends on
//!   one is taken not to, and either way the result names the statement
//!   ([`IamResult::uncertain`]) so the finding or report can say so.
//! - **Policy variables** (`${aws:username}` in a 2012-10-17 `Resource`) are matched as `*` and
//!   make the statement's outcome uncertain in the same way. `${*}`, `${?}` and `${$}` are the
//!   literal characters, as AWS defines.
//! - **An event without a resource.** A `Resource` pattern other than `*` cannot be checked; an
//!   `Allow` is given the benefit of the doubt and a `Deny` is not applied
//!   ([`IamResult::resource_unknown`]).
//!
//! Documents are read as AWS writes them: one document, a JSON array of documents, or the AWS
//! CLI's wrappers `{"PolicyDocument": ...}` (get-role-policy) and `{"PolicyVersion": {"Document":
//! ...}}` (get-policy-version). `Statement` is an object or an array; `Action`, `Resource` and the
//! values of a condition are a string or an array. `Principal` is refused: it belongs in a
//! resource policy, and an identity policy holding one is rejected by IAM.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::util::OneOrMany;
use crate::wildcard::Wild;

/// A statement's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Effect {
    /// `"Allow"`.
    Allow,
    /// `"Deny"`.
    Deny,
}

/// What evaluation decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IamDecision {
    /// A statement allows it and none denies it.
    Allow,
    /// A `Deny` statement matches.
    ExplicitDeny,
    /// No statement allows it.
    ImplicitDeny,
}

/// Which statement of which document: the document's index in the entry's list and the
/// statement's index in that document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatementRef {
    /// Index of the document among the entry's IAM documents.
    pub doc: u16,
    /// Index of the statement within the document.
    pub index: u16,
}

/// The result of evaluating one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IamResult {
    /// Allowed, explicitly denied or implicitly denied.
    pub decision: IamDecision,
    /// The statement that decided it (the deny, or the allow), when one did.
    pub statement: Option<StatementRef>,
    /// A statement whose condition or policy variable could not be evaluated and that could
    /// change the decision: the allow relied on it, or a deny might have applied.
    pub uncertain: Option<StatementRef>,
    /// The event had no resource, and a statement that mattered names specific resources.
    pub resource_unknown: bool,
}

/// What evaluation knows about the request besides action and resource.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestContext<'a> {
    /// The caller's source address as the event recorded it (an IP, or an AWS service's host
    /// name, which means the key `aws:SourceIp` is absent).
    pub source_ip: Option<&'a str>,
}

/// Whether one IAM action pattern (`ecr:*`, `s3:Get?bject`) covers `action`, case-insensitively.
pub(crate) fn action_matches(pattern: &str, action: &str) -> bool {
    Wild::new(pattern, false).0.matches(action, true)
}

/// A `Resource` pattern.
#[derive(Clone, Debug)]
enum ResourcePattern {
    /// `*`.
    Any,
    /// An ARN, matched segment by segment; its leading plain segments (`arn:aws:s3:::`) are
    /// checked at once, as a prefix of the resource.
    Arn {
        /// The leading plain segments, each followed by its `:` (the whole ARN when every
        /// segment is plain).
        prefix: Box<str>,
        /// How many segments the prefix covers.
        plain: usize,
        /// Every segment.
        parts: Box<[ArnPart; 6]>,
    },
    /// Anything else, matched whole.
    Plain(Wild),
}

impl ResourcePattern {
    fn new(text: &str, variables: bool) -> (Self, bool) {
        let (whole, unresolved) = Wild::new(text, variables);
        if whole.is_any() {
            return (ResourcePattern::Any, unresolved);
        }
        if text.starts_with("arn:") {
            let parts: Vec<&str> = text.splitn(6, ':').collect();
            if let Ok(parts) = <[&str; 6]>::try_from(parts) {
                let parts = parts.map(|part| ArnPart::new(Wild::new(part, variables).0));
                let plain = parts
                    .iter()
                    .take_while(|p| matches!(p, ArnPart::Literal(_)))
                    .count();
                let mut prefix = String::new();
                for (i, part) in parts[..plain].iter().enumerate() {
                    if let ArnPart::Literal(text) = part {
                        prefix.push_str(text);
                    }
                    if i < 5 {
                        prefix.push(':');
                    }
                }
                let pattern = ResourcePattern::Arn {
                    prefix: prefix.into(),
                    plain,
                    parts: Box::new(parts),
                };
                return (pattern, unresolved);
            }
        }
        (ResourcePattern::Plain(whole), unresolved)
    }

    fn matches(&self, resource: &Resource<'_>) -> bool {
        match self {
            ResourcePattern::Any => true,
            ResourcePattern::Plain(wild) => wild.matches(resource.text, false),
            ResourcePattern::Arn {
                prefix,
                plain,
                parts,
            } => {
                // The first `plain` segments, with their colons, are exactly the prefix.
                if !resource.text.starts_with(&**prefix) {
                    return false;
                }
                if *plain == parts.len() {
                    return resource.text.len() == prefix.len();
                }
                resource.arn.is_some_and(|arn| {
                    parts[*plain..]
                        .iter()
                        .zip(&arn[*plain..])
                        .all(|(segment, part)| segment.matches(part))
                })
            }
        }
    }
}

/// One segment of an ARN pattern: most are `*` or plain text (`arn`, `aws`, a service, an
/// account), which need no wildcard matching.
#[derive(Clone, Debug)]
enum ArnPart {
    Any,
    Literal(Box<str>),
    Wild(Wild),
}

impl ArnPart {
    fn new(wild: Wild) -> Self {
        if wild.is_any() {
            return ArnPart::Any;
        }
        match wild.literal() {
            Some(text) => ArnPart::Literal(text.into()),
            None => ArnPart::Wild(wild),
        }
    }

    fn matches(&self, part: &str) -> bool {
        match self {
            ArnPart::Any => true,
            ArnPart::Literal(text) => **text == *part,
            ArnPart::Wild(wild) => wild.matches(part, false),
        }
    }
}

/// A request's resource, with its ARN segments split once for every statement that checks it.
struct Resource<'a> {
    text: &'a str,
    /// The six `:`-separated parts of an ARN (the last keeps its colons); `None` when the text
    /// has fewer parts.
    arn: Option<[&'a str; 6]>,
}

impl<'a> Resource<'a> {
    fn new(text: &'a str) -> Self {
        // A byte loop: resources are short, and a `str::splitn` searcher costs more here.
        let mut arn = [""; 6];
        let mut start = 0;
        let mut found = 0;
        for (i, byte) in text.bytes().enumerate() {
            if byte == b':' {
                arn[found] = text.get(start..i).unwrap_or_default();
                start = i + 1;
                found += 1;
                if found == 5 {
                    break;
                }
            }
        }
        arn[5] = text.get(start..).unwrap_or_default();
        Resource {
            text,
            arn: (found == 5).then_some(arn),
        }
    }
}

/// `Action` or `NotAction`, `Resource` or `NotResource`: a list and whether it is negated.
#[derive(Clone, Debug)]
struct Element<T> {
    negated: bool,
    items: Vec<T>,
    texts: Vec<String>,
}

/// An IPv4 or IPv6 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Net {
    addr: u128,
    mask: u128,
    v4: bool,
}

impl Net {
    fn parse(text: &str) -> Option<Net> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits.parse::<u32>().ok()?)),
            None => (text, None),
        };
        let (addr, v4, width) = match addr.trim().parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), true, 32),
            IpAddr::V6(v6) => (u128::from(v6), false, 128),
        };
        let bits = bits.unwrap_or(width);
        if bits > width {
            return None;
        }
        let host_bits = width - bits;
        let mask = if bits == 0 {
            0
        } else {
            (u128::MAX >> (128 - width)) & !((1u128 << host_bits) - 1)
        };
        Some(Net {
            addr: addr & mask,
            mask,
            v4,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (addr, v4) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), true),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if self.v4 => (u128::from(u32::from(v4)), true),
                _ => (u128::from(v6), false),
            },
        };
        v4 == self.v4 && addr & self.mask == self.addr
    }
}

/// One operator-and-key test of a `Condition` block.
#[derive(Clone, Debug)]
enum Clause {
    /// `IpAddress` / `NotIpAddress` on `aws:SourceIp`.
    SourceIp { negated: bool, nets: Vec<Net> },
    /// Anything nhiwatch cannot evaluate from telemetry.
    Unknown,
}

/// Three-valued truth: a condition that cannot be evaluated is neither true nor false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

/// One statement, compiled.
#[derive(Clone, Debug)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    action: Element<Wild>,
    resource: Element<ResourcePattern>,
    clauses: Vec<Clause>,
    unevaluable: Vec<String>,
}

impl Statement {
    /// The statement's `Sid`, when it has one.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// `Allow` or `Deny`.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Whether the action list is a `NotAction`.
    pub fn not_action(&self) -> bool {
        self.action.negated
    }

    /// The `Action` (or `NotAction`) patterns as written.
    pub fn actions(&self) -> &[String] {
        &self.action.texts
    }

    /// Whether the resource list is a `NotResource`.
    pub fn not_resource(&self) -> bool {
        self.resource.negated
    }

    /// The `Resource` (or `NotResource`) patterns as written.
    pub fn resources(&self) -> &[String] {
        &self.resource.texts
    }

    /// What in this statement cannot be evaluated from telemetry, one line each
    /// (`StringEquals aws:PrincipalTag/team`, `policy variable ${aws:username}`).
    pub fn unevaluable(&self) -> &[String] {
        &self.unevaluable
    }

    /// Whether the statement's action part admits `action` (case-insensitive).
    pub fn admits_action(&self, action: &str) -> bool {
        let any = self.action.items.iter().any(|w| w.matches(action, true));
        any != self.action.negated
    }

    /// Whether the resource part admits `resource`; `None` when the resource is not known and
    /// the statement names specific resources.
    fn admits_resource(&self, resource: Option<&Resource<'_>>) -> Option<bool> {
        let Some(resource) = resource else {
            return self.any_resource().then_some(true);
        };
        let any = self.resource.items.iter().any(|p| p.matches(resource));
        Some(any != self.resource.negated)
    }

    /// Whether the resource part admits every resource (`"Resource": "*"`).
    fn any_resource(&self) -> bool {
        !self.resource.negated
            && self
                .resource
                .items
                .iter()
                .any(|p| matches!(p, ResourcePattern::Any))
    }

    /// Whether the statement's verdict on an action it admits is the same for every request:
    /// it applies to any resource and its conditions do not read the request.
    fn request_free(&self) -> bool {
        self.any_resource()
            && self
                .clauses
                .iter()
                .all(|clause| matches!(clause, Clause::Unknown))
    }

    fn condition(&self, ctx: &RequestContext<'_>) -> Truth {
        let mut truth = Truth::True;
        // Parsed once, and only for a statement that tests it.
        let mut ip = None;
        for clause in &self.clauses {
            let this = match clause {
                Clause::Unknown => Truth::Unknown,
                // A missing key fails the positive operator and satisfies the negated one.
                Clause::SourceIp { negated, nets } => {
                    let ip = *ip.get_or_insert_with(|| {
                        ctx.source_ip
                            .and_then(|text| text.trim().parse::<IpAddr>().ok())
                    });
                    let inside = ip.is_some_and(|ip| nets.iter().any(|net| net.contains(ip)));
                    if inside != *negated {
                        Truth::True
                    } else {
                        Truth::False
                    }
                }
            };
            match this {
                Truth::False => return Truth::False,
                Truth::Unknown => truth = Truth::Unknown,
                Truth::True => {}
            }
        }
        if truth == Truth::True && !self.unevaluable.is_empty() {
            // Unresolved policy variables widen a resource pattern to `*`.
            return Truth::Unknown;
        }
        truth
    }
}

/// One IAM policy document, compiled.
#[derive(Clone, Debug)]
pub struct IamDocument {
    source: String,
    statements: Vec<Statement>,
}

impl IamDocument {
    /// Where the document came from (file name, and `#n` for the n-th of several).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The statements, in order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }
}

/// The IAM documents of one policy entry, evaluated together.
#[derive(Clone, Debug, Default)]
pub struct IamPolicies {
    docs: Vec<IamDocument>,
}

impl IamPolicies {
    /// Documents to evaluate together.
    pub fn new(docs: Vec<IamDocument>) -> Self {
        IamPolicies { docs }
    }

    /// The documents.
    pub fn documents(&self) -> &[IamDocument] {
        &self.docs
    }

    /// Whether there is no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The statement behind a reference.
    pub fn statement(&self, at: StatementRef) -> Option<&Statement> {
        self.docs
            .get(usize::from(at.doc))?
            .statements
            .get(usize::from(at.index))
    }

    /// A short human name for a statement: `file.json Sid "Deploy"` or `file.json statement 2`.
    pub fn describe(&self, at: StatementRef) -> String {
        let Some(doc) = self.docs.get(usize::from(at.doc)) else {
            return format!("IAM statement {}:{}", at.doc, at.index);
        };
        match doc
            .statements
            .get(usize::from(at.index))
            .and_then(Statement::sid)
        {
            Some(sid) => format!("{} Sid \"{sid}\"", doc.source),
            None => format!("{} statement {}", doc.source, at.index),
        }
    }

    /// Every statement whose `Action`/`NotAction` admits `action`: the only ones whose resource
    /// and condition need checking for a request with that action. Callers cache this per action.
    pub fn statements_for_action(&self, action: &str) -> Vec<StatementRef> {
        let mut found = Vec::new();
        for (d, doc) in self.docs.iter().enumerate() {
            for (s, statement) in doc.statements.iter().enumerate() {
                if statement.admits_action(action) {
                    found.push(StatementRef {
                        doc: d as u16,
                        index: s as u16,
                    });
                }
            }
        }
        found
    }

    /// Whether evaluating these statements gives the same result for every request (every one
    /// applies to any resource and has no condition on the request), so that it can be
    /// worked out once per action.
    pub fn request_free(&self, candidates: &[StatementRef]) -> bool {
        candidates
            .iter()
            .all(|&at| self.statement(at).is_some_and(Statement::request_free))
    }

    /// Evaluates a request, given the statements whose action part admits it
    /// ([`IamPolicies::statements_for_action`]).
    pub fn evaluate_with(
        &self,
        candidates: &[StatementRef],
        resource: Option<&str>,
        ctx: &RequestContext<'_>,
    ) -> IamResult {
        let mut result = IamResult {
            decision: IamDecision::ImplicitDeny,
            statement: None,
            uncertain: None,
            resource_unknown: false,
        };
        let mut unsure_allow = None;
        let mut unsure_deny = None;
        let resource = resource.map(Resource::new);
        for &at in candidates {
            let Some(statement) = self.statement(at) else {
                continue;
            };
            let deny = statement.effect == Effect::Deny;
            let applies = match statement.admits_resource(resource.as_ref()) {
                Some(false) => continue,
                Some(true) => true,
                None => {
                    // Resource unknown: the benefit of the doubt, never a deny on a guess.
                    result.resource_unknown = true;
                    !deny
                }
            };
            if !applies {
                continue;
            }
            match statement.condition(ctx) {
                Truth::False => {}
                Truth::True if deny => {
                    result.decision = IamDecision::ExplicitDeny;
                    result.statement = Some(at);
                    result.uncertain = None;
                    return result;
                }
                Truth::True => {
                    if result.statement.is_none() {
                        result.decision = IamDecision::Allow;
                        result.statement = Some(at);
                    }
                }
                Truth::Unknown if deny => {
                    unsure_deny.get_or_insert(at);
                }
                Truth::Unknown => {
                    unsure_allow.get_or_insert(at);
                }
            }
        }
        if result.statement.is_none() {
            if let Some(at) = unsure_allow {
                result.decision = IamDecision::Allow;
                result.statement = Some(at);
                result.uncertain = Some(at);
            }
        }
        if result.uncertain.is_none() {
            result.uncertain = unsure_deny;
        }
        result
    }

    /// Evaluates a request from scratch (finds the candidate statements first).
    pub fn evaluate(
        &self,
        action: &str,
        resource: Option<&str>,
        ctx: &RequestContext<'_>,
    ) -> IamResult {
        self.evaluate_with(&self.statements_for_action(action), resource, ctx)
    }
}

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamError {
    /// Where in the document, e.g. `Statement[2].Condition`; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for IamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for IamError {}

fn err(path: impl Into<String>, reason: impl Into<String>) -> IamError {
    IamError {
        path: path.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    #[serde(rename = "Version")]
    version: Option<String>,
    #[serde(rename = "Id")]
    _id: Option<String>,
    #[serde(rename = "Statement")]
    statement: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(rename = "Sid")]
    sid: Option<String>,
    #[serde(rename = "Effect")]
    effect: String,
    #[serde(rename = "Action")]
    action: Option<OneOrMany<String>>,
    #[serde(rename = "NotAction")]
    not_action: Option<OneOrMany<String>>,
    #[serde(rename = "Resource")]
    resource: Option<OneOrMany<String>>,
    #[serde(rename = "NotResource")]
    not_resource: Option<OneOrMany<String>>,
    #[serde(rename = "Condition")]
    condition: Option<BTreeMap<String, BTreeMap<String, Value>>>,
    #[serde(rename = "Principal")]
    principal: Option<Value>,
    #[serde(rename = "NotPrincipal")]
    not_principal: Option<Value>,
}

/// Reads the documents in a file (see the module documentation for the forms accepted).
pub fn load_file(path: &Path) -> Result<Vec<IamDocument>, IamError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
    parse(&text, &path.display().to_string())
}

/// Reads the documents in `text`; `source` names them in descriptions.
pub fn parse(text: &str, source: &str) -> Result<Vec<IamDocument>, IamError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        err(
            "",
            format!("not JSON (line {}, column {}): {e}", e.line(), e.column()),
        )
    })?;
    let docs: Vec<(String, Value)> = match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, doc)| (format!("[{i}]"), doc))
            .collect(),
        Value::Object(mut map) => {
            if let Some(doc) = map.remove("PolicyDocument") {
                vec![("PolicyDocument".to_owned(), doc)]
            } else if let Some(Value::Object(mut version)) = map.remove("PolicyVersion") {
                let doc = version
                    .remove("Document")
                    .ok_or_else(|| err("PolicyVersion", "has no Document"))?;
                vec![("PolicyVersion.Document".to_owned(), doc)]
            } else {
                vec![(String::new(), Value::Object(map))]
            }
        }
        _ => return Err(err("", "expected a policy document (a JSON object)")),
    };
    let several = docs.len() > 1;
    docs.into_iter()
        .enumerate()
        .map(|(i, (path, doc))| {
            let name = if several {
                format!("{source}#{i}")
            } else {
                source.to_owned()
            };
            compile_document(doc, &path, name)
        })
        .collect()
}

fn compile_document(doc: Value, path: &str, source: String) -> Result<IamDocument, IamError> {
    // A document may be a JSON string holding the document (how some exports embed it).
    let doc = match doc {
        Value::String(text) => serde_json::from_str(&text).map_err(|e| {
            err(
                path,
                format!("holds a string that is not a JSON document: {e}"),
            )
        })?,
        other => other,
    };
    let raw: RawDocument = serde_json::from_value(doc).map_err(|e| err(path, e.to_string()))?;
    let variables = match raw.version.as_deref() {
        Some("2012-10-17") => true,
        Some("2008-10-17") | None => false,
        Some(other) => {
            return Err(err(
                join(path, "Version"),
                format!(
                    "`{other}` is not an IAM policy language version (2012-10-17 or 2008-10-17)"
                ),
            ))
        }
    };
    let statements = match raw.statement {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(err(
                join(path, "Statement"),
                "expected a statement object or an array of them",
            ))
        }
    };
    let statements = statements
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            compile_statement(value, &join(path, &format!("Statement[{i}]")), variables)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IamDocument { source, statements })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn compile_statement(value: Value, path: &str, variables: bool) -> Result<Statement, IamError> {
    let raw: RawStatement = serde_json::from_value(value).map_err(|e| err(path, e.to_string()))?;
    if raw.principal.is_some() || raw.not_principal.is_some() {
        return Err(err(
            path,
            "has a Principal: that belongs in a resource-based policy, and IAM refuses it in an identity-based one",
        ));
    }
    let effect = match raw.effect.as_str() {
        "Allow" => Effect::Allow,
        "Deny" => Effect::Deny,
        other => {
            return Err(err(
                join(path, "Effect"),
                format!("`{other}` is neither `Allow` nor `Deny`"),
            ))
        }
    };
    let (negated, texts) = match (raw.action, raw.not_action) {
        (Some(list), None) => (false, list.0),
        (None, Some(list)) => (true, list.0),
        (Some(_), Some(_)) => return Err(err(path, "has both Action and NotAction")),
        (None, None) => return Err(err(path, "has neither Action nor NotAction")),
    };
    for text in &texts {
        if text.is_empty() {
            return Err(err(join(path, "Action"), "an action pattern is empty"));
        }
        if text != "*" && !text.contains(':') {
            return Err(err(
                join(path, "Action"),
                format!("`{text}` is not `service:action` (or `*`)"),
            ));
        }
    }
    let action = Element {
        negated,
        items: texts.iter().map(|t| Wild::new(t, false).0).collect(),
        texts,
    };
    let (negated, texts) = match (raw.resource, raw.not_resource) {
        (Some(list), None) => (false, list.0),
        (None, Some(list)) => (true, list.0),
        (Some(_), Some(_)) => return Err(err(path, "has both Resource and NotResource")),
        (None, None) => {
            return Err(err(
                path,
                "has neither Resource nor NotResource (an identity-based policy needs one)",
            ))
        }
    };
    let mut unevaluable = Vec::new();
    let mut items = Vec::with_capacity(texts.len());
    for text in &texts {
        let (pattern, unresolved) = ResourcePattern::new(text, variables);
        if unresolved {
            unevaluable.push(format!("policy variable in resource `{text}`"));
        }
        items.push(pattern);
    }
    let resource = Element {
        negated,
        items,
        texts,
    };
    let mut clauses = Vec::new();
    for (operator, keys) in raw.condition.unwrap_or_default() {
        for (key, values) in keys {
            let clause = condition_clause(&operator, &key, &values)
                .map_err(|reason| err(format!("{path}.Condition.{operator}.{key}"), reason))?;
            if matches!(clause, Clause::Unknown) {
                unevaluable.push(format!("condition {operator} {key}"));
            }
            clauses.push(clause);
        }
    }
    Ok(Statement {
        sid: raw.sid,
        effect,
        action,
        resource,
        clauses,
        unevaluable,
    })
}

fn condition_clause(operator: &str, key: &str, values: &Value) -> Result<Clause, String> {
    let negated = match operator {
        "IpAddress" => false,
        "NotIpAddress" => true,
        _ => return Ok(Clause::Unknown),
    };
    if !key.eq_ignore_ascii_case("aws:SourceIp") {
        return Ok(Clause::Unknown);
    }
    let texts: Vec<&str> = match values {
        Value::String(one) => vec![one],
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or("expected IP addresses or CIDR blocks as strings")
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("expected an IP address, a CIDR block or a list of them".into()),
    };
    let nets = texts
        .iter()
        .map(|text| {
            Net::parse(text).ok_or_else(|| format!("`{text}` is not an IP address or CIDR block"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Clause::SourceIp { negated, nets })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(json: &str) -> IamPolicies {
        IamPolicies::new(parse(json, "test.json").unwrap())
    }

    proptest::proptest! {
        /// A resource's ARN parts are `splitn(6, ':')`'s, when there are six.
        #[test]
        fn resource_parts_are_the_colon_separated_fields(text in "[a-z:/*é-]{0,40}") {
            let mut parts = text.splitn(6, ':');
            let mut expected = [""; 6];
            let complete = expected
                .iter_mut()
                .all(|slot| parts.next().map(|part| *slot = part).is_some());
            let resource = Resource::new(&text);
            proptest::prop_assert_eq!(resource.arn, complete.then_some(expected));
        }
    }

    #[test]
    fn arn_patterns_match_segment_by_segment() {
        let (p, _) = ResourcePattern::new("arn:aws:*:us-east-1:*:*", true);
        assert!(p.matches(&Resource::new("arn:aws:s3:us-east-1:123:thing")));
        assert!(!p.matches(&Resource::new("arn:aws:s3:us-west-2:123:thing")));
        let (p, _) = ResourcePattern::new("arn:aws:iam::*:*", true);
        assert!(p.matches(&Resource::new("arn:aws:iam::123456789012:role/ci")));
        assert!(!p.matches(&Resource::new("arn:aws:s3:::bucket")));
        // A `*` in one segment does not swallow the next: the account stays the account.
        let (p, _) = ResourcePattern::new("arn:aws:logs:*:111:log-group:*", true);
        assert!(p.matches(&Resource::new(
            "arn:aws:logs:eu-west-1:111:log-group:app:log-stream:x"
        )));
        assert!(!p.matches(&Resource::new("arn:aws:logs:eu-west-1:222:log-group:x")));
        assert!(!p.matches(&Resource::new("arn:aws:logs:eu-west-1")));
        // Plain segments are checked as one prefix; a plain ARN is matched whole.
        let (p, _) = ResourcePattern::new("arn:aws:s3:::bucket", true);
        assert!(p.matches(&Resource::new("arn:aws:s3:::bucket")));
        assert!(!p.matches(&Resource::new("arn:aws:s3:::bucket/key")));
        assert!(!p.matches(&Resource::new("arn:aws:s3:::bucke")));
        let (p, _) = ResourcePattern::new("arn:aws:s3:::bucket/*", true);
        assert!(p.matches(&Resource::new("arn:aws:s3:::bucket/a:b")));
        assert!(!p.matches(&Resource::new("arn:aws:s3:::bucketx/key")));
        let (p, _) = ResourcePattern::new("arn:aws:iam::123:role/x", true);
        assert!(!p.matches(&Resource::new("arn:aws:iam::1234:role/x")));
        assert!(!p.matches(&Resource::new("arn:aws:iam::123:role/x:y")));
        let (p, _) = ResourcePattern::new("arn:aws:dynamodb:*:444:table/t", true);
        assert!(p.matches(&Resource::new("arn:aws:dynamodb:eu-west-1:444:table/t")));
        assert!(!p.matches(&Resource::new("arn:aws:dynamodb:eu-west-1:444:table/tt")));
        assert!(!p.matches(&Resource::new("arn:aws:dynamodb")));
    }

    #[test]
    fn policy_variables_are_unresolved_except_the_escapes() {
        let (wild, unresolved) = Wild::new("home/${aws:username}/*", true);
        assert!(unresolved);
        assert!(wild.matches("home/anyone/x", false));
        let (wild, unresolved) = Wild::new("literal-${*}-${?}-${$}", true);
        assert!(!unresolved);
        assert!(wild.matches("literal-*-?-$", false));
        assert!(!wild.matches("literal-a-b-c", false));
        // Version 2008-10-17 has no variables: the text is literal.
        let (wild, unresolved) = Wild::new("${x}", false);
        assert!(!unresolved);
        assert!(wild.matches("${x}", false));
    }

    /// AWS's documented evaluation logic, one request per row:
    /// (documents, action, resource, source ip, expected decision, deciding Sid).
    #[test]
    fn evaluation_table() {
        // "Allow s3 on one bucket's objects, but never delete": explicit deny overrides allow.
        let s3 = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"ReadWrite","Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::bucket/*"},
            {"Sid":"NoDelete","Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}]}"#;
        // AWS's NotAction example: everything except IAM.
        let not_iam = r#"{"Version":"2012-10-17","Statement":
            {"Sid":"AllButIam","Effect":"Allow","NotAction":"iam:*","Resource":"*"}}"#;
        // AWS's NotResource example: all of S3 except the payroll prefix.
        let not_payroll = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"AllButPayroll","Effect":"Allow","Action":"s3:*",
             "NotResource":["arn:aws:s3:::HRBucket/Payroll","arn:aws:s3:::HRBucket/Payroll/*"]}]}"#;
        // AWS's example: deny everything except IAM user self-service from outside a network.
        let ip_fence = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"Ec2","Effect":"Allow","Action":"ec2:Describe*","Resource":"*"},
            {"Sid":"Fence","Effect":"Deny","Action":"*","Resource":"*",
             "Condition":{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}}]}"#;
        // Two documents: the deny in the second wins over the allow in the first.
        let two_docs = r#"[
            {"Version":"2012-10-17","Statement":[{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"}]},
            {"Version":"2012-10-17","Statement":[{"Sid":"NoIam","Effect":"Deny","Action":["iam:Create*","iam:Attach*"],"Resource":"*"}]}]"#;
        use IamDecision::*;
        /// (documents, action, resource, source ip, expected decision, deciding Sid)
        type Row<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            IamDecision,
            Option<&'a str>,
        );
        let rows: [Row<'_>; 18] = [
            (
                s3,
                "s3:GetObject",
                Some("arn:aws:s3:::bucket/a.txt"),
                None,
                Allow,
                Some("ReadWrite"),
            ),
            (
                s3,
                "S3:GETOBJECT",
                Some("arn:aws:s3:::bucket/a.txt"),
                None,
                Allow,
                Some("ReadWrite"),
            ),
            (
                s3,
                "s3:DeleteObject",
                Some("arn:aws:s3:::bucket/a.txt"),
                None,
                ExplicitDeny,
                Some("NoDelete"),
            ),
            (
                s3,
                "s3:ListBucket",
                Some("arn:aws:s3:::bucket"),
                None,
                ImplicitDeny,
                None,
            ),
            (
                s3,
                "s3:GetObject",
                Some("arn:aws:s3:::other/a.txt"),
                None,
                ImplicitDeny,
                None,
            ),
            (
                s3,
                "ec2:RunInstances",
                Some("arn:aws:ec2:us-east-1:1:instance/i-1"),
                None,
                ImplicitDeny,
                None,
            ),
            (
                not_iam,
                "s3:GetObject",
                Some("arn:aws:s3:::x/y"),
                None,
                Allow,
                Some("AllButIam"),
            ),
            (
                not_iam,
                "iam:CreateUser",
                Some("arn:aws:iam::1:user/x"),
                None,
                ImplicitDeny,
                None,
            ),
            (not_iam, "IAM:createuser", None, None, ImplicitDeny, None),
            (
                not_payroll,
                "s3:GetObject",
                Some("arn:aws:s3:::HRBucket/Payroll/2024.csv"),
                None,
                ImplicitDeny,
                None,
            ),
            (
                not_payroll,
                "s3:GetObject",
                Some("arn:aws:s3:::HRBucket/Holidays/2024.csv"),
                None,
                Allow,
                Some("AllButPayroll"),
            ),
            (
                not_payroll,
                "s3:ListBucket",
                Some("arn:aws:s3:::HRBucket"),
                None,
                Allow,
                Some("AllButPayroll"),
            ),
            (
                ip_fence,
                "ec2:DescribeInstances",
                None,
                Some("192.0.2.7"),
                Allow,
                Some("Ec2"),
            ),
            (
                ip_fence,
                "ec2:DescribeInstances",
                None,
                Some("198.51.100.1"),
                ExplicitDeny,
                Some("Fence"),
            ),
            // An AWS service calling on the identity's behalf has no aws:SourceIp: NotIpAddress holds.
            (
                ip_fence,
                "ec2:DescribeInstances",
                None,
                Some("ec2.amazonaws.com"),
                ExplicitDeny,
                Some("Fence"),
            ),
            (
                two_docs,
                "iam:CreateAccessKey",
                None,
                None,
                ExplicitDeny,
                Some("NoIam"),
            ),
            (two_docs, "iam:ListRoles", None, None, Allow, Some("All")),
            (
                two_docs,
                "s3:PutObject",
                Some("arn:aws:s3:::b/k"),
                None,
                Allow,
                Some("All"),
            ),
        ];
        for (doc, action, resource, ip, decision, sid) in rows {
            let p = policies(doc);
            let ctx = RequestContext { source_ip: ip };
            let result = p.evaluate(action, resource, &ctx);
            assert_eq!(
                result.decision, decision,
                "{action} on {resource:?} from {ip:?}"
            );
            let got = result
                .statement
                .and_then(|at| p.statement(at))
                .and_then(Statement::sid);
            assert_eq!(got, sid, "{action} on {resource:?}");
        }
    }

    #[test]
    fn unevaluable_conditions_are_reported_not_ignored() {
        let p = policies(
            r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"TaggedOnly","Effect":"Allow","Action":"ec2:StartInstances","Resource":"*",
             "Condition":{"StringEquals":{"aws:ResourceTag/team":"web"}}},
            {"Sid":"NoMfaNoIam","Effect":"Deny","Action":"iam:*","Resource":"*",
             "Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}},
            {"Sid":"Read","Effect":"Allow","Action":"iam:Get*","Resource":"*"}]}"#,
        );
        let tagged = StatementRef { doc: 0, index: 0 };
        let mfa = StatementRef { doc: 0, index: 1 };
        let start = p.evaluate("ec2:StartInstances", None, &RequestContext::default());
        assert_eq!(start.decision, IamDecision::Allow);
        assert_eq!(start.uncertain, Some(tagged));
        let get = p.evaluate("iam:GetRole", None, &RequestContext::default());
        assert_eq!(
            get.decision,
            IamDecision::Allow,
            "an unknown deny is not applied"
        );
        assert_eq!(get.uncertain, Some(mfa), "but it is reported");
        assert_eq!(
            p.statement(tagged).unwrap().unevaluable(),
            ["condition StringEquals aws:ResourceTag/team"]
        );
        assert_eq!(p.describe(mfa), "test.json Sid \"NoMfaNoIam\"");
    }

    #[test]
    fn unknown_resources_get_the_benefit_of_the_doubt() {
        let p = policies(
            r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"},
            {"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/secret/*"}]}"#,
        );
        let r = p.evaluate("s3:GetObject", None, &RequestContext::default());
        assert_eq!((r.decision, r.resource_unknown), (IamDecision::Allow, true));
        let r = p.evaluate(
            "s3:GetObject",
            Some("arn:aws:s3:::b/secret/k"),
            &RequestContext::default(),
        );
        assert_eq!(r.decision, IamDecision::ExplicitDeny);
    }

    #[test]
    fn document_forms() {
        let cli = r#"{"PolicyVersion":{"Document":{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}},"VersionId":"v1"}}"#;
        assert_eq!(parse(cli, "x").unwrap()[0].statements().len(), 1);
        let role = r#"{"RoleName":"r","PolicyName":"p","PolicyDocument":{"Statement":[{"Effect":"Deny","Action":["a:b","c:d"],"Resource":["*"]}]}}"#;
        let docs = parse(role, "x").unwrap();
        assert_eq!(docs[0].statements()[0].actions(), ["a:b", "c:d"]);
        assert_eq!(docs[0].statements()[0].effect(), Effect::Deny);
        let embedded =
            r#"["{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}"]"#;
        assert_eq!(parse(embedded, "x").unwrap()[0].source(), "x");
    }

    #[test]
    fn malformed_documents_name_the_place() {
        let cases = [
            ("[1", "not JSON"),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"s3:*"}]}"#,
                "Statement[0]: has neither Resource",
            ),
            (
                r#"{"Statement":[{"Effect":"allow","Action":"s3:*","Resource":"*"}]}"#,
                "Statement[0].Effect: `allow`",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Actions":"s3:*","Resource":"*"}}"#,
                "unknown field `Actions`",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","NotAction":"x:y","Resource":"*"}}"#,
                "both Action and NotAction",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
                "Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"GetObject","Resource":"*"}}"#,
                "not `service:action`",
            ),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "Version"),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}}}"#,
                "Statement[0].Condition.IpAddress.aws:SourceIp: `10.0.0.0/33`",
            ),
        ];
        for (doc, expected) in cases {
            let message = parse(doc, "x").unwrap_err().to_string();
            assert!(message.contains(expected), "{doc}: {message}");
        }
    }

    #[test]
    fn networks() {
        let net = Net::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Net::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Net::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!(Net::parse("1.2.3.4")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Net::parse("nope").is_none());
    }
}
