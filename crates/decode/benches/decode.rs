//! Decode + normalise throughput, read through the public `Reader` from an in-memory buffer on
//! one thread, for the two formats that carry most of a fleet's volume:
//!
//! - **cloudtrail**: JSON lines of realistic size (about 1.3 KB on average), a mix modelled on
//!   records as CloudTrail writes them: assumed-role S3 data events, IAM and EC2 management
//!   calls, denied calls, console sign-ins, an AWS service assuming a role, secret reads.
//! - **k8s_audit**: `audit.k8s.io/v1` events as kube-apiserver's log backend writes them (one
//!   per line, final stage only, as most audit policies log): service accounts listing pods and
//!   reading config maps at `Metadata` level, a `RequestResponse`-level create with its request
//!   and response objects, a request RBAC denied, a kubelet updating its node's status.
//!
//! Each line gets its own event id, request id and time, so nothing is cached between identical
//! lines. Criterion reports events/s (`Throughput::Elements`).
//!
//! Run with `cargo bench -p nhiwatch-decode --bench decode`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nhiwatch_decode::cloudtrail::CloudTrailDecoder;
use nhiwatch_decode::k8s::K8sAuditDecoder;
use nhiwatch_decode::{ReadOptions, Reader, RecordDecoder, Sinks};

/// Lines per benchmark iteration.
const LINES: usize = 20_000;

