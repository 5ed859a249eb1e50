"""The nodes of a Kubernetes cluster: listed, health-gated, drained, uncordoned, deleted."""

from __future__ import annotations

import base64
import json
import re
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.progress import beating, heartbeat
from orbiter.models.errors import one_line
from orbiter.models.kinds.kubernetes.messages import (
    ADMIN_CONF,
    KUBE_DIR,
    K8sNode,
    K8sNodesInput,
    K8sNodesResult,
    NodeActionInput,
)

from .admin import KUBECTL, POLL_SECONDS, KubeRemote, on_control_plane, on_machines


def _nodes(cp: KubeRemote) -> list[K8sNode]:
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


def _gate_check(remote: KubeRemote) -> list[str]:
    """One control plane's failed health checks; a machine that does not answer fails them all."""
    try:
        out = remote.run(_GATE_SCRIPT, "health checks", "NotReady", timeout=GATE_CHECK_TIMEOUT)
    except ApplicationError as err:
        if err.non_retryable:
            raise
        return [f"not answering ({one_line(err.message, 200)})"]
    return _gate_parse(out)


@activity.defn
def k8s_nodes(input: K8sNodesInput) -> K8sNodesResult:
    """The nodes as the API sees them; with wait_ready, poll until those nodes are Ready, and on each
    of gate_control_planes the local API server's /readyz is ok and the local etcd member healthy."""
    deadline = time.monotonic() + input.timeout_seconds
    gate = input.gate_control_planes if input.wait_ready else []
    with on_control_plane(input.target) as cp, ExitStack() as stack:
        remotes = [stack.enter_context(on_machines(input.target.cluster, [m], input.target.secrets)) for m in gate]
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

    with on_control_plane(input.target) as cp:
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
    with on_control_plane(input.target) as cp:
        cp.run(f"{KUBECTL} uncordon {shlex.quote(input.node)}", f"kubectl uncordon {input.node}", "KubectlError")


@activity.defn
def delete_node(input: NodeActionInput) -> None:
    """Delete the Node object; already gone is done."""
    with on_control_plane(input.target) as cp:
        cp.run(f"{KUBECTL} delete node {shlex.quote(input.node)}", f"kubectl delete node {input.node}",
               "KubectlError", ok=_absent)
