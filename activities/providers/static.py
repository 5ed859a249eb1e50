"""The static provider at run time: machines that exist already, taken over with a bootstrap key.

Taking a machine over installs the provider's maintenance key, proves it logs in and removes the
bootstrap key, in that order, so a crash at any line leaves a machine that one of the two keys
still opens. Releasing one undoes what orbiter put on it (units, files, held packages); the
machine itself is not orbiter's to delete.
"""

import io
import shlex
from concurrent.futures import ThreadPoolExecutor

import paramiko
from temporalio.exceptions import ApplicationError

from orbiter.activities.secretstore import resolve_secret
from orbiter.activities.ssh import AuthFailed, SshSession, adopt, connect, pooled, prove_login
from orbiter.models.claims import CLAIM_FILE, parse_claim
from orbiter.models.machines import Machine
from orbiter.models.providers.static import StaticProvider
from orbiter.models.provision import AcquireMachinesInput, ReleaseMachineInput
from orbiter.models.secrets import SecretsError

from .base import Claim, Progress, ProviderRuntime, claim_machine


def _public_key(private_key: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(private_key))
        except (paramiko.SSHException, ValueError):
            continue
    raise SecretsError("the bootstrap key is not a private key paramiko can read (ed25519, ecdsa or rsa)")


def _public_blob(private_key: str) -> str:
    return _public_key(private_key).get_base64()


def _public_line(private_key: str) -> str:
    key = _public_key(private_key)
    return f"{key.get_name()} {key.get_base64()} orbiter-bootstrap"


def switch_to_maintenance_key(machine: Machine, bootstrap_private: str, maintenance_private: str,
                              maintenance_public: str, claim: Claim | None = None) -> Machine:
    """Claim the machine for (orb, cluster), install the maintenance key, prove it logs in, then
    remove the bootstrap key.

    In that order, so a crash at any line leaves a machine that one of the two keys still opens,
    and a retry finishes the job; a machine another orb claimed is left untouched. On first
    contact one session does it all: the bootstrap login claims and installs the key, a
    login-only connection proves it, the same session removes the bootstrap key and then serves
    the node agent from the pool."""
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
                claim_machine(boot, machine, claim)
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
        return _remove_bootstrap_key(machine, maintenance_private, bootstrap_blob, claim)
    except AuthFailed:
        # Seen before but the maintenance key is not on it yet: a switch cut short before the install.
        with connect(machine, bootstrap_private) as boot:
            machine = machine.model_copy(update={"host_key": boot.host_key})
            claim_machine(boot, machine, claim)
            _install_key(boot, maintenance_public)
        return _remove_bootstrap_key(machine, maintenance_private, bootstrap_blob, claim)


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


def _remove_bootstrap_key(machine: Machine, maintenance_private: str, bootstrap_blob: str,
                          claim: Claim | None = None) -> Machine:
    """Log in with the maintenance key (proving it works), check the claim, remove the bootstrap key.

    The session stays in the worker's pool for the node agent's first round."""
    with pooled(machine, maintenance_private) as session:
        claim_machine(session, machine, claim)
        _remove_key(session, bootstrap_blob)
        return machine.model_copy(update={"host_key": session.host_key})


class StaticRuntime(ProviderRuntime):
    spec: StaticProvider

    def acquire(self, input: AcquireMachinesInput, progress: Progress) -> list[Machine]:
        spec = self.spec
        bootstrap_name = spec.bootstrap_key_secret_name(self.name)
        assert bootstrap_name is not None
        bootstrap = resolve_secret(input.secrets, bootstrap_name).decode()
        maintenance = resolve_secret(input.secrets, spec.maintenance_key_secret(self.name)).decode()
        maintenance_pub = resolve_secret(input.secrets, spec.maintenance_pub_secret(self.name)).decode()
        machines: list[Machine] = []
        for mid in input.machine_ids:
            listed = spec.machine(input.pool, mid)
            if listed is None:
                raise ApplicationError(f"static provider {self.name} has no machine {mid} in pool {input.pool}",
                                       type="UnknownMachine", non_retryable=True)
            machines.append(Machine(id=mid, provider=self.name, pool=input.pool, ip=listed.ip, user=spec.remote_user,
                                    key_secret=spec.maintenance_key_secret(self.name),
                                    host_key=input.host_keys.get(mid)))
        progress("taking over " + ", ".join(m.id for m in machines))
        # Machines are independent: switch their keys at the same time.
        claim = Claim(input.orb, input.cluster, input.kind)
        with ThreadPoolExecutor(max_workers=min(16, len(machines) or 1)) as pool:
            return list(pool.map(lambda m: switch_to_maintenance_key(m, bootstrap, maintenance, maintenance_pub, claim),
                                 machines))

    def release(self, input: ReleaseMachineInput) -> None:
        """Undo what orbiter put on the machine, then hand it back as it came: the bootstrap key
        logs in again, the claim and the maintenance key are gone (the key last, in the same
        session). A retry after the key went finds the bootstrap key in and no claim: done."""
        spec = self.spec
        bootstrap_name = spec.bootstrap_key_secret_name(self.name)
        assert bootstrap_name is not None
        bootstrap = resolve_secret(input.secrets, bootstrap_name).decode()
        key = resolve_secret(input.secrets, input.machine.key_secret).decode()
        maintenance_blob = resolve_secret(input.secrets, spec.maintenance_pub_secret(self.name)).decode().split()[1]
        script = ["set +e"]
        script += [f"systemctl disable --now {shlex.quote(unit)} 2>/dev/null" for unit in input.units]
        script += [f"rm -rf {shlex.quote(path)}" for path in [*input.files, *input.data_dirs, CLAIM_FILE]]
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
        try:
            session = connect(input.machine, key)
        except AuthFailed:
            with connect(input.machine, bootstrap) as boot:
                if parse_claim(boot.run(f"cat {CLAIM_FILE} 2>/dev/null || true", check=True).stdout) is None:
                    return  # released already: a retry after the maintenance key went
                raise
        with session:
            session.run("\n".join(script), check=True)
            _install_key(session, _public_line(bootstrap))
            _remove_key(session, maintenance_blob)
