"""The Compute API as the GCE runtime uses it: clients, waiting on operations, and GCE's errors as
one line.

Two traps of google-cloud-compute are handled here once. `insert(...)` returns an operation whose
`.result()` polls through a client built without the endpoint override, so every change uses the
`*_unary` call and waits through the zone/region/global operations client built with the same
options. And an operation that ends DONE with `error.errors` is a failure the library does not
raise: `wait` raises it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, TypeVar

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import compute_v1
from google.oauth2 import service_account

from orbiter.models.errors import one_line
from orbiter.models.providers.gce import GceProvider

from ..base import ProviderError, SecretReader

SCOPE = "https://www.googleapis.com/auth/compute"
WAIT_SECONDS = 120.0  # how long one operations.wait call may block (GCE returns by then)
OPERATION_TIMEOUT = 1200.0
CALL_ATTEMPTS = 4  # a change whose answer was lost is sent again with the same requestId
T = TypeVar("T")

# Reasons an operator has to act on (raise a quota, grant a role, pick another name or image):
# retrying cannot help, so the cluster goes Blocked with GCE's words.
FINAL_REASONS = {"QUOTA_EXCEEDED", "quotaExceeded", "forbidden", "insufficientPermissions", "accessNotConfigured",
                 "invalid", "badRequest", "required", "notFound", "alreadyExists", "resourceInUseByAnotherResource",
                 "ZONE_RESOURCE_POOL_EXHAUSTED", "invalidParameter", "conditionNotMet"}


class GceError(ProviderError):
    """A Compute API call failed: `{what}: {REASON}: {GCE's message}`, one line."""

    def __init__(self, what: str, reason: str, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(one_line(f"{what}: {reason}: {message}" if reason else f"{what}: {message}"))
        self.reason, self.status, self.retryable = reason, status, retryable


def _reason(err: gexc.GoogleAPICallError) -> tuple[str, str]:
    """(reason, message) as GCE wrote them in the error body."""
    for item in err.errors or []:
        if isinstance(item, dict):
            return str(item.get("reason") or item.get("code") or ""), str(item.get("message") or err.message)
    message = err.message or ""
    if ": " in message and message.split(" ", 1)[0] in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        message = message.split(": ", 1)[1]  # "POST http://...: text" -> "text"
    return getattr(err, "reason", None) or type(err).__name__, message


def as_gce_error(what: str, err: BaseException) -> GceError:
    if isinstance(err, gexc.GoogleAPICallError):
        reason, message = _reason(err)
        code = int(err.code) if err.code is not None else None
        final = reason in FINAL_REASONS or code in (400, 401, 403, 404, 409)
        if reason in ("rateLimitExceeded", "userRateLimitExceeded"):
            final = False
        return GceError(what, reason, message, retryable=not final, status=code)
    if isinstance(err, auth_exc.RefreshError):
        return GceError(what, "credentials", f"refused: {err.args[0] if err.args else 'no reason'}", retryable=False)
    if isinstance(err, auth_exc.DefaultCredentialsError):
        return GceError(what, "credentials", "no credentialsSecret and no Application Default Credentials on the"
                        " worker: add a service-account key as a secret and name it in credentialsSecret", False)
    if isinstance(err, (requests.RequestException, auth_exc.TransportError, OSError)):
        return GceError(what, "unreachable", f"the Compute API did not answer ({type(err).__name__})", True)
    raise err


@contextmanager
def gce_call(what: str) -> Iterator[None]:
    """Any failure of the Compute API inside as a GceError naming `what` and GCE's reason."""
    try:
        yield
    except GceError:
        raise
    except (gexc.GoogleAPICallError, auth_exc.GoogleAuthError, requests.RequestException, OSError) as err:
        raise as_gce_error(what, err) from None


