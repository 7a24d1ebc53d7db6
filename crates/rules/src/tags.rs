//! ATT&CK techniques from Sigma tags (`attack.t1562.008`, `attack.defense-evasion`).
//!
//! A finding's techniques are `&'static` ([`Technique`]). Techniques that nhiwatch's own table
//! knows are taken from it; any other technique a rule names is made once per distinct
//! (technique, tactic) for the life of the process and shared by every rule set loaded after,
//! so reloading rules does not grow memory.

use std::sync::{Mutex, OnceLock};

use nhiwatch_detect::attack::{self, Technique};
use rustc_hash::FxHashMap;

/// ATT&CK Enterprise tactics: tag name, id, name.
const TACTICS: [(&str, &str, &str); 14] = [
    ("reconnaissance", "TA0043", "Reconnaissance"),
    ("resource-development", "TA0042", "Resource Development"),
    ("initial-access", "TA0001", "Initial Access"),
    ("execution", "TA0002", "Execution"),
    ("persistence", "TA0003", "Persistence"),
    ("privilege-escalation", "TA0004", "Privilege Escalation"),
    ("defense-evasion", "TA0005", "Defense Evasion"),
    ("credential-access", "TA0006", "Credential Access"),
    ("discovery", "TA0007", "Discovery"),
    ("lateral-movement", "TA0008", "Lateral Movement"),
    ("collection", "TA0009", "Collection"),
    ("command-and-control", "TA0011", "Command and Control"),
    ("exfiltration", "TA0010", "Exfiltration"),
    ("impact", "TA0040", "Impact"),
];

type Interned = FxHashMap<(String, &'static str), &'static Technique>;

fn interned() -> &'static Mutex<Interned> {
    static TABLE: OnceLock<Mutex<Interned>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(FxHashMap::default()))
}

/// The techniques a rule's tags name, with the first tactic tag as their tactic.
pub(crate) fn techniques(tags: &[String]) -> Vec<&'static Technique> {
    let mut tactic: Option<&(&str, &str, &str)> = None;
    let mut ids = Vec::new();
    for tag in tags {
        let lower = tag.to_ascii_lowercase();
        let Some(name) = lower.strip_prefix("attack.") else {
            continue;
        };
        let dashed = name.replace('_', "-");
        if let Some(found) = TACTICS.iter().find(|(t, _, _)| *t == dashed) {
            tactic.get_or_insert(found);
        } else if is_technique(name) {
            let id = name.to_ascii_uppercase();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let (tactic_id, tactic_name) = tactic.map_or(("", ""), |(_, id, name)| (*id, *name));
    ids.into_iter()
        .map(|id| {
            if let Some(known) = attack::ALL.iter().find(|t| t.id == id) {
                return known;
            }
            let mut table = interned()
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            table.entry((id.clone(), tactic_id)).or_insert_with(|| {
                let id: &'static str = Box::leak(id.into_boxed_str());
                Box::leak(Box::new(Technique {
                    id,
                    name: id,
                    tactic_id,
                    tactic: tactic_name,
                }))
            })
        })
        .collect()
}

/// `t1234` or `t1234.567`.
fn is_technique(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else {
        return false;
    };
    let (main, sub) = match rest.split_once('.') {
        Some((m, s)) => (m, Some(s)),
        None => (rest, None),
    };
    main.len() == 4
        && main.bytes().all(|b| b.is_ascii_digit())
        && sub.is_none_or(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_become_techniques() {
        let tags: Vec<String> = [
            "attack.defense_evasion",
            "attack.t1562.008",
            "attack.T1078.004",
            "cve.2021-1234",
            "attack.g0016",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let found = techniques(&tags);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].id, "T1562.008");
        assert_eq!(found[0].tactic_id, "TA0005");
        // A technique nhiwatch knows comes from its own table, with its name.
        assert_eq!(found[1].name, "Valid Accounts: Cloud Accounts");
        // Made once: the same tags give the same reference.
        assert!(std::ptr::eq(found[0], techniques(&tags)[0]));
    }
}
