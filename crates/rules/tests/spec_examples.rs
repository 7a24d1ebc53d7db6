//! The Sigma specification's own examples (sigma-specification, `specification/*.md`, v2.1),
//! run on events written for them. The examples name Windows log sources, which nhiwatch does
//! not read; a `LoadOptions::logsources` entry maps them to generic JSON events here.

use std::sync::Arc;

use nhiwatch_model::{Source, Sym, Timestamp};
use nhiwatch_rules::{Evaluator, Hit, Limits, LoadOptions, LogSourceMap, Origin, RuleSet, Subject};

fn options() -> LoadOptions {
    let mut options = LoadOptions::default();
    for product in ["windows", "linux"] {
        options.logsources.push(LogSourceMap {
            category: None,
            product: Some(product.into()),
            service: None,
            source: Source::Jsonl,
        });
    }
    options.placeholders.insert(
        "Administrators".into(),
        vec!["admin".into(), "adm_*".into()],
    );
    options
}

fn load(yaml: &str) -> RuleSet {
    RuleSet::compile(&[("spec.yml", yaml)], &options()).unwrap_or_else(|e| panic!("{e}"))
}

fn matches(set: &RuleSet, event: &str) -> bool {
    !set.matching(&Subject::raw(Source::Jsonl, event)).is_empty()
}

const WHOAMI: &str = r"
title: Whoami Execution
description: Detects a whoami.exe execution
references:
      - https://speakerdeck.com/heirhabarov/hunting-for-privilege-escalation-in-windows-environment
author: Florian Roth
date: 2019-10-23
logsource:
    category: process_creation
    product: windows
detection:
    selection:
        Image: 'C:\Windows\System32\whoami.exe'
    condition: selection
level: high
";

