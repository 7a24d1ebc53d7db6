//! AWS CloudTrail records, one at a time (the [`Reader`](crate::Reader) opens `{"Records": [...]}`
//! files, gzip, zip and one-record-per-line exports and hands each record here).
//!
//! Normalisation (DESIGN.md, "Normalised event"):
//! - **identity**: an assumed-role session is attributed to its role
//!   (`arn:aws:iam::ACCT:role/[path/]NAME`, from `sessionContext.sessionIssuer.arn` when present,
//!   which keeps the role path; otherwise rewritten from the `assumed-role` ARN), with the session
//!   name kept in `identity.session`. An IAM user is its user ARN, of kind `user` when it acts
//!   through a console session and `api_key` otherwise (see `console_session` for how that is
//!   told); root is a
//!   `user`; an AWS service acting for itself is its `invokedBy` host (`ec2.amazonaws.com`) of
//!   kind `workload`; a web-identity principal (EKS IRSA, GitHub OIDC) is its subject
//!   (`system:serviceaccount:ns:name`). The credential is `accessKeyId`.
//! - **action**: `<IAM prefix>:<operation>` ([`aws::iam_prefix`], [`aws::operation`]), so that
//!   policy globs written in IAM action names match; **action_class** from [`aws::classify`].
//! - **resource**: the first `resources[].ARN`, else an ARN composed from the request parameters
//!   that name the object (`bucketName`+`key`, `roleName`, `functionName`, `instanceId`, ...),
//!   else the bare name when the account is not known.
//! - **outcome**: `errorCode` → `denied` when it is a refusal ([`aws::is_denial`]), else `error`;
//!   a `ConsoleLogin` whose response says `Failure` is `denied`.
//! - **time**: `eventTime`, else Panther's `p_event_time`, else the `@timestamp` an ELK pipeline
//!   adds; times without a UTC offset (as Panther writes them) are UTC. A record with no readable
//!   time gets the time it was read, flagged `time_inferred`.
//!
//! Panther stores some records with lower-case keys (`eventname`, `useridentity`, ...); those
//! are read as aliases. A record without `eventName`, or with a value of the wrong type where a
//! string is needed, is rejected with the field named.

mod memo;

use std::borrow::Cow;

use nhiwatch_model::{content_id, Event, Identity, IdentityKind, Outcome, Source, Text, Timestamp};
use serde_json::value::RawValue;

use crate::aws;
use crate::json::{self, Field, Json, Shape};
use crate::{parse_time, DecodeError, RecordDecoder};
use memo::{IdentityMemo, Probe};

/// Decodes CloudTrail records. Its only state is a memo of the identities it resolved (see
/// `memo`), which changes how fast a record decodes, never what it decodes to.
#[derive(Debug, Default)]
pub struct CloudTrailDecoder {
    identities: IdentityMemo,
}

impl RecordDecoder for CloudTrailDecoder {
    fn decode<'a>(
        &mut self,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        emit(decode(record, &mut self.identities)?);
        Ok(())
    }
}

/// Decodes one CloudTrail record into its normalised event.
pub fn decode_record(record: &str) -> Result<Event<'_>, DecodeError> {
    decode(record, &mut IdentityMemo::default())
}

fn decode<'a>(record: &'a str, identities: &mut IdentityMemo) -> Result<Event<'a>, DecodeError> {
    let record = record.trim_ascii();
    let mut parsed = Record::default();
    parsed.read(record, identities)?;
    normalise(
        parsed,
        record,
        crate::raw::parsed_record(record)?,
        identities,
    )
}

fn normalise<'a>(
    rec: Record<'a>,
    record: &'a str,
    raw: &'a RawValue,
    identities: &mut IdentityMemo,
) -> Result<Event<'a>, DecodeError> {
    let event_name = rec.event_name.nonempty("eventName")?.ok_or_else(|| {
        DecodeError::field(
            "eventName",
            "is missing or empty: every CloudTrail record names its API call",
        )
    })?;
    let event_source = rec.event_source.nonempty("eventSource")?;
    let service = event_source.as_deref().map_or("unknown", aws::iam_prefix);
    let operation = aws::operation(&event_name);
    let action_class = aws::classify(service, operation);
    let action = concat(&[service, ":", operation]);

    let id = match rec.event_id.nonempty("eventID")? {
        Some(id) => id,
        None => Cow::Owned(content_id(record.as_bytes())),
    };
    let (time, time_inferred) = event_time([
        (&rec.event_time, "eventTime"),
        (&rec.panther_time, "p_event_time"),
        (&rec.ingest_time, "@timestamp"),
    ])?;

    let user_agent = rec.user_agent.nonempty("userAgent")?;
    let src_ip = rec.source_ip.nonempty("sourceIPAddress")?;
    let call = Call {
        from_console: rec.session_from_console.flag(),
        event_source: event_source.as_deref(),
        user_agent: user_agent.as_deref(),
    };
    let account = rec.recipient_account.nonempty("recipientAccountId")?;
    let resolved = match (rec.identity_shape, rec.recalled) {
        (Some(Shape::Object), Some(recalled)) => recalled,
        (Some(Shape::Object), None) => {
            let resolved = resolve_identity(rec.identity)?;
            identities.remember(rec.identity_text, rec.identity_probe, &resolved);
            resolved
        }
        (None | Some(Shape::Null), _) => Resolved {
            identity: Identity::new("unknown", IdentityKind::Unknown),
            partition: "aws",
            account: None,
            iam_user: false,
        },
        (Some(Shape::Other(found)), _) => {
            let reason = format!("expected an object, found {found}");
            return Err(DecodeError::field("userIdentity", reason));
        }
    };
    let Resolved {
        mut identity,
        partition,
        account: identity_account,
        iam_user,
    } = resolved;
    if iam_user && console_session(&call) {
        identity.kind = IdentityKind::User;
    }
    let scope = Scope {
        partition,
        account: account.as_deref().or(identity_account.as_deref()),
        region: rec.region.nonempty("awsRegion")?,
        service,
    };
    let resource = resource(rec.resources, rec.request_parameters, &scope);

    let error_code = rec.error_code.nonempty("errorCode")?;
    let (outcome, error) = match error_code {
        Some(code) if aws::is_denial(&code) => (Outcome::Denied, Some(code)),
        Some(code) => (Outcome::Error, Some(code)),
        None if rec.console_login.as_str("responseElements.ConsoleLogin")? == Some("Failure") => {
            let message = rec.error_message.nonempty("errorMessage")?;
            (
                Outcome::Denied,
                Some(message.unwrap_or(Cow::Borrowed("Failure"))),
            )
        }
        None => (Outcome::Success, None),
    };
    let bytes_out = rec.bytes_out.count();

    Ok(Event {
        id,
        time,
        time_inferred,
        source: Source::Cloudtrail,
        identity,
        action,
        action_class,
        resource,
        outcome,
        error,
        src_ip,
        user_agent,
        bytes_out,
        records: None,
        raw: Cow::Borrowed(raw),
    })
}

