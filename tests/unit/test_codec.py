"""Payload encryption codec and the codec server the Web UI talks to."""

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure

from orbiter.worker.codec import CodecKeyError, EncryptionCodec, data_converter
from orbiter.worker.codec_server import CodecServer, serve

KEY = b"master key for tests"
UI = "http://localhost:8233"


class Spec(BaseModel):
    name: str
    token: str


async def test_round_trip_hides_plaintext() -> None:
    conv = data_converter(KEY)
    spec = Spec(name="etcd-1", token="MARKER-tok3n")
    payloads = await conv.encode([spec])
    (p,) = payloads
    assert p.metadata["encoding"] == b"binary/encrypted"
    assert p.metadata["encryption-key-id"] == EncryptionCodec(KEY).key_id.encode()
    assert b"MARKER" not in p.SerializeToString()
    assert await conv.decode(payloads, [Spec]) == [spec]


async def test_same_value_encrypts_differently() -> None:
    codec = EncryptionCodec(KEY)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    a, b = await codec.encode([plain, plain])
    assert a.data != b.data
    assert await codec.decode([a, b]) == [plain, plain]


async def test_wrong_key_names_key_ids() -> None:
    encrypted = await EncryptionCodec(KEY).encode([Payload(data=b"x")])
    other = EncryptionCodec(b"another key")
    with pytest.raises(CodecKeyError) as err:
        await other.decode(encrypted)
    assert EncryptionCodec(KEY).key_id in str(err.value)
    assert other.key_id in str(err.value)


async def test_tampered_payload_fails() -> None:
    codec = EncryptionCodec(KEY)
    (p,) = await codec.encode([Payload(data=b"x")])
    p.data = p.data[:-1] + bytes([p.data[-1] ^ 1])
    with pytest.raises(CodecKeyError, match="altered"):
        await codec.decode([p])


async def test_unencrypted_payload_passes_through() -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')
    assert await EncryptionCodec(KEY).decode([plain]) == [plain]


async def test_failure_message_is_encrypted() -> None:
    conv = data_converter(KEY)
    failure = Failure()
    conv.failure_converter.to_failure(RuntimeError("MARKER boom"), conv.payload_converter, failure)
    await conv.payload_codec.encode_failure(failure)  # type: ignore[union-attr]
    assert b"MARKER" not in failure.SerializeToString()
    await conv.payload_codec.decode_failure(failure)  # type: ignore[union-attr]
    err = conv.failure_converter.from_failure(failure, conv.payload_converter)
    assert "MARKER boom" in str(err)


@pytest.fixture
def server() -> Iterator[CodecServer]:
    srv = serve(KEY, port=0, ui_origin=UI)
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _post(url: str, body: dict, headers: dict[str, str] | None = None) -> tuple[dict, dict]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read()), dict(resp.headers)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _json_payload(p: Payload) -> dict:
    """A payload in the protocol's proto3-JSON shape: every bytes field base64."""
    return {"metadata": {k: _b64(v) for k, v in p.metadata.items()}, "data": _b64(p.data)}


async def test_codec_server_decode_and_encode(server: CodecServer) -> None:
    conv = data_converter(KEY)
    (p,) = await conv.encode([Spec(name="n", token="MARKER")])
    body = {"payloads": [_json_payload(p)]}

    out, headers = _post(server.url + "/decode", body, {"Origin": UI, "X-Namespace": "default"})
    assert headers["Access-Control-Allow-Origin"] == UI
    (decoded,) = out["payloads"]
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(decoded["data"])) == {"name": "n", "token": "MARKER"}

    # the CLI's --codec-endpoint templating puts the namespace in the path
    again, _ = _post(server.url + "/default/encode", {"payloads": [decoded]})
    (enc,) = again["payloads"]
    assert base64.b64decode(enc["metadata"]["encoding"]) == b"binary/encrypted"
    back, _ = _post(server.url + "/decode", {"payloads": [enc]})
    assert back["payloads"] == [decoded]


def test_codec_server_cors_preflight(server: CodecServer) -> None:
    req = urllib.request.Request(
        server.url + "/decode",
        method="OPTIONS",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status in (200, 204)
        assert resp.headers["Access-Control-Allow-Origin"] == UI
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        allow = resp.headers["Access-Control-Allow-Headers"]
        allowed = {h.strip().lower() for h in allow.split(",")}
        assert {"content-type", "x-namespace", "authorization"} <= allowed
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]

    req = urllib.request.Request(
        server.url + "/decode", method="OPTIONS", headers={"Origin": "http://evil.example"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


def test_codec_server_errors(server: CodecServer) -> None:
    foreign = EncryptionCodec(b"other").encode_one(Payload(data=b"x"))
    body = {"payloads": [_json_payload(foreign)]}
    with pytest.raises(urllib.error.HTTPError) as err:
        _post(server.url + "/decode", body)
    assert err.value.code == 400
    assert "key id" in json.loads(err.value.read())["message"]
    with pytest.raises(urllib.error.HTTPError) as err:
        _post(server.url + "/nope", {"payloads": []})
    assert err.value.code == 404


async def test_a_large_payload_is_deflated_before_encryption_and_decodes() -> None:
    """A write-back of many node statuses repeats itself: it leaves far smaller than it is."""
    conv = data_converter(KEY)
    spec = Spec(name="nodes", token="upgradable: apt=2.6.2 (security)\n" * 20000)  # ~660 KB
    (p,) = await conv.encode([spec])
    assert p.metadata["encoding"] == b"binary/encrypted-deflate"
    assert len(p.data) < len(spec.token) / 20
    assert b"upgradable" not in p.data
    assert await conv.decode([p], [Spec]) == [spec]


async def test_a_payload_encrypted_without_deflate_still_decodes() -> None:
    """Histories written before compression (every recorded one) keep replaying."""
    codec = EncryptionCodec(KEY)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"x" * 5000 + b'"')
    nonce = b"\0" * 12
    old = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": codec.key_id.encode()},
                  data=nonce + codec._aead.encrypt(nonce, plain.SerializeToString(), codec.key_id.encode()))
    assert codec.decode_one(old) == plain
    (small,) = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    assert small.metadata["encoding"] == b"binary/encrypted"  # not worth deflating
