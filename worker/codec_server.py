"""Remote codec server: lets the Temporal Web UI and CLI show decrypted payloads.

Implements Temporal's codec server protocol (POST /encode, POST /decode, also under a
/{namespace}/ prefix as the CLI's --codec-endpoint templating produces) with the stdlib only, so
it runs wherever the master key is, with no extra dependencies. Bind it to loopback: anyone who
can reach it can decrypt history.
"""

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.protobuf.message import Error as ProtobufError
from temporalio.api.common.v1 import Payload, Payloads

from orbiter.models.secrets import SecretsError

from .codec import EncryptionCodec

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
ALLOW_HEADERS = "Content-Type,X-Namespace,Authorization"


def _origins(ui_origin: str) -> set[str]:
    return {o.strip().rstrip("/") for o in ui_origin.split(",") if o.strip()}


class CodecServer(ThreadingHTTPServer):
    """Holds the codec and the allowed browser origins for the request handlers."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], codec: EncryptionCodec, ui_origin: str) -> None:
        self.codec = codec
        self.allowed_origins = _origins(ui_origin)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: CodecServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("codec server: " + format, *args)

    def _cors(self) -> None:
        """Echo the origin only when it is the configured UI: credentials forbid a wildcard."""
        origin = self.headers.get("Origin", "").rstrip("/")
        if origin and origin in self.server.allowed_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Vary", "Origin")

    def _reply(self, status: HTTPStatus, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, json.dumps({"message": message}).encode())

    def _operation(self) -> Callable[[Payload], Payload] | None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/decode"):
            return self.server.codec.decode_one
        if path.endswith("/encode"):
            return self.server.codec.encode_one
        return None

    def do_OPTIONS(self) -> None:  # noqa: N802 - stdlib naming
        self.send_response(HTTPStatus.NO_CONTENT if self._operation() else HTTPStatus.NOT_FOUND)
        self._cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        operation = self._operation()
        if operation is None:
            self._error(HTTPStatus.NOT_FOUND, f"unknown path {self.path}: use /encode or /decode")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._error(HTTPStatus.BAD_REQUEST, "request needs a JSON body with Content-Length")
            return
        body = self.rfile.read(length)
        try:
            payloads = json_format.Parse(body, Payloads())
        except (ProtobufError, ValueError) as err:
            self._error(HTTPStatus.BAD_REQUEST, f"body is not {{'payloads': [...]}}: {err}")
            return
        try:
            result = Payloads(payloads=[operation(p) for p in payloads.payloads])
        except SecretsError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        self._reply(HTTPStatus.OK, json_format.MessageToJson(result).encode())


def serve(
    master_key: bytes,
    host: str = "127.0.0.1",
    port: int = 8234,
    ui_origin: str = "http://localhost:8233",
) -> CodecServer:
    """Starts serving in a daemon thread; stop with `server.shutdown(); server.server_close()`.

    `ui_origin` may list several origins separated by commas; port 0 picks a free port.
    """
    server = CodecServer((host, port), EncryptionCodec(master_key), ui_origin)
    threading.Thread(target=server.serve_forever, name="codec-server", daemon=True).start()
    return server


def run(
    master_key: bytes,
    host: str = "127.0.0.1",
    port: int = 8234,
    ui_origin: str = "http://localhost:8233",
) -> None:
    """Serves until interrupted (the `orbiter codec-server` command)."""
    server = CodecServer((host, port), EncryptionCodec(master_key), ui_origin)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
