//! GitHub organisation and enterprise audit log entries, as the REST API
//! (`GET /orgs/{org}/audit-log`, a JSON array the [`Reader`](crate::Reader) opens), audit log
//! streaming (one JSON object per line) and exports write them, and as Panther stores them
//! (`at_sign_timestamp` for `@timestamp`, times without a UTC offset).
//!
//! # Normalisation
//!
//! - **id** = `_document_id`; an entry without one gets a [`content_id`].
//! - **time** = `@timestamp` (epoch milliseconds), else Panther's `at_sign_timestamp`, else
//!   `created_at` (epoch milliseconds, integer or not, or an RFC 3339 string), else
//!   `p_event_time`. `@timestamp` comes first: `created_at` can be the time of the object the
//!   event is about (a Dependabot alert dismissed weeks after it was raised). Strings without a
//!   UTC offset are UTC; an unreadable string is passed over; none readable: the time of reading,
//!   flagged `time_inferred`.
//! - **identity.id** = `actor` (absent or empty: `unknown`). **identity.kind**, first match:
//!   `actor` ending in `[bot]` or `actor_is_bot: true`, or a `programmatic_access_type` naming a
//!   GitHub App's own token (`GitHub App server-to-server token`, `github_app`) → `bot`; the
//!   actor `github` (GitHub acting for itself: secret scanning, Dependabot) → `workload`; any
//!   other `programmatic_access_type` (personal access tokens, OAuth and user-to-server tokens,
//!   deploy keys), a `token_id`, `hashed_token` or `oauth_application_id` → `api_key` (the
//!   account acting through a credential, as an IAM user with access keys is in CloudTrail);
//!   anyone else → `user` (a person in a web session: kept, since mixed logs must be read).
//!   `integration` is not a hint: it names the App an event is about (a hook created for it).
//! - **identity.credential** = `token_id`, else `hashed_token`. **identity.session** =
//!   `workflow_run_id` (the Actions run an event belongs to), when present.
//! - **action** = `github:<action>` (`github:repo.create`, `github:git.clone`); `action` is
//!   required. **action_class** from [`classify`].
//! - **resource**: the repository as GitHub names it, `<owner>/<repo>` (`repo`, else
//!   `repository`); else the organisation, `orgs/<org>`, or the enterprise,
//!   `enterprises/<business>`, with the affected `user` appended as `/people/<user>`; else
//!   `users/<user>`. (For repository events the affected user stays in `raw`.)
//! - **outcome**: `success`, but `error` when a workflow run's `conclusion` is `failure`,
//!   `timed_out` or `startup_failure` (the error is the conclusion), and `denied` when the
//!   operation reports a refusal (`failed_login`, `rejected_ref_update`: operations containing
//!   `failed` or starting with `rejected`; the error is the operation).
//! - **src_ip** = `actor_ip`; **user_agent** = `user_agent`; no bytes out.
//!
//! A value of the wrong JSON type in a field read here is rejected with the field named.

use std::borrow::Cow;

use nhiwatch_model::{
    content_id, ActionClass, Event, Identity, IdentityKind, Outcome, Source, Text, Timestamp,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::k8s::{read, text};
use crate::parse_time;
use crate::{DecodeError, RecordDecoder};

/// Decodes GitHub audit log entries. Holds no state between records.
#[derive(Debug, Default)]
pub struct GithubAuditDecoder {}

impl RecordDecoder for GithubAuditDecoder {
    fn decode<'a>(
        &mut self,
        record: &'a str,
        emit: &mut dyn FnMut(Event<'a>),
    ) -> Result<(), DecodeError> {
        emit(decode_entry(record)?);
        Ok(())
    }
}

/// The fields read from an entry, kept as raw JSON until read with their names.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Entry<'a> {
    #[serde(borrow, rename = "_document_id")]
    document_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "@timestamp")]
    at_timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    at_sign_timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow)]
    p_event_time: Option<&'a RawValue>,
    #[serde(borrow)]
    action: Option<&'a RawValue>,
    #[serde(borrow)]
    actor: Option<&'a RawValue>,
    #[serde(borrow)]
    actor_ip: Option<&'a RawValue>,
    #[serde(borrow)]
    user_agent: Option<&'a RawValue>,
    #[serde(borrow)]
    actor_is_bot: Option<&'a RawValue>,
    #[serde(borrow)]
    programmatic_access_type: Option<&'a RawValue>,
    #[serde(borrow)]
    token_id: Option<&'a RawValue>,
    #[serde(borrow)]
    hashed_token: Option<&'a RawValue>,
    #[serde(borrow)]
    oauth_application_id: Option<&'a RawValue>,
    #[serde(borrow)]
    repo: Option<&'a RawValue>,
    #[serde(borrow)]
    repository: Option<&'a RawValue>,
    #[serde(borrow)]
    org: Option<&'a RawValue>,
    #[serde(borrow)]
    business: Option<&'a RawValue>,
    #[serde(borrow)]
    user: Option<&'a RawValue>,
    #[serde(borrow)]
    conclusion: Option<&'a RawValue>,
    #[serde(borrow)]
    workflow_run_id: Option<&'a RawValue>,
}

