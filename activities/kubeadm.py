"""kubeadm and kubectl over SSH: init, join, the CNI, nodes, drain, reset.

Sync activities (run in the worker's thread pool). Admin commands run on the first control plane
of the target that answers, with /etc/kubernetes/admin.conf. Bootstrap tokens and certificate
keys are made here, written into the kubeadm config on the machine that reads it (fill()), and
deleted afterwards: they are never in an activity's input, result or error (errors are scrubbed).
Errors are one line naming the cluster and machine; KubeadmError, KubectlError, Unreachable and
NotReady are retried, AuthFailed, HostKeyChanged and SecretsError need an operator.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.models.kinds.kubernetes import INIT_TOKEN_DESCRIPTION, fill
from orbiter.models.kubeadm import (
    ADMIN_CONF,
    CA_CERT,
    CONFIG_DIR,
    JOIN_TOKEN_TTL,
    KUBE_DIR,
    KUBELET_CONF,
    ApplyCniInput,
    ApplyCniResult,
    K8sNode,
    K8sNodesInput,
    K8sNodesResult,
    KubeadmInitInput,
    KubeadmInitResult,
    KubeadmJoinInput,
    KubeadmJoinResult,
    KubeadmResetInput,
    KubeadmUpgradeInput,
    KubeadmUpgradeResult,
    KubeTarget,
    NodeActionInput,
    is_url,
    kubeconfig_secret,
)
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretsError, seal
from orbiter.worker.masterkey import load_master_key

from .progress import beating, heartbeat
from .repo import read_file
from .secretstore import resolve_secret
from .ssh import AuthFailed, HostKeyChanged, SshError, SshSession, Unreachable, connect

KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF}"
ETCD_MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
KUBEADM_TIMEOUT = 600.0
KUBECTL_TIMEOUT = 120.0
POLL_SECONDS = 1.0
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN_RE = re.compile(r"\b([a-z0-9]{6})\.([a-z0-9]{16})\b")
_KEY_RE = re.compile(r"^([a-f0-9]{64})$", re.M)


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[-limit:]


def _scrub(text: str, hidden: list[str]) -> str:
    """No token or certificate key in a message, whichever tool printed it."""
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    return _TOKEN_RE.sub("***", text)


def new_token() -> str:
    """A bootstrap token in kubeadm's format, made here so it is never in a workflow's history."""
    return (
        "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(6))
        + "."
        + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
    )


def ca_cert_hash(pem: str) -> str:
    """kubeadm's discovery pin: sha256 of the CA certificate's SubjectPublicKeyInfo."""
    der = (
        x509.load_pem_x509_certificate(pem.encode())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


class _Remote:
    """A session to one machine (or the first of several that answers), kept across calls."""

    def __init__(self, cluster: str, machines: list[Machine], secrets_ref: SecretsRef) -> None:
        self.cluster, self.machines, self.secrets = cluster, machines, secrets_ref
        self.session: SshSession | None = None
        self.machine: Machine | None = None
        self.hidden: list[str] = []  # secret values to scrub from every message

    def where(self) -> str:
        return f"kubernetes cluster {self.cluster}" + (f" on machine {self.machine.id}" if self.machine else "")

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def _connect(self) -> SshSession:
        unreachable: list[str] = []
        refused: ApplicationError | None = None
        for machine in self.machines:
            try:
                key = resolve_secret(self.secrets, machine.key_secret).decode()
                self.session, self.machine = connect(machine, key), machine
                return self.session
            except (AuthFailed, HostKeyChanged, SecretsError) as err:
                refused = refused or ApplicationError(
                    f"kubernetes cluster {self.cluster} on machine {machine.id}: {_one_line(str(err))}",
                    type=type(err).__name__,
                    non_retryable=True,
                )
            except SshError as err:
                unreachable.append(_one_line(str(err), 200))
        if refused is not None:
            raise refused
        detail = "; ".join(unreachable) or "no machines given"
        raise ApplicationError(f"kubernetes cluster {self.cluster}: no machine answers: {detail}", type="Unreachable")

    def run(
        self, script: str, what: str, error_type: str = "KubeadmError", timeout: float = KUBECTL_TIMEOUT,
        ok: Callable[[int, str, str], bool] | None = None,
    ) -> str:
        """Run `script`; a lost connection tries the next machine once. Failures name `what`."""
        for _ in range(2):
            session = self.session or self._connect()
            try:
                r = session.run(script, timeout=timeout)
            except Unreachable:
                self.close()
                continue
            except SshError as err:
                raise ApplicationError(
                    f"{self.where()}: {what}: {_scrub(_one_line(str(err)), self.hidden)}", type="SshError"
                ) from None
            if r.status != 0 and not (ok and ok(r.status, r.stdout, r.stderr)):
                detail = _scrub(_one_line(r.stderr or r.stdout), self.hidden) or "(no output)"
                raise ApplicationError(f"{self.where()}: {what} exited with {r.status}: {detail}", type=error_type)
            return r.stdout
        raise ApplicationError(f"{self.where()}: {what}: connection lost twice", type="Unreachable")

    def exists(self, path: str) -> bool:
        return self.run(f"test -e {shlex.quote(path)} && echo yes || echo no", f"test {path}").strip() == "yes"

    def upload(self, path: str, content: str) -> None:
        session = self.session or self._connect()
        try:
            session.run(f"mkdir -p {shlex.quote(CONFIG_DIR)} && chmod 700 {shlex.quote(CONFIG_DIR)}", check=True)
            session.upload(path, content.encode(), mode="0600")
        except SshError as err:
            raise ApplicationError(
                f"{self.where()}: writing {path}: {_scrub(_one_line(str(err)), self.hidden)}", type="SshError"
            ) from None


@contextmanager
def _remote(cluster: str, machines: list[Machine], secrets_ref: SecretsRef) -> Iterator[_Remote]:
    remote = _Remote(cluster, machines, secrets_ref)
    try:
        yield remote
    finally:
        remote.close()


def _admin(target: KubeTarget) -> Any:
    return _remote(target.cluster, target.via, target.secrets)


def _delete_token(cp: _Remote, token: str) -> None:
    tid = token.split(".", 1)[0]
    cp.run(
        f"kubeadm token delete --kubeconfig {ADMIN_CONF} {tid}",
        "kubeadm token delete",
        ok=lambda _s, out, err: "not found" in err,
    )


def _wait_api(cp: _Remote, timeout: float = 180.0) -> None:
    """Until the API answers /readyz through admin.conf's server (the cluster's endpoint)."""
    deadline = time.monotonic() + timeout
    while True:
        heartbeat("waiting for the API endpoint")
        out = cp.run(
            f"{KUBECTL} get --raw /readyz 2>&1 || true", "kubectl get --raw /readyz", "NotReady", timeout=30
        )
        if out.strip() == "ok":
            return
        if time.monotonic() > deadline:
            detail = _scrub(_one_line(out), cp.hidden) or "(no answer)"
            raise ApplicationError(
                f"{cp.where()}: the API endpoint does not answer within {timeout:.0f}s of kubeadm init: {detail}",
                type="NotReady",
            )
        time.sleep(POLL_SECONDS)


def _delete_init_tokens(cp: _Remote) -> None:
    """Delete the bootstrap tokens orbiter's kubeadm init configs made (their description says so)."""
    out = cp.run(f"kubeadm token list --kubeconfig {ADMIN_CONF} -o json", "kubeadm token list")
    decoder, pos, found = json.JSONDecoder(), 0, []
    text = out.strip()
    while pos < len(text):
        try:
            item, end = decoder.raw_decode(text, pos)
        except ValueError:
            break
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if isinstance(item, dict) and str(item.get("description", "")).startswith(INIT_TOKEN_DESCRIPTION):
            found.append(str(item.get("token", "")))
    for token in found:
        cp.hidden.append(token)
        if token:
            _delete_token(cp, token)


