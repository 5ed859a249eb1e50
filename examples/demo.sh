#!/usr/bin/env bash
# The demo: an embedded Temporal server, a worker, a watched git repository, pushes reconciled.
# Leaves everything running until Ctrl-C, then stops what it started.
set -euo pipefail
DEMO=${DEMO_DIR:-$PWD/.state/demo}
rm -rf "$DEMO" && mkdir -p "$DEMO"
export ORBITER_STATE_DIR="$DEMO/state"
export ORBITER_MASTERKEY_FILE="$DEMO/masterkey"
head -c 32 /dev/urandom | base64 > "$ORBITER_MASTERKEY_FILE"
export TEMPORAL_ADDRESS=127.0.0.1:7233

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
git config --global init.defaultBranch main >/dev/null 2>&1 || true

step "a repository: orbiter init, pushed to a bare remote"
git init -q --bare -b main "$DEMO/remote.git"
orbiter init "$DEMO/work"
cd "$DEMO/work"
git add -A && git -c user.name=operator -c user.email=op@example.org commit -qm "day one"
git remote add origin "$DEMO/remote.git" && git push -q origin main

step "orbiter up: server, worker and takeoff in one process"
orbiter up --repo "$DEMO/remote.git" --db "$DEMO/temporal.db" > "$DEMO/up.log" 2>&1 &
UP=$!
stop() {
  trap - EXIT INT TERM
  set +e
  kill -TERM "$UP" 2>/dev/null
  for _ in $(seq 60); do kill -0 "$UP" 2>/dev/null || break; sleep 0.5; done
  echo "stopped"
  exit 0
}
trap stop EXIT INT TERM
for _ in $(seq 60); do orbiter status >/dev/null 2>&1 && break; sleep 0.5; done
sleep 3
orbiter status

step "an invalid push is rejected with file, line and field; the previous desired state stays"
git pull -q --rebase origin main
sed -i 's/nodes: 3}/nodes: 12}/' desired.yml
git -c user.name=operator -c user.email=op@example.org commit -qam "too many members" && git push -q origin main
orbiter poke
sleep 3
orbiter status
git pull -q --rebase origin main && git log --format='%h %an: %s' -5

echo
echo "Web UI: http://localhost:8233 (workflows gitops/..., cluster/lab/meta); progress in $DEMO/up.log"
echo "Ctrl-C stops the demo."
wait $UP
