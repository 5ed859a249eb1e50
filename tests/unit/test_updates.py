"""Version and OS update policies: which version a policy takes, orbiter's one-line edit of
desired.yml, and the OS update listing the node agent reports."""

import base64

import pytest

from orbiter.activities.gitupdate import Dropped, edit_version
from orbiter.agent.osupdates import facts, parse_inst
from orbiter.models.load import DesiredStateError, load_desired
from orbiter.models.updates import needs_os_work, one_step, os_packages, upstream

ETCD_OFFERED = ["3.5.1-1", "3.4.23-4+b4", "3.4.25-1", "3.6.0-1", "4.0.0-1", "3.4.20-1"]
K8S_OFFERED = ["1.32.0-1.1", "1.31.4-1.1", "1.31.2-1.1", "1.30.9-1.1", "1.33.1-1.1", "1.32.3-1.1"]

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata: {name: lab}
spec:
  providers:
    dc1:
      kind: static
      pools:
        db: [{id: m1, ip: 192.0.2.11}]
        db2: [{id: m2, ip: 192.0.2.12}]
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"   # pinned by the platform team
      members: {provider: dc1, pool: db, nodes: 1}
      updates: {policy: patch, check: 1h}
    other:
      kind: etcd
      version: "3.4.23"
      members: {provider: dc1, pool: db2, nodes: 1}
"""


def test_etcd_patch_takes_the_newest_patch_and_minor_one_minor_up():
    choice = one_step("3.4.23", ETCD_OFFERED)
    assert (choice.patch, choice.minor) == ("3.4.25", "3.5.1")
    assert choice.for_policy("patch") == "3.4.25"
    assert choice.for_policy("minor") == "3.5.1"  # never 3.6 (two minors) nor 4.0 (a major)
    assert choice.for_policy("none") is None and choice.available == "3.5.1"


def test_minor_takes_a_patch_when_no_minor_is_offered_and_nothing_goes_down():
    assert one_step("3.4.23", ["3.4.24-1"]).for_policy("minor") == "3.4.24"
    assert one_step("3.5.1", ETCD_OFFERED).for_policy("patch") is None  # 3.4.x is older
    assert one_step("3.5.1", ETCD_OFFERED).for_policy("minor") == "3.6.0"  # one minor up, not 4.0.0
    assert one_step("3.5.1", ["3.5.1-1"]).available is None


def test_kubernetes_patch_policy_stays_in_its_minor():
    meta = load_desired(DESIRED.replace("kind: etcd\n      version: \"3.4.23\"   # pinned by the platform team",
                                        "kind: etcd\n      version: \"3.4.23\"")).spec.clusters["meta"]
    assert meta.updates.policy == "patch" and meta.version_package() == "etcd-server"
    choice = one_step("v1.31.2", K8S_OFFERED, prefix="v")
    assert choice.for_policy("patch") == "v1.31.4"
    assert choice.for_policy("minor") == "v1.32.3"  # never 1.33: kubeadm skips no minor


def test_upstream_of_apt_versions():
    assert [upstream(v) for v in ("3.4.23-4+b4", "1:2.0-1", "1.31.4-1.1")] == ["3.4.23", "2.0", "1.31.4"]


def test_edit_changes_only_the_version_line_and_keeps_the_comment():
    edited = edit_version(DESIRED, "meta", "3.4.23", "3.5.1")
    assert edited is not None
    before, after = DESIRED.splitlines(), edited.splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [('      version: "3.4.23"   # pinned by the platform team',
                        '      version: "3.5.1"   # pinned by the platform team')]
    assert load_desired(edited).spec.clusters["other"].version == "3.4.23"
    assert edit_version(edited, "meta", "3.4.23", "3.5.1") is None  # already there: a retry commits nothing


def test_a_users_change_of_the_version_drops_orbiters_edit():
    users = DESIRED.replace('"3.4.23"   #', '"3.4.22"   #')
    with pytest.raises(Dropped, match="names 3.4.22 for cluster meta, not 3.4.23"):
        edit_version(users, "meta", "3.4.23", "3.5.1")
    with pytest.raises(Dropped, match="not valid"):
        edit_version(DESIRED.replace("kind: etcd", "kind: nope", 1), "meta", "3.4.23", "3.5.1")
    with pytest.raises(DesiredStateError):
        load_desired(DESIRED.replace("kind: etcd", "kind: nope", 1))


def test_flow_style_version_is_edited_in_place():
    text = DESIRED.replace('      version: "3.4.23"   # pinned by the platform team\n', "").replace(
        "      members: {provider: dc1, pool: db, nodes: 1}\n      updates",
        "      members: {provider: dc1, pool: db, nodes: 1}\n      version: '3.4.23'\n      updates", 1)
    edited = edit_version(text, "meta", "3.4.23", "3.4.25")
    assert edited is not None and "version: '3.4.25'" in edited


APT_S = """\
NOTE: This is only a simulation!
Inst openssl [3.0.11-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.11/stable [all])
Conf openssl (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst orbiter-test-pkg (1.1 localhost [all])
"""


def test_upgradable_listing_marks_security_updates():
    listed = parse_inst(APT_S)
    assert listed == ["openssl=3.0.15-1~deb12u1 (security)", "orbiter-test-pkg=1.1", "tzdata=2025b-0+deb12u1"]
    assert os_packages(listed, "security") == ["openssl"]
    assert os_packages(listed, "all") == ["openssl", "orbiter-test-pkg", "tzdata"]
    assert os_packages(listed, "none") == []
    out = f"O\t{base64.b64encode(APT_S.encode()).decode()}\nR\t1\n"
    assert facts(out) == (listed, True)


def test_which_machines_have_os_work():
    from orbiter.models.updates import OsUpdates

    assert not needs_os_work(["tzdata=1"], True, None)
    assert needs_os_work([], True, OsUpdates(policy="none", reboot="auto"))
    assert not needs_os_work([], True, OsUpdates(policy="all", reboot="never"))
    assert not needs_os_work(["tzdata=1"], False, OsUpdates(policy="security"))
    assert needs_os_work(["tzdata=1"], False, OsUpdates(policy="all", reboot="never"))


def test_self_update_takes_the_newest_allowed_patch_only_when_the_orbs_ask():
    from orbiter.models.selfupdate import choose_version
    from orbiter.models.updates import OrbiterUpdates

    patch = OrbiterUpdates(version=">=0.2,<0.3", updates="patch")
    offered = ["0.2.0", "0.2.1", "0.2.3", "0.3.0", "0.2.4rc1", "junk"]
    assert choose_version("0.2.0", offered, [patch], set()) == "0.2.3"  # not 0.3.0 (a minor), not a pre-release
    assert choose_version("0.2.0", offered, [patch], {"0.2.3"}) == "0.2.1"  # a version that failed here is skipped
    assert choose_version("0.2.0", offered, [patch, OrbiterUpdates(version="<0.2.2", updates="patch")],
                          set()) == "0.2.1"  # every orb's range
    assert choose_version("0.2.0", offered, [patch, OrbiterUpdates(updates="none")], set()) is None
    assert choose_version("0.2.0", offered, [None], set()) is None  # no orb asks
    assert choose_version("0.2.3", offered, [patch], set()) is None