def _read_ca_hash(remote: _Remote) -> str:
    pem = remote.run(f"cat {CA_CERT}", f"read {CA_CERT}")
    try:
        return ca_cert_hash(pem)
    except ValueError:
        raise ApplicationError(f"{remote.where()}: {CA_CERT} is not a certificate", type="KubeadmError") from None


@activity.defn
def kubeadm_init(input: KubeadmInitInput) -> KubeadmInitResult:
    """`kubeadm init --config` on the first control plane, once: an existing admin.conf means done."""
    target = input.target
    machine = target.via[0]
    path = f"{CONFIG_DIR}/init.yaml"
    with _remote(target.cluster, [machine], target.secrets) as cp:
        initialized = False
        if not cp.exists(ADMIN_CONF):
            token = new_token()
            cp.hidden.append(token)
            values = {"TOKEN": token}
            if "{{CERT_KEY}}" in input.config:
                values["CERT_KEY"] = secrets.token_hex(32)
                cp.hidden.append(values["CERT_KEY"])
            cp.upload(path, fill(input.config, values))
            try:
                heartbeat("kubeadm init")
                extra = " --upload-certs" if "CERT_KEY" in values else ""
                beating(
                    "kubeadm init",
                    lambda: cp.run(f"kubeadm init --config {path}{extra}", "kubeadm init", timeout=KUBEADM_TIMEOUT),
                )
            finally:
                cp.run(f"rm -f {path}", f"remove {path}")
            initialized = True
        # Behind a VIP the endpoint answers only once keepalived has seen the API healthy: wait, so
        # the next steps (and the token cleanup) do not race it.
        _wait_api(cp)
        _delete_init_tokens(cp)  # joins make their own short-lived tokens; also after a retry
        kubeconfig = cp.run(f"cat {ADMIN_CONF}", f"read {ADMIN_CONF}")
        ca_hash = _read_ca_hash(cp)
    name = kubeconfig_secret(target.cluster)
    try:
        sealed = seal(load_master_key(), name, kubeconfig.encode())
    except SecretsError as err:
        raise ApplicationError(f"kubernetes cluster {target.cluster}: {err}", type="SecretsError",
                               non_retryable=True) from None
    return KubeadmInitResult(initialized=initialized, ca_cert_hash=ca_hash, sealed_secrets={name: sealed})


