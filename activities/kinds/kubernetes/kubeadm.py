"""kubeadm over SSH: init, join, the CNI, upgrade, reset.

Sync activities (run in the worker's thread pool). Admin commands run on the first control plane
of the target that answers, with /etc/kubernetes/admin.conf. Bootstrap tokens and certificate
keys are made here, written into the kubeadm config on the machine that reads it (fill()), and
deleted afterwards: they are never in an activity's input, result or error (errors are scrubbed).
Errors are one line naming the cluster and machine; KubeadmError, KubectlError, Unreachable and
NotReady are retried, AuthFailed, HostKeyChanged and SecretsError need an operator.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import secrets
import shlex
import time

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.progress import beating, heartbeat
from orbiter.activities.repo import read_file
from orbiter.models.errors import one_line
from orbiter.models.kinds.kubernetes.kubeadm_config import INIT_TOKEN_DESCRIPTION, fill
from orbiter.models.kinds.kubernetes.messages import (
    ADMIN_CONF,
    CA_CERT,
    CONFIG_DIR,
    JOIN_TOKEN_TTL,
    KUBE_DIR,
    KUBELET_CONF,
    ApplyCniInput,
    ApplyCniResult,
    KubeadmInitInput,
    KubeadmInitResult,
    KubeadmJoinInput,
    KubeadmJoinResult,
    KubeadmResetInput,
    KubeadmUpgradeInput,
    KubeadmUpgradeResult,
    is_url,
    kubeconfig_secret,
)
from orbiter.models.secrets import SecretsError, seal
from orbiter.worker.masterkey import load_master_key

from .admin import (
    CERT_KEY_RE,
    ETCD_MANIFEST,
    KUBEADM_TIMEOUT,
    KUBECTL,
    KUBECTL_TIMEOUT,
    POLL_SECONDS,
    TOKEN_RE,
    KubeRemote,
    ca_cert_hash,
    delete_token,
    new_token,
    on_control_plane,
    on_machines,
    scrub,
)


def _wait_api(cp: KubeRemote, timeout: float = 180.0) -> None:
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
            detail = scrub(one_line(out), cp.hidden) or "(no answer)"
            raise ApplicationError(
                f"{cp.where()}: the API endpoint does not answer within {timeout:.0f}s of kubeadm init: {detail}",
                type="NotReady",
            )
        time.sleep(POLL_SECONDS)


def _delete_init_tokens(cp: KubeRemote) -> None:
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
            delete_token(cp, token)


def _read_ca_hash(remote: KubeRemote) -> str:
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
    with on_machines(target.cluster, [machine], target.secrets) as cp:
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
    with on_machines(target.cluster, [input.machine], target.secrets) as node:
        # kubeadm writes kubelet.conf before a control plane's etcd member joins: that one is done
        # once its etcd manifest is there too.
        done = [KUBELET_CONF] + ([ETCD_MANIFEST] if input.control_plane else [])
        if all(node.exists(p) for p in done):
            return KubeadmJoinResult(joined=False)
        # The join of a worker that died may still run (a command over SSH without a terminal
        # outlives its connection): stopped first, then what it left is undone.
        earlier = shlex.quote("[k]ubeadm join --config " + path)
        check = f"pkill -f {earlier} && sleep 1; if {_unfinished_join(path)}; then echo yes; else echo no; fi"
        reset = node.run(check, "look for an unfinished kubeadm join").strip() == "yes"
        if reset:
            beating(
                f"kubeadm reset {input.node}",
                lambda: node.run("kubeadm reset -f", "kubeadm reset after an unfinished join", timeout=KUBEADM_TIMEOUT),
            )
            node.run(f"rm -f {path}", f"remove {path}")
        with on_control_plane(target) as cp:
            if reset:
                # The Node the cut-off join registered: kubeadm refuses to join a name that is
                # registered and Ready ("You must delete the existing Node").
                cp.run(f"{KUBECTL} delete node {shlex.quote(input.node)} --ignore-not-found", "kubectl delete node",
                       timeout=KUBECTL_TIMEOUT)
            desc = shlex.quote(f"orbiter: join of {input.node}")
            out = cp.run(
                f"kubeadm token create --kubeconfig {ADMIN_CONF} --ttl {JOIN_TOKEN_TTL} --description {desc}",
                "kubeadm token create",
            )
            found = TOKEN_RE.search(out)
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
                    keys = CERT_KEY_RE.findall(out)
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
                delete_token(cp, token)
    return KubeadmJoinResult(joined=True)


@activity.defn
def apply_cni(input: ApplyCniInput) -> ApplyCniResult:
    """`kubectl apply -f` the CNI manifest from a control plane (apply is idempotent). A manifest in
    the repository is read at the commit, applied when its content changed, from a file uploaded
    for the length of the call."""
    if is_url(input.manifest):
        with on_control_plane(input.target) as cp:
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
    with on_control_plane(input.target) as cp:
        cp.upload(path, content)
        try:
            cp.run(f"{KUBECTL} apply -f {path}", "kubectl apply", "KubectlError", timeout=KUBEADM_TIMEOUT)
        finally:
            cp.run(f"rm -f {path}", f"remove {path}")
    return ApplyCniResult(applied=digest)


@activity.defn
def kubeadm_upgrade(input: KubeadmUpgradeInput) -> KubeadmUpgradeResult:
    """`kubeadm upgrade apply VERSION -y` on the first control plane (skipped when the API already
    runs VERSION), `kubeadm upgrade node` elsewhere (safe to repeat)."""
    with on_machines(input.target.cluster, [input.machine], input.target.secrets) as node:
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
    with on_machines(input.cluster, [input.machine], input.secrets) as node:
        node.run(
            f"if command -v kubeadm >/dev/null && [ -e {KUBELET_CONF} -o -e {ADMIN_CONF} ]; then kubeadm reset -f; fi",
            "kubeadm reset",
            timeout=KUBEADM_TIMEOUT,
        )
