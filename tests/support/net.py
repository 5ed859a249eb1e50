"""Test networks: each pytest-xdist worker gets its own subnets, so machine tests of different
modules run at the same time without sharing a bridge, an address or an apt repo."""

import ipaddress
import os

WORKER_STRIDE = 30  # second octets between workers: 10.80 on gw0, 10.110 on gw1, ... up to gw5


def worker_index() -> int:
    """0 without xdist; N for worker gwN."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def subnet(second_octet: int) -> str:
    """The worker's /24 for a module that would use 10.<second_octet>.0.0/24 alone."""
    return f"10.{second_octet + WORKER_STRIDE * worker_index()}.0.0/24"


def host(net: str, index: int) -> str:
    """Address `index` of a /24 (1 is the host's bridge, machines start at 2)."""
    return str(ipaddress.IPv4Network(net).network_address + index)