def _unfinished_join(path: str) -> str:
    """Shell test: a kubeadm join started here and did not finish (files kubeadm writes before
    kubelet.conf, or the filled config an attempt that never reached its cleanup left behind)."""
    return (
        f"[ -e {CA_CERT} ] || [ -e {ADMIN_CONF} ] || [ -e {KUBE_DIR}/bootstrap-kubelet.conf ]"
        f' || [ -n "$(ls -A {KUBE_DIR}/manifests 2>/dev/null)" ] || [ -e {shlex.quote(path)} ]'
    )


@activity.defn
def kubeadm_join(input: KubeadmJoinInput) -> KubeadmJoinResult:
    """Join one machine once (kubelet.conf, and a control plane's etcd manifest, mean joined), with a
    token made for it and deleted after, and for a control plane a fresh certificate key from
    `upload-certs`. A join an earlier attempt left half done (its worker killed, or kubeadm failing
    part way) is undone with `kubeadm reset -f` first: kubeadm's preflight refuses to join over its
    files and ports."""
    target = input.target
    path = f"{CONFIG_DIR}/join.yaml"
    with _remote(target.cluster, [input.machine], target.secrets) as node:
        # kubeadm writes kubelet.conf before a control plane's etcd member joins: that one is done
        # once its etcd manifest is there too.
        done = [KUBELET_CONF] + ([ETCD_MANIFEST] if input.control_plane else [])
        if all(node.exists(p) for p in done):
            return KubeadmJoinResult(joined=False)
        check = f"if {_unfinished_join(path)}; then echo yes; else echo no; fi"
        if node.run(check, "look for an unfinished kubeadm join").strip() == "yes":
            beating(
                f"kubeadm reset {input.node}",
                lambda: node.run("kubeadm reset -f", "kubeadm reset after an unfinished join", timeout=KUBEADM_TIMEOUT),
            )
            node.run(f"rm -f {path}", f"remove {path}")
        with _admin(target) as cp:
            desc = shlex.quote(f"orbiter: join of {input.node}")
            out = cp.run(
                f"kubeadm token create --kubeconfig {ADMIN_CONF} --ttl {JOIN_TOKEN_TTL} --description {desc}",
                "kubeadm token create",
            )
            found = _TOKEN_RE.search(out)
            if not found:
                raise ApplicationError(f"{cp.where()}: kubeadm token create printed no token", type="KubeadmError")
            token = found.group(0)
            cp.hidden.append(token)
            node.hidden.append(token)
            try:
                values = {"TOKEN": token}
                if input.control_plane:
                    out = cp.run(
                        f"kubeadm init phase upload-certs --upload-certs --kubeconfig {ADMIN_CONF}",
                        "kubeadm init phase upload-certs",
                    )
                    keys = _KEY_RE.findall(out)
                    if not keys:
                        raise ApplicationError(
                            f"{cp.where()}: kubeadm init phase upload-certs printed no certificate key",
                            type="KubeadmError",
                        )
                    values["CERT_KEY"] = keys[-1]
                    cp.hidden.append(keys[-1])
                    node.hidden.append(keys[-1])
                node.upload(path, fill(input.config, values))
                try:
                    beating(
                        f"kubeadm join {input.node}",
                        lambda: node.run(f"kubeadm join --config {path}", "kubeadm join", timeout=KUBEADM_TIMEOUT),
                    )
                finally:
                    node.run(f"rm -f {path}", f"remove {path}")
            finally:
                _delete_token(cp, token)
    return KubeadmJoinResult(joined=True)