fn decode_entry(record: &str) -> Result<Event<'_>, DecodeError> {
    let record = record.trim_ascii();
    if !record.starts_with('{') {
        return Err(DecodeError::new(
            "not a GitHub audit log entry: expected a JSON object",
        ));
    }
    let entry: Entry<'_> = serde_json::from_str(record).map_err(|err| DecodeError::json(&err))?;
    let raw: &RawValue = crate::raw::parsed_record(record)?;

    let action = text(entry.action, "action")?.ok_or_else(|| {
        DecodeError::field(
            "action",
            "is missing or empty: every GitHub audit entry names its action",
        )
    })?;
    let op = action.rsplit_once('.').map_or(&*action, |(_, op)| op);

    let actor = text(entry.actor, "actor")?;
    let access = text(entry.programmatic_access_type, "programmatic_access_type")?;
    let token_id = scalar(entry.token_id, "token_id")?;
    let hashed_token = text(entry.hashed_token, "hashed_token")?;
    let oauth_app = scalar(entry.oauth_application_id, "oauth_application_id")?;
    let is_bot = read::<bool>(entry.actor_is_bot, "actor_is_bot", "a boolean")? == Some(true);
    let kind = match actor.as_deref() {
        None => IdentityKind::Unknown,
        Some(name) if name.ends_with("[bot]") || is_bot => IdentityKind::Bot,
        Some(_) if access.as_deref().is_some_and(app_token) => IdentityKind::Bot,
        Some("github") => IdentityKind::Workload,
        Some(_)
            if access.is_some()
                || token_id.is_some()
                || hashed_token.is_some()
                || oauth_app.is_some() =>
        {
            IdentityKind::ApiKey
        }
        Some(_) => IdentityKind::User,
    };
    let identity = Identity {
        id: actor.unwrap_or(Cow::Borrowed("unknown")),
        kind,
        session: scalar(entry.workflow_run_id, "workflow_run_id")?,
        credential: token_id.or(hashed_token),
    };

    let resource = match text(entry.repo, "repo")? {
        Some(repo) => Some(repo),
        None => text(entry.repository, "repository")?,
    };
    let resource = match resource {
        Some(repo) => Some(repo),
        None => {
            let org = text(entry.org, "org")?;
            let business = text(entry.business, "business")?;
            let user = text(entry.user, "user")?;
            let scope = match (&org, &business) {
                (Some(org), _) => Some(("orgs/", &**org)),
                (None, Some(business)) => Some(("enterprises/", &**business)),
                (None, None) => None,
            };
            match (scope, user) {
                (Some((kind, name)), Some(user)) => {
                    Some(Cow::Owned(format!("{kind}{name}/people/{user}")))
                }
                (Some((kind, name)), None) => Some(Cow::Owned(format!("{kind}{name}"))),
                (None, Some(user)) => Some(Cow::Owned(format!("users/{user}"))),
                (None, None) => None,
            }
        }
    };

    let conclusion = text(entry.conclusion, "conclusion")?;
    let (outcome, error) = match conclusion {
        Some(c) if matches!(&*c, "failure" | "timed_out" | "startup_failure") => {
            (Outcome::Error, Some(c))
        }
        _ if op.contains("failed") || op.starts_with("rejected") => (
            Outcome::Denied,
            Some(match &action {
                Cow::Borrowed(a) => Cow::Borrowed(&a[a.len() - op.len()..]),
                Cow::Owned(_) => Cow::Owned(op.to_owned()),
            }),
        ),
        _ => (Outcome::Success, None),
    };
    let action_class = classify(&action);

    let (time, time_inferred) = entry_time(&entry)?;
    let id = match text(entry.document_id, "_document_id")? {
        Some(id) => id,
        None => Cow::Owned(content_id(record.as_bytes())),
    };
    Ok(Event {
        id,
        time,
        time_inferred,
        source: Source::GithubAudit,
        identity,
        action: Cow::Owned(format!("github:{action}")),
        action_class,
        resource,
        outcome,
        error,
        src_ip: text(entry.actor_ip, "actor_ip")?,
        user_agent: text(entry.user_agent, "user_agent")?,
        bytes_out: None,
        records: None,
        raw: Cow::Borrowed(raw),
    })
}