/// CloudTrail record templates; `@ID@`, `@REQ@` and `@TIME@` are filled per line.
const CLOUDTRAIL: [&str; 9] = [
    // Assumed-role S3 data event (the OTRF exfiltration shape, in today's event version).
    r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROA5FLZVX4OAMSW6BCRH:i-0317f6c6b66ae9c40","arn":"arn:aws:sts::123456789012:assumed-role/ci-deployer/i-0317f6c6b66ae9c40","accountId":"123456789012","accessKeyId":"ASIA5FLZVX4OPVKKVBMX","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA5FLZVX4OAMSW6BCRH","arn":"arn:aws:iam::123456789012:role/service/ci-deployer","accountId":"123456789012","userName":"ci-deployer"},"attributes":{"creationDate":"2024-05-01T07:48:30Z","mfaAuthenticated":"false"},"ec2RoleDelivery":"2.0"}},"eventTime":"@TIME@","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.17","userAgent":"[aws-cli/2.15.30 Python/3.11.8 Linux/6.1.0 exe/x86_64.amzn.2 command/s3.cp]","requestParameters":{"bucketName":"prod-artifacts-123456789012","Host":"prod-artifacts-123456789012.s3.us-east-1.amazonaws.com","key":"releases/2024/05/service-api-1.42.7.tar.gz"},"responseElements":null,"additionalEventData":{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":0,"AuthenticationMethod":"AuthHeader","x-amz-id-2":"gyAgfHKWBQDUmPzc6Za14YfKLUew1NZi81kJ1w95x6ibnEsBn7rpYrjnoTeUrjEGGMfXo7BgS70=","bytesTransferredOut":48213},"requestID":"@REQ@","eventID":"@ID@","readOnly":true,"resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::prod-artifacts-123456789012/releases/2024/05/service-api-1.42.7.tar.gz"},{"accountId":"123456789012","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::prod-artifacts-123456789012"}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"123456789012","eventCategory":"Data","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"prod-artifacts-123456789012.s3.us-east-1.amazonaws.com"}}"#,
    // Assumed-role IAM policy change.
    r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLEPLATFORM:terraform-run-88213","arn":"arn:aws:sts::123456789012:assumed-role/platform-admin/terraform-run-88213","accountId":"123456789012","accessKeyId":"ASIAEXAMPLE7QWERTYU","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLEPLATFORM","arn":"arn:aws:iam::123456789012:role/platform-admin","accountId":"123456789012","userName":"platform-admin"},"attributes":{"creationDate":"2024-05-01T07:40:02Z","mfaAuthenticated":"false"}}},"eventTime":"@TIME@","eventSource":"iam.amazonaws.com","eventName":"AttachRolePolicy","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.24","userAgent":"APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.45.0 aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/iam#1.31.4","requestParameters":{"roleName":"payments-worker","policyArn":"arn:aws:iam::123456789012:policy/payments-s3-write"},"responseElements":null,"requestID":"@REQ@","eventID":"@ID@","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"iam.amazonaws.com"}}"#,
    // Assumed-role EC2 enumeration.
    r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLEMONITOR:inventory-lambda","arn":"arn:aws:sts::123456789012:assumed-role/inventory-collector/inventory-lambda","accountId":"123456789012","accessKeyId":"ASIAEXAMPLEZXCVBNMA","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLEMONITOR","arn":"arn:aws:iam::123456789012:role/inventory-collector","accountId":"123456789012","userName":"inventory-collector"},"attributes":{"creationDate":"2024-05-01T07:00:11Z","mfaAuthenticated":"false"}}},"eventTime":"@TIME@","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"eu-west-1","sourceIPAddress":"54.220.10.4","userAgent":"Boto3/1.34.84 md/Botocore#1.34.84 ua/2.0 os/linux#5.10.214 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.84","requestParameters":{"instancesSet":{"items":[{"instanceId":"i-0a1b2c3d4e5f67890"}]},"filterSet":{"items":[{"name":"instance-state-name","valueSet":{"items":[{"value":"running"}]}}]}},"responseElements":null,"requestID":"@REQ@","eventID":"@ID@","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"ec2.eu-west-1.amazonaws.com"}}"#,
    // Denied IAM enumeration by an IAM user's long-lived key.
    r#"{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLEBACKUP01","arn":"arn:aws:iam::123456789012:user/svc-backup","accountId":"123456789012","accessKeyId":"AKIAEXAMPLEBACKUP01","userName":"svc-backup"},"eventTime":"@TIME@","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.201","userAgent":"aws-cli/2.15.30 Python/3.11.8 Linux/6.1.0 exe/x86_64.ubuntu.22 prompt/off command/iam.list-users","errorCode":"AccessDenied","errorMessage":"User: arn:aws:iam::123456789012:user/svc-backup is not authorized to perform: iam:ListUsers on resource: arn:aws:iam::123456789012:user/ because no identity-based policy allows the iam:ListUsers action","requestParameters":null,"responseElements":null,"requestID":"@REQ@","eventID":"@ID@","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"iam.amazonaws.com"}}"#,
    // Denied EC2 launch (encoded authorisation message).
    r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLEBUILDER:build-7781","arn":"arn:aws:sts::123456789012:assumed-role/ci-builder/build-7781","accountId":"123456789012","accessKeyId":"ASIAEXAMPLEBUILD778","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLEBUILDER","arn":"arn:aws:iam::123456789012:role/ci-builder","accountId":"123456789012","userName":"ci-builder"},"attributes":{"creationDate":"2024-05-01T07:59:40Z","mfaAuthenticated":"false"}}},"eventTime":"@TIME@","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"us-east-2","sourceIPAddress":"203.0.113.90","userAgent":"aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.152.0","errorCode":"Client.UnauthorizedOperation","errorMessage":"You are not authorized to perform this operation. Encoded authorization failure message: 4hZfRGc6N0xkEXAMPLE-oDsPRf3Qt2Vb8mT5nK1wZcH","requestParameters":{"instancesSet":{"items":[{"imageId":"ami-0abcdef1234567890","minCount":1,"maxCount":1}]},"instanceType":"p4d.24xlarge","blockDeviceMapping":{},"monitoring":{"enabled":false},"disableApiTermination":false,"disableApiStop":false},"responseElements":null,"requestID":"@REQ@","eventID":"@ID@","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management"}"#,
    // Console sign-in by a person.
    r#"{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLEPERSON01","arn":"arn:aws:iam::123456789012:user/maria.garcia","accountId":"123456789012","userName":"maria.garcia"},"eventTime":"@TIME@","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.77","userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_us-east-1_c5f0c4b8","MobileVersion":"No","MFAIdentifier":"arn:aws:iam::123456789012:mfa/maria.garcia","MFAUsed":"Yes"},"eventID":"@ID@","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"signin.aws.amazon.com"}}"#,
    // A console session's API call through the console back end.
    r#"{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLEPERSON01","arn":"arn:aws:iam::123456789012:user/maria.garcia","accountId":"123456789012","accessKeyId":"ASIAEXAMPLECONSOLE1","userName":"maria.garcia","sessionContext":{"attributes":{"creationDate":"2024-05-01T07:12:44Z","mfaAuthenticated":"true"}}},"eventTime":"@TIME@","eventSource":"monitoring.amazonaws.com","eventName":"DescribeAlarms","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.77","userAgent":"EC2ConsoleFrontend, aws-internal/3 aws-sdk-java/1.12.697 Linux/5.10.215-181.850.amzn2int.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS java/17.0.10 vendor/Amazon.com_Inc.","requestParameters":{"maxRecords":100,"alarmTypes":["CompositeAlarm","MetricAlarm"]},"responseElements":null,"requestID":"@REQ@","eventID":"@ID@","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","sessionCredentialFromConsole":"true"}"#,
    // An AWS service assuming an instance role (response carries the session credentials).
    r#"{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"ec2.amazonaws.com"},"eventTime":"@TIME@","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"us-east-1","sourceIPAddress":"ec2.amazonaws.com","userAgent":"ec2.amazonaws.com","requestParameters":{"roleArn":"arn:aws:iam::123456789012:role/service/ci-deployer","roleSessionName":"i-0317f6c6b66ae9c40"},"responseElements":{"credentials":{"accessKeyId":"ASIA5FLZVX4OPVKKVBMX","sessionToken":"IQoJb3JpZ2luX2VjEKn//////////wEaCXVzLWVhc3QtMSJHMEUCIEE7NhgFqTBHQY6jp3FlKsmXQHdQd4aB0xxWS3BvNYYNAiEAikVOWBpjA+0W99zTB2zpve2ylx8Kl4Q2AcqJjs1bmQMqvQMIsv//////////ARABGgw5MDQ4ODI2NjcyOTIiDEONTqwt1GfGav6ZYyqRAzBEfRIR+VI5NFIoHsOq19omAa2nh2qYyeh6P4U0U+//w9uo6mL2BngYEBasyso06Qo86pQB0gyLHs1rHo6JwV9CdCz40cdnVSxe","expiration":"May 1, 2024, 2:01:26 PM"}},"requestID":"@REQ@","eventID":"@ID@","readOnly":true,"resources":[{"accountId":"123456789012","type":"AWS::IAM::Role","ARN":"arn:aws:iam::123456789012:role/service/ci-deployer"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","sharedEventID":"c8b04b42-5993-4472-ba04-a466f7d15cd0","eventCategory":"Management"}"#,
    // A workload reading a secret.
    r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLEPAYMENTS:payments-worker-5d8f7","arn":"arn:aws:sts::123456789012:assumed-role/payments-worker/payments-worker-5d8f7","accountId":"123456789012","accessKeyId":"ASIAEXAMPLEPAYWORK1","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLEPAYMENTS","arn":"arn:aws:iam::123456789012:role/payments-worker","accountId":"123456789012","userName":"payments-worker"},"webIdFederationData":{"federatedProvider":"arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE","attributes":{}},"attributes":{"creationDate":"2024-05-01T07:30:00Z","mfaAuthenticated":"false"}}},"eventTime":"@TIME@","eventSource":"secretsmanager.amazonaws.com","eventName":"GetSecretValue","awsRegion":"us-east-1","sourceIPAddress":"10.20.31.44","userAgent":"aws-sdk-java/2.25.26 Linux/5.10.214 OpenJDK_64-Bit_Server_VM/21.0.2+13-LTS Java/21.0.2 vendor/Eclipse_Adoptium io/sync http/Apache cfg/retry-mode/standard","requestParameters":{"secretId":"prod/payments/stripe-api-key"},"responseElements":null,"requestID":"@REQ@","eventID":"@ID@","readOnly":true,"resources":[{"accountId":"123456789012","type":"AWS::SecretsManager::Secret","ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/payments/stripe-api-key-AbCdEf"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management"}"#,
];

