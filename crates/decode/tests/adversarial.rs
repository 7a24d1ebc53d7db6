//! Hostile input through the whole reader: every case must end in events or counted, located
//! rejects, with the good records around it still decoded, and never in a panic, a stack
//! overflow or unbounded memory.

use std::io::Write;

use nhiwatch_decode::{ReadOptions, Reader, Reject, Sinks};

/// A well-formed CloudTrail record with the given event id and time.
fn cloudtrail(id: &str, time: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:s","arn":"arn:aws:sts::123456789012:assumed-role/ci/s","accountId":"123456789012"}},"eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"aws-cli/2","requestParameters":{{"bucketName":"b","key":"k"}},"eventID":"{id}","eventType":"AwsApiCall","recipientAccountId":"123456789012"}}"#
    )
}

struct Outcome {
    ids: Vec<String>,
    times: Vec<String>,
    inferred: Vec<bool>,
    rejects: Vec<Reject>,
}

fn read(bytes: &[u8], options: ReadOptions) -> Outcome {
    let mut outcome = Outcome {
        ids: Vec::new(),
        times: Vec::new(),
        inferred: Vec::new(),
        rejects: Vec::new(),
    };
    let mut reader = Reader::new(options, None);
    let mut sinks = Sinks {
        event: &mut |event| {
            outcome.ids.push(event.id.to_string());
            outcome.times.push(event.time.to_string());
            outcome.inferred.push(event.time_inferred);
        },
        reject: &mut |reject| outcome.rejects.push(reject),
    };
    reader.read_bytes("hostile", bytes, &mut sinks);
    reader.finish(&mut sinks);
    outcome
}

fn good_around(bad: &[u8]) -> Vec<u8> {
    let mut input = cloudtrail("before", "2026-03-02T10:00:00Z").into_bytes();
    input.push(b'\n');
    input.extend_from_slice(bad);
    input.push(b'\n');
    input.extend_from_slice(cloudtrail("after", "2026-03-02T10:00:01Z").as_bytes());
    input.push(b'\n');
    input
}

#[test]
fn deeply_nested_json_is_rejected_without_overflowing_the_stack() {
    for depth in [1_000, 100_000] {
        let mut bad = String::from(
            r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject","requestParameters":"#,
        );
        bad.push_str(&"[".repeat(depth));
        bad.push_str(&"]".repeat(depth));
        bad.push('}');
        let outcome = read(&good_around(bad.as_bytes()), ReadOptions::default());
        assert_eq!(outcome.ids, ["before", "after"], "depth {depth}");
        assert_eq!(outcome.rejects.len(), 1, "depth {depth}");
        assert_eq!(outcome.rejects[0].line, 2);
    }
    let arrays = "[".repeat(200_000);
    let outcome = read(&good_around(arrays.as_bytes()), ReadOptions::default());
    assert_eq!(outcome.ids, ["before", "after"]);
    assert_eq!(outcome.rejects.len(), 1);
}

#[test]
fn an_oversized_line_is_rejected_and_skipped_without_being_held() {
    let options = ReadOptions {
        max_record_bytes: 1 << 20,
        ..ReadOptions::default()
    };
    // 8 MiB of one line against a 1 MiB limit: a 100 MB line behaves the same, only slower.
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(8 << 20));
    let outcome = read(&good_around(huge.as_bytes()), options);
    assert_eq!(outcome.ids, ["before", "after"]);
    assert_eq!(outcome.rejects.len(), 1);
    let reject = &outcome.rejects[0];
    assert_eq!(reject.line, 2);
    assert!(reject.truncated, "the kept copy is cut short");
    assert!(reject.record.len() <= 64 << 10);
}

#[test]
fn invalid_utf8_is_rejected_with_its_line() {
    let mut bad = cloudtrail("bad", "2026-03-02T10:00:00Z").into_bytes();
    bad[40] = 0xff;
    bad[41] = 0xfe;
    let outcome = read(&good_around(&bad), ReadOptions::default());
    assert_eq!(outcome.ids, ["before", "after"]);
    assert_eq!(outcome.rejects.len(), 1);
    assert_eq!(outcome.rejects[0].line, 2);
    assert!(
        outcome.rejects[0].reason.to_lowercase().contains("utf-8"),
        "{}",
        outcome.rejects[0].reason
    );
}

#[test]
fn a_gzip_bomb_is_cut_off_at_the_document_limit() {
    // 64 MiB of zeros compress to ~64 KiB: a non-text stream, read as a protobuf document,
    // which the 1 MiB document limit stops after reading just past 1 MiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let options = ReadOptions {
        max_document_bytes: 1 << 20,
        ..ReadOptions::default()
    };
    let outcome = read(&bomb, options);
    assert!(outcome.ids.is_empty());
    assert_eq!(outcome.rejects.len(), 1, "one reject for the whole input");
}

