#!/usr/bin/env python3
"""TEST RESPONDER for the ambit-cni integration tests — not part of ambit.

The component under test is the CNI plugin. Its two peers are played here:

  api DIR PORT [CERT KEY]
                      a stand-in Kubernetes API server on 127.0.0.1:PORT (0: any; the port is
                      written to DIR/api.port) serving the pod and
                      namespace objects in DIR (pod-<ns>-<name>.json, ns-<ns>.json); 404 Status
                      otherwise. If DIR/delay exists, each answer waits that many seconds.
                      A bearer token listed in DIR/revoked-tokens (one a line) gets 401, as the
                      API server answers a token bound to a pod that was deleted. With CERT and
                      KEY it speaks HTTPS (as the in-cluster config requires).
  agent DIR SOCK      a stand-in node agent on the unix socket SOCK speaking PROTOCOLS.md §3:
                      POST /v1/pods -> 200 {"adopted": true}, or 503 when DIR/agent-mode says
                      "refuse"; DELETE /v1/pods/<uid> -> 200. Every request is appended to
                      DIR/agent.log as one JSON line.
  listen PORT LOG     a TCP listener (run it inside the pod netns with `ip netns exec`) that
                      records the original destination (SO_ORIGINAL_DST) of each connection to
                      LOG and answers "ambit-test-listener".

Replace the agent role with the real ambit-node once it serves cni.sock.
"""
import http.server
import json
import os
import socket
import socketserver
import struct
import sys
import time


class ApiHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        d = self.server.dir
        try:
            delay = float(open(os.path.join(d, "delay")).read().strip())
            time.sleep(delay)
        except (OSError, ValueError):
            pass
        auth = self.headers.get("Authorization", "")
        try:
            revoked = open(os.path.join(d, "revoked-tokens")).read().split()
        except OSError:
            revoked = []
        if auth.startswith("Bearer ") and auth[7:] in revoked:
            body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "Unauthorized", "code": 401,
                               "message": "Unauthorized"}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        parts = self.path.split("?")[0].strip("/").split("/")
        f = None
        if len(parts) == 4 and parts[:3] == ["api", "v1", "namespaces"]:
            f = os.path.join(d, "ns-%s.json" % parts[3])
        elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            f = os.path.join(d, "pod-%s-%s.json" % (parts[3], parts[5]))
        if f and os.path.exists(f):
            body = open(f, "rb").read()
            self.send_response(200)
        else:
            body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404,
                               "message": "%s not found" % self.path}).encode()
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class AgentHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def address_string(self):
        return "unix"

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self, entry):
        with open(os.path.join(self.server.dir, "agent.log"), "a") as f:
            f.write(json.dumps(entry) + "\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.record({"method": "POST", "path": self.path, "body": body})
        try:
            mode = open(os.path.join(self.server.dir, "agent-mode")).read().strip()
        except OSError:
            mode = "adopt"
        if self.path != "/v1/pods" or not isinstance(body, dict):
            self.reply(400, {"error": "bad request"})
        elif mode == "refuse":
            self.reply(503, {"error": "test responder told to refuse"})
        else:
            self.reply(200, {"adopted": True})

    def do_DELETE(self):
        self.record({"method": "DELETE", "path": self.path})
        self.reply(200, {})


def listen(port, log):
    SO_ORIGINAL_DST = 80
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    open(log + ".ready", "w").close()
    while True:
        c, peer = s.accept()
        try:
            raw = c.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            p, a = struct.unpack_from("!2xH4s", raw)
            dst = "%s:%d" % (socket.inet_ntoa(a), p)
        except OSError:
            dst = "?"
        with open(log, "a") as f:
            f.write("%s %s\n" % (peer[0], dst))
        c.sendall(b"ambit-test-listener\n")
        c.close()


def main():
    mode = sys.argv[1]
    if mode == "api":
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3])), ApiHandler)
        srv.dir = sys.argv[2]
        if len(sys.argv) > 5:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(sys.argv[4], sys.argv[5])
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        with open(os.path.join(srv.dir, "api.port.tmp"), "w") as f:
            f.write(str(srv.server_address[1]))
        os.rename(os.path.join(srv.dir, "api.port.tmp"), os.path.join(srv.dir, "api.port"))
        srv.serve_forever()
    elif mode == "agent":
        path = sys.argv[3]
        if os.path.exists(path):
            os.unlink(path)
        srv = UnixHTTPServer(path, AgentHandler)
        srv.dir = sys.argv[2]
        srv.serve_forever()
    elif mode == "listen":
        listen(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
