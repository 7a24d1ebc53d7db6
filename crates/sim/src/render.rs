//! Writing acts in the providers' own formats: CloudTrail `{"Records":[...]}` gzip files per
//! account and hour (as delivered to S3), Kubernetes audit Event lines, GitHub audit log lines,
//! and OTLP JSON trace exports with GenAI spans, one per agent session.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use nhiwatch_model::Timestamp;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::act::{Act, Answer, What, HOUR, SEC};
use crate::attack::Label;
use crate::fleet::{date_text, stream, Actor, Fleet};
use crate::{io_error, SimError};

const REGION: &str = "us-east-1";

/// Writes days of acts and counts what it wrote.
pub(crate) struct Writer {
    out: PathBuf,
    ids: ChaCha8Rng,
    pub events: u64,
    pub files: u64,
    pub events_per_source: BTreeMap<String, u64>,
}

impl Writer {
    pub fn new(out: &Path, seed: u64) -> Writer {
        Writer {
            out: out.to_path_buf(),
            ids: stream(seed, &[4]),
            events: 0,
            files: 0,
            events_per_source: BTreeMap::new(),
        }
    }

    fn count(&mut self, source: &str, n: u64) {
        self.events += n;
        *self.events_per_source.entry(source.to_owned()).or_default() += n;
    }

