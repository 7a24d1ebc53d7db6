//! Kubernetes audit decoding against telemetry written by others (../shared/corpus): Falco's
//! minikube traces and Panther's EKS/AKS/GKE rule tests, read through the public `Reader`.

use std::collections::HashSet;
use std::path::Path;

use nhiwatch_model::{ActionClass, Event, IdentityKind, Outcome, Source};
use serde_json::Value;

mod common;

use common::{read, Read, CORPUS};

fn falco(file: &str) -> Event<'static> {
    let path = format!("{CORPUS}/k8s_audit/{file}");
    let out = read(|reader, sinks| reader.read_path(Path::new(&path), sinks));
    assert!(out.rejects.is_empty(), "{file}: {:#?}", out.rejects);
    assert_eq!(out.events.len(), 1, "{file}");
    out.events.into_iter().next().unwrap()
}

#[test]
fn the_falco_traces_decode_and_only_the_non_event_is_rejected() {
    let dir = format!("{CORPUS}/k8s_audit");
    let out = read(|reader, sinks| reader.read_path(Path::new(&dir), sinks));
    assert_eq!(out.rejects.len(), 1, "{:#?}", out.rejects);
    let reject = &out.rejects[0];
    assert!(reject.file.ends_with("fal_01_003.json"), "{reject}");
    assert_eq!((reject.line, reject.record.as_str()), (1, "{\"kind\": 0}"));
    assert!(reject.reason.contains("unrecognised record"), "{reject}");

    // 51 audit records in 46 files (create_configmap_sensitive_values.json holds six). Two
    // files are the same request twice (same auditID, time, user, verb and object; only the
    // pod spec was edited for another Falco test): one event. Two others reuse an auditID for
    // another user: two events.
    assert_eq!(out.events.len(), 50);
    assert!(out.events.iter().all(|e| e.source == Source::K8sAudit));
    let reused: Vec<&str> = out
        .events
        .iter()
        .filter(|e| e.id == "841d3e6d-90d2-43df-8da4-684738bee3d5")
        .map(|e| &*e.identity.id)
        .collect();
    assert_eq!(reused, ["system:anonymous", "some-user"]);
    let edited = out
        .events
        .iter()
        .filter(|e| e.id == "f83ecd50-5bf4-4fe7-a419-dea22852ca49")
        .count();
    assert_eq!(edited, 1);

    // Every record's facts, read independently of the decoder.
    let mut seen = HashSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if line.trim().is_empty() {
                continue;
            }
            let log: Value = serde_json::from_str(line).unwrap();
            let Some(id) = log["auditID"].as_str() else {
                continue;
            };
            let user = log["user"]["username"].as_str().unwrap();
            let event = out
                .events
                .iter()
                .find(|e| e.id == id && e.identity.id == user)
                .unwrap_or_else(|| panic!("no event for {}", path.display()));
            seen.insert((id.to_owned(), user.to_owned()));
            let resource = log["objectRef"]["resource"].as_str().unwrap();
            let verb = log["verb"].as_str().unwrap();
            assert!(
                event.action.starts_with(&format!("k8s:{verb}/{resource}")),
                "{}",
                event.action
            );
            assert_eq!(
                event.src_ip.as_deref(),
                log["sourceIPs"][0].as_str(),
                "{id}"
            );
            assert_eq!(
                event.time.to_string(),
                log["stageTimestamp"].as_str().unwrap(),
                "{id}"
            );
            assert!(!event.time_inferred);
        }
    }
    assert_eq!(
        seen.len(),
        50,
        "every distinct (auditID, user) has its event"
    );
}