def request_id(*parts: str) -> str:
    """GCE requestIds are UUIDs: the same parts give the same one, so a change sent again (a lost
    answer, a retried activity) is recognised by GCE and never applied twice."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "orbiter:" + "/".join(parts)))


def attempt_key() -> str:
    """What tells one activity apart from another and stays the same when Temporal retries it (the
    workflow run and the activity id): part of every requestId, so a retry is recognised and a
    later, intentional re-creation is not mistaken for it."""
    from temporalio import activity

    if not activity.in_activity():
        return uuid.uuid4().hex
    info = activity.info()
    return f"{info.workflow_run_id}/{info.activity_id}"


def credentials(spec: GceProvider, provider: str, secret: SecretReader | None) -> Any:
    """The service-account key from credentialsSecret, or the worker's Application Default
    Credentials. Never part of a message: a key that does not parse is named, not shown."""
    if spec.credentials_secret is None:
        try:
            creds, _ = google.auth.default(scopes=[SCOPE])
        except auth_exc.DefaultCredentialsError as err:
            raise as_gce_error(f"provider {provider}", err) from None
        return creds
    if secret is None:
        raise ProviderError(f"provider {provider}: credentialsSecret {spec.credentials_secret} cannot be read here")
    try:
        info = json.loads(secret(spec.credentials_secret))
        return service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    except (ValueError, TypeError, KeyError) as err:
        detail = str(err) if "missing fields" in str(err) else type(err).__name__
        raise GceError(f"provider {provider}", "credentials", f"secret {spec.credentials_secret} is not a"
                       f" service-account key (JSON with client_email, private_key, token_uri): {detail}",
                       retryable=False) from None


class Api:
    """The clients one runtime uses, sharing credentials and the endpoint override."""

    def __init__(self, spec: GceProvider, provider: str, secret: SecretReader | None) -> None:
        self.spec, self.provider = spec, provider
        self.project, self.region = spec.project, spec.region_name()
        self._secret = secret
        self.options = {"api_endpoint": spec.endpoint} if spec.endpoint else None

    @cached_property
    def credentials(self) -> Any:
        return credentials(self.spec, self.provider, self._secret)

    def _client(self, cls: type[T]) -> T:
        return cls(credentials=self.credentials, client_options=self.options)  # type: ignore[call-arg]

    @cached_property
    def instances(self) -> compute_v1.InstancesClient:
        return self._client(compute_v1.InstancesClient)

    @cached_property
    def firewalls(self) -> compute_v1.FirewallsClient:
        return self._client(compute_v1.FirewallsClient)

    @cached_property
    def addresses(self) -> compute_v1.AddressesClient:
        return self._client(compute_v1.AddressesClient)

    @cached_property
    def health_checks(self) -> compute_v1.RegionHealthChecksClient:
        return self._client(compute_v1.RegionHealthChecksClient)

    @cached_property
    def backend_services(self) -> compute_v1.RegionBackendServicesClient:
        return self._client(compute_v1.RegionBackendServicesClient)

    @cached_property
    def instance_groups(self) -> compute_v1.InstanceGroupsClient:
        return self._client(compute_v1.InstanceGroupsClient)

    @cached_property
    def forwarding_rules(self) -> compute_v1.ForwardingRulesClient:
        return self._client(compute_v1.ForwardingRulesClient)

    @cached_property
    def zone_operations(self) -> compute_v1.ZoneOperationsClient:
        return self._client(compute_v1.ZoneOperationsClient)

    @cached_property
    def region_operations(self) -> compute_v1.RegionOperationsClient:
        return self._client(compute_v1.RegionOperationsClient)

    @cached_property
    def global_operations(self) -> compute_v1.GlobalOperationsClient:
        return self._client(compute_v1.GlobalOperationsClient)

    # -- changes ------------------------------------------------------------------------------
    @staticmethod
    def unary(method: Callable[..., compute_v1.Operation], request: Any = None, **fields: Any) -> compute_v1.Operation:
        """A `*_unary` call with its fields as a request (requestId is no flattened argument)."""
        return method(request=request if request is not None else fields)

    def change(self, what: str, call: Callable[[], compute_v1.Operation], progress: Callable[[str], None],
               missing_ok: bool = False, exists_ok: bool = False) -> compute_v1.Operation | None:
        """Send a change (its request carries a requestId) and wait until GCE has done it.

        An answer lost on the way (a dropped connection, a 5xx) is sent again: GCE knows the
        requestId and answers with the first operation instead of acting twice. `missing_ok`: a
        404 means done (deleting what is gone); `exists_ok`: a 409 means done (creating what is there)."""
        for attempt in range(1, CALL_ATTEMPTS + 1):
            try:
                with gce_call(what):
                    op = call()
                return self.wait(what, op, progress)
            except GceError as err:
                if missing_ok and err.status == 404 or exists_ok and err.status == 409:
                    return None
                if not err.retryable or attempt == CALL_ATTEMPTS or err.status is not None and err.status < 500:
                    raise
                progress(f"{what}: {err.reason}, sending it again (attempt {attempt + 1})")
                time.sleep(min(2.0 * attempt, 10.0))
        return None

    def wait(self, what: str, op: compute_v1.Operation, progress: Callable[[str], None]) -> compute_v1.Operation:
        """Until the operation is DONE, through the operations client of its scope; its errors raised."""
        deadline = time.monotonic() + OPERATION_TIMEOUT
        done = compute_v1.Operation.Status.DONE
        while op.status != done:
            if time.monotonic() > deadline:
                raise GceError(what, "timeout", f"operation {op.name} not done after {OPERATION_TIMEOUT:.0f}s", True)
            progress(f"{what}: {compute_v1.Operation.Status(op.status).name.lower()}")
            with gce_call(what):
                if op.zone:
                    op = self.zone_operations.wait(project=self.project, zone=op.zone.rsplit("/", 1)[-1],
                                                   operation=op.name, timeout=WAIT_SECONDS + 30)
                elif op.region:
                    op = self.region_operations.wait(project=self.project, region=op.region.rsplit("/", 1)[-1],
                                                     operation=op.name, timeout=WAIT_SECONDS + 30)
                else:
                    op = self.global_operations.wait(project=self.project, operation=op.name,
                                                     timeout=WAIT_SECONDS + 30)
        if op.error and op.error.errors:
            first = op.error.errors[0]
            status = op.http_error_status_code or None
            final = first.code in FINAL_REASONS or (status is not None and 400 <= status < 500)
            raise GceError(what, first.code, first.message, retryable=not final, status=status)
        return op

    def get(self, what: str, call: Callable[[], T]) -> T | None:
        """A resource, or None when GCE says it does not exist."""
        try:
            with gce_call(what):
                return call()
        except GceError as err:
            if err.status == 404:
                return None
            raise
