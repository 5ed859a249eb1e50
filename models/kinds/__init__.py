"""The cluster kinds orbiter knows. Adding one: a package here (its desired.yml model, state and a
`KIND` entry), a runbook in workflows/kinds/, activities in activities/kinds/, and its name below.

A kind can also live outside orbiter, in a Python distribution of its own: it declares its `Kind`
under the entry-point group `orbiter.kinds` (`myorb = "myorb_kind:KIND"`) and orbiter finds it
here, next to the built-in ones, once it is installed where the worker and the CLI run."""

from importlib import import_module
from importlib.metadata import entry_points
from typing import Annotated, Union

from pydantic import Field

from .base import Kind, KindProblem, KindSpec, KindState, MemberBase, PlannedStep, PoolRef, PortRule, Refused, View

REGISTERED = ("etcd", "kubernetes", "redis")
ENTRY_POINT_GROUP = "orbiter.kinds"


class KindEntryError(Exception):
    """An installed distribution declares a kind orbiter cannot use; one line naming it."""


def installed_kinds(builtin: dict[str, Kind]) -> dict[str, Kind]:
    """Kinds other distributions declare under `orbiter.kinds`, by name. The entry point's name
    must be the Kind's name, and no built-in kind can be replaced: desired.yml would mean
    something else on a host that happens to have another package installed."""
    found: dict[str, Kind] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kind = ep.load()
        where = f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP})"
        if not isinstance(kind, Kind):
            raise KindEntryError(f"{where} is not an orbiter Kind: point it at the package's KIND")
        if kind.name != ep.name:
            raise KindEntryError(f"{where} declares kind {kind.name!r}: name the entry point {kind.name}")
        if kind.name in builtin or kind.name in found:
            raise KindEntryError(f"{where}: kind {kind.name} is already registered; uninstall one of them")
        found[kind.name] = kind
    return found


KINDS: dict[str, Kind] = {name: import_module(f"{__name__}.{name}").KIND for name in REGISTERED}
KINDS.update(installed_kinds(KINDS))
Cluster = Annotated[Union[tuple(k.spec for k in KINDS.values())], Field(discriminator="kind")]  # noqa: UP007
AnyKindState = Annotated[Union[tuple(k.state for k in KINDS.values())], Field(discriminator="kind")]  # noqa: UP007


def kind_of(name: str) -> Kind:
    return KINDS[name]


__all__ = ["ENTRY_POINT_GROUP", "KINDS", "AnyKindState", "Cluster", "Kind", "KindEntryError", "KindProblem",
           "KindSpec", "KindState", "MemberBase", "PlannedStep", "PoolRef", "PortRule", "Refused", "View",
           "installed_kinds", "kind_of"]
