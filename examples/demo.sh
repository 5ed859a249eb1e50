#!/usr/bin/env bash
# The demo: an embedded Temporal server, a worker, a watched git repository, and a 3-member etcd
# cluster on real Debian machines booted on this host, scaled to 5 by a commit, then an invalid
# push rejected. Needs root (systemd-nspawn).
#
# Interactive (default): runs until Ctrl-C, then stops what it started and deletes the machines.
# ORBITER_DEMO_ONCE=1: runs every step, cleans up and exits 0; a failed step exits non-zero and
# names the step. CI runs it that way with an empty image cache.
set -euo pipefail
ONCE=${ORBITER_DEMO_ONCE:-}
DEMO=${DEMO_DIR:-$PWD/.state/demo}
export ORBITER_STATE_DIR="$DEMO/state"
export ORBITER_MASTERKEY_FILE="$DEMO/masterkey"
# The Debian base image for machines is built on first need (about a minute) and kept between demos.
export ORBITER_IMAGE_CACHE=${ORBITER_IMAGE_CACHE:-$HOME/.local/state/orbiter/images}
export TEMPORAL_ADDRESS=127.0.0.1:${ORBITER_DEMO_PORT:-7233}
GIT=(git -c user.name=operator -c user.email=op@example.org)
STEP="set-up"
UP=""
FINISHED=""

step() { STEP="$*"; printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

stop() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "$FINISHED" ] && [ "$rc" = 130 ] && rc=0  # the interactive demo ends with Ctrl-C
  printf '\n\033[1m== stopping\033[0m\n'
  if [ -n "$UP" ]; then
    kill -TERM "$UP" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$UP" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$UP" 2>/dev/null && kill -KILL "$UP" 2>/dev/null
  fi
  orbiter machines rm --all
  left=$(orbiter machines ls -o json 2>/dev/null | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
  if [ "${left:-0}" != 0 ]; then
    echo "error: $left machine(s) left behind: see \`ORBITER_STATE_DIR=$ORBITER_STATE_DIR orbiter machines ls\`" >&2
    [ "$rc" = 0 ] && rc=1
  fi
  if [ "$rc" != 0 ]; then
    echo "error: the demo failed at step \"$STEP\" (exit $rc); orbiter's log: $DEMO/up.log" >&2
    [ -f "$DEMO/up.log" ] && tail -n 15 "$DEMO/up.log" | sed 's/^/  | /' >&2
  else
    echo "stopped; nothing left running"
  fi
  exit "$rc"
}

# A demo that was killed hard may have left machines running: delete them before starting anew.
if [ -d "$ORBITER_STATE_DIR/local" ]; then
  orbiter machines rm --all >/dev/null || fail "machines of an earlier demo in $ORBITER_STATE_DIR could not be deleted"
fi
python3 - "$TEMPORAL_ADDRESS" <<'EOF' || fail "something already listens on $TEMPORAL_ADDRESS (another orbiter server?): stop it, or run the demo on another port with ORBITER_DEMO_PORT=7243"
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
try:
    socket.create_connection((host, int(port)), timeout=0.3).close()
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
rm -rf "$DEMO" && mkdir -p "$DEMO"
head -c 32 /dev/urandom | base64 > "$ORBITER_MASTERKEY_FILE"

cluster_line() {  # "PHASE READY TOTAL COMMIT|step / progress / error" of cluster meta
  orbiter status meta -o json 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)["clusters"][0]
ready = sum(n["ready"] for n in c["nodes"])
doing = c["error"] or " - ".join(p for p in (c["step"], c["progress"]) if p)
print(c["phase"], ready, len(c["nodes"]), (c["commit"] or "-")[:12], doing, sep="|")' 2>/dev/null || true
}

