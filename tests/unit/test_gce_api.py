"""The GCE provider's calls against the Compute API stand-in in this process, with no machines
behind the instances (they get an address and run at once): requestIds, lost answers, errors as
one line with GCE's reason, find-again by name, the load balancer's order, pagination, and the
service-account credentials the stand-in checks on every call. Seconds, no root."""

import json
from collections.abc import Iterator

import google.auth.transport.requests
import google.oauth2.credentials
import pytest
from google.cloud import compute_v1
from google.oauth2 import service_account

from orbiter.activities.providers.base import MachineClaimed
from orbiter.activities.providers.gce import firewall, instances
from orbiter.activities.providers.gce.api import Api, GceError, credentials
from orbiter.activities.providers.gce.loadbalancer import Balancer
from orbiter.models.kinds.base import PortRule
from orbiter.models.loadbalancers import LoadBalancerInput, LoadBalancerMembersInput
from orbiter.models.providers.gce import GceProvider
from orbiter.models.refs import RepoRef, SecretsRef

from ..standins.gce import GceStandin

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0rbiter orbiter"


def quiet(_: str) -> None:
    return None


@pytest.fixture
def gce() -> Iterator[GceStandin]:
    standin = GceStandin()
    standin.faults.delay = 0.02
    try:
        yield standin
    finally:
        standin.stop()


def spec_for(gce: GceStandin, **pool: object) -> GceProvider:
    return GceProvider.model_validate({
        "kind": "gce", "project": "orbiter-test", "zones": ["europe-west6-a", "europe-west6-b"],
        "credentialsSecret": "k", "endpoint": gce.endpoint, "pools": {"etcd": pool, "cp": {}}})


def api_for(gce: GceStandin, key: str | None = None, **pool: object) -> Api:
    key = key or gce.key_json()
    return Api(spec_for(gce, **pool), "cloud", lambda name: key.encode())


def ensure(api: Api, name: str, attempt: str = "a1", orb: str = "lab"):
    return instances.ensure(api, "etcd", name, orb, "meta", PUB, attempt, quiet)


def test_instances_carry_labels_key_and_spread_over_zones(gce):
    api = api_for(gce)
    made = [ensure(api, f"lab-meta-etcd-{i}") for i in range(3)]
    assert [i.zone.rsplit("/", 1)[1] for i in made] == ["europe-west6-a", "europe-west6-b", "europe-west6-a"]
    assert all(i.status == "RUNNING" and instances.address(i, False) for i in made)
    got = gce.store.get("instances", "europe-west6-a", "lab-meta-etcd-0")
    assert got["labels"] == {"orbiter-orb": "lab", "orbiter-cluster": "meta", "orbiter-pool": "etcd"}
    assert {m["key"]: m["value"] for m in got["metadata"]["items"]} == {
        "ssh-keys": f"orbiter:{PUB}", "enable-oslogin": "FALSE"}
    assert got["machineType"] == "zones/europe-west6-a/machineTypes/e2-standard-2"
    assert got["disks"][0]["initializeParams"] == {
        "sourceImage": "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb": "20"}
    # Found again by name: a second call (another attempt) makes nothing.
    assert ensure(api, "lab-meta-etcd-0", attempt="a2").id == made[0].id
    assert gce.store.stats.instance_inserts == 3


def test_a_lost_answer_is_sent_again_with_its_request_id_and_applied_once(gce):
    api = api_for(gce)
    gce.faults.drops["instances.insert"] = 1
    ensure(api, "lab-meta-etcd-0")
    assert gce.store.stats.dropped == ["instances.insert"]
    assert [r for r, _ in gce.store.stats.repeated_request_ids] == ["instances.insert"]
    assert gce.store.stats.created == [("instances", "lab-meta-etcd-0")]