#[test]
fn falco_traces_normalise_to_the_expected_fields() {
    let exec = falco("exec_pod.json");
    assert_eq!(exec.id, "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6");
    assert_eq!(exec.action, "k8s:create/pods/exec");
    assert_eq!(exec.action_class, ActionClass::Exec);
    assert_eq!(
        exec.resource.as_deref(),
        Some("k8s:default/pods/nginx-deployment-7998647bdf-phvq7/exec")
    );
    assert_eq!(exec.identity.id, "minikube-user");
    assert_eq!(exec.identity.kind, IdentityKind::Unknown);
    assert_eq!(exec.outcome, Outcome::Success, "101 Switching Protocols");
    assert_eq!(exec.time.to_string(), "2018-10-26T13:38:34.902914Z");
    assert!(
        exec.raw.get().contains(r#""stage":"ResponseStarted""#),
        "a request that never completed is emitted at the end of input"
    );

    let pod = falco("create_nginx_pod_privileged.json");
    assert_eq!(
        pod.identity.id,
        "system:serviceaccount:kube-system:replicaset-controller"
    );
    assert_eq!(pod.identity.kind, IdentityKind::ServiceAccount);
    assert_eq!(pod.action, "k8s:create/pods");
    assert_eq!(pod.action_class, ActionClass::Write);
    assert_eq!(pod.resource.as_deref(), Some("k8s:default/pods"));

    let node = falco("create_nginx_pod_unsensitive_mount.json");
    assert_eq!(node.identity.id, "system:node:minikube");
    assert_eq!(node.identity.kind, IdentityKind::Workload);
    assert_eq!(
        (node.action.as_ref(), node.action_class),
        ("k8s:get/pods", ActionClass::Read)
    );

    let binding = falco("attach_cluster_admin_role.json");
    assert_eq!(binding.action, "k8s:create/clusterrolebindings");
    assert_eq!(binding.action_class, ActionClass::Permission);
    assert_eq!(
        binding.resource.as_deref(),
        Some("k8s:clusterrolebindings/some-reader-binding")
    );

    let token = falco("create_service_account_token_secret.json");
    assert_eq!(token.identity.id, "system:kube-controller-manager");
    assert_eq!(token.identity.kind, IdentityKind::Workload);
    assert_eq!(token.action, "k8s:create/secrets");
    assert_eq!(
        token.resource.as_deref(),
        Some("k8s:test2/secrets/default-token-7v4pb")
    );
    assert_eq!(
        token.user_agent.as_deref(),
        Some("kube-controller-manager/v1.17.3 (linux/amd64) kubernetes/06ad960/tokens-controller")
    );

    let anonymous = falco("anonymous_creates_namespace_foo.json");
    assert_eq!(anonymous.identity.id, "system:anonymous");
    assert_eq!(anonymous.identity.kind, IdentityKind::Unknown);
    assert_eq!(anonymous.resource.as_deref(), Some("k8s:namespaces/foo"));

    let namespace = falco("delete_namespace_foo.json");
    assert_eq!(
        (namespace.action.as_ref(), namespace.action_class),
        ("k8s:delete/namespaces", ActionClass::Delete)
    );
    assert_eq!(namespace.resource.as_deref(), Some("k8s:namespaces/foo"));

    let role = falco("modify_cluster_role_node_problem_detector.json");
    assert_eq!(
        (role.action.as_ref(), role.action_class),
        ("k8s:patch/clusterroles", ActionClass::Permission)
    );
    let sa = falco("delete_serviceaccount.json");
    assert_eq!(sa.action_class, ActionClass::Permission);
}

/// The Panther rule tests: (test name, log) per line.
fn panther() -> Vec<(String, Value)> {
    let path = format!("{CORPUS}/rule_tests/panther_rule_tests.Amazon.EKS.Audit.jsonl");
    std::fs::read_to_string(path)
        .expect("the Panther rule tests are in the corpus")
        .lines()
        .map(|line| {
            let wrapper: Value = serde_json::from_str(line).unwrap();
            (
                wrapper["test_name"].as_str().unwrap().to_owned(),
                wrapper["log"].clone(),
            )
        })
        .collect()
}

/// The logs under this log type that hold no Kubernetes audit event: Panther's enrichment-only
/// stubs for its GreyNoise and OTX rules (only `p_*` keys: VPC flow, Okta, Cloudflare, ...),
/// and the "excluded" examples of other services' activity (GCP Compute, Azure VM writes).
fn not_kubernetes(log: &Value) -> bool {
    let stub = log
        .as_object()
        .is_some_and(|map| map.keys().all(|key| key.starts_with("p_")));
    let other_gcp = log["protoPayload"]["serviceName"]
        .as_str()
        .is_some_and(|service| service != "k8s.io");
    let other_azure = log["category"]
        .as_str()
        .is_some_and(|category| !category.starts_with("kube-audit"));
    stub || other_gcp || other_azure
}

/// One rule test decoded alone, as Panther evaluates it.
fn decode_alone(log: &Value) -> Read {
    let line = format!("{log}\n");
    read(|reader, sinks| reader.read_bytes("panther", line.as_bytes(), sinks))
}

#[test]
fn every_panther_kubernetes_rule_test_log_normalises() {
    let tests = panther();
    assert_eq!(tests.len(), 270);
    let mut others = 0;
    for (name, log) in &tests {
        let out = decode_alone(log);
        if not_kubernetes(log) {
            others += 1;
            assert_eq!(out.rejects.len(), 1, "{name}");
            assert!(out.rejects[0].reason.contains("unrecognised record"));
            continue;
        }
        assert!(out.rejects.is_empty(), "{name}: {:#?}", out.rejects);
        assert_eq!(out.events.len(), 1, "{name}");
        let event = &out.events[0];
        assert_eq!(event.source, Source::K8sAudit, "{name}");
        assert_eq!(event.raw.get(), log.to_string(), "{name}");
        if let Some(id) = log["auditID"].as_str() {
            assert_eq!(event.id, id, "{name}");
        }
        if let (Some(verb), None) = (log["verb"].as_str(), log["impersonatedUser"].as_object()) {
            assert!(event.action.starts_with(&format!("k8s:{verb}")), "{name}");
        }
        if let Some(user) = log["user"]["username"].as_str() {
            assert_eq!(event.identity.id, user, "{name}");
        }
        if let Some(ip) = log["sourceIPs"][0].as_str() {
            assert_eq!(event.src_ip.as_deref(), Some(ip), "{name}");
        }
        match log["responseStatus"]["code"].as_u64() {
            Some(401 | 403) => assert_eq!(event.outcome, Outcome::Denied, "{name}"),
            Some(code) if code >= 400 => assert_eq!(event.outcome, Outcome::Error, "{name}"),
            Some(_) => assert_eq!(event.outcome, Outcome::Success, "{name}"),
            None => {}
        }
    }
    assert_eq!(others, 15);
}

#[test]
fn panther_kubernetes_records_normalise_to_the_expected_fields() {
    let tests = panther();
    let by_test = |name: &str| -> Event<'static> {
        let (_, log) = tests
            .iter()
            .find(|(test, _)| test == name)
            .unwrap_or_else(|| panic!("no rule test named {name:?}"));
        let out = decode_alone(log);
        assert!(out.rejects.is_empty(), "{name}: {:?}", out.rejects);
        out.events.into_iter().next().unwrap()
    };

    let secret = by_test("Service account failed to get secret");
    assert_eq!(secret.identity.id, "system:serviceaccount:default:app-sa");
    assert_eq!(secret.identity.kind, IdentityKind::ServiceAccount);
    assert_eq!(secret.action, "k8s:get/secrets");
    assert_eq!(secret.action_class, ActionClass::Read);
    assert_eq!(
        secret.resource.as_deref(),
        Some("k8s:production/secrets/admin-token")
    );
    assert_eq!(secret.outcome, Outcome::Denied);
    assert!(secret.time_inferred, "this hand-written record has no time");

    let coredns = by_test("403 and Public IP");
    assert_eq!(
        coredns.identity.id,
        "system:serviceaccount:kube-system:coredns"
    );
    assert_eq!(
        coredns.identity.session.as_deref(),
        Some("coredns-57ff979f67-bl27n"),
        "the pod the token is bound to (Panther's rewritten extra key)"
    );
    assert_eq!(coredns.action, "k8s:watch/endpointslices");
    assert_eq!(coredns.action_class, ActionClass::List);
    assert_eq!(coredns.outcome, Outcome::Denied);

    let admin = by_test("non-system username");
    assert_eq!(admin.identity.id, "kubernetes-admin");
    assert_eq!(
        admin.identity.credential.as_deref(),
        Some("ASIARLIVEKVNN6Y6J5UW"),
        "EKS's IAM access key"
    );
    assert_eq!(admin.action, "k8s:get/pods/log");
    assert_eq!(admin.action_class, ActionClass::Read);

    let addon = by_test("eks:addon-manager from public ip as lambda");
    assert_eq!(addon.identity.kind, IdentityKind::Workload);
    assert_eq!(
        addon.resource.as_deref(),
        Some("k8s:kube-system/deployments/coredns")
    );

    let scanner = by_test("Anonymous API Access Web Scanner Allowed");
    assert_eq!(scanner.action, "k8s:get/version");
    assert_eq!(scanner.resource.as_deref(), Some("/version"));
    assert_eq!(scanner.time.to_string(), "2024-11-13T18:34:10.595494Z");

    let aks = by_test("AKS long-lived token created");
    assert_eq!(aks.identity.id, "persistence-user@example.com");
    assert_eq!(aks.identity.kind, IdentityKind::User);
    assert_eq!(aks.action, "k8s:create/serviceaccounts/token");
    assert_eq!(aks.action_class, ActionClass::Auth);

    let aks_exec = by_test("AKS Exec Into Pod (realistic)");
    assert_eq!(aks_exec.action, "k8s:get/pods/exec");
    assert_eq!(aks_exec.action_class, ActionClass::Exec);
    assert_eq!(aks_exec.src_ip.as_deref(), Some("20.43.245.209"));

    let gke = by_test("GKE failed secret get");
    assert_eq!(gke.identity.id, "user@company.com");
    assert_eq!(gke.action, "k8s:get/secrets");
    assert_eq!(
        gke.resource.as_deref(),
        Some("k8s:production/secrets/tls-cert")
    );
    assert_eq!(
        (gke.outcome, gke.error.as_deref()),
        (Outcome::Denied, Some("PERMISSION_DENIED"))
    );
    assert_eq!(gke.src_ip.as_deref(), Some("8.8.8.8"));

    let gke_exec = by_test("GCP GKE Exec Into Pod");
    assert_eq!(gke_exec.action, "k8s:create/pods/exec");
    assert_eq!(gke_exec.action_class, ActionClass::Exec);
    assert_eq!(gke_exec.user_agent.as_deref(), Some("kubectl/v1.27.0"));

    let gke_sa = by_test("GKE System ServiceAccount from Non-GCP Public IP");
    assert_eq!(gke_sa.identity.kind, IdentityKind::ServiceAccount);
    assert_eq!(gke_sa.action, "k8s:list/pods");
    assert_eq!(gke_sa.resource.as_deref(), Some("k8s:default/pods"));
}

