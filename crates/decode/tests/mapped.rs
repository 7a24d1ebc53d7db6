//! Generic JSON lines through a field mapping: HashiCorp Vault's audit log, which nhiwatch has
//! no decoder for, read through the public `Reader` with a YAML mapping.

use nhiwatch_decode::mapped::Mapping;
use nhiwatch_decode::{ReadOptions, Reader, Reject, Sinks};
use nhiwatch_model::{ActionClass, Event, IdentityKind, Outcome, Source};

/// The mapping from the module docs.
const VAULT: &str = r#"
id: request.id
time:
  field: time
  format: rfc3339
identity:
  field: auth.metadata.role_name
  kind: role
action:
  template: "vault:{request.operation}"
resource: request.path
outcome:
  field: error
  denied: ["*permission denied*"]
  error: ["*"]
src_ip: request.remote_address
user_agent: request.headers.user-agent.0
"#;

/// Vault audit log response entries (file audit device), as Vault writes them: a secret read by
/// an AppRole, a refused policy write, and a listing without an error field.
const LOG: &str = concat!(
    r#"{"time":"2024-03-05T10:15:42.123456Z","type":"response","auth":{"client_token":"hmac-sha256:5f1d2c","accessor":"hmac-sha256:9a8b7c","display_name":"approle","policies":["default","ci-reader"],"token_policies":["default","ci-reader"],"metadata":{"role_name":"ci-deployer"},"entity_id":"8d5ee3c9-2a38-6b5c-07a1-e5c3b7fd3f71","token_type":"service","token_ttl":2764800},"request":{"id":"e2c1f5c7-2b1d-4d0e-9a3b-7c8d9e0f1a2b","client_id":"8d5ee3c9-2a38-6b5c-07a1-e5c3b7fd3f71","operation":"read","mount_point":"secret/","mount_type":"kv","client_token":"hmac-sha256:5f1d2c","namespace":{"id":"root"},"path":"secret/data/prod/db","remote_address":"10.0.4.17","remote_port":51234,"headers":{"user-agent":["Go-http-client/1.1"]}},"response":{"mount_point":"secret/","mount_type":"kv","data":{"data":"hmac-sha256:aa11","metadata":"hmac-sha256:bb22"}}}"#,
    "\n",
    r#"{"time":"2024-03-05T10:15:43.5Z","type":"response","auth":{"display_name":"approle","policies":["default","ci-reader"],"metadata":{"role_name":"ci-deployer"},"token_type":"service"},"request":{"id":"0b9a8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d","operation":"update","path":"sys/policies/acl/admin","remote_address":"10.0.4.17","namespace":{"id":"root"}},"response":{},"error":"1 error occurred:\n\t* permission denied\n\n"}"#,
    "\n",
    r#"{"time":"2024-03-05T10:15:44Z","type":"response","auth":{"metadata":{"role_name":"ci-deployer"}},"request":{"id":"1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6","operation":"list","path":"secret/metadata/prod","remote_address":"10.0.4.17"},"response":{"data":{"keys":["hmac-sha256:cc33"]}}}"#,
    "\n",
);

fn read(mapping: Mapping, bytes: &[u8]) -> (Vec<Event<'static>>, Vec<Reject>) {
    let mut events = Vec::new();
    let mut rejects = Vec::new();
    let mut reader = Reader::new(ReadOptions::default(), Some(mapping));
    let mut sinks = Sinks {
        event: &mut |event| events.push(event.into_owned()),
        reject: &mut |reject| rejects.push(reject),
    };
    reader.read_bytes("vault_audit.log", bytes, &mut sinks);
    reader.finish(&mut sinks);
    (events, rejects)
}