/// Whether a `programmatic_access_type` is a GitHub App acting as itself.
fn app_token(access: &str) -> bool {
    let access = access.to_ascii_lowercase();
    access.contains("server-to-server") || access == "github_app"
}

/// A string or a number (ids are written both ways), as text; absent, null or empty: `None`.
fn scalar<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<Text<'a>>, DecodeError> {
    match raw.map(|r| (r, r.get().as_bytes().first())) {
        Some((number, Some(b'-' | b'0'..=b'9'))) => Ok(Some(Cow::Borrowed(number.get()))),
        _ => text(raw, field).map_err(|err| DecodeError {
            reason: err
                .reason
                .replacen("expected a string", "expected a string or a number", 1)
                .into(),
            ..err
        }),
    }
}

/// The entry's time, see the module docs.
fn entry_time(entry: &Entry<'_>) -> Result<(Timestamp, bool), DecodeError> {
    for (raw, field) in [
        (entry.at_timestamp, "@timestamp"),
        (entry.at_sign_timestamp, "at_sign_timestamp"),
        (entry.created_at, "created_at"),
        (entry.p_event_time, "p_event_time"),
    ] {
        if let Some(time) = time_value(raw, field)? {
            return Ok((time, false));
        }
    }
    Ok((Timestamp::now(), true))
}

/// Epoch milliseconds (a number, or a string of digits) or a timestamp string.
fn time_value(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<Timestamp>, DecodeError> {
    let Some(value) = raw else {
        return Ok(None);
    };
    let literal = value.get();
    let millis = |digits: &str| -> Option<Timestamp> {
        let millis = match digits.parse::<i64>() {
            Ok(millis) => millis,
            Err(_) => {
                let float = digits.parse::<f64>().ok().filter(|f| f.is_finite())?;
                if float.abs() >= 9.2e18 {
                    return None;
                }
                float as i64
            }
        };
        Timestamp::from_unix_millis(millis)
    };
    match literal.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => Ok(millis(literal)),
        Some(b'"') => Ok(text(raw, field)?.and_then(|s| {
            if s.bytes().all(|b| b.is_ascii_digit()) {
                millis(&s)
            } else {
                parse_time(&s)
            }
        })),
        Some(b'n') => Ok(None),
        _ => Err(DecodeError::field(
            field,
            "expected epoch milliseconds or a timestamp string",
        )),
    }
}

/// Categories whose every change decides who may do what: teams, credentials (SSH keys, deploy
/// keys, personal access tokens, OAuth grants), App installations, branch protection and
/// rulesets, IP allow lists, moderators and roles.
const PERMISSION_CATEGORIES: &[&str] = &[
    "team",
    "oauth_application",
    "oauth_access",
    "oauth_authorization",
    "personal_access_token",
    "public_key",
    "deploy_key",
    "integration_installation",
    "integration_installation_request",
    "org_credential_authorization",
    "protected_branch",
    "repository_ruleset",
    "ip_allow_list",
    "ip_allow_list_entry",
    "organization_moderators",
    "role",
];

