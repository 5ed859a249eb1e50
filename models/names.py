"""Names in desired.yml (orbs, providers, pools, clusters, machines): short, lowercase, DNS-safe."""

from typing import Annotated

from pydantic import Field, StrictStr

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN)]
