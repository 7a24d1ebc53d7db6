//! Page rendering without a browser: a small store with a deployer that leaves its scope and
//! its workflow, and an identity whose name is an attack on the page.

use std::sync::Arc;

use nhiwatch_model::{Decision, Event, Evidence, Finding, FindingKind, Severity, Timestamp};
use nhiwatch_policy::Policy;
use nhiwatch_store::{Batch, Options, RiskPoint, Store};

use super::*;
use crate::triage::{Mark, Record, Triage};

/// The deployer the policy knows.
pub(crate) const DEPLOYER: &str = "arn:aws:iam::111122223333:role/ci-deployer";
/// An identity that tries to script the page and recolour a terminal.
pub(crate) const HOSTILE: &str = "<script>alert(1)</script>\u{1b}[31m<img src=x onerror=alert(2)>";
/// The deployer's out-of-scope finding.
pub(crate) const FINDING: &str = "f-0000000000000000000000aa";

const POLICY: &str = r#"
identities:
  - match: "arn:aws:iam::*:role/ci-deployer"
    kind: role
    owner: platform-team
    allow:
      - action: "sts:GetCallerIdentity"
      - action: "ecr:*"
      - action: "ecs:UpdateService"
    workflow:
      steps: "sts:GetCallerIdentity ecr:GetAuthorizationToken ecs:UpdateService"
      window: 30m
"#;

fn event(
    id: &str,
    identity: &str,
    time: &str,
    action: &str,
    outcome: &str,
    resource: &str,
) -> Event<'static> {
    let line = serde_json::json!({
        "id": id,
        "time": time,
        "source": "cloudtrail",
        "identity": {"id": identity, "kind": "role", "session": "run-1"},
        "action": action,
        "action_class": "other",
        "resource": resource,
        "outcome": outcome,
        "src_ip": "203.0.113.9",
        "raw": {"eventID": id, "eventName": action, "note": "<b>raw</b>"},
    })
    .to_string();
    serde_json::from_str::<Event<'_>>(&line)
        .unwrap()
        .into_owned()
}

fn finding(
    id: &str,
    identity: &str,
    time: &str,
    kind: FindingKind,
    risk: u8,
    evidence: &[&str],
) -> Finding {
    Finding {
        id: id.into(),
        time: Timestamp::parse_rfc3339(time).unwrap(),
        identity: identity.into(),
        kind,
        severity: if risk >= 80 {
            Severity::High
        } else {
            Severity::Low
        },
        risk,
        decision: if risk >= 80 {
            Decision::Block
        } else {
            Decision::Allow
        },
        summary: format!("{identity} did something <unexpected>"),
        evidence: Evidence {
            event_ids: evidence.iter().map(|e| (*e).to_owned()).collect(),
            detail: serde_json::json!({
                "permitted": ["sts:GetCallerIdentity", "ecr:*"],
                "expected_next": "ecr:GetAuthorizationToken",
                "baseline": {"rate_median": 3, "threshold": 12},
                "accessed": [{"action": "iam:GetRole", "events": 2}, {"action": "<x>", "denied": true}],
            }),
        },
        frameworks: vec!["OWASP-NHI-06".into(), "MITRE-ATTACK:T1098".into()],
    }
}

/// A store, its context and the policy.
pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub ctx: Ctx,
}

pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut batch = Batch::new();
    // Two clean runs long before (the baseline), then a run that goes astray.
    for (n, day) in ["2026-03-02", "2026-03-03"].iter().enumerate() {
        for (i, action) in [
            "sts:GetCallerIdentity",
            "ecr:GetAuthorizationToken",
            "ecs:UpdateService",
        ]
        .iter()
        .enumerate()
        {
            batch.add_event(&event(
                &format!("b{n}{i}"),
                DEPLOYER,
                &format!("{day}T10:0{i}:00Z"),
                action,
                "success",
                "arn:aws:ecs:eu-west-1:111122223333:service/prod/web",
            ));
        }
    }
    batch.add_event(&event(
        "e1",
        DEPLOYER,
        "2026-03-12T03:00:00Z",
        "sts:GetCallerIdentity",
        "success",
        "*",
    ));
    batch.add_event(&event(
        "e2",
        DEPLOYER,
        "2026-03-12T03:01:00Z",
        "ecs:UpdateService",
        "success",
        "arn:aws:ecs:eu-west-1:111122223333:service/prod/web",
    ));
    batch.add_event(&event(
        "e3",
        DEPLOYER,
        "2026-03-12T03:02:00Z",
        "iam:CreateAccessKey",
        "denied",
        "arn:aws:iam::111122223333:user/admin",
    ));
    batch.add_event(&event(
        "h1",
        HOSTILE,
        "2026-03-12T04:00:00Z",
        "s3:GetObject",
        "success",
        "<img src=x onerror=alert(3)>",
    ));
    let out_of_scope = finding(
        FINDING,
        DEPLOYER,
        "2026-03-12T03:02:00Z",
        FindingKind::OutOfScope,
        90,
        &["e3", "gone"],
    );
    batch.add_finding(&out_of_scope).unwrap();
    batch
        .add_finding(&finding(
            "f-0000000000000000000000bb",
            HOSTILE,
            "2026-03-12T04:00:00Z",
            FindingKind::NovelAction,
            20,
            &["h1"],
        ))
        .unwrap();
    batch.add_risk(&RiskPoint {
        identity: DEPLOYER.into(),
        time: out_of_scope.time,
        risk: 90,
        decision: Decision::Block,
        cause: FINDING.into(),
    });
    store.append(&mut batch).unwrap();
    let policy = Policy::parse(POLICY, "policy.yaml", None).unwrap();
    let triage = Triage::open(dir.path()).unwrap();
    let ctx = Ctx::new(Arc::new(store), Some(Arc::new(policy)), triage);
    Fixture { dir, ctx }
}

pub(crate) fn chrome() -> Chrome {
    Chrome {
        who: Some("<admin>".into()),
        can_triage: true,
        version: "v1".into(),
    }
}

