"""The chaos soak: a long series of pushes to two etcd clusters while workers, the server, the
network and etcd are hit at random; then checks that nothing was lost or repeated.

    sudo .venv/bin/python bench/soak.py [--pushes 30] [--minutes 20] [--seed 1] [--sizes 2 1]

One orb with two etcd clusters (alpha, beta) on local machines (systemd-nspawn), an embedded
Temporal server and --workers `orbiter worker` processes, all the soak's own (a throwaway state
dir, repository and master key). Pushes come in a seeded random order, in rounds of scale up,
scale down, a flag roll (etcd's heartbeat interval) and a no-op (a comment); each waits until
both clusters are Ready at it, except a share (--overlap) that the next push follows at once.
Meanwhile a chaos loop, every --chaos-every seconds (drawn uniformly), injects one of: a worker
SIGKILLed and a new one started; the server SIGKILLed and started again on its database; a
machine's host-side veth down for --cut-for seconds; `systemctl restart etcd` on a member. A
client loop per cluster writes numbered keys through its members and records each
acknowledged one.

At the end: both clusters Ready at the last commit, etcd's started members = the machines, all
endpoints healthy, every acknowledged key present with its value, no `member add` / `member
remove` of one member twice in a row in the cluster histories, every write-back commit the
GitOps workflow made (its `write_back` results) an ancestor of the remote's main, every pushed
commit too. It prints the pushes, the injections (counts and a timeline), the writes and the
checks, and exits 1 when a check fails. Needs root; everything it starts is removed at the end.
The engine is tests/support/soak.py; tests/machines/test_soak.py runs it in short.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orbiter.activities.providers.local import state_dir  # noqa: E402
from tests.conftest import MASTER_KEY, GitRepo  # noqa: E402
from tests.support.soak import Soak, SoakConfig  # noqa: E402


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pushes", type=int, default=30, help="pushes at least (default 30)")
    ap.add_argument("--minutes", type=float, default=0, help="keep pushing for at least this long (default 0)")
    ap.add_argument("--seed", type=int, default=1, help="seeds the pushes and the chaos (default 1)")
    ap.add_argument("--sizes", type=int, nargs=2, default=[2, 1], metavar=("ALPHA", "BETA"),
                    help="the clusters' first sizes (default 2 1)")
    ap.add_argument("--max-size", type=int, default=3, help="scale-ups stop there (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="orbiter worker processes (default 2)")
    ap.add_argument("--chaos-every", type=float, nargs=2, default=[8, 20], metavar=("MIN", "MAX"),
                    help="seconds between injections (default 8 20)")
    ap.add_argument("--cut-for", type=float, nargs=2, default=[5, 15], metavar=("MIN", "MAX"),
                    help="seconds a machine stays cut off (default 5 15)")
    ap.add_argument("--overlap", type=float, default=0.25,
                    help="share of pushes the next one follows before they settled (default 0.25)")
    ap.add_argument("--subnet", default="10.100.0.0/24", help="the machines' network (default 10.100.0.0/24)")
    ap.add_argument("--out", help="also write the report as JSON here")
    return ap.parse_args()


def main() -> int:
    args = parse()
    if os.geteuid() != 0:
        print("error: bench/soak.py boots systemd-nspawn machines: run it as root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a stopped run still removes its machines
    os.environ.setdefault("ORBITER_IMAGE_CACHE", str(state_dir() / "images"))  # before the state dir moves
    root = Path(tempfile.mkdtemp(prefix="orbiter-soak-"))
    (root / "masterkey").write_bytes(MASTER_KEY)
    os.environ.update(ORBITER_STATE_DIR=str(root / "state"), ORBITER_MASTERKEY_FILE=str(root / "masterkey"))
    config = SoakConfig(sizes={"alpha": args.sizes[0], "beta": args.sizes[1]}, pushes=args.pushes, seed=args.seed,
                        subnet=args.subnet, max_size=args.max_size, workers=args.workers,
                        chaos_every=tuple(args.chaos_every), cut_for=tuple(args.cut_for),
                        duration=args.minutes * 60 or None, overlap=args.overlap)
    started = time.strftime("%Y-%m-%d %H:%M")
    report = asyncio.run(Soak(config, GitRepo(root), root, log=lambda m: print(m, flush=True)).run())
    print(f"\nthe soak of {started} (logs in {root})")
    print(report.text())
    if args.out:
        Path(args.out).write_text(json.dumps({
            "seed": report.seed, "seconds": report.seconds, "pushes": report.pushes, "injected": report.injected,
            "operator": report.operator, "writes": report.writes,
            "checks": [c.__dict__ for c in report.checks], "ok": report.ok}, indent=1))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
