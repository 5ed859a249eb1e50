"""Provider activities: a workflow asks for machines and never knows which provider made them."""

import fnmatch
import io
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import paramiko
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.models.desired import GceProvider, LocalProvider, StaticProvider, default_secret_names
from orbiter.models.machines import Machine
from orbiter.models.provision import (
    AcquireMachinesInput,
    AcquireMachinesResult,
    BootIdInput,
    BootIdResult,
    EnsureKeysInput,
    EnsureKeysResult,
    PreparePackagesInput,
    PreparePackagesResult,
    RebootMachineInput,
    ReleaseMachineInput,
    remote_pins,
)
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretsError, parse_secrets_file, seal
from orbiter.worker.masterkey import load_master_key

from .aptrepo import AptRepo
from .progress import heartbeating
from .providers.local import LocalProvider as LocalMachines
from .providers.local import LocalProviderError
from .repo import read_file
from .secretstore import resolve_secret
from .ssh import (
    AuthFailed,
    SshError,
    SshSession,
    Unreachable,
    adopt,
    connect,
    forget,
    generate_ed25519,
    pooled,
    prove_login,
)


def _fail(err: Exception) -> ApplicationError:
    """Map errors to Temporal: auth and host key problems need an operator, the rest is retried."""
    retry = isinstance(err, (Unreachable, LocalProviderError)) and not str(err).startswith(
        "the local provider needs root")
    return ApplicationError(str(err).splitlines()[0], type=type(err).__name__, non_retryable=not retry)


def _has_secret(ref: SecretsRef, name: str, text: str | None) -> bool:
    existing = parse_secrets_file(text)
    return name in ref.extra or (existing is not None and name in existing.secrets)


@contextmanager
def _as_application_errors() -> Iterator[None]:
    """One mapping of provider failures to Temporal errors for every provider activity."""
    try:
        yield
    except (SshError, LocalProviderError) as err:
        raise _fail(err) from None
    except SecretsError as err:
        raise ApplicationError(str(err), type="SecretsError", non_retryable=True) from None


@activity.defn
def ensure_provider_keys(input: EnsureKeysInput) -> EnsureKeysResult:
    """Generate each provider's maintenance key once; idempotent through the secrets it checks."""
    text = read_file(input.secrets.repo, input.secrets.commit, "secrets.yml")
    sealed: dict[str, str] = {}
    master = load_master_key()
    for name, provider in sorted(input.providers.items()):
        if isinstance(provider, GceProvider):
            continue  # GCE machines get their key through instance metadata
        names = default_secret_names(name)
        if _has_secret(input.secrets, names["maintenance"], text):
            continue
        private, public = generate_ed25519()
        sealed[names["maintenance"]] = seal(master, names["maintenance"], private.encode())
        sealed[names["maintenance_pub"]] = seal(master, names["maintenance_pub"], public.encode())
    return EnsureKeysResult(sealed_secrets=sealed)


def _public_blob(private_key: str) -> str:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(private_key)).get_base64()
        except (paramiko.SSHException, ValueError):
            continue
    raise SecretsError("the bootstrap key is not a private key paramiko can read (ed25519, ecdsa or rsa)")


def switch_to_maintenance_key(machine: Machine, bootstrap_private: str, maintenance_private: str,
                              maintenance_public: str) -> Machine:
    """Install the maintenance key, prove it logs in, then remove the bootstrap key.

    In that order, so a crash at any line leaves a machine that one of the two keys still opens,
    and a retry finishes the job. On first contact one session does it all: the bootstrap login
    installs the key, a login-only connection proves it, the same session removes the bootstrap
    key and then serves the node agent from the pool."""
    bootstrap_blob = _public_blob(bootstrap_private)
    if bootstrap_blob in maintenance_public:
        # Removing the bootstrap key would then lock orbiter out of the machine.
        raise SecretsError(f"machine {machine.id}: the bootstrap key is the maintenance key; give a key of its own")
    if machine.host_key is None:
        # Orbiter has not reached this machine yet, so the bootstrap key is the one that opens it;
        # unless a run cut short already removed it, and then the maintenance key below does.
        try:
            boot = connect(machine, bootstrap_private)
        except AuthFailed:
            boot = None
        if boot is not None:
            try:
                machine = machine.model_copy(update={"host_key": boot.host_key})
                _install_key(boot, maintenance_public)
                try:
                    prove_login(machine, maintenance_private)
                except AuthFailed:
                    raise AuthFailed(
                        f"machine {machine.id} ({machine.user}@{machine.ip}): the maintenance key does not log in"
                        " after it was added to authorized_keys (does sshd read another AuthorizedKeysFile?);"
                        " the bootstrap key was kept"
                    ) from None
                _remove_key(boot, bootstrap_blob)
            except BaseException:
                boot.close()
                raise
            adopt(boot, maintenance_private)
            return machine
    try:
        return _remove_bootstrap_key(machine, maintenance_private, bootstrap_blob)
    except AuthFailed:
        # Seen before but the maintenance key is not on it yet: a switch cut short before the install.
        with connect(machine, bootstrap_private) as boot:
            machine = machine.model_copy(update={"host_key": boot.host_key})
            _install_key(boot, maintenance_public)
        return _remove_bootstrap_key(machine, maintenance_private, bootstrap_blob)


