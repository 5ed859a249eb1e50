"""Change control's pure parts: maintenance windows against the clock, what asks for an approval,
plan hashes, notification signatures, and the receiver's three signature styles."""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from orbiter.models.change import Maintenance, plan_hash, window_state
from orbiter.models.cluster import DesiredUpdate
from orbiter.models.load import DesiredStateError, load_desired
from orbiter.models.notify import Sink, sign
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.worker.receiver import pushed_branch, verify
from orbiter.workflows.gates import ChangeGates
from orbiter.workflows.kinds.etcd import EtcdRunbook

WEEKEND = {"windows": [{"days": ["sat", "sun"], "start": "02:00", "duration": "4h", "timezone": "Europe/Zurich"}]}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_weekend_window_is_open_inside_and_names_its_end():
    state = window_state(Maintenance.model_validate(WEEKEND), at("2026-11-29T03:00"))  # Sunday 04:00 in Zurich
    assert state.open and state.until == at("2026-11-29T05:00")


def test_outside_a_window_the_next_opening_is_named_in_the_windows_zone():
    state = window_state(Maintenance.model_validate(WEEKEND), at("2026-11-30T12:00"))  # Monday
    assert not state.open and state.until == at("2026-12-05T01:00")  # Saturday 02:00 CET


def test_a_window_follows_daylight_saving_time():
    # 2026-03-29 is the Sunday Zurich moves to CEST: 02:00 local does not exist, 03:00 CEST does.
    summer = window_state(Maintenance.model_validate(WEEKEND), at("2026-04-03T12:00"))
    assert summer.until == at("2026-04-04T00:00")  # Saturday 02:00 CEST is 00:00 UTC


def test_overlapping_windows_join_and_one_past_midnight_counts():
    m = Maintenance.model_validate({"windows": [
        {"start": "22:00", "duration": "3h"},  # every day, 22:00 to 01:00 UTC
        {"days": ["tue"], "start": "00:30", "duration": "2h"},
    ]})
    state = window_state(m, at("2026-12-01T00:45"))  # Tuesday, inside both
    assert state.open and state.until == at("2026-12-01T02:30")
    assert window_state(m, at("2026-12-01T23:30")).open


@pytest.mark.parametrize("window, message", [
    ({"start": "2am", "duration": "1h"}, "is not a time of day"),
    ({"start": "02:00", "duration": "1h", "timezone": "Mars/Olympus"}, "unknown timezone"),
    ({"start": "02:00", "duration": "8d"}, "longer than a week"),
    ({"start": "02:00", "duration": "1h", "days": ["funday"]}, "funday"),
    ({"start": "02:00", "duration": 60}, "has no unit"),
])
def test_bad_windows_are_refused_with_what_to_write(window, message):
    with pytest.raises(ValidationError, match=message):
        Maintenance.model_validate({"windows": [window]})


ORB = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata: {name: cc}
spec:
  approval: {for: [destroy]}
  maintenance: {windows: [{start: "02:00", duration: 1h}]}
  notify:
    - {kind: webhook, urlSecret: hook_url}
    - {kind: slack, urlSecret: slack_url, events: [Blocked]}
  receiver: {secret: hook_secret}
  providers:
    dc: {kind: static, bootstrapKeySecret: dc_key, pools: {p: [{id: m1, ip: 10.9.0.2}, {id: m2, ip: 10.9.0.3}]}}
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"
      members: {provider: dc, pool: p, nodes: 2}
      approval: {for: [scaleDown]}
