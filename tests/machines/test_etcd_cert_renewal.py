"""Certificates with a validity of minutes on real etcd: orbiter renews them `renewBefore` their
expiry, member by member, without another commit; `orbiter rotate-ca` then replaces the CA; a
client that re-reads its bundle keeps working through both and past the first certificates'
expiry, and a client still on the bundle from before the rotation is refused. current.yml shows
each member's expiry."""

import asyncio
import socket
import ssl
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbiter.cli.app import app
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, stop_orb, wait_cluster
from ..support.flows import gitops_id, takeoff, wait_for
from ..support.net import subnet
from ..workflows.test_replay import RECORD
from ..workflows.test_replay import _save as save_history
from .test_etcd_e2e import Traffic

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(96)
CERTS = "      certificates: {validity: 2m, renewBefore: 80s}\n"


async def test_certificates_renew_before_expiry_and_the_ca_rotates(client, worker, repo: GitRepo, local_provider,
                                                                  tmp_path):
    orb = "cr" + uuid.uuid4().hex[:6]
    with e2e_machines(SUBNET) as machines:
        (tmp_path / "loop").mkdir()
        loop = Traffic(fresh=lambda: Etcdctl(repo, "meta", tmp_path / "loop"))  # re-reads the bundle each round
        try:
            first = repo.push({"desired.yml": desired(orb, 3, CERTS, subnet=SUBNET)}, "short-lived certificates")
            await takeoff(client, RepoRef(url=repo.url))
            status = await wait_cluster(repo, first)
            issued = {n.machine: datetime.fromisoformat(n.cert_expiry) for n in status.nodes}
            assert all((at - datetime.now(UTC)).total_seconds() < 130 for at in issued.values()), issued
            loop.thread.start()

            renewed = await wait_for(
                lambda: (s := current(repo).clusters["meta"]) and all(
                    n.cert_expiry and datetime.fromisoformat(n.cert_expiry) > issued[n.machine] for n in s.nodes)
                and s.phase == "Ready" and s, timeout=240, interval=1, what="renewed certificates")
            assert renewed.commit == first  # no commit asked for it
            assert "renew certificates" in renewed.done

            # A new CA while the client loop runs; the bundle from before it is refused afterwards.
            (tmp_path / "old").mkdir()
            old = Etcdctl(repo, "meta", tmp_path / "old")
            old("get", "/traffic")
            rotated = await asyncio.to_thread(CliRunner().invoke, app, ["rotate-ca", f"{orb}/meta"])
            assert rotated.exit_code == 0, rotated.output
            assert "rotated the CA of meta" in rotated.output
            await wait_for(lambda: (s := current(repo).clusters["meta"]) and "rotate ca" in s.done
                           and s.phase == "Ready", timeout=60, what="the rotation in current.yml")
            (tmp_path / "new").mkdir()
            new = Etcdctl(repo, "meta", tmp_path / "new")
            assert new("get", "/traffic", "--print-value-only").strip()
            ca_old, ca_new = (Path(e.files["ca"]).read_text() for e in (old, new))
            assert ca_new.count("BEGIN CERTIFICATE") == 1 and ca_new not in ca_old
            for endpoint in new.endpoints.split(","):  # every member serves a certificate of the new CA alone
                assert handshake(endpoint, new.files) == "ok"
                assert "certificate verify failed" in handshake(endpoint, old.files)
            # Past the first certificates' expiry: the cluster and the client still work.
            wait = (max(issued.values()) - datetime.now(UTC)).total_seconds() + 5
            await wait_for(lambda: datetime.now(UTC) > max(issued.values()), timeout=max(wait, 1) + 10, interval=1)
            ops = loop.ops
            await wait_for(lambda: loop.ops > ops + 5, timeout=60, what="client rounds after the expiry")
            if RECORD:  # renewal and rotation for the determinism guard (tests/workflows/test_replay.py)
                await save_history(client, "cluster_etcd_certs_rotate_ca", f"cluster/{orb}/meta", "ClusterWorkflow")
        finally:
            loop.stop.set()
            if loop.thread.is_alive():
                loop.thread.join()
            await stop_orb(client, orb, gitops_id(repo), machines)
        tls = [f for f in loop.failures if "certificate" in f or "tls" in f.lower()]
        print(f"{loop.ops} client rounds, {len(loop.failures)} failed: {loop.failures[:3]}")
        assert not tls, tls
        # A member restarting may cost a request now and then (ten restarts here); none fails on TLS.
        assert len(loop.failures) <= 5, loop.failures


def handshake(endpoint: str, files: dict[str, str]) -> str:
    """A TLS handshake with a member as a client with these files: "ok" or why not."""
    host, port = endpoint.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=files["ca"])
    context.check_hostname = False
    context.load_cert_chain(files["cert"], files["key"])
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            return "ok"
    except ssl.SSLError as err:
        return str(err)
