"""The benchfile kind in desired.yml: members on one pool, each with one file."""

from typing import Literal

from pydantic import StrictStr

from orbiter.models.kinds.base import KindSpec, KindState, MemberBase, PoolRef
from orbiter.models.nodespec import FileSpec, NodeSpec

ROLE = "member"
FILE_DIR = "/run/orbiter-bench"  # netns machines share the host's filesystem: one file per machine name


def member_file(machine: str) -> str:
    return f"{FILE_DIR}/{machine}.conf"


class BenchCluster(KindSpec):
    kind: Literal["benchfile"]
    members: PoolRef
    setting: StrictStr = "1"  # written into every member's file: a change rewrites them all

    def pools(self) -> list[tuple[tuple[str, ...], PoolRef]]:
        return [(("members",), self.members)]

    def member_role(self, path: tuple[str, ...]) -> tuple[str, str | None]:
        return ROLE, None

    def summary(self) -> str:
        return "benchfile"


class BenchMember(MemberBase):
    pass


class BenchState(KindState):
    kind: Literal["benchfile"] = "benchfile"
    members: list[BenchMember] = []


def member_spec(cluster: str, spec: BenchCluster, machine: str) -> NodeSpec:
    return NodeSpec(hostname=machine, files=[FileSpec(
        path=member_file(machine), content=f"cluster={cluster}\nmember={machine}\nsetting={spec.setting}\n")])