/// When the event happened: the first readable of `eventTime`, `p_event_time`, `@timestamp`,
/// else now (inferred). A present but unreadable time (`"redacted"`) is passed over, so that a
/// sanitised record still counts; a time of the wrong JSON type is an error.
fn event_time(
    candidates: [(&Field<'_>, &'static str); 3],
) -> Result<(Timestamp, bool), DecodeError> {
    for (field, name) in candidates {
        if let Some(time) = field.as_str(name)?.and_then(parse_time) {
            return Ok((time, false));
        }
    }
    Ok((Timestamp::now(), true))
}

/// Whether an IAM user acts through an AWS console session (a person at a browser) rather than
/// with an access key from a program.
///
/// CloudTrail says so in `sessionCredentialFromConsole` since event version 1.08; older records
/// are recognised by the sign-in service itself or by the console's user agents
/// (`console.amazonaws.com`, `console.ec2.amazonaws.com`, `signin.amazonaws.com`). Everything else
/// an IAM user does is done with its keys: long-lived `AKIA` keys, or `ASIA` session keys
/// obtained with them through `GetSessionToken`, by a program or a CLI. The console's own
/// back ends call services for the user with agents such as `EC2ConsoleFrontend, aws-internal/3
/// ...` and `S3Console/0.4`.
fn console_session(call: &Call<'_>) -> bool {
    call.from_console
        || call.event_source == Some("signin.amazonaws.com")
        || call.user_agent.is_some_and(|ua| {
            ua.starts_with("console.") || ua.contains("Console") || ua == "signin.amazonaws.com"
        })
}

/// What the identity resolution needs to know about the call besides `userIdentity`.
struct Call<'c> {
    from_console: bool,
    event_source: Option<&'c str>,
    user_agent: Option<&'c str>,
}

/// What `userIdentity` says on its own.
#[derive(Debug)]
struct Resolved<'a> {
    /// The identity; an IAM user's kind is [`IdentityKind::ApiKey`] until the call says
    /// whether it came through the console (`iam_user`).
    identity: Identity<'a>,
    /// The partition of its ARN (`aws`, `aws-cn`, ...).
    partition: &'static str,
    /// Its account.
    account: Option<Text<'a>>,
    /// Whether it is an IAM user, whose kind depends on the call (see [`console_session`]).
    iam_user: bool,
}

fn resolve_identity(ui: UserIdentity<'_>) -> Result<Resolved<'_>, DecodeError> {
    let kind_name = ui.kind.nonempty("userIdentity.type")?;
    let arn = ui.arn.nonempty("userIdentity.arn")?;
    let principal = ui.principal_id.nonempty("userIdentity.principalId")?;
    let account = ui.account_id.nonempty("userIdentity.accountId")?;
    let user_name = ui.user_name.nonempty("userIdentity.userName")?;
    let invoked_by = ui.invoked_by.nonempty("userIdentity.invokedBy")?;
    let credential = ui.access_key_id.nonempty("userIdentity.accessKeyId")?;
    let issuer_arn = ui
        .issuer_arn
        .nonempty("userIdentity.sessionContext.sessionIssuer.arn")?;
    let issuer_name = ui
        .issuer_name
        .nonempty("userIdentity.sessionContext.sessionIssuer.userName")?;
    let issuer_account = ui
        .issuer_account
        .nonempty("userIdentity.sessionContext.sessionIssuer.accountId")?;
    let partition = arn.as_deref().map_or("aws", partition_of);

    // When `type` is absent, the ARN's shape says what sort of principal it is.
    let kind_name = kind_name
        .as_deref()
        .unwrap_or_else(|| match arn.as_deref() {
            Some(arn) if arn.contains(":assumed-role/") => "AssumedRole",
            Some(arn) if arn.contains(":federated-user/") => "FederatedUser",
            Some(arn) if arn.contains(":user/") => "IAMUser",
            Some(arn) if arn.ends_with(":root") => "Root",
            None if invoked_by.is_some() => "AWSService",
            _ => "",
        });

    let mut session = None;
    let mut iam_user = false;
    let (id, kind) = match kind_name {
        "AssumedRole" => {
            let (unique, principal_session) = split_principal(principal);
            session = arn
                .as_ref()
                .and_then(|arn| {
                    part_of(arn, |arn| {
                        arn_resource(arn)?
                            .strip_prefix("assumed-role/")?
                            .split_once('/')
                            .map(|(_, session)| session)
                    })
                })
                .or(principal_session);
            let issuer_account = issuer_account.as_deref().or(account.as_deref());
            let id = issuer_arn
                .or_else(|| arn.as_deref().and_then(role_of_session))
                .or_else(|| compose_iam(partition, issuer_account, "role", issuer_name.as_deref()))
                .or(arn)
                .or(issuer_name)
                .or(user_name)
                .or(unique)
                .unwrap_or(Cow::Borrowed("unknown"));
            (id, IdentityKind::Role)
        }
        "IAMUser" => {
            let id = arn
                .or_else(|| {
                    compose_iam(partition, account.as_deref(), "user", user_name.as_deref())
                })
                .or(user_name)
                .or(principal)
                .unwrap_or(Cow::Borrowed("unknown"));
            iam_user = true;
            (id, IdentityKind::ApiKey)
        }
        "Root" => {
            let id = arn
                .or_else(|| account_root(partition, account.as_deref()))
                .unwrap_or(Cow::Borrowed("root"));
            (id, IdentityKind::User)
        }
        "AWSService" => {
            let id = invoked_by.or(principal).unwrap_or(Cow::Borrowed("unknown"));
            (id, IdentityKind::Workload)
        }
        "FederatedUser" => {
            // A GetFederationToken session: the IAM user that federated holds the entitlements;
            // the federated user's name is the session. Brokers issue these for people and for
            // programs alike, so the kind is left open.
            session = arn
                .as_ref()
                .and_then(|arn| {
                    part_of(arn, |arn| {
                        arn_resource(arn)?.strip_prefix("federated-user/")
                    })
                })
                .or_else(|| split_principal(principal.clone()).1);
            let id = issuer_arn
                .or(arn)
                .or(principal)
                .unwrap_or(Cow::Borrowed("unknown"));
            (id, IdentityKind::Unknown)
        }
        "WebIdentityUser" => {
            // The token's subject: `system:serviceaccount:ns:name` for EKS IRSA (the same id the
            // Kubernetes audit decoder gives that service account), `repo:org/repo:...` for
            // GitHub Actions OIDC.
            let id = user_name.or(principal).unwrap_or(Cow::Borrowed("unknown"));
            let kind = if id.starts_with("system:serviceaccount:") {
                IdentityKind::ServiceAccount
            } else {
                IdentityKind::Workload
            };
            (id, kind)
        }
        "AWSAccount" => {
            // A principal of another account, which CloudTrail names only by its unique id
            // (`AROA...:session` for a role session) and account.
            let (unique, rest) = split_principal(principal);
            session = rest;
            let kind = match &unique {
                Some(u) if u.starts_with("AROA") => IdentityKind::Role,
                _ => IdentityKind::Unknown,
            };
            let id = unique
                .or_else(|| account_root(partition, account.as_deref()))
                .unwrap_or(Cow::Borrowed("unknown"));
            (id, kind)
        }
        other => {
            // SAMLUser, IdentityCenterUser, Unknown and types yet to come: the most specific
            // name the record gives.
            let kind = match other {
                "SAMLUser" | "IdentityCenterUser" => IdentityKind::User,
                _ if invoked_by.is_some() && arn.is_none() && user_name.is_none() => {
                    IdentityKind::Workload
                }
                _ => IdentityKind::Unknown,
            };
            let id = arn
                .or(user_name)
                .or(principal)
                .or(invoked_by)
                .unwrap_or(Cow::Borrowed("unknown"));
            (id, kind)
        }
    };
    let identity = Identity {
        id,
        kind,
        session,
        credential,
    };
    Ok(Resolved {
        identity,
        partition,
        account,
        iam_user,
    })
}

/// `arn:aws:sts::ACCT:assumed-role/NAME/SESSION` → `arn:aws:iam::ACCT:role/NAME`. The role's
/// path is not in a session ARN, so a role with a path is only named exactly when the record
/// carries `sessionContext.sessionIssuer.arn`.
fn role_of_session<'a>(arn: &str) -> Option<Text<'a>> {
    let arn = Arn::parse(arn)?;
    let session = arn.resource.strip_prefix("assumed-role/")?;
    let name = session.split('/').next().filter(|name| !name.is_empty())?;
    Some(concat(&[
        "arn:",
        arn.partition,
        ":iam::",
        arn.account,
        ":role/",
        name,
    ]))
}

/// `arn:PARTITION:iam::ACCOUNT:root`, when the account is known.
fn account_root<'a>(partition: &str, account: Option<&str>) -> Option<Text<'a>> {
    Some(concat(&["arn:", partition, ":iam::", account?, ":root"]))
}

/// `arn:PARTITION:iam::ACCOUNT:KIND/NAME`, when both account and name are known.
fn compose_iam<'a>(
    partition: &str,
    account: Option<&str>,
    kind: &str,
    name: Option<&str>,
) -> Option<Text<'a>> {
    Some(concat(&[
        "arn:", partition, ":iam::", account?, ":", kind, "/", name?,
    ]))
}