    fn uuid(&mut self) -> String {
        let a: u128 = self.ids.random();
        let a = (a & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
        let hex = format!("{a:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.ids.random::<u8>()))
            .collect()
    }

    /// Writes one day's acts (sorted by time) and records malicious event ids in `labels`.
    pub fn write_day(
        &mut self,
        day: i64,
        fleet: &Fleet,
        acts: &mut [Act],
        labels: &mut [Label],
    ) -> Result<(), SimError> {
        let date = date_text(day * crate::act::DAY);
        let mut trails: BTreeMap<(&'static str, i64), Vec<Value>> = BTreeMap::new();
        let mut k8s = Vec::new();
        let mut github = Vec::new();
        let mut sessions: BTreeMap<(usize, u32), Vec<(String, &Act)>> = BTreeMap::new();
        for act in acts.iter() {
            let actor = &fleet.actors[act.actor];
            let id = match act.what {
                What::Aws { .. } | What::K8s { .. } => self.uuid(),
                What::Github { .. } => self.hex(11),
                What::Tool { .. } => self.hex(8),
            };
            if let Some(incident) = act.incident {
                let label = &mut labels[incident];
                if label.event_ids.is_empty() {
                    label.start = Timestamp(act.time).to_string();
                }
                label.event_ids.push(id.clone());
            }
            match &act.what {
                What::Aws { .. } => {
                    let record = self.cloudtrail(actor, act, &id);
                    trails
                        .entry((actor.account, act.time.div_euclid(HOUR)))
                        .or_default()
                        .push(record);
                }
                What::K8s { .. } => k8s.push(k8s_event(actor, act, &id)),
                What::Github { .. } => github.push(github_entry(actor, act, &id)),
                What::Tool { .. } => sessions
                    .entry((act.actor, act.session))
                    .or_default()
                    .push((id, act)),
            }
        }
        for ((account, hour), records) in trails {
            let stamp = Timestamp(hour * HOUR).to_string();
            let compact: String = stamp[..13].chars().filter(|c| *c != '-').collect();
            let dir = self.out.join(format!(
                "cloudtrail/AWSLogs/{account}/CloudTrail/{REGION}/{}/{}/{}",
                &stamp[..4],
                &stamp[5..7],
                &stamp[8..10]
            ));
            let name = format!(
                "{account}_CloudTrail_{REGION}_{compact}00Z_{}.json.gz",
                self.hex(8)
            );
            self.count("cloudtrail", records.len() as u64);
            write_gz(&dir, &name, &Records { records: &records })?;
            self.files += 1;
        }
        self.write_lines("k8s", &format!("audit-{date}.jsonl"), "k8s_audit", &k8s)?;
        self.write_lines(
            "github",
            &format!("audit-{date}.jsonl"),
            "github_audit",
            &github,
        )?;
        let mut traces = Vec::new();
        for ((actor, _), calls) in sessions {
            traces.push(self.otlp_session(&fleet.actors[actor], &calls));
        }
        let spans: u64 = traces.iter().map(|(_, n)| *n).sum();
        let docs: Vec<Value> = traces.into_iter().map(|(doc, _)| doc).collect();
        self.write_lines("agents", &format!("otlp-{date}.jsonl"), "", &docs)?;
        self.count("otel", spans);
        Ok(())
    }

    fn write_lines(
        &mut self,
        folder: &str,
        name: &str,
        source: &str,
        lines: &[Value],
    ) -> Result<(), SimError> {
        if lines.is_empty() {
            return Ok(());
        }
        let dir = self.out.join(folder);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let path = dir.join(name);
        let file = File::create(&path).map_err(io_error(&path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for line in lines {
            serde_json::to_writer(&mut out, line).map_err(|e| SimError::Config(e.to_string()))?;
            out.write_all(b"\n").map_err(io_error(&path))?;
        }
        out.flush().map_err(io_error(&path))?;
        if !source.is_empty() {
            self.count(source, lines.len() as u64);
        }
        self.files += 1;
        Ok(())
    }

    fn cloudtrail(&mut self, actor: &Actor, act: &Act, id: &str) -> Value {
        let What::Aws {
            service,
            op,
            params,
            bytes_out,
        } = &act.what
        else {
            return Value::Null;
        };
        let account = actor.account;
        let session = match actor.archetype {
            crate::fleet::Archetype::Deployer => {
                format!("GitHubActions-{}", 7_000_000 + act.session)
            }
            crate::fleet::Archetype::Automation => actor.name.clone(),
            _ => format!(
                "botocore-session-{}",
                1_700_000_000 + i64::from(act.session) * 3_600
            ),
        };
        let role_arn = format!("arn:aws:iam::{account}:role/{}", actor.name);
        let principal = format!("AROA{}", &actor.key[..16]);
        let key_id = format!("ASIA{}{:04X}", &actor.key[..12], act.session % 0xFFFF);
        let (ip, user_agent) = match &act.origin {
            Some(origin) => (origin.ip.clone(), origin.user_agent.clone()),
            None => (actor.ip.clone(), actor.user_agent.clone()),
        };
        let time = Timestamp(act.time - act.time.rem_euclid(SEC)).to_string();
        let request: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        let read_only = ["Get", "List", "Describe", "Query", "Scan", "Head"]
            .iter()
            .any(|p| op.starts_with(p));
        let data_event =
            *service == "s3" && matches!(*op, "GetObject" | "PutObject" | "ListObjects");
        let mut record = json!({
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "AssumedRole",
                "principalId": format!("{principal}:{session}"),
                "arn": format!("arn:aws:sts::{account}:assumed-role/{}/{session}", actor.name),
                "accountId": account,
                "accessKeyId": key_id,
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": principal,
                        "arn": role_arn,
                        "accountId": account,
                        "userName": actor.name,
                    },
                    "attributes": {
                        "creationDate": Timestamp(act.time - act.time.rem_euclid(HOUR)).to_string(),
                        "mfaAuthenticated": "false",
                    },
                },
            },
            "eventTime": time,
            "eventSource": format!("{service}.amazonaws.com"),
            "eventName": op,
            "awsRegion": REGION,
            "sourceIPAddress": ip,
            "userAgent": user_agent,
            "requestParameters": if request.is_empty() { Value::Null } else { Value::Object(request) },
            "responseElements": Value::Null,
            "requestID": self.hex(16).to_uppercase(),
            "eventID": id,
            "readOnly": read_only,
            "eventType": "AwsApiCall",
            "managementEvent": !data_event,
            "recipientAccountId": account,
            "eventCategory": if data_event { "Data" } else { "Management" },
            "tlsDetails": {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": "TLS_AES_128_GCM_SHA256",
                "clientProvidedHostHeader": format!("{service}.{REGION}.amazonaws.com"),
            },
        });
        if let Some(map) = record.as_object_mut() {
            if let Some(bytes) = bytes_out {
                map.insert(
                    "additionalEventData".into(),
                    json!({"bytesTransferredIn": 0, "bytesTransferredOut": bytes, "x-amz-id-2": self.hex(12)}),
                );
            }
            if data_event {
                let bucket = params
                    .iter()
                    .find(|(k, _)| *k == "bucketName")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                let mut resources = Vec::new();
                if let Some((_, key)) = params.iter().find(|(k, _)| *k == "key") {
                    resources.push(json!({"type": "AWS::S3::Object", "ARN": format!("arn:aws:s3:::{bucket}/{key}")}));
                }
                resources.push(json!({"accountId": account, "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}));
                map.insert("resources".into(), Value::Array(resources));
            }
            match act.answer {
                Answer::Ok => {}
                Answer::Denied => {
                    let code = if *service == "dynamodb" {
                        "AccessDeniedException"
                    } else {
                        "AccessDenied"
                    };
                    map.insert("errorCode".into(), code.into());
                    map.insert(
                        "errorMessage".into(),
                        format!(
                            "User: arn:aws:sts::{account}:assumed-role/{}/{session} is not authorized to perform: {service}:{op} because no identity-based policy allows the {service}:{op} action",
                            actor.name
                        )
                        .into(),
                    );
                }
                Answer::Failed(code) => {
                    map.insert("errorCode".into(), code.into());
                    map.insert("errorMessage".into(), "Rate exceeded".into());
                }
            }
        }
        record
    }

    /// One OTLP JSON export for an agent session: a root `invoke_agent` span and one
    /// `execute_tool` span per call. Returns the document and its span count.
    fn otlp_session(&mut self, actor: &Actor, calls: &[(String, &Act)]) -> (Value, u64) {
        let trace_id = self.hex(16);
        let root_id = self.hex(8);
        let conversation = format!("conv_{}", self.hex(12));
        let first = calls.first().map_or(0, |(_, a)| a.time);
        let last = calls.last().map_or(0, |(_, a)| a.time);
        let attr = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
        let mut spans = vec![json!({
            "traceId": trace_id,
            "spanId": root_id,
            "name": format!("invoke_agent {}", actor.name),
            "kind": 1,
            "startTimeUnixNano": (first - SEC).to_string(),
            "endTimeUnixNano": (last + 2 * SEC).to_string(),
            "attributes": [
                attr("gen_ai.operation.name", "invoke_agent"),
                attr("gen_ai.agent.id", &actor.name),
                attr("gen_ai.agent.name", &actor.name),
                attr("gen_ai.conversation.id", &conversation),
                attr("gen_ai.request.model", "gpt-4.1-2025-04-14"),
            ],
            "status": {},
        })];
        for (id, act) in calls {
            let What::Tool { tool, args } = &act.what else {
                continue;
            };
            let arguments: serde_json::Map<String, Value> = args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                .collect();
            let arguments = Value::Object(arguments).to_string();
            let call_id = format!("call_{}", self.hex(12));
            spans.push(json!({
                "traceId": trace_id,
                "spanId": id,
                "parentSpanId": root_id,
                "name": format!("execute_tool {tool}"),
                "kind": 1,
                "startTimeUnixNano": act.time.to_string(),
                "endTimeUnixNano": (act.time + 800_000_000).to_string(),
                "attributes": [
                    attr("gen_ai.operation.name", "execute_tool"),
                    attr("gen_ai.tool.name", tool),
                    attr("gen_ai.tool.type", "function"),
                    attr("gen_ai.tool.call.id", &call_id),
                    attr("gen_ai.tool.call.arguments", &arguments),
                    attr("gen_ai.agent.id", &actor.name),
                    attr("gen_ai.conversation.id", &conversation),
                ],
                "status": {"code": 1},
            }));
        }
        let count = spans.len() as u64;
        let doc = json!({
            "resourceSpans": [{
                "resource": {"attributes": [
                    attr("service.name", "coding-agent-runtime"),
                    attr("service.version", "2.3.1"),
                    attr("deployment.environment.name", "prod"),
                ]},
                "scopeSpans": [{
                    "scope": {"name": "openai.agents", "version": "0.2.4"},
                    "spans": spans,
                }],
            }],
        });
        (doc, count)
    }
}

fn k8s_event(actor: &Actor, act: &Act, id: &str) -> Value {
    let What::K8s {
        verb,
        resource,
        sub,
        namespace,
        name,
    } = &act.what
    else {
        return Value::Null;
    };
    let (group_path, api_version) = match *resource {
        "leases" => ("/apis/coordination.k8s.io/v1", "coordination.k8s.io/v1"),
        "clusterrolebindings" => (
            "/apis/rbac.authorization.k8s.io/v1",
            "rbac.authorization.k8s.io/v1",
        ),
        _ => ("/api/v1", "v1"),
    };
    let mut uri = String::from(group_path);
    if !namespace.is_empty() {
        uri.push_str(&format!("/namespaces/{namespace}"));
    }
    uri.push_str(&format!("/{resource}"));
    if let Some(name) = name {
        uri.push_str(&format!("/{name}"));
    }
    if let Some(sub) = sub {
        uri.push_str(&format!(
            "/{sub}?command=sh&stdin=true&stdout=true&tty=true"
        ));
    } else if *verb == "list" {
        uri.push_str("?limit=500");
    }
    let mut object =
        json!({"resource": resource, "apiVersion": api_version.rsplit('/').next().unwrap_or("v1")});
    if let Some(map) = object.as_object_mut() {
        if api_version.contains('/') {
            map.insert(
                "apiGroup".into(),
                api_version.split('/').next().unwrap_or("").into(),
            );
        }
        if !namespace.is_empty() {
            map.insert("namespace".into(), namespace.clone().into());
        }
        if let Some(name) = name {
            map.insert("name".into(), name.clone().into());
        }
        if let Some(sub) = sub {
            map.insert("subresource".into(), (*sub).into());
        }
    }
    let denied = act.answer == Answer::Denied;
    let status = if denied {
        json!({"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403})
    } else if *verb == "create" {
        json!({"metadata": {}, "code": if sub.is_some() { 101 } else { 201 }})
    } else {
        json!({"metadata": {}, "code": 200})
    };
    let received = micros(act.time);
    let done = micros(act.time + 3_000_000 + (act.time.rem_euclid(7)) * 1_000_000);
    let sa_ns = actor.team;
    // The pod holding the token: replaced daily (a rollout), and with it the bound token.
    let pod_hash = (act.time.div_euclid(86_400_000_000_000) as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(act.actor as u64)
        >> 40;
    let pod = format!("{}-{pod_hash:06x}", actor.name);
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": uri,
        "verb": verb,
        "user": {
            "username": actor.identity_id(),
            "uid": format!("{:08x}-5d2c-4f7e-9a61-{}", act.actor, &actor.key[..12].to_lowercase()),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{sa_ns}"), "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": [format!("JTI={pod_hash:06x}-{}", &actor.key[..8].to_lowercase())],
                "authentication.kubernetes.io/node-name": [format!("ip-10-0-{}-{}.ec2.internal", act.actor % 8, 10 + pod_hash % 200)],
                "authentication.kubernetes.io/pod-name": [pod],
            },
        },
        "sourceIPs": [actor.ip],
        "userAgent": actor.user_agent,
        "objectRef": object,
        "responseStatus": status,
        "requestReceivedTimestamp": received,
        "stageTimestamp": done,
        "annotations": {
            "authorization.k8s.io/decision": if denied { "forbid" } else { "allow" },
            "authorization.k8s.io/reason": if denied { String::new() } else { format!("RBAC: allowed by RoleBinding \"{}\" of Role \"{}\" to ServiceAccount \"{}/{sa_ns}\"", actor.name, actor.name, actor.name) },
        },
    })
}

/// RFC 3339 with microseconds, as kube-apiserver writes its audit timestamps.
fn micros(nanos: i64) -> String {
    let seconds = Timestamp(nanos - nanos.rem_euclid(1_000_000_000)).to_string();
    format!(
        "{}.{:06}Z",
        seconds.trim_end_matches('Z'),
        nanos.rem_euclid(1_000_000_000) / 1_000
    )
}

fn github_entry(actor: &Actor, act: &Act, id: &str) -> Value {
    let What::Github { action, repo } = &act.what else {
        return Value::Null;
    };
    let millis = act.time / 1_000_000;
    let operation = match *action {
        "git.clone" => "access",
        "pull_request.merge" => "modify",
        _ => "create",
    };
    let mut entry = json!({
        "@timestamp": millis,
        "_document_id": id,
        "action": action,
        "actor": actor.name,
        "actor_id": 49_699_333 + act.actor as u64,
        "actor_is_bot": true,
        "business": "acme",
        "business_id": 4_521,
        "created_at": millis,
        "operation_type": operation,
        "org": "acme",
        "org_id": 91_234_567,
        "programmatic_access_type": "GitHub App server-to-server token",
        "repo": repo,
        "repository": repo,
        "repository_public": false,
        "user_agent": actor.user_agent,
    });
    if *action == "git.clone" {
        if let Some(map) = entry.as_object_mut() {
            // Clones come from git itself, not from the app's API client.
            map.insert("user_agent".into(), "git/2.43.0".into());
            map.insert("transport_protocol".into(), 1.into());
            map.insert("transport_protocol_name".into(), "http".into());
            map.insert(
                "repository_id".into(),
                (600_000_000u64 + repo.len() as u64).into(),
            );
        }
    }
    entry
}

/// A CloudTrail delivery file, `{"Records": [...]}`, serialised without copying the records.
#[derive(serde::Serialize)]
struct Records<'r> {
    #[serde(rename = "Records")]
    records: &'r [Value],
}

fn write_gz(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<(), SimError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join(name);
    // Serialised whole first: the encoder is fast on one large write, slow on many tiny ones.
    let json = serde_json::to_vec(value).map_err(|e| SimError::Config(e.to_string()))?;
    let file = File::create(&path).map_err(io_error(&path))?;
    let mut gz = GzEncoder::new(BufWriter::with_capacity(1 << 20, file), Compression::fast());
    gz.write_all(&json)
        .and_then(|()| gz.finish())
        .and_then(|mut inner| inner.flush())
        .map_err(io_error(&path))
}