/// `LINES` records, one per line, cycling through the templates with fresh ids and times.
/// With `distinct_sessions`, every record's `userIdentity` is one never seen before (its
/// principal id names another session): the worst case for the decoder's identity memo, which
/// otherwise recalls each template's identity.
fn cloudtrail_lines(distinct_sessions: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(LINES * 1_400);
    for i in 0..LINES {
        let mut template = CLOUDTRAIL[i % CLOUDTRAIL.len()].to_owned();
        if distinct_sessions {
            template = template.replace(r#""principalId":""#, &format!(r#""principalId":"S{i}"#));
        }
        let line = template
            .replace(
                "@ID@",
                &format!("{:08x}-4c1d-4e2a-9b7f-{:012x}", i * 7919, i),
            )
            .replace("@REQ@", &format!("{:016X}", i * 104_729))
            .replace(
                "@TIME@",
                &format!(
                    "2024-05-01T{:02}:{:02}:{:02}Z",
                    8 + i / 3600 % 12,
                    i / 60 % 60,
                    i % 60
                ),
            );
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Kubernetes audit event templates; `@ID@` (the audit ID), `@UID@` (an object's uid),
/// `@RECEIVED@` and `@TIME@` (request received and stage timestamps) are filled per line.
const K8S: [&str; 6] = [
    // A controller's service account listing pods (bound token: credential and pod in `extra`).
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/notifications/pods?limit=500","verb":"list","user":{"username":"system:serviceaccount:notifications:notifications-autoscaler","uid":"0000007e-5d2c-4f7e-9a61-5d072daab12d","groups":["system:serviceaccounts","system:serviceaccounts:notifications","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=c401d7a2-5d07-4aa1-9f2e-77c3b1e0d4a5"],"authentication.kubernetes.io/node-name":["ip-10-0-6-137.ec2.internal"],"authentication.kubernetes.io/node-uid":["1f0f8f5e-7a55-4c1b-b0b4-2f6d7c0e9a13"],"authentication.kubernetes.io/pod-name":["notifications-autoscaler-7c9f5d8b4-x2kqp"],"authentication.kubernetes.io/pod-uid":["6b0c3f2e-91d4-4e7a-8a5f-2c1d0e9b7a64"]}},"sourceIPs":["10.3.21.111"],"userAgent":"autoscaler/v1.4.2 (linux/amd64) kubernetes/4f1c2b","objectRef":{"resource":"pods","namespace":"notifications","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"@RECEIVED@","stageTimestamp":"@TIME@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"notifications-autoscaler\" of Role \"notifications-autoscaler\" to ServiceAccount \"notifications-autoscaler/notifications\""}}"#,
    // The same workload reading its config map, Metadata level (no request object).
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/notifications/configmaps/notifications-autoscaler-config","verb":"get","user":{"username":"system:serviceaccount:notifications:notifications-autoscaler","uid":"0000007e-5d2c-4f7e-9a61-5d072daab12d","groups":["system:serviceaccounts","system:serviceaccounts:notifications","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=c401d7a2-5d07-4aa1-9f2e-77c3b1e0d4a5"],"authentication.kubernetes.io/node-name":["ip-10-0-6-137.ec2.internal"],"authentication.kubernetes.io/node-uid":["1f0f8f5e-7a55-4c1b-b0b4-2f6d7c0e9a13"],"authentication.kubernetes.io/pod-name":["notifications-autoscaler-7c9f5d8b4-x2kqp"],"authentication.kubernetes.io/pod-uid":["6b0c3f2e-91d4-4e7a-8a5f-2c1d0e9b7a64"]}},"sourceIPs":["10.3.21.111"],"userAgent":"autoscaler/v1.4.2 (linux/amd64) kubernetes/4f1c2b","objectRef":{"resource":"configmaps","namespace":"notifications","name":"notifications-autoscaler-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"@RECEIVED@","stageTimestamp":"@TIME@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"notifications-autoscaler\" of Role \"notifications-autoscaler\" to ServiceAccount \"notifications-autoscaler/notifications\""}}"#,
    // A deployer creating a config map, logged at RequestResponse level (request and response
    // objects, the response with its managed fields).
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/configmaps?fieldManager=kubectl-client-side-apply&fieldValidation=Strict","verb":"create","user":{"username":"system:serviceaccount:ci:deployer","uid":"d7f1c2a0-4b3e-4f5a-9c8d-7e6f5a4b3c2d","groups":["system:serviceaccounts","system:serviceaccounts:ci","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=8f0e2c1a-7d6b-4c5a-9e8f-1a2b3c4d5e6f"],"authentication.kubernetes.io/node-name":["ip-10-0-2-54.ec2.internal"],"authentication.kubernetes.io/pod-name":["deployer-5d8f7c9b6-q4wzt"],"authentication.kubernetes.io/pod-uid":["3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a098"]}},"sourceIPs":["10.1.2.3"],"userAgent":"kubectl/v1.30.1 (linux/amd64) kubernetes/7a3e0a4","objectRef":{"resource":"configmaps","namespace":"payments","name":"payments-api-settings","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"payments-api-settings","namespace":"payments","creationTimestamp":null,"labels":{"app.kubernetes.io/name":"payments-api","app.kubernetes.io/part-of":"payments"},"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"LOG_LEVEL\":\"info\",\"MAX_CONNECTIONS\":\"200\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{},\"name\":\"payments-api-settings\",\"namespace\":\"payments\"}}\n"}},"data":{"LOG_LEVEL":"info","MAX_CONNECTIONS":"200","UPSTREAM":"https://ledger.payments.svc.cluster.local:8443"}},"responseObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"payments-api-settings","namespace":"payments","uid":"@UID@","resourceVersion":"48213377","creationTimestamp":"@RECEIVED@","labels":{"app.kubernetes.io/name":"payments-api","app.kubernetes.io/part-of":"payments"},"managedFields":[{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"v1","time":"@RECEIVED@","fieldsType":"FieldsV1","fieldsV1":{"f:data":{".":{},"f:LOG_LEVEL":{},"f:MAX_CONNECTIONS":{},"f:UPSTREAM":{}},"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app.kubernetes.io/name":{},"f:app.kubernetes.io/part-of":{}}}}}]},"data":{"LOG_LEVEL":"info","MAX_CONNECTIONS":"200","UPSTREAM":"https://ledger.payments.svc.cluster.local:8443"}},"requestReceivedTimestamp":"@RECEIVED@","stageTimestamp":"@TIME@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"deployer\" of ClusterRole \"edit\" to ServiceAccount \"deployer/ci\""}}"#,
    // A service account refused by RBAC.
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets?limit=500","verb":"list","user":{"username":"system:serviceaccount:web:frontend","uid":"5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716","groups":["system:serviceaccounts","system:serviceaccounts:web","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"],"authentication.kubernetes.io/node-name":["ip-10-0-9-12.ec2.internal"],"authentication.kubernetes.io/pod-name":["frontend-6f7d9c8b5-m8r2x"],"authentication.kubernetes.io/pod-uid":["9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"]}},"sourceIPs":["10.3.40.77"],"userAgent":"kubectl/v1.30.1 (linux/amd64) kubernetes/7a3e0a4","objectRef":{"resource":"secrets","namespace":"kube-system","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","message":"secrets is forbidden: User \"system:serviceaccount:web:frontend\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\"","reason":"Forbidden","details":{"kind":"secrets"},"code":403},"requestReceivedTimestamp":"@RECEIVED@","stageTimestamp":"@TIME@","annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}"#,
    // The kubelet patching its node's status (client certificate).
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/api/v1/nodes/ip-10-0-6-137.ec2.internal/status?timeout=10s","verb":"patch","user":{"username":"system:node:ip-10-0-6-137.ec2.internal","groups":["system:nodes","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=5a3f0e6c1b2d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"]}},"sourceIPs":["10.0.6.137"],"userAgent":"kubelet/v1.29.3 (linux/amd64) kubernetes/6813625","objectRef":{"resource":"nodes","name":"ip-10-0-6-137.ec2.internal","apiVersion":"v1","subresource":"status"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"@RECEIVED@","stageTimestamp":"@TIME@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#,
    // The kubelet renewing its node lease.
    r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"@ID@","stage":"ResponseComplete","requestURI":"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/ip-10-0-6-137.ec2.internal?timeout=10s","verb":"update","user":{"username":"system:node:ip-10-0-6-137.ec2.internal","groups":["system:nodes","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=5a3f0e6c1b2d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"]}},"sourceIPs":["10.0.6.137"],"userAgent":"kubelet/v1.29.3 (linux/amd64) kubernetes/6813625","objectRef":{"resource":"leases","namespace":"kube-node-lease","name":"ip-10-0-6-137.ec2.internal","apiGroup":"coordination.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"@RECEIVED@","stageTimestamp":"@TIME@","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#,
];