/// The fields of an ARN, `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
struct Arn<'s> {
    partition: &'s str,
    service: &'s str,
    account: &'s str,
    resource: &'s str,
}

impl<'s> Arn<'s> {
    /// The fields of `arn`, when it has them all (the resource may hold more colons).
    fn parse(arn: &'s str) -> Option<Self> {
        let rest = arn.strip_prefix("arn:")?;
        let mut fields = [""; 4];
        let mut start = 0;
        for field in &mut fields {
            let end = start + colon(rest.get(start..)?)?;
            *field = rest.get(start..end)?;
            start = end + 1;
        }
        let [partition, service, _region, account] = fields;
        Some(Arn {
            partition,
            service,
            account,
            resource: rest.get(start..)?,
        })
    }
}

/// The position of the first `:` (a byte loop: these strings are too short for a search to pay).
fn colon(text: &str) -> Option<usize> {
    text.bytes().position(|b| b == b':')
}

/// The resource part of an ARN: what follows `arn:PARTITION:SERVICE:REGION:ACCOUNT:`.
fn arn_resource(arn: &str) -> Option<&str> {
    Arn::parse(arn).map(|arn| arn.resource)
}

/// A `principalId` of the form `UNIQUEID:session` split into its parts.
fn split_principal(principal: Option<Text<'_>>) -> (Option<Text<'_>>, Option<Text<'_>>) {
    let Some(p) = principal else {
        return (None, None);
    };
    let Some(at) = colon(&p) else {
        return (Some(p), None);
    };
    let unique = part_of(&p, |p| p.get(..at));
    let session = part_of(&p, |p| p.get(at + 1..));
    (unique, session)
}

fn nonempty(text: Option<Text<'_>>) -> Option<Text<'_>> {
    text.filter(|text| !text.is_empty())
}

/// The part of `text` that `part` picks, borrowed from the input when `text` is; `None` when
/// `part` finds nothing or only an empty string.
fn part_of<'a>(
    text: &Text<'a>,
    part: impl for<'s> Fn(&'s str) -> Option<&'s str>,
) -> Option<Text<'a>> {
    let picked = match text {
        Cow::Borrowed(s) => Cow::Borrowed(part(s)?),
        Cow::Owned(s) => Cow::Owned(part(s)?.to_owned()),
    };
    nonempty(Some(picked))
}

/// The concatenation of `parts`, allocated once.
fn concat<'a>(parts: &[&str]) -> Text<'a> {
    let mut joined = String::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        joined.push_str(part);
    }
    Cow::Owned(joined)
}

/// The partition of an ARN, as one of the known partitions (so it can be kept without
/// borrowing); unknown or malformed ARNs are taken to be in `aws`.
fn partition_of(arn: &str) -> &'static str {
    const PARTITIONS: [&str; 6] = [
        "aws",
        "aws-cn",
        "aws-us-gov",
        "aws-iso",
        "aws-iso-b",
        "aws-eusc",
    ];
    let partition = Arn::parse(arn).map(|arn| arn.partition);
    PARTITIONS
        .into_iter()
        .find(|p| Some(*p) == partition)
        .unwrap_or("aws")
}

/// What an ARN composed for a resource is qualified with.
struct Scope<'s> {
    partition: &'static str,
    account: Option<&'s str>,
    region: Option<Text<'s>>,
    service: &'s str,
}

/// The object acted on, as precisely as the record names it. The request parameters are read
/// only here, when `resources` names nothing: most data events carry `resources`, and the
/// parameters of some calls are large.
fn resource<'a>(
    resources: Resources<'a>,
    params: Option<&'a str>,
    scope: &Scope<'_>,
) -> Option<Text<'a>> {
    if let Some(arn) = resources.pick(scope.service) {
        return Some(arn);
    }
    // The parameters were validated with the record; a string among them whose escapes do not
    // decode only costs the hint.
    let params = RequestParameters::read(params?).ok()?;
    resource_named_by(params, scope)
}

