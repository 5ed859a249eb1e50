"""The size a workflow's history may reach before the workflow continues as new.

Temporal warns at 10 MB or 10,240 events and terminates a workflow at 50 MB or 51,200 events;
a workflow that replays a long history also costs its worker that much on every cache miss. An
entity workflow that runs for months (a cluster, a node agent, the GitOps loop) therefore
continues as new well before either: at HISTORY_EVENTS events or HISTORY_BYTES bytes, or when
the server suggests it, whichever comes first. The state it carries is small (its input).

Behind patch `history-bound` (workflows/patches.py): a history from before it continued as new
only when the server suggested it between reconciles, and never while it waited for work, so it
must replay that way. Each run calls `bound()` first, at a point where a patch marker may go.
"""

from temporalio import workflow

HISTORY_EVENTS = 8_000
HISTORY_BYTES = 4 * 1024 * 1024
HISTORY_BOUND_PATCH = "history-bound"


def bound() -> bool:
    """Whether this run bounds its history (the answer is memoized for the run)."""
    return workflow.patched(HISTORY_BOUND_PATCH)


def history_full() -> bool:
    """At a point where the run may continue as new (between reconciles, rounds, polls)."""
    info = workflow.info()
    if not bound():
        return info.is_continue_as_new_suggested()
    return (info.is_continue_as_new_suggested() or info.get_current_history_length() >= HISTORY_EVENTS
            or info.get_current_history_size() >= HISTORY_BYTES)


def idle_history_full() -> bool:
    """In a wait for work: histories from before the bound waited for work alone."""
    return bound() and history_full()
