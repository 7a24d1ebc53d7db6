//! MITRE ATT&CK (Enterprise, cloud and container matrices) techniques that findings map to.
//!
//! A finding's `frameworks` carry `MITRE-ATTACK:<technique id>` beside
//! [`BASE_FRAMEWORKS`](nhiwatch_model::BASE_FRAMEWORKS); OCSF output expands them into
//! `finding_info.attacks` with the names and tactics below.

use nhiwatch_model::Source;

/// One ATT&CK technique (or sub-technique) and the tactic it is reported under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Technique {
    /// `T1078.004`.
    pub id: &'static str,
    /// `Valid Accounts: Cloud Accounts`.
    pub name: &'static str,
    /// Tactic id, `TA0001`.
    pub tactic_id: &'static str,
    /// Tactic name, `Initial Access`.
    pub tactic: &'static str,
}

impl Technique {
    /// The `frameworks` tag: `MITRE-ATTACK:T1078.004`.
    pub fn tag(&self) -> String {
        format!("{FRAMEWORK_PREFIX}{}", self.id)
    }
}

/// Prefix of ATT&CK tags in a finding's `frameworks`.
pub const FRAMEWORK_PREFIX: &str = "MITRE-ATTACK:";

/// Valid Accounts: Cloud Accounts — a cloud identity's credentials used beyond their purpose.
pub const CLOUD_ACCOUNTS: Technique = Technique {
    id: "T1078.004",
    name: "Valid Accounts: Cloud Accounts",
    tactic_id: "TA0001",
    tactic: "Initial Access",
};

/// Valid Accounts — the same outside a cloud provider's own identities (Kubernetes, GitHub).
pub const VALID_ACCOUNTS: Technique = Technique {
    id: "T1078",
    name: "Valid Accounts",
    tactic_id: "TA0001",
    tactic: "Initial Access",
};

/// Data from Cloud Storage.
pub const CLOUD_STORAGE_DATA: Technique = Technique {
    id: "T1530",
    name: "Data from Cloud Storage",
    tactic_id: "TA0009",
    tactic: "Collection",
};

/// Cloud Storage Object Discovery.
pub const CLOUD_STORAGE_DISCOVERY: Technique = Technique {
    id: "T1619",
    name: "Cloud Storage Object Discovery",
    tactic_id: "TA0007",
    tactic: "Discovery",
};

/// Cloud Infrastructure Discovery.
pub const CLOUD_INFRASTRUCTURE_DISCOVERY: Technique = Technique {
    id: "T1580",
    name: "Cloud Infrastructure Discovery",
    tactic_id: "TA0007",
    tactic: "Discovery",
};

/// Account Discovery: Cloud Account.
pub const CLOUD_ACCOUNT_DISCOVERY: Technique = Technique {
    id: "T1087.004",
    name: "Account Discovery: Cloud Account",
    tactic_id: "TA0007",
    tactic: "Discovery",
};

/// Permission Groups Discovery: Cloud Groups.
pub const CLOUD_GROUPS_DISCOVERY: Technique = Technique {
    id: "T1069.003",
    name: "Permission Groups Discovery: Cloud Groups",
    tactic_id: "TA0007",
    tactic: "Discovery",
};

/// Credentials from Password Stores: Cloud Secrets Management Stores.
pub const CLOUD_SECRETS: Technique = Technique {
    id: "T1555.006",
    name: "Credentials from Password Stores: Cloud Secrets Management Stores",
    tactic_id: "TA0006",
    tactic: "Credential Access",
};

/// Unsecured Credentials: Container API.
pub const CONTAINER_API_CREDENTIALS: Technique = Technique {
    id: "T1552.007",
    name: "Unsecured Credentials: Container API",
    tactic_id: "TA0006",
    tactic: "Credential Access",
};

/// Account Manipulation: Additional Cloud Credentials (access keys, login profiles, deploy keys).
pub const ADDITIONAL_CLOUD_CREDENTIALS: Technique = Technique {
    id: "T1098.001",
    name: "Account Manipulation: Additional Cloud Credentials",
    tactic_id: "TA0004",
    tactic: "Privilege Escalation",
};