/// The object named by the request parameters of a call.
fn resource_named_by<'a>(p: RequestParameters<'a>, scope: &Scope<'_>) -> Option<Text<'a>> {
    let partition = scope.partition;
    if let Some(bucket) = p.bucket_name.into_text() {
        return Some(match p.key.into_text() {
            Some(key) => concat(&["arn:", partition, ":s3:::", &bucket, "/", &key]),
            None => concat(&["arn:", partition, ":s3:::", &bucket]),
        });
    }
    let account = scope.account;
    let region = scope.region.as_deref();
    // `kind` is the ARN's resource part up to the name, with its separator (`function:`).
    let regional = |service: &str, kind: &str, name: Text<'a>| -> Text<'a> {
        match (region, account) {
            (Some(region), Some(account)) if !name.starts_with("arn:") => concat(&[
                "arn:", partition, ":", service, ":", region, ":", account, ":", kind, &name,
            ]),
            _ => name,
        }
    };
    // EC2 images and snapshots are named without an account.
    let unowned = |kind: &str, name: Text<'a>| -> Text<'a> {
        match region {
            Some(region) => concat(&["arn:", partition, ":ec2:", region, "::", kind, &name]),
            None => name,
        }
    };
    let (role_name, user_name, group_name) = (p.role_name, p.user_name, p.group_name);
    if scope.service == "iam" {
        // In IAM calls these name the principal being changed (AttachRolePolicy, CreateUser);
        // elsewhere a `groupName` is, say, an EC2 security group.
        let named = [
            ("role", role_name),
            ("user", user_name),
            ("group", group_name),
        ]
        .into_iter()
        .find_map(|(kind, name)| Some((kind, name.into_text()?)));
        if let Some((kind, name)) = named {
            return Some(match account {
                Some(account) if !name.starts_with("arn:") => {
                    concat(&["arn:", partition, ":iam::", account, ":", kind, "/", &name])
                }
                _ => name,
            });
        }
        if let Some(policy) = p.policy_arn.into_text() {
            return Some(policy);
        }
        return p.name.into_text();
    }
    if let Some(function) = p.function_name.into_text() {
        return Some(regional("lambda", "function:", function));
    }
    if let Some(secret) = p.secret_id.into_text() {
        return Some(regional("secretsmanager", "secret:", secret));
    }
    if let Some(table) = p.table_name.into_text() {
        return Some(regional("dynamodb", "table/", table));
    }
    if let Some(key) = p.key_id.into_text() {
        let kind = if key.starts_with("alias/") {
            ""
        } else {
            "key/"
        };
        return Some(regional("kms", kind, key));
    }
    if let Some(instance) = p.instance_id.into_text().or(p.first_instance.into_text()) {
        return Some(regional("ec2", "instance/", instance));
    }
    if let Some(db) = p.db_instance.into_text() {
        return Some(regional("rds", "db:", db));
    }
    if let Some(cluster) = p.db_cluster.into_text() {
        return Some(regional("rds", "cluster:", cluster));
    }
    if let Some(snapshot) = p.db_snapshot.into_text() {
        return Some(regional("rds", "snapshot:", snapshot));
    }
    if let Some(snapshot) = p.snapshot_id.into_text() {
        return Some(unowned("snapshot/", snapshot));
    }
    if let Some(image) = p.image_id.into_text() {
        return Some(unowned("image/", image));
    }
    if let Some(volume) = p.volume_id.into_text() {
        return Some(regional("ec2", "volume/", volume));
    }
    if let Some(group) = p.group_id.into_text() {
        return Some(regional("ec2", "security-group/", group));
    }
    if let Some(repository) = p.repository_name.into_text() {
        return Some(regional("ecr", "repository/", repository));
    }
    if let Some(log_group) = p.log_group_name.into_text() {
        return Some(regional("logs", "log-group:", log_group));
    }
    if let Some(target) = p.target.into_text() {
        // SSM StartSession's target: an instance id, or a managed node's `mi-` id.
        return Some(if target.starts_with("i-") {
            regional("ec2", "instance/", target)
        } else {
            target
        });
    }
    if let Some(arn) = p
        .role_arn
        .into_text()
        .or(p.topic_arn.into_text())
        .or(p.policy_arn.into_text())
    {
        return Some(arn);
    }
    if let Some(name) = p.name.into_text() {
        return Some(match scope.service {
            "cloudtrail" => regional("cloudtrail", "trail/", name),
            "ssm" if name.starts_with('/') => regional("ssm", "parameter", name),
            "ssm" => regional("ssm", "parameter/", name),
            _ => name,
        });
    }
    p.queue_url
        .into_text()
        .or(p.stack_name.into_text())
        .or(group_name.into_text())
        .or(role_name.into_text())
        .or(user_name.into_text())
}

// ---------------------------------------------------------------------------------------------
// The record, as far as normalisation reads it: one pass over the text (see `json`), keeping
// what is named below and validating and skipping everything else. Fields are kept whatever their
// JSON type; `normalise` decides what a wrong one means.

/// The parts of a record that normalisation reads.
#[derive(Default)]
struct Record<'a> {
    event_name: Field<'a>,
    event_source: Field<'a>,
    event_id: Field<'a>,
    event_time: Field<'a>,
    panther_time: Field<'a>,
    ingest_time: Field<'a>,
    region: Field<'a>,
    recipient_account: Field<'a>,
    source_ip: Field<'a>,
    user_agent: Field<'a>,
    error_code: Field<'a>,
    error_message: Field<'a>,
    session_from_console: Field<'a>,
    /// What `userIdentity` was, when the record has one.
    identity_shape: Option<Shape>,
    /// Its members, when it was an object read here.
    identity: UserIdentity<'a>,
    /// Its text, when it was an object read here.
    identity_text: &'a str,
    /// Where the memo would remember it.
    identity_probe: Probe,
    /// Its resolution, when it was an object the memo recalled instead.
    recalled: Option<Resolved<'a>>,
    /// The text of `requestParameters`, read only when `resources` names nothing.
    request_parameters: Option<&'a str>,
    /// `responseElements.ConsoleLogin`.
    console_login: Field<'a>,
    /// `additionalEventData.bytesTransferredOut`.
    bytes_out: Field<'a>,
    resources: Resources<'a>,
}

impl<'a> Record<'a> {
    /// Reads `text` into this (empty) record.
    fn read(&mut self, text: &'a str, identities: &IdentityMemo) -> Result<(), DecodeError> {
        let mut json = Json::new(text);
        match json.object(|json, key| self.member(json, key, identities))? {
            Shape::Object => json.finish()?,
            Shape::Null => {
                return Err(DecodeError::new(
                    "a CloudTrail record is a JSON object, not null",
                ))
            }
            Shape::Other(found) => {
                return Err(DecodeError::new(format!(
                    "a CloudTrail record is a JSON object, not {found}"
                )))
            }
        }
        Ok(())
    }

    /// Reads the value of `key`. Panther's lower-cased keys are read as aliases.
    fn member(
        &mut self,
        json: &mut Json<'a>,
        key: &str,
        identities: &IdentityMemo,
    ) -> json::Result<()> {
        let slot = match key {
            "eventName" | "eventname" => &mut self.event_name,
            "eventSource" | "eventsource" => &mut self.event_source,
            "eventID" | "eventid" => &mut self.event_id,
            "eventTime" | "eventtime" => &mut self.event_time,
            "p_event_time" => &mut self.panther_time,
            "@timestamp" => &mut self.ingest_time,
            "awsRegion" | "awsregion" => &mut self.region,
            "recipientAccountId" | "recipientaccountid" => &mut self.recipient_account,
            "sourceIPAddress" | "sourceipaddress" => &mut self.source_ip,
            "userAgent" | "useragent" => &mut self.user_agent,
            "errorCode" | "errorcode" => &mut self.error_code,
            "errorMessage" | "errormessage" => &mut self.error_message,
            "sessionCredentialFromConsole" | "sessioncredentialfromconsole" => {
                &mut self.session_from_console
            }
            "userIdentity" | "useridentity" => {
                let rest = json.rest();
                match identities.recall(rest) {
                    Ok((len, resolved)) => {
                        json.step_over(len);
                        self.identity_shape = Some(Shape::Object);
                        self.recalled = Some(resolved);
                        return Ok(());
                    }
                    Err(probe) => self.identity_probe = probe,
                }
                let start = json.position();
                let identity = &mut self.identity;
                self.identity_shape = Some(json.object(|json, key| identity.member(json, key))?);
                self.identity_text = json.since(start);
                self.recalled = None;
                return Ok(());
            }
            "requestParameters" | "requestparameters" => {
                self.request_parameters = Some(json.raw()?);
                return Ok(());
            }
            "responseElements" | "responseelements" => {
                return only(json, "ConsoleLogin", &mut self.console_login);
            }
            "additionalEventData" | "additionaleventdata" => {
                return only(json, "bytesTransferredOut", &mut self.bytes_out);
            }
            "resources" => return self.resources.read(json),
            _ => return json.skip(),
        };
        *slot = json.field()?;
        Ok(())
    }
}

