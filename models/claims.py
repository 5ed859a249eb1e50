"""Which orb owns a machine: a claim written on the machine at first contact, checked at every
later contact, removed when the machine is released. Two orbs that list the same machine (or
name one alike) cannot both take it over: the second is refused, naming the first."""

CLAIM_FILE = "/etc/orbiter/claim"  # root-only, on the machine


def claim_text(orb: str, cluster: str, kind: str | None = None) -> str:
    text = f"# orbiter: this machine belongs to a cluster of an orb\norb: {orb}\ncluster: {cluster}\n"
    return text + (f"kind: {kind}\n" if kind else "")


def claim_fields(text: str | None) -> dict[str, str]:
    fields = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


def parse_claim(text: str | None) -> tuple[str, str] | None:
    """(orb, cluster) of a claim file's content; None for no claim (or one orbiter cannot read)."""
    fields = claim_fields(text)
    if "orb" not in fields or "cluster" not in fields:
        return None
    return fields["orb"], fields["cluster"]


def claim_conflict(machine: str, provider: str, orb: str, cluster: str, found: str | None) -> str | None:
    """Why `orb`/`cluster` may not take a machine whose claim file holds `found`; None if it may."""
    owner = parse_claim(found)
    if owner is None or owner == (orb, cluster):
        return None
    return (f"machine {machine} is claimed by orb {owner[0]} (cluster {owner[1]}): release it there first, or"
            f" run `orbiter machines release {provider}/{machine} --force` if that orb is gone")
