"""Every `workflow.patched` id orbiter's workflows use, with why it exists and when it may go.

orbiter 0.2 is a fresh baseline: the patches of 0.1 went with their old paths (operators moving
from 0.1 terminate their workflows and take off again; see the README). A change to a workflow
that running histories would not replay goes behind `workflow.patched(ID)` with ID listed here;
the replay tests fail on an id that is not. A patch's life (samples-python's `patching/`): added
with both paths, then `workflow.deprecate_patch(ID)` with only the new path once no workflow that
started before it can still be running, then removed.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Patch:
    id: str
    why: str
    added_in: str  # the orbiter version that added it
    removable_after: str  # when no history that needs the old path can be running any more


PATCHES: tuple[Patch, ...] = (
    Patch(id="etcd-space-watch",
          why="a Ready etcd cluster looks for alarms (NOSPACE) every driftInterval on a timer; histories"
              " recorded before it rest without one",
          added_in="0.2 (issue 13, etcd day two)",
          removable_after="the etcd histories in tests/workflows/histories/ are re-recorded with it"),
)
