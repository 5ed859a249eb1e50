"""Orbiter test stand-in, not Kubernetes: kubeadm upgrade (plan, apply with the version policy, node)."""

from __future__ import annotations

import os
import sys

from .client import Cluster, api, api_or_fail, load_kubeconfig, node_ready
from .common import ADMIN_CONF, KUBELET_CONF, MANIFESTS, STACK_HINT, VERSION, Fail, flag, hostname, minor, out


def kubeadm_upgrade(pos: list[str], flags: dict) -> int:
    sub = pos[0]
    if sub == "node":
        return _upgrade_node(flags)
    c = Cluster(flag(flags, "--kubeconfig", default=ADMIN_CONF))
    info = api_or_fail(c, "GET", "/standin/cluster-info")
    cluster_version = info["kubernetesVersion"]
    if sub == "plan":
        out(
            "[preflight] Running pre-flight checks.\n[upgrade/config] Reading configuration from the cluster...\n"
            "[upgrade] Running cluster health checks\n[upgrade] Fetching available versions to upgrade to"
        )
        out(f"[upgrade/versions] Cluster version: {cluster_version}\n[upgrade/versions] kubeadm version: v{VERSION}")
        target = "v" + VERSION
        if minor(target) > minor(cluster_version) and minor(target)[1] - minor(cluster_version)[1] <= 1:
            out(
                f"[upgrade/versions] Target version: {target}\n\nUpgrade to the latest stable version:\n\n"
                f"COMPONENT                 NODE      CURRENT   TARGET\nkube-apiserver            -         "
                f"{cluster_version}   {target}\n\nYou can now apply the upgrade by executing the following command:"
                f"\n\n\tkubeadm upgrade apply {target}\n"
            )
        else:
            out("\nAwesome, you're up-to-date! Enjoy!")
        return 0
    if sub == "apply":
        if len(pos) < 2:
            raise Fail("missing version argument")
        target = pos[1] if pos[1].startswith("v") else "v" + pos[1]
        if not os.path.exists(MANIFESTS + "/kube-apiserver.yaml"):
            raise Fail(
                f"[upgrade/health] FATAL: this is not a control-plane node: {MANIFESTS}/kube-apiserver.yaml is missing"
            )
        out(f'[upgrade/version] You have chosen to change the cluster version to "{target}"')
        out(f"[upgrade/versions] Cluster version: {cluster_version}\n[upgrade/versions] kubeadm version: v{VERSION}")
        problems = _version_policy(cluster_version, target)
        if problems:
            raise Fail(
                "[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n"
                + "\n".join(f"\t- {p}" for p in problems)
                + "\n\nPlease fix the misalignments highlighted "
                "above and try upgrading again\n" + STACK_HINT
            )
        not_ready = [
            n["metadata"]["name"]
            for n in c.call("GET", "/api/v1/nodes")["items"]
            if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"] and not node_ready(n)
        ]
        if not_ready:
            raise Fail(f"[upgrade/health] FATAL: there are NotReady control-planes in the cluster: {not_ready}")
        if "-y" not in flags and "--yes" not in flags and "-f" not in flags and "--force" not in flags:
            sys.stdout.write("[upgrade/confirm] Are you sure you want to proceed with the upgrade? [y/N]: ")
            sys.stdout.flush()
            if sys.stdin.readline().strip().lower() != "y":
                raise Fail("won't proceed; the user didn't answer (Y|y) in order to continue")
        node = (
            load_kubeconfig(KUBELET_CONF)["user"].removeprefix("system:node:")
            if os.path.exists(KUBELET_CONF)
            else hostname()
        )
        api_or_fail(c, "POST", "/standin/upgrade", {"version": target, "node": node})
        out(
            f'[upgrade/successful] SUCCESS! Your cluster was upgraded to "{target}". Enjoy!\n\n'
            "[upgrade/kubelet] Now that your control plane is upgraded, please proceed with upgrading your kubelets "
            "if you haven't already done so."
        )
        return 0
    raise Fail(f'Error: unknown command "{sub}" for "kubeadm upgrade"')


def _version_policy(cluster: str, target: str) -> list[str]:
    cv, tv, kv = minor(cluster), minor(target), minor(VERSION)
    problems = []
    if tv[1] > kv[1]:
        problems.append(
            f'Specified version to upgrade to "{target}" is at least one minor release higher than the '
            f"kubeadm minor release ({tv[1]} > {kv[1]}). Such an upgrade is not supported"
        )
    if tv[1] - cv[1] > 1:
        problems.append(
            f'Specified version to upgrade to "{target}" is too high; kubeadm can upgrade only 1 minor '
            "version at a time"
        )
    if tv[1] < cv[1]:
        if cv[1] - tv[1] > 1:
            problems.append(
                f'Specified version to downgrade to "{target}" is too low; kubeadm can downgrade only 1 '
                "minor version at a time"
            )
        problems.append(
            f'Specified version to downgrade to "{target}" is at least one minor release lower than the '
            f"kubeadm minor release ({tv[1]} < {kv[1]}). Such a downgrade is not supported"
            if tv[1] < kv[1]
            else f'Specified version to downgrade to "{target}" is lower than the '
            f'cluster version "{cluster}" by a minor release; such a downgrade is not supported'
        )
    if tv > kv and not problems:
        problems.append(
            f'Specified version to upgrade to "{target}" is higher than the kubeadm version "v{VERSION}". '
            "Upgrade kubeadm first using the tool you used to install kubeadm"
        )
    return problems


def _upgrade_node(flags: dict) -> int:
    if not os.path.exists(KUBELET_CONF):
        raise Fail(f"error execution phase preflight: unable to read {KUBELET_CONF}: this node has not joined")
    conf = load_kubeconfig(KUBELET_CONF)
    node = conf["user"].removeprefix("system:node:")
    info = api(conf["server"], "GET", "/standin/cluster-info", token=conf["token"], ca=conf["ca"])
    version = info["kubernetesVersion"]
    if minor(version) > minor(VERSION):
        raise Fail(
            f'the cluster version "{version}" is higher than the kubeadm version "v{VERSION}"; upgrade kubeadm first'
        )
    out("[upgrade] Reading configuration from the cluster...\n[preflight] Running pre-flight checks")
    control_plane = os.path.exists(MANIFESTS + "/kube-apiserver.yaml")
    if control_plane:
        out(f'[upgrade/control-plane] Upgrading your Static Pod-hosted control plane instance to version "{version}"')
    else:
        out("[upgrade] Skipping phase. Not a control plane node.")
    api(
        conf["server"],
        "POST",
        "/standin/upgrade-node",
        {"name": node, "controlPlane": control_plane},
        conf["token"],
        conf["ca"],
    )
    out(
        "[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!\n"
        "[upgrade] The configuration for this node was successfully upgraded!\n"
        "[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager."
    )
    return 0