def test_the_same_request_id_never_makes_a_second_instance_but_a_new_attempt_recreates(gce):
    api = api_for(gce)
    first = ensure(api, "lab-meta-etcd-0", attempt="run1/2")
    instances.delete(api, first, quiet)
    instances.delete(api, first, quiet)  # deleting what is gone is done
    again = ensure(api, "lab-meta-etcd-0", attempt="run1/7")  # a later activity: a new requestId
    assert again.id != first.id and gce.store.stats.created.count(("instances", "lab-meta-etcd-0")) == 2


def test_an_instance_of_that_name_from_another_orb_is_refused(gce):
    api = api_for(gce)
    ensure(api, "lab-meta-etcd-0", orb="shop")
    with pytest.raises(MachineClaimed, match="instance lab-meta-etcd-0 .zone europe-west6-a. belongs to orb shop"):
        ensure(api, "lab-meta-etcd-0", attempt="a2")


@pytest.mark.parametrize(("mode", "reason"), [("operation", "QUOTA_EXCEEDED"), ("http", "quotaExceeded")])
def test_quota_is_one_line_with_gces_reason_and_final(gce, mode, reason):
    api = api_for(gce)
    gce.faults.instance_quota, gce.faults.quota_mode = 0, mode
    with pytest.raises(GceError) as err:
        ensure(api, "lab-meta-etcd-1")
    assert str(err.value) == (f"provider cloud: instance lab-meta-etcd-1 (zone europe-west6-b): {reason}: Quota"
                              " 'INSTANCES' exceeded. Limit: 0.0 in region europe-west6.")
    assert not err.value.retryable and gce.store.all("instances") == []


@pytest.mark.parametrize(("pool", "reason", "text"), [
    ({"machineType": "e2-huge-99"}, "invalid", "Machine type with name 'e2-huge-99' does not exist"),
    ({"image": "projects/debian-cloud/global/images/family/debian-99"}, "notFound",
     "The resource 'projects/debian-cloud/global/images/family/debian-99' was not found"),
])
def test_a_bad_machine_type_or_image_is_one_line(gce, pool, reason, text):
    with pytest.raises(GceError) as err:
        ensure(api_for(gce, **pool), "lab-meta-etcd-0")
    line = str(err.value)
    assert line.startswith(f"provider cloud: instance lab-meta-etcd-0 (zone europe-west6-a): {reason}: ")
    assert text in line and "\n" not in line and not err.value.retryable


def test_credentials_are_checked_and_never_shown(gce):
    stranger = GceStandin().key_json()  # a key this project does not know
    with pytest.raises(GceError) as err:
        ensure(api_for(gce, key=stranger), "lab-meta-etcd-0")
    assert "required" in str(err.value) and not err.value.retryable
    broken = json.loads(gce.key_json())
    broken["private_key"] = broken["private_key"][:200]
    with pytest.raises(GceError) as err:
        ensure(api_for(gce, key=json.dumps(broken)), "lab-meta-etcd-0")
    assert "secret k is not a service-account key" in str(err.value)
    assert broken["private_key"].splitlines()[1] not in str(err.value)


def test_the_token_endpoint_grants_what_the_api_accepts(gce):
    """The other path google-auth takes: a signed JWT exchanged at token_uri for an access token."""
    key = json.loads(gce.key_json())
    creds = service_account.Credentials.from_service_account_info(
        key, scopes=["https://www.googleapis.com/auth/compute"])
    creds.refresh(google.auth.transport.requests.Request())
    assert gce.accounts.grants == 1 and creds.token.startswith("ya29.")
    token = google.oauth2.credentials.Credentials(creds.token)
    client = compute_v1.InstancesClient(credentials=token, client_options={"api_endpoint": gce.endpoint})
    assert list(client.list(project="orbiter-test", zone="europe-west6-a")) == []
    assert credentials(spec_for(gce), "cloud", lambda n: json.dumps(key).encode()).service_account_email == (
        key["client_email"])