#[test]
fn a_vault_audit_log_is_read_through_the_mapping() {
    let mapping = Mapping::from_yaml(VAULT, "vault.yaml").unwrap();
    let (events, rejects) = read(mapping, LOG.as_bytes());
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(events.len(), 3);
    let [read, write, list] = &events[..] else {
        unreachable!()
    };

    assert_eq!(read.id, "e2c1f5c7-2b1d-4d0e-9a3b-7c8d9e0f1a2b");
    assert_eq!(read.source, Source::Jsonl);
    assert_eq!(read.time.to_string(), "2024-03-05T10:15:42.123456Z");
    assert_eq!(read.identity.id, "ci-deployer");
    assert_eq!(read.identity.kind, IdentityKind::Role);
    assert_eq!(read.action, "vault:read");
    assert_eq!(read.action_class, ActionClass::Read);
    assert_eq!(read.resource.as_deref(), Some("secret/data/prod/db"));
    assert_eq!(read.outcome, Outcome::Success);
    assert_eq!(read.src_ip.as_deref(), Some("10.0.4.17"));
    assert_eq!(read.user_agent.as_deref(), Some("Go-http-client/1.1"));
    assert!(read
        .raw
        .get()
        .starts_with(r#"{"time":"2024-03-05T10:15:42.123456Z""#));

    assert_eq!(write.action, "vault:update");
    assert_eq!(write.action_class, ActionClass::Write);
    assert_eq!(write.resource.as_deref(), Some("sys/policies/acl/admin"));
    assert_eq!(write.outcome, Outcome::Denied);
    assert_eq!(
        write.error.as_deref(),
        Some("1 error occurred:\n\t* permission denied\n\n")
    );

    assert_eq!(list.action_class, ActionClass::List);
    assert_eq!(list.outcome, Outcome::Success);
    assert_eq!(list.user_agent, None);
}

#[test]
fn other_time_formats_kinds_and_counts() {
    let yaml = r#"
time: {field: ts, format: unix_millis}
identity: {field: who, kind_field: what}
action: {field: op}
action_class: {field: class}
outcome: {field: status, denied: ["403"], error: ["5*"]}
bytes_out: size
"#;
    let mapping = Mapping::from_yaml(yaml, "m.yaml").unwrap();
    let log = concat!(
        r#"{"ts":1709633742123,"who":"deploy-bot","what":"Bot","op":"artifact.push","class":"write","status":403,"size":"2048"}"#,
        "\n",
        r#"{"ts":"1709633743000","who":"deploy-bot","what":"robot","op":"artifact.push","status":502,"size":10}"#,
        "\n",
    );
    let (events, rejects) = read(mapping, log.as_bytes());
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(events[0].time.to_string(), "2024-03-05T10:15:42.123Z");
    assert_eq!(events[0].identity.kind, IdentityKind::Bot);
    assert_eq!(events[0].action_class, ActionClass::Write);
    assert_eq!(events[0].outcome, Outcome::Denied);
    assert_eq!(events[0].bytes_out, Some(2048));
    assert!(
        events[0].id.starts_with("sha:"),
        "no id field: a content hash"
    );
    assert_ne!(events[0].id, events[1].id);
    assert_eq!(events[1].identity.kind, IdentityKind::Unknown);
    assert_eq!(events[1].action_class, ActionClass::Other);
    assert_eq!(events[1].outcome, Outcome::Error);
    assert_eq!(events[1].error.as_deref(), Some("502"));
}

#[test]
fn a_record_missing_a_required_field_is_rejected_naming_it() {
    let mapping = Mapping::from_yaml(VAULT, "vault.yaml").unwrap();
    let log = concat!(
        r#"{"time":"2024-03-05T10:15:42Z","auth":{"display_name":"token"},"request":{"id":"a","operation":"read","path":"sys/health"}}"#,
        "\n",
        r#"{"time":"yesterday","auth":{"metadata":{"role_name":"x"}},"request":{"id":"b","operation":"read"}}"#,
        "\n",
        r#"{"time":"2024-03-05T10:15:44Z","auth":{"metadata":{"role_name":"x"}},"request":{"id":"c"}}"#,
        "\n",
        r#"{"time":"2024-03-05T10:15:45Z","auth":{"metadata":{"role_name":"ci-deployer"}},"request":{"id":"d","operation":"read"}}"#,
        "\n",
    );
    let (events, rejects) = read(mapping, log.as_bytes());
    let fields: Vec<(u64, Option<&str>)> = rejects
        .iter()
        .map(|r| (r.line, r.field.as_deref()))
        .collect();
    assert_eq!(
        fields,
        [
            (1, Some("auth.metadata.role_name")),
            (2, Some("time")),
            (3, Some("request.operation")),
        ]
    );
    assert_eq!(events.len(), 1, "the good record still goes through");
    assert_eq!(events[0].id, "d");
}

#[test]
fn bad_mappings_are_reported_with_file_line_and_key() {
    let err =
        Mapping::from_yaml("time:\n  field: t\nidentity: [unclosed\n", "bad.yaml").unwrap_err();
    assert_eq!(err.file, "bad.yaml");
    assert!(err.line.is_some_and(|line| line >= 3), "{err}");

    let unknown = VAULT.replace("  kind: role", "  kind: role\n  kindd: role");
    let err = Mapping::from_yaml(&unknown, "vault.yaml").unwrap_err();
    assert_eq!(err.line, Some(9), "{err}");
    assert!(err.message.contains("kindd"), "{err}");

    let template = VAULT.replace("{request.operation}", "{request.operation");
    let err = Mapping::from_yaml(&template, "vault.yaml").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("action.template"));
    assert_eq!(err.line, Some(10));
    assert!(
        err.to_string()
            .starts_with("vault.yaml:10: `action.template`: unclosed"),
        "{err}"
    );

    let no_action = "time: {field: t}\nidentity: {field: who}\n";
    let err = Mapping::from_yaml(no_action, "m.yaml").unwrap_err();
    assert!(err.message.contains("action"), "{err}");

    let path = std::env::temp_dir().join("nhiwatch-no-such-mapping.yaml");
    let err = Mapping::load(&path).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn a_mapping_is_loaded_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.yaml");
    std::fs::write(&path, VAULT).unwrap();
    let mapping = Mapping::load(&path).unwrap();
    let (events, _) = read(mapping, LOG.as_bytes());
    assert_eq!(events.len(), 3);
}
