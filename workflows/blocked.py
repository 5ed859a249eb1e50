"""The one failure a reconcile raises on purpose."""


class Blocked(Exception):
    """A reconcile cannot go on without an operator: the message says why and what to do."""