/// What every page must hold to: no markup from telemetry, nothing the CSP would block.
pub(crate) fn assert_safe(html: &str) {
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page script: {html}"
    );
    assert!(html.contains(r#"<script src="/ui/static/app.js?v="#));
    assert!(!html.contains("<img"), "no markup from telemetry");
    assert!(!html.contains(" style="), "no inline style");
    assert!(!html.contains('\u{1b}'), "no raw escape characters");
}

const HOSTILE_ESCAPED: &str =
    "&lt;script&gt;alert(1)&lt;/script&gt;\\u{1b}[31m&lt;img src=x onerror=alert(2)&gt;";

#[test]
fn overview_ranks_by_risk_and_escapes_identities() {
    let f = fixture();
    let html = overview::render(&f.ctx, &overview::Params::default(), &chrome()).unwrap();
    assert_safe(&html);
    assert!(html.contains(HOSTILE_ESCAPED), "{html}");
    assert!(
        html.contains("&lt;admin&gt;"),
        "the signed-in name is escaped"
    );
    let deployer = html.find("role/ci-deployer</a>").unwrap();
    let hostile = html.find(HOSTILE_ESCAPED).unwrap();
    assert!(deployer < hostile, "the riskier identity comes first");
    assert!(html.contains("platform-team"));
    assert!(html.contains(r#"<svg class="spark""#));
    assert!(html.contains("<dt>Events</dt><dd>10</dd>"));
    assert!(html.contains("findings over time by severity"));
    assert!(html.contains(r#"<a class="id" href="/ui/identity?id=%3Cscript%3Ealert%281%29"#));

    let filtered = overview::Params {
        action: "iam:".into(),
        ..overview::Params::default()
    };
    let html = overview::render(&f.ctx, &filtered, &chrome()).unwrap();
    assert!(html.contains("role/ci-deployer</a>") && !html.contains(HOSTILE_ESCAPED));
    let by_kind = overview::Params {
        finding: "novel_action".into(),
        ..overview::Params::default()
    };
    let html = overview::render(&f.ctx, &by_kind, &chrome()).unwrap();
    assert!(!html.contains("role/ci-deployer</a>") && html.contains(HOSTILE_ESCAPED));
    let unknown = overview::Params {
        finding: "<nope>".into(),
        ..overview::Params::default()
    };
    let html = overview::render(&f.ctx, &unknown, &chrome()).unwrap();
    assert!(html.contains("Unknown finding kind `&lt;nope&gt;`"));
}

#[test]
fn identity_page_marks_scope_workflow_and_quiet_hours() {
    let f = fixture();
    let params = identity::Params {
        id: DEPLOYER.into(),
        ..identity::Params::default()
    };
    let html = identity::render(&f.ctx, &params, &chrome())
        .unwrap()
        .unwrap();
    assert_safe(&html);
    assert!(
        html.contains(r#"<span class="badge m-refused" title="no allow rule"#),
        "{html}"
    );
    assert!(html.contains("out of order; expected ecr:GetAuthorizationToken"));
    assert!(html.contains(r#"<span class="badge m-denied">denied</span>"#));
    assert!(html.contains("✓ sts:GetCallerIdentity"));
    assert!(html.contains(r#"<svg class="heat""#));
    assert!(
        html.contains("Learned from 6 events before the period; usually active 08:00-13:00"),
        "{html}"
    );
    assert!(
        html.contains("in hours the baseline says are quiet"),
        "03:00 is outside 10:00"
    );
    assert!(html.contains("Permitted but not used in this period"));
    assert!(html
        .contains(r#"<a href="/ui/finding?id=f-0000000000000000000000aa&amp;identity=arn%3Aaws"#));
    assert!(html.contains("platform-team"));

    let hostile = identity::Params {
        id: HOSTILE.into(),
        ..identity::Params::default()
    };
    let html = identity::render(&f.ctx, &hostile, &chrome())
        .unwrap()
        .unwrap();
    assert_safe(&html);
    assert!(html.contains(&format!(r#"<h1 class="ident">{HOSTILE_ESCAPED}</h1>"#)));
    assert!(html.contains("&lt;img src=x onerror=alert(3)&gt;"));
    assert!(html.contains("No policy entry matches this identity"));

    let missing = identity::Params {
        id: "nobody".into(),
        ..identity::Params::default()
    };
    assert!(identity::render(&f.ctx, &missing, &chrome())
        .unwrap()
        .is_none());
    let bad_period = identity::Params {
        id: DEPLOYER.into(),
        from: "yesterday".into(),
        ..identity::Params::default()
    };
    let html = identity::render(&f.ctx, &bad_period, &chrome())
        .unwrap()
        .unwrap();
    assert!(html.contains("`yesterday` is not a time before the period"));
}

#[test]
fn finding_page_shows_evidence_comparison_decision_and_triage() {
    let f = fixture();
    let params = finding::Params {
        id: FINDING.into(),
        identity: DEPLOYER.into(),
    };
    let html = finding::render(&f.ctx, &params, &chrome())
        .unwrap()
        .unwrap();
    assert_safe(&html);
    assert!(html.contains(r#"<span class="badge d-block">block</span>"#));
    assert!(html.contains(r#"<code class="act">iam:CreateAccessKey</code>"#));
    assert!(
        html.contains("&quot;note&quot;: &quot;&lt;b&gt;raw&lt;/b&gt;&quot;"),
        "raw record, escaped"
    );
    assert!(html.contains("<dt>expected next</dt><dd>ecr:GetAuthorizationToken</dd>"));
    assert!(html.contains("<dt>threshold</dt><dd>12</dd>"));
    assert!(html.contains("<li>sts:GetCallerIdentity</li><li>ecr:*</li>"));
    assert!(
        html.contains(
            r#"<th scope="col">action</th><th scope="col">events</th><th scope="col">denied</th>"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"<tr><td>&lt;x&gt;</td><td>—</td><td><code>true</code></td></tr>"#));
    assert!(html.contains("1 evidence events are no longer in the store"));
    assert!(html.contains("<code>gone</code>"));
    assert!(html.contains("<code>MITRE-ATTACK:T1098</code>"));
    assert!(html.contains(r#"<button type="submit" name="mark" value="benign">"#));
    assert!(html.contains(r#"href="/ui/finding.json?id=f-0000000000000000000000aa&amp;identity="#));

    // Without the identity the finding is found by a scan; a reader sees no triage form.
    let reader = Chrome {
        can_triage: false,
        ..chrome()
    };
    let by_id = finding::Params {
        id: FINDING.into(),
        identity: String::new(),
    };
    let html = finding::render(&f.ctx, &by_id, &reader).unwrap().unwrap();
    assert!(!html.contains("<form class=\"triage\""));
    assert!(finding::render(
        &f.ctx,
        &finding::Params {
            id: "f-x".into(),
            identity: String::new()
        },
        &reader
    )
    .unwrap()
    .is_none());

    f.ctx
        .triage
        .record(Record {
            finding: FINDING.into(),
            identity: DEPLOYER.into(),
            mark: Mark::Benign,
            by: "admin".into(),
            time: Timestamp::parse_rfc3339("2026-03-13T00:00:00Z").unwrap(),
            note: "<planned> rotation".into(),
        })
        .unwrap();
    let html = finding::render(&f.ctx, &params, &chrome())
        .unwrap()
        .unwrap();
    assert!(html.contains(r#"<span class="badge t-benign">benign</span>"#));
    assert!(html.contains("<b>benign</b> by admin: &lt;planned&gt; rotation"));

    let export = finding::export(&f.ctx, &params).unwrap().unwrap();
    assert_eq!(export["finding"]["id"], FINDING);
    assert_eq!(
        export["evidence_events"][0]["raw"]["eventName"],
        "iam:CreateAccessKey"
    );
    assert_eq!(export["missing_event_ids"], serde_json::json!(["gone"]));
    assert_eq!(export["triage"][0]["mark"], "benign");
}

#[test]
fn findings_list_filters_by_kind_severity_and_status() {
    let f = fixture();
    let all = findings::render(&f.ctx, &findings::Params::default(), &chrome()).unwrap();
    assert_safe(&all);
    assert!(all.contains("2 of 2 findings"));
    let high = findings::Params {
        severity: "high".into(),
        ..findings::Params::default()
    };
    let html = findings::render(&f.ctx, &high, &chrome()).unwrap();
    assert!(html.contains("1 of 1 findings") && html.contains("out_of_scope"));
    let kind = findings::Params {
        kind: "novel_action".into(),
        ..findings::Params::default()
    };
    let html = findings::render(&f.ctx, &kind, &chrome()).unwrap();
    assert!(html.contains("1 of 1 findings") && html.contains(HOSTILE_ESCAPED));
    let acknowledged = findings::Params {
        status: "acknowledged".into(),
        ..findings::Params::default()
    };
    let html = findings::render(&f.ctx, &acknowledged, &chrome()).unwrap();
    assert!(html.contains("0 of 0 findings"));
}

#[test]
fn the_version_follows_the_store_and_the_triage() {
    let f = fixture();
    let before = f.ctx.version().unwrap();
    assert!(
        before.starts_with("0-") && before.ends_with("-0"),
        "{before}"
    );
    let mut batch = Batch::new();
    batch.add_event(&event(
        "late",
        DEPLOYER,
        "2026-03-12T05:00:00Z",
        "ecr:BatchGetImage",
        "success",
        "*",
    ));
    f.ctx.store.append(&mut batch).unwrap();
    assert!(f.ctx.version().unwrap().starts_with("1-"));
    std::fs::write(f.dir.path().join("rejects.jsonl"), "{}\n{}\n").unwrap();
    assert_eq!(f.ctx.rejects(), 2);
    std::fs::write(f.dir.path().join("rejects.jsonl"), "{}\n{}\n{}\n").unwrap();
    assert_eq!(f.ctx.rejects(), 3);
}