def test_lists_follow_pages(gce):
    api = api_for(gce)
    for i in range(5):
        ensure(api, f"lab-meta-etcd-{i}")
    client = api.instances
    names = [i.name for i in client.list(request={"project": "orbiter-test", "zone": "europe-west6-a",
                                                   "max_results": 1})]
    assert names == ["lab-meta-etcd-0", "lab-meta-etcd-2", "lab-meta-etcd-4"]
    assert sorted(i.name for i in instances.list_instances(api, 'labels.orbiter-orb = "lab"')) == [
        f"lab-meta-etcd-{i}" for i in range(5)]


def test_firewall_rules_follow_the_kinds_ports_and_go_with_the_cluster(gce):
    api = api_for(gce)
    firewall.ensure(api, "lab", "meta", [PortRule(ports=["2379", "2380"])], quiet)
    firewall.ensure(api, "lab", "meta", [PortRule(ports=["2379", "2380"]), PortRule(protocol="udp", ports=["9"])],
                    quiet)
    rule = gce.store.get("firewalls", "global", "orbiter-lab-meta-members")
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["2379", "2380"]}, {"IPProtocol": "udp", "ports": ["9"]}]
    firewall.remove(api, "lab", "meta", quiet)
    firewall.remove(api, "lab", "meta", quiet)
    assert gce.snapshot() == {}


def test_the_load_balancer_is_made_in_order_found_again_and_removed_in_reverse(gce):
    api = api_for(gce)
    for i in range(3):
        instances.ensure(api, "cp", f"lab-meta-cp-{i}", "lab", "meta", PUB, "a1", quiet)
    lb = LoadBalancerInput(orb="lab", cluster="meta", name="api", port=6443, provider_name="cloud",
                           provider=spec_for(gce), pool="cp", secrets=SecretsRef(repo=RepoRef(url="r"), commit="c"))
    address = Balancer(api, lb).ensure(quiet)
    assert Balancer(api, lb).ensure(quiet) == address  # found again by name: nothing made twice
    made = [c for c, _ in gce.store.stats.created]
    assert made[3:] == ["addresses", "healthChecks", "firewalls", "instanceGroups", "instanceGroups",
                        "backendServices", "forwardingRules"]
    result = Balancer(api, lb).members(LoadBalancerMembersInput(balancer=lb, machines=[f"lab-meta-cp-{i}" for i in
                                                                                        range(3)], wait_healthy=True),
                                       quiet)
    assert sorted(result.added) == ["lab-meta-cp-0", "lab-meta-cp-1", "lab-meta-cp-2"]
    result = Balancer(api, lb).members(LoadBalancerMembersInput(balancer=lb, machines=["lab-meta-cp-0"]), quiet)
    assert sorted(result.removed) == ["lab-meta-cp-1", "lab-meta-cp-2"]
    # What is still in use is refused, as GCE refuses it: the order of removal matters.
    with pytest.raises(GceError, match="resourceInUseByAnotherResource"):
        api.change("x", lambda: api.health_checks.delete_unary(project="orbiter-test", region="europe-west6",
                                                               health_check="orbiter-lab-meta-api"), quiet)
    Balancer(api, lb).remove(quiet)
    Balancer(api, lb).remove(quiet)
    assert set(gce.snapshot()) == {"instances"}


def test_the_nth_insert_fails_and_the_others_do_not(gce):
    api = api_for(gce)
    gce.faults.fail_inserts = {2: "operation"}
    ensure(api, "lab-meta-etcd-0")
    with pytest.raises(GceError, match="QUOTA_EXCEEDED"):
        ensure(api, "lab-meta-etcd-1")
    ensure(api, "lab-meta-etcd-2")
    ensure(api, "lab-meta-etcd-1", attempt="a2")  # sent again later: the quota was the 2nd insert's only
    assert sorted(i["name"] for i in gce.store.all("instances")) == [f"lab-meta-etcd-{i}" for i in range(3)]