/// Reads an object (anything else is skipped), keeping the value of one key.
fn only<'a>(json: &mut Json<'a>, wanted: &str, slot: &mut Field<'a>) -> json::Result<()> {
    json.object(|json, key| {
        if key == wanted {
            *slot = json.field()?;
            Ok(())
        } else {
            json.skip()
        }
    })
    .map(drop)
}

/// `userIdentity`, with `sessionContext.sessionIssuer` flattened into it.
#[derive(Default)]
struct UserIdentity<'a> {
    kind: Field<'a>,
    arn: Field<'a>,
    principal_id: Field<'a>,
    account_id: Field<'a>,
    user_name: Field<'a>,
    invoked_by: Field<'a>,
    access_key_id: Field<'a>,
    issuer_arn: Field<'a>,
    issuer_name: Field<'a>,
    issuer_account: Field<'a>,
}

impl<'a> UserIdentity<'a> {
    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<()> {
        let slot = match key {
            "type" => &mut self.kind,
            "arn" => &mut self.arn,
            "principalId" => &mut self.principal_id,
            "accountId" => &mut self.account_id,
            "userName" => &mut self.user_name,
            "invokedBy" => &mut self.invoked_by,
            "accessKeyId" => &mut self.access_key_id,
            "sessionContext" => {
                return json
                    .object(|json, key| match key {
                        "sessionIssuer" => json
                            .object(|json, key| self.issuer_member(json, key))
                            .map(drop),
                        _ => json.skip(),
                    })
                    .map(drop);
            }
            _ => return json.skip(),
        };
        *slot = json.field()?;
        Ok(())
    }

    fn issuer_member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<()> {
        let slot = match key {
            "arn" => &mut self.issuer_arn,
            "userName" => &mut self.issuer_name,
            "accountId" => &mut self.issuer_account,
            _ => return json.skip(),
        };
        *slot = json.field()?;
        Ok(())
    }
}

/// The first few `resources[].ARN`s (entries with only an `ARNPrefix` are passed over). A call
/// often lists what it touched besides its object (the KMS key a trail is encrypted with), so
/// the one of the call's own service is chosen once the service is known.
#[derive(Default)]
struct Resources<'a>([Option<Text<'a>>; 4]);

impl<'a> Resources<'a> {
    fn read(&mut self, json: &mut Json<'a>) -> json::Result<()> {
        let mut kept = 0;
        json.array(|json| {
            json.object(|json, key| {
                if key != "ARN" {
                    return json.skip();
                }
                if let (Some(arn), Some(slot)) = (json.field()?.into_text(), self.0.get_mut(kept)) {
                    *slot = Some(arn);
                    kept += 1;
                }
                Ok(())
            })
            .map(drop)
        })
    }

    /// The first ARN of `service`, else the first ARN.
    fn pick(self, service: &str) -> Option<Text<'a>> {
        let [first, rest @ ..] = self.0;
        let first = first?;
        if arn_service(&first) == Some(service) {
            return Some(first);
        }
        rest.into_iter()
            .flatten()
            .find(|arn| arn_service(arn) == Some(service))
            .or(Some(first))
    }
}

/// `s3` in `arn:aws:s3:::bucket`.
fn arn_service(arn: &str) -> Option<&str> {
    Arn::parse(arn).map(|arn| arn.service)
}

/// The request parameters that name the object of a call, across services.
#[derive(Default)]
struct RequestParameters<'a> {
    bucket_name: Field<'a>,
    key: Field<'a>,
    role_name: Field<'a>,
    user_name: Field<'a>,
    group_name: Field<'a>,
    policy_arn: Field<'a>,
    role_arn: Field<'a>,
    topic_arn: Field<'a>,
    function_name: Field<'a>,
    secret_id: Field<'a>,
    table_name: Field<'a>,
    key_id: Field<'a>,
    instance_id: Field<'a>,
    /// EC2's `instancesSet.items[0].instanceId`.
    first_instance: Field<'a>,
    db_instance: Field<'a>,
    db_cluster: Field<'a>,
    db_snapshot: Field<'a>,
    snapshot_id: Field<'a>,
    image_id: Field<'a>,
    volume_id: Field<'a>,
    group_id: Field<'a>,
    repository_name: Field<'a>,
    log_group_name: Field<'a>,
    target: Field<'a>,
    name: Field<'a>,
    queue_url: Field<'a>,
    stack_name: Field<'a>,
}

impl<'a> RequestParameters<'a> {
    fn read(text: &'a str) -> json::Result<Self> {
        let mut params = RequestParameters::default();
        Json::new(text).object(|json, key| params.member(json, key))?;
        Ok(params)
    }

    fn member(&mut self, json: &mut Json<'a>, key: &str) -> json::Result<()> {
        let slot = match key {
            "bucketName" => &mut self.bucket_name,
            "key" => &mut self.key,
            "roleName" => &mut self.role_name,
            "userName" => &mut self.user_name,
            "groupName" => &mut self.group_name,
            "policyArn" => &mut self.policy_arn,
            "roleArn" => &mut self.role_arn,
            "topicArn" => &mut self.topic_arn,
            "functionName" => &mut self.function_name,
            "secretId" => &mut self.secret_id,
            "tableName" => &mut self.table_name,
            "keyId" => &mut self.key_id,
            "instanceId" => &mut self.instance_id,
            "dBInstanceIdentifier" => &mut self.db_instance,
            "dBClusterIdentifier" => &mut self.db_cluster,
            "dBSnapshotIdentifier" => &mut self.db_snapshot,
            "snapshotId" => &mut self.snapshot_id,
            "imageId" => &mut self.image_id,
            "volumeId" => &mut self.volume_id,
            "groupId" => &mut self.group_id,
            "repositoryName" => &mut self.repository_name,
            "logGroupName" => &mut self.log_group_name,
            "target" => &mut self.target,
            "name" => &mut self.name,
            "queueUrl" => &mut self.queue_url,
            "stackName" => &mut self.stack_name,
            "instancesSet" => {
                let first = &mut self.first_instance;
                return json
                    .object(|json, key| match key {
                        "items" => json.array(|json| match first {
                            Field::Absent => only(json, "instanceId", first),
                            _ => json.skip(),
                        }),
                        _ => json.skip(),
                    })
                    .map(drop);
            }
            _ => return json.skip(),
        };
        *slot = json.field()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhiwatch_model::ActionClass;

    fn borrowed(record: &str) -> Event<'_> {
        decode_record(record).unwrap_or_else(|err| panic!("{err}: {record}"))
    }