/// Words in an operation that make a change a permission change: membership, invitations,
/// roles, permissions, ownership, access, SSO and 2FA policy, OAuth, tokens and keys, transfers,
/// bypasses.
const PERMISSION_WORDS: &[&str] = &[
    "member",
    "collaborator",
    "invit",
    "role",
    "permission",
    "owner",
    "admin",
    "access",
    "saml",
    "sso",
    "two_factor",
    "oauth",
    "token",
    "key",
    "transfer",
    "bypass",
    "allow_list",
];

/// The class of a GitHub audit action (`repo.create`, `git.clone`), first match wins:
///
/// | action | class |
/// |---|---|
/// | `git.clone`, `git.fetch`, `repo.download_zip` | `read` |
/// | `git.push` | `write` |
/// | `repo.access` (visibility changed) | `permission` |
/// | `workflows.delete_*` | `delete` |
/// | `workflows.*_run`, `workflows.*_job` (created, completed, rerun, approved, ... runs) | `exec` |
/// | operation containing `login` or `authenticat` | `auth` |
/// | a change (below: write, delete or other) in a permission category (`team`, `public_key`, `deploy_key`, `personal_access_token`, `oauth_*`, `integration_installation`, `protected_branch`, `repository_ruleset`, `ip_allow_list*`, `organization_moderators`, `role`, ...) or whose operation speaks of members, collaborators, invitations, roles, permissions, owners, admins, access, SAML/SSO, 2FA, OAuth, tokens, keys, transfers or bypasses | `permission` |
/// | operation verb (its first word, else its last): `clone`, `fetch`, `download`, `view`, `read`, `export` | `read` |
/// | `list`, `search`, `query` | `list` |
/// | `destroy`, `delete`, `deleted`, `remove`, `removed`, `purge`, `uninstall`, `revoke` | `delete` |
/// | `run`, `rerun`, `execute`, `trigger`, `dispatch` | `exec` |
/// | `create`, `add`, `update`, `edit`, `rename`, `set`, `enable(d)`, `disable(d)`, `archive(d)`, `push`, `merge`, `invite`, `approve`, `dismiss`, `override`, `transfer`, ... (see source) | `write` |
/// | anything else | `other` |
pub fn classify(action: &str) -> ActionClass {
    use ActionClass::*;
    match action {
        "git.clone" | "git.fetch" | "repo.download_zip" => return Read,
        "git.push" => return Write,
        "repo.access" => return Permission,
        _ => {}
    }
    let (category, op) = action.rsplit_once('.').unwrap_or(("", action));
    let base = category.split('.').next().unwrap_or(category);
    if base == "workflows" {
        if op.starts_with("delete") {
            return Delete;
        }
        if op.ends_with("_run") || op.ends_with("_job") {
            return Exec;
        }
    }
    if op.contains("login") || op.contains("authenticat") {
        return Auth;
    }
    let class = word_class(op.split('_').next().unwrap_or(op))
        .or_else(|| word_class(op.rsplit('_').next().unwrap_or(op)))
        .unwrap_or(Other);
    let grants = PERMISSION_CATEGORIES.contains(&base)
        || PERMISSION_WORDS.iter().any(|word| op.contains(word));
    if grants && matches!(class, Write | Delete | Other) {
        return Permission;
    }
    class
}

