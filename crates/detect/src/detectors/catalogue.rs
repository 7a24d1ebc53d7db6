//! The built-in catalogue of known-dangerous actions and chains, mapped to MITRE ATT&CK: what
//! [`super::Usual`] reports as `privilege_escalation` and `defense_evasion` for CloudTrail,
//! Kubernetes and GitHub actions, whatever the baseline says.
//!
//! An entry fires unless the identity's learned profile shows it as routine: the same action
//! on a resource of the same shape, learned before (a key-rotation job creating access keys
//! for its own service user every week is its job; creating one for another user is not).

use nhiwatch_model::{FindingKind, Severity};

use crate::attack::{self, Technique};

/// When an entry applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Always.
    Always,
    /// When it targets a principal other than the identity itself (a resource is named and
    /// it is not the identity's own id).
    OtherPrincipal,
    /// It hands a role to a service: remembered, and what it enables ([`Condition::AfterPassRole`])
    /// becomes a chain.
    PassRole,
    /// New compute created within the episode gap after a [`Condition::PassRole`]: the
    /// passed role's permissions run as code the identity controls.
    AfterPassRole,
}

/// One catalogue entry.
#[derive(Clone, Copy, Debug)]
pub struct Dangerous {
    /// The action, `service:Operation`, matched case-insensitively.
    pub action: &'static str,
    /// `privilege_escalation` or `defense_evasion`.
    pub kind: FindingKind,
    /// The technique it is an instance of.
    pub technique: &'static Technique,
    /// When it applies.
    pub condition: Condition,
    /// Why it is dangerous, in a few words.
    pub why: &'static str,
}

const fn escalation(
    action: &'static str,
    technique: &'static Technique,
    condition: Condition,
    why: &'static str,
) -> Dangerous {
    Dangerous {
        action,
        kind: FindingKind::PrivilegeEscalation,
        technique,
        condition,
        why,
    }
}

const fn evasion(
    action: &'static str,
    technique: &'static Technique,
    why: &'static str,
) -> Dangerous {
    Dangerous {
        action,
        kind: FindingKind::DefenseEvasion,
        technique,
        condition: Condition::Always,
        why,
    }
}

use Condition::{AfterPassRole, Always, OtherPrincipal, PassRole};

