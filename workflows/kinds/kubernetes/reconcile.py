"""What the kubernetes runbook's steps share: the cluster's members and the kubeadm, kubectl and
node-agent calls they make. With controlPlaneEndpoint.vip the control planes run keepalived, set
up before kubeadm init."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kinds.kubernetes import (
        apply_cni,
        delete_node,
        drain,
        k8s_nodes,
        kubeadm_init,
        kubeadm_join,
        kubeadm_reset,
        network_facts,
        uncordon,
    )
    from orbiter.models.duration import parse_duration
    from orbiter.models.kinds.kubernetes import KIND, kubeadm_config, node
    from orbiter.models.kinds.kubernetes.messages import (
        DEFAULT_CNI,
        ApplyCniInput,
        K8sNode,
        K8sNodesInput,
        KubeadmInitInput,
        KubeadmJoinInput,
        KubeadmResetInput,
        KubeTarget,
        NodeActionInput,
        is_url,
    )
    from orbiter.models.kinds.kubernetes.network import NetworkFactsInput
    from orbiter.models.kinds.kubernetes.spec import (
        CONTROL_PLANE,
        CONTROL_PLANE_GROUP,
        WORKER,
        K8sMember,
        KubernetesCluster,
        KubernetesState,
    )
    from orbiter.models.kinds.kubernetes.versions import parse_version
    from orbiter.models.nodespec import AptSource, NodeSpec

from ...context import ClusterContext
from ...fleet import Fleet, spec_digest
from . import balancer

HEALTH_TIMEOUT = timedelta(minutes=5)
KUBE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["AuthFailed", "HostKeyChanged", "SecretsError"],
)
class KubernetesReconcile:
    def __init__(self, ctx: ClusterContext) -> None:
        self.ctx = ctx
        self.fleet = Fleet(ctx)
        self.name = ctx.name
        self.spec: KubernetesCluster = ctx.desired.spec  # type: ignore[assignment]
        if ctx.state.kind is None:
            ctx.state.kind = KubernetesState()
        self.kind: KubernetesState = ctx.state.kind  # type: ignore[assignment]
        self.versions: dict[str, dict[str, str]] = {}  # provider -> package -> exact apt version
        self.apt_sources: dict[str, str | None] = {}  # provider -> the apt line machines use
        self.hop_versions: dict[str, dict[str, dict[str, str]]] = {}  # upgrade hop -> provider -> package versions
        self.observed: list[K8sNode] | None = None
        self.leaving: set[str] = set()  # members being removed: admin commands go elsewhere

    # --- members ------------------------------------------------------------------------------
    @property
    def members(self) -> list[K8sMember]:
        return self.kind.members

    def member(self, name: str) -> K8sMember | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def control_planes(self) -> list[K8sMember]:
        return [m for m in self.members if m.role == CONTROL_PLANE]

    @property
    def workers(self) -> list[K8sMember]:
        return [m for m in self.members if m.role == WORKER]

    def ip(self, member: K8sMember) -> str:
        return self.ctx.state.machines[member.name].ip

    @property
    def vip(self) -> str | None:
        cpe = self.spec.control_plane_endpoint
        return cpe.vip if cpe is not None else None

    def replacing(self) -> set[str]:
        return {c.machine for c in self.ctx.state.commands if c.action == "replace"}

    def in_group(self, group: str) -> list[K8sMember]:
        """A group's members that stay: those `orbiter replace` marked are on their way out."""
        leaving = self.replacing()
        return [m for m in self.members if m.group == group and m.name not in leaving]

    def kept_workers(self) -> list[K8sMember]:
        kept = []
        for group, ref in self.spec.workers.items():
            kept += self.in_group(group)[: ref.nodes]
        return kept

    def kept_control_planes(self) -> list[K8sMember]:
        return self.in_group(CONTROL_PLANE_GROUP)[: self.spec.control_plane.nodes]

    def surplus_control_planes(self) -> list[K8sMember]:
        """Control planes beyond controlPlane.nodes or marked for replacement, from the end."""
        kept = {m.name for m in self.kept_control_planes()}
        return [m for m in reversed(self.control_planes) if m.name not in kept]

    def surplus_workers(self) -> list[K8sMember]:
        """Workers beyond their group's size or of a group no longer desired, from the end."""
        kept = {m.name for m in self.kept_workers()}
        return [m for m in reversed(self.workers) if m.name not in kept]

    def running_versions(self) -> list[str]:
        """The Kubernetes versions joined nodes run, lowest first."""
        return sorted({m.version for m in self.members if m.joined and m.version}, key=parse_version)

    # --- pieces -------------------------------------------------------------------------------
    def endpoint(self) -> str:
        return kubeadm_config.endpoint(self.spec, self.ip(self.control_planes[0]), self.kind.load_balancer)

    def target(self) -> KubeTarget:
        joined = [m for m in self.control_planes
                  if m.joined and m.name in self.ctx.state.machines and m.name not in self.leaving]
        return KubeTarget(cluster=self.name, via=[self.ctx.state.machines[m.name] for m in joined],
                          secrets=self.ctx.desired.secrets)

    def node_spec(self, member: K8sMember) -> NodeSpec:
        source = self.apt_sources.get(member.provider)
        # A joined node keeps the packages it runs until its upgrade moves them, one by one.
        versions = self.versions[member.provider] | member.apt
        spec = node.node_spec(
            self.spec,
            member.name,
            member.role,  # type: ignore[arg-type]
            versions,
            apt_sources=[AptSource(name="orbiter", line=source)] if source else None,
            vip=self.keepalived(member),
            joined=member.joined,
        )
        if not self.ctx.provider(member.provider).can("kernel-modules"):
            # Machines on the host's kernel cannot load modules: the host has to (the bridge sysctls
            # are per network namespace and still set here).
            spec = spec.model_copy(update={"kernel_modules": []})
        return spec

    def keepalived(self, member: K8sMember) -> node.Keepalived | None:
        """VRRP settings of a control plane carrying the VIP: its interface as the machine reported it."""
        if self.vip is None or member.role != CONTROL_PLANE:
            return None
        assert member.interface is not None
        return node.Keepalived(
            interface=member.interface,
            ip=self.ip(member),
            peers=self.ctx.provider(member.provider).vip_peers(member.pool, member.name),
            position=self.control_planes.index(member),
            router_id=node.virtual_router_id(f"{self.ctx.orb}/{self.name}"),
        )

    async def network_facts(self) -> None:
        """Which interface carries each control plane's address, once per machine (keepalived needs it)."""
        if self.vip is None:
            return
        unknown = [m for m in self.control_planes if m.interface is None and m.name in self.ctx.state.machines]
        if not unknown:
            return
        result = await workflow.execute_activity(
            network_facts,
            NetworkFactsInput(cluster=self.name, machines=[self.ctx.state.machines[m.name] for m in unknown],
                              secrets=self.ctx.desired.secrets),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=KUBE_RETRY,
            summary=f"interfaces of {', '.join(m.name for m in unknown)}",
        )
        for m in unknown:
            fact = result.interfaces[m.name]
            m.interface, m.prefix = fact.interface, fact.prefix

    def changed(self, member: K8sMember) -> bool:
        return spec_digest(self.node_spec(member)) != member.spec_digest

    async def acquire(self, members: list[K8sMember]) -> None:
        by_pool: dict[tuple[str, str], list[str]] = {}
        for m in members:
            by_pool.setdefault((m.provider, m.pool), []).append(m.name)
        for (provider, pool), ids in by_pool.items():
            await self.fleet.acquire(provider, pool, ids)

    async def converge(self, members: list[K8sMember]) -> None:
        if not members:
            return
        specs = {m.name: self.node_spec(m) for m in members}
        await self.fleet.converge(specs)
        for m in members:
            m.spec_digest = spec_digest(specs[m.name])

    async def init(self, first: K8sMember) -> None:
        cps = [self.ip(m) for m in self.control_planes[: self.spec.control_plane.nodes]]
        config = kubeadm_config.init_config(self.name, self.spec, first.name, self.ip(first), self.endpoint(),
                                            control_plane_ips=cps, upload_certs=self.spec.control_plane.nodes > 1)
        machine = self.ctx.state.machines[first.name]
        result = await workflow.execute_activity(
            kubeadm_init,
            KubeadmInitInput(target=KubeTarget(cluster=self.name, via=[machine], secrets=self.ctx.desired.secrets),
                             config=config),
            start_to_close_timeout=timedelta(minutes=12),
            retry_policy=KUBE_RETRY,
            summary=f"kubeadm init {first.name}",
        )
        first.ca_cert_hash = result.ca_cert_hash
        first.endpoint = self.endpoint()
        self.mark_joined(first)
        self.ctx.add_secrets(result.sealed_secrets)
        await self.converge([first])  # kubelet.service is asserted from now on
        await self.ctx.report()

    def mark_joined(self, member: K8sMember) -> None:
        member.joined = True
        if member.role == CONTROL_PLANE:
            # Any control plane can then pin the CA for later joins, also once the first one is gone.
            member.ca_cert_hash = self.ca_cert_hash()
        member.version = self.spec.version
        member.apt = {p: self.versions[member.provider][p] for p in node.KUBE_PACKAGES}

    def ca_cert_hash(self) -> str:
        return next(m.ca_cert_hash for m in self.control_planes if m.ca_cert_hash)

    def cni_manifest(self) -> str:
        return self.spec.cni.manifest or DEFAULT_CNI[self.spec.networking.network]

    async def cni(self) -> None:
        """The CNI, applied once per URL; a manifest in the repository again whenever its content changes."""
        manifest = self.cni_manifest()
        if is_url(manifest) and self.kind.cni == manifest:
            return
        known = self.kind.cni_digest if self.kind.cni == manifest else None
        result = await workflow.execute_activity(
            apply_cni,
            ApplyCniInput(target=self.target(), manifest=manifest, applied=known),
            start_to_close_timeout=timedelta(minutes=12),
            retry_policy=KUBE_RETRY,
            summary=f"cni {manifest}",
        )
        self.kind.cni = manifest
        if result is not None and not is_url(manifest):
            self.kind.cni_digest = result.applied

    async def join(self, members: list[K8sMember], control_plane: bool) -> None:
        ca_hash = self.ca_cert_hash()
        target = self.target()

        async def one(member: K8sMember) -> None:
            config = kubeadm_config.join_config(self.spec, member.name, self.ip(member), self.endpoint(), ca_hash,
                                                control_plane=control_plane)
            await workflow.execute_activity(
                kubeadm_join,
                KubeadmJoinInput(target=target, machine=self.ctx.state.machines[member.name], node=member.name,
                                 config=config, control_plane=control_plane),
                start_to_close_timeout=timedelta(minutes=12),
                retry_policy=KUBE_RETRY,
                summary=f"kubeadm join {member.name}",
            )
            self.mark_joined(member)

        await asyncio.gather(*(one(m) for m in members))
        await self.converge(members)
        await self.observe_quietly()

    async def nodes(self, wait_ready: list[str] | None = None, version: str | None = None) -> list[K8sNode]:
        """The nodes as the API lists them; with wait_ready, the health gate: those nodes Ready, and on
        every control plane the API server's /readyz and the etcd member healthy."""
        gate = [self.ctx.state.machines[m.name] for m in self.control_planes
                if m.joined and m.name not in self.leaving]
        result = await workflow.execute_activity(
            k8s_nodes,
            K8sNodesInput(target=self.target(), wait_ready=wait_ready or [], wait_version=version,
                          timeout_seconds=HEALTH_TIMEOUT.total_seconds(),
                          gate_control_planes=gate if wait_ready else []),
            start_to_close_timeout=HEALTH_TIMEOUT + timedelta(seconds=60),
            retry_policy=KUBE_RETRY,
            summary="health gate" if wait_ready else "nodes",
        )
        self.observed = result.nodes
        return result.nodes

    async def health_gate(self) -> None:
        await self.observe(await self.nodes(wait_ready=[m.name for m in self.members if m.joined]))

    async def drain(self, member: K8sMember) -> None:
        timeout = parse_duration(self.spec.upgrade.drain_timeout).total_seconds()
        await workflow.execute_activity(
            drain,
            NodeActionInput(target=self.target(), node=member.name, timeout_seconds=timeout),
            start_to_close_timeout=timedelta(seconds=timeout + 120),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary=f"drain {member.name}",
        )

    async def remove(self, member: K8sMember) -> None:
        """Drained, `kubeadm reset` (which removes a control plane's etcd member), node deleted, released."""
        self.leaving.add(member.name)
        if member.role == CONTROL_PLANE and member.joined:
            await balancer.serving(self)  # it leaves the load balancer before it stops serving
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
        self.kind.members = [m for m in self.members if m is not member]
        self.ctx.state.commands = [c for c in self.ctx.state.commands
                                   if not (c.action == "replace" and c.machine == member.name)]
        self.leaving.discard(member.name)
        await self.observe_quietly()

    async def reset(self, member: K8sMember) -> None:
        machine = self.ctx.state.machines.get(member.name)
        if machine is None:
            return
        await workflow.execute_activity(
            kubeadm_reset,
            KubeadmResetInput(cluster=self.name, machine=machine, secrets=self.ctx.desired.secrets),
            start_to_close_timeout=timedelta(minutes=12),
            retry_policy=KUBE_RETRY,
            summary=f"kubeadm reset {member.name}",
        )

    async def release(self, member: K8sMember) -> None:
        await self.fleet.release(member, KIND.leaves)

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
        self.ctx.state.status.nodes = out
        known = self.control_planes and (self.kind.load_balancer or not self.spec.load_balanced())
        self.ctx.state.status.endpoints = [f"https://{self.endpoint()}"] if known else []
        await self.ctx.report()

    # --- a member out for a while (OS updates, workflows/osupdates.py) --------------------------
    async def before_disruption(self, name: str) -> None:
        """The cluster healthy first, then the node drained."""
        await self.health_gate()
        member = self.member(name)
        if member is not None and member.joined:
            await self.drain(member)

    async def after_disruption(self, name: str) -> None:
        member = self.member(name)
        if member is not None and member.joined:
            await self.nodes(wait_ready=[name])
            await workflow.execute_activity(
                uncordon, NodeActionInput(target=self.target(), node=name),
                start_to_close_timeout=timedelta(minutes=2), retry_policy=KUBE_RETRY, summary=f"uncordon {name}")
        await self.health_gate()
