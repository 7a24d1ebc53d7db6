//! AWS naming and classification tables: how a CloudTrail `eventSource`/`eventName` pair becomes
//! an IAM action name (`s3:GetObject`), which [`ActionClass`] that action falls in, and which
//! `errorCode`s mean the caller was refused.
//!
//! Policies (nhiwatch's own and imported IAM documents) are written in IAM action names, so the
//! action must use the IAM service prefix and the operation name as IAM spells it, not the API
//! host and the versioned name some services log. Classification is a small explicit table for
//! the operations that prefix rules get wrong, then rules on the operation's leading verb.

use nhiwatch_model::ActionClass;

/// The IAM service prefix for a CloudTrail `eventSource` (`s3.amazonaws.com` → `s3`).
///
/// For most services the prefix is the host's first label(s); the exceptions are the services
/// whose API host is not named after their IAM prefix.
pub fn iam_prefix(event_source: &str) -> &str {
    let host = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    match host {
        // CloudWatch metrics and alarms are served from `monitoring.*`.
        "monitoring" => "cloudwatch",
        // The Resource Groups Tagging API.
        "tagging" => "tag",
        // Cloud Control API actions are authorised as CloudFormation actions.
        "cloudcontrolapi" => "cloudformation",
        other => other,
    }
}

/// The operation as IAM names it: `eventName` without the API-version suffix that Lambda
/// (`UpdateFunctionConfiguration20150331v2`) and CloudFront (`UpdateDistribution2020_05_31`)
/// append to some operations.
pub fn operation(event_name: &str) -> &str {
    let b = event_name.as_bytes();
    // Lambda: 8 digits (a date), optionally followed by `v` and a revision number.
    let mut end = b.len();
    let revision_digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    if revision_digits > 0 && revision_digits < end && b[end - revision_digits - 1] == b'v' {
        end -= revision_digits + 1;
    }
    let date_digits = b[..end]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if date_digits == 8 && end > 8 {
        return trimmed_name(event_name, end - 8);
    }
    // CloudFront: `YYYY_MM_DD`.
    if b.len() > 10 {
        let tail = &b[b.len() - 10..];
        let is_date = tail.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'_',
            _ => c.is_ascii_digit(),
        });
        if is_date {
            return trimmed_name(event_name, b.len() - 10);
        }
    }
    event_name
}

/// `name[..end]`, unless that would leave no operation name (the whole name was digits).
fn trimmed_name(name: &str, end: usize) -> &str {
    match name.get(..end) {
        Some(head) if head.ends_with(|c: char| c.is_ascii_alphabetic()) => head,
        _ => name,
    }
}

/// Whether a CloudTrail `errorCode` means the caller was refused: not permitted
/// (`AccessDenied`, `UnauthorizedOperation`, `Client.UnauthorizedOperation`, `Forbidden`, ...)
/// or not authenticated (`AuthFailure`, `InvalidClientTokenId`, `SignatureDoesNotMatch`).
/// Any other error code is an ordinary failure.
pub fn is_denial(error_code: &str) -> bool {
    const MARKERS: [&str; 9] = [
        "AccessDenied",
        "Unauthorized",
        "NotAuthorized",
        "Forbidden",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AuthorizationError",
        "InsufficientPermission",
    ];
    MARKERS.iter().any(|marker| error_code.contains(marker))
}

/// The class of an operation of a service, both as IAM names them (`iam_prefix`, `operation`).
pub fn classify(service: &str, operation: &str) -> ActionClass {
    if let Some(class) = exception(service, operation) {
        return class;
    }
    // Every sign-in event (ConsoleLogin, SwitchRole, CheckMfa, ...) is authentication.
    if service == "signin" {
        return ActionClass::Auth;
    }
    let class = by_verb(operation);
    let (verb, object) = split_verb(operation);
    let changes = matches!(class, ActionClass::Write | ActionClass::Delete);
    if changes && (grants_access(object) || (service == "iam" && !matches!(verb, "Tag" | "Untag")))
    {
        // Everything IAM writes changes who may do what (users, roles, keys, policies,
        // trust); elsewhere only policy, ACL, grant and sharing changes do.
        return ActionClass::Permission;
    }
    class
}