"""


def test_a_cluster_setting_wins_over_the_orbs_default():
    from orbiter.models.desired import change_control

    orb = load_desired(ORB, "desired.yml")
    control = change_control(orb, orb.spec.clusters["meta"])
    assert control.approval is not None and control.approval.for_ == ["scaleDown"]
    assert control.maintenance == orb.spec.maintenance
    assert orb.spec.notify[0].signing_key_secret == "hook_url_key" and orb.spec.notify[1].signing_key_secret is None


def test_an_unknown_approval_class_is_located():
    with pytest.raises(DesiredStateError) as err:
        load_desired(ORB.replace("for: [scaleDown]", "for: [scaledown]"), "desired.yml")
    assert "desired.yml:18" in str(err.value) and "scaleDown" in str(err.value)


def test_slack_takes_no_signing_key():
    with pytest.raises(ValidationError, match="not signed"):
        Sink.model_validate({"kind": "slack", "urlSecret": "s", "keySecret": "k"})


def _update(text: str, commit: str = "c1") -> DesiredUpdate:
    from orbiter.models.desired import change_control, cluster_providers

    orb = load_desired(text, "desired.yml")
    spec = orb.spec.clusters["meta"]
    return DesiredUpdate(commit=commit, gitops_workflow_id="g", spec=spec, providers=cluster_providers(orb, spec),
                         secrets=SecretsRef(repo=RepoRef(url="/r"), commit=commit), control=change_control(orb, spec))


def _gates_for(update: DesiredUpdate, nodes: int) -> list[str]:
    from orbiter.models.cluster import ClusterState
    from orbiter.models.current import ClusterStatus, NodeStatus
    from orbiter.models.kinds import View

    status = [NodeStatus(machine=f"m{i}", ip="", role="member", joined=True, version="3.4.23")
              for i in range(1, nodes + 1)]
    view = View(orb="cc", cluster="meta", spec=update.spec, applied=update.spec, nodes=status,
                providers=update.providers)
    planned = EtcdRunbook().plan(view)
    gates = ChangeGates("meta", ClusterState(status=ClusterStatus(kind="etcd")), hooks=None)  # type: ignore[arg-type]
    gates.start(update, planned)
    return gates.needs


def test_only_the_steps_the_approval_lists_ask_for_it():
    shrink = _update(ORB.replace("nodes: 2}", "nodes: 1}"))
    assert _gates_for(shrink, nodes=2) == ["remove member m2 (scaleDown)"]
    unlisted = _update(ORB.replace("nodes: 2}", "nodes: 1}").replace("for: [scaleDown]", "for: [upgrade]"))
    assert _gates_for(unlisted, nodes=2) == []


def test_a_plan_hash_names_the_commit_and_the_steps():
    steps = [{"name": "remove member m2", "description": "d", "machines": ["m2"]}]
    assert plan_hash("c1", steps) == plan_hash("c1", [dict(steps[0])])
    assert plan_hash("c2", steps) != plan_hash("c1", steps)
    assert plan_hash("c1", [{**steps[0], "machines": ["m3"]}]) != plan_hash("c1", steps)


def test_a_notice_signature_covers_the_timestamp():
    body = b'{"event": "Ready"}'
    signature = sign(b"key", "1700000000", body)
    assert signature == "sha256=" + hmac.new(b"key", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(b"key", "1700000001", body) != signature


BODY = b'{"ref": "refs/heads/main"}'


@pytest.mark.parametrize("headers", [
    {"X-Hub-Signature-256": "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()},  # GitHub
    {"X-Gitea-Signature": hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()},  # Gitea
    {"X-Gitlab-Token": "s3cret"},  # GitLab
])
def test_each_git_servers_proof_is_accepted_and_a_wrong_one_is_not(headers):
    assert verify(headers, BODY, b"s3cret")
    assert not verify(headers, BODY, b"other")
    assert not verify(headers, BODY + b" ", b"s3cret") or "X-Gitlab-Token" in headers  # GitLab signs no body


def test_a_hook_without_any_proof_is_refused():
    assert not verify({}, BODY, b"s3cret")


def test_the_pushed_branch_is_read_from_the_body():
    assert pushed_branch(BODY) == "main"
    assert pushed_branch(b'{"ref": "refs/tags/v1"}') is None
    assert pushed_branch(b"not json") is None


def test_window_opening_times_are_whole_days_apart():
    m = Maintenance.model_validate({"windows": [{"days": ["wed"], "start": "10:00", "duration": "30m"}]})
    first = window_state(m, at("2026-12-02T10:29"))
    assert first.open
    after = window_state(m, first.until)
    assert not after.open and after.until - first.until == timedelta(days=7, minutes=-30)