/// Account Manipulation: Additional Cloud Roles (policies attached, members added).
pub const ADDITIONAL_CLOUD_ROLES: Technique = Technique {
    id: "T1098.003",
    name: "Account Manipulation: Additional Cloud Roles",
    tactic_id: "TA0004",
    tactic: "Privilege Escalation",
};

/// Account Manipulation: Additional Container Cluster Roles (role bindings).
pub const ADDITIONAL_CLUSTER_ROLES: Technique = Technique {
    id: "T1098.006",
    name: "Account Manipulation: Additional Container Cluster Roles",
    tactic_id: "TA0004",
    tactic: "Privilege Escalation",
};

/// Abuse Elevation Control Mechanism: Temporary Elevated Cloud Access (PassRole to new compute).
pub const TEMPORARY_ELEVATED_ACCESS: Technique = Technique {
    id: "T1548.005",
    name: "Abuse Elevation Control Mechanism: Temporary Elevated Cloud Access",
    tactic_id: "TA0004",
    tactic: "Privilege Escalation",
};

/// Container Administration Command (pod exec, attach).
pub const CONTAINER_ADMIN_COMMAND: Technique = Technique {
    id: "T1609",
    name: "Container Administration Command",
    tactic_id: "TA0002",
    tactic: "Execution",
};

/// Cloud Administration Command (SSM Run Command and the like).
pub const CLOUD_ADMIN_COMMAND: Technique = Technique {
    id: "T1651",
    name: "Cloud Administration Command",
    tactic_id: "TA0002",
    tactic: "Execution",
};

/// Impair Defenses: Disable or Modify Cloud Logs.
pub const DISABLE_CLOUD_LOGS: Technique = Technique {
    id: "T1562.008",
    name: "Impair Defenses: Disable or Modify Cloud Logs",
    tactic_id: "TA0005",
    tactic: "Defense Evasion",
};

/// Impair Defenses: Disable or Modify Tools (detectors, scanners, alarms).
pub const DISABLE_TOOLS: Technique = Technique {
    id: "T1562.001",
    name: "Impair Defenses: Disable or Modify Tools",
    tactic_id: "TA0005",
    tactic: "Defense Evasion",
};

/// Indicator Removal (audit events deleted).
pub const INDICATOR_REMOVAL: Technique = Technique {
    id: "T1070",
    name: "Indicator Removal",
    tactic_id: "TA0005",
    tactic: "Defense Evasion",
};

/// Modify Authentication Process (two-factor requirements lifted).
pub const MODIFY_AUTHENTICATION: Technique = Technique {
    id: "T1556",
    name: "Modify Authentication Process",
    tactic_id: "TA0005",
    tactic: "Defense Evasion",
};

/// Transfer Data to Cloud Account (snapshots or images shared with another account).
pub const TRANSFER_TO_CLOUD_ACCOUNT: Technique = Technique {
    id: "T1537",
    name: "Transfer Data to Cloud Account",
    tactic_id: "TA0010",
    tactic: "Exfiltration",
};

/// Every technique this crate reports, for looking tags up again (OCSF output).
pub const ALL: [Technique; 20] = [
    CLOUD_ACCOUNTS,
    VALID_ACCOUNTS,
    CLOUD_STORAGE_DATA,
    CLOUD_STORAGE_DISCOVERY,
    CLOUD_INFRASTRUCTURE_DISCOVERY,
    CLOUD_ACCOUNT_DISCOVERY,
    CLOUD_GROUPS_DISCOVERY,
    CLOUD_SECRETS,
    CONTAINER_API_CREDENTIALS,
    ADDITIONAL_CLOUD_CREDENTIALS,
    ADDITIONAL_CLOUD_ROLES,
    ADDITIONAL_CLUSTER_ROLES,
    TEMPORARY_ELEVATED_ACCESS,
    CONTAINER_ADMIN_COMMAND,
    CLOUD_ADMIN_COMMAND,
    DISABLE_CLOUD_LOGS,
    DISABLE_TOOLS,
    INDICATOR_REMOVAL,
    MODIFY_AUTHENTICATION,
    TRANSFER_TO_CLOUD_ACCOUNT,
];

