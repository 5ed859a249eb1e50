"""What the OS update listing adds to a converged machine's observe round (agent/osupdates.py).

    sudo .venv/bin/python bench/observe_round.py --rounds 30 --subnet 10.76.0.0/24

Boots one local machine with the served repo as its apt source (as orbiter's machines have it),
then runs the node agent's observe script over one SSH session, interleaving the real script with
one whose `obs_os` does nothing, and prints the median wall time of each and of the remote shell's
CPU (user+sys of the script, from `times`). The first listing fills the cache and is left out.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.ssh import connect, generate_ed25519
from orbiter.agent import observe
from orbiter.agent.osupdates import FUNCTION
from orbiter.models.nodespec import AptSource, NodeSpec

NOOP = "obs_os() { :; }\n"
CPU = "times\n"  # last line: the user and system time of the processes it ran, `0m0.012s 0m0.008s`


def _cpu(line: str) -> float:
    return sum(float(part.rstrip("s").split("m")[0]) * 60 + float(part.rstrip("s").split("m")[1])
               for part in line.split()[:2])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--subnet", default="10.76.0.0/24")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="observe-bench-"))
    machines = LocalMachines("obsbench", args.subnet, state=state)
    repo = AptRepo(machines)
    try:
        machines.ensure_network()
        repo.ensure_packages([("etcd-client", None)])
        repo.ensure_served()
        private, public = generate_ed25519()
        [machine] = machines.create("bench", ["obsbench-1"], public, "bench")
        spec = NodeSpec(hostname="obsbench-1", apt_sources=[AptSource(name="orbiter", line=repo.source_line())])
        script = observe.observe_script(spec)
        with connect(machine, private) as session:
            session.run("echo '" + repo.source_line() + "' > /etc/apt/sources.list.d/orbiter-orbiter.list;"
                        " apt-get update -qq", check=True)
            session.run("sh -s", stdin=script.encode(), check=True)  # fills the listing's cache
            walls: dict[str, list[float]] = {"with listing": [], "without": []}
            cpus: dict[str, list[float]] = {"with listing": [], "without": []}
            for _ in range(args.rounds):
                for name, text in (("with listing", script), ("without", script.replace(FUNCTION, NOOP))):
                    start = time.perf_counter()
                    out = session.run("sh -s", stdin=(text + CPU).encode(), check=True)
                    walls[name].append(time.perf_counter() - start)
                    cpus[name].append(_cpu(out.stdout.strip().splitlines()[-1]))
        for name in walls:
            print(f"{name:13} median wall {statistics.median(walls[name]) * 1000:6.1f} ms,"
                  f" remote cpu {statistics.median(cpus[name]) * 1000:5.1f} ms ({args.rounds} rounds)")
    finally:
        for m in machines.list_status():
            machines.delete(m["id"])
        repo.stop()
        machines.destroy_network()


if __name__ == "__main__":
    main()
