"""Orbiter test stand-in, not Kubernetes: DER, RSA and X.509, enough for a CA and serving
certificates, kubeadm's CA pin and the bootstrap token JWS of cluster-info.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import re
import secrets
import time

from .common import Fail, now


def _len(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def der_int(i: int) -> bytes:
    return tlv(0x02, i.to_bytes(i.bit_length() // 8 + 1, "big"))


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    body = bytes([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, body)


NULL = b"\x05\x00"
SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


def _probable_prime(n: int) -> bool:
    for p in SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(8):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def rsa_key(bits: int = 2048) -> dict:
    e = 65537
    while True:
        ps = []
        while len(ps) < 2:
            c = secrets.randbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if _probable_prime(c) and math.gcd(e, c - 1) == 1:
                ps.append(c)
        p, q = ps
        if p != q:
            break
    n = p * q
    d = pow(e, -1, (p - 1) * (q - 1))
    return {"n": n, "e": e, "d": d, "p": p, "q": q}


def key_pem(k: dict) -> str:
    der = seq(
        der_int(0),
        der_int(k["n"]),
        der_int(k["e"]),
        der_int(k["d"]),
        der_int(k["p"]),
        der_int(k["q"]),
        der_int(k["d"] % (k["p"] - 1)),
        der_int(k["d"] % (k["q"] - 1)),
        der_int(pow(k["q"], -1, k["p"])),
    )
    return pem("RSA PRIVATE KEY", der)


def pem(label: str, der: bytes) -> str:
    b = base64.b64encode(der).decode()
    return (
        f"-----BEGIN {label}-----\n"
        + "\n".join(b[i : i + 64] for i in range(0, len(b), 64))
        + f"\n-----END {label}-----\n"
    )


def unpem(text: str) -> bytes:
    body = re.search(r"-----BEGIN [A-Z ]+-----(.*?)-----END", text, re.S)
    if not body:
        raise Fail("not PEM data")
    return base64.b64decode("".join(body.group(1).split()))


def der_read(data: bytes, pos: int = 0) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at pos."""
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    return tag, pos, pos + n


def der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    kids = []
    while start < end:
        t, s, e = der_read(data, start)
        kids.append((start, s, e))
        start = e
    return kids


def key_from_pem(text: str) -> dict:
    der = unpem(text)
    _, s, e = der_read(der)
    vals = [int.from_bytes(der[cs:ce], "big") for _, cs, ce in der_children(der, s, e)]
    return {"n": vals[1], "e": vals[2], "d": vals[3], "p": vals[4], "q": vals[5]}


def spki(k: dict) -> bytes:
    return seq(seq(oid("1.2.840.113549.1.1.1"), NULL), tlv(0x03, b"\x00" + seq(der_int(k["n"]), der_int(k["e"]))))


def name(cn: str) -> bytes:
    return seq(tlv(0x31, seq(oid("2.5.4.3"), tlv(0x0C, cn.encode()))))


def _time(t: float) -> bytes:
    return tlv(0x17, time.strftime("%y%m%d%H%M%SZ", time.gmtime(t)).encode())


def ext(o: str, value: bytes, critical: bool = False) -> bytes:
    return seq(oid(o), tlv(0x01, b"\xff") if critical else b"", tlv(0x04, value))


def make_cert(
    subject: str, key: dict, issuer: str, issuer_key: dict, ca: bool, sans: list[str] = (), days: int = 3650
) -> str:
    pub = spki(key)
    ski = hashlib.sha1(seq(der_int(key["n"]), der_int(key["e"]))).digest()
    aki = hashlib.sha1(seq(der_int(issuer_key["n"]), der_int(issuer_key["e"]))).digest()
    exts = [
        ext("2.5.29.19", seq(tlv(0x01, b"\xff")) if ca else seq(), critical=True),
        ext("2.5.29.15", tlv(0x03, b"\x02\xa4") if ca else tlv(0x03, b"\x05\xa0"), critical=True),
        ext("2.5.29.14", tlv(0x04, ski)),
    ]
    if not ca:
        exts.append(ext("2.5.29.37", seq(oid("1.3.6.1.5.5.7.3.1"))))
        exts.append(ext("2.5.29.35", seq(tlv(0x80, aki))))
        names = b""
        for s in sans:
            try:
                names += tlv(0x87, ipaddress.ip_address(s).packed)
            except ValueError:
                names += tlv(0x82, s.encode())
        exts.append(ext("2.5.29.17", seq(names)))
    alg = seq(oid("1.2.840.113549.1.1.11"), NULL)
    start = now() - 300
    tbs = seq(
        tlv(0xA0, der_int(2)),
        der_int(secrets.randbits(63)),
        alg,
        name(issuer),
        seq(_time(start), _time(start + days * 86400)),
        name(subject),
        pub,
        tlv(0xA3, seq(*exts)),
    )
    digest = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(tbs).digest()
    k = (issuer_key["n"].bit_length() + 7) // 8
    em = b"\x00\x01" + b"\xff" * (k - len(digest) - 3) + b"\x00" + digest
    sig = pow(int.from_bytes(em, "big"), issuer_key["d"], issuer_key["n"]).to_bytes(k, "big")
    return pem("CERTIFICATE", seq(tbs, alg, tlv(0x03, b"\x00" + sig)))


def ca_cert_hash(cert_pem: str) -> str:
    """sha256 of the certificate's DER SubjectPublicKeyInfo, as kubeadm pins it."""
    der = unpem(cert_pem)
    _, s, e = der_read(der)
    tbs_start, ts, te = der_children(der, s, e)[0]
    kids = der_children(der, ts, te)
    if der[kids[0][0]] == 0xA0:
        kids = kids[1:]
    start, _, end = kids[5]
    return "sha256:" + hashlib.sha256(der[start:end]).hexdigest()


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def jws_sign(payload: str, tid: str, secret: str) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "kid": tid}).encode())
    sig = hmac.new(secret.encode(), (header + "." + _b64url(payload.encode())).encode(), hashlib.sha256).digest()
    return header + ".." + _b64url(sig)
