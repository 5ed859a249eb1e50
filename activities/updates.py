"""The update check and OS updates: what a cluster's package source offers, and OS packages
applied to one machine. Each machine is one SSH round trip; machines are asked in parallel."""

from concurrent.futures import ThreadPoolExecutor

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.agent.osupdates import apply_script, facts, refresh_script
from orbiter.models.errors import one_line
from orbiter.models.machines import Machine
from orbiter.models.secrets import SecretsError
from orbiter.models.updatecheck import (
    CheckUpdatesInput,
    CheckUpdatesResult,
    MachineOsFacts,
    OsUpdateInput,
    OsUpdateResult,
)

from .progress import heartbeating
from .providers import ProviderError, runtime_for
from .secretstore import resolve_secret
from .ssh import SshError, Unreachable, connect

REFRESH_TIMEOUT = 300.0
APPLY_TIMEOUT = 1800.0


def _key(input: CheckUpdatesInput | OsUpdateInput, machine: Machine) -> str:
    return resolve_secret(input.secrets, machine.key_secret).decode()


def _os_facts(input: CheckUpdatesInput, machine: Machine) -> MachineOsFacts:
    try:
        with connect(machine, _key(input, machine)) as session:
            out = session.run("sh -s", stdin=refresh_script().encode(), timeout=REFRESH_TIMEOUT)
    except SshError as err:
        return MachineOsFacts(error=one_line(str(err), 200))
    upgradable, reboot = facts(out.stdout)
    return MachineOsFacts(upgradable=upgradable, reboot_required=reboot)


@activity.defn
def check_updates(input: CheckUpdatesInput) -> CheckUpdatesResult:
    """The versions of the kind's package the provider's source offers and, with refresh_os, each
    machine's OS updates after fetching its package lists. Looks only: retried freely."""
    with heartbeating(f"checking updates of {input.cluster}"):
        try:
            result = CheckUpdatesResult()
            if input.refresh_os and input.machines:
                with ThreadPoolExecutor(max_workers=min(16, len(input.machines))) as pool:
                    found = pool.map(lambda m: (m.id, _os_facts(input, m)), input.machines)
                    result.os = dict(found)
            if input.package is not None:
                runtime = runtime_for(input.provider_name, input.provider)
                result.offered = runtime.offered_versions(input.package, input.machines,
                                                          lambda m: _key(input, m))
            return result
        except ProviderError as err:
            raise ApplicationError(str(err).splitlines()[0], type="ProviderError") from None
        except SecretsError as err:
            raise ApplicationError(str(err), type="SecretsError", non_retryable=True) from None


@activity.defn
def apply_os_updates(input: OsUpdateInput) -> OsUpdateResult:
    """Upgrade exactly the named packages on one machine (empty: only look), then list what apt
    still offers and whether the machine asks for a reboot. Idempotent: an upgraded package is a no-op."""
    machine = input.machine
    with heartbeating(f"os updates on {machine.id}"):
        try:
            with connect(machine, _key(input, machine)) as session:
                out = session.run("sh -s", stdin=apply_script(input.packages).encode(), timeout=APPLY_TIMEOUT)
        except Unreachable as err:
            raise ApplicationError(one_line(str(err), 300), type="Unreachable") from None
        except SshError as err:
            raise ApplicationError(one_line(str(err), 300), type="SshError") from None
        except SecretsError as err:
            raise ApplicationError(str(err), type="SecretsError", non_retryable=True) from None
    if out.status != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])[-300:] or "(no stderr)"
        raise ApplicationError(f"machine {machine.id}: apt-get install --only-upgrade {' '.join(input.packages)}"
                               f" failed (exit {out.status}): {tail}", type="OsUpdateFailed")
    upgradable, reboot = facts(out.stdout)
    return OsUpdateResult(upgradable=upgradable, reboot_required=reboot)


ACTIVITIES = [check_updates, apply_os_updates]
