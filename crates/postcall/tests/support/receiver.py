#!/usr/bin/env python3
"""A webhook receiver for callfleet-postcall's tests that checks Standard Webhooks signatures with
its own implementation (hmac, hashlib and base64 from the standard library only), as a customer's
CRM would: the key is the secret's part after `whsec_`, base64-decoded; the signature is
base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")); timestamps older or newer
than five minutes are refused.

    python3 receiver.py PORT NAME=whsec_... [NAME=whsec_...]   # POST /NAME is that endpoint

It prints `ready` once listening. Control (unsigned, for the test only):
    POST /_mode {"mode": "ok"|"fail"|"slow"|"redirect"|"retry_after", "slow": secs, "retry_after": "2"}
    GET  /_received → every webhook request seen: path, id, mode, verified, problem, duplicate, type
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECS = 300

port = int(sys.argv[1])
keys = {}
for spec in sys.argv[2:]:
    name, secret = spec.split("=", 1)
    assert secret.startswith("whsec_"), "secrets start with whsec_"
    keys["/" + name] = base64.b64decode(secret[len("whsec_"):])

lock = threading.Lock()
state = {"mode": "ok", "slow": 3.0, "retry_after": "2"}
received = []
accepted_ids = set()


def problem_with(path, headers, body):
    """None when the request is signed by the endpoint's secret, else what is wrong."""
    key = keys.get(path)
    if key is None:
        return "unknown endpoint"
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return "missing webhook headers"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "timestamp is not an integer"
    if abs(time.time() - sent_at) > TOLERANCE_SECS:
        return "timestamp outside the tolerance"
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no valid v1 signature"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_received":
            with lock:
                body = json.dumps(received).encode()
            self.reply(200, body, [("content-type", "application/json")])
        else:
            self.reply(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/_mode":
            with lock:
                state.update(json.loads(body))
            return self.reply(204)
        problem = problem_with(self.path, self.headers, body)
        msg_id = self.headers.get("webhook-id")
        try:
            event_type = json.loads(body).get("type")
        except ValueError:
            event_type = None
        with lock:
            mode, slow, retry_after = state["mode"], state["slow"], state["retry_after"]
            accepting = problem is None and mode == "ok"
            duplicate = accepting and msg_id in accepted_ids
            if accepting:
                accepted_ids.add(msg_id)
            received.append(
                {
                    "path": self.path,
                    "id": msg_id,
                    "mode": mode,
                    "verified": problem is None,
                    "problem": problem,
                    "duplicate": duplicate,
                    "type": event_type,
                }
            )
        if problem is not None:
            return self.reply(401, problem.encode())
        if mode == "ok":
            self.reply(200, b"thanks")
        elif mode == "fail":
            self.reply(500, b"receiver broken")
        elif mode == "slow":
            time.sleep(slow)
            self.reply(200, b"too late")
        elif mode == "redirect":
            self.reply(302, b"", [("location", f"http://127.0.0.1:{port}/elsewhere")])
        elif mode == "retry_after":
            self.reply(503, b"busy", [("retry-after", retry_after)])


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
