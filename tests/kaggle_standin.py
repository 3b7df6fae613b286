"""A local stand-in for Kaggle's API, to drive the real kaggle client without contacting Kaggle.

    unshare -n sh -c 'ip link set lo up && python tests/kaggle_standin.py --log requests.jsonl -- CMD ...'

The kaggle client sends its RPCs to http://localhost/api/v1/<service>/<method> when KAGGLE_API_ENVIRONMENT is
LOCALHOST (kagglesdk.kaggle_env). This serves the few RPCs that `kaggle datasets status|create|version` and
`kaggle kernels push` use (GetDatasetStatus, StartBlobUpload plus the PUT of each file, CreateDataset,
CreateDatasetVersion, SaveKernel), runs CMD with that variable set, and writes every request it got (RPC,
JSON body, uploaded file names, sizes and sha256) to --log as JSON lines.

It is bounded: it stops after --max-requests requests or --timeout seconds, or when CMD exits, and it refuses
to run unless the network namespace has no interface but loopback (run it under `unshare -n`), so nothing can
reach the real Kaggle; --allow-network lifts that check.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # run as a script from tests/
from kaggle_common import ToolError, parser, run_tool  # noqa: E402

PROG = "kaggle_standin"


def network_isolated() -> bool:
    """True when the only network interface is loopback (a fresh `unshare -n` namespace)."""
    try:  # if_nameindex asks the kernel about this namespace (/sys/class/net may show the host's)
        return {name for _, name in socket.if_nameindex()} <= {"lo"}
    except OSError:
        return False


class StandIn:
    def __init__(self, port: int, existing: Sequence[str], max_requests: int):
        self.port, self.max_requests = port, max_requests
        self.existing = set(existing)
        self.requests: list[dict[str, Any]] = []
        self.uploads: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True

    def _record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)
            if len(self.requests) >= self.max_requests:
                self.done.set()

    def _rpc(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        base = f"http://localhost:{self.port}"
        if method == "GetDatasetStatus":
            ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
            if ref in self.existing:
                return 200, {"status": "READY"}
            return 404, {"code": 404, "message": f"Dataset {ref} not found"}
        if method == "StartBlobUpload":
            n = len(self.uploads)
            token = f"blob-{n}"
            self.uploads[token] = {"name": body.get("name"), "contentLength": body.get("contentLength")}
            return 200, {"token": token, "createUrl": f"{base}/upload/{token}"}
        if method in ("CreateDataset", "CreateDatasetVersion"):
            ref = f"{body.get('ownerSlug')}/{body.get('slug') or body.get('datasetSlug')}"
            self.existing.add(ref)
            return 200, {"ref": ref, "url": f"{base}/datasets/{ref}", "status": "ok", "error": ""}
        if method == "SaveKernel":
            slug = body.get("slug", "")
            return 200, {"ref": slug, "url": f"{base}/code/{slug}", "versionNumber": 1, "error": ""}
        return 404, {"code": 404, "message": f"stand-in does not serve {method}"}

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def _send(self, code: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self._body()
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw[:200].decode(errors="replace")}
                parts = self.path.strip("/").split("/")  # api/v1/<service>/<method>
                method = parts[-1] if len(parts) >= 4 else ""
                code, reply = standin._rpc(method, body)
                if isinstance(body.get("text"), str):  # a notebook: keep the log small
                    body = {**body, "text": f"<{len(body['text'])} chars>", "_text": body["text"]}
                standin._record(
                    {
                        "verb": "POST",
                        "path": self.path,
                        "rpc": method,
                        "body": body,
                        "status": code,
                        "auth": self.headers.get("Authorization", "").split(" ")[0],
                    }
                )
                self._send(code, reply)

            def do_PUT(self) -> None:
                data = self._body()
                token = self.path.rstrip("/").split("/")[-1]
                info = standin.uploads.get(token, {})
                standin._record(
                    {
                        "verb": "PUT",
                        "path": self.path,
                        "token": token,
                        "name": info.get("name"),
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "status": 200,
                    }
                )
                self._send(200, {})

            def do_GET(self) -> None:
                standin._record({"verb": "GET", "path": self.path, "status": 404})
                self._send(404, {"code": 404, "message": "not served"})

        return Handler

    def serve(self) -> None:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    cmd: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1 :]
    p = parser(PROG, __doc__.split("\n\n")[0])
    p.add_argument("--log", type=Path, required=True, help="JSON lines file of the requests received")
    p.add_argument("--port", type=int, default=80, help="port (the client's LOCALHOST endpoint is port 80)")
    p.add_argument("--max-requests", type=int, default=500)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before the command is stopped")
    p.add_argument(
        "--existing",
        action="append",
        default=[],
        metavar="USER/SLUG",
        help="datasets that already exist (status READY; others are 404 until created)",
    )
    p.add_argument("--allow-network", action="store_true", help="run even with real network interfaces")
    args = p.parse_args(argv)
    if not cmd:
        raise ToolError("give the command to run after --")
    if not args.allow_network and not network_isolated():
        raise ToolError(
            "network interfaces other than loopback exist: run under `unshare -n` (or pass --allow-network)"
        )
    standin = StandIn(args.port, args.existing, args.max_requests)
    standin.serve()
    env = {**os.environ, "KAGGLE_API_ENVIRONMENT": "LOCALHOST", "NO_PROXY": "*", "no_proxy": "*"}
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    proc = subprocess.Popen(cmd, env=env)
    t0 = time.time()
    rc = None
    while rc is None:
        rc = proc.poll()
        if rc is None and (standin.done.is_set() or time.time() - t0 > args.timeout):
            proc.kill()
            rc = proc.wait()
            print(
                f"{PROG}: stopped the command ({'request limit' if standin.done.is_set() else 'timeout'})",
                file=sys.stderr,
            )
            rc = rc or 124
        time.sleep(0.05)
    standin.stop()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "w") as f:
        for r in standin.requests:
            f.write(json.dumps(r) + "\n")
    print(
        f"{PROG}: {len(standin.requests)} request(s) logged to {args.log}; command exit {rc}", file=sys.stderr
    )
    return rc


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
