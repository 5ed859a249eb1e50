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
    Patch(
        id="update-check",
        why="ClusterWorkflow waits for its next commit with a timer for the periodic update check (version"
            " and OS update policies); histories recorded before it waited without one",
        added_in="0.2.x (update policies, issue 15)",
        removable_after="every cluster workflow started before it has continued as new on a worker that has it (one"
                        " reconcile or a continue-as-new suggestion after the upgrade); then deprecate_patch",
    ),
    Patch(
        id="etcd-space-watch",
        why="a Ready etcd cluster looks for alarms (NOSPACE) and unhealthy members every driftInterval on a"
            " timer; histories recorded before it rested without one",
        added_in="0.2.x (etcd day two, issue 13)",
        removable_after="every etcd cluster workflow started before it has continued as new on a worker that has it;"
                        " then deprecate_patch",
    ),
    Patch(
        id="quiet-drift",
        why="NodeAgentWorkflow sends no node_report after a drift round that changed nothing and saw what its last"
            " report said; histories recorded before it signal the parent after every round",
        added_in="0.2.x (scale, issue 16)",
        removable_after="every node agent started before it has continued as new on a worker that has it (at most"
                        " 200 rounds after the upgrade); then deprecate_patch",
    ),
    Patch(
        id="history-bound",
        why="entity workflows continue as new at 8,000 events or 4 MiB (workflows/history.py), also while a cluster"
            " waits for work; histories recorded before it continued only when the server suggested it, between"
            " reconciles",
        added_in="0.2.x (scale, issue 16)",
        removable_after="every workflow started before it has continued as new on a worker that has it; then"
                        " deprecate_patch",
    ),
)
