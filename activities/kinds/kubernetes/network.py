"""Network facts of machines over SSH: which interface carries a machine's IP, and its prefix.

keepalived puts a control plane VIP on the interface that carries the machine's own address, so
the VIP is reachable wherever the machines reach each other. That interface is a fact of the
machine (eth0, ens4, host0 on local machines), found here with one `ip -o addr show` per machine,
machines in parallel, over the worker's pooled sessions. Read-only, so safe to repeat.

A sync activity (runs in the worker's thread pool). Errors are one line naming the cluster and the
machine; their type drives retries: Unreachable and SshError are retried; AuthFailed,
HostKeyChanged, SecretsError and NetworkError (no interface carries the IP, no `ip` tool) need an
operator.
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.secretstore import resolve_secret
from orbiter.activities.ssh import AuthFailed, HostKeyChanged, SshError, Unreachable, pooled
from orbiter.models.errors import one_line
from orbiter.models.kinds.kubernetes.network import InterfaceFact, NetworkFactsInput, NetworkFactsResult
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretsError

# sudo's secure_path has the sbin dirs; a plain user's login shell may not.
ADDRESSES = 'PATH="$PATH:/usr/sbin:/sbin" ip -o addr show'
TIMEOUT = 30.0
MAX_PARALLEL = 16


class NetworkError(Exception):
    """The machine's addresses do not say where its IP is; one line."""


def parse_addresses(text: str) -> list[tuple[str, str, int]]:
    """(interface, address, prefix) of each line of `ip -o addr show`.

    A line reads `2: eth0    inet 10.0.0.5/24 brd ... scope global eth0\\ ...`; a point-to-point
    address reads `inet 10.0.0.5 peer 10.0.0.1/32`, where the prefix belongs to the peer.
    """
    out: list[tuple[str, str, int]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("inet", "inet6"):
            continue
        interface = fields[1].split("@", 1)[0]
        local, _, prefix = fields[3].partition("/")
        if not prefix and len(fields) > 5 and fields[4] == "peer":
            prefix = fields[5].partition("/")[2]
        try:
            address = str(ipaddress.ip_address(local))
            length = int(prefix) if prefix else (32 if ":" not in address else 128)
        except ValueError:
            continue
        out.append((interface, address, length))
    return out


def interface_of(ip: str, text: str) -> InterfaceFact | None:
    """The interface and prefix that carry `ip` in `ip -o addr show` output, if any."""
    try:
        want = str(ipaddress.ip_address(ip))
    except ValueError:
        return None
    for interface, address, prefix in parse_addresses(text):
        if address == want:
            return InterfaceFact(interface=interface, prefix=prefix)
    return None


def _error(cluster: str, machine: Machine, err: Exception) -> ApplicationError:
    detail = one_line(str(err)) or type(err).__name__
    # SSH errors already name the machine ("machine cp-0 (root@10.0.0.5:22): ...").
    where = "" if f"machine {machine.id} " in detail else f"machine {machine.id}: "
    msg = f"cluster {cluster}: {where}{detail}"
    if isinstance(err, Unreachable):
        return ApplicationError(msg, type="Unreachable")
    for cls in (AuthFailed, HostKeyChanged, SecretsError, NetworkError):
        if isinstance(err, cls):
            return ApplicationError(msg, type=cls.__name__, non_retryable=True)
    return ApplicationError(msg, type="SshError")


def _facts(machine: Machine, secrets: SecretsRef) -> InterfaceFact:
    key = resolve_secret(secrets, machine.key_secret).decode()
    with pooled(machine, key) as session:
        r = session.run(ADDRESSES, timeout=TIMEOUT)
    if r.status != 0:
        detail = one_line(r.stderr or r.stdout) or "(no output)"
        raise NetworkError(f"`ip -o addr show` exited with {r.status}: {detail}")
    fact = interface_of(machine.ip, r.stdout)
    if fact is None:
        have = ", ".join(f"{i} {a}/{p}" for i, a, p in parse_addresses(r.stdout) if i != "lo") or "none"
        raise NetworkError(f"no network interface carries its IP {machine.ip} (addresses: {have})")
    return fact


@activity.defn
def network_facts(input: NetworkFactsInput) -> NetworkFactsResult:
    """The interface carrying each machine's IP and its prefix: one round trip per machine, in parallel."""
    machines = list({m.id: m for m in input.machines}.values())

    def one(machine: Machine) -> InterfaceFact | ApplicationError:
        try:
            return _facts(machine, input.secrets)
        except (SshError, SecretsError, NetworkError) as err:
            return _error(input.cluster, machine, err)

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL, len(machines)))) as pool:
        answers = list(pool.map(one, machines))
    errors = [a for a in answers if isinstance(a, ApplicationError)]
    if errors:
        # An operator's problem first: no retry can fix it.
        raise next((e for e in errors if e.non_retryable), errors[0])
    return NetworkFactsResult(
        interfaces={m.id: a for m, a in zip(machines, answers, strict=True) if isinstance(a, InterfaceFact)}
    )
