"""GCE's rules for resource names, as the stand-in enforces them (RFC 1035 labels, 63 characters)."""

import re

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")


def name_problem(name: object) -> str | None:
    """GCE's message for a name it refuses; None for a valid one."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        return (f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex"
                " '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
    return None


def labels_problem(labels: object) -> str | None:
    if labels is None:
        return None
    if not isinstance(labels, dict):
        return "Invalid value for field 'resource.labels'"
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(str(key)):
            return f"Invalid value for field 'resource.labels': '{key}'. Label keys must start with a letter"
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
            return f"Invalid value for field 'resource.labels.{key}': '{value}'"
    return None
