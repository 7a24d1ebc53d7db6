//! Peer groups: identities expected to behave alike, whose merged profile vouches for what one
//! member does for the first time.
//!
//! A group is named from the identity id alone, so that it is the same in every shard:
//!
//! - a Kubernetes service account (`system:serviceaccount:NS:NAME`): its namespace,
//!   `k8s-namespace:NS`;
//! - otherwise the *name pattern* of the id's last segment (after the last `/` or `:`; a
//!   GitHub `[bot]` suffix dropped): split on `-`, `_` and `.`, tokens holding a digit left out,
//!   lower-cased; of three or more tokens the first two, of two the first, of one that one.
//!   `key-rotation-catalog-2` and `key-rotation-search` share `name:key-rotation`;
//!   `coding-agent-ledger` and `coding-agent-risk-2` share `name:coding-agent`.

/// The peer group of an identity, when one can be named.
pub fn group_of(identity_id: &str) -> Option<String> {
    if let Some(rest) = identity_id.strip_prefix("system:serviceaccount:") {
        let namespace = rest.split(':').next().filter(|ns| !ns.is_empty())?;
        return Some(format!("k8s-namespace:{namespace}"));
    }
    let name = identity_id.rsplit(['/', ':']).next().unwrap_or(identity_id);
    let name = name.strip_suffix("[bot]").unwrap_or(name);
    let tokens: Vec<&str> = name
        .split(['-', '_', '.'])
        .filter(|t| !t.is_empty() && !t.bytes().any(|b| b.is_ascii_digit()))
        .collect();
    let keep = match tokens.len() {
        0 => return None,
        1 => 1,
        2 => 1,
        _ => 2,
    };
    Some(format!(
        "name:{}",
        tokens[..keep].join("-").to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_namespaces_and_name_patterns() {
        assert_eq!(
            group_of("system:serviceaccount:payments:payments-operator-2").as_deref(),
            Some("k8s-namespace:payments")
        );
        assert_eq!(
            group_of("arn:aws:iam::777788889999:role/key-rotation-catalog-2"),
            group_of("arn:aws:iam::111122223333:role/key-rotation-search")
        );
        assert_eq!(
            group_of("coding-agent-risk-2").as_deref(),
            Some("name:coding-agent")
        );
        assert_eq!(
            group_of("dependabot-payments[bot]").as_deref(),
            Some("name:dependabot")
        );
        assert_eq!(group_of("1234"), None);
    }
}