@activity.defn
def apply_cni(input: ApplyCniInput) -> ApplyCniResult:
    """`kubectl apply -f` the CNI manifest from a control plane (apply is idempotent). A manifest in
    the repository is read at the commit, applied when its content changed, from a file uploaded
    for the length of the call."""
    if is_url(input.manifest):
        with _admin(input.target) as cp:
            cp.run(f"{KUBECTL} apply -f {shlex.quote(input.manifest)}", "kubectl apply", "KubectlError",
                   timeout=KUBEADM_TIMEOUT)
        return ApplyCniResult(applied=input.manifest)
    ref = input.target.secrets
    content = read_file(ref.repo, ref.commit, input.manifest.lstrip("/"))
    if content is None:
        raise ApplicationError(
            f"kubernetes cluster {input.target.cluster}: cni.manifest {input.manifest} is not in the repository at"
            f" commit {ref.commit[:8]}: commit it, or give an https URL",
            type="ManifestMissing",
            non_retryable=True,
        )
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    if digest == input.applied:
        return ApplyCniResult(applied=digest)
    path = f"{CONFIG_DIR}/cni.yaml"
    with _admin(input.target) as cp:
        cp.upload(path, content)
        try:
            cp.run(f"{KUBECTL} apply -f {path}", "kubectl apply", "KubectlError", timeout=KUBEADM_TIMEOUT)
        finally:
            cp.run(f"rm -f {path}", f"remove {path}")
    return ApplyCniResult(applied=digest)


