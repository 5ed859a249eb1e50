"""Orbiter test stand-in, not Kubernetes: kubectl (version, get nodes and --raw, cordon, uncordon,
drain, delete node, apply).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time

from .client import ApiError, Cluster, node_ready
from .common import (
    STANDIN,
    VERSION,
    Fail,
    err,
    flag,
    go_duration,
    go_duration_str,
    minor,
    now,
    out,
    parse_args,
    read_text,
)

KUBECTL_VALUE_FLAGS = {
    "--kubeconfig",
    "-o",
    "--output",
    "-f",
    "--filename",
    "--timeout",
    "-n",
    "--namespace",
    "--grace-period",
    "--raw",
    "-l",
    "--selector",
    "--pod-selector",
    "--context",
    "--server",
    "--request-timeout",
    "--skew-max",
    "--tls-server-name",
    "-s",
}


def kubectl(argv: list[str]) -> int:
    pos, flags = parse_args(argv, KUBECTL_VALUE_FLAGS)
    if not pos:
        out(f"kubectl ({STANDIN}) {VERSION}: get, cordon, uncordon, drain, delete node, apply, version")
        return 0
    verb = pos[0]
    if verb == "version":
        client = {"major": "1", "minor": str(minor(VERSION)[1]), "gitVersion": "v" + VERSION}
        if "--client" in flags:
            out(
                json.dumps({"clientVersion": client}, indent=2)
                if flag(flags, "-o", "--output") == "json"
                else f"Client Version: v{VERSION}"
            )
            return 0
    path = flag(flags, "--kubeconfig") or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    c = Cluster(path, flags)
    if verb == "version":
        server = c.call("GET", "/version")
        out(
            json.dumps({"clientVersion": client, "serverVersion": server}, indent=2)
            if flag(flags, "-o", "--output") == "json"
            else f"Client Version: v{VERSION}\nServer Version: {server['gitVersion']}"
        )
        return 0
    if verb == "get" and "--raw" in flags:
        try:
            res = c.call("GET", flag(flags, "--raw"))
        except ApiError as exc:
            raise Fail(f"Error from server ({exc.body.get('reason', 'InternalError')}): {exc}") from None
        sys.stdout.write(res["raw"] if "raw" in res else json.dumps(res))
        sys.stdout.flush()
        return 0
    if verb == "get" and len(pos) >= 2 and pos[1] in ("nodes", "node", "no"):
        return _get_nodes(c, pos[2:], flag(flags, "-o", "--output", default=""))
    if verb in ("cordon", "uncordon") and len(pos) == 2:
        return _cordon(c, pos[1], verb == "cordon")
    if verb == "drain" and len(pos) == 2:
        return _drain(c, pos[1], flags)
    if verb == "delete" and len(pos) >= 3 and pos[1] in ("node", "nodes", "no"):
        for n in pos[2:]:
            try:
                _node_call(c, "DELETE", n)
            except Fail:
                if flag(flags, "--ignore-not-found") in ("", "true") and not _exists(c, n):
                    continue  # kubectl prints nothing for a node that is not there
                raise
            out(f'node "{n}" deleted')
        return 0
    if verb == "apply":
        return _apply(c, flags)
    raise Fail(f"{STANDIN}: kubectl {' '.join(pos[:3])} is not supported by the stand-in", 3)


def _exists(c: Cluster, name: str) -> bool:
    try:
        c.call("GET", "/api/v1/nodes/" + name)
        return True
    except ApiError:
        return False


def _node_call(c: Cluster, method: str, name: str, body: dict | None = None) -> dict:
    try:
        return c.call(method, "/api/v1/nodes/" + name, body)
    except ApiError as exc:
        if exc.status == 404:
            raise Fail(f'Error from server (NotFound): nodes "{name}" not found') from None
        raise Fail(f"Error from server: {exc}") from None


def _get_nodes(c: Cluster, names: list[str], output: str) -> int:
    items = [_node_call(c, "GET", n) for n in names] if names else c.call("GET", "/api/v1/nodes")["items"]
    if output == "json":
        doc = (
            items[0]
            if len(names) == 1
            else {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
        )
        out(json.dumps(doc, indent=4))
        return 0
    if output.startswith("jsonpath") or output == "yaml":
        raise Fail(f"{STANDIN}: -o {output} is not supported by the stand-in; use -o json", 3)
    out(f"{'NAME':<24}{'STATUS':<28}{'ROLES':<16}{'AGE':<8}VERSION")
    for n in items:
        status = "Ready" if node_ready(n) else "NotReady"
        if n["spec"].get("unschedulable"):
            status += ",SchedulingDisabled"
        roles = ",".join(k.split("/", 1)[1] for k in n["metadata"]["labels"] if k.startswith("node-role.")) or "<none>"
        age = int(now() - n["metadata"].get("creationTimestampUnix", now()))
        out(
            f"{n['metadata']['name']:<24}{status:<28}{roles:<16}{str(age) + 's':<8}"
            f"{n['status']['nodeInfo']['kubeletVersion']}"
        )
    return 0


def _cordon(c: Cluster, name: str, on: bool) -> int:
    node = _node_call(c, "GET", name)
    word = "cordoned" if on else "uncordoned"
    if bool(node["spec"].get("unschedulable")) == on:
        out(f"node/{name} already {word}")
        return 0
    _node_call(c, "PATCH", name, {"spec": {"unschedulable": on}})
    out(f"node/{name} {word}")
    return 0


def _drain(c: Cluster, name: str, flags: dict) -> int:
    timeout = go_duration(flag(flags, "--timeout", default="0s"))
    _cordon(c, name, True)
    pods = c.call("GET", "/standin/pods?node=" + name)
    ds = ", ".join(pods["daemonset"])
    if pods["daemonset"] and "--ignore-daemonsets" not in flags:
        msg = f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {ds}"
        err(f'error: unable to drain node "{name}" due to error: {msg}, continuing command...')
        err(f"There are pending nodes to be drained:\n {name}")
        raise Fail(msg)
    if pods["daemonset"]:
        err(f"Warning: ignoring DaemonSet-managed Pods: {ds}")
    if pods["emptyDir"] and "--delete-emptydir-data" not in flags:
        msg = "cannot delete Pods with local storage (use --delete-emptydir-data to override): " + ", ".join(
            pods["emptyDir"]
        )
        err(f'error: unable to drain node "{name}" due to error: {msg}, continuing command...')
        err(f"There are pending nodes to be drained:\n {name}")
        raise Fail(msg)
    start = now()
    stuck = pods["stuck"]
    for p in stuck:
        out(f"evicting pod {p}")
    while stuck:
        if timeout and now() - start >= timeout:
            errs = ", ".join(
                f'error when evicting pods/"{p.split("/")[-1]}" -n "{p.split("/")[0]}": global timeout '
                f"reached: {go_duration_str(timeout)}"
                for p in stuck
            )
            err(f'There are pending pods in node "{name}" when an error occurred: [{errs}]')
            for p in stuck:
                err(f"pod/{p.split('/')[-1]}")
            err(f'error: unable to drain node "{name}" due to error: [{errs}], continuing command...')
            err(f"There are pending nodes to be drained:\n {name}")
            raise Fail(f"error: [{errs}]")
        for p in stuck:
            err(
                f'error when evicting pods/"{p.split("/")[-1]}" -n "{p.split("/")[0]}" (will retry after 5s): '
                "Cannot evict pod as it would violate the pod's disruption budget."
            )
        wait = 5.0 if not timeout else max(0.0, min(5.0, timeout - (now() - start)))
        time.sleep(wait)
        stuck = [p for p in c.call("GET", "/standin/pods?node=" + name)["stuck"] if p in stuck]
    for p in pods["stuck"]:
        out(f"pod/{p.split('/')[-1]} evicted")
    out(f"node/{name} drained")
    return 0


def _apply(c: Cluster, flags: dict) -> int:
    sources = flags.get("-f", []) + flags.get("--filename", [])
    if not sources:
        raise Fail("error: must specify one of -f and -k")
    for src in sources:
        body: dict = {"source": src}
        objects = []
        if "://" not in src:
            try:
                text = read_text(src)
            except OSError as exc:
                raise Fail(f'error: the path "{src}" does not exist ({exc.strerror})') from None
            body["sha256"] = hashlib.sha256(text.encode()).hexdigest()
            for doc in re.split(r"^---\s*$", text, flags=re.M):
                kind = re.search(r"^kind:\s*(\S+)", doc, re.M)
                nm = re.search(r"^metadata:\s*\n(?:\s+.*\n)*?\s+name:\s*(\S+)", doc, re.M)
                if kind and nm:
                    objects.append(f"{kind.group(1).lower()}/{nm.group(1)}")
        body["objects"] = objects
        c.call("POST", "/standin/manifests", body)
        for o in objects or [f"manifest {src}"]:
            out(f"{o} created")
    return 0
