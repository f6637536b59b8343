"""A local stand-in for the few Hugging Face Hub endpoints an upload uses (no network: it listens on 127.0.0.1).

``huggingface_hub`` is pointed at it with ``HF_ENDPOINT``; with ``HF_HUB_DISABLE_XET=1`` a commit is the hub's
documented two-step protocol: ``POST /api/models/{repo}/preupload/{rev}`` (the server says, per file, whether it goes
inline — "regular" — or through LFS; the fake says regular for every file) and ``POST /api/models/{repo}/commit/{rev}``
with an NDJSON body (a header line, then one ``file`` line per file with its base64 content). ``create_repo`` is
``POST /api/repos/create``; the model card's front matter is sent to ``POST /api/validate-yaml`` first. The fake records what it receives: the created repositories (with ``private``), the
commits and the files' bytes, and every request line.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.commits: list[dict] = []
        self.requests: list[str] = []
        self.validated: list[dict] = []
        self.fail_commit = False
        self.fail_message = "internal error"  # what a refused commit answers (a test may echo a credential in it)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                return

            def _send(self, code: int, obj) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_HEAD(self):  # the reachability probe
                hub.requests.append(f"HEAD {self.path}")
                self.send_response(200)
                self.end_headers()

            def do_GET(self):
                hub.requests.append(f"GET {self.path}")
                if self.path.startswith("/api/whoami"):
                    return self._send(200, {"name": "tester", "type": "user", "auth": {}})
                return self._send(404, {"error": "not found"})

            def do_POST(self):
                hub.requests.append(f"POST {self.path}")
                body = self._body()
                if self.headers.get("Authorization", "") != "Bearer hf_fake_token":
                    return self._send(401, {"error": "Invalid credentials"})
                if self.path == "/api/repos/create":
                    p = json.loads(body)
                    repo = f"{p.get('organization') or 'tester'}/{p['name']}"
                    hub.repos[repo] = p
                    return self._send(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if self.path == "/api/validate-yaml":  # the hub's check of README.md's front matter
                    hub.validated.append(json.loads(body))
                    return self._send(200, {"errors": [], "warnings": []})
                parts = self.path.split("/")
                if len(parts) >= 6 and parts[1] == "api" and parts[2] == "models" and parts[5] == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                if len(parts) >= 6 and parts[1] == "api" and parts[2] == "models" and parts[5] == "commit":
                    if hub.fail_commit:
                        return self._send(500, {"error": hub.fail_message})
                    repo = f"{parts[3]}/{parts[4]}"
                    lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                    header = next(x["value"] for x in lines if x["key"] == "header")
                    files = {x["value"]["path"]: base64.b64decode(x["value"]["content"])
                             for x in lines if x["key"] == "file"}
                    hub.commits.append({"repo": repo, "summary": header.get("summary"), "files": files})
                    oid = f"{len(hub.commits):040x}"
                    return self._send(200, {"commitUrl": f"{hub.url}/{repo}/commit/{oid}", "commitOid": oid,
                                            "success": True})
                return self._send(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