#[test]
fn the_panther_file_read_as_one_stream_merges_repeated_requests_without_rejects() {
    // Panther's tests are independent cases that reuse audit IDs; read as one log, a final
    // record repeated verbatim is one request and is reported once.
    let tests = panther();
    let lines: String = tests.iter().map(|(_, log)| format!("{log}\n")).collect();
    let out = read(|reader, sinks| reader.read_bytes("panther", lines.as_bytes(), sinks));
    assert_eq!(out.rejects.len(), 15, "only the logs of other services");
    assert!(out.events.len() < tests.len() - 15);
    let ids: HashSet<&str> = out.events.iter().map(|e| &*e.id).collect();
    for (name, log) in &tests {
        if let Some(id) = log["auditID"].as_str() {
            assert!(ids.contains(id), "{name}: {id} lost");
        }
    }
}

#[test]
fn an_event_list_from_the_webhook_backend_merges_its_stages() {
    let list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[
{"level":"Metadata","auditID":"w-1","stage":"RequestReceived","requestURI":"/api/v1/namespaces/default/pods?watch=true","verb":"watch","user":{"username":"system:serviceaccount:default:app"},"sourceIPs":["10.0.0.9"],"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"requestReceivedTimestamp":"2024-01-01T00:00:00.000001Z","stageTimestamp":"2024-01-01T00:00:00.000001Z"},
{"level":"Metadata","auditID":"w-2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/x","verb":"get","user":{"username":"system:serviceaccount:default:app"},"sourceIPs":["10.0.0.9"],"objectRef":{"resource":"secrets","namespace":"default","name":"x","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-01-01T00:00:01.000001Z","stageTimestamp":"2024-01-01T00:00:01.000201Z"},
{"level":"Metadata","auditID":"w-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?watch=true","verb":"watch","user":{"username":"system:serviceaccount:default:app"},"sourceIPs":["10.0.0.9"],"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-01-01T00:00:00.000001Z","stageTimestamp":"2024-01-01T00:05:00.000001Z"}]}"#;
    let out = read(|reader, sinks| reader.read_bytes("webhook.json", list.as_bytes(), sinks));
    assert!(out.rejects.is_empty(), "{:#?}", out.rejects);
    let got: Vec<(&str, &str)> = out.events.iter().map(|e| (&*e.id, &*e.action)).collect();
    assert_eq!(got, [("w-2", "k8s:get/secrets"), ("w-1", "k8s:watch/pods")]);
    assert_eq!(
        out.events[1].time.to_string(),
        "2024-01-01T00:05:00.000001Z"
    );
}