def _nodes(cp: _Remote) -> list[K8sNode]:
    out = cp.run(f"{KUBECTL} get nodes -o json", "kubectl get nodes", "KubectlError")
    try:
        items = json.loads(out).get("items") or []
    except ValueError:
        raise ApplicationError(f"{cp.where()}: kubectl get nodes printed no JSON", type="KubectlError") from None
    nodes = []
    for n in items:
        conditions = (n.get("status") or {}).get("conditions") or []
        nodes.append(
            K8sNode(
                name=n["metadata"]["name"],
                ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
                version=((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion"),
                cordoned=bool((n.get("spec") or {}).get("unschedulable")),
            )
        )
    return nodes


ETCD_HEALTH_URL = "http://127.0.0.1:2381/health"  # kubeadm's etcd metrics listener (its liveness probe too)
GATE_CHECK_TIMEOUT = 30.0  # one control plane's checks, one SSH round trip
# One round trip per control plane and poll. The API server's local port is the one its static pod
# manifest names (6443 unless a VIP endpoint's port). kubectl is on every control plane (curl only
# with a VIP): it checks the serving certificate against the cluster CA under the name `kubernetes`,
# which kubeadm always puts in it (127.0.0.1 it does not). etcd's plain-HTTP listener is read with
# bash's /dev/tcp, so no tool beyond coreutils is needed. Outputs travel base64-encoded, one line each.
_GATE_SCRIPT = r"""
p=$(sed -n 's/.*--secure-port=\([0-9][0-9]*\).*/\1/p' @MANIFEST@ 2>/dev/null | head -n1); p=${p:-6443}
r=$(timeout 15 kubectl --kubeconfig @ADMIN_CONF@ --server "https://127.0.0.1:$p" --tls-server-name kubernetes \
    --request-timeout 10s get --raw /readyz 2>&1); s=$?
printf 'readyz %s %s %s\n' "$p" "$s" "$(printf %s "$r" | base64 -w0)"
e=$(timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2381 &&
    printf "GET /health HTTP/1.0\r\nHost: 127.0.0.1:2381\r\n\r\n" >&3 && cat <&3' 2>&1); s=$?
printf 'etcd - %s %s\n' "$s" "$(printf %s "$e" | base64 -w0)"
""".replace("@ADMIN_CONF@", ADMIN_CONF).replace("@MANIFEST@", f"{KUBE_DIR}/manifests/kube-apiserver.yaml")


def _clip(text: str, limit: int = 200) -> str:
    """One line, its start kept (where an HTTP body or a tool's error says what is wrong)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _gate_parse(out: str) -> list[str]:
    """The failed checks in _GATE_SCRIPT's output, each "what (where: detail)"; [] when all pass."""
    got: dict[str, tuple[str, int, str]] = {}
    for line in out.splitlines():
        parts = line.split(" ")
        if len(parts) in (3, 4) and parts[0] in ("readyz", "etcd") and parts[2].isdigit():
            text = base64.b64decode(parts[3]).decode(errors="replace") if len(parts) == 4 else ""
            got[parts[0]] = (parts[1], int(parts[2]), text)
    failed = []
    port, status, text = got.get("readyz", ("6443", -1, "no answer from the check"))
    if status != 0 or text.strip() != "ok":
        detail = _clip(text) or f"kubectl exited with {status}"
        failed.append(f"API server not ready (https://127.0.0.1:{port}/readyz: {detail})")
    _, status, text = got.get("etcd", ("-", -1, "no answer from the check"))
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    code = head.split(" ", 2)[1] if head.startswith("HTTP/") and len(head.split(" ")) > 1 else ""
    try:
        healthy = code == "200" and json.loads(body).get("health") == "true"
    except (ValueError, AttributeError):
        healthy = False
    if not healthy:
        detail = f"HTTP {code} {_clip(body)}" if code else _clip(text) or f"exit {status}"
        failed.append(f"etcd member not healthy ({ETCD_HEALTH_URL}: {detail})")
    return failed


def _gate_check(remote: _Remote) -> list[str]:
    """One control plane's failed health checks; a machine that does not answer fails them all."""
    try:
        out = remote.run(_GATE_SCRIPT, "health checks", "NotReady", timeout=GATE_CHECK_TIMEOUT)
    except ApplicationError as err:
        if err.non_retryable:
            raise
        return [f"not answering ({_one_line(err.message, 200)})"]
    return _gate_parse(out)


@activity.defn
def k8s_nodes(input: K8sNodesInput) -> K8sNodesResult:
    """The nodes as the API sees them; with wait_ready, poll until those nodes are Ready, and on each
    of gate_control_planes the local API server's /readyz is ok and the local etcd member healthy."""
    deadline = time.monotonic() + input.timeout_seconds
    gate = input.gate_control_planes if input.wait_ready else []
    with _admin(input.target) as cp, ExitStack() as stack:
        remotes = [stack.enter_context(_remote(input.target.cluster, [m], input.target.secrets)) for m in gate]
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=max(1, len(gate)), thread_name_prefix="gate"))
        while True:
            checks = [pool.submit(_gate_check, r) for r in remotes]
            nodes = _nodes(cp)
            ready = {n.name for n in nodes if n.ready and input.wait_version in (None, n.version)}
            missing = [n for n in input.wait_ready if n not in ready]
            failed = [f"{m.id}: {what}" for m, c in zip(gate, checks, strict=True) for what in c.result()]
            if not missing and not failed:
                return K8sNodesResult(nodes=nodes)
            if time.monotonic() >= deadline:
                after = f" after {input.timeout_seconds:g}s"
                if missing:
                    raise ApplicationError(
                        f"{cp.where()}: nodes not Ready{' at ' + input.wait_version if input.wait_version else ''}"
                        f"{after}: {', '.join(missing)}" + "".join(f"; health gate: {f}" for f in failed),
                        type="NotReady",
                    )
                where = f"kubernetes cluster {input.target.cluster}"
                raise ApplicationError(
                    f"{where}: health gate: {'; '.join(failed)}; still failing{after}", type="NotReady"
                )
            heartbeat("waiting for " + ", ".join(missing + [f.split(" (", 1)[0] for f in failed]))
            time.sleep(POLL_SECONDS)


def _absent(_status: int, _out: str, err: str) -> bool:
    return "NotFound" in err or "not found" in err


_EVICTING = re.compile(r'pods/"([^"]+)" -n "([^"]+)"')


