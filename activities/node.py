"""Node agent activities: observe a machine and apply changes to it, each over one SSH session.

Sync activities (run in the worker's thread pool). Errors become ApplicationErrors whose type
tells the workflow's retry policy what to do: Unreachable and SshError (timeouts) are retried,
a wrong key, a changed host key, bad secrets or a failed step are not (retrying cannot fix
them; the next spec or drift round tries again). Messages are one line naming the machine and
never hold a secret value.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.progress import heartbeating
from orbiter.activities.secretstore import resolve_secret
from orbiter.activities.ssh import (
    AuthFailed,
    HostKeyChanged,
    SshError,
    SshSession,
    Unreachable,
    pooled,
)
from orbiter.agent.apply import ApplyError, apply_changes
from orbiter.agent.observe import ObserveError, observe_script, parse_observation
from orbiter.agent.plan import plan, secret_files, sha256
from orbiter.models.claims import claim_conflict, parse_claim
from orbiter.models.errors import one_line
from orbiter.models.machines import Machine
from orbiter.models.node import (
    ConvergeNodeInput,
    ConvergeNodeResult,
)
from orbiter.models.nodespec import NodeObserved, NodeSpec
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretsError

# Opaque digests for content_secret files: the plan compares them, nobody can invert them.
SECRET_CURRENT = "secret:current"
SECRET_STALE = "secret:stale"
OBSERVE_TIMEOUT = 120.0
APPLY_TIMEOUT = 1800.0


def _error(machine: Machine, err: Exception) -> ApplicationError:
    """The ApplicationError for `err`; its type name drives the workflow's retry policy."""
    msg = one_line(str(err), 500) or type(err).__name__
    if f"machine {machine.id}" not in msg:
        msg = f"machine {machine.id}: {msg}"
    if isinstance(err, Unreachable):
        return ApplicationError(msg, type="Unreachable")
    for cls in (AuthFailed, HostKeyChanged, SecretsError, ApplyError, ObserveError):
        if isinstance(err, cls):
            return ApplicationError(msg, type=cls.__name__, non_retryable=True)
    return ApplicationError(msg, type="SshError")


@contextmanager
def _session(machine: Machine, secrets: SecretsRef) -> Iterator[SshSession]:
    """An SSH session; every known failure leaves as an ApplicationError."""
    try:
        key = resolve_secret(secrets, machine.key_secret).decode()
        with pooled(machine, key) as session:
            yield session
    except (SshError, SecretsError, ApplyError, ObserveError) as err:
        raise _error(machine, err) from None


def _observe(
    session: SshSession, machine: Machine, spec: NodeSpec, secrets: SecretsRef
) -> tuple[NodeObserved, dict[str, str]]:
    """One round trip: what the machine has of everything the spec mentions, and the digests
    its secret files must have (opaque tokens: the history never sees a hash of a secret)."""
    r = session.run("sh -s", stdin=observe_script(spec).encode(), timeout=OBSERVE_TIMEOUT)
    if r.status != 0:
        tail = one_line(r.stderr) or "(no stderr)"
        raise _error(machine, ObserveError(f"observe exited with {r.status}: {tail}"))
    try:
        observed = parse_observation(spec, r.stdout)
    except ObserveError as err:
        raise _error(machine, err) from None
    # Compare secret files here, where the value may live; history sees only tokens.
    digests: dict[str, str] = {}
    for f in secret_files(spec):
        try:
            want = sha256(resolve_secret(secrets, f.content_secret or ""))
        except SecretsError as err:
            raise _error(machine, err) from None
        have = observed.files.get(f.path)
        if have is not None:
            observed.files[f.path] = SECRET_CURRENT if have == want else SECRET_STALE
        digests[f.path] = SECRET_CURRENT
    return observed, digests


def _check_claim(machine: Machine, spec: NodeSpec, observed: NodeObserved) -> None:
    """Another orb's claim on the machine stops the round before anything changes on it."""
    owner = parse_claim(spec.claim)
    if owner is None:
        return
    if conflict := claim_conflict(machine.id, machine.provider, owner[0], owner[1], observed.claim):
        raise ApplicationError(conflict, type="MachineClaimed", non_retryable=True)


@activity.defn
def converge_node(input: ConvergeNodeInput) -> ConvergeNodeResult:
    """Observe, plan and apply in one activity over one session. `plan` is pure and its changes
    are in the result, so the history shows what was done; a retry observes afresh."""
    machine = input.machine

    def secret(name: str) -> bytes:
        return resolve_secret(input.secrets, name)

    with heartbeating("start") as progress, _session(machine, input.secrets) as session:
        progress("observe")
        observed, digests = _observe(session, machine, input.spec, input.secrets)
        _check_claim(machine, input.spec, observed)
        changes = plan(input.spec, observed, digests)
        if changes:
            apply_changes(
                session,
                input.spec,
                changes,
                label=f"machine {machine.id}",
                secret_content=secret,
                progress=progress,
                timeout=APPLY_TIMEOUT,
            )
        return ConvergeNodeResult(observed=observed, changes=changes, host_key=session.host_key)


ACTIVITIES = [converge_node]
