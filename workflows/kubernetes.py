"""The kubernetes cluster kind with kubeadm: bootstrap, join, scale workers down, upgrade, destroy.

Runbook (each step observes before it acts, so a resumed reconcile repeats nothing):
  packages -> machines -> node software (containerd, kubelet/kubeadm/kubectl held, sysctls)
  -> kubeadm init on the first control plane (once: an admin.conf means done) -> the CNI
  -> further control planes join one at a time -> workers join in parallel batches
  -> kubelet kept running on joined nodes -> health gate (every node Ready)
  -> scale workers down (from the end: drain, kubeadm reset, delete the node, release)
  -> then control planes, one at a time behind a health gate (kubeadm reset removes the etcd member)
  -> observe. A version change first upgrades, minor by minor: control planes one at a time, then
  workers in batches (kubeadm package, kubeadm upgrade apply|node, drain, kubelet/kubectl,
  uncordon, gate). `orbiter replace` marks a machine: a new one joins before it leaves.
With controlPlaneEndpoint.vip the control planes run keepalived, set up before kubeadm init.
"""

import asyncio
import fnmatch
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
    from orbiter.activities.machines import machine_boot_id, reboot_machine
    from orbiter.activities.network import network_facts
    from orbiter.agent import plan as agent_plan
    from orbiter.models.cluster import DesiredUpdate, MemberRecord
    from orbiter.models.desired import KubernetesCluster, PoolRef, StaticProvider, machine_name
    from orbiter.models.duration import parse_duration
    from orbiter.models.kinds import kubernetes as plan
    from orbiter.models.kubeadm import (
        CONFIG_DIR,
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
        is_url,
    )
    from orbiter.models.network import NetworkFactsInput
    from orbiter.models.nodespec import AptSource, NodeSpec
    from orbiter.models.provision import BootIdInput, RebootMachineInput

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
RELEASE_UNITS = ["kubelet.service", "containerd.service", "keepalived.service"]
# Released static machines lose what orbiter put there for Kubernetes (the hostname stays).
RELEASE_FILES = [
    KUBE_DIR,
    plan.CONTAINERD_CONFIG,
    plan.KEEPALIVED_CONFIG,
    plan.KEEPALIVED_CHECK,
    plan.KEEPALIVED_DROPIN,
    CONFIG_DIR,
    agent_plan.SYSCTL_CONF,
    agent_plan.MODULES_CONF,
    agent_plan.apt_source_path("kubernetes"),
    agent_plan.apt_source_path("orbiter"),
]
RELEASE_DIRS = ["/var/lib/kubelet", "/var/lib/etcd"]
# workflow.patched ids: behaviour added after the kubernetes kind was first released.
PATCH_VIP = "k8s-keepalived-vip"
PATCH_CP_REMOVAL = "k8s-control-plane-removal"
PATCH_MINOR_BY_MINOR = "k8s-upgrade-minor-by-minor"
PATCH_REPLACE = "k8s-replace"


