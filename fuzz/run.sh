#!/usr/bin/env bash
# Seeds each fuzz target's corpus from ../shared/corpus and runs every target for SECONDS
# (default 20) each. Crashes land in fuzz/artifacts/<target>/; turn each into a regression test.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode_record read_input policy_parse iam_parse rules_parse)
fi
shared=../shared/corpus
corpus=fuzz/corpus
mkdir -p "$corpus"/{decode_record,read_input,policy_parse,iam_parse,rules_parse}

# decode_record: one byte choosing the format, then one record.
python3 - "$shared" "$corpus" <<'PY'
import json, os, sys, zipfile
shared, corpus = sys.argv[1], sys.argv[2]
picks = {"AWS.CloudTrail": 0, "Amazon.EKS.Audit": 1, "GitHub.Audit": 2}
for name, pick in picks.items():
    path = os.path.join(shared, "rule_tests", f"panther_rule_tests.{name}.jsonl")
    if not os.path.exists(path):
        continue
    for i, line in enumerate(open(path)):
        if i >= 60:
            break
        log = json.loads(line)["log"]
        with open(os.path.join(corpus, "decode_record", f"{pick}-{name}-{i}"), "wb") as f:
            f.write(bytes([pick]) + json.dumps(log).encode())
agent = os.path.join(shared, "agent_traces", "agentdojo-gpt-4o-mini-2024-07-18.jsonl")
if os.path.exists(agent):
    for i, line in enumerate(open(agent)):
        if i >= 20:
            break
        with open(os.path.join(corpus, "decode_record", f"4-agent-{i}"), "wb") as f:
            f.write(bytes([4]) + line.encode())
k8s = os.path.join(shared, "k8s_audit")
if os.path.isdir(k8s):
    for name in sorted(os.listdir(k8s)):
        if name.endswith(".json"):
            data = open(os.path.join(k8s, name), "rb").read()
            open(os.path.join(corpus, "decode_record", f"1-{name}"), "wb").write(b"\x01" + data)
            open(os.path.join(corpus, "read_input", name), "wb").write(data)
z = os.path.join(shared, "cloudtrail", "ec2_proxy_s3_exfiltration.zip")
if os.path.exists(z):
    open(os.path.join(corpus, "read_input", "otrf.zip"), "wb").write(open(z, "rb").read())
    with zipfile.ZipFile(z) as archive:
        for member in archive.namelist():
            lines = archive.read(member).splitlines()[:30]
            open(os.path.join(corpus, "read_input", "otrf-lines.json"), "wb").write(b"\n".join(lines))
            for i, line in enumerate(lines):
                open(os.path.join(corpus, "decode_record", f"0-otrf-{i}"), "wb").write(b"\x00" + line)
            break
PY
printf 'identities:\n  - match: "arn:aws:iam::*:role/ci-*"\n    kind: role\n    allow:\n      - action: "ecr:*"\n    workflow:\n      steps: "sts:GetCallerIdentity ecr:*+ ecs:UpdateService?"\n      window: 30m\n    hours: "Mon-Fri 05:00-21:00 UTC"\n    sensitive: ["secretsmanager:*", {resource: "arn:aws:s3:::payroll/*"}]\n    decision: {high: block}\n  - match: "agent/*"\n    tools:\n      - name: read_file\n        paths: ["/workspace/**"]\n' > "$corpus/policy_parse/seed.yaml"
printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*"],"Resource":"arn:aws:s3:::b/*"},{"Effect":"Deny","NotAction":"iam:*","NotResource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}' > "$corpus/iam_parse/seed.json"

find crates/rules/rules -name '*.yml' ! -name '*.tests.yml' -exec cp -f {} "$corpus/rules_parse/" \;

status=0
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  if ! cargo fuzz run --fuzz-dir fuzz -s none "$target" "$corpus/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
      | grep -E "stat::number_of_executed_units|Done|ERROR|panicked|SUMMARY|crash-" ; then
    :
  fi
  if ls fuzz/artifacts/"$target"/crash-* >/dev/null 2>&1; then
    echo "fuzz target $target crashed; see fuzz/artifacts/$target" >&2
    status=1
  fi
done
exit $status
