#!/usr/bin/env python3
"""Tiny test app for the L4 netns tests (no third-party modules).

  l4_app.py serve PORT              echo server: answers "echo:" + everything it received, then
                                     closes (after the client half-closed)
  l4_app.py client HOST PORT MSG [--slow SECS] [--size N]
                                     send MSG (or N bytes when --size) — spread over SECS
                                     seconds when --slow — half-close, read the answer.
                                     exit 0 + prints the answer (or its length with --size);
                                     exit 2 on reset/refused/timeout, exit 3 on an empty answer.
"""
import socket
import sys
import threading
import time


def serve(port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(128)

    def handle(c):
        try:
            c.sendall(b"echo:")
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, peer = ls.accept()
        print("accepted from %s:%d" % peer, flush=True)
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def client(host, port, msg, slow, size):
    payload = b"x" * size if size else msg.encode()
    try:
        s = socket.create_connection((host, port), timeout=10)
        s.settimeout(20)
        if slow > 0:
            steps = 20
            chunk = max(1, len(payload) // steps)
            for i in range(0, len(payload), chunk):
                s.sendall(payload[i:i + chunk])
                time.sleep(slow / steps)
        else:
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (OSError, socket.timeout) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    if not out:
        print("empty answer", file=sys.stderr)
        return 3
    if size:
        print(len(out))
    else:
        print(out.decode(errors="replace"))
    return 0


def main():
    a = sys.argv[1:]
    if a and a[0] == "serve":
        serve(int(a[1]))
        return 0
    if a and a[0] == "client":
        slow = 0.0
        size = 0
        rest = a[4:]
        while rest:
            if rest[0] == "--slow":
                slow = float(rest[1])
            elif rest[0] == "--size":
                size = int(rest[1])
            rest = rest[2:]
        return client(a[1], int(a[2]), a[3], slow, size)
    print(__doc__, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
