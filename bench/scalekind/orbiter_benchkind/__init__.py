"""`benchfile`: a cluster kind for benchmarks only, outside orbiter, found through the
`orbiter.kinds` entry point (bench/scale.py puts it on the worker's path).

Each member is one file on its machine and nothing else: no package, no unit, no kind
activity. What a benchmark of this kind measures is orbiter's own cost per node agent (the
workflows, the node agent's one SSH round trip, the write-back), not a database's.
"""

from orbiter.models.kinds.base import Kind, Leftovers

from .spec import BenchCluster, BenchMember, BenchState

KIND = Kind(
    name="benchfile",
    spec=BenchCluster,
    state=BenchState,
    member=BenchMember,
    leaves=Leftovers(),
    runbook="orbiter_benchkind.runbook:BenchRunbook",
    activities="orbiter_benchkind:ACTIVITIES",
)

ACTIVITIES: list = []  # the node agent's converge_node does all the work on the machines