def _install_key(boot: SshSession, maintenance_public: str) -> None:
    line = shlex.quote(maintenance_public.strip())
    boot.run(
        "home=$(getent passwd \"$SUDO_USER\" | cut -d: -f6); [ -n \"$home\" ] || home=$HOME;"
        f" user=$(id -un); [ -n \"$SUDO_USER\" ] && user=$SUDO_USER;"
        " f=\"$home/.ssh/authorized_keys\"; mkdir -p \"$home/.ssh\" && touch \"$f\" &&"
        # A file without a final newline would glue our key onto its last line.
        " ([ -z \"$(tail -c1 \"$f\")\" ] || echo >> \"$f\") &&"
        f" (grep -qxF {line} \"$f\" || echo {line} >> \"$f\") &&"
        " chown -R \"$user\" \"$home/.ssh\" && chmod 700 \"$home/.ssh\" && chmod 600 \"$f\"",
        check=True,
    )


def _remove_key(session: SshSession, blob: str) -> None:
    session.run(
        "home=$(getent passwd \"${SUDO_USER:-$(id -un)}\" | cut -d: -f6);"
        " f=\"$home/.ssh/authorized_keys\";"
        f" [ -f \"$f\" ] && grep -vF {shlex.quote(blob)} \"$f\" > \"$f.orbiter\";"
        " [ -f \"$f.orbiter\" ] && cat \"$f.orbiter\" > \"$f\" && rm -f \"$f.orbiter\"; true",
        check=True,
    )


def _remove_bootstrap_key(machine: Machine, maintenance_private: str, bootstrap_blob: str) -> Machine:
    """Log in with the maintenance key (proving it works) and remove the bootstrap key.

    The session stays in the worker's pool for the node agent's first round."""
    with pooled(machine, maintenance_private) as session:
        _remove_key(session, bootstrap_blob)
        return machine.model_copy(update={"host_key": session.host_key})


def _static_machines(input: AcquireMachinesInput, provider: StaticProvider) -> list[Machine]:
    names = default_secret_names(input.provider_name)
    bootstrap = resolve_secret(input.secrets, provider.bootstrap_key_secret or names["bootstrap"]).decode()
    maintenance = resolve_secret(input.secrets, names["maintenance"]).decode()
    maintenance_pub = resolve_secret(input.secrets, names["maintenance_pub"]).decode()
    listed = {m.id: m for m in provider.pools.get(input.pool, [])}
    machines: list[Machine] = []
    for mid in input.machine_ids:
        spec = listed.get(mid)
        if spec is None:
            raise ApplicationError(f"static provider {input.provider_name} has no machine {mid} in pool {input.pool}",
                                   type="UnknownMachine", non_retryable=True)
        machines.append(Machine(id=mid, provider=input.provider_name, provider_kind="static", pool=input.pool,
                                ip=spec.ip, user=provider.remote_user, key_secret=names["maintenance"],
                                host_key=input.host_keys.get(mid)))
    activity.heartbeat(len(machines))
    # Machines are independent: switch their keys at the same time.
    with ThreadPoolExecutor(max_workers=min(16, len(machines) or 1)) as pool:
        return list(pool.map(lambda m: switch_to_maintenance_key(m, bootstrap, maintenance, maintenance_pub),
                             machines))