/// The catalogue.
pub const CATALOGUE: &[Dangerous] = &[
    // AWS IAM: credentials and permissions for a principal.
    escalation(
        "iam:CreateAccessKey",
        &attack::ADDITIONAL_CLOUD_CREDENTIALS,
        OtherPrincipal,
        "creates a long-lived access key for another principal",
    ),
    escalation(
        "iam:CreateLoginProfile",
        &attack::ADDITIONAL_CLOUD_CREDENTIALS,
        OtherPrincipal,
        "gives another principal a console password",
    ),
    escalation(
        "iam:UpdateLoginProfile",
        &attack::ADDITIONAL_CLOUD_CREDENTIALS,
        OtherPrincipal,
        "resets another principal's console password",
    ),
    escalation(
        "iam:AttachUserPolicy",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "attaches a managed policy to a user",
    ),
    escalation(
        "iam:AttachRolePolicy",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "attaches a managed policy to a role",
    ),
    escalation(
        "iam:AttachGroupPolicy",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "attaches a managed policy to a group",
    ),
    escalation(
        "iam:PutUserPolicy",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "writes an inline policy on a user",
    ),
    escalation(
        "iam:PutRolePolicy",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "writes an inline policy on a role",
    ),
    escalation(
        "iam:PutGroupPolicy",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "writes an inline policy on a group",
    ),
    escalation(
        "iam:CreatePolicyVersion",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "rewrites a managed policy",
    ),
    escalation(
        "iam:SetDefaultPolicyVersion",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "switches a managed policy to another version",
    ),
    escalation(
        "iam:AddUserToGroup",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "adds a user to a group and its permissions",
    ),
    escalation(
        "iam:UpdateAssumeRolePolicy",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "changes who may assume a role",
    ),
    escalation(
        "iam:PassRole",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        PassRole,
        "hands a role to a service",
    ),
    escalation(
        "lambda:CreateFunction",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        AfterPassRole,
        "creates a function running with a passed role",
    ),
    escalation(
        "lambda:UpdateFunctionConfiguration",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        AfterPassRole,
        "gives a function a passed role",
    ),
    escalation(
        "ec2:RunInstances",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        AfterPassRole,
        "starts an instance with a passed role",
    ),
    escalation(
        "cloudformation:CreateStack",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        AfterPassRole,
        "creates a stack with a passed role",
    ),
    escalation(
        "glue:CreateDevEndpoint",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        AfterPassRole,
        "creates a Glue endpoint with a passed role",
    ),
    escalation(
        "glue:CreateJob",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        AfterPassRole,
        "creates a Glue job with a passed role",
    ),
    escalation(
        "sagemaker:CreateNotebookInstance",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        AfterPassRole,
        "creates a notebook with a passed role",
    ),
    escalation(
        "ecs:RunTask",
        &attack::TEMPORARY_ELEVATED_ACCESS,
        AfterPassRole,
        "runs a task with a passed role",
    ),
    escalation(
        "ssm:SendCommand",
        &attack::CLOUD_ADMIN_COMMAND,
        Always,
        "runs commands on instances",
    ),
    escalation(
        "ssm:StartSession",
        &attack::CLOUD_ADMIN_COMMAND,
        Always,
        "opens a shell on an instance",
    ),
    escalation(
        "ec2:ModifySnapshotAttribute",
        &attack::TRANSFER_TO_CLOUD_ACCOUNT,
        Always,
        "shares a disk snapshot with other accounts",
    ),
    escalation(
        "ec2:ModifyImageAttribute",
        &attack::TRANSFER_TO_CLOUD_ACCOUNT,
        Always,
        "shares a machine image with other accounts",
    ),
    escalation(
        "rds:ModifyDBSnapshotAttribute",
        &attack::TRANSFER_TO_CLOUD_ACCOUNT,
        Always,
        "shares a database snapshot with other accounts",
    ),
    // Kubernetes.
    escalation(
        "k8s:create/clusterrolebindings",
        &attack::ADDITIONAL_CLUSTER_ROLES,
        Always,
        "binds a cluster role",
    ),
    escalation(
        "k8s:update/clusterrolebindings",
        &attack::ADDITIONAL_CLUSTER_ROLES,
        Always,
        "changes a cluster role binding",
    ),
    escalation(
        "k8s:patch/clusterrolebindings",
        &attack::ADDITIONAL_CLUSTER_ROLES,
        Always,
        "changes a cluster role binding",
    ),
    escalation(
        "k8s:create/rolebindings",
        &attack::ADDITIONAL_CLUSTER_ROLES,
        Always,
        "binds a role",
    ),
    escalation(
        "k8s:escalate/clusterroles",
        &attack::ADDITIONAL_CLUSTER_ROLES,
        Always,
        "escalates a cluster role",
    ),
    escalation(
        "k8s:bind/clusterroles",
        &attack::ADDITIONAL_CLUSTER_ROLES,
        Always,
        "binds a cluster role it does not hold",
    ),
    escalation(
        "k8s:impersonate/serviceaccounts",
        &attack::ADDITIONAL_CLUSTER_ROLES,
        Always,
        "impersonates a service account",
    ),
    escalation(
        "k8s:create/serviceaccounts/token",
        &attack::ADDITIONAL_CLOUD_CREDENTIALS,
        Always,
        "mints a service-account token",
    ),
    escalation(
        "k8s:create/pods/exec",
        &attack::CONTAINER_ADMIN_COMMAND,
        Always,
        "runs a command in a pod",
    ),
    escalation(
        "k8s:get/pods/exec",
        &attack::CONTAINER_ADMIN_COMMAND,
        Always,
        "runs a command in a pod",
    ),
    escalation(
        "k8s:create/pods/attach",
        &attack::CONTAINER_ADMIN_COMMAND,
        Always,
        "attaches to a running pod",
    ),
    // GitHub.
    escalation(
        "github:org.add_member",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "adds an organisation member",
    ),
    escalation(
        "github:org.update_member",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "changes an organisation member's role",
    ),
    escalation(
        "github:business.add_admin",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "adds an enterprise owner",
    ),
    escalation(
        "github:team.add_member",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "adds a team member",
    ),
    escalation(
        "github:repo.add_member",
        &attack::ADDITIONAL_CLOUD_ROLES,
        Always,
        "adds a repository collaborator",
    ),
    escalation(
        "github:public_key.create",
        &attack::ADDITIONAL_CLOUD_CREDENTIALS,
        Always,
        "adds an SSH or deploy key",
    ),
    escalation(
        "github:oauth_access.create",
        &attack::ADDITIONAL_CLOUD_CREDENTIALS,
        Always,
        "creates an OAuth token",
    ),
    // AWS logging and detection switched off.
    evasion(
        "cloudtrail:StopLogging",
        &attack::DISABLE_CLOUD_LOGS,
        "stops a CloudTrail trail",
    ),
    evasion(
        "cloudtrail:DeleteTrail",
        &attack::DISABLE_CLOUD_LOGS,
        "deletes a CloudTrail trail",
    ),
    evasion(
        "cloudtrail:UpdateTrail",
        &attack::DISABLE_CLOUD_LOGS,
        "changes where or what a trail logs",
    ),
    evasion(
        "cloudtrail:PutEventSelectors",
        &attack::DISABLE_CLOUD_LOGS,
        "changes which events a trail records (may narrow it)",
    ),
    evasion(
        "ec2:DeleteFlowLogs",
        &attack::DISABLE_CLOUD_LOGS,
        "deletes VPC flow logs",
    ),
    evasion(
        "logs:DeleteLogGroup",
        &attack::DISABLE_CLOUD_LOGS,
        "deletes a log group",
    ),
    evasion(
        "logs:DeleteLogStream",
        &attack::DISABLE_CLOUD_LOGS,
        "deletes a log stream",
    ),
    evasion(
        "config:StopConfigurationRecorder",
        &attack::DISABLE_CLOUD_LOGS,
        "stops AWS Config recording",
    ),
    evasion(
        "config:DeleteConfigurationRecorder",
        &attack::DISABLE_CLOUD_LOGS,
        "deletes AWS Config recording",
    ),
    evasion(
        "config:DeleteDeliveryChannel",
        &attack::DISABLE_CLOUD_LOGS,
        "deletes AWS Config delivery",
    ),
    evasion(
        "s3:PutBucketLogging",
        &attack::DISABLE_CLOUD_LOGS,
        "changes S3 access logging",
    ),
    evasion(
        "guardduty:DeleteDetector",
        &attack::DISABLE_TOOLS,
        "deletes the GuardDuty detector",
    ),
    evasion(
        "guardduty:UpdateDetector",
        &attack::DISABLE_TOOLS,
        "changes (may disable) the GuardDuty detector",
    ),
    evasion(
        "guardduty:DisassociateFromMasterAccount",
        &attack::DISABLE_TOOLS,
        "leaves GuardDuty's administrator account",
    ),
    evasion(
        "guardduty:DisassociateFromAdministratorAccount",
        &attack::DISABLE_TOOLS,
        "leaves GuardDuty's administrator account",
    ),
    evasion(
        "guardduty:StopMonitoringMembers",
        &attack::DISABLE_TOOLS,
        "stops GuardDuty monitoring of members",
    ),
    evasion(
        "guardduty:CreateFilter",
        &attack::DISABLE_TOOLS,
        "adds a GuardDuty filter (may auto-archive findings)",
    ),
    evasion(
        "guardduty:DeletePublishingDestination",
        &attack::DISABLE_TOOLS,
        "stops GuardDuty exports",
    ),
    evasion(
        "securityhub:DisableSecurityHub",
        &attack::DISABLE_TOOLS,
        "disables Security Hub",
    ),
    evasion(
        "access-analyzer:DeleteAnalyzer",
        &attack::DISABLE_TOOLS,
        "deletes an IAM Access Analyzer",
    ),
    evasion(
        "macie2:DisableMacie",
        &attack::DISABLE_TOOLS,
        "disables Macie",
    ),
    evasion(
        "cloudwatch:DeleteAlarms",
        &attack::DISABLE_TOOLS,
        "deletes CloudWatch alarms",
    ),
    // Kubernetes.
    evasion(
        "k8s:delete/events",
        &attack::INDICATOR_REMOVAL,
        "deletes cluster events",
    ),
    evasion(
        "k8s:deletecollection/events",
        &attack::INDICATOR_REMOVAL,
        "deletes cluster events",
    ),
    evasion(
        "k8s:delete/validatingwebhookconfigurations",
        &attack::DISABLE_TOOLS,
        "removes an admission control webhook",
    ),
    evasion(
        "k8s:delete/mutatingwebhookconfigurations",
        &attack::DISABLE_TOOLS,
        "removes an admission control webhook",
    ),
    // GitHub.
    evasion(
        "github:protected_branch.destroy",
        &attack::DISABLE_TOOLS,
        "removes a branch protection",
    ),
    evasion(
        "github:protected_branch.policy_override",
        &attack::DISABLE_TOOLS,
        "overrides a branch protection",
    ),
    evasion(
        "github:repository_secret_scanning.disable",
        &attack::DISABLE_TOOLS,
        "disables secret scanning",
    ),
    evasion(
        "github:repository_secret_scanning_push_protection.disable",
        &attack::DISABLE_TOOLS,
        "disables secret-scanning push protection",
    ),
    evasion(
        "github:secret_scanning.disable",
        &attack::DISABLE_TOOLS,
        "disables secret scanning",
    ),
    evasion(
        "github:dependabot_alerts.disable",
        &attack::DISABLE_TOOLS,
        "disables Dependabot alerts",
    ),
    evasion(
        "github:repository_vulnerability_alerts.disable",
        &attack::DISABLE_TOOLS,
        "disables vulnerability alerts",
    ),
    evasion(
        "github:org.disable_oauth_app_restrictions",
        &attack::DISABLE_TOOLS,
        "lifts OAuth app restrictions",
    ),
    evasion(
        "github:audit_log_streaming.destroy",
        &attack::DISABLE_CLOUD_LOGS,
        "deletes audit log streaming",
    ),
    evasion(
        "github:org.disable_two_factor_requirement",
        &attack::MODIFY_AUTHENTICATION,
        "lifts the two-factor requirement",
    ),
    evasion(
        "github:business.disable_two_factor_requirement",
        &attack::MODIFY_AUTHENTICATION,
        "lifts the two-factor requirement",
    ),
];