/// The technique behind a `frameworks` tag, when it is one this crate knows.
pub fn from_tag(tag: &str) -> Option<&'static Technique> {
    let id = tag.strip_prefix(FRAMEWORK_PREFIX)?;
    ALL.iter().find(|t| t.id == id)
}

/// The technique of using an identity's valid credentials outside their approved use, by source:
/// cloud accounts for CloudTrail, valid accounts for Kubernetes and GitHub, none for agents
/// (ATT&CK has no technique for an agent exceeding its tool scope).
pub fn valid_accounts(source: Source) -> Option<&'static Technique> {
    match source {
        Source::Cloudtrail => Some(&CLOUD_ACCOUNTS),
        Source::K8sAudit | Source::GithubAudit => Some(&VALID_ACCOUNTS),
        Source::Otel | Source::AgentTrace | Source::Jsonl => None,
    }
}

/// The technique a single action is an instance of, for the few actions where the mapping is
/// unambiguous (reading stored objects and secrets, listing storage, accounts and infrastructure).
pub fn for_action(action: &str) -> Option<&'static Technique> {
    let (service, operation) = action.split_once(':')?;
    let service = service.to_ascii_lowercase();
    let starts = |prefix: &str| {
        operation
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    let is = |name: &str| operation.eq_ignore_ascii_case(name);
    match service.as_str() {
        "s3" if is("GetObject") || is("GetObjectVersion") => Some(&CLOUD_STORAGE_DATA),
        "s3" if is("ListBuckets")
            || is("ListAllMyBuckets")
            || starts("ListObject")
            || is("ListBucket") =>
        {
            Some(&CLOUD_STORAGE_DISCOVERY)
        }
        "secretsmanager" if is("GetSecretValue") || is("BatchGetSecretValue") => {
            Some(&CLOUD_SECRETS)
        }
        "ssm" if is("GetParameter") || is("GetParameters") || is("GetParametersByPath") => {
            Some(&CLOUD_SECRETS)
        }
        "iam" if is("ListUsers") || is("ListRoles") || is("GetAccountAuthorizationDetails") => {
            Some(&CLOUD_ACCOUNT_DISCOVERY)
        }
        "iam"
            if is("ListGroups")
                || is("ListPolicies")
                || starts("ListAttached")
                || is("ListGroupsForUser") =>
        {
            Some(&CLOUD_GROUPS_DISCOVERY)
        }
        "ec2" | "rds" | "ecs" | "eks" | "lambda" if starts("Describe") || starts("List") => {
            Some(&CLOUD_INFRASTRUCTURE_DISCOVERY)
        }
        "k8s" if is("get/secrets") || is("list/secrets") || is("watch/secrets") => {
            Some(&CONTAINER_API_CREDENTIALS)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_map_to_techniques() {
        assert_eq!(for_action("s3:GetObject").map(|t| t.id), Some("T1530"));
        assert_eq!(for_action("s3:ListObjects").map(|t| t.id), Some("T1619"));
        assert_eq!(for_action("S3:listbuckets").map(|t| t.id), Some("T1619"));
        assert_eq!(
            for_action("secretsmanager:GetSecretValue").map(|t| t.id),
            Some("T1555.006")
        );
        assert_eq!(
            for_action("k8s:get/secrets").map(|t| t.id),
            Some("T1552.007")
        );
        assert_eq!(
            for_action("ec2:DescribeInstances").map(|t| t.id),
            Some("T1580")
        );
        assert_eq!(for_action("s3:PutObject"), None);
        assert_eq!(for_action("nonsense"), None);
    }

    #[test]
    fn tags_round_trip() {
        for technique in ALL {
            assert_eq!(from_tag(&technique.tag()).map(|t| t.id), Some(technique.id));
        }
        assert_eq!(from_tag("OWASP-NHI-06"), None);
    }
}
