#!/usr/bin/env python3
"""A stand-in for ambit-operator's node-agent endpoints (PROTOCOLS.md §2), for l4_operator.sh.

  l4_fake_operator.py PORT EVENTS_FILE CA_CERT CA_KEY TOKEN LOG

GET /v1/config?node=..[&since=..]: streams EVENTS_FILE (NDJSON events), then {"type":"synced"},
then a ping every second; POST /v1/certificates: signs the CSR with the CA (openssl x509 -req,
SAN copied) and answers {"certChain": [leaf, ca]}. Both require "Authorization: Bearer TOKEN"
(else 401). Every request is appended to LOG.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, EVENTS, CA, CAKEY, TOKEN, LOG = sys.argv[1:7]


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


class H(BaseHTTPRequestHandler):
    def authorized(self):
        ok = self.headers.get("Authorization", "") == "Bearer " + TOKEN
        log("%s %s auth=%s" % (self.command, self.path, "ok" if ok else "bad"))
        if not ok:
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b'{"error": "bad token"}\n')
        return ok

    def do_GET(self):
        if not self.path.startswith("/v1/config") or not self.authorized():
            if not self.path.startswith("/v1/config"):
                self.send_response(404)
                self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        try:
            with open(EVENTS) as f:
                for line in f:
                    if line.strip():
                        self.wfile.write(line.strip().encode() + b"\n")
            self.wfile.write(b'{"type": "synced", "version": 7}\n')
            self.wfile.flush()
            while True:
                time.sleep(1)
                self.wfile.write(b'{"type": "ping"}\n')
                self.wfile.flush()
        except OSError:
            pass

    def do_POST(self):
        if self.path != "/v1/certificates" or not self.authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "csr.pem"), "w").write(body["csr"])
            r = subprocess.run(["openssl", "x509", "-req", "-in", os.path.join(d, "csr.pem"),
                                "-CA", CA, "-CAkey", CAKEY, "-days", "1", "-set_serial",
                                str(int(time.time() * 1000)), "-copy_extensions", "copyall",
                                "-out", os.path.join(d, "leaf.pem")], capture_output=True)
            if r.returncode != 0:
                self.send_response(400)
                self.end_headers()
                self.wfile.write(r.stderr)
                return
            leaf = open(os.path.join(d, "leaf.pem")).read()
        log("signed %s" % body.get("identity"))
        out = json.dumps({"certChain": [leaf, open(CA).read()]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(PORT)), H).serve_forever()
