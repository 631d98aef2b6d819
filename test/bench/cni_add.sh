#!/usr/bin/env bash
# cni_add.sh — ambit-cni ADD latency over N pods (default 200), as root.
#
# Each pod is a fresh network namespace (lo up, as the runtime leaves it). ambit-cni is exec'd
# exactly as a runtime does (CNI_* env + config with prevResult on stdin) for an ambient pod.
# The plugin logs per-phase timings (kube_us, adopt_us, rules_us, total_us); the figure asked
# for is ADD minus the API-server lookup = adoption + rules (+ config parsing, netns open,
# state file), i.e. total_us - kube_us. Also reported: the rules alone, and the wall time of
# the whole exec (process start to exit) for orientation.
#
# Peers: the node agent is the real ambit-node when built (adoption = opening its 15001/15006/
# 15008 listeners inside the pod netns); CNI_FAKE_AGENT=1 uses the TEST RESPONDER instead. The
# API server is always the TEST RESPONDER in test/netns/cni_responder.py (python).
#
# Writes build/bench/cni.json and prints a markdown table (docs/benchmarks.md carries it).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/testlib.sh"
. "$HERE/../netns/cni_lib.bash"

N=${N:-200}
OUT_JSON="$CNI_ROOT/${BUILD:-build}/bench/cni.json"
[ "$(id -u)" = 0 ] || { echo "cni_add.sh: needs root"; exit 1; }
[ -x "$CNI_BIN" ] || { echo "cni_add.sh: build ambit-cni first (make all)"; exit 1; }

cni_setup
trap cni_cleanup EXIT
cni_start_api || exit 1
cni_start_agent || exit 1
cni_fixture_ns amb-bench ambient

conf() { # $1 = pod index
    cat <<EOF
{"cniVersion":"1.0.0","name":"amb-cni-bench","type":"ambit-cni",
 "agent_socket":"$CNI_SOCK","run_dir":"$CNI_RUN","kubeconfig":"$CNI_DIR/kubeconfig",
 "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],
   "ips":[{"address":"10.252.$(($1 / 250)).$(($1 % 250 + 2))/16","interface":0}]}}
EOF
}

echo "creating $N pod netns..."
for i in $(seq 1 "$N"); do
    ns="amb-cni-$CNI_TAG-b$i"
    ip netns add "$ns" && ip -n "$ns" link set lo up || exit 1
    cni_fixture_pod amb-bench "p$i" "uid-bench-$i"
done

wall=()
fails=0
for i in $(seq 1 "$N"); do
    conf "$i" >"$CNI_DIR/b.in"
    t0=$(date +%s%N)
    env -i CNI_COMMAND=ADD CNI_CONTAINERID="bench-$i" CNI_NETNS="/var/run/netns/amb-cni-$CNI_TAG-b$i" \
        CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_NAMESPACE=amb-bench;K8S_POD_NAME=p$i" \
        "$CNI_BIN" <"$CNI_DIR/b.in" >/dev/null || fails=$((fails + 1))
    t1=$(date +%s%N)
    wall+=($(((t1 - t0) / 1000)))
done
captured=$(grep -c 'msg="pod captured"' "$CNI_RUN/ambit-cni.log")
echo "ADD: $N runs, $fails failed, $captured captured"

printf '%s\n' "${wall[@]}" >"$CNI_DIR/wall.txt"
grep 'msg="pod captured"' "$CNI_RUN/ambit-cni.log" >"$CNI_DIR/captured.log"
mkdir -p "$(dirname "$OUT_JSON")"
CNI_PEERS="node agent: $CNI_AGENT_RUNNING; API server: test responder" \
    python3 - "$CNI_DIR/captured.log" "$CNI_DIR/wall.txt" "$OUT_JSON" "$N" "$fails" <<'EOF'
import json, os, re, sys
log, wallf, out, n, fails = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = []
for line in open(log):
    f = dict(re.findall(r'(\w+)=(\d+)', line))
    if "total_us" in f:
        rows.append({k: int(v) for k, v in f.items() if k.endswith("_us")})
wall = [int(x) for x in open(wallf) if x.strip()]

def pct(v, p):
    v = sorted(v)
    if not v:
        return None
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]

def stats(v):
    return {"p50_ms": round(pct(v, 50) / 1000.0, 3), "p99_ms": round(pct(v, 99) / 1000.0, 3),
            "max_ms": round(max(v) / 1000.0, 3)} if v else None

res = {
    "benchmark": "cni_add",
    "pods": n,
    "failed": fails,
    "captured": len(rows),
    "peers": os.environ.get("CNI_PEERS", "?"),
    "add_excluding_api_lookup": stats([r["total_us"] - r["kube_us"] for r in rows]),
    "agent_adoption": stats([r["adopt_us"] for r in rows]),
    "rules": stats([r["rules_us"] for r in rows]),
    "api_lookup": stats([r["kube_us"] for r in rows]),
    "exec_wall": stats(wall),
    "target_p99_ms": 10,
}
json.dump(res, open(out, "w"), indent=2)
print(json.dumps(res, indent=2))
print()
print("| ADD phase (%d pods) | p50 | p99 | max |" % n)
print("|---|---|---|---|")
for k, label in [("add_excluding_api_lookup", "ADD excl. API lookup (adoption + rules)"),
                 ("agent_adoption", "agent adoption round trip"), ("rules", "rules (nft batch + ip rule/route)"),
                 ("api_lookup", "API lookup (not counted)"), ("exec_wall", "whole exec, wall clock")]:
    s = res[k]
    if s:
        print("| %s | %.2f ms | %.2f ms | %.2f ms |" % (label, s["p50_ms"], s["p99_ms"], s["max_ms"]))
EOF
rc=$?
[ "$fails" -eq 0 ] && [ "$captured" -eq "$N" ] && [ $rc -eq 0 ]
