"""A webhook receiver that verifies every request with the Standard Webhooks reference
library (standardwebhooks, from PyPI), for otpd's webhook tests (tests/e2e_webhooks.rs).

Usage: webhook_receiver.py PORT
Prints "READY" once it listens on 127.0.0.1:PORT, then one JSON line per webhook:
{"endpoint", "webhook_id", "verified", "error", "answered", "payload"}. Ends when stdin
closes.

Endpoints (NAME is free; each has its own secret and behaviour):
- PUT /_secret/NAME    body: the endpoint's whsec_ secret (otpd shows it once).
- PUT /_mode/NAME      body: "ok" (answer 204), "down" (answer 503) or "flaky:N" (answer
                       503 to the first N requests of each webhook-id, then 204).
- POST /hook/NAME      a webhook: verified with the secret, then answered per the mode
                       (400 when the signature does not verify).
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

lock = threading.Lock()
secrets = {}
modes = {}
seen = {}  # (endpoint, webhook-id) -> requests so far


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def _body(self):
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def do_PUT(self):
        _, kind, name = self.path.split("/", 2)
        value = self._body().decode()
        with lock:
            (secrets if kind == "_secret" else modes)[name] = value
        self._answer(204)

    def do_POST(self):
        name = self.path.split("/", 2)[2]
        body = self._body()
        webhook_id = self.headers.get("webhook-id")
        with lock:
            secret = secrets.get(name)
            mode = modes.get(name, "ok")
            key = (name, webhook_id)
            seen[key] = seen.get(key, 0) + 1
            count = seen[key]
        payload, error = None, None
        try:
            payload = Webhook(secret).verify(body, dict(self.headers.items()))
        except Exception as e:  # a missing secret, a bad header, a wrong signature
            error = repr(e)
        if error is not None:
            status = 400
        elif mode == "down":
            status = 503
        elif mode.startswith("flaky:") and count <= int(mode.split(":")[1]):
            status = 503
        else:
            status = 204
        line = {
            "endpoint": name,
            "webhook_id": webhook_id,
            "verified": error is None,
            "error": error,
            "answered": status,
            "payload": payload,
        }
        with lock:  # one whole line at a time, whichever thread writes
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
        self._answer(status)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
