"""The size a workflow's history may reach before the workflow continues as new.

Temporal warns at 10 MB or 10,240 events and terminates a workflow at 50 MB or 51,200 events;
a workflow that replays a long history also costs its worker that much on every cache miss. An
entity workflow that runs for months (a cluster, a node agent, the GitOps loop) therefore
continues as new well before either: at HISTORY_EVENTS events or HISTORY_BYTES bytes, or when
the server suggests it, whichever comes first. The state it carries is small (its input).
"""

from temporalio import workflow

HISTORY_EVENTS = 8_000
HISTORY_BYTES = 4 * 1024 * 1024


def history_full() -> bool:
    info = workflow.info()
    return (info.is_continue_as_new_suggested() or info.get_current_history_length() >= HISTORY_EVENTS
            or info.get_current_history_size() >= HISTORY_BYTES)
