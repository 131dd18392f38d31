#!/bin/sh
# System calls per request of each user-space balancer: runs `l4lb bench` on one workload
# (WORKLOAD, default keep: kept connections; connect: a new connection per request) only
# (one round, bounded by --duration) and attaches
# `strace -c -f` to each balancer process as soon as it starts; the per-request figure
# is strace's call count over the requests bench.json reports for that path.
# strace slows every balancer alike, so compare counts per request, not rates.
# With TOOL=perf, `perf stat` counts instead (software events and syscall tracepoints,
# which barely slow the process): context switches (a sleep and wake-up each),
# epoll_wait, recvfrom and the task clock per request, at full speed.
# Usage (root): [TOOL=perf] [WORKLOAD=keep|connect] scripts/bench-syscalls.sh [L4LB_BINARY] [OUT_DIR] [PATHS]
set -eu
L4LB=${1:-target/release/l4lb}
OUT=${2:-target/l4lb-syscalls}
PATHS=${3:-nginx,haproxy-lc,proxy}
TOOL=${TOOL:-strace}
WORKLOAD=${WORKLOAD:-keep}
EVENTS=task-clock,context-switches,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom
mkdir -p "$OUT"
rm -f "$OUT"/*.strace "$OUT"/*.perf
"$L4LB" bench --paths "$PATHS" --workloads "$WORKLOAD" --rounds 1 --duration 3s \
    --no-progress --out "$OUT" >"$OUT/bench.log" 2>&1 &
BENCH=$!
seen=""
while kill -0 "$BENCH" 2>/dev/null; do
    # Only this run's balancers: the peers' configurations lie in its work directory.
    for pid in $(pgrep -f "l4lb-$BENCH-0-bench/" || true; pgrep -f "^$L4LB proxy" || true); do
        case " $seen " in *" $pid "*) continue ;; esac
        seen="$seen $pid"
        name=$(cat /proc/"$pid"/comm 2>/dev/null) || continue
        if [ "$TOOL" = perf ]; then
            perf stat -x, -e "$EVENTS" -p "$pid" -o "$OUT/$pid.$name.perf" 2>>"$OUT/perf.log" &
        else
            strace -c -f -p "$pid" -o "$OUT/$pid.$name.strace" 2>>"$OUT/strace.log" &
        fi
    done
    sleep 0.02
done
wait "$BENCH" || true
sleep 1
python3 - "$OUT" "$WORKLOAD" <<'PY'
import json, sys, glob, re
out, workload = sys.argv[1], sys.argv[2]
report = json.load(open(f"{out}/bench.json"))
reqs = {p["path"]: p["requests"] for p in report["paths"]}
what = "kept requests" if workload == "keep" else "connections"
names = {"nginx": "nginx", "haproxy": "haproxy-lc", "l4lb": "proxy"}
for f in sorted(glob.glob(f"{out}/*.perf")):
    path = next((v for k, v in names.items() if k in f.split("/")[-1].split(".")[1]), None)
    if path is None or not reqs.get(path):
        continue
    n = reqs[path]
    print(f"{path}: {n} {what}, per request:")
    for line in open(f):
        cols = line.strip().split(",")
        if len(cols) > 2 and cols[0].replace(".", "").isdigit():
            unit = " ms" if cols[1] == "msec" else ""
            print(f"    {cols[2]:34} {float(cols[0]) / n:8.3f}{unit}")
for f in sorted(glob.glob(f"{out}/*.strace")):
    text = open(f).read()
    path = next((v for k, v in names.items() if k in f.split("/")[-1].split(".")[1]), None)
    if path is None or not reqs.get(path):
        continue
    n = reqs[path]
    calls = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$", line)
        if m:
            calls[m.group(3)] = (int(m.group(1)), int(m.group(2) or 0))
    total = calls.pop("total", (0, 0))
    print(f"{path}: {n} {what}, {total[0] / n:.2f} system calls per request")
    for name, (c, e) in sorted(calls.items(), key=lambda kv: -kv[1][0])[:8]:
        print(f"    {name:16} {c / n:6.2f}/req" + (f" ({e} failed in all)" if e else ""))
PY