/// The class one word of an operation names, if it names one.
fn word_class(word: &str) -> Option<ActionClass> {
    use ActionClass::*;
    Some(match word {
        "clone" | "fetch" | "download" | "view" | "read" | "export" => Read,
        "list" | "search" | "query" => List,
        "destroy" | "destroyed" | "delete" | "deleted" | "remove" | "removed" | "purge"
        | "uninstall" | "revoke" => Delete,
        "run" | "rerun" | "execute" | "trigger" | "dispatch" => Exec,
        "create" | "created" | "add" | "added" | "update" | "updated" | "edit" | "rename"
        | "set" | "enable" | "enabled" | "disable" | "disabled" | "archive" | "archived"
        | "unarchive" | "unarchived" | "change" | "changed" | "config" | "push" | "merge"
        | "close" | "reopen" | "publish" | "install" | "installed" | "transfer" | "invite"
        | "approve" | "reject" | "request" | "resolve" | "dismiss" | "pin" | "unpin" | "lock"
        | "unlock" | "move" | "restore" | "import" | "register" | "accept" | "cancel"
        | "regenerate" | "suspend" | "unsuspend" | "block" | "unblock" | "start" | "launch"
        | "override" | "reinstate" | "promote" | "demote" | "convert" | "clear" | "hide"
        | "unhide" | "modify" | "reset" | "rotate" | "grant" | "link" | "unlink" | "sync"
        | "upload" | "complete" | "completed" => Write,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A clone by a GitHub App installation token, as audit log streaming writes it.
    const APP_CLONE: &str = r#"{"@timestamp":1715421600123,"_document_id":"Q2xvbmVkIGJ5IGEgYm90","action":"git.clone","actor":"deploy-helper[bot]","actor_id":49699333,"actor_ip":"140.82.112.4","actor_is_bot":true,"business":"acme","business_id":4521,"created_at":1715421600123,"operation_type":"access","org":"acme","org_id":91234567,"programmatic_access_type":"GitHub App server-to-server token","repo":"acme/payments","repository":"acme/payments","repository_public":false,"token_id":8812345,"transport_protocol":1,"transport_protocol_name":"http","user_agent":"git/2.43.0"}"#;

    fn one(record: &str) -> Event<'static> {
        let mut events = Vec::new();
        GithubAuditDecoder::default()
            .decode(record, &mut |e| events.push(e.into_owned()))
            .unwrap_or_else(|err| panic!("{err}: {record}"));
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn error(record: &str) -> DecodeError {
        match GithubAuditDecoder::default().decode(record, &mut |_| {}) {
            Err(err) => err,
            Ok(()) => panic!("accepted: {record}"),
        }
    }

    #[test]
    fn an_app_cloning_a_repository() {
        let event = one(APP_CLONE);
        assert_eq!(event.id, "Q2xvbmVkIGJ5IGEgYm90");
        assert_eq!(event.source, Source::GithubAudit);
        assert_eq!(event.identity.id, "deploy-helper[bot]");
        assert_eq!(event.identity.kind, IdentityKind::Bot);
        assert_eq!(event.identity.credential.as_deref(), Some("8812345"));
        assert_eq!(event.action, "github:git.clone");
        assert_eq!(event.action_class, ActionClass::Read);
        assert_eq!(event.resource.as_deref(), Some("acme/payments"));
        assert_eq!(event.outcome, Outcome::Success);
        assert_eq!(event.src_ip.as_deref(), Some("140.82.112.4"));
        assert_eq!(event.user_agent.as_deref(), Some("git/2.43.0"));
        assert_eq!(event.time.to_string(), "2024-05-11T10:00:00.123Z");
        assert_eq!(event.bytes_out, None);
        assert_eq!(event.raw.get(), APP_CLONE);
    }

    #[test]
    fn kinds_come_from_the_actor_and_its_credential() {
        use IdentityKind::*;
        let cases = [
            (r#"{"action":"repo.create","actor":"renovate[bot]"}"#, Bot),
            (
                r#"{"action":"repo.create","actor":"ci","actor_is_bot":true}"#,
                Bot,
            ),
            (
                r#"{"action":"repo.create","actor":"x","programmatic_access_type":"GitHub App server-to-server token"}"#,
                Bot,
            ),
            (
                r#"{"action":"repo.create","actor":"x","programmatic_access_type":"github_app"}"#,
                Bot,
            ),
            (
                r#"{"action":"git.clone","actor":"alice","programmatic_access_type":"Fine-grained personal access token"}"#,
                ApiKey,
            ),
            (
                r#"{"action":"git.clone","actor":"alice","hashed_token":"abc="}"#,
                ApiKey,
            ),
            (
                r#"{"action":"git.clone","actor":"alice","oauth_application_id":7}"#,
                ApiKey,
            ),
            (
                r#"{"action":"secret_scanning_alert.create","actor":"github"}"#,
                Workload,
            ),
            (
                r#"{"action":"repo.create","actor":"alice","actor_is_bot":false,"integration":"Some App"}"#,
                User,
            ),
            (r#"{"action":"repo.create","actor":""}"#, Unknown),
            (r#"{"action":"repo.create"}"#, Unknown),
        ];
        for (record, kind) in cases {
            assert_eq!(one(record).identity.kind, kind, "{record}");
        }
        assert_eq!(one(r#"{"action":"repo.create"}"#).identity.id, "unknown");
    }

    #[test]
    fn credentials_and_sessions() {
        let event = one(
            r#"{"action":"workflows.completed_workflow_run","actor":"github-actions[bot]","hashed_token":"h=","workflow_run_id":9876543210,"conclusion":"failure"}"#,
        );
        assert_eq!(event.identity.credential.as_deref(), Some("h="));
        assert_eq!(event.identity.session.as_deref(), Some("9876543210"));
        assert_eq!(event.action_class, ActionClass::Exec);
        assert_eq!(
            (event.outcome, event.error.as_deref()),
            (Outcome::Error, Some("failure"))
        );
        let success = one(
            r#"{"action":"workflows.completed_workflow_run","actor":"a","conclusion":"success","token_id":"42"}"#,
        );
        assert_eq!(success.outcome, Outcome::Success);
        assert_eq!(success.identity.credential.as_deref(), Some("42"));
    }

    #[test]
    fn times_in_every_form() {
        let cases = [
            (r#""@timestamp":1621305118553"#, "2021-05-18T02:31:58.553Z"),
            (
                r#""created_at":1621305118553.0"#,
                "2021-05-18T02:31:58.553Z",
            ),
            (
                r#""created_at":"1621305118553""#,
                "2021-05-18T02:31:58.553Z",
            ),
            (
                r#""created_at":"2023-01-31 18:58:27.638""#,
                "2023-01-31T18:58:27.638Z",
            ),
            (
                r#""created_at":"2023-01-31T18:58:27.000Z""#,
                "2023-01-31T18:58:27Z",
            ),
            (
                r#""at_sign_timestamp":"2024-04-09 06:17:55.186000000","created_at":"2024-03-13 22:36:27.788000000""#,
                "2024-04-09T06:17:55.186Z",
            ),
            (
                r#""created_at":"2024-12-17 00:00:00000000","p_event_time":"2024-12-17 00:00:01""#,
                "2024-12-17T00:00:01Z",
            ),
        ];
        for (fields, time) in cases {
            let event = one(&format!(r#"{{"action":"repo.create",{fields}}}"#));
            assert_eq!(event.time.to_string(), time, "{fields}");
            assert!(!event.time_inferred);
        }
        assert!(one(r#"{"action":"repo.create","created_at":"soon"}"#).time_inferred);
        assert!(one(r#"{"action":"repo.create","created_at":1e300}"#).time_inferred);
    }

    #[test]
    fn resources_name_the_repository_else_the_organisation() {
        let cases = [
            (
                r#""repo":"acme/api","org":"acme","user":"bob""#,
                Some("acme/api"),
            ),
            (r#""repository":"acme/api""#, Some("acme/api")),
            (r#""org":"acme","user":"bob""#, Some("orgs/acme/people/bob")),
            (r#""org":"acme","user":"""#, Some("orgs/acme")),
            (r#""business":"acme-ent""#, Some("enterprises/acme-ent")),
            (r#""user":"bob""#, Some("users/bob")),
            (r#""actor":"bob""#, None),
        ];
        for (fields, resource) in cases {
            let event = one(&format!(r#"{{"action":"org.add_member",{fields}}}"#));
            assert_eq!(event.resource.as_deref(), resource, "{fields}");
        }
    }

    #[test]
    fn refusals_are_denied() {
        let event = one(r#"{"action":"user.failed_login","actor":"bob"}"#);
        assert_eq!(
            (event.outcome, event.error.as_deref()),
            (Outcome::Denied, Some("failed_login"))
        );
        assert_eq!(event.action_class, ActionClass::Auth);
        let push = one(r#"{"action":"protected_branch.rejected_ref_update","actor":"bob"}"#);
        assert_eq!(push.outcome, Outcome::Denied);
    }

    #[test]
    fn classes_follow_the_table() {
        use ActionClass::*;
        let cases = [
            ("git.clone", Read),
            ("git.fetch", Read),
            ("repo.download_zip", Read),
            ("git.push", Write),
            ("repo.access", Permission),
            ("repo.create", Write),
            ("repo.update", Write),
            ("repo.archived", Write),
            ("repo.destroy", Delete),
            ("hook.create", Write),
            ("hook.destroy", Delete),
            ("pull_request.merge", Write),
            ("workflows.created_workflow_run", Exec),
            ("workflows.completed_workflow_run", Exec),
            ("workflows.prepared_workflow_job", Exec),
            ("workflows.delete_workflow_run", Delete),
            ("repo.add_member", Permission),
            ("repo.remove_member", Permission),
            ("org.invite_member", Permission),
            ("invite_member", Permission),
            ("org.update_member", Permission),
            ("team.create", Permission),
            ("team.add_repository", Permission),
            ("team.destroy", Permission),
            ("public_key.create", Permission),
            ("deploy_key.delete", Permission),
            ("personal_access_token.access_granted", Permission),
            ("integration_installation.create", Permission),
            ("protected_branch.destroy", Permission),
            ("protected_branch.policy_override", Permission),
            ("repository_ruleset.update", Permission),
            ("ip_allow_list.disable", Permission),
            ("ip_allow_list_entry.create", Permission),
            ("org.saml_disabled", Permission),
            ("org.disable_two_factor_requirement", Permission),
            ("org.disable_oauth_app_restrictions", Permission),
            ("org.set_default_workflow_permissions", Permission),
            ("organization_moderators.add_user", Permission),
            ("repo.transfer_outgoing", Permission),
            ("enterprise.config.disable_anonymous_git_access", Permission),
            ("secret_scanning.disable", Write),
            ("dependabot_alerts_new_repos.disable", Write),
            ("business_advanced_security.enabled", Write),
            ("repository_vulnerability_alert.dismiss", Write),
            ("secret_scanning_alert.create", Write),
            ("user.login", Auth),
            ("audit_log.export", Read),
            ("something.odd", Other),
        ];
        for (action, class) in cases {
            assert_eq!(classify(action), class, "{action}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (r#"{"actor":"bob"}"#, "action"),
            (r#"{"action":"","actor":"bob"}"#, "action"),
            (r#"{"action":7}"#, "action"),
            (r#"{"action":"repo.create","actor":["bob"]}"#, "actor"),
            (
                r#"{"action":"repo.create","@timestamp":true}"#,
                "@timestamp",
            ),
            (r#"{"action":"repo.create","created_at":{}}"#, "created_at"),
            (
                r#"{"action":"repo.create","actor_is_bot":"yes"}"#,
                "actor_is_bot",
            ),
            (r#"{"action":"repo.create","token_id":[1]}"#, "token_id"),
            (r#"{"action":"repo.create","repo":{"name":"x"}}"#, "repo"),
            (
                r#"{"action":"repo.create","_document_id":1}"#,
                "_document_id",
            ),
        ];
        for (record, field) in cases {
            let err = error(record);
            assert_eq!(err.field.as_deref(), Some(field), "{record}: {err}");
        }
        assert!(error(r#"{"action":"x","token_id":[1]}"#)
            .reason
            .contains("expected a string or a number, found an array"));
        for bad in ["", "[]", "{", "\"action\""] {
            assert!(error(bad).field.is_none(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = GithubAuditDecoder::default().decode(&text, &mut |_| {});
        }

        #[test]
        fn edited_records_never_panic(
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<char>()), 1..6),
        ) {
            let mut record: Vec<char> = APP_CLONE.chars().collect();
            for (at, c) in edits {
                let i = at.index(record.len());
                record[i] = c;
            }
            let record: String = record.into_iter().collect();
            let _ = GithubAuditDecoder::default().decode(&record, &mut |_| {});
        }
    }
}
