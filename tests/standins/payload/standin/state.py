"""Orbiter test stand-in, not Kubernetes: the stand-in API's state (one JSON file on the primary),
the Node objects made from it, and its stand-in etcd members.
"""

from __future__ import annotations

import hashlib
import json
import threading

from .common import DEFAULT_GRACE, STANDIN, STATE, now, rfc3339, write_file


class Store:
    """The cluster state on the primary, one JSON file, every change written through."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        with open(STATE) as f:
            self.state = json.load(f)

    def save(self) -> None:
        write_file(STATE, json.dumps(self.state, indent=1), 0o600)

    def event(self, kind: str, **fields) -> None:
        self.state["events"].append({"time": now(), "event": kind, **fields})


def node_object(st: dict, n: dict) -> dict:
    grace = st["settings"].get("nodeMonitorGracePeriodSeconds", DEFAULT_GRACE)
    beat = n.get("lastHeartbeat", 0)
    if now() - beat > grace:
        cond = ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    elif not st["manifests"]:
        cond = (
            "False",
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false "
            "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
        )
    else:
        cond = ("True", "KubeletReady", "kubelet is posting ready status")
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": n["name"],
        "kubernetes.io/os": "linux",
        "standin.orbiter.test/stand-in": "true",
    }
    taints = list(n.get("taints") or [])
    if n["role"] == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    if n.get("unschedulable"):
        taints.append(
            {
                "effect": "NoSchedule",
                "key": "node.kubernetes.io/unschedulable",
                "timeAdded": rfc3339(n.get("cordonedAt", now())),
            }
        )
    spec: dict = {"podCIDR": n.get("podCIDR", "")}
    if taints:
        spec["taints"] = taints
    if n.get("unschedulable"):
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": n["name"],
            "labels": labels,
            "creationTimestamp": rfc3339(n["created"]),
            "creationTimestampUnix": n["created"],
            "annotations": {"standin.orbiter.test/note": STANDIN},
        },
        "spec": spec,
        "status": {
            "addresses": [{"type": "InternalIP", "address": n["ip"]}, {"type": "Hostname", "address": n["name"]}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": cond[0],
                    "reason": cond[1],
                    "message": cond[2],
                    "lastHeartbeatTime": rfc3339(beat),
                    "lastTransitionTime": rfc3339(n["created"]),
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "v" + n["kubeletVersion"].lstrip("v"),
                "kubeProxyVersion": st["kubernetesVersion"],
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "standin://0",
            },
        },
    }


def cp_taints(role: str) -> list:
    return [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}] if role == "control-plane" else []


def etcd_member(name: str, ip: str) -> dict:
    """A stand-in etcd member as `etcdctl member list` would show it."""
    return {
        "name": name,
        "id": int.from_bytes(hashlib.sha256(f"{name}/{ip}".encode()).digest()[:8], "big"),
        "peerURLs": [f"https://{ip}:2380"],
        "clientURLs": [f"https://{ip}:2379"],
    }
