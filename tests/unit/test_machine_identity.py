"""A machine's identity carries its orb: names orbiter gives machines, and the claim a machine carries."""

import re

from orbiter.models.claims import claim_conflict, claim_text, parse_claim
from orbiter.models.names import NAME_PATTERN
from orbiter.models.providers import machine_name

HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def test_names_are_readable_and_carry_the_orb():
    assert machine_name("lab", "meta", "etcd", 0) == "lab-meta-etcd-0"
    assert machine_name("shop", "meta", "etcd", 0) != machine_name("lab", "meta", "etcd", 0)


def test_long_names_hash_the_orb_first_then_cluster_and_pool_and_stay_hostnames():
    longest = "a" * 32  # the longest name desired.yml allows
    assert re.fullmatch(NAME_PATTERN, longest)
    assert machine_name(longest, "cluster", "pool", 3) == f"{longest}-cluster-pool-3"  # fits: kept whole
    medium = machine_name(longest, "c" * 20, "pool-abcde", 3)  # 66 characters whole: the orb is hashed
    assert medium.startswith("h") and medium.endswith(f"-{'c' * 20}-pool-abcde-3") and HOSTNAME.match(medium)
    long = machine_name(longest, longest, longest, 99)
    assert HOSTNAME.match(long) and len(long) <= 63 and long.endswith("-99")
    # Stable, and different orbs stay apart when hashed.
    assert machine_name(longest, longest, longest, 99) == long
    assert machine_name("b" * 32, longest, longest, 99) != long


def test_a_claim_names_its_orb_and_cluster_and_refuses_another_orb():
    text = claim_text("lab", "meta", "etcd")
    assert parse_claim(text) == ("lab", "meta")
    assert claim_conflict("m1", "dc1", "lab", "meta", text) is None  # its own
    assert claim_conflict("m1", "dc1", "lab", "meta", None) is None  # unclaimed: it may take it
    assert claim_conflict("m1", "dc1", "shop", "prod", text) == (
        "machine m1 is claimed by orb lab (cluster meta): release it there first, or run"
        " `orbiter machines release dc1/m1 --force` if that orb is gone")
    assert claim_conflict("m1", "dc1", "lab", "other", text) is not None  # another cluster of the orb too
    assert parse_claim("not a claim\n") is None
