"""The kubernetes cluster kind with kubeadm: bootstrap, join, scale workers down, upgrade, destroy.

Runbook (each step observes before it acts, so a resumed reconcile repeats nothing):
  packages -> machines -> node software (containerd, kubelet/kubeadm/kubectl held, sysctls)
  -> kubeadm init on the first control plane (once: an admin.conf means done) -> the CNI
  -> further control planes join one at a time -> workers join in parallel batches
  -> kubelet kept running on joined nodes -> health gate (every node Ready)
  -> scale workers down (from the end: drain, kubeadm reset, delete the node, release) -> observe.
  A version change first upgrades, one hop: control planes one at a time, then workers in
  batches (kubeadm package, kubeadm upgrade apply|node, drain, kubelet/kubectl, uncordon, gate).
Not yet here: upgrades across several minors, removing control planes, controlPlaneEndpoint.vip.
"""

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kubeadm import (
        apply_cni,
        delete_node,
        drain,
        k8s_nodes,
        kubeadm_init,
        kubeadm_join,
        kubeadm_reset,
        kubeadm_upgrade,
        uncordon,
    )
    from orbiter.models.cluster import DesiredUpdate, MemberRecord
    from orbiter.models.desired import KubernetesCluster, PoolRef, StaticProvider, machine_name
    from orbiter.models.duration import parse_duration
    from orbiter.models.kinds import kubernetes as plan
    from orbiter.models.kubeadm import (
        DEFAULT_CNI,
        KUBE_DIR,
        ApplyCniInput,
        K8sNode,
        K8sNodesInput,
        KubeadmInitInput,
        KubeadmJoinInput,
        KubeadmResetInput,
        KubeadmUpgradeInput,
        KubeTarget,
        NodeActionInput,
    )
    from orbiter.models.nodespec import AptSource, NodeSpec

    from .blocked import Blocked
    from .fleet import spec_digest
    from .reconcile import KindReconcile

if TYPE_CHECKING:
    from .cluster import ClusterWorkflow

HEALTH_TIMEOUT = timedelta(minutes=5)
KUBE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["AuthFailed", "HostKeyChanged", "SecretsError"],
)
CONTROL_PLANE_GROUP = "controlPlane"
RELEASE_UNITS = ["kubelet.service", "containerd.service"]
RELEASE_FILES = [KUBE_DIR, plan.CONTAINERD_CONFIG]
RELEASE_DIRS = ["/var/lib/kubelet", "/var/lib/etcd"]