    fn decode(record: &str) -> Event<'static> {
        borrowed(record).into_owned()
    }

    /// The identity of a record whose `userIdentity` is `identity`.
    fn identity_of(identity: &str) -> Identity<'static> {
        decode(&by(identity)).identity.into_owned()
    }

    fn reject(record: &str) -> String {
        match decode_record(record) {
            Ok(event) => panic!("decoded, expected a reject: {event:?}"),
            Err(err) => err.to_string(),
        }
    }

    /// A record of the given `userIdentity` calling S3 GetObject.
    fn by(identity: &str) -> String {
        format!(
            r#"{{"eventVersion":"1.09","userIdentity":{identity},"eventTime":"2024-05-01T08:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"aws-cli/2.15","requestParameters":{{"bucketName":"b","key":"k"}},"eventID":"e-1","recipientAccountId":"111122223333"}}"#
        )
    }

    #[test]
    fn assumed_role_sessions_map_to_their_role_with_its_path() {
        let record = by(
            r#"{"type":"AssumedRole","principalId":"AROAEXAMPLE:build-42","arn":"arn:aws:sts::111122223333:assumed-role/deployer/build-42","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/ci/deployer","userName":"deployer"}}}"#,
        );
        let identity = borrowed(&record).identity;
        assert_eq!(identity.id, "arn:aws:iam::111122223333:role/ci/deployer");
        assert_eq!(identity.kind, IdentityKind::Role);
        assert_eq!(identity.session.as_deref(), Some("build-42"));
        assert_eq!(identity.credential.as_deref(), Some("ASIAEXAMPLE"));
        assert!(
            matches!(identity.id, Cow::Borrowed(_)),
            "the issuer ARN is borrowed"
        );
    }

    #[test]
    fn assumed_role_without_issuer_is_rewritten_from_the_session_arn() {
        let record = by(
            r#"{"type":"AssumedRole","arn":"arn:aws-cn:sts::111122223333:assumed-role/deployer/build-42"}"#,
        );
        let identity = decode(&record).identity;
        assert_eq!(identity.id, "arn:aws-cn:iam::111122223333:role/deployer");
        assert_eq!(identity.session.as_deref(), Some("build-42"));
    }

    #[test]
    fn iam_users_are_api_keys_unless_in_a_console_session() {
        let key = by(
            r#"{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/svc-backup","accessKeyId":"AKIAEXAMPLE","userName":"svc-backup"}"#,
        );
        let identity = decode(&key).identity;
        assert_eq!(
            (identity.id.as_ref(), identity.kind),
            (
                "arn:aws:iam::111122223333:user/svc-backup",
                IdentityKind::ApiKey
            )
        );
        assert_eq!(identity.credential.as_deref(), Some("AKIAEXAMPLE"));

        let flagged = key.replace(
            r#""eventID""#,
            r#""sessionCredentialFromConsole":"true","eventID""#,
        );
        assert_eq!(decode(&flagged).identity.kind, IdentityKind::User);
        let console_agent = key.replace(
            "aws-cli/2.15",
            "EC2ConsoleFrontend, aws-internal/3 aws-sdk-java/1.12",
        );
        assert_eq!(decode(&console_agent).identity.kind, IdentityKind::User);

        let no_arn = by(r#"{"type":"IAMUser","accountId":"111122223333","userName":"alice"}"#);
        assert_eq!(
            decode(&no_arn).identity.id,
            "arn:aws:iam::111122223333:user/alice"
        );
    }

    #[test]
    fn root_services_federation_and_web_identities() {
        let root = identity_of(
            r#"{"type":"Root","accountId":"111122223333","principalId":"111122223333"}"#,
        );
        assert_eq!(
            (root.id.as_ref(), root.kind),
            ("arn:aws:iam::111122223333:root", IdentityKind::User)
        );

        let service = identity_of(r#"{"type":"AWSService","invokedBy":"ec2.amazonaws.com"}"#);
        assert_eq!(
            (service.id.as_ref(), service.kind),
            ("ec2.amazonaws.com", IdentityKind::Workload)
        );

        let federated = identity_of(
            r#"{"type":"FederatedUser","principalId":"111122223333:bob","arn":"arn:aws:sts::111122223333:federated-user/bob","sessionContext":{"sessionIssuer":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/broker"}}}"#,
        );
        assert_eq!(federated.id, "arn:aws:iam::111122223333:user/broker");
        assert_eq!(federated.session.as_deref(), Some("bob"));

        let irsa = identity_of(
            r#"{"type":"WebIdentityUser","principalId":"arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC:sts.amazonaws.com:system:serviceaccount:payments:worker","userName":"system:serviceaccount:payments:worker","identityProvider":"arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"}"#,
        );
        assert_eq!(
            (irsa.id.as_ref(), irsa.kind),
            (
                "system:serviceaccount:payments:worker",
                IdentityKind::ServiceAccount
            )
        );

        let github = identity_of(
            r#"{"type":"WebIdentityUser","userName":"repo:acme/api:ref:refs/heads/main","identityProvider":"token.actions.githubusercontent.com"}"#,
        );
        assert_eq!(github.kind, IdentityKind::Workload);

        let other_account = identity_of(
            r#"{"type":"AWSAccount","principalId":"AROAEXAMPLE:session-name","accountId":"444455556666"}"#,
        );
        assert_eq!(
            (other_account.id.as_ref(), other_account.kind),
            ("AROAEXAMPLE", IdentityKind::Role)
        );
        assert_eq!(other_account.session.as_deref(), Some("session-name"));
    }

    #[test]
    fn missing_or_untyped_identities_are_told_apart() {
        let missing = identity_of("null");
        assert_eq!(
            (missing.id.as_ref(), missing.kind),
            ("unknown", IdentityKind::Unknown)
        );
        let untyped =
            identity_of(r#"{"arn":"arn:aws:sts::111122223333:assumed-role/deployer/s1"}"#);
        assert_eq!(
            (untyped.id.as_ref(), untyped.kind),
            (
                "arn:aws:iam::111122223333:role/deployer",
                IdentityKind::Role
            )
        );
        let saml =
            identity_of(r#"{"type":"SAMLUser","principalId":"issuer:jdoe","userName":"jdoe"}"#);
        assert_eq!((saml.id.as_ref(), saml.kind), ("jdoe", IdentityKind::User));
    }

    #[test]
    fn actions_use_iam_names() {
        let record = by("null");
        let cases = [
            (
                "s3.amazonaws.com",
                "GetObject",
                "s3:GetObject",
                ActionClass::Read,
            ),
            (
                "monitoring.amazonaws.com",
                "DescribeAlarms",
                "cloudwatch:DescribeAlarms",
                ActionClass::List,
            ),
            (
                "lambda.amazonaws.com",
                "UpdateFunctionConfiguration20150331v2",
                "lambda:UpdateFunctionConfiguration",
                ActionClass::Write,
            ),
            (
                "iam.amazonaws.com",
                "AttachRolePolicy",
                "iam:AttachRolePolicy",
                ActionClass::Permission,
            ),
            (
                "sts.amazonaws.com",
                "AssumeRole",
                "sts:AssumeRole",
                ActionClass::Auth,
            ),
        ];
        for (source, name, action, class) in cases {
            let record = record
                .replace("s3.amazonaws.com", source)
                .replace("GetObject", name);
            let event = decode(&record);
            assert_eq!((event.action.as_ref(), event.action_class), (action, class));
        }
        let sourceless = record.replace(r#""eventSource":"s3.amazonaws.com","#, "");
        assert_eq!(decode(&sourceless).action, "unknown:GetObject");
    }

    #[test]
    fn resources_are_as_precise_as_the_record_allows() {
        let resource = |params: &str, extra: &str| {
            let record = by("null")
                .replace(r#"{"bucketName":"b","key":"k"}"#, params)
                .replace(r#""eventID""#, &format!(r#"{extra}"eventID""#));
            decode(&record).resource.map(Cow::into_owned)
        };
        assert_eq!(
            resource(r#"{"bucketName":"b","key":"k"}"#, "").as_deref(),
            Some("arn:aws:s3:::b/k")
        );
        assert_eq!(
            resource(r#"{"bucketName":"b"}"#, "").as_deref(),
            Some("arn:aws:s3:::b")
        );
        let listed = r#""resources":[{"ARNPrefix":"arn:aws:s3:::b/"},{"type":"AWS::KMS::Key","ARN":"arn:aws:kms:us-east-1:111122223333:key/1"},{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::b/from-resources"}],"#;
        assert_eq!(
            resource("null", listed).as_deref(),
            Some("arn:aws:s3:::b/from-resources")
        );
        assert_eq!(resource(r#""a string""#, "").as_deref(), None);

        let iam = |params: &str| {
            let record = by("null")
                .replace("s3.amazonaws.com", "iam.amazonaws.com")
                .replace("GetObject", "AttachRolePolicy")
                .replace(r#"{"bucketName":"b","key":"k"}"#, params);
            decode(&record).resource.map(Cow::into_owned)
        };
        assert_eq!(
            iam(
                r#"{"roleName":"worker","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#
            )
            .as_deref(),
            Some("arn:aws:iam::111122223333:role/worker")
        );
        assert_eq!(
            iam(r#"{"policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}"#).as_deref(),
            Some("arn:aws:iam::aws:policy/AdministratorAccess")
        );
        let ec2 = by("null")
            .replace("s3.amazonaws.com", "ec2.amazonaws.com")
            .replace(
                r#"{"bucketName":"b","key":"k"}"#,
                r#"{"instancesSet":{"items":[{"instanceId":"i-1"},{"instanceId":"i-2"}]}}"#,
            );
        assert_eq!(
            decode(&ec2).resource.as_deref(),
            Some("arn:aws:ec2:us-east-1:111122223333:instance/i-1")
        );
    }

    #[test]
    fn outcomes_follow_error_codes_and_console_failures() {
        let record = by("null");
        let with = |extra: &str| record.replace(r#""eventID""#, &format!(r#"{extra},"eventID""#));
        for code in [
            "AccessDenied",
            "Client.UnauthorizedOperation",
            "AccessDeniedException",
        ] {
            let event = decode(&with(&format!(
                r#""errorCode":"{code}","errorMessage":"no""#
            )));
            assert_eq!(
                (event.outcome, event.error.as_deref()),
                (Outcome::Denied, Some(code))
            );
        }
        let failed = decode(&with(r#""errorCode":"NoSuchKey""#));
        assert_eq!(
            (failed.outcome, failed.error.as_deref()),
            (Outcome::Error, Some("NoSuchKey"))
        );
        assert_eq!(decode(&with(r#""errorCode":"""#)).outcome, Outcome::Success);

        let login = record
            .replace("GetObject", "ConsoleLogin")
            .replace("s3.amazonaws.com", "signin.amazonaws.com");
        let refused = login.replace(r#""eventID""#, r#""responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"Failed authentication","eventID""#);
        let event = decode(&refused);
        assert_eq!(
            (event.outcome, event.error.as_deref()),
            (Outcome::Denied, Some("Failed authentication"))
        );
        assert_eq!(event.action_class, ActionClass::Auth);
        let accepted = login.replace(
            r#""eventID""#,
            r#""responseElements":{"ConsoleLogin":"Success"},"eventID""#,
        );
        assert_eq!(decode(&accepted).outcome, Outcome::Success);
    }

    #[test]
    fn times_fall_back_and_are_flagged_when_inferred() {
        let record = by("null");
        assert_eq!(decode(&record).time.to_string(), "2024-05-01T08:00:00Z");
        let panther = record.replace(
            r#""eventTime":"2024-05-01T08:00:00Z""#,
            r#""eventTime":"redacted","p_event_time":"2022-12-11 19:42:55.000""#,
        );
        let event = decode(&panther);
        assert_eq!(
            (event.time.to_string().as_str(), event.time_inferred),
            ("2022-12-11T19:42:55Z", false)
        );
        let elk = record.replace(
            r#""eventTime":"2024-05-01T08:00:00Z""#,
            r#""@timestamp":"2020-09-14T00:44:23.000Z""#,
        );
        assert_eq!(decode(&elk).time.to_string(), "2020-09-14T00:44:23Z");
        let before = Timestamp::now();
        let none = decode(&record.replace(r#""eventTime":"2024-05-01T08:00:00Z","#, ""));
        assert!(none.time_inferred && none.time >= before);
    }

    #[test]
    fn lower_case_keys_and_escapes_are_read() {
        let record = r#"{"eventname":"GetRecords","eventsource":"dynamodb.amazonaws.com","eventid":"x-1","eventtime":"2023-01-10 21:04:02","awsregion":"eu-west-1","useridentity":{"arn":"arn:aws:iam::111122223333:user/a\/b"},"userAgent":"agent \"quoted\""}"#;
        let event = decode(record);
        assert_eq!(event.action, "dynamodb:GetRecords");
        assert_eq!(event.id, "x-1");
        assert_eq!(event.identity.id, "arn:aws:iam::111122223333:user/a/b");
        assert_eq!(event.user_agent.as_deref(), Some(r#"agent "quoted""#));
        assert_eq!(event.time.to_string(), "2023-01-10T21:04:02Z");
    }

    #[test]
    fn ids_bytes_origin_and_raw_are_kept() {
        let record = by("null").replace(
            r#""eventID":"e-1""#,
            r#""additionalEventData":{"bytesTransferredOut":89.0}"#,
        );
        let event = borrowed(&record);
        assert_eq!(event.id, content_id(record.as_bytes()));
        assert_eq!(event.bytes_out, Some(89));
        assert_eq!(event.src_ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(event.raw.get(), record);
        assert!(matches!(event.raw, Cow::Borrowed(_)));
        let padded = format!("  {record}\n");
        assert_eq!(
            decode(&padded).raw.get(),
            record,
            "the raw record has no surrounding blanks"
        );
    }

    proptest::proptest! {
        /// Whatever is done to a record, decoding returns an event or an error, never panics.
        #[test]
        fn edited_records_never_panic(
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 0u8..3, proptest::prelude::any::<char>()), 1..8),
        ) {
            let mut record = by(r#"{"type":"AssumedRole","principalId":"AROAEXAMPLE:s","arn":"arn:aws:sts::111122223333:assumed-role/r/s","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::111122223333:role/r"}}}"#);
            apply_edits(&mut record, edits, ['"', '\\', '{', '}', '[', ']', ':', ',']);
            let _ = decode_record(&record);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = decode_record(&text);
        }

        /// A decoder that has just read a record decodes an edit of it (the edit may fall inside
        /// the `userIdentity` it remembers, or just after it) exactly as a fresh one does.
        #[test]
        fn a_remembered_identity_never_changes_an_edited_record(
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 0u8..3), 1..4),
        ) {
            let original = by(SESSION);
            let mut record = original.clone();
            let edits = edits.into_iter().map(|(at, edit)| (at, edit, 'x'));
            apply_edits(&mut record, edits, ['"', '\\', '{', '}', ' ', ']', ':', ',']);
            let mut decoder = CloudTrailDecoder::default();
            // Twice: an object is remembered when it is seen again.
            for _ in 0..2 {
                decoder.decode(&original, &mut |_| {}).expect("the original decodes");
            }
            let mut primed = None;
            let outcome = decoder.decode(&record, &mut |event| primed = Some(event));
            let fresh = decode_record(&record);
            match (outcome, fresh) {
                (Ok(()), Ok(fresh)) => {
                    // A time read from the clock differs by when it was read.
                    let primed = primed.map(|mut event| {
                        if event.time_inferred {
                            event.time = fresh.time;
                        }
                        event
                    });
                    proptest::prop_assert_eq!(
                        serde_json::to_string(&primed).ok(),
                        serde_json::to_string(&Some(fresh)).ok()
                    )
                }
                (Err(primed), Err(fresh)) => {
                    proptest::prop_assert_eq!(primed.to_string(), fresh.to_string())
                }
                (primed, fresh) => proptest::prop_assert!(
                    false,
                    "primed {:?}, fresh {:?}",
                    primed.is_ok(),
                    fresh.is_ok()
                ),
            }
        }
    }

    /// Applies proptest's edits to `record`, each at a (character boundary at or before an)
    /// index: edit 0 removes the character there, 1 inserts `c`, any other inserts the
    /// `punctuation` the index picks. Stops once the record is empty.
    fn apply_edits(
        record: &mut String,
        edits: impl IntoIterator<Item = (proptest::sample::Index, u8, char)>,
        punctuation: [char; 8],
    ) {
        for (at, edit, c) in edits {
            if record.is_empty() {
                break;
            }
            let mut i = at.index(record.len());
            while !record.is_char_boundary(i) {
                i -= 1;
            }
            match edit {
                0 => {
                    record.remove(i);
                }
                1 => record.insert(i, c),
                _ => record.insert(i, punctuation[i % 8]),
            }
        }
    }

    /// An assumed-role session as CloudTrail writes it, long enough to be remembered.
    const SESSION: &str = r#"{"type":"AssumedRole","principalId":"AROAEXAMPLE:build-42","arn":"arn:aws:sts::111122223333:assumed-role/deployer/build-42","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/ci/deployer","userName":"deployer"}}}"#;

    #[test]
    fn remembered_identities_decode_as_fresh_ones_and_borrow_from_their_record() {
        // Each long enough to be remembered: a session with an issuer, one whose role ARN is
        // composed (no issuer), one with an escaped name, and an IAM user whose kind depends
        // on each call.
        let user = r#"{"type":"IAMUser","principalId":"AIDAEXAMPLEEXAMPLE01","arn":"arn:aws:iam::111122223333:user/svc-backup","accountId":"111122223333","accessKeyId":"AKIAEXAMPLE","userName":"svc-backup"}"#;
        let composed = r#"{"type":"AssumedRole","principalId":"AROAEXAMPLE:nightly","arn":"arn:aws:sts::111122223333:assumed-role/exporter/nightly","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE2"}"#;
        let escaped = r#"{"type":"AssumedRole","principalId":"AROAEXAMPLE:caf\u00e9","arn":"arn:aws:sts::111122223333:assumed-role/exporter/caf\u00e9","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE3"}"#;
        let console = by(user).replace(
            r#""eventID":"e-1""#,
            r#""eventID":"e-2","sessionCredentialFromConsole":"true""#,
        );
        let records = [by(SESSION), by(composed), by(escaped), by(user), console];
        let mut decoder = CloudTrailDecoder::default();
        for round in 0..3 {
            for record in &records {
                let mut events = Vec::new();
                decoder
                    .decode(record, &mut |event| events.push(event))
                    .expect("decodes");
                let fresh = decode(record);
                assert_eq!(
                    serde_json::to_string(&events[0]).ok(),
                    serde_json::to_string(&fresh).ok(),
                    "round {round}: {record}"
                );
                // A remembered id lends the current record's bytes, not the first one's.
                if let Cow::Borrowed(id) = &events[0].identity.id {
                    let offset = (id.as_ptr() as usize).wrapping_sub(record.as_ptr() as usize);
                    assert!(offset < record.len(), "round {round}: {record}");
                }
            }
        }
        assert_eq!(decode(&records[3]).identity.kind, IdentityKind::ApiKey);
        assert_eq!(decode(&records[4]).identity.kind, IdentityKind::User);
    }

    #[test]
    fn bad_records_are_rejected_with_the_field_named() {
        let record = by("null");
        assert_eq!(
            reject(&record.replace(r#""eventName":"GetObject","#, "")),
            "field `eventName`: is missing or empty: every CloudTrail record names its API call"
        );
        assert_eq!(
            reject(&record.replace(r#""GetObject""#, "42")),
            "field `eventName`: expected a string, found a number"
        );
        assert_eq!(
            reject(&by(r#""AssumedRole""#)),
            "field `userIdentity`: expected an object, found a string"
        );
        assert_eq!(
            reject(&by(r#"{"type":"IAMUser","arn":["x"]}"#)),
            "field `userIdentity.arn`: expected a string, found an array"
        );
        assert_eq!(
            reject(&record.replace(r#""2024-05-01T08:00:00Z""#, "true")),
            "field `eventTime`: expected a string, found a boolean"
        );
        assert!(reject(&record[..record.len() - 1]).starts_with("invalid JSON at column"));
        assert_eq!(
            reject("[1]"),
            "a CloudTrail record is a JSON object, not an array"
        );
        assert!(reject(&format!("{record} {{}}")).contains("trailing characters"));
    }
}
