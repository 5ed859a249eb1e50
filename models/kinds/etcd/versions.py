"""Which etcd version changes orbiter makes: upgrades one minor at a time, never a downgrade across
minors (etcd's data format moves forward with a minor), and a warning for releases etcd itself
calls unsafe."""

# etcd's own advisories: releases with a known data-loss or inconsistency bug, and the fix.
KNOWN_BAD: dict[tuple[int, int, int], str] = {
    (3, 5, 0): "data inconsistency (etcd 3.5.0-3.5.2), fixed in 3.5.3",
    (3, 5, 1): "data inconsistency (etcd 3.5.0-3.5.2), fixed in 3.5.3",
    (3, 5, 2): "data inconsistency (etcd 3.5.0-3.5.2), fixed in 3.5.3",
}


def parse(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p) for p in version.split("-")[0].split(".")[:3])
    return major, minor, patch


def refusal(cluster: str, running: list[str], wanted: str) -> str | None:
    """Why moving members that run `running` to `wanted` is refused; None: it is allowed."""
    want = parse(wanted)
    for have in sorted({v for v in running if v}, key=parse):
        has = parse(have)
        if has[:2] > want[:2]:
            return (f"cluster {cluster}: etcd cannot be downgraded from {have} to {wanted} (etcd {has[0]}.{has[1]}"
                    f" data is not readable by {want[0]}.{want[1]}): keep version {have}, or restore a backup"
                    f" taken on {want[0]}.{want[1]} into a new cluster")
        if has[0] != want[0] or want[1] - has[1] > 1:
            return (f"cluster {cluster}: etcd upgrades one minor version at a time: from {have} go to"
                    f" {has[0]}.{has[1] + 1}.x first")
    return None


def warning(version: str) -> str | None:
    """A line for `orbiter plan` and status when the chosen version is one etcd warns about."""
    try:
        bad = KNOWN_BAD.get(parse(version))
    except ValueError:
        return None
    return f"etcd {version} has a known bug: {bad}; choose 3.5.3 or later" if bad else None