def blocking_pods(stderr: str) -> list[str]:
    """namespace/name of the pods kubectl drain could not evict, as its errors name them."""
    return sorted({f"{ns}/{pod}" for pod, ns in _EVICTING.findall(stderr)})


@activity.defn
def drain(input: NodeActionInput) -> None:
    """Cordon and drain, daemonsets ignored; a drain that cannot finish names the pods that stop it."""
    q = shlex.quote
    failed: list[str] = []

    def refused(status: int, out: str, err: str) -> bool:
        if _absent(status, out, err):
            return True
        failed.append(err)
        return bool(blocking_pods(err))  # named below; other failures run() raises as they are

    with _admin(input.target) as cp:
        heartbeat(f"drain {input.node}")
        beating(
            f"drain {input.node}",
            lambda: cp.run(
                f"{KUBECTL} drain {q(input.node)} --ignore-daemonsets --delete-emptydir-data"
                f" --timeout={int(input.timeout_seconds)}s",
                f"kubectl drain {input.node}",
                "DrainBlocked",
                timeout=input.timeout_seconds + 60,
                ok=refused,
            ),
        )
        if failed and (pods := blocking_pods(failed[-1])):
            raise ApplicationError(
                f"{cp.where()}: drain of {input.node} cannot finish within {int(input.timeout_seconds)}s: pods"
                f" {', '.join(pods)} cannot be evicted (a pod disruption budget or a slow shutdown); fix them or"
                " raise upgrade.drainTimeout, then `orbiter retry`",
                type="DrainBlocked",
            )


@activity.defn
def uncordon(input: NodeActionInput) -> None:
    with _admin(input.target) as cp:
        cp.run(f"{KUBECTL} uncordon {shlex.quote(input.node)}", f"kubectl uncordon {input.node}", "KubectlError")


@activity.defn
def delete_node(input: NodeActionInput) -> None:
    """Delete the Node object; already gone is done."""
    with _admin(input.target) as cp:
        cp.run(f"{KUBECTL} delete node {shlex.quote(input.node)}", f"kubectl delete node {input.node}",
               "KubectlError", ok=_absent)


@activity.defn
def kubeadm_upgrade(input: KubeadmUpgradeInput) -> KubeadmUpgradeResult:
    """`kubeadm upgrade apply VERSION -y` on the first control plane (skipped when the API already
    runs VERSION), `kubeadm upgrade node` elsewhere (safe to repeat)."""
    with _remote(input.target.cluster, [input.machine], input.target.secrets) as node:
        heartbeat(f"kubeadm upgrade {input.machine.id}")
        version = input.version
        if "*" in version:
            version = node.run("kubeadm version -o short", "kubeadm version", "KubeadmError").strip()
            if not fnmatch.fnmatchcase(version, input.version):
                raise ApplicationError(
                    f"{input.machine.id}: kubeadm {version} is installed, not {input.version}: check its apt sources",
                    type="KubeadmError",
                    non_retryable=True,
                )
        if input.apply:
            raw = node.run(f"{KUBECTL} get --raw /version", "kubectl get --raw /version", "KubectlError")
            try:
                running = json.loads(raw).get("gitVersion")
            except ValueError:
                running = None
            if running != version:
                command = f"kubeadm upgrade apply {shlex.quote(version)} -y"
                beating(command, lambda: node.run(command, "kubeadm upgrade apply", timeout=KUBEADM_TIMEOUT))
        else:
            beating(
                "kubeadm upgrade node",
                lambda: node.run("kubeadm upgrade node", "kubeadm upgrade node", timeout=KUBEADM_TIMEOUT),
            )
        return KubeadmUpgradeResult(version=version)


@activity.defn
def kubeadm_reset(input: KubeadmResetInput) -> None:
    """`kubeadm reset -f` on the machine; a machine without kubeadm or never joined is done."""
    with _remote(input.cluster, [input.machine], input.secrets) as node:
        node.run(
            f"if command -v kubeadm >/dev/null && [ -e {KUBELET_CONF} -o -e {ADMIN_CONF} ]; then kubeadm reset -f; fi",
            "kubeadm reset",
            timeout=KUBEADM_TIMEOUT,
        )


ACTIVITIES: list[Callable[..., Any]] = [
    kubeadm_init, kubeadm_join, apply_cni, k8s_nodes, drain, uncordon, delete_node, kubeadm_upgrade, kubeadm_reset
]
