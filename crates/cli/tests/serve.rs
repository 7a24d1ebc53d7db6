//! End-to-end test of `nhiwatch serve`: the real binary on a loopback port, the simulator's
//! telemetry pushed over HTTP, an agent gateway driving `/v1/decide` through an S1 scenario
//! (an agent reading production secrets outside its tool scope), and the findings read back
//! after a restart on the same evidence store.

mod common;

use std::path::Path;

use common::{get, http, Server};
use nhiwatch_decode::{ReadOptions, Reader, Sinks};
use nhiwatch_model::Event;
use nhiwatch_sim::{Scenario, SimConfig};
use serde_json::{json, Value};

/// Starts `nhiwatch serve` over the simulation's policy, keeping evidence in `data`.
fn serve(sim: &Path, data: &Path) -> Server {
    Server::start(common::serve_command(data, Some(&sim.join("policy.yaml"))))
}

fn events_of(path: &Path) -> Vec<Event<'static>> {
    let mut events = Vec::new();
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut on_event = |e: Event<'_>| events.push(e.into_owned());
    let mut on_reject = |r: nhiwatch_decode::Reject| panic!("{r}");
    let mut sinks = Sinks {
        event: &mut on_event,
        reject: &mut on_reject,
    };
    reader.read_path(path, &mut sinks);
    reader.finish(&mut sinks);
    events
}

fn post_lines(addr: std::net::SocketAddr, events: &[&Event<'static>]) {
    let mut body = Vec::new();
    for event in events {
        serde_json::to_writer(&mut body, event).expect("JSON");
        body.push(b'\n');
    }
    let (status, answer) = http(addr, "POST", "/v1/events", &body);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
}

#[test]
fn an_agent_gateway_is_stopped_before_the_secret_is_read() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sim = dir.path().join("sim");
    let data = dir.path().join("data");
    let config = SimConfig {
        identities: 6,
        days: 11,
        attacks: vec![Scenario::AgentReadsSecrets],
        incidents_per_scenario: 1,
        attack_after_days: 10,
        ..SimConfig::default()
    };
    nhiwatch_sim::simulate(&config, &sim).expect("simulates");
    let label: Value = serde_json::from_str(
        std::fs::read_to_string(sim.join("labels.jsonl"))
            .expect("labels")
            .lines()
            .next()
            .expect("one incident"),
    )
    .expect("JSON");
    let agent = label["identity"].as_str().expect("identity").to_owned();
    let attack: Vec<&str> = label["event_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();

    let server = serve(&sim, &data);
    let addr = server.addr();
    // Every provider's files as they are (CloudTrail gzip, Kubernetes, GitHub), one request each.
    let telemetry = sim.join(nhiwatch_sim::TELEMETRY_DIR);
    let mut files = Vec::new();
    let mut dirs = vec![telemetry.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if !path.starts_with(telemetry.join("agents")) {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() > 10);
    for file in &files {
        let (status, answer) = http(
            addr,
            "POST",
            "/v1/events",
            &std::fs::read(file).expect("file"),
        );
        assert_eq!(
            status,
            202,
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&answer)
        );
    }

    // The agent's own history goes in as telemetry up to the attack; then the gateway asks
    // before each of the attack's tool calls.
    let agent_events = events_of(&telemetry.join("agents"));
    let start = agent_events
        .iter()
        .filter(|e| attack.contains(&e.id.as_ref()))
        .map(|e| e.time)
        .min()
        .expect("attack events in the agent telemetry");
    let before: Vec<&Event<'static>> = agent_events
        .iter()
        .filter(|e| e.time < start && !attack.contains(&e.id.as_ref()))
        .collect();
    post_lines(addr, &before);
    let mut calls: Vec<&Event<'static>> = agent_events
        .iter()
        .filter(|e| attack.contains(&e.id.as_ref()))
        .collect();
    calls.sort_by_key(|e| e.time);
    let mut stopped_at = None;
    let mut finding_ids = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        let request = json!({
            "identity": call.identity.id,
            "action": call.action,
            "resource": call.resource,
            "time": call.time,
            "id": call.id,
            "session": call.identity.session,
        });
        let (status, answer) = http(addr, "POST", "/v1/decide", request.to_string().as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).expect("JSON");
        let decision = answer["decision"].as_str().expect("a decision").to_owned();
        if decision != "allow" && stopped_at.is_none() {
            stopped_at = Some((index, decision, answer["reasons"].clone()));
            finding_ids = answer["finding_ids"].as_array().expect("ids").clone();
        }
    }
    // The gateway is told not to go on at the latest when the agent first asks for a secret.
    // The policy maps a high finding of an autonomous agent to block.
    let first_secret = calls
        .iter()
        .position(|c| c.action == "tool:get_secret")
        .expect("the scenario reads secrets");
    let (index, decision, reasons) = stopped_at.expect("some call is not allowed");
    assert!(index <= first_secret, "stopped at call {index}: {reasons}");
    assert_eq!(decision, "block", "{reasons}");
    assert!(
        reasons.to_string().contains("out_of_scope (high)"),
        "{reasons}"
    );

    let identities = get(addr, "/v1/identities");
    assert_eq!(identities["total"], 6);
    assert_eq!(
        get(addr, &format!("/v1/identities/{agent}"))["identity"]["kind"],
        "agent"
    );
    server.stop();

    // After a restart on the same store, the finding the decision named is there, with the
    // attack's events as evidence.
    let server = serve(&sim, &data);
    let addr = server.addr();
    let findings = get(
        addr,
        &format!("/v1/findings?identity={agent}&kind=out_of_scope"),
    );
    let finding = findings["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| finding_ids.contains(&f["id"]))
        .unwrap_or_else(|| panic!("none of {finding_ids:?} in {findings}"));
    let evidence = finding["evidence"]["event_ids"].to_string();
    for secret_read in calls.iter().filter(|c| c.action == "tool:get_secret") {
        assert!(evidence.contains(secret_read.id.as_ref()), "{evidence}");
    }
    server.stop();
}