#[test]
fn whoami_example() {
    let set = load(WHOAMI);
    assert_eq!(set.rules()[0].title, "Whoami Execution");
    assert!(matches(
        &set,
        r#"{"Image":"C:\\Windows\\System32\\whoami.exe"}"#
    ));
    assert!(
        matches(&set, r#"{"Image":"c:\\windows\\system32\\WHOAMI.EXE"}"#),
        "case-insensitive"
    );
    assert!(!matches(
        &set,
        r#"{"Image":"C:\\Windows\\System32\\whoami.exe.bak"}"#
    ));
}

#[test]
fn lists_of_strings_are_keywords_ored() {
    let set = load(
        "title: t\nlogsource: {product: windows}\ndetection:\n    keywords:\n        - 'EVILSERVICE'\n        - 'svchost.exe -n evil'\n    condition: keywords\n",
    );
    assert!(matches(
        &set,
        r#"{"Message":"Service EvilService installed"}"#
    ));
    assert!(matches(
        &set,
        r#"{"a":{"b":["x","C:\\svchost.exe -n evil"]}}"#
    ));
    assert!(!matches(&set, r#"{"Message":"benign"}"#));
}

#[test]
fn lists_of_maps_are_ored() {
    let set = load(
        r"
title: t
logsource: {product: windows}
detection:
    selection:
        - Image|endswith: '\\example.exe'
        - Description|contains: 'Test executable'
    condition: selection
",
    );
    assert!(matches(&set, r#"{"Image":"C:\\temp\\example.exe"}"#));
    assert!(matches(&set, r#"{"Description":"A Test Executable here"}"#));
    assert!(!matches(&set, r#"{"Image":"C:\\temp\\example.exe2"}"#));
}

#[test]
fn maps_are_anded_and_value_lists_ored() {
    let set = load(
        "title: t\nlogsource: {product: windows}\ndetection:\n    selection:\n        EventLog: Security\n        EventID:\n            - 517\n            - 1102\n    condition: selection\n",
    );
    assert!(matches(&set, r#"{"EventLog":"Security","EventID":1102}"#));
    assert!(matches(&set, r#"{"EventLog":"security","EventID":"517"}"#));
    assert!(!matches(&set, r#"{"EventLog":"Security","EventID":4624}"#));
    assert!(!matches(&set, r#"{"EventLog":"System","EventID":517}"#));

    let set = load(
        "title: t\nlogsource: {product: windows}\ndetection:\n    selection:\n          EventLog: Security\n          EventID: 4769\n          TicketOptions: '0x40810000'\n          TicketEncryption: '0x17'\n    condition: selection\n",
    );
    assert!(matches(
        &set,
        r#"{"EventLog":"Security","EventID":4769,"TicketOptions":"0x40810000","TicketEncryption":"0x17"}"#
    ));
    assert!(!matches(
        &set,
        r#"{"EventLog":"Security","EventID":4769,"TicketOptions":"0x40810000","TicketEncryption":"0x12"}"#
    ));
}

#[test]
fn null_and_empty_values() {
    let set = load(
        "title: t\nlogsource: {product: windows}\ndetection:\n    selection:\n        EventID: 4738\n    filter:\n        PasswordLastSet: null\n    condition: selection and not filter\n",
    );
    assert!(matches(
        &set,
        r#"{"EventID":4738,"PasswordLastSet":"2020-01-01"}"#
    ));
    assert!(!matches(&set, r#"{"EventID":4738,"PasswordLastSet":null}"#));
    assert!(
        !matches(&set, r#"{"EventID":4738}"#),
        "absent counts as null"
    );

    // The specification's valid example.
    let set = load(
        "title: t\nlogsource: {product: windows}\ndetection:\n    selection_main:\n        FieldA: 'something'\n    selection_empty1:\n        FieldB: ''\n    selection_empty2:\n        FieldB: null\n    condition: selection_main and 1 of selection_empty*\n",
    );
    assert!(matches(&set, r#"{"FieldA":"something","FieldB":""}"#));
    assert!(matches(&set, r#"{"FieldA":"something"}"#));
    assert!(!matches(&set, r#"{"FieldA":"something","FieldB":"x"}"#));

    // And its invalid one: null inside a list of values.
    let err = RuleSet::compile(
        &[(
            "invalid.yml",
            "title: t\nlogsource: {product: windows}\ndetection:\n    selection_main:\n        FieldA: 'something'\n        FieldB:\n            - ''\n            - null\n    condition: selection_main\n",
        )],
        &options(),
    )
    .unwrap_err();
    let e = &err.0[0];
    assert_eq!((e.file.as_str(), e.line), ("invalid.yml", Some(8)), "{e}");
    assert!(e.message.contains("`null` cannot be part of a list"), "{e}");
}

#[test]
fn field_existence() {
    let set = load(
        "title: t\nlogsource: {product: windows}\ndetection:\n    selection:\n        EventID: 4738\n        PasswordLastSet|exists: true\n    condition: selection\n",
    );
    assert!(
        matches(&set, r#"{"EventID":4738,"PasswordLastSet":null}"#),
        "exists checks presence, not value"
    );
    assert!(!matches(&set, r#"{"EventID":4738}"#));
}

#[test]
fn keywords_with_all() {
    let set = load(
        "title: t\nlogsource: {product: windows}\ndetection:\n    keywords_cmdlet:\n        '|all':\n            - 'OabVirtualDirectory'\n            - ' -ExternalUrl '\n    condition: keywords_cmdlet\n",
    );
    assert!(matches(
        &set,
        r#"{"Payload":"Set-OabVirtualDirectory -ExternalUrl http://x"}"#
    ));
    assert!(!matches(&set, r#"{"Payload":"Set-OabVirtualDirectory"}"#));
}

#[test]
fn condition_examples() {
    let yaml = |condition: &str| {
        format!(
            "title: t\nlogsource: {{product: windows}}\ndetection:\n    selection1: {{a: 1}}\n    selection2: {{b: 1}}\n    keywords:\n        - evil\n    filter1: {{c: 1}}\n    filters: {{c: 2}}\n    keywords1:\n        - k1\n    keywords2:\n        - k2\n    condition: {condition}\n"
        )
    };
    let cases: &[(&str, &str, bool)] = &[
        ("keywords1 or keywords2", r#"{"m":"k2"}"#, true),
        ("keywords1 or keywords2", r#"{"m":"x"}"#, false),
        ("1 of them", r#"{"b":1}"#, true),
        (
            "all of them",
            r#"{"a":1,"b":1,"c":1,"m":"evil k1 k2"}"#,
            false,
        ),
        ("all of selection*", r#"{"a":1,"b":1}"#, true),
        ("all of selection*", r#"{"a":1}"#, false),
        (
            "1 of selection* and keywords",
            r#"{"a":1,"m":"evil"}"#,
            true,
        ),
        (
            "1 of selection* and not 1 of filter*",
            r#"{"a":1,"c":1}"#,
            false,
        ),
        (
            "1 of selection* and not 1 of filter*",
            r#"{"a":1,"c":3}"#,
            true,
        ),
        ("keywords and not filters", r#"{"m":"evil","c":2}"#, false),
        (
            "selection1 and (keywords1 or keywords2)",
            r#"{"a":1,"m":"k1"}"#,
            true,
        ),
        (
            "selection1 and (keywords1 or keywords2)",
            r#"{"a":1,"m":"x"}"#,
            false,
        ),
    ];
    for (condition, event, expected) in cases {
        let set = load(&yaml(condition));
        assert_eq!(matches(&set, event), *expected, "{condition} on {event}");
    }
    // A list of conditions is ORed.
    let set = load("title: t\nlogsource: {product: windows}\ndetection:\n    a: {x: 1}\n    b: {y: 1}\n    condition:\n        - a\n        - b\n");
    assert!(matches(&set, r#"{"y":1}"#));
}

#[test]
fn escapes_and_wildcards() {
    let rule = |value: &str| {
        load(&format!(
            "title: t\nlogsource: {{product: windows}}\ndetection:\n    s:\n        f: '{value}'\n    condition: s\n"
        ))
    };
    assert!(matches(&rule("prog?.exe"), r#"{"f":"progA.exe"}"#));
    assert!(matches(
        &rule("antivirus_V*.exe"),
        r#"{"f":"antivirus_V21.2.1.exe"}"#
    ));
    assert!(matches(&rule(r"a\*b"), r#"{"f":"a*b"}"#));
    assert!(!matches(&rule(r"a\*b"), r#"{"f":"axb"}"#));
    assert!(matches(&rule(r"C:\\\\share"), r#"{"f":"C:\\\\share"}"#));
}

#[test]
fn placeholders_need_expand() {
    let yaml = |key: &str| {
        format!("title: t\nlogsource: {{product: windows}}\ndetection:\n    s:\n        {key}: '%Administrators%'\n    condition: s\n")
    };
    let literal = load(&yaml("User"));
    assert!(matches(&literal, r#"{"User":"%Administrators%"}"#));
    let expanded = load(&yaml("User|expand"));
    assert!(matches(&expanded, r#"{"User":"adm_joe"}"#));
    assert!(!matches(&expanded, r#"{"User":"%Administrators%"}"#));
    let err = RuleSet::compile(
        &[("p.yml", "title: t\nlogsource: {product: windows}\ndetection:\n    s:\n        User|expand: '%Servers%'\n    condition: s\n")],
        &options(),
    )
    .unwrap_err();
    assert_eq!(err.0[0].line, Some(5), "{}", err);
}

#[test]
fn modifier_examples() {
    let set = load("title: t\nlogsource: {product: windows}\ndetection:\n    s:\n        DestinationIp|cidr: 10.0.0.0/8\n    condition: s\n");
    assert!(matches(&set, r#"{"DestinationIp":"10.20.30.40"}"#));
    assert!(!matches(&set, r#"{"DestinationIp":"11.20.30.40"}"#));
    let modifier = |key: &str, value: &str, event: &str| {
        let set = load(&format!(
            "title: t\nlogsource: {{product: windows}}\ndetection:\n    s:\n        {key}: {value}\n    condition: s\n"
        ));
        matches(&set, event)
    };
    assert!(modifier("c|startswith", "'adm'", r#"{"c":"ADMIN"}"#));
    assert!(modifier("c|endswith", "'.exe'", r#"{"c":"x.EXE"}"#));
    assert!(modifier("c|contains|all", "['a', 'b']", r#"{"c":"xaxbx"}"#));
    assert!(!modifier("c|contains|all", "['a', 'b']", r#"{"c":"xax"}"#));
    assert!(modifier("c|cased", "'Abc'", r#"{"c":"Abc"}"#));
    assert!(!modifier("c|cased", "'Abc'", r#"{"c":"abc"}"#));
    assert!(modifier("c|neq", "'x'", r#"{"c":"y"}"#));
    assert!(!modifier("c|neq", "'x'", r#"{"c":"X"}"#));
    assert!(modifier(
        "c|windash|contains",
        "'-enc'",
        r#"{"c":"powershell /enc abc"}"#
    ));
    assert!(modifier(
        "c|windash|contains",
        "'-enc'",
        "{\"c\":\"powershell \u{2014}enc abc\"}"
    ));
    assert!(modifier("c|re", "'^a.c$'", r#"{"c":"abc"}"#));
    assert!(
        !modifier("c|re", "'^a.c$'", r#"{"c":"ABC"}"#),
        "re is case-sensitive"
    );
    assert!(modifier("c|re|i", "'^a.c$'", r#"{"c":"ABC"}"#));
    assert!(modifier("c|re|s", "'a.c'", r#"{"c":"a\nc"}"#));
    assert!(modifier("c|re|m", "'^c$'", r#"{"c":"a\nc"}"#));
    assert!(modifier("c|base64", "'cmd'", r#"{"c":"Y21k"}"#));
    assert!(modifier(
        "c|base64offset|contains",
        "'/bin/bash'",
        r#"{"c":"echo ZXhlYyAvYmluL2Jhc2ggLWk= | base64 -d"}"#
    ));
    assert!(modifier(
        "c|utf16le|base64offset|contains",
        "'cmd'",
        r#"{"c":"powershell -enc YwBtAGQA"}"#
    ));
    assert!(modifier("c|wide|base64", "'cmd'", r#"{"c":"YwBtAGQA"}"#));
    assert!(modifier("c|utf16be|base64", "'cmd'", r#"{"c":"AGMAbQBk"}"#));
    assert!(modifier(
        "c|utf16|base64",
        "'cmd'",
        r#"{"c":"//5jAG0AZAA="}"#
    ));
    assert!(modifier("n|gt", "5", r#"{"n":6}"#));
    assert!(!modifier("n|gt", "5", r#"{"n":5}"#));
    assert!(modifier("n|gte", "5", r#"{"n":"5"}"#));
    assert!(modifier("n|lt", "5", r#"{"n":4.5}"#));
    assert!(modifier("n|lte", "5", r#"{"n":5}"#));
    assert!(modifier("t|hour", "23", r#"{"t":"2024-01-01T23:10:00Z"}"#));
    assert!(modifier(
        "t|minute|gte",
        "10",
        r#"{"t":"2024-01-01T23:10:00Z"}"#
    ));
    assert!(modifier("t|day", "1", r#"{"t":"2024-01-01T23:10:00Z"}"#));
    assert!(modifier("t|week", "1", r#"{"t":"2024-01-01T23:10:00Z"}"#));
    assert!(modifier("t|month", "1", r#"{"t":"2024-01-01T23:10:00Z"}"#));
    assert!(modifier(
        "t|year",
        "2024",
        r#"{"t":"2024-01-01T23:10:00Z"}"#
    ));
    assert!(modifier("a|fieldref", "b", r#"{"a":"Same","b":"same"}"#));
    assert!(!modifier("a|fieldref", "b", r#"{"a":"one","b":"two"}"#));
    assert!(modifier(
        "a|fieldref|startswith",
        "b",
        r#"{"a":"prefix-rest","b":"prefix"}"#
    ));
    assert!(modifier("a|exists", "false", r#"{"b":1}"#));
    assert!(modifier("b", "true", r#"{"b":true}"#));
    assert!(
        modifier("user.name", "'root'", r#"{"user":{"name":"root"}}"#),
        "dotted path"
    );
}

const FAILED_THEN_SUCCESS: &str = r"
title: Correlation - Multiple Failed Logins Followed by Successful Login
id: b180ead8-d58f-40b2-ae54-c8940995b9b6
status: experimental
description: Detects multiple failed logins by a single user followed by a successful login of that user
references:
    - https://reference.com
author: Florian Roth (Nextron Systems)
date: 2023-06-16
correlation:
    type: temporal_ordered
    rules:
        - multiple_failed_login
        - successful_login
    group-by:
        - User
    timespan: 10m
falsepositives:
    - Unlikely
level: high
---
title: Multiple failed logons
id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41
description: Detects multiple failed logins within a certain amount of time
name: multiple_failed_login
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - User
    timespan: 10m
    condition:
        gte: 10
---
title: Single failed login
id: 53ba33fd-3a50-4468-a5ef-c583635cfa92
name: failed_login
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 529
            - 4625
    condition: selection
---
title: Successful login
id: 4d0a2c83-c62c-4ed4-b475-c7e23a9269b8
description: Detects a successful login
name: successful_login
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 528
            - 4624
    condition: selection
";

/// Feeds `(seconds, json)` events to an evaluator; the ids of the rules that fired, in order.
fn stream(set: RuleSet, events: &[(i64, String)]) -> Vec<String> {
    let set = Arc::new(set);
    let mut eval = Evaluator::new(Arc::clone(&set), Limits::default());
    let origin = Origin {
        identity: Sym(0),
        entry: None,
    };
    let mut hits: Vec<Hit> = Vec::new();
    for (seconds, json) in events {
        let subject = Subject::raw(Source::Jsonl, json).at(Timestamp(seconds * 1_000_000_000));
        eval.process(&subject, origin, &mut hits);
    }
    eval.flush(&mut hits);
    hits.iter()
        .map(|h| set.rules()[h.rule].id.clone())
        .collect()
}

fn login(user: &str, id: u32) -> String {
    format!(r#"{{"EventID":{id},"User":"{user}"}}"#)
}

#[test]
fn failed_logins_followed_by_success() {
    let set = load(FAILED_THEN_SUCCESS);
    // Only the outermost correlation makes findings (`generate` is false by default).
    let generating: Vec<&str> = set
        .rules()
        .iter()
        .filter(|r| r.generate)
        .map(|r| r.title.as_str())
        .collect();
    assert_eq!(
        generating,
        ["Correlation - Multiple Failed Logins Followed by Successful Login"]
    );

    let mut events: Vec<(i64, String)> = (0..10).map(|i| (i * 10, login("alice", 4625))).collect();
    events.push((120, login("alice", 4624)));
    assert_eq!(
        stream(load(FAILED_THEN_SUCCESS), &events),
        ["b180ead8-d58f-40b2-ae54-c8940995b9b6"]
    );

    // Nine failures are not enough.
    let mut nine: Vec<(i64, String)> = (0..9).map(|i| (i * 10, login("alice", 4625))).collect();
    nine.push((120, login("alice", 4624)));
    assert!(stream(load(FAILED_THEN_SUCCESS), &nine).is_empty());

    // Another user's success does not complete alice's sequence.
    let mut other: Vec<(i64, String)> = (0..10).map(|i| (i * 10, login("alice", 4625))).collect();
    other.push((120, login("bob", 4624)));
    assert!(stream(load(FAILED_THEN_SUCCESS), &other).is_empty());

    // The success must come after the failures, within the timespan.
    let mut late: Vec<(i64, String)> = (0..10).map(|i| (i * 10, login("alice", 4625))).collect();
    late.push((90 + 700, login("alice", 4624)));
    assert!(stream(load(FAILED_THEN_SUCCESS), &late).is_empty());
    let mut before = vec![(0, login("alice", 4624))];
    before.extend((1..11).map(|i| (i * 10, login("alice", 4625))));
    assert!(stream(load(FAILED_THEN_SUCCESS), &before).is_empty());
}

const BASE: &str = "
---
title: failed
id: 5638f7c0-ac70-491d-8465-2a65075e0d86
name: failed_login
logsource: {product: windows, service: security}
detection:
    selection: {EventID: 4625}
    condition: selection
";

#[test]
fn event_count_example() {
    let yaml = format!(
        "title: Many failed logins\nid: 0e95725d-7320-415d-80f7-004da920fc11\ncorrelation:\n    type: event_count\n    rules:\n        - 5638f7c0-ac70-491d-8465-2a65075e0d86\n    group-by:\n        - ComputerName\n    timespan: 1h\n    condition:\n        gte: 100\n{BASE}"
    );
    let failures = |n: i64, step: i64| -> Vec<(i64, String)> {
        (0..n)
            .map(|i| {
                (
                    i * step,
                    r#"{"EventID":4625,"ComputerName":"srv1"}"#.to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        stream(load(&yaml), &failures(100, 30)).len(),
        1,
        "100 within 50 minutes"
    );
    assert!(stream(load(&yaml), &failures(99, 30)).is_empty());
    assert!(
        stream(load(&yaml), &failures(100, 40)).is_empty(),
        "spread over 66 minutes"
    );
}

#[test]
fn value_count_example() {
    let yaml = format!(
        "title: Failed login\nid: 0e95725d-7320-415d-80f7-004da920fc12\ncorrelation:\n    type: value_count\n    rules:\n        - 5638f7c0-ac70-491d-8465-2a65075e0d86\n    group-by:\n        - ComputerName\n        - WorkstationName\n    timespan: 1d\n    condition:\n        field: User\n        gte: 100\n{BASE}"
    );
    let events = |users: i64| -> Vec<(i64, String)> {
        (0..150)
            .map(|i| {
                (
                    i * 60,
                    format!(r#"{{"EventID":4625,"ComputerName":"c","WorkstationName":"w","User":"u{}"}}"#, i % users),
                )
            })
            .collect()
    };
    assert_eq!(stream(load(&yaml), &events(100)).len(), 1);
    assert!(stream(load(&yaml), &events(99)).is_empty());
}

#[test]
fn temporal_example() {
    let recon = |name: &str, cmd: &str| {
        format!("---\ntitle: {name}\nname: {name}\nlogsource: {{product: windows}}\ndetection:\n    s: {{CommandLine|contains: '{cmd}'}}\n    condition: s\n")
    };
    let yaml = format!(
        "title: recon\nid: recon\ncorrelation:\n    type: temporal\n    rules:\n        - recon_cmd_a\n        - recon_cmd_b\n        - recon_cmd_c\n    group-by:\n        - ComputerName\n        - User\n    timespan: 5m\n{}{}{}",
        recon("recon_cmd_a", "whoami"),
        recon("recon_cmd_b", "ipconfig"),
        recon("recon_cmd_c", "net user")
    );
    let ev = |s: i64, cmd: &str, user: &str| {
        (
            s,
            format!(r#"{{"CommandLine":"{cmd}","ComputerName":"pc","User":"{user}"}}"#),
        )
    };
    let any_order = [
        ev(0, "net user", "a"),
        ev(10, "whoami", "a"),
        ev(20, "ipconfig /all", "a"),
    ];
    assert_eq!(stream(load(&yaml), &any_order), ["recon"]);
    let two_users = [
        ev(0, "net user", "a"),
        ev(10, "whoami", "b"),
        ev(20, "ipconfig", "a"),
    ];
    assert!(stream(load(&yaml), &two_users).is_empty());
    let slow = [
        ev(0, "net user", "a"),
        ev(10, "whoami", "a"),
        ev(400, "ipconfig", "a"),
    ];
    assert!(stream(load(&yaml), &slow).is_empty());
}

#[test]
fn aliases_example() {
    // The specification's fragments, completed with the title and log source every rule needs.
    let yaml = "
title: internal error then connection
id: aliases-example
correlation:
    type: temporal
    rules:
        - internal_error
        - new_network_connection
    group-by:
        - internal_ip
        - remote_ip
    timespan: 10s
    aliases:
        internal_ip:
            internal_error: destination.ip
            new_network_connection: source.ip
        remote_ip:
            internal_error: source.ip
            new_network_connection: destination.ip
---
title: internal error
name: internal_error
logsource: {product: linux}
detection:
    selection:
        http.response.status_code: 500
    condition: selection
---
title: new connection
name: new_network_connection
logsource: {product: linux}
detection:
    selection:
        event.category: network
        event.type: connection
        event.outcome: success
    condition: selection
";
    let error = r#"{"http":{"response":{"status_code":500}},"source":{"ip":"203.0.113.9"},"destination":{"ip":"10.0.0.5"}}"#;
    let conn = |src: &str, dst: &str| {
        format!(
            r#"{{"event":{{"category":"network","type":"connection","outcome":"success"}},"source":{{"ip":"{src}"}},"destination":{{"ip":"{dst}"}}}}"#
        )
    };
    assert_eq!(
        stream(
            load(yaml),
            &[(0, error.to_owned()), (5, conn("10.0.0.5", "203.0.113.9"))]
        ),
        ["aliases-example"]
    );
    assert!(stream(
        load(yaml),
        &[(0, error.to_owned()), (5, conn("10.0.0.6", "203.0.113.9"))]
    )
    .is_empty());
}

#[test]
fn event_count_with_an_upper_bound_judges_closed_windows() {
    let yaml = format!(
        "title: quiet\nid: quiet\ncorrelation:\n    type: event_count\n    rules: [failed_login]\n    group-by: [ComputerName]\n    timespan: 1m\n    condition:\n        gt: 1\n        lte: 3\n{BASE}"
    );
    let ev = |s: i64, host: &str| (s, format!(r#"{{"EventID":4625,"ComputerName":"{host}"}}"#));
    // h1: 2 in its window (fires); h2: 5 (too many); h3: 1 (too few).
    let events = [
        ev(0, "h1"),
        ev(1, "h2"),
        ev(2, "h2"),
        ev(3, "h2"),
        ev(4, "h2"),
        ev(5, "h2"),
        ev(6, "h3"),
        ev(30, "h1"),
    ];
    assert_eq!(stream(load(&yaml), &events), ["quiet"]);
}
