"""etcd activities: the cluster's certificates, and membership read and changed with etcdctl over SSH.

Sync activities (run in the worker's thread pool). Certificates are made here, in the worker,
and leave only sealed; etcdctl runs on a member machine (it holds the member certificate and
reaches every endpoint), so the worker needs no route to the cluster's client port. Errors are
one line naming the cluster and machine, never a secret value; their type drives retries:
Unreachable, SshError, EtcdctlError and EtcdUnhealthy are retried, AuthFailed, HostKeyChanged,
SecretsError, QuorumRefused and UnstartedMember need an operator or a different plan.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import shlex
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.models.etcd import (
    PKI_DIR,
    EnsureCertsInput,
    EnsureCertsResult,
    EtcdMemberInfo,
    EtcdStatusInput,
    EtcdStatusResult,
    EtcdTarget,
    MemberAddInput,
    MemberAddResult,
    MemberRemoveInput,
    WaitListeningInput,
    WaitListeningResult,
    ca_cert_secret,
    ca_secret,
    client_bundle_secret,
    member_cert_secret,
    member_key_secret,
)
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretBox, SecretsError, parse_secrets_file, seal, unseal
from orbiter.worker.masterkey import load_master_key

from .progress import heartbeat
from .repo import read_file
from .secretstore import resolve_secret
from .ssh import AuthFailed, HostKeyChanged, SshError, SshSession, Unreachable, pooled

CA_DAYS = 3650
LEAF_DAYS = 730
# A leaf this close to expiry is issued again, so a renewal rides the next rolling change.
RENEW_BEFORE = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(hours=1)
CLIENT_CN = "orbiter-client"
POLL_SECONDS = 0.5
ETCDCTL_TIMEOUT = 60.0
_MARK = "@@orbiter-etcd "
RECONFIG_WAIT = 30.0
UNHEALTHY = "etcdserver: unhealthy cluster"


# -- certificates ----------------------------------------------------------------------------


class _Secrets:
    """Existing secrets: sealed ones not yet committed first, else secrets.yml at the commit."""

    def __init__(self, ref: SecretsRef, master: bytes) -> None:
        self.ref, self.master = ref, master
        self.file = parse_secrets_file(read_file(ref.repo, ref.commit, "secrets.yml"))
        self._box: SecretBox | None = None

    def get(self, name: str) -> bytes | None:
        if name in self.ref.extra:
            return unseal(self.master, name, self.ref.extra[name])
        if self.file is None or name not in self.file.secrets:
            return None
        if self._box is None:
            self._box = SecretBox.for_file(self.master, self.file)
        return self._box.decrypt(name, self.file.secrets[name])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _load_cert(pem: bytes | str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError:
        return None


def _new_ca(cluster: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster} etcd CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    cn: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
) -> x509.Certificate:
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def member_sans(name: str, ip: str) -> list[x509.GeneralName]:
    """What a member is reached as: its IP (peers, clients), its name, and itself locally."""
    return [
        x509.IPAddress(ipaddress.ip_address(ip)),
        x509.DNSName(name),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]


def _san_set(sans: list[x509.GeneralName]) -> set[str]:
    return {f"{type(s).__name__}:{s.value}" for s in sans}


def _leaf_ok(
    cert: x509.Certificate | None,
    key: ec.EllipticCurvePrivateKey | None,
    ca: x509.Certificate,
    sans: list[x509.GeneralName] | None,
) -> bool:
    """Whether an existing leaf can stay: signed by this CA, for this key, not near expiry, same SANs."""
    if cert is None or key is None:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if cert.public_key() != key.public_key() or cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    if sans is None:
        return True
    try:
        have = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return False
    return _san_set(have) == _san_set(sans)


def _parse_bundle(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _ensure_certs(input: EnsureCertsInput) -> dict[str, bytes]:
    """The secrets to create or replace, as plain values (sealed by the caller)."""
    cluster = input.cluster
    master = load_master_key()
    have = _Secrets(input.secrets, master)
    out: dict[str, bytes] = {}

    ca_doc = _parse_bundle(have.get(ca_secret(cluster))) or {}
    ca = _load_cert(str(ca_doc.get("cert", "")))
    ca_key = _load_key(str(ca_doc.get("key", "")).encode())
    if ca is None or ca_key is None or ca.public_key() != ca_key.public_key():
        ca, ca_key = _new_ca(cluster)
        out[ca_secret(cluster)] = yaml.safe_dump({"cert": _pem(ca).decode(), "key": _key_pem(ca_key).decode()}).encode()
    ca_pem = _pem(ca)
    if have.get(ca_cert_secret(cluster)) != ca_pem:
        out[ca_cert_secret(cluster)] = ca_pem

    for member in input.members:
        sans = member_sans(member.name, member.ip)
        cert_name, key_name = member_cert_secret(cluster, member.name), member_key_secret(cluster, member.name)
        cert_raw, key_raw = have.get(cert_name), have.get(key_name)
        key = _load_key(key_raw) if key_raw else None
        if _leaf_ok(_load_cert(cert_raw) if cert_raw else None, key, ca, sans):
            continue
        if key is None:  # a new IP keeps the member's key: only the certificate changes
            key = ec.generate_private_key(ec.SECP256R1())
            out[key_name] = _key_pem(key)
        both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        out[cert_name] = _pem(_issue(ca, ca_key, key, member.name, sans, both))

    bundle = _parse_bundle(have.get(client_bundle_secret(cluster)))
    if bundle is None or bundle.get("endpoints") != input.endpoints or bundle.get("ca") != ca_pem.decode():
        cert = _load_cert(str((bundle or {}).get("cert", "")))
        key = _load_key(str((bundle or {}).get("key", "")).encode())
        if not _leaf_ok(cert, key, ca, None) or key is None or cert is None:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue(ca, ca_key, key, CLIENT_CN, [], [ExtendedKeyUsageOID.CLIENT_AUTH])
        doc = {
            "endpoints": list(input.endpoints),
            "ca": ca_pem.decode(),
            "cert": _pem(cert).decode(),
            "key": _key_pem(key).decode(),
        }
        out[client_bundle_secret(cluster)] = yaml.safe_dump(doc, sort_keys=False).encode()
    return out


@activity.defn
def ensure_etcd_certs(input: EnsureCertsInput) -> EnsureCertsResult:
    """Create what is missing of the cluster's CA, member certificates and user bundle; idempotent."""
    try:
        values = _ensure_certs(input)
        master = load_master_key()
        return EnsureCertsResult(sealed_secrets={n: seal(master, n, v) for n, v in sorted(values.items())})
    except SecretsError as err:
        raise ApplicationError(
            f"etcd cluster {input.cluster}: {err}", type="SecretsError", non_retryable=True
        ) from None