class KubernetesReconcile(KindReconcile):
    def __init__(self, cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
        super().__init__(cluster, desired)
        assert isinstance(desired.spec, KubernetesCluster)
        self.spec: KubernetesCluster = desired.spec
        self.versions: dict[str, dict[str, str]] = {}  # provider -> package -> exact apt version
        self.apt_sources: dict[str, str | None] = {}  # provider -> the apt line machines use
        self.observed: list[K8sNode] | None = None
        self.leaving: set[str] = set()  # members being removed: admin commands go elsewhere

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
            if self.vip is not None:
                wanted |= {p: "*" for p in plan.KEEPALIVED_PACKAGES}
            prepared = await self.fleet.packages(provider, wanted)
            self.versions[provider], self.apt_sources[provider] = prepared.versions, prepared.apt_source
        if self.running_versions() not in ([], [self.spec.version]):
            await self.upgrade()  # before any scaling: a new node must not run a newer kubelet
        self.plan_members()
        await self.step("machines")
        await self.acquire([m for m in self.members if m.name not in self.state.machines])
        await self.network_facts()
        await self.step("node software")
        await self.converge([m for m in self.members if self.changed(m)])
        await self.cluster.checkpoint()
        first = self.control_planes[0]
        if not first.joined:
            await self.init(first)
        await self.cni(first)
        for member in self.kept_control_planes():
            if not member.joined:
                await self.cluster.checkpoint()
                await self.join([member], control_plane=True)
        pending = [m for m in self.kept_workers() if not m.joined]
        size = max(1, self.desired.max_parallel)
        for i in range(0, len(pending), size):
            await self.cluster.checkpoint()
            await self.join(pending[i : i + size], control_plane=False)
        await self.health_gate()
        for name in list(self.state.reboot):
            await self.cluster.checkpoint()
            await self.reboot(name)
        for victim in self.surplus_workers():
            await self.cluster.checkpoint()
            await self.remove_worker(victim)
        for victim in self.surplus_control_planes():
            await self.cluster.checkpoint()
            await self.health_gate()  # never take a member from an etcd that is not whole
            await self.remove_control_plane(victim)
        await self.step("observe")
        await self.observe(await self.nodes())

    def refuse_unsupported(self) -> None:
        cpe = self.spec.control_plane_endpoint
        if cpe is not None and cpe.vip is not None and not workflow.patched(PATCH_VIP):
            raise Blocked("controlPlaneEndpoint.vip (keepalived) is not supported yet: use {host, port}")
        have = self.running_versions()
        if have and (refused := plan.check_skew(have[-1], self.spec.version)):
            raise Blocked(refused)
        if self.surplus_control_planes() and not workflow.patched(PATCH_CP_REMOVAL):
            raise Blocked("removing control planes is not supported yet")
        first = self.control_planes[0] if self.control_planes else None
        if first is not None and first.joined and self.members_ready_for_endpoint():
            was = first.join.get("endpoint")
            if was is not None and was != self.endpoint():
                raise Blocked(
                    f"controlPlaneEndpoint of {self.name} changed from {was} to {self.endpoint()}: kubeadm fixes"
                    f" the endpoint when a cluster is created (certificates, kubeconfigs); put {was} back"
                )
        for name in self.state.replace:
            member = next((m for m in self.members if m.name == name), None)
            if member is not None and member.role == plan.CONTROL_PLANE and cpe is None:
                raise Blocked(
                    f"replace {name}: a cluster without controlPlaneEndpoint is reached at its control plane's"
                    " address, which a replacement cannot keep: set controlPlaneEndpoint when creating a cluster"
                )

    def members_ready_for_endpoint(self) -> bool:
        return bool(self.control_planes) and self.control_planes[0].name in self.state.machines

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

    @property
    def vip(self) -> str | None:
        cpe = self.spec.control_plane_endpoint
        return cpe.vip if cpe is not None else None

    def in_group(self, group: str) -> list[MemberRecord]:
        """A group's members that stay: those `orbiter replace` marked are on their way out."""
        return [m for m in self.members if m.join.get("group") == group and m.name not in self.state.replace]

    def plan_members(self) -> None:
        """Records for machines still missing, in pool order (durable before any machine exists)."""
        for group, ref in self.groups():
            role = plan.CONTROL_PLANE if group == CONTROL_PLANE_GROUP else plan.WORKER
            have = self.in_group(group)
            for _ in range(ref.nodes - len(have)):
                record = MemberRecord(
                    name=self.free_id(ref), provider=ref.provider, pool=ref.pool, role=role, join={"group": group}
                )
                self.members.append(record)

    def kept_workers(self) -> list[MemberRecord]:
        kept = []
        for group, ref in self.spec.workers.items():
            kept += self.in_group(group)[: ref.nodes]
        return kept

    def kept_control_planes(self) -> list[MemberRecord]:
        return self.in_group(CONTROL_PLANE_GROUP)[: self.spec.control_plane.nodes]

    def surplus_control_planes(self) -> list[MemberRecord]:
        """Control planes beyond controlPlane.nodes or marked for replacement, from the end."""
        kept = {m.name for m in self.kept_control_planes()}
        return [m for m in reversed(self.control_planes) if m.name not in kept]

    def surplus_workers(self) -> list[MemberRecord]:
        """Workers beyond their group's size or of a group no longer desired, from the end."""
        kept = {m.name for m in self.kept_workers()}
        return [m for m in reversed(self.workers) if m.name not in kept]

    # --- pieces -------------------------------------------------------------------------------
    def endpoint(self) -> str:
        return plan.endpoint(self.spec, self.ip(self.control_planes[0]))

    def target(self) -> KubeTarget:
        joined = [
            m for m in self.control_planes if m.joined and m.name in self.state.machines and m.name not in self.leaving
        ]
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
            vip=self.keepalived(member),
            joined=member.joined,
        )
        machine = self.state.machines.get(member.name)
        if machine is not None and machine.provider_kind == "local":
            # Local machines are containers on the host's kernel: they cannot load modules, the
            # host has to (the bridge sysctls are per network namespace and still set here).
            spec = spec.model_copy(update={"kernel_modules": []})
        return spec

    def keepalived(self, member: MemberRecord) -> plan.Keepalived | None:
        """VRRP settings of a control plane carrying the VIP: its interface as the machine reported it."""
        if self.vip is None or member.role != plan.CONTROL_PLANE:
            return None
        position = self.control_planes.index(member)
        provider = self.desired.providers[member.provider]
        # Unicast to the static pool's other machines (a fixed list: adding a control plane changes
        # no config, so keepalived restarts nowhere); local machines share a bridge: multicast.
        peers = []
        if isinstance(provider, StaticProvider):
            peers = [m.ip for m in provider.pools.get(member.pool, []) if m.id != member.name]
        return plan.Keepalived(
            interface=member.join["interface"],
            ip=self.ip(member),
            peers=peers,
            position=position,
            router_id=plan.virtual_router_id(f"{self.cluster.input.orb}/{self.name}"),
        )

    async def network_facts(self) -> None:
        """Which interface carries each control plane's address, once per machine (keepalived needs it)."""
        if self.vip is None:
            return
        unknown = [m for m in self.control_planes if "interface" not in m.join and m.name in self.state.machines]
        if not unknown:
            return
        result = await workflow.execute_activity(
            network_facts,
            NetworkFactsInput(
                cluster=self.name,
                machines=[self.state.machines[m.name] for m in unknown],
                secrets=self.desired.secrets,
            ),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=KUBE_RETRY,
            summary=f"interfaces of {', '.join(m.name for m in unknown)}",
        )
        for m in unknown:
            fact = result.interfaces[m.name]
            m.join["interface"], m.join["prefix"] = fact.interface, str(fact.prefix)

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
        first.join["endpoint"] = self.endpoint()
        self.mark_joined(first)
        self.state.sealed_secrets.update(result.sealed_secrets)
        # Later activities read them from the overlay until the write-back commits them.
        self.desired.secrets.extra.update(result.sealed_secrets)
        await self.converge([first])  # kubelet.service is asserted from now on
        await self.cluster.report()

    def mark_joined(self, member: MemberRecord) -> None:
        member.joined = True
        if member.role == plan.CONTROL_PLANE:
            # Any control plane can then pin the CA for later joins, also once the first one is gone.
            member.join["ca_cert_hash"] = next(
                m.join["ca_cert_hash"] for m in self.control_planes if "ca_cert_hash" in m.join
            )
        member.join["version"] = self.spec.version
        for p in plan.KUBE_PACKAGES:
            member.join[f"apt_{p}"] = self.versions[member.provider][p]

    async def cni(self, first: MemberRecord) -> None:
        """The CNI, applied once per URL; a manifest in the repository again whenever its content changes."""
        manifest = self.spec.cni.manifest or DEFAULT_CNI[self.spec.networking.network]
        if is_url(manifest) and first.join.get("cni") == manifest:
            return
        known = first.join.get("cni_digest") if first.join.get("cni") == manifest else None
        if known is None:
            await self.step(f"cni {self.spec.networking.network}")
        result = await workflow.execute_activity(
            apply_cni,
            ApplyCniInput(target=self.target(), manifest=manifest, applied=known),
            start_to_close_timeout=timedelta(minutes=12),
            retry_policy=KUBE_RETRY,
            summary=f"cni {manifest}",
        )
        first.join["cni"] = manifest
        if result is not None and not is_url(manifest):
            first.join["cni_digest"] = result.applied

    async def join(self, members: list[MemberRecord], control_plane: bool) -> None:
        names = ", ".join(m.name for m in members)
        await self.step(f"join {'control plane' if control_plane else 'workers'} {names}")
        ca_hash = next(m.join["ca_cert_hash"] for m in self.control_planes if "ca_cert_hash" in m.join)
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
        """The nodes as the API lists them; with wait_ready, the health gate: those nodes Ready, and on
        every control plane the API server's /readyz and the etcd member healthy."""
        gate = [self.state.machines[m.name] for m in self.control_planes if m.joined and m.name not in self.leaving]
        result = await workflow.execute_activity(
            k8s_nodes,
            K8sNodesInput(
                target=self.target(),
                wait_ready=wait_ready or [],
                wait_version=version,
                timeout_seconds=HEALTH_TIMEOUT.total_seconds(),
                gate_control_planes=gate if wait_ready else [],
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
        """Minor by minor to spec.version. Per hop: control planes one at a time (`upgrade apply` on
        the first, `upgrade node` on the others), then workers in batches of upgrade.maxUnavailable;
        each: kubeadm package, kubeadm upgrade, drain, kubelet and kubectl packages (the agent
        restarts kubelet), uncordon, health gate."""
        have = self.running_versions()
        if not workflow.patched(PATCH_MINOR_BY_MINOR):
            try:
                path = plan.upgrade_path(have[0], self.spec.version)
            except ValueError as err:
                raise Blocked(str(err)) from None
            await self.upgrade_to(path[-1], self.versions, skip_leaving=False)
            return
        try:
            minors = plan.intermediate_minors(have[0], self.spec.version)
        except ValueError as err:
            raise Blocked(str(err)) from None
        for pattern in minors:
            await self.step(f"packages {pattern}")
            versions: dict[str, dict[str, str]] = {}
            for provider in dict.fromkeys(m.provider for m in self.members if m.joined):
                prepared = await self.fleet.packages(provider, {p: pattern for p in plan.KUBE_PACKAGES})
                versions[provider] = self.versions[provider] | prepared.versions
            await self.upgrade_to("v" + pattern, versions)
        await self.upgrade_to(self.spec.version, self.versions)

    def at(self, member: MemberRecord, version: str) -> bool:
        """Whether a member runs `version` ("v1.31.2", or a hop's pattern "v1.30.*")."""
        return fnmatch.fnmatchcase(member.join.get("version", ""), version)

    async def upgrade_to(
        self, version: str, versions: dict[str, dict[str, str]], skip_leaving: bool = True
    ) -> None:
        """One hop. `version` may be a minor's pattern: the first control plane's kubeadm tells the patch.
        Workers this reconcile removes are left as they are (they leave drained, not upgraded)."""
        cps = [m for m in self.control_planes if m.joined]
        applied = next((m.join["version"] for m in cps if self.at(m, version)), None)
        for member in cps:
            if self.at(member, version):
                continue
            await self.cluster.checkpoint()
            applied = await self.upgrade_node(member, applied or version, versions, apply=applied is None)
        leaving = {m.name for m in self.surplus_workers()} if skip_leaving else set()
        stale = [m for m in self.workers if m.joined and not self.at(m, version) and m.name not in leaving]
        size = self.spec.upgrade.max_unavailable
        for i in range(0, len(stale), size):
            await self.cluster.checkpoint()
            await asyncio.gather(
                *(self.upgrade_node(m, applied or version, versions, apply=False) for m in stale[i : i + size])
            )

    async def upgrade_node(
        self, member: MemberRecord, version: str, versions: dict[str, dict[str, str]], apply: bool
    ) -> str:
        await self.step(f"upgrade {member.name} to {version}")
        new = versions[member.provider]
        member.join["apt_kubeadm"] = new["kubeadm"]
        await self.converge([member])
        machine = self.state.machines[member.name]
        result = await workflow.execute_activity(
            kubeadm_upgrade,
            KubeadmUpgradeInput(target=self.target(), machine=machine, version=version, apply=apply),
            start_to_close_timeout=timedelta(minutes=15),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=KUBE_RETRY,
            summary=f"kubeadm upgrade {'apply' if apply else 'node'} {member.name}",
        )
        if result is not None and "*" in version:
            version = result.version  # the patch this hop's repository offered
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
        return version

    async def drain(self, member: MemberRecord) -> None:
        timeout = parse_duration(self.spec.upgrade.drain_timeout).total_seconds()
        await workflow.execute_activity(
            drain,
            NodeActionInput(target=self.target(), node=member.name, timeout_seconds=timeout),
            start_to_close_timeout=timedelta(seconds=timeout + 120),
            heartbeat_timeout=timedelta(minutes=1),  # a lost worker's drain is retried at once
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary=f"drain {member.name}",
        )

    async def reboot(self, name: str) -> None:
        """`orbiter reboot`: drain, reboot through the provider, wait until Ready, uncordon."""
        member = next((m for m in self.members if m.name == name), None)
        machine = self.state.machines.get(name)
        if member is not None and machine is not None:
            await self.step(f"reboot {name}")
            if "reboot_from" not in member.join:
                # Recorded before anything happens: a resumed reboot never reboots a second time.
                seen = await workflow.execute_activity(
                    machine_boot_id,
                    BootIdInput(machine=machine, secrets=self.desired.secrets),
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=KUBE_RETRY,
                    summary=f"boot id of {name}",
                )
                member.join["reboot_from"] = seen.boot_id
            if member.joined:
                await self.drain(member)
            await workflow.execute_activity(
                reboot_machine,
                RebootMachineInput(
                    provider_name=member.provider,
                    provider=self.fleet.provider(member.provider),
                    machine=machine,
                    secrets=self.desired.secrets,
                    boot_id=member.join["reboot_from"],
                ),
                start_to_close_timeout=timedelta(minutes=12),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=KUBE_RETRY,
                summary=f"reboot {name}",
            )
            if member.joined:
                await self.nodes(wait_ready=[name])
                await workflow.execute_activity(
                    uncordon,
                    NodeActionInput(target=self.target(), node=name),
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=KUBE_RETRY,
                    summary=f"uncordon {name}",
                )
            del member.join["reboot_from"]
        self.state.reboot.remove(name)
        await self.observe_quietly()

    async def remove_worker(self, member: MemberRecord) -> None:
        await self.step(f"remove worker {member.name}")
        await self.remove(member)

    async def remove_control_plane(self, member: MemberRecord) -> None:
        """One control plane: drained, `kubeadm reset` (which removes its etcd member), node deleted."""
        await self.step(f"remove control plane {member.name}")
        await self.remove(member)

    async def remove(self, member: MemberRecord) -> None:
        self.leaving.add(member.name)
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
        if member.name in self.state.replace:
            self.state.replace.remove(member.name)
        self.leaving.discard(member.name)
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
            packages=[*plan.KUBE_PACKAGES, plan.CONTAINERD, *plan.KEEPALIVED_PACKAGES[:1]],
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