class KubernetesReconcile(KindReconcile):
    def __init__(self, cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
        super().__init__(cluster, desired)
        assert isinstance(desired.spec, KubernetesCluster)
        self.spec: KubernetesCluster = desired.spec
        self.versions: dict[str, dict[str, str]] = {}  # provider -> package -> exact apt version
        self.apt_sources: dict[str, str | None] = {}  # provider -> the apt line machines use
        self.observed: list[K8sNode] | None = None

    # --- the runbook --------------------------------------------------------------------------
    async def run(self) -> None:
        if self.spec.destroyed:
            await self.destroy()
            return
        self.refuse_unsupported()
        await self.step("packages")
        for provider in dict.fromkeys(ref.provider for _, ref in self.groups()):
            wanted = {p: self.spec.version.lstrip("v") for p in plan.KUBE_PACKAGES}
            wanted[plan.CONTAINERD] = "*"
            prepared = await self.fleet.packages(provider, wanted)
            self.versions[provider], self.apt_sources[provider] = prepared.versions, prepared.apt_source
        if self.running_versions() not in ([], [self.spec.version]):
            await self.upgrade()  # before any scaling: a new node must not run a newer kubelet
        self.plan_members()
        await self.step("machines")
        await self.acquire([m for m in self.members if m.name not in self.state.machines])
        await self.step("node software")
        await self.converge([m for m in self.members if self.changed(m)])
        await self.cluster.checkpoint()
        first = self.control_planes[0]
        if not first.joined:
            await self.init(first)
        await self.cni(first)
        for member in self.control_planes[1 : self.spec.control_plane.nodes]:
            if not member.joined:
                await self.cluster.checkpoint()
                await self.join([member], control_plane=True)
        pending = [m for m in self.kept_workers() if not m.joined]
        size = max(1, self.desired.max_parallel)
        for i in range(0, len(pending), size):
            await self.cluster.checkpoint()
            await self.join(pending[i : i + size], control_plane=False)
        await self.health_gate()
        for victim in self.surplus_workers():
            await self.cluster.checkpoint()
            await self.remove_worker(victim)
        await self.step("observe")
        await self.observe(await self.nodes())

    def refuse_unsupported(self) -> None:
        cpe = self.spec.control_plane_endpoint
        if cpe is not None and cpe.vip is not None:
            raise Blocked("controlPlaneEndpoint.vip (keepalived) is not supported yet: use {host, port}")
        have = self.running_versions()
        if have and (refused := plan.check_skew(have[-1], self.spec.version)):
            raise Blocked(refused)
        if len(self.control_planes) > self.spec.control_plane.nodes and any(
            m.joined for m in self.control_planes[self.spec.control_plane.nodes :]
        ):
            raise Blocked("removing control planes is not supported yet")

    def running_versions(self) -> list[str]:
        """The Kubernetes versions joined nodes run, lowest first."""
        return sorted({v for m in self.members if m.joined and (v := m.join.get("version"))}, key=plan.parse_version)

    # --- members ------------------------------------------------------------------------------
    @property
    def control_planes(self) -> list[MemberRecord]:
        return [m for m in self.members if m.role == plan.CONTROL_PLANE]

    @property
    def workers(self) -> list[MemberRecord]:
        return [m for m in self.members if m.role == plan.WORKER]

    def groups(self) -> list[tuple[str, PoolRef]]:
        return [(CONTROL_PLANE_GROUP, self.spec.control_plane)] + list(self.spec.workers.items())

    def free_id(self, ref: PoolRef) -> str:
        used = {m.name for m in self.members}
        provider = self.desired.providers[ref.provider]
        if isinstance(provider, StaticProvider):
            candidates = [m.id for m in provider.pools.get(ref.pool, [])]
        else:
            candidates = [machine_name(self.name, ref.pool, i) for i in range(len(used) + 1)]
        for c in candidates:
            if c not in used:
                return c
        raise Blocked(f"pool {ref.pool} of provider {ref.provider} has no free machine")

    def plan_members(self) -> None:
        """Records for machines still missing, in pool order (durable before any machine exists)."""
        for group, ref in self.groups():
            role = plan.CONTROL_PLANE if group == CONTROL_PLANE_GROUP else plan.WORKER
            have = [m for m in self.members if m.join.get("group") == group]
            for _ in range(ref.nodes - len(have)):
                record = MemberRecord(
                    name=self.free_id(ref), provider=ref.provider, pool=ref.pool, role=role, join={"group": group}
                )
                self.members.append(record)

    def kept_workers(self) -> list[MemberRecord]:
        kept = []
        for group, ref in self.spec.workers.items():
            kept += [m for m in self.workers if m.join.get("group") == group][: ref.nodes]
        return kept

    def surplus_workers(self) -> list[MemberRecord]:
        """Workers beyond their group's size or of a group no longer desired, from the end."""
        kept = {m.name for m in self.kept_workers()}
        return [m for m in reversed(self.workers) if m.name not in kept]

    # --- pieces -------------------------------------------------------------------------------
    def endpoint(self) -> str:
        return plan.endpoint(self.spec, self.ip(self.control_planes[0]))

    def target(self) -> KubeTarget:
        joined = [m for m in self.control_planes if m.joined and m.name in self.state.machines]
        return KubeTarget(
            cluster=self.name, via=[self.state.machines[m.name] for m in joined], secrets=self.desired.secrets
        )

    def node_spec(self, member: MemberRecord) -> NodeSpec:
        source = self.apt_sources.get(member.provider)
        versions = dict(self.versions[member.provider])
        # A joined node keeps the packages it runs until its upgrade moves them, one by one.
        versions.update({p: member.join[f"apt_{p}"] for p in plan.KUBE_PACKAGES if f"apt_{p}" in member.join})
        spec = plan.node_spec(
            self.spec,
            member.name,
            member.role,  # type: ignore[arg-type]
            versions,
            apt_sources=[AptSource(name="orbiter", line=source)] if source else None,
            joined=member.joined,
        )
        machine = self.state.machines.get(member.name)
        if machine is not None and machine.provider_kind == "local":
            # Local machines are containers on the host's kernel: they cannot load modules, the
            # host has to (the bridge sysctls are per network namespace and still set here).
            spec = spec.model_copy(update={"kernel_modules": []})
        return spec

    def changed(self, member: MemberRecord) -> bool:
        return spec_digest(self.node_spec(member)) != member.spec_digest

    async def acquire(self, members: list[MemberRecord]) -> None:
        by_pool: dict[tuple[str, str], list[str]] = {}
        for m in members:
            by_pool.setdefault((m.provider, m.pool), []).append(m.name)
        for (provider, pool), ids in by_pool.items():
            await self.fleet.acquire(provider, pool, ids)

    async def converge(self, members: list[MemberRecord]) -> None:
        if not members:
            return
        specs = {m.name: self.node_spec(m) for m in members}
        await self.fleet.converge(specs)
        for m in members:
            m.spec_digest = spec_digest(specs[m.name])

    async def init(self, first: MemberRecord) -> None:
        await self.step(f"init {first.name}")
        cps = [self.ip(m) for m in self.control_planes[: self.spec.control_plane.nodes]]
        config = plan.init_config(
            self.name,
            self.spec,
            first.name,
            self.ip(first),
            self.endpoint(),
            control_plane_ips=cps,
            upload_certs=self.spec.control_plane.nodes > 1,
        )
        machine = self.state.machines[first.name]
        result = await workflow.execute_activity(
            kubeadm_init,
            KubeadmInitInput(
                target=KubeTarget(cluster=self.name, via=[machine], secrets=self.desired.secrets), config=config
            ),
            start_to_close_timeout=timedelta(minutes=12),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=KUBE_RETRY,
            summary=f"kubeadm init {first.name}",
        )
        first.join["ca_cert_hash"] = result.ca_cert_hash
        self.mark_joined(first)
        self.state.sealed_secrets.update(result.sealed_secrets)
        # Later activities read them from the overlay until the write-back commits them.
        self.desired.secrets.extra.update(result.sealed_secrets)
        await self.converge([first])  # kubelet.service is asserted from now on
        await self.cluster.report()

    def mark_joined(self, member: MemberRecord) -> None:
        member.joined = True
        member.join["version"] = self.spec.version
        for p in plan.KUBE_PACKAGES:
            member.join[f"apt_{p}"] = self.versions[member.provider][p]

    async def cni(self, first: MemberRecord) -> None:
        manifest = self.spec.cni.manifest or DEFAULT_CNI[self.spec.networking.network]
        if first.join.get("cni") == manifest:
            return
        await self.step(f"cni {self.spec.networking.network}")
        await workflow.execute_activity(
            apply_cni,
            ApplyCniInput(target=self.target(), manifest=manifest),
            start_to_close_timeout=timedelta(minutes=12),
            retry_policy=KUBE_RETRY,
            summary=f"cni {manifest}",
        )
        first.join["cni"] = manifest

    async def join(self, members: list[MemberRecord], control_plane: bool) -> None:
        names = ", ".join(m.name for m in members)
        await self.step(f"join {'control plane' if control_plane else 'workers'} {names}")
        ca_hash = self.control_planes[0].join["ca_cert_hash"]
        target = self.target()

        async def one(member: MemberRecord) -> None:
            config = plan.join_config(
                self.spec, member.name, self.ip(member), self.endpoint(), ca_hash, control_plane=control_plane
            )
            await workflow.execute_activity(
                kubeadm_join,
                KubeadmJoinInput(
                    target=target,
                    machine=self.state.machines[member.name],
                    node=member.name,
                    config=config,
                    control_plane=control_plane,
                ),
                start_to_close_timeout=timedelta(minutes=12),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=KUBE_RETRY,
                summary=f"kubeadm join {member.name}",
            )
            self.mark_joined(member)

        await asyncio.gather(*(one(m) for m in members))
        await self.converge(members)
        await self.observe_quietly()

    async def nodes(self, wait_ready: list[str] | None = None, version: str | None = None) -> list[K8sNode]:
        result = await workflow.execute_activity(
            k8s_nodes,
            K8sNodesInput(
                target=self.target(),
                wait_ready=wait_ready or [],
                wait_version=version,
                timeout_seconds=HEALTH_TIMEOUT.total_seconds(),
            ),
            start_to_close_timeout=HEALTH_TIMEOUT + timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=KUBE_RETRY,
            summary="health gate" if wait_ready else "nodes",
        )
        self.observed = result.nodes
        return result.nodes

    async def health_gate(self) -> None:
        await self.step("health gate")
        await self.observe(await self.nodes(wait_ready=[m.name for m in self.members if m.joined]))

    # --- upgrade ------------------------------------------------------------------------------
    async def upgrade(self) -> None:
        """Control planes one at a time (`upgrade apply` on the first, `upgrade node` on the others),
        then workers in batches of upgrade.maxUnavailable; each: kubeadm package, kubeadm upgrade,
        drain, kubelet and kubectl packages (the agent restarts kubelet), uncordon, health gate."""
        have = self.running_versions()
        try:
            path = plan.upgrade_path(have[0], self.spec.version)
        except ValueError as err:
            raise Blocked(str(err)) from None
        hop = path[-1]  # one hop: upgrade_path refuses more without the intermediate minor's packages
        cps = [m for m in self.control_planes if m.joined]
        applied = any(m.join.get("version") == hop for m in cps)
        for member in cps:
            if member.join.get("version") == hop:
                continue
            await self.cluster.checkpoint()
            await self.upgrade_node(member, hop, apply=not applied)
            applied = True
        stale = [m for m in self.workers if m.joined and m.join.get("version") != hop]
        size = self.spec.upgrade.max_unavailable
        for i in range(0, len(stale), size):
            await self.cluster.checkpoint()
            await asyncio.gather(*(self.upgrade_node(m, hop, apply=False) for m in stale[i : i + size]))

    async def upgrade_node(self, member: MemberRecord, version: str, apply: bool) -> None:
        await self.step(f"upgrade {member.name} to {version}")
        new = self.versions[member.provider]
        member.join["apt_kubeadm"] = new["kubeadm"]
        await self.converge([member])
        machine = self.state.machines[member.name]
        await workflow.execute_activity(
            kubeadm_upgrade,
            KubeadmUpgradeInput(target=self.target(), machine=machine, version=version, apply=apply),
            start_to_close_timeout=timedelta(minutes=15),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=KUBE_RETRY,
            summary=f"kubeadm upgrade {'apply' if apply else 'node'} {member.name}",
        )
        await self.drain(member)
        member.join["apt_kubelet"], member.join["apt_kubectl"] = new["kubelet"], new["kubectl"]
        await self.converge([member])  # the agent restarts kubelet with its new package
        await workflow.execute_activity(
            uncordon,
            NodeActionInput(target=self.target(), node=member.name),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=KUBE_RETRY,
            summary=f"uncordon {member.name}",
        )
        member.join["version"] = version
        await self.observe(await self.nodes(wait_ready=[member.name], version=version))

    async def drain(self, member: MemberRecord) -> None:
        timeout = parse_duration(self.spec.upgrade.drain_timeout).total_seconds()
        await workflow.execute_activity(
            drain,
            NodeActionInput(target=self.target(), node=member.name, timeout_seconds=timeout),
            start_to_close_timeout=timedelta(seconds=timeout + 120),
            retry_policy=RetryPolicy(maximum_attempts=2),
            summary=f"drain {member.name}",
        )

    async def remove_worker(self, member: MemberRecord) -> None:
        await self.step(f"remove worker {member.name}")
        if member.joined:
            await self.drain(member)
            await self.reset(member)
            await workflow.execute_activity(
                delete_node,
                NodeActionInput(target=self.target(), node=member.name),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=KUBE_RETRY,
                summary=f"delete node {member.name}",
            )
        await self.release(member)
        self.state.members = [m for m in self.members if m is not member]
        await self.observe_quietly()

    async def reset(self, member: MemberRecord) -> None:
        machine = self.state.machines.get(member.name)
        if machine is None:
            return
        await workflow.execute_activity(
            kubeadm_reset,
            KubeadmResetInput(cluster=self.name, machine=machine, secrets=self.desired.secrets),
            start_to_close_timeout=timedelta(minutes=12),
            retry_policy=KUBE_RETRY,
            summary=f"kubeadm reset {member.name}",
        )

    async def release(self, member: MemberRecord) -> None:
        await self.fleet.release(
            member,
            units=RELEASE_UNITS,
            files=RELEASE_FILES,
            packages=[*plan.KUBE_PACKAGES, plan.CONTAINERD],
            data_dirs=RELEASE_DIRS,
        )

    async def destroy(self) -> None:
        """kubeadm reset everywhere (workers first), machines released; the kubeconfig secret stays."""
        await self.step("destroy")
        for member in list(reversed(self.workers)) + list(reversed(self.control_planes)):
            if member.joined:
                try:
                    await self.reset(member)
                except Exception:  # noqa: BLE001 - a machine already gone needs no reset
                    workflow.logger.info("kubeadm reset of %s failed; releasing it anyway", member.name)
            await self.release(member)
            self.state.members = [m for m in self.members if m is not member]
        self.state.status.nodes = []
        self.state.status.endpoints = []

    # --- status -------------------------------------------------------------------------------
    async def observe_quietly(self) -> None:
        """Record the cluster as it is after a step; a failing observation must not fail the step."""
        try:
            await self.observe(await self.nodes())
        except Exception:  # noqa: BLE001 - the next health gate reports problems
            workflow.logger.info("kubectl get nodes after a step failed; continuing")

    async def observe(self, nodes: list[K8sNode]) -> None:
        by_name = {n.name: n for n in nodes}
        out = []
        for member in self.members:
            status = self.fleet.node_status(member, member.role)
            seen = by_name.get(member.name)
            if seen is not None:
                status.version, status.ready, status.cordoned = seen.version, seen.ready, seen.cordoned
            out.append(status)
        self.state.status.nodes = out
        self.state.status.endpoints = [f"https://{self.endpoint()}"] if self.control_planes else []
        await self.cluster.report()


async def reconcile(cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
    await KubernetesReconcile(cluster, desired).run()