#[test]
fn a_gzip_bomb_of_lines_is_streamed_not_buffered() {
    // A bomb of text lines is just a lot of records: each is judged on its own, nothing is
    // held beyond one line.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let line = b"{\"not\":\"telemetry\"}\n".repeat(10_000);
    for _ in 0..20 {
        gz.write_all(&line).unwrap();
    }
    let outcome = read(&gz.finish().unwrap(), ReadOptions::default());
    assert!(outcome.ids.is_empty());
    assert_eq!(outcome.rejects.len(), 200_000);
    assert_eq!(outcome.rejects.last().unwrap().line, 200_000);
}

#[test]
fn timestamps_far_in_the_past_or_future_are_read_and_impossible_ones_are_flagged() {
    let cases = [
        ("past", "1700-01-01T00:00:00Z"),
        ("epoch", "1970-01-01T00:00:00Z"),
        ("future", "2262-01-01T23:59:59.999999999Z"),
        ("leap", "2024-02-29T12:00:00Z"),
        ("offset", "2026-03-02T10:00:00+14:00"),
    ];
    let mut input = Vec::new();
    for (id, time) in cases {
        input.extend_from_slice(cloudtrail(id, time).as_bytes());
        input.push(b'\n');
    }
    // An unreadable time does not cost the record (a sanitised export still counts): it gets
    // the time it was read, flagged `time_inferred`, as SIEMs do. Times are nanoseconds in an
    // i64, so years before 1677 or after 2262 are out of range and count as unreadable.
    let impossible = [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "10000-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "-2026-01-01T00:00:00Z",
        "2026-03-02T25:61:61Z",
        "",
    ];
    for (i, time) in impossible.iter().enumerate() {
        input.extend_from_slice(cloudtrail(&format!("impossible-{i}"), time).as_bytes());
        input.push(b'\n');
    }
    let outcome = read(&input, ReadOptions::default());
    assert!(outcome.rejects.is_empty(), "{:?}", outcome.rejects);
    assert_eq!(outcome.ids.len(), cases.len() + impossible.len());
    assert_eq!(outcome.times[0], "1700-01-01T00:00:00Z");
    assert_eq!(outcome.times[2], "2262-01-01T23:59:59.999999999Z");
    assert_eq!(outcome.times[4], "2026-03-01T20:00:00Z");
    assert_eq!(
        outcome.inferred,
        [vec![false; cases.len()], vec![true; impossible.len()]].concat()
    );
}

#[test]
fn duplicated_and_out_of_order_events_are_all_kept_in_input_order() {
    // Deduplication is the store's job (by source event id); the reader reports what it read.
    let mut input = Vec::new();
    for (id, time) in [
        ("a", "2026-03-02T10:00:05Z"),
        ("b", "2026-03-02T10:00:01Z"),
        ("a", "2026-03-02T10:00:05Z"),
        ("c", "2025-01-01T00:00:00Z"),
    ] {
        input.extend_from_slice(cloudtrail(id, time).as_bytes());
        input.push(b'\n');
    }
    let outcome = read(&input, ReadOptions::default());
    assert_eq!(outcome.ids, ["a", "b", "a", "c"]);
    assert!(outcome.rejects.is_empty());
}

#[test]
fn binary_garbage_and_empty_inputs_end_in_rejects_or_nothing() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let outcome = read(&garbage, ReadOptions::default());
    assert!(outcome.ids.is_empty());
    assert!(!outcome.rejects.is_empty());
    for empty in [&b""[..], b"\n\n\n", b"   \r\n\t\n"] {
        let outcome = read(empty, ReadOptions::default());
        assert!(outcome.ids.is_empty() && outcome.rejects.is_empty());
    }
}

#[test]
fn a_zip_with_an_empty_extended_timestamp_field_is_rejected_not_a_panic() {
    // Found by the `read_input` fuzz target: the OTRF archive with its central directory's
    // extended-timestamp extra field cut to zero bytes. zip 4.6.1 panicked on it (an unsigned
    // underflow, zip-rs/zip2#404); the archive is now refused with a reject naming the input.
    let archive = include_bytes!("data/zip-empty-extended-timestamp.zip");
    let outcome = read(archive, ReadOptions::default());
    assert!(outcome.ids.is_empty(), "{:?}", outcome.ids);
    assert_eq!(outcome.rejects.len(), 1, "one reject for the archive");
    let reject = outcome.rejects[0].to_string();
    assert!(reject.contains("hostile"), "{reject}");
}