/// The catalogue entry of an action (case-insensitive; CloudTrail's versioned Lambda names
/// such as `CreateFunction20150331` match their plain name).
pub fn lookup(action: &str) -> Option<&'static Dangerous> {
    CATALOGUE.iter().find(|d| {
        action.eq_ignore_ascii_case(d.action)
            || action
                .get(..d.action.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(d.action))
                && action[d.action.len()..].bytes().all(|b| b.is_ascii_digit())
                && action.len() > d.action.len()
    })
}

/// Severity of a catalogue episode: high; critical for a chain (a passed role used for new
/// compute) or two or more distinct dangerous actions; one step lower when the provider
/// refused every attempt.
pub fn severity(distinct: usize, chain: bool, all_refused: bool) -> Severity {
    let base = if chain || distinct >= 2 {
        Severity::Critical
    } else {
        Severity::High
    };
    if all_refused {
        match base {
            Severity::Critical => Severity::High,
            _ => Severity::Medium,
        }
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_matches_exact_and_versioned_names() {
        assert_eq!(
            lookup("lambda:CreateFunction20150331").map(|d| d.action),
            Some("lambda:CreateFunction")
        );
        assert_eq!(
            lookup("CLOUDTRAIL:stoplogging").map(|d| d.kind),
            Some(FindingKind::DefenseEvasion)
        );
        assert!(lookup("lambda:CreateFunctionUrlConfig").is_none());
        assert!(lookup("s3:GetObject").is_none());
        assert_eq!(
            lookup("k8s:create/clusterrolebindings").map(|d| d.technique.id),
            Some("T1098.006")
        );
    }

    #[test]
    fn every_technique_is_known_to_the_ocsf_lookup() {
        for entry in CATALOGUE {
            assert!(
                attack::from_tag(&entry.technique.tag()).is_some(),
                "{}",
                entry.action
            );
        }
    }
}