def local_provider(name: str, provider: LocalProvider) -> LocalMachines:
    return LocalMachines(name, subnet=provider.subnet, image=provider.image)


@activity.defn
def acquire_machines(input: AcquireMachinesInput) -> AcquireMachinesResult:
    """Machines for a pool: created (local), taken into use (static). Idempotent by machine id."""
    provider = input.provider
    with _as_application_errors():
        if isinstance(provider, LocalProvider):
            return AcquireMachinesResult(machines=_local_machines(input, provider))
        if isinstance(provider, StaticProvider):
            return AcquireMachinesResult(machines=_static_machines(input, provider))
        raise ApplicationError(f"provider {input.provider_name}: creating GCE machines is not supported yet",
                               type="Unsupported", non_retryable=True)


def _local_machines(input: AcquireMachinesInput, provider: LocalProvider) -> list[Machine]:
    names = default_secret_names(input.provider_name)
    public = resolve_secret(input.secrets, names["maintenance_pub"]).decode()
    maintenance = resolve_secret(input.secrets, names["maintenance"]).decode()
    with heartbeating() as progress:
        created = local_provider(input.provider_name, provider).create(
            input.pool, input.machine_ids, public, names["maintenance"], progress)

    def pin(machine: Machine) -> Machine:
        # A machine seen before keeps its pinned host key; a new one is pinned on first contact.
        machine = machine.model_copy(update={"host_key": input.host_keys.get(machine.id)})
        with connect(machine, maintenance) as session:
            return machine.model_copy(update={"host_key": session.host_key})

    with ThreadPoolExecutor(max_workers=min(16, len(created) or 1)) as pool:
        return list(pool.map(pin, created))


@activity.defn
def release_machine(input: ReleaseMachineInput) -> None:
    """Take a machine out of use: delete it (local) or undo what orbiter put on it (static)."""
    provider = input.provider
    with _as_application_errors():
        if isinstance(provider, LocalProvider):
            local_provider(input.provider_name, provider).delete(input.machine.id)
        elif isinstance(provider, StaticProvider):
            key = resolve_secret(input.secrets, input.machine.key_secret).decode()
            script = ["set +e"]
            script += [f"systemctl disable --now {shlex.quote(unit)} 2>/dev/null" for unit in input.units]
            script += [f"rm -rf {shlex.quote(path)}" for path in input.files + input.data_dirs]
            if input.packages:
                # orbiter held them: apt refuses to remove held packages unless told.
                names = " ".join(shlex.quote(p) for p in input.packages)
                script += [
                    f"installed=$(dpkg-query -W -f='${{Package}} ${{Status}}\\n' {names} 2>/dev/null"
                    " | awk '/ installed$/ {print $1}')",
                    'if [ -n "$installed" ]; then',
                    "  DEBIAN_FRONTEND=noninteractive apt-get remove -y -q --allow-change-held-packages $installed"
                    ' >/tmp/orbiter-release.log 2>&1 || { tail -n 3 /tmp/orbiter-release.log >&2; exit 1; }',
                    "fi",
                ]
            script.append("systemctl daemon-reload; true")
            with connect(input.machine, key) as session:
                session.run("\n".join(script), check=True)


BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
REBOOT_TIMEOUT = 600.0


def _boot_id(machine: Machine, key: str) -> str | None:
    """The machine's current boot id, or None while it does not answer."""
    try:
        with connect(machine, key, timeout=5) as session:
            return session.run(BOOT_ID, check=True).stdout.strip()
    except Unreachable:
        return None


@activity.defn
def machine_boot_id(input: BootIdInput) -> BootIdResult:
    with _as_application_errors():
        key = resolve_secret(input.secrets, input.machine.key_secret).decode()
        boot = _boot_id(input.machine, key)
        if boot is None:
            raise Unreachable(f"machine {input.machine.id} ({input.machine.ip}) does not answer on SSH")
        return BootIdResult(boot_id=boot)


