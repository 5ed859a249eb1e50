"""The GCE provider in desired.yml: strictly validated like every other field, and the pure answers
the runtime builds on (instance names, zones, the kinds' member ports)."""

import pytest

from orbiter.models.kinds.etcd.spec import EtcdCluster
from orbiter.models.kinds.kubernetes.spec import KubernetesCluster
from orbiter.models.load import DesiredStateError, load_desired
from orbiter.models.providers.gce import GceProvider, instance_name

DOC = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: lab
spec:
  providers:
    cloud:
      kind: gce
      project: my-project
{where}
      credentialsSecret: cloud_credentials
      pools:
        cp: {{machineType: e2-standard-2, diskGB: 30}}
        workers: {{machineType: e2-standard-4, image: debian-12, preemptible: true, externalIP: true}}
    dc1:
      kind: static
      pools:
        cp:
          - {{id: c1, ip: 192.0.2.11}}
          - {{id: c2, ip: 192.0.2.12}}
          - {{id: c3, ip: 192.0.2.13}}
  clusters:
    prod:
      kind: kubernetes
      version: v1.31.2
      controlPlane: {{provider: {cp}, pool: cp, nodes: 3}}
      controlPlaneEndpoint: {endpoint}
      workers:
        default: {{provider: cloud, pool: workers, nodes: 2}}
"""


def load(where: str = "      zones: [europe-west6-a, europe-west6-b]", cp: str = "cloud",
         endpoint: str = "{loadBalancer: true}"):
    return load_desired(DOC.format(where=where, cp=cp, endpoint=endpoint))


def error(**kwargs) -> DesiredStateError:
    with pytest.raises(DesiredStateError) as err:
        load(**kwargs)
    return err.value


def test_a_gce_orb_with_a_load_balancer_loads():
    orb = load()
    gce = orb.spec.providers["cloud"]
    assert isinstance(gce, GceProvider) and gce.can("load-balancer") and not gce.can("vip")
    assert gce.region_name() == "europe-west6" and gce.network == "default" and gce.endpoint is None
    assert gce.pools["workers"].source_image() == "projects/debian-cloud/global/images/family/debian-12"
    prod = orb.spec.clusters["prod"]
    assert isinstance(prod, KubernetesCluster) and prod.load_balanced()


def test_credentials_are_optional_application_default_credentials_then():
    orb = load_desired(DOC.format(where="      zone: europe-west6-a", cp="cloud", endpoint="{loadBalancer: true}")
                       .replace("      credentialsSecret: cloud_credentials\n", ""))
    assert orb.spec.providers["cloud"].credentials_secret is None


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"where": "      zone: europe-west6-a\n      zones: [europe-west6-b]"}, "spec.providers.cloud",
     "give zone (one) or zones (a list), not both"),
    ({"where": "      zones: [europe-west6-a, us-east1-b]"}, "spec.providers.cloud.zones",
     "zone us-east1-b is not in region europe-west6"),
    ({"where": "      zone: europe-west6"}, "spec.providers.cloud.zone", "does not match"),
    ({"where": "      zone: europe-west6-a\n      endpoint: compute.internal"}, "spec.providers.cloud.endpoint",
     "does not match"),
    ({"where": "      zone: europe-west6-a\n      sshSourceRanges: [10.0.0.1/8]"},
     "spec.providers.cloud.sshSourceRanges", "is not an IPv4 network"),
    ({"cp": "dc1"}, "spec.clusters.prod.controlPlaneEndpoint.loadBalancer", "provider dc1 creates no load balancer"),
    ({"endpoint": "{vip: 10.0.0.100}"}, "spec.clusters.prod.controlPlaneEndpoint.vip",
     "provider cloud cannot carry a keepalived VIP; use loadBalancer: true"),
    ({"endpoint": "{loadBalancer: true, host: lb.example}"}, "spec.clusters.prod.controlPlaneEndpoint",
     "give one of vip"),
])
def test_bad_gce_settings_are_one_located_line(kwargs, field, message):
    err = error(**kwargs)
    assert err.field.startswith(field.removeprefix("spec.")) and message in err.message, (err.field, err.message)


def test_instance_names_start_with_a_letter_and_spread_over_the_zones():
    gce = load().spec.providers["cloud"]
    assert instance_name("lab", "prod", "cp", 0) == "lab-prod-cp-0"
    assert instance_name("1lab", "prod", "cp", 0) == "o1lab-prod-cp-0"
    ids = gce.machine_ids("1lab", "prod", "cp", {"o1lab-prod-cp-0"}, 3)
    assert ids == ["o1lab-prod-cp-1", "o1lab-prod-cp-2", "o1lab-prod-cp-3"]
    assert [gce.zone_of("cp", i) for i in ids] == ["europe-west6-b", "europe-west6-a", "europe-west6-b"]


def test_kinds_say_which_ports_their_members_use():
    etcd = EtcdCluster.model_validate({"kind": "etcd", "version": "3.4.23",
                                       "members": {"provider": "cloud", "pool": "cp", "nodes": 3}})
    assert [(p.protocol, p.ports) for p in etcd.member_ports()] == [("tcp", ["2379", "2380"])]
    prod = load().spec.clusters["prod"]
    ports = {(p.protocol, tuple(p.ports)) for p in prod.member_ports()}
    assert ("tcp", ("6443", "10250", "2379-2380")) in ports and ("ipip", ()) in ports
