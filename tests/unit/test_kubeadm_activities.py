"""The pure parts of the kubeadm activities and the package resolution the kubernetes kind relies on."""

import re

from orbiter.activities.kinds.kubernetes.admin import ca_cert_hash, new_token, scrub
from orbiter.activities.kinds.kubernetes.nodes import blocking_pods
from orbiter.activities.providers.local.packages import ANY, served_versions
from orbiter.models.kinds.kubernetes.kubeadm_config import fill

from ..machines.test_standins import payload, spki_hash


def test_tokens_have_kubeadms_format_and_fill_accepts_them():
    token = new_token()
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)
    assert new_token() != token
    assert fill("token: {{TOKEN}}\n", {"TOKEN": token}) == f"token: {token}\n"


def test_messages_never_carry_a_token_or_key():
    token, key = new_token(), "ab" * 32
    text = f"kubeadm join failed: token {token} rejected; key {key}"
    scrubbed = scrub(text, [key])
    assert token not in scrubbed and key not in scrubbed and "***" in scrubbed
    assert scrub(f"unknown token {new_token()}", []).endswith("***")  # even one not handed in


def test_ca_cert_hash_is_kubeadms_discovery_pin():
    s = payload()
    ca = s.rsa_key()
    pem = s.make_cert("kubernetes", ca, "kubernetes", ca, ca=True)
    assert ca_cert_hash(pem) == spki_hash(pem) == s.ca_cert_hash(pem)


def test_served_versions_prefer_what_the_repo_serves():
    served = {"kubeadm": {"1.30.6-1.1", "1.31.2-1.1"}, "containerd": {"1.6.20~ds1-1+deb12u3"}}
    wanted = {"kubeadm": "1.31.2", "kubelet": "1.31.2", "containerd": ANY}
    assert served_versions(served, wanted) == {"kubeadm": "1.31.2-1.1", "containerd": "1.6.20~ds1-1+deb12u3"}
    assert served_versions({}, wanted) == {}


def test_a_minor_pattern_takes_the_highest_patch_served():
    served = {"kubeadm": {"1.30.6-1.1", "1.30.10-1.1", "1.31.2-1.1"}}
    assert served_versions(served, {"kubeadm": "1.30.*"}) == {"kubeadm": "1.30.10-1.1"}
    assert served_versions(served, {"kubeadm": "1.29.*"}) == {}


def test_a_blocked_drain_names_the_pods_that_stop_it():
    stderr = (
        'evicting pod shop/db-0\nerror when evicting pods/"db-0" -n "shop" (will retry after 5s): Cannot evict pod'
        " as it would violate the pod's disruption budget.\n"
        'There are pending pods in node "w1" when an error occurred: [error when evicting pods/"db-0" -n "shop":'
        ' global timeout reached: 30s, error when evicting pods/"api-7" -n "web": global timeout reached: 30s]'
    )
    assert blocking_pods(stderr) == ["shop/db-0", "web/api-7"]
    assert blocking_pods("error: node w1 not found") == []