# -- etcdctl over SSH --------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[-limit:]


def _etcdctl_error(stderr: str) -> str:
    """etcdctl's own `Error:` line, not the client's JSON retry logs above it."""
    errors = [line.strip() for line in stderr.splitlines() if line.startswith("Error:")]
    return _one_line(errors[-1] if errors else stderr) or "(no stderr)"


class _Etcdctl:
    """etcdctl on the first machine of `via` that answers; keeps that session across calls."""

    def __init__(self, target: EtcdTarget) -> None:
        self.target = target
        self.session: SshSession | None = None
        self.machine: Machine | None = None
        self._held = contextlib.ExitStack()  # gives the session back to the worker's pool

    def _where(self, machine: Machine | None = None) -> str:
        m = machine or self.machine
        return f"etcd cluster {self.target.cluster}" + (f" via machine {m.id}" if m else "")

    def close(self) -> None:
        if self.session is not None:
            self._held.close()
            self.session = None

    def _connect(self) -> SshSession:
        """A session to the first machine that answers; a wrong key or host key on one does not
        stop the others, but is what the caller hears when none answers."""
        unreachable: list[str] = []
        refused: ApplicationError | None = None
        for machine in self.target.via:
            try:
                key = resolve_secret(self.target.secrets, machine.key_secret).decode()
                self.session, self.machine = self._held.enter_context(pooled(machine, key)), machine
                return self.session
            except Unreachable as err:
                unreachable.append(_one_line(str(err), 200))
            except (AuthFailed, HostKeyChanged, SecretsError) as err:
                refused = refused or ApplicationError(
                    f"{self._where(machine)}: {_one_line(str(err))}", type=type(err).__name__, non_retryable=True
                )
            except SshError as err:
                unreachable.append(_one_line(str(err), 200))
        if refused is not None:
            raise refused
        detail = "; ".join(unreachable) or "no machines given"
        raise ApplicationError(f"etcd cluster {self.target.cluster}: no machine answers: {detail}", type="Unreachable")

    def command(self, args: str) -> str:
        """The etcdctl command line (shell text) for `args`, with TLS flags when the cluster uses them."""
        parts = [
            "ETCDCTL_API=3",
            "etcdctl",
            "--endpoints=" + shlex.quote(",".join(self.target.endpoints)),
            "--dial-timeout=3s",
            "--command-timeout=10s",
            "-w",
            "json",
        ]
        if self.target.tls:
            parts += [f"--cacert={PKI_DIR}/ca.crt", f"--cert={PKI_DIR}/member.crt", f"--key={PKI_DIR}/member.key"]
        return " ".join(parts) + " " + args

    def run(self, script: str, ok_stderr: str | None = None) -> str:
        """Run a shell script on a member machine; a lost connection moves on to the next machine.

        A failure whose stderr holds `ok_stderr` counts as success (an idempotent step already done)."""
        for _ in range(2):
            session = self.session or self._connect()
            try:
                r = session.run(script, timeout=ETCDCTL_TIMEOUT)
            except Unreachable:
                self.close()
                continue
            except SshError as err:
                raise ApplicationError(f"{self._where()}: {_one_line(str(err))}", type="SshError") from None
            if r.status != 0 and not (ok_stderr and ok_stderr in r.stderr):
                raise ApplicationError(
                    f"{self._where()}: etcdctl exited with {r.status}: {_etcdctl_error(r.stderr)}",
                    type="EtcdctlError",
                )
            return r.stdout
        raise ApplicationError(f"{self._where()}: connection lost twice", type="Unreachable")

    def json(self, args: str) -> Any:
        out = self.run(self.command(args))
        try:
            return json.loads(out)
        except ValueError:
            raise ApplicationError(
                f"{self._where()}: etcdctl {args.split()[0]} printed no JSON", type="EtcdctlError"
            ) from None


