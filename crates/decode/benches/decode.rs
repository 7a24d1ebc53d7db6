//! Decode + normalise throughput on CloudTrail JSON lines of realistic size (about 1.3 KB on
//! average), read through the public `Reader` from an in-memory buffer on one thread.
//!
//! The lines are a mix modelled on records as CloudTrail writes them: assumed-role S3 data
//! events, IAM and EC2 management calls, denied calls, console sign-ins, an AWS service assuming
//! a role, secret reads. Each line gets its own event id, request id and time, so nothing is
//! cached between identical lines. Criterion reports events/s (`Throughput::Elements`).
//!
//! Run with `cargo bench -p nhiwatch-decode --bench decode`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nhiwatch_decode::cloudtrail::CloudTrailDecoder;
use nhiwatch_decode::{ReadOptions, Reader, RecordDecoder, Sinks};

/// Lines per benchmark iteration.
const LINES: usize = 20_000;

/// Record templates; `@ID@`, `@REQ@` and `@TIME@` are filled per line.
const TEMPLATES: [&str; 9] = [
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
        let mut template = TEMPLATES[i % TEMPLATES.len()].to_owned();
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

fn decode(c: &mut Criterion) {
    let input = cloudtrail_lines(false);
    println!(
        "{LINES} CloudTrail lines, {} bytes, {} bytes per line on average",
        input.len(),
        input.len() / LINES
    );

    // Every line must decode: a benchmark over rejects would measure the wrong thing.
    let mut reader = Reader::new(ReadOptions::default(), None);
    let (mut events, mut rejects) = (0usize, Vec::new());
    let mut sinks = Sinks {
        event: &mut |_| events += 1,
        reject: &mut |reject| rejects.push(reject.to_string()),
    };
    reader.read_bytes("bench", &input, &mut sinks);
    assert!(
        rejects.is_empty(),
        "bench input rejected: {:?}",
        &rejects[..rejects.len().min(3)]
    );
    assert_eq!(events, LINES);

    let mut group = c.benchmark_group("cloudtrail");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("reader_jsonl", |b| {
        b.iter(|| {
            let mut reader = Reader::new(ReadOptions::default(), None);
            let mut sinks = Sinks {
                event: &mut |event| {
                    black_box(&event);
                },
                reject: &mut |reject| {
                    black_box(reject);
                },
            };
            reader.read_bytes("bench", black_box(&input), &mut sinks);
            reader.stats().events
        })
    });
    // The decoder alone, for comparison: what the reader's line splitting and format
    // detection add on top.
    let text = std::str::from_utf8(&input).expect("the bench input is UTF-8");
    group.bench_function("decoder_only", |b| {
        b.iter(|| {
            let mut decoder = CloudTrailDecoder::default();
            let mut events = 0usize;
            for line in text.lines() {
                let _ = decoder.decode(line, &mut |event| {
                    black_box(&event);
                    events += 1;
                });
            }
            events
        })
    });
    // Every identity new: what the memo costs when it never helps.
    let distinct = cloudtrail_lines(true);
    group.bench_function("reader_jsonl_distinct_sessions", |b| {
        b.iter(|| {
            let mut reader = Reader::new(ReadOptions::default(), None);
            let mut sinks = Sinks {
                event: &mut |event| {
                    black_box(&event);
                },
                reject: &mut |reject| {
                    black_box(reject);
                },
            };
            reader.read_bytes("bench", black_box(&distinct), &mut sinks);
            reader.stats().events
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
