#!/usr/bin/env bash
# The demo: an embedded Temporal server, a worker, a watched git repository, and a 3-member etcd
# cluster on real Debian machines booted on this host, scaled to 5 by a commit. Runs until Ctrl-C,
# then stops what it started and deletes the machines. Needs root (systemd-nspawn).
set -euo pipefail
DEMO=${DEMO_DIR:-$PWD/.state/demo}
rm -rf "$DEMO" && mkdir -p "$DEMO"
export ORBITER_STATE_DIR="$DEMO/state"
export ORBITER_MASTERKEY_FILE="$DEMO/masterkey"
# The Debian base image for machines is built once (about a minute) and kept between demos.
export ORBITER_IMAGE_CACHE=${ORBITER_IMAGE_CACHE:-$HOME/.local/state/orbiter/images}
head -c 32 /dev/urandom | base64 > "$ORBITER_MASTERKEY_FILE"
export TEMPORAL_ADDRESS=127.0.0.1:7233
GIT=(git -c user.name=operator -c user.email=op@example.org)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_phase() {  # wait_phase PHASE NODES: until the cluster reports it, printing progress
  local last=""
  for _ in $(seq 900); do
    line=$(orbiter status meta -o json 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)["clusters"][0]
ready = sum(n["ready"] for n in c["nodes"])
print(c["phase"], ready, len(c["nodes"]), c["error"] or "")' 2>/dev/null || true)
    [ "$line" != "$last" ] && [ -n "$line" ] && echo "  meta: $line" && last=$line
    case "$line" in "$1 $2 $2"*) return 0;; Blocked*) return 1;; esac
    sleep 1
  done
  return 1
}

step "a repository: orbiter init, pushed to a bare remote"
git init -q --bare -b main "$DEMO/remote.git"
orbiter init "$DEMO/work"
cd "$DEMO/work"
git add -A && "${GIT[@]}" commit -qm "day one: a 3-member etcd cluster"
git remote add origin "$DEMO/remote.git" && git push -q origin main
sed -n '/clusters:/,$p' desired.yml

step "orbiter up: server, worker and takeoff in one process (log: $DEMO/up.log)"
orbiter up --repo "$DEMO/remote.git" --db "$DEMO/temporal.db" > "$DEMO/up.log" 2>&1 &
UP=$!
stop() {
  trap - EXIT INT TERM
  set +e
  printf '\n\033[1m== stopping\033[0m\n'
  kill -TERM "$UP" 2>/dev/null
  for _ in $(seq 60); do kill -0 "$UP" 2>/dev/null || break; sleep 0.5; done
  orbiter machines rm --all
  echo "stopped"
  exit 0
}
trap stop EXIT INT TERM
for _ in $(seq 120); do orbiter status >/dev/null 2>&1 && break; sleep 0.5; done

step "bootstrap: machines, packages, certificates, etcd (first run builds the base image)"
wait_phase Ready 3
orbiter status
orbiter machines ls

step "scale to 5 members: a commit, and a poke so it applies at once"
git pull -q --rebase origin main
sed -i 's/nodes: 3}/nodes: 5}/' desired.yml
"${GIT[@]}" commit -qam "scale meta to 5 members" && git push -q origin main
orbiter poke
wait_phase Ready 5
orbiter status

step "an invalid push is rejected with file, line and field; the previous desired state stays"
git pull -q --rebase origin main
sed -i 's/nodes: 5}/nodes: 12}/' desired.yml
"${GIT[@]}" commit -qam "too many members" && git push -q origin main
orbiter poke
sleep 3
orbiter status
git pull -q --rebase origin main && git log --format='%h %an: %s' -8

cat <<TXT

The client bundle for etcdctl:  ORBITER_MASTERKEY_FILE=$ORBITER_MASTERKEY_FILE orbiter secret read meta_etcd_client --repo-dir $DEMO/work
Web UI: http://localhost:8233 (workflows gitops/..., cluster/lab/meta, node/lab/meta/...)
Ctrl-C stops the demo and deletes its machines.
TXT
wait "$UP"