/// The operations that the verb rules below would class wrongly.
fn exception(service: &str, operation: &str) -> Option<ActionClass> {
    use ActionClass::*;
    Some(match (service, operation) {
        ("secretsmanager", "BatchGetSecretValue") => Read,
        ("sqs", "ReceiveMessage") => Read,
        ("kms", "Decrypt") => Read,
        ("kms", "ScheduleKeyDeletion") => Delete,
        ("iam", "PassRole") => Permission,
        ("sts", "GetCallerIdentity") => Auth,
        ("sso", "GetRoleCredentials" | "Federate" | "Authenticate") => Auth,
        ("sso-oauth", "CreateToken") => Auth,
        ("cognito-identity", "GetId") => Auth,
        (
            "cognito-idp",
            "InitiateAuth"
            | "AdminInitiateAuth"
            | "RespondToAuthChallenge"
            | "AdminRespondToAuthChallenge",
        ) => Auth,
        ("ec2-instance-connect", _) if operation.starts_with("Send") => Exec,
        ("ssm", "SendCommand") => Exec,
        ("bedrock", "Converse" | "ConverseStream") => Exec,
        _ => return None,
    })
}

/// The class given by the operation's leading verb, before the permission refinement.
fn by_verb(operation: &str) -> ActionClass {
    use ActionClass::*;
    let (verb, object) = split_verb(operation);
    if object.ends_with("Login") {
        return Auth;
    }
    if matches!(verb, "Get" | "Create")
        && (object.ends_with("Token") || object.contains("Credentials"))
    {
        // GetSessionToken, GetFederationToken, GetAuthorizationToken, GetRoleCredentials,
        // GetClusterCredentials: each hands out a credential.
        return Auth;
    }
    match verb {
        "Assume" | "Authenticate" | "Federate" => Auth,
        "Run" | "Invoke" | "Execute" | "Submit" => Exec,
        "Start"
            if ["Session", "Build", "Execution", "Run", "Task"]
                .iter()
                .any(|s| object.ends_with(s)) =>
        {
            Exec
        }
        "Batch" => match by_verb(object) {
            // BatchGetItem and friends fetch many objects at once: an enumeration.
            Read => List,
            class => class,
        },
        "Get" | "Head" | "Download" | "Retrieve" | "Read" | "Select" | "Check" | "Verify"
        | "Estimate" | "Preview" | "Simulate" | "Generate" | "Decrypt" | "Receive" | "Decode"
        | "Export" => Read,
        "List" | "Describe" | "Search" | "Lookup" | "Scan" | "Query" | "Filter" | "Discover"
        | "Count" => List,
        "Delete" | "Remove" | "Terminate" | "Deregister" | "Release" | "Destroy" | "Purge"
        | "Erase" | "Drop" => Delete,
        "Authorize" | "Revoke" | "Grant" => Permission,
        "Create" | "Put" | "Update" | "Modify" | "Set" | "Tag" | "Untag" | "Upload" | "Copy"
        | "Start" | "Stop" | "Enable" | "Disable" | "Register" | "Associate" | "Disassociate"
        | "Attach" | "Detach" | "Import" | "Restore" | "Reboot" | "Reset" | "Replace" | "Add"
        | "Apply" | "Change" | "Complete" | "Accept" | "Reject" | "Allocate" | "Assign"
        | "Unassign" | "Cancel" | "Confirm" | "Publish" | "Send" | "Rotate" | "Subscribe"
        | "Unsubscribe" | "Increase" | "Decrease" | "Promote" | "Request" | "Purchase" | "Move"
        | "Rename" | "Resize" | "Schedule" | "Resume" | "Pause" | "Suspend" | "Initiate"
        | "Upgrade" | "Edit" | "Write" | "Insert" | "Abort" | "Deploy" | "Launch" | "Provision"
        | "Renew" | "Activate" | "Deactivate" | "Restart" | "Recover" | "Rebuild" | "Share"
        | "Unshare" | "Link" | "Unlink" | "Lock" | "Unlock" | "Merge" | "Transfer" | "Retire"
        | "Flush" | "Sync" => Write,
        _ => Other,
    }
}

