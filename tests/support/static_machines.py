"""Local systemd-nspawn machines that play static servers a user started themselves.

Each machine trusts only a bootstrap key for root, and `prepare_server` makes it look like a real
Debian server (see KERNEL_LIKE_A_SERVER): kmod and a modules.builtin naming br_netfilter and overlay
(this host's kernel has them built in without module support, so `modprobe br_netfilter` succeeds as
on a real server), and the provider's own apt line removed, so packages come only through the
cluster's packages.repository: the apt repository served on the machines' bridge with the
kubeadm/kubelet/kubectl stand-ins and containerd, keepalived, curl and kmod from the host's apt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.ssh import connect
from orbiter.models.machines import Machine

from ..standins import serve_standins

# What a real Debian server has and the nspawn machines lack (see the module docstring).
KERNEL_LIKE_A_SERVER = (
    "set -e; export DEBIAN_FRONTEND=noninteractive;"
    " apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends kmod >/dev/null;"
    ' d=/lib/modules/$(uname -r); mkdir -p "$d";'
    ' printf "kernel/net/bridge/br_netfilter.ko\\nkernel/fs/overlayfs/overlay.ko\\n" > "$d/modules.builtin";'
    ' touch "$d/modules.order" "$d/modules.builtin.modinfo"; depmod;'
    " modprobe br_netfilter && modprobe overlay;"
    # The provider's own apt line goes: a user's server knows only what packages.repository says.
    " rm -f /etc/apt/sources.list.d/orbiter.list; rm -rf /var/lib/apt/lists/*"
)


@contextlib.contextmanager
def static_servers(
    host_provider: str, subnet: str, ips: dict[str, str], bootstrap_public: str, standins: list[str]
) -> Iterator[tuple[dict[str, Machine], AptRepo]]:
    """Machines at `ips` (id -> address) trusting the bootstrap key, and the apt repo on their bridge.

    Every machine, the bridge and the repo's HTTP server are gone afterwards, also on failure.
    """
    host = LocalMachines(host_provider, subnet)
    apt = AptRepo(host)
    try:
        # One call on a fresh provider: addresses are handed out from .2 in the order of the ids.
        created = {m.id: m for m in host.create("servers", list(ips), bootstrap_public, "unused")}
        assert {mid: m.ip for mid, m in created.items()} == ips
        serve_standins(apt, standins)
        apt.ensure_packages([(p, None) for p in ("containerd", "keepalived", "curl", "kmod")])
        apt.ensure_served()
        yield created, apt
    finally:
        for machine in host.list_status():
            with contextlib.suppress(Exception):
                host.delete(machine["id"])
        with contextlib.suppress(Exception):
            apt.stop()
        with contextlib.suppress(Exception):
            host.destroy_network()


def prepare_server(machine: Machine, bootstrap_private: str) -> None:
    with connect(machine, bootstrap_private) as s:
        r = s.run(KERNEL_LIKE_A_SERVER, timeout=300)
        assert r.status == 0, f"{machine.id}: {r.stderr.strip()[-500:]}"
