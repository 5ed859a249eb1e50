"""The GCE provider at run time: instances created, found again after any crash, reset and deleted;
the cluster's firewall rules; a load balancer in front of its API servers.

Machines are reached over SSH at their internal address (or their external one when the pool asks)
as the user the `ssh-keys` metadata creates, with the provider's maintenance key: GCE needs no
bootstrap key. Host keys are pinned on first contact, and the claim is written then, as on every
provider.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from orbiter.activities.progress import heartbeat
from orbiter.activities.secretstore import resolve_secret
from orbiter.activities.ssh import AuthFailed, Unreachable, pooled
from orbiter.models.loadbalancers import LoadBalancerInput, LoadBalancerMembersInput, LoadBalancerMembersResult
from orbiter.models.machines import Machine
from orbiter.models.providers.gce import USER, GceProvider
from orbiter.models.provision import AcquireMachinesInput, ReleaseMachineInput
from orbiter.models.refs import SecretsRef

from ..base import Claim, MachineClaimed, Progress, ProviderRuntime, SecretReader, claim_machine
from . import firewall, instances, names
from .api import Api, attempt_key
from .loadbalancer import Balancer

LOGIN_TIMEOUT = 300.0  # from RUNNING until the guest agent has installed the key and sshd lets it in


def _slot(name: str) -> int:
    match = re.search(r"-(\d+)$", name)
    return int(match.group(1)) if match else 0


class GceRuntime(ProviderRuntime):
    spec: GceProvider

    def api(self, secrets: SecretsRef | None = None) -> Api:
        ref = secrets or self.secrets
        return Api(self.spec, self.name, (lambda n: resolve_secret(ref, n)) if ref is not None else None)

    # -- machines -------------------------------------------------------------------------------
    def acquire(self, input: AcquireMachinesInput, progress: Progress) -> list[Machine]:
        api = self.api(input.secrets)
        public = resolve_secret(input.secrets, self.spec.maintenance_pub_secret(self.name)).decode()
        key_secret = self.spec.maintenance_key_secret(self.name)
        maintenance = resolve_secret(input.secrets, key_secret).decode()
        claim = Claim(input.orb, input.cluster, input.kind)
        external = self.spec.pools[input.pool].external_ip
        firewall.ensure(api, input.orb, input.cluster, input.ports, progress)
        attempt = attempt_key()

        def one(name: str) -> Machine:
            instance = instances.ensure(api, input.pool, name, input.orb, input.cluster, public, attempt, progress)
            machine = Machine(id=name, provider=self.name, pool=input.pool, ip=instances.address(instance, external),
                              user=USER, key_secret=key_secret, host_key=input.host_keys.get(name))
            return self._first_contact(machine, maintenance, claim, progress)

        with ThreadPoolExecutor(max_workers=min(16, len(input.machine_ids) or 1)) as pool:
            return list(pool.map(one, input.machine_ids))

    def _first_contact(self, machine: Machine, key: str, claim: Claim, progress: Progress) -> Machine:
        """Log in once the guest agent has put the key in place; pin the host key, write the claim."""
        deadline = time.monotonic() + LOGIN_TIMEOUT
        while True:
            try:
                with pooled(machine, key) as session:
                    claim_machine(session, machine, claim)
                    return machine.model_copy(update={"host_key": session.host_key})
            except (Unreachable, AuthFailed) as err:
                if time.monotonic() > deadline:
                    raise type(err)(f"{err} ({LOGIN_TIMEOUT:.0f}s after GCE said RUNNING: is the ssh-keys metadata"
                                    " applied, and may the worker reach it? see sshSourceRanges)") from None
                progress(f"waiting for {machine.id} ({machine.ip}) to let {USER} in")
                time.sleep(2)

    def find(self, claim: Claim, pool: str) -> list[str]:
        """Every instance with this cluster's and pool's labels, in slot order: adopted by a workflow
        that starts afresh. Those beyond the pool's size then leave through the kind's scale-down
        (drained or removed from the cluster as the kind requires, then deleted), so none is leaked."""
        api = self.api()
        found = instances.list_instances(
            api, names.label_filter(claim.orb, claim.cluster) + f' AND labels.{names.LABEL_POOL} = "{pool}"')
        return sorted({i.name for i in found}, key=lambda n: (_slot(n), n))

    def release(self, input: ReleaseMachineInput) -> None:
        """Delete the instance (a 404 is success). Before the cluster's last instance goes, its
        firewall rules go: done in that order, a crash in between leaves nothing behind."""
        api = self.api(input.secrets)
        instance = instances.find(api, input.machine.id)
        if instance is None:
            return
        labels = dict(instance.labels)
        orb, cluster = labels.get(names.LABEL_ORB), labels.get(names.LABEL_CLUSTER)
        if orb is None or cluster is None:
            raise MachineClaimed(f"instance {instance.name} has no orbiter labels: orbiter did not make it and does"
                                 " not delete it")
        others = [i for i in instances.list_instances(api, names.label_filter(orb, cluster)) if i.name != instance.name]
        if not others:
            firewall.remove(api, orb, cluster, heartbeat)
        instances.delete(api, instance, heartbeat)

    def reboot(self, machine: Machine, key: str) -> None:
        """A hard reset through the API (the caller waits for a new boot id over SSH)."""
        instances.reset(self.api(), machine.id, heartbeat)

    def orb_machines(self, orb: str, secret: SecretReader) -> list[dict[str, str]]:
        api = Api(self.spec, self.name, secret)
        rows = []
        for i in sorted(instances.list_instances(api, names.label_filter(orb)), key=lambda i: i.name):
            labels = dict(i.labels)
            pool = labels.get(names.LABEL_POOL, "")
            external = self.spec.pools[pool].external_ip if pool in self.spec.pools else False
            rows.append({"provider": self.name, "id": i.name, "zone": names.last(i.zone),
                         "ip": instances.address(i, external), "state": instances.status(i).lower(),
                         "orb": labels.get(names.LABEL_ORB, ""), "cluster": labels.get(names.LABEL_CLUSTER, ""),
                         "pool": pool})
        return rows

    # -- load balancer --------------------------------------------------------------------------
    def ensure_load_balancer(self, input: LoadBalancerInput, progress: Progress) -> str:
        return Balancer(self.api(input.secrets), input).ensure(progress)

    def set_load_balancer_members(self, input: LoadBalancerMembersInput, progress: Progress
                                  ) -> LoadBalancerMembersResult:
        return Balancer(self.api(input.balancer.secrets), input.balancer).members(input, progress)

    def remove_load_balancer(self, input: LoadBalancerInput, progress: Progress) -> None:
        Balancer(self.api(input.secrets), input).remove(progress)
