"""The cluster kinds orbiter knows. Adding one: a package here (its desired.yml model, state and a
`KIND` entry), a runbook in workflows/kinds/, activities in activities/kinds/, and its name below."""

from importlib import import_module
from typing import Annotated, Union

from pydantic import Field

from .base import Kind, KindProblem, KindSpec, KindState, MemberBase, PlannedStep, PoolRef, PortRule, Refused, View

REGISTERED = ("etcd", "kubernetes", "redis")

KINDS: dict[str, Kind] = {name: import_module(f"{__name__}.{name}").KIND for name in REGISTERED}
Cluster = Annotated[Union[tuple(k.spec for k in KINDS.values())], Field(discriminator="kind")]  # noqa: UP007
AnyKindState = Annotated[Union[tuple(k.state for k in KINDS.values())], Field(discriminator="kind")]  # noqa: UP007


def kind_of(name: str) -> Kind:
    return KINDS[name]


__all__ = ["KINDS", "AnyKindState", "Cluster", "Kind", "KindProblem", "KindSpec", "KindState", "MemberBase",
           "PlannedStep", "PoolRef", "PortRule", "Refused", "View", "kind_of"]