@activity.defn
def reboot_machine(input: RebootMachineInput) -> None:
    """Reboot through the provider and wait until SSH answers from a new boot.

    Idempotent: the reboot only happens while the machine still runs the boot the caller saw.
    """
    machine, provider = input.machine, input.provider
    with _as_application_errors():
        key = resolve_secret(input.secrets, machine.key_secret).decode()
        if _boot_id(machine, key) == input.boot_id:
            forget(machine)
            if isinstance(provider, LocalProvider):
                local_provider(input.provider_name, provider).reboot(machine.id)
            else:
                with connect(machine, key) as session:
                    # Detached, so the SSH command returns before the machine goes down.
                    session.run("systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot",
                                check=True)
        deadline = time.monotonic() + REBOOT_TIMEOUT
        while True:
            activity.heartbeat(f"waiting for {machine.id} to boot")
            boot = _boot_id(machine, key)
            if boot is not None and boot != input.boot_id:
                return
            if time.monotonic() > deadline:
                raise Unreachable(f"machine {machine.id} did not come back within {REBOOT_TIMEOUT:.0f}s of a reboot")
            time.sleep(1)


@activity.defn
def prepare_packages(input: PreparePackagesInput) -> PreparePackagesResult:
    """Exact apt versions for the wanted upstream versions; local providers also serve them."""
    provider = input.provider
    if not isinstance(provider, LocalProvider):
        # Static and GCE machines install from their own mirrors; the agent pins `<version>*`.
        return PreparePackagesResult(versions=remote_pins(input.packages))
    try:
        with heartbeating() as progress:
            repo = AptRepo(local_provider(input.provider_name, provider))
            # Packages the repo already serves at the wanted version (e.g. built locally and added
            # to it) are taken as they are; the rest come from the host's apt.
            versions = served_versions(repo.served_versions(), input.packages)
            versions |= resolve_host_versions({n: v for n, v in input.packages.items() if n not in versions})
            repo.ensure_packages(sorted(versions.items()), progress)
            repo.ensure_served()
            return PreparePackagesResult(versions=versions, apt_source=repo.source_line())
    except ApplicationError:
        raise
    except Exception as err:  # noqa: BLE001 - one line for the cluster's status
        raise ApplicationError(f"provider {input.provider_name}: packages: {str(err).splitlines()[0]}",
                               type="PackagesError") from None


ANY = "*"  # a wanted version meaning "the newest version offered"


def upstream(version: str) -> str:
    """"3.4.23-4+b6" -> "3.4.23"; "1:2.0-1" -> "2.0"."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def wanted_matches(version: str, wanted: str) -> bool:
    """An apt version against a wanted one: "*" (any), an upstream pattern ("1.30.*"), exact."""
    if wanted == ANY or version == wanted:
        return True
    return fnmatch.fnmatchcase(upstream(version), wanted) if "*" in wanted else upstream(version) == wanted


def version_key(version: str) -> list[tuple[int, int | str]]:
    """Orders apt versions numerically where they are numbers ("1.30.10" after "1.30.6")."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.:~+-]", version)]


def served_versions(served: dict[str, set[str]], packages: dict[str, str]) -> dict[str, str]:
    """The exact versions of wanted packages a repo already serves; the highest when several match."""
    out: dict[str, str] = {}
    for name, wanted in packages.items():
        match = sorted((v for v in served.get(name, set()) if wanted_matches(v, wanted)), key=version_key)
        if match:
            out[name] = match[-1]
    return out


def _offered(name: str) -> list[str]:
    """The versions of a package the host's apt knows, newest first."""
    proc = subprocess.run(["apt-cache", "madison", name], capture_output=True, text=True, timeout=60)
    return [line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.count("|") >= 2]


def resolve_host_versions(packages: dict[str, str]) -> dict[str, str]:
    """The exact Debian versions the host's apt offers for wanted upstream versions."""
    out: dict[str, str] = {}
    updated = False
    for name, wanted in packages.items():
        offered = _offered(name)
        match = [v for v in offered if wanted_matches(v, wanted)]
        if not match and not updated:
            # The host's package lists may never have been fetched (a fresh machine) or be stale.
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False, timeout=600)
            updated = True
            offered = _offered(name)
            match = [v for v in offered if wanted_matches(v, wanted)]
        if not match:
            have = ", ".join(sorted({upstream(v) for v in offered})) or "none"
            raise ApplicationError(f"package {name} {wanted} is not available (apt offers: {have})",
                                   type="PackagesError", non_retryable=True)
        out[name] = match[0]
    return out
