//! The AWS IAM policy document parser on arbitrary JSON: errors, never panics; a document that
//! parses is then evaluated (action and resource matching, conditions) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhiwatch_policy::iam::{parse, IamPolicies};
use nhiwatch_policy::RequestContext;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = parse(text, "fuzz.json") else {
        return;
    };
    let policies = IamPolicies::new(docs);
    // The input's own tail as a resource (it often holds the ARN patterns' pieces).
    let tail = &text[text.floor_char_boundary(text.len().saturating_sub(80))..];
    for action in ["s3:GetObject", "iam:PassRole", "sts:GetCallerIdentity"] {
        for resource in [None, Some("arn:aws:s3:::bucket/key"), Some(tail)] {
            for source_ip in [None, Some("10.1.2.3"), Some("ecs.amazonaws.com")] {
                let _ = policies.evaluate(action, resource, &RequestContext { source_ip });
            }
        }
    }
});
