"""Commands for a cluster on the first of its machines that answers, one session kept across calls.

etcdctl and kubectl run on a cluster's own machines (they hold the certificates and reach every
member), so the worker needs no route to the cluster. Which machine does not matter; that one
answers does: a machine that is down passes the command to the next, while a wrong key or host
key is what the caller hears when none answers, since retrying cannot fix it.
"""

import contextlib
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError

from orbiter.models.errors import one_line
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretsError

from .secretstore import resolve_secret
from .ssh import AuthFailed, HostKeyChanged, SshError, SshSession, Unreachable, connect, pooled

COMMAND_TIMEOUT = 120.0
OkCheck = Callable[[int, str, str], bool]


class Remote:
    def __init__(self, label: str, machines: list[Machine], secrets: SecretsRef, *, pool: bool = True,
                 scrub: Callable[[str], str] = lambda text: text,
                 detail: Callable[[str, str], str] | None = None) -> None:
        """`label` names the cluster in every message ("etcd cluster meta"); `pool` keeps the
        session in the worker's pool afterwards; `scrub` removes secrets from messages; `detail`
        picks the line of a failed command's output that explains it (default: its last words)."""
        self.label, self.machines, self.secrets = label, machines, secrets
        self.pool, self.scrub = pool, scrub
        self.detail = detail or (lambda stdout, stderr: one_line(stderr or stdout))
        self.session: SshSession | None = None
        self.machine: Machine | None = None
        self._held = contextlib.ExitStack()

    def where(self) -> str:
        return self.label + (f" on machine {self.machine.id}" if self.machine else "")

    def close(self) -> None:
        if self.session is not None:
            self._held.close()
            self.session = None

    def _open(self, machine: Machine, key: str) -> SshSession:
        if self.pool:
            return self._held.enter_context(pooled(machine, key))
        session = connect(machine, key)
        self._held.callback(session.close)
        return session

    def _connect(self) -> SshSession:
        unreachable: list[str] = []
        refused: ApplicationError | None = None
        for machine in self.machines:
            try:
                key = resolve_secret(self.secrets, machine.key_secret).decode()
                self.session, self.machine = self._open(machine, key), machine
                return self.session
            except (AuthFailed, HostKeyChanged, SecretsError) as err:
                refused = refused or ApplicationError(
                    f"{self.label} on machine {machine.id}: {one_line(str(err))}", type=type(err).__name__,
                    non_retryable=True)
            except SshError as err:
                unreachable.append(one_line(str(err), 200))
        if refused is not None:
            raise refused
        detail = "; ".join(unreachable) or "no machines given"
        raise ApplicationError(f"{self.label}: no machine answers: {detail}", type="Unreachable")

    def run(self, script: str, what: str, error_type: str, timeout: float = COMMAND_TIMEOUT,
            ok: OkCheck | None = None) -> str:
        """Run `script` and return its stdout; a lost connection tries the next machine once.
        A failure `ok` accepts counts as success (an idempotent step already done)."""
        for _ in range(2):
            session = self.session or self._connect()
            try:
                r = session.run(script, timeout=timeout)
            except Unreachable:
                self.close()
                continue
            except SshError as err:
                raise ApplicationError(f"{self.where()}: {what}: {self.scrub(one_line(str(err)))}",
                                       type="SshError") from None
            if r.status != 0 and not (ok and ok(r.status, r.stdout, r.stderr)):
                detail = self.scrub(self.detail(r.stdout, r.stderr)) or "(no output)"
                raise ApplicationError(f"{self.where()}: {what} exited with {r.status}: {detail}", type=error_type)
            return r.stdout
        raise ApplicationError(f"{self.where()}: {what}: connection lost twice", type="Unreachable")

    def connected(self) -> SshSession:
        """The session (opened on the first machine that answers), for callers that stream."""
        return self.session or self._connect()

    def exists(self, path: str, error_type: str) -> bool:
        return self.run(f"test -e {shlex.quote(path)} && echo yes || echo no", f"test {path}",
                        error_type).strip() == "yes"

    def upload(self, path: str, content: str, directory: str) -> None:
        """A root-only file in a root-only directory (configs that hold secrets for one call)."""
        session = self.session or self._connect()
        try:
            session.run(f"mkdir -p {shlex.quote(directory)} && chmod 700 {shlex.quote(directory)}", check=True)
            session.upload(path, content.encode(), mode="0600")
        except SshError as err:
            raise ApplicationError(f"{self.where()}: writing {path}: {self.scrub(one_line(str(err)))}",
                                   type="SshError") from None


@contextmanager
def remote(label: str, machines: list[Machine], secrets: SecretsRef, **options: object) -> Iterator[Remote]:
    r = Remote(label, machines, secrets, **options)  # type: ignore[arg-type]
    try:
        yield r
    finally:
        r.close()
