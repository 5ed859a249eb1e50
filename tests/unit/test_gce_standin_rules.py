"""The GCE stand-in's list filters and name rules (tests/standins/gce), which the API tests and the
machine tests rely on to behave like GCE's."""

import pytest

from ..standins.gce.filters import FilterError, compile_filter
from ..standins.gce.names import labels_problem, name_problem

A = {"name": "lab-meta-etcd-0", "status": "RUNNING", "description": "orbiter: machine of orb lab cluster meta",
     "labels": {"orbiter-orb": "lab", "orbiter-cluster": "meta", "orbiter-pool": "etcd"}, "tags": {"items": ["t1"]}}
B = {"name": "shop-db-0", "status": "TERMINATED", "description": "not orbiter's", "labels": {"orbiter-orb": "shop"}}
C = {"name": "web-1", "status": "RUNNING"}


def matching(text: str) -> list[str]:
    match = compile_filter(text)
    return [r["name"] for r in (A, B, C) if match(r)]


@pytest.mark.parametrize(("text", "names"), [
    ('labels.orbiter-orb = "lab"', ["lab-meta-etcd-0"]),
    ('labels.orbiter-orb = "lab" AND labels.orbiter-cluster = "meta"', ["lab-meta-etcd-0"]),
    ('labels.orbiter-orb = "lab" AND labels.orbiter-cluster = "other"', []),
    ('(labels.orbiter-orb = "lab") (status = RUNNING)', ["lab-meta-etcd-0"]),
    ('labels.orbiter-orb = "lab" OR labels.orbiter-orb = "shop"', ["lab-meta-etcd-0", "shop-db-0"]),
    ('description : "orbiter: *"', ["lab-meta-etcd-0"]),
    ("labels.orbiter-orb:*", ["lab-meta-etcd-0", "shop-db-0"]),
    ('name != "web-1"', ["lab-meta-etcd-0", "shop-db-0"]),
    ('name = "web-1"', ["web-1"]),
    ("name eq lab-.*", ["lab-meta-etcd-0"]),
    ("name ne lab-.*", ["shop-db-0", "web-1"]),
    ("status = RUNNING", ["lab-meta-etcd-0", "web-1"]),
    ('tags.items : "t1"', ["lab-meta-etcd-0"]),
    ("", ["lab-meta-etcd-0", "shop-db-0", "web-1"]),
])
def test_filters_select_as_gce_does(text, names):
    assert matching(text) == names


@pytest.mark.parametrize("text", ['labels.a = "x" AND', 'name = "x" )', "= x", '(name = "x"', "name"])
def test_a_filter_gce_refuses_is_an_error(text):
    with pytest.raises(FilterError, match="Invalid value for field 'filter'"):
        compile_filter(text)


@pytest.mark.parametrize("name", ["a", "lab-meta-etcd-0", "o1lab-x", "a" * 63])
def test_valid_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "1lab", "Lab", "lab-", "lab_meta", "a" * 64, None])
def test_names_gce_refuses(name):
    assert "Must be a match of regex" in name_problem(name)


def test_label_rules():
    assert labels_problem({"orbiter-orb": "lab", "orbiter-pool": "etcd_0"}) is None
    assert labels_problem({"Orb": "lab"}) is not None
    assert labels_problem({"orb": "Lab"}) is not None
    assert labels_problem({"orb": "x" * 64}) is not None
