"""Issue 16, the chaos soak in short: a few pushes to two etcd clusters of one orb while workers
are SIGKILLed, the server is SIGKILLed and restarted, a machine is cut off the network and etcd
is restarted on a member; a client loop writes keys the whole time. The engine is the one
bench/soak.py runs for long (tests/support/soak.py); this asserts its checks.

What users rely on: every cluster Ready at the last pushed commit with exactly its members
started and healthy, every write etcd acknowledged still there, no member added or removed twice,
no write-back commit and no user commit lost from the repository."""

import pytest

from ..conftest import GitRepo
from ..support.net import subnet
from ..support.soak import CHAOS, Soak, SoakConfig

pytestmark = [pytest.mark.machines, pytest.mark.slow]

CONFIG = SoakConfig(sizes={"alpha": 1, "beta": 1}, pushes=6, seed=16, subnet=subnet(99),
                    chaos_every=(4.0, 8.0), cut_for=(4.0, 8.0), chaos_rounds=2)


async def test_short_soak(orbiter_env, repo: GitRepo, local_provider, tmp_path):
    report = await Soak(CONFIG, repo, tmp_path).run()
    print(report.text())
    assert report.ok, report.text()
    counts = report.counts()
    assert all(counts[kind] >= 2 for kind in CHAOS), counts
    assert not any(what.startswith("not injected") for _, _, what in report.injected), report.injected
