"""Credentials as Google checks them: a service-account key the stand-in made (a real RSA key in
the JSON format of a downloaded key, with the stand-in's /token as its token_uri), and bearer
tokens on every API call: an access token the stand-in issued for a signed JWT grant, or a
self-signed JWT (what google-auth sends the Compute API by default), checked against that key."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SCOPE = "https://www.googleapis.com/auth/compute"


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class AuthError(Exception):
    pass


class Accounts:
    """Service accounts the stand-in trusts, and the tokens it issued."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, rsa.RSAPublicKey]] = {}  # key id -> (client_email, public key)
        self.tokens: dict[str, float] = {}  # access token -> expiry
        self.lock = threading.Lock()
        self.grants = 0  # token requests answered (the credential path the client took)
        self.jwt_calls = 0  # API calls authorised by a self-signed JWT

    def new_key(self, project: str, token_uri: str, email: str | None = None) -> str:
        """A service-account key file's JSON, as `gcloud iam service-accounts keys create` writes it."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = email or f"orbiter@{project}.iam.gserviceaccount.com"
        self.keys[key_id] = (email, key.public_key())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return json.dumps({
            "type": "service_account", "project_id": project, "private_key_id": key_id, "private_key": pem,
            "client_email": email, "client_id": str(secrets.randbelow(10**20)), "token_uri": token_uri,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        }, indent=2)

    def verify_jwt(self, token: str, audience: tuple[str, ...] | None = None) -> dict:
        try:
            head_b64, claims_b64, sig_b64 = token.split(".")
            head, claims = json.loads(_b64decode(head_b64)), json.loads(_b64decode(claims_b64))
        except (ValueError, json.JSONDecodeError) as err:
            raise AuthError("malformed JWT") from err
        if head.get("alg") != "RS256" or head.get("kid") not in self.keys:
            raise AuthError("unknown signing key")
        email, public = self.keys[head["kid"]]
        try:
            public.verify(_b64decode(sig_b64), f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(),
                          hashes.SHA256())
        except InvalidSignature as err:
            raise AuthError("bad signature") from err
        if claims.get("iss") != email or float(claims.get("exp", 0)) < time.time():
            raise AuthError("expired or foreign JWT")
        if audience is not None and claims.get("aud") not in audience:
            raise AuthError("wrong audience")
        return claims

    def grant(self, assertion: str, token_uri: str) -> dict:
        # google-auth names Google's token endpoint as the audience, whatever token_uri says.
        claims = self.verify_jwt(assertion, audience=(token_uri, "https://oauth2.googleapis.com/token"))
        if SCOPE not in str(claims.get("scope", "")).split():
            raise AuthError("the compute scope was not asked for")
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.time() + 3600
            self.grants += 1
        return {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def check(self, header: str | None) -> None:
        """Raises AuthError unless the Authorization header carries a token this stand-in accepts."""
        if not header or not header.startswith("Bearer "):
            raise AuthError("Request is missing required authentication credential. Expected OAuth 2 access token.")
        token = header[len("Bearer "):]
        with self.lock:
            if self.tokens.get(token, 0) > time.time():
                return
        claims = self.verify_jwt(token)
        if claims.get("aud") != "https://compute.googleapis.com/" and SCOPE not in str(claims.get("scope", "")):
            raise AuthError("the token is not for the Compute API")
        with self.lock:
            self.jwt_calls += 1