@contextmanager
def _etcdctl(target: EtcdTarget) -> Iterator[_Etcdctl]:
    ctl = _Etcdctl(target)
    try:
        yield ctl
    finally:
        ctl.close()


def _hex(member_id: int | str) -> str:
    return f"{int(member_id):x}"


def _members(data: Any) -> list[EtcdMemberInfo]:
    return [
        EtcdMemberInfo(
            id=_hex(m["ID"]),
            name=m.get("name", ""),
            peer_urls=m.get("peerURLs") or [],
            client_urls=m.get("clientURLs") or [],
            started=bool(m.get("name")),
        )
        for m in (data or {}).get("members") or []
    ]


def _sections(stdout: str) -> dict[str, tuple[int, str]]:
    """Split the status script's output into {section: (exit status, text)}."""
    out: dict[str, tuple[int, str]] = {}
    name, lines = None, []
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            words = line[len(_MARK) :].split()
            if words[0] == "end" and name is not None:
                out[name] = (int(words[1]), "\n".join(lines))
                name = None
            else:
                name, lines = words[0], []
        elif name is not None:
            lines.append(line)
    return out


def _json_or_none(text: str) -> Any:
    """etcdctl prints JSON on its first line of stdout; partial failures go to stderr."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("{", "[")):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _observe(ctl: _Etcdctl) -> tuple[EtcdStatusResult, str]:
    """Members, per endpoint status and health in one round trip; also why it is not healthy."""
    script = ["set +e"]
    for section, args in (("members", "member list"), ("status", "endpoint status"), ("health", "endpoint health")):
        script += [f"echo '{_MARK}{section}'", ctl.command(args) + " 2>/dev/null", f"echo '{_MARK}end' $?"]
    sections = _sections(ctl.run("\n".join(script)))
    status, members_text = sections.get("members", (1, ""))
    data = _json_or_none(members_text)
    if status != 0 or data is None:
        return EtcdStatusResult(members=[], healthy=False), "member list failed (no quorum or no endpoint answers)"
    members = _members(data)
    by_id = {m.id: m for m in members}
    endpoint_member: dict[str, EtcdMemberInfo] = {}
    for m in members:
        for url in m.client_urls:
            endpoint_member[url] = m
    for entry in _json_or_none(sections.get("status", (1, ""))[1]) or []:
        st = entry.get("Status") or {}
        mid = _hex((st.get("header") or {}).get("member_id", 0))
        m = by_id.get(mid)
        if m is None:
            continue
        endpoint_member[entry.get("Endpoint", "")] = m
        m.leader = _hex(st.get("leader", 0)) == mid
        m.db_size = st.get("dbSize")
        m.version = st.get("version")
    health = {
        h.get("endpoint", ""): bool(h.get("health")) for h in _json_or_none(sections.get("health", (1, ""))[1]) or []
    }
    for endpoint in ctl.target.endpoints:
        m = endpoint_member.get(endpoint)
        if m is not None:
            ok = health.get(endpoint, False)
            m.healthy = ok if m.healthy is None else (m.healthy and ok)
    for m in members:
        if not m.started:
            m.healthy = False
    bad_endpoints = [e for e in ctl.target.endpoints if not health.get(e, False)]
    bad_members = [m.name or f"{m.id} (not started)" for m in members if m.healthy is False]
    healthy = not bad_endpoints and not bad_members
    why = "; ".join(
        part
        for part in (
            ("unhealthy members: " + ", ".join(bad_members)) if bad_members else "",
            ("unhealthy endpoints: " + ", ".join(bad_endpoints)) if bad_endpoints else "",
        )
        if part
    )
    return EtcdStatusResult(members=members, healthy=healthy), why


@activity.defn
def etcd_wait_listening(input: WaitListeningInput) -> WaitListeningResult:
    """Until a member's peer port accepts connections, at most `timeout_seconds`. Only an ordering
    hint for a bootstrap (a firewall between worker and member just costs the wait): never fails."""
    start = time.monotonic()
    while True:
        try:
            with socket.create_connection((input.ip, input.port), timeout=0.5):
                return WaitListeningResult(listening=True, waited_seconds=round(time.monotonic() - start, 3))
        except OSError:
            pass
        if time.monotonic() - start >= input.timeout_seconds:
            return WaitListeningResult(listening=False, waited_seconds=round(time.monotonic() - start, 3))
        time.sleep(0.02)


@activity.defn
def etcd_status(input: EtcdStatusInput) -> EtcdStatusResult:
    """The cluster as etcd sees it; with wait_healthy, poll until healthy at the expected size."""
    target = input.target
    deadline = time.monotonic() + input.timeout_seconds
    with _etcdctl(target) as ctl:
        while True:
            result, why = _observe(ctl)
            count_ok = input.expect_members is None or len(result.members) == input.expect_members
            if not input.wait_healthy or (result.healthy and count_ok):
                return result
            if not count_ok:
                why = f"{len(result.members)} members, want {input.expect_members}" + (f"; {why}" if why else "")
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"{ctl._where()}: not healthy after {input.timeout_seconds:g}s: {why}", type="EtcdUnhealthy"
                )
            heartbeat(why or "waiting")
            time.sleep(POLL_SECONDS)


def _find(members: list[EtcdMemberInfo], name: str, peer_url: str) -> EtcdMemberInfo | None:
    for m in members:
        if peer_url in m.peer_urls or (name and m.name == name):
            return m
    return None


def initial_cluster(members: list[EtcdMemberInfo], new_name: str, new_peer_url: str) -> str:
    """The `initial-cluster` a joining member starts with: every member, the new one by its name."""
    parts = []
    for m in members:
        name = new_name if new_peer_url in m.peer_urls else m.name
        parts += [f"{name}={url}" for url in m.peer_urls]
    return ",".join(parts)


def _reconfigure(ctl: _Etcdctl, step: Callable[[list[EtcdMemberInfo]], bool], what: str) -> list[EtcdMemberInfo]:
    """List the members and let `step` act on them until it reports done.

    etcd refuses a membership change while any member has been connected for less than 5 s
    ("unhealthy cluster"), which is normal right after a start: wait that out here, with a fresh
    member list each round so a change that did land is never made twice."""
    deadline = time.monotonic() + RECONFIG_WAIT
    while True:
        members = _members(ctl.json("member list"))
        try:
            if step(members):
                return members
        except ApplicationError as err:
            if UNHEALTHY not in str(err):
                raise
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"{ctl._where()}: etcd refused {what} for {RECONFIG_WAIT:g}s: {UNHEALTHY}", type="EtcdUnhealthy"
                ) from None
        heartbeat(f"waiting to {what}")
        time.sleep(1.0)


def _unstarted_error(ctl: _Etcdctl, m: EtcdMemberInfo, what: str) -> ApplicationError:
    return ApplicationError(
        f"{ctl._where()}: member {m.id} ({','.join(m.peer_urls)}) was added but never started: start or remove it"
        f" {what}",
        type="UnstartedMember",
        non_retryable=True,
    )


@activity.defn
def etcd_member_add(input: MemberAddInput) -> MemberAddResult:
    """Add a member unless its peer URL is already in the list (a retry after a crash adds nothing)."""
    q = shlex.quote

    def step(members: list[EtcdMemberInfo]) -> bool:
        if _find(members, "", input.peer_url) is not None:
            return True
        if (m := _find(members, input.name, "")) is not None:
            raise ApplicationError(
                f"{ctl._where()}: member {input.name} exists with peer URLs {','.join(m.peer_urls)},"
                f" not {input.peer_url}: remove it first",
                type="MemberConflict",
                non_retryable=True,
            )
        if others := [m for m in members if not m.started]:
            raise _unstarted_error(ctl, others[0], "before adding another")
        heartbeat(f"adding {input.name}")
        ctl.run(ctl.command(f"member add {q(input.name)} --peer-urls={q(input.peer_url)}"))
        return False  # the next round lists the members with the new one

    with _etcdctl(input.target) as ctl:
        members = _reconfigure(ctl, step, f"add {input.name}")
        if unnamed := [m for m in members if not m.name and input.peer_url not in m.peer_urls]:
            raise _unstarted_error(ctl, unnamed[0], "first")
        return MemberAddResult(initial_cluster=initial_cluster(members, input.name, input.peer_url))


@activity.defn
def etcd_member_remove(input: MemberRemoveInput) -> None:
    """Remove a member found by name or peer URL; absent is done. Never the last member."""

    def step(members: list[EtcdMemberInfo]) -> bool:
        member = _find(members, input.name, input.peer_url)
        if member is None:
            return True
        if len(members) <= 1:
            raise ApplicationError(
                f"{ctl._where()}: refusing to remove {input.name}, the last member",
                type="QuorumRefused",
                non_retryable=True,
            )
        heartbeat(f"removing {input.name}")
        ctl.run(ctl.command(f"member remove {member.id}"), ok_stderr="member not found")
        return False

    with _etcdctl(input.target) as ctl:
        _reconfigure(ctl, step, f"remove {input.name}")


ACTIVITIES: list[Callable[..., Any]] = [ensure_etcd_certs, etcd_status, etcd_member_add, etcd_member_remove]
