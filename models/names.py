"""Names and addresses in desired.yml: names (orbs, providers, pools, clusters, machines) are
short, lowercase and DNS-safe; addresses are IPv4."""

import ipaddress
from typing import Annotated

from pydantic import Field, StrictStr

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN)]


def ipv4(value: str) -> str:
    """A field validator: `value` is an IPv4 address."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    return value