wait_phase() {  # wait_phase PHASE NODES COMMIT: until cluster meta has applied COMMIT, printing what it does
  local last="" line phase ready total commit doing
  for _ in $(seq 1200); do
    line=$(cluster_line)
    if [ -n "$line" ] && [ "$line" != "$last" ]; then
      IFS='|' read -r phase ready total commit doing <<<"$line"
      echo "  meta: $phase, $ready/$total ready${doing:+, $doing}"
      last=$line
      case "$phase" in Blocked) fail "cluster meta is Blocked: $doing";; esac
      [ "$phase" = "$1" ] && [ "$ready" = "$2" ] && [ "$total" = "$2" ] && [ "$commit" = "${3:0:12}" ] && return 0
    fi
    sleep 1
  done
  fail "cluster meta did not reach $1 with $2 members within 20 minutes"
}

step "a repository: orbiter init, pushed to a bare remote"
git init -q --bare -b main "$DEMO/remote.git"
orbiter init --name lab "$DEMO/work"
cd "$DEMO/work"
git add -A && "${GIT[@]}" commit -qm "day one: a 3-member etcd cluster"
git remote add origin "$DEMO/remote.git" && git push -q origin main
sed -n '/clusters:/,$p' desired.yml

step "orbiter up: server, worker and takeoff in one process (log: $DEMO/up.log)"
trap stop EXIT
trap 'exit 130' INT TERM
orbiter up --repo "$DEMO/remote.git" --db "$DEMO/temporal.db" > "$DEMO/up.log" 2>&1 &
UP=$!
for _ in $(seq 120); do
  orbiter status >/dev/null 2>&1 && break
  kill -0 "$UP" 2>/dev/null || fail "orbiter up exited: $(tail -n 1 "$DEMO/up.log")"
  sleep 0.5
done
orbiter status >/dev/null || fail "orbiter up did not start watching the repository within a minute"

step "bootstrap: packages, machines, certificates, etcd (the first run on a host also builds the base image)"
wait_phase Ready 3 "$(git rev-parse HEAD)"
orbiter status
orbiter machines ls

step "scale to 5 members: a commit, and a poke so it applies at once"
git pull -q --rebase origin main
sed -i 's/nodes: 3}/nodes: 5}/' desired.yml
"${GIT[@]}" commit -qam "scale meta to 5 members" && git push -q origin main
orbiter poke
wait_phase Ready 5 "$(git rev-parse HEAD)"
orbiter status

step "an invalid push is rejected with file, line and field; the previous desired state stays"
git pull -q --rebase origin main
sed -i 's/nodes: 5}/nodes: 12}/' desired.yml
"${GIT[@]}" commit -qam "too many members" && git push -q origin main
BAD=$(git rev-parse HEAD)
orbiter poke
for _ in $(seq 60); do
  rejected=$(orbiter status -o json | python3 -c 'import json, sys; r = json.load(sys.stdin)["rejected"]; print(r and r["commit"] or "")')
  [ "$rejected" = "$BAD" ] && break
  sleep 1
done
[ "$rejected" = "$BAD" ] || fail "the invalid commit ${BAD:0:12} was not rejected within a minute"
orbiter status
orbiter status meta -o json | python3 -c '
import json, sys
c = json.load(sys.stdin)["clusters"][0]
assert c["phase"] == "Ready" and len(c["nodes"]) == 5, c' || fail "cluster meta did not stay Ready with 5 members"
git pull -q --rebase origin main && git log --format='%h %s  (%an)' -8

cat <<TXT

The client bundle for etcdctl:  ORBITER_MASTERKEY_FILE=$ORBITER_MASTERKEY_FILE orbiter secret read meta_etcd_client --repo-dir $DEMO/work
Web UI: http://localhost:8233 (workflows gitops/..., cluster/lab/meta, node/lab/meta/...)
TXT
FINISHED=1
step "done"
if [ -n "$ONCE" ]; then
  exit 0
fi
echo "Ctrl-C stops the demo and deletes its machines."
STEP="running until Ctrl-C"
wait "$UP" || true
fail "orbiter up exited on its own: $(tail -n 1 "$DEMO/up.log")"
