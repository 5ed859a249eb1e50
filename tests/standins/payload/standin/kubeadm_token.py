"""Orbiter test stand-in, not Kubernetes: kubeadm token (generate, create, delete, list)."""

from __future__ import annotations

import json

from .client import ApiError, Cluster, api_or_fail
from .common import ADMIN_CONF, Fail, flag, go_duration, new_token, out


def kubeadm_token(pos: list[str], flags: dict) -> int:
    if not pos:
        raise Fail("Error: requires a subcommand: create, delete, generate, list")
    sub = pos[0]
    if sub == "generate":
        out(new_token())
        return 0
    c = Cluster(flag(flags, "--kubeconfig", default=ADMIN_CONF))
    if sub == "create":
        body = {
            "token": pos[1] if len(pos) > 1 else None,
            "ttl": flag(flags, "--ttl", default="24h0m0s"),
            "description": flag(flags, "--description", default=""),
            "usages": (flag(flags, "--usages") or "").split(",") if "--usages" in flags else None,
            "groups": (flag(flags, "--groups") or "").split(",") if "--groups" in flags else None,
        }
        go_duration(body["ttl"])
        tok = api_or_fail(c, "POST", "/standin/tokens", body)["token"]
        if "--print-join-command" in flags:
            info = c.call("GET", "/standin/cluster-info")
            line = f"kubeadm join {info['endpoint']} --token {tok} --discovery-token-ca-cert-hash {info['caCertHash']} "
            if flag(flags, "--certificate-key"):
                line += f"--control-plane --certificate-key {flag(flags, '--certificate-key')} "
            out(line)
        else:
            out(tok)
        return 0
    if sub == "delete":
        if len(pos) < 2:
            raise Fail("missing subcommand; 'token delete' is missing token of form \"[a-z0-9]{6}\"")
        for t in pos[1:]:
            tid = t.split(".")[0]
            try:
                c.call("DELETE", "/standin/tokens/" + tid)
            except ApiError:
                raise Fail(
                    f'failed to delete bootstrap token "{tid}": secrets "bootstrap-token-{tid}" not found'
                ) from None
            out(f'bootstrap token "{tid}" deleted')
        return 0
    if sub == "list":
        toks = c.call("GET", "/standin/tokens")["items"]
        if flag(flags, "-o", "--output") == "json":
            for t in toks:
                out(
                    json.dumps(
                        {"kind": "BootstrapToken", "apiVersion": "output.kubeadm.k8s.io/v1alpha3", **t}, indent=4
                    )
                )
        else:
            out(
                "TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION"
                "                                                EXTRA GROUPS"
            )
            for t in toks:
                out(
                    f"{t['token']:<25} {t.get('ttl', '<forever>'):<11} {t.get('expires', '<never>'):<22} "
                    f"{','.join(t['usages']):<24} {t.get('description') or '<none>':<58} {','.join(t['groups'])}"
                )
        return 0
    raise Fail(f'Error: unknown command "{sub}" for "kubeadm token"')