/// Whether the object of a write names something that decides access: a policy, an ACL, a
/// grant, a credential or a share.
fn grants_access(object: &str) -> bool {
    const SUFFIXES: [&str; 24] = [
        "RolePolicy",
        "UserPolicy",
        "GroupPolicy",
        "BucketPolicy",
        "KeyPolicy",
        "ResourcePolicy",
        "RepositoryPolicy",
        "RegistryPolicy",
        "AccessPolicy",
        "AccessPointPolicy",
        "PolicyVersion",
        "PermissionsBoundary",
        "Permission",
        "Permissions",
        "Acl",
        "Grant",
        "PublicAccessBlock",
        "AccessKey",
        "LoginProfile",
        "AccountAssignment",
        "GroupMembership",
        "SnapshotAttribute",
        "ImageAttribute",
        "ServiceSpecificCredential",
    ];
    object == "Policy"
        || object.contains("PermissionSet")
        || object.contains("ResourceShare")
        || SUFFIXES.iter().any(|suffix| object.ends_with(suffix))
}

/// Splits `GetObject` into the verb `Get` and the object `Object`: the verb is the leading
/// capitalised word.
fn split_verb(operation: &str) -> (&str, &str) {
    let b = operation.as_bytes();
    let end = match b.first() {
        Some(c) if c.is_ascii_alphabetic() => {
            1 + b[1..].iter().take_while(|c| c.is_ascii_lowercase()).count()
        }
        _ => 0,
    };
    operation.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActionClass::*;

    #[test]
    fn prefixes_follow_iam_not_the_api_host() {
        assert_eq!(iam_prefix("s3.amazonaws.com"), "s3");
        assert_eq!(
            iam_prefix("ec2-instance-connect.amazonaws.com"),
            "ec2-instance-connect"
        );
        assert_eq!(iam_prefix("monitoring.amazonaws.com"), "cloudwatch");
        assert_eq!(iam_prefix("tagging.amazonaws.com"), "tag");
        assert_eq!(
            iam_prefix("cloudcontrolapi.amazonaws.com"),
            "cloudformation"
        );
        assert_eq!(iam_prefix("custom.example"), "custom.example");
    }

    #[test]
    fn api_versions_are_stripped_from_operations() {
        assert_eq!(
            operation("UpdateFunctionConfiguration20150331v2"),
            "UpdateFunctionConfiguration"
        );
        assert_eq!(
            operation("UpdateFunctionCode20150331v2"),
            "UpdateFunctionCode"
        );
        assert_eq!(operation("ListFunctions20150331"), "ListFunctions");
        assert_eq!(
            operation("UpdateDistribution2020_05_31"),
            "UpdateDistribution"
        );
        assert_eq!(operation("ListObjectsV2"), "ListObjectsV2");
        assert_eq!(operation("GetObject"), "GetObject");
        assert_eq!(operation("20150331"), "20150331");
        assert_eq!(operation("v2"), "v2");
        assert_eq!(operation(""), "");
    }

    #[test]
    fn denials_are_told_from_other_errors() {
        for code in [
            "AccessDenied",
            "AccessDeniedException",
            "VpceAccessDenied",
            "UnauthorizedOperation",
            "Client.UnauthorizedOperation",
            "UnauthorizedAccess",
            "NotAuthorizedException",
            "Forbidden",
            "AuthFailure",
            "CloudTrailInvalidClientTokenIdException",
        ] {
            assert!(is_denial(code), "{code}");
        }
        for code in [
            "NoSuchEntity",
            "Client.DryRunOperation",
            "ExpiredToken",
            "ValidationError",
            "ThrottlingException",
        ] {
            assert!(!is_denial(code), "{code}");
        }
    }

    #[test]
    fn operations_are_classed_by_verb_with_exceptions() {
        let cases = [
            ("s3", "GetObject", Read),
            ("s3", "HeadObject", Read),
            ("secretsmanager", "GetSecretValue", Read),
            ("secretsmanager", "BatchGetSecretValue", Read),
            ("kms", "Decrypt", Read),
            ("s3", "ListBuckets", List),
            ("ec2", "DescribeInstances", List),
            ("cloudtrail", "LookupEvents", List),
            ("dynamodb", "BatchGetItem", List),
            ("dynamodb", "Scan", List),
            ("s3", "PutObject", Write),
            ("ec2", "ModifyInstanceAttribute", Write),
            ("ec2", "StartInstances", Write),
            ("cloudtrail", "StopLogging", Write),
            ("iam", "TagRole", Write),
            ("dynamodb", "BatchWriteItem", Write),
            ("s3", "DeleteObject", Delete),
            ("ec2", "TerminateInstances", Delete),
            ("kms", "ScheduleKeyDeletion", Delete),
            ("iam", "AttachRolePolicy", Permission),
            ("iam", "PutUserPolicy", Permission),
            ("iam", "CreateAccessKey", Permission),
            ("iam", "CreateLoginProfile", Permission),
            ("iam", "UpdateAssumeRolePolicy", Permission),
            ("iam", "CreatePolicyVersion", Permission),
            ("iam", "SetDefaultPolicyVersion", Permission),
            ("iam", "AddUserToGroup", Permission),
            ("iam", "PassRole", Permission),
            ("iam", "CreateRole", Permission),
            ("kms", "CreateGrant", Permission),
            ("kms", "PutKeyPolicy", Permission),
            ("s3", "PutBucketPolicy", Permission),
            ("s3", "PutBucketAcl", Permission),
            ("s3", "DeleteBucketPublicAccessBlock", Permission),
            ("lambda", "AddPermission", Permission),
            ("ec2", "AuthorizeSecurityGroupIngress", Permission),
            ("ec2", "ModifySnapshotAttribute", Permission),
            ("organizations", "AttachPolicy", Permission),
            ("sso", "AttachManagedPolicyToPermissionSet", Permission),
            ("logs", "PutRetentionPolicy", Write),
            ("sts", "AssumeRole", Auth),
            ("sts", "AssumeRoleWithWebIdentity", Auth),
            ("sts", "GetSessionToken", Auth),
            ("sts", "GetFederationToken", Auth),
            ("sts", "GetCallerIdentity", Auth),
            ("signin", "ConsoleLogin", Auth),
            ("signin", "SwitchRole", Auth),
            ("ecr", "GetAuthorizationToken", Auth),
            ("sso", "GetRoleCredentials", Auth),
            ("ec2", "RunInstances", Exec),
            ("lambda", "Invoke", Exec),
            ("bedrock", "InvokeModel", Exec),
            ("ssm", "SendCommand", Exec),
            ("ssm", "StartSession", Exec),
            ("redshift-data", "ExecuteStatement", Exec),
            ("ecs", "RunTask", Exec),
            ("codebuild", "StartBuild", Exec),
            ("ec2-instance-connect", "SendSSHPublicKey", Exec),
            ("ses", "SendEmail", Write),
            ("x", "Frobnicate", Other),
            ("x", "", Other),
        ];
        for (service, op, class) in cases {
            assert_eq!(classify(service, op), class, "{service}:{op}");
        }
    }
}