/// `LINES` Kubernetes audit events, one per line, cycling through the templates with fresh
/// audit IDs, uids and times.
fn k8s_lines() -> Vec<u8> {
    let mut out = Vec::with_capacity(LINES * 1_600);
    for i in 0..LINES {
        let time = |micros: usize| {
            format!(
                "2026-03-14T{:02}:{:02}:{:02}.{:06}Z",
                i / 3600 % 24,
                i / 60 % 60,
                i % 60,
                micros
            )
        };
        let line = K8S[i % K8S.len()]
            .replace(
                "@ID@",
                &format!("{:08x}-eb60-428e-b355-{:012x}", i * 7919, i),
            )
            .replace(
                "@UID@",
                &format!("{:08x}-5f1c-4d2e-8a3b-{:012x}", i * 104_729, i),
            )
            .replace("@RECEIVED@", &time(264_187))
            .replace("@TIME@", &time(269_187));
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads `input` through a fresh `Reader`, as `nhiwatch detect` does, and returns the count of
/// events. With `check`, every line must decode (a benchmark over rejects would measure the
/// wrong thing).
fn read_all(input: &[u8], check: bool) -> u64 {
    let mut reader = Reader::new(ReadOptions::default(), None);
    let mut rejects = Vec::new();
    let mut sinks = Sinks {
        event: &mut |event| {
            black_box(&event);
        },
        reject: &mut |reject| {
            if check {
                rejects.push(reject.to_string());
            }
            black_box(reject);
        },
    };
    reader.read_bytes("bench", black_box(input), &mut sinks);
    reader.finish(&mut sinks);
    let events = reader.stats().events;
    if check {
        assert!(
            rejects.is_empty(),
            "bench input rejected: {:?}",
            &rejects[..rejects.len().min(3)]
        );
        assert_eq!(events, LINES as u64);
    }
    events
}

/// Decodes each line of `input` with `decoder` alone: what the reader's line splitting and
/// format detection add on top of it shows against `read_all`.
fn decode_lines(decoder: &mut dyn RecordDecoder, input: &str) -> usize {
    let mut events = 0usize;
    for line in input.lines() {
        let _ = decoder.decode(line, &mut |event| {
            black_box(&event);
            events += 1;
        });
    }
    decoder.finish(&mut |event| {
        black_box(&event);
        events += 1;
    });
    events
}

fn describe(name: &str, input: &[u8]) {
    println!(
        "{LINES} {name} lines, {} bytes, {} bytes per line on average",
        input.len(),
        input.len() / LINES
    );
}

fn cloudtrail(c: &mut Criterion) {
    let input = cloudtrail_lines(false);
    describe("CloudTrail", &input);
    read_all(&input, true);
    let text = std::str::from_utf8(&input).expect("the bench input is UTF-8");

    let mut group = c.benchmark_group("cloudtrail");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("reader_jsonl", |b| b.iter(|| read_all(&input, false)));
    group.bench_function("decoder_only", |b| {
        b.iter(|| decode_lines(&mut CloudTrailDecoder::default(), text))
    });
    // Every identity new: what the memo costs when it never helps.
    let distinct = cloudtrail_lines(true);
    group.bench_function("reader_jsonl_distinct_sessions", |b| {
        b.iter(|| read_all(&distinct, false))
    });
    group.finish();
}

fn k8s_audit(c: &mut Criterion) {
    let input = k8s_lines();
    describe("Kubernetes audit", &input);
    read_all(&input, true);
    let text = std::str::from_utf8(&input).expect("the bench input is UTF-8");

    let mut group = c.benchmark_group("k8s_audit");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("reader_jsonl", |b| b.iter(|| read_all(&input, false)));
    group.bench_function("decoder_only", |b| {
        b.iter(|| decode_lines(&mut K8sAuditDecoder::default(), text))
    });
    group.finish();
}

criterion_group!(benches, cloudtrail, k8s_audit);
criterion_main!(benches);
