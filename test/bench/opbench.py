#!/usr/bin/env python3
"""opbench.py — the operator benchmark's driver (test/bench/operator.sh starts the API server).

Loads a private kube-apiserver with a cluster of SCALE x (100 nodes, 50 namespaces, 10 000 pods,
2 000 services + EndpointSlices, 500 AuthorizationPolicies, PeerAuthentications), starts
ambit-operator against it, lets test/bench/opagents.c open one config stream per node (TLS,
each with a bound token of its node's agent pod), then makes single-object changes one at a
time and measures API write completion -> the last agent received the event carrying it.

Python standard library only. Timestamps are CLOCK_MONOTONIC in both this driver and opagents
(time.monotonic_ns), so they can be subtracted. Writes the result JSON (--out).
"""
import argparse
import http.client
import json
import os
import queue
import random
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

MARK = "opbm"


def log(*a):
    print("opbench:", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ a tiny parallel kube client
class Api:
    def __init__(self, kubeconfig):
        base = os.path.dirname(os.path.abspath(kubeconfig))
        text = open(kubeconfig).read()
        self.server = re.search(r"server:\s*(\S+)", text).group(1)
        self.token = re.search(r"token:\s*(\S+)", text).group(1)
        ca = re.search(r"certificate-authority:\s*(\S+)", text).group(1)
        self.ca = ca if os.path.isabs(ca) else os.path.join(base, ca)
        u = urllib.parse.urlparse(self.server)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.local = threading.local()
        self.requests = 0

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
            self.local.conn = c
        return c

    def call(self, method, path, body=None, ctype="application/json", ok=(200, 201, 202)):
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Authorization": "Bearer " + self.token, "Accept": "application/json"}
        if data is not None:
            hdrs["Content-Type"] = ctype
        last = None
        for attempt in range(8):
            c = self._conn()
            try:
                c.request(method, path, body=data, headers=hdrs)
                r = c.getresponse()
                raw = r.read()
            except (OSError, http.client.HTTPException) as e:
                last = e
                c.close()
                self.local.conn = None
                time.sleep(0.05 * (attempt + 1))
                continue
            self.requests += 1
            if r.status in ok:
                return json.loads(raw) if raw else {}
            if r.status in (409,) and method == "POST" and 409 in ok:
                return {}
            if r.status == 429 or r.status >= 500:
                last = RuntimeError(f"{method} {path}: HTTP {r.status} {raw[:200]!r}")
                time.sleep(0.1 * (attempt + 1))
                continue
            raise RuntimeError(f"{method} {path}: HTTP {r.status} {raw[:300]!r}")
        raise RuntimeError(f"{method} {path}: giving up: {last}")


def parallel(api, fn, items, workers):
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, items))


# ------------------------------------------------------------------ the generated cluster
class Cluster:
    def __init__(self, scale, seed=42):
        self.rnd = random.Random(seed)
        s = scale
        self.n_nodes = max(2, round(100 * s))
        self.n_ns = max(2, round(50 * s))
        self.n_pods = max(10, round(10000 * s))
        self.n_svcs = max(4, round(2000 * s))
        self.n_pols = max(4, round(500 * s))
        self.nodes = [f"node-{i:03d}" for i in range(self.n_nodes)]
        self.namespaces = [f"bench-{i:02d}" for i in range(self.n_ns)]
        # 60 % of the namespaces in ambient mode
        self.ambient = {ns for i, ns in enumerate(self.namespaces) if i % 5 < 3}
        # services: spread over the namespaces
        self.services = []  # (ns, name)
        for i in range(self.n_svcs):
            ns = self.namespaces[i % self.n_ns]
            self.services.append((ns, f"svc-{i:04d}"))
        # pods: spread over the services (several versions each), nodes round robin
        self.pods = []  # dict(ns, name, app, version, node, ip, redir)
        for i in range(self.n_pods):
            ns, app = self.services[i % self.n_svcs]
            version = f"v{1 + (i // self.n_svcs) % 3}"
            ip = f"10.{64 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}"
            self.pods.append(
                {
                    "ns": ns,
                    "name": f"{app}-{version}-{i:05d}",
                    "app": app,
                    "version": version,
                    # pseudo-random placement, as a scheduler spreads replicas
                    "node": self.nodes[self.rnd.randrange(self.n_nodes)],
                    "ip": ip,
                    # in an ambient namespace most pods are captured (annotation set by the CNI)
                    "redir": ns in self.ambient and i % 10 != 0,
                }
            )
        self.pods_by_svc = {}
        for p in self.pods:
            self.pods_by_svc.setdefault((p["ns"], p["app"]), []).append(p)

    # -- objects
    @staticmethod
    def node_obj(name, i):
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": f"zone-{i % 3}"}}}

    @staticmethod
    def node_status(i):
        return {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "bench", "lastHeartbeatTime": None,
                            "lastTransitionTime": None}],
            "addresses": [{"type": "InternalIP", "address": f"172.18.{i // 250}.{i % 250 + 2}"},
                          {"type": "Hostname", "address": f"node-{i:03d}"}]}}

    def pod_obj(self, p, extra_labels=None):
        labels = {"app": p["app"], "version": p["version"],
                  "pod-template-hash": "5d8f9c7b6d"}
        if extra_labels:
            labels.update(extra_labels)
        md = {"name": p["name"], "namespace": p["ns"], "labels": labels,
              "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                   "name": f"{p['app']}-{p['version']}-5d8f9c7b6d",
                                   "uid": "00000000-0000-4000-8000-000000000001",
                                   "controller": True}]}
        if p["redir"]:
            md["annotations"] = {"ambient.istio.io/redirection": "enabled"}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": {
            "nodeName": p["node"], "serviceAccountName": p["app"],
            "containers": [{"name": "app", "image": f"registry.example/{p['app']}:1.0",
                            "ports": [{"name": "http", "containerPort": 8080},
                                      {"name": "grpc", "containerPort": 9090}]}]}}

    @staticmethod
    def pod_status(p):
        return {"status": {"phase": "Running", "podIP": p["ip"], "podIPs": [{"ip": p["ip"]}],
                           "hostIP": "172.18.0.2",
                           "conditions": [{"type": "Ready", "status": "True"},
                                          {"type": "ContainersReady", "status": "True"}]}}

    @staticmethod
    def svc_obj(ns, name):
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns,
                                                                    "labels": {"app": name}},
                "spec": {"selector": {"app": name}, "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                    {"name": "grpc", "port": 9090, "targetPort": "grpc", "protocol": "TCP",
                     "appProtocol": "grpc"}]}}

    def slice_obj(self, ns, name):
        eps = []
        for p in self.pods_by_svc.get((ns, name), []):
            eps.append({"addresses": [p["ip"]], "nodeName": p["node"],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": p["name"]}})
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-abcde", "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name,
                                        "endpointslice.kubernetes.io/managed-by": "bench"}},
                "addressType": "IPv4", "endpoints": eps,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                          {"name": "grpc", "port": 9090, "protocol": "TCP"}]}

    def policies(self):
        """500 AuthorizationPolicies: 4 % in the root namespace, the rest spread; a mix of
        selector / namespace-wide, ALLOW / DENY, principals / namespaces / ports."""
        out = []
        rnd = self.rnd
        for i in range(self.n_pols):
            root = i % 25 == 0
            ns = "istio-system" if root else self.namespaces[i % self.n_ns]
            local = [s for s in self.services if s[0] == ns] or self.services
            kind = i % 4
            spec = {}
            if not root and kind in (0, 1):
                spec["selector"] = {"matchLabels": {"app": local[i % len(local)][1]}}
            elif root and i % 50 == 0:
                spec["selector"] = {"matchLabels": {"version": "v3"}}
            other = self.namespaces[rnd.randrange(self.n_ns)]
            if kind == 0:
                spec["action"] = "ALLOW"
                spec["rules"] = [{"from": [{"source": {"principals": [
                    f"cluster.local/ns/{other}/sa/{self.services[rnd.randrange(self.n_svcs)][1]}",
                    f"cluster.local/ns/{ns}/sa/{local[rnd.randrange(len(local))][1]}"]}}],
                    "to": [{"operation": {"ports": ["8080"]}}]}]
            elif kind == 1:
                spec["action"] = "DENY"
                spec["rules"] = [{"from": [{"source": {"notNamespaces": [ns, other]}}],
                                  "to": [{"operation": {"ports": ["9090"]}}]}]
            elif kind == 2:
                spec["action"] = "ALLOW"
                spec["rules"] = [{"from": [{"source": {"namespaces": [ns, other, "istio-system"]}}]}]
            else:
                spec["action"] = "DENY"
                spec["rules"] = [{"from": [{"source": {"ipBlocks": [f"192.168.{i % 250}.0/24"]}}],
                                  "to": [{"operation": {"notPorts": ["15021"]}}]}]
            out.append({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                        "metadata": {"name": f"pol-{i:04d}", "namespace": ns}, "spec": spec})
        return out

    def peer_auths(self):
        out = [{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": "default", "namespace": "istio-system"},
                "spec": {"mtls": {"mode": "PERMISSIVE"}}}]
        for i, ns in enumerate(self.namespaces):
            if i % 3 == 0:
                out.append({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                            "metadata": {"name": "default", "namespace": ns},
                            "spec": {"mtls": {"mode": "STRICT"}}})
            if i % 7 == 1:
                app = [s for s in self.services if s[0] == ns][0][1]
                out.append({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                            "metadata": {"name": f"{app}-ports", "namespace": ns},
                            "spec": {"selector": {"matchLabels": {"app": app}},
                                     "mtls": {"mode": "STRICT"},
                                     "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}}}})
        return out


def load(api, cl, workers):
    t0 = time.monotonic()
    counts = {}

    def step(name, fn, items):
        t = time.monotonic()
        parallel(api, fn, items, workers)
        counts[name] = len(items)
        log(f"load: {len(items):6d} {name:<28s} {time.monotonic() - t:6.1f} s")

    def mkns(ns):
        labels = {"istio.io/dataplane-mode": "ambient"} if ns in cl.ambient else {}
        api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": ns, "labels": labels}},
                 ok=(201, 409))

    step("namespaces", mkns, ["istio-system"] + cl.namespaces)
    sas = [("istio-system", "default"), ("istio-system", "ambit-node")]
    sas += [(ns, "default") for ns in cl.namespaces] + list(cl.services)
    step("serviceaccounts", lambda s: api.call(
        "POST", f"/api/v1/namespaces/{s[0]}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": s[1]}},
        ok=(201, 409)), sas)

    def mknode(i):
        api.call("POST", "/api/v1/nodes", cl.node_obj(cl.nodes[i], i), ok=(201, 409))
        api.call("PATCH", f"/api/v1/nodes/{cl.nodes[i]}/status", cl.node_status(i),
                 ctype="application/merge-patch+json")

    step("nodes (+ status)", mknode, range(cl.n_nodes))
    step("services", lambda s: api.call("POST", f"/api/v1/namespaces/{s[0]}/services",
                                        cl.svc_obj(*s), ok=(201, 409)), cl.services)

    def mkpod(p):
        api.call("POST", f"/api/v1/namespaces/{p['ns']}/pods", cl.pod_obj(p), ok=(201, 409))
        api.call("PATCH", f"/api/v1/namespaces/{p['ns']}/pods/{p['name']}/status",
                 cl.pod_status(p), ctype="application/merge-patch+json")

    step("pods (+ status)", mkpod, cl.pods)
    step("endpointslices", lambda s: api.call(
        "POST", f"/apis/discovery.k8s.io/v1/namespaces/{s[0]}/endpointslices",
        cl.slice_obj(*s), ok=(201, 409)), cl.services)
    step("authorizationpolicies", lambda o: api.call(
        "POST", f"/apis/security.istio.io/v1/namespaces/{o['metadata']['namespace']}"
        "/authorizationpolicies", o, ok=(201, 409)), cl.policies())
    step("peerauthentications", lambda o: api.call(
        "POST", f"/apis/security.istio.io/v1/namespaces/{o['metadata']['namespace']}"
        "/peerauthentications", o, ok=(201, 409)), cl.peer_auths())
    total = time.monotonic() - t0
    log(f"load: done in {total:.1f} s ({api.requests} requests)")
    return total, counts


def agent_tokens(api, cl, tokdir, workers):
    """One node-agent pod per node (istio-system/ambit-node-NNN, SA ambit-node) and a token
    bound to it (audience istio-ca), as the agent's projected token."""
    os.makedirs(tokdir, exist_ok=True)

    def one(i):
        node = cl.nodes[i]
        name = f"ambit-node-{i:03d}"
        pod = api.call("POST", "/api/v1/namespaces/istio-system/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "istio-system",
                         "labels": {"app": "ambit-node"}},
            "spec": {"nodeName": node, "serviceAccountName": "ambit-node", "hostNetwork": True,
                     "containers": [{"name": "agent", "image": "ambit-node"}]}})
        tr = api.call("POST", "/api/v1/namespaces/istio-system/serviceaccounts/ambit-node/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": ["istio-ca"], "expirationSeconds": 7200,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name,
                                        "uid": pod["metadata"]["uid"]}}})
        with open(os.path.join(tokdir, f"{node}.token"), "w") as f:
            f.write(tr["status"]["token"])

    parallel(api, one, range(cl.n_nodes), workers)


# ------------------------------------------------------------------ process sampling
TCK = os.sysconf("SC_CLK_TCK")


def proc_mem(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def proc_cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TCK
    except (OSError, IndexError):
        return 0.0


class Sampler(threading.Thread):
    """Samples the operator's RSS every 100 ms (VmHWM is the kernel's own peak)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stop, self.max_rss = pid, threading.Event(), 0

    def run(self):
        while not self.stop.is_set():
            self.max_rss = max(self.max_rss, proc_mem(self.pid).get("VmRSS", 0))
            self.stop.wait(0.1)


# ------------------------------------------------------------------ the agents' process
class Agents:
    def __init__(self, argv, logf):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=logf, text=True, bufsize=1)
        self.q = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.p.stdout:
            self.q.put(line.split())
        self.q.put(None)

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def expect(self, word, timeout):
        """Next line starting with `word` (other lines are collected in self.other)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                f = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if f is None:
                return None
            if f and f[0] == word:
                return f
            if f and f[0] in ("drop", "error"):
                log("agents:", " ".join(f))

    def stop(self):
        """Returns the agents' exit status (non-zero: a crash or a sanitizer report)."""
        try:
            self.send("quit")
        except OSError:
            pass
        try:
            return self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return -9


METRICS = ("ambit_operator_snapshot_rebuilds", "ambit_operator_config_pushes_total",
           "ambit_operator_config_push_events_total", "ambit_operator_config_streams_dropped_total",
           "ambit_operator_snapshot_events", "ambit_operator_connected_agents")


def scrape(port):
    """A few of the operator's own counters from its /metrics (unlabelled series only)."""
    out = {}
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/metrics")
        for line in c.getresponse().read().decode().splitlines():
            name, _, val = line.partition(" ")
            if name in METRICS:
                out[name.replace("ambit_operator_", "")] = float(val)
        c.close()
    except (OSError, ValueError, http.client.HTTPException):
        pass
    return out


def pct(vals, p):
    if not vals:
        return None
    v = sorted(vals)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


# ------------------------------------------------------------------ changes
def make_changes(api, cl, n, rnd):
    """Yields (kind, expected agents, marker substrings, write function) one at a time; the
    write function performs the API writes and returns when the last one completed. Expected
    agents: "*" or the indexes of the agents whose scope holds the object (policies are scoped
    per node: a namespace-wide policy goes to the nodes with a workload in its namespace, a
    selector policy to the nodes of the workloads it selects)."""
    created = []
    live = [p for p in cl.pods]
    node_idx = {n: i for i, n in enumerate(cl.nodes)}

    def scope(o):
        ns = o["metadata"]["namespace"]
        sel = (o["spec"].get("selector") or {}).get("matchLabels") or {}
        nodes = {node_idx[p["node"]] for p in live + created
                 if p["ns"] == ns and all(p.get(k) == v for k, v in sel.items())}
        return ",".join(str(n) for n in sorted(nodes))

    pols = [o for o in cl.policies() if o["metadata"]["namespace"] != "istio-system"]
    kinds = ["pod-label", "pod-create", "policy-update", "pod-delete", "service-update"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        m = f"{MARK}-{i:06d}"
        if kind == "pod-delete" and not created:
            kind = "pod-label"
        if kind == "pod-label":
            p = live[rnd.randrange(len(live))]
            subs = ['"type":"upsert"', f'//Pod/{p["ns"]}/{p["name"]}"', f'"{m}"']

            def w(p=p, m=m):
                api.call("PATCH", f"/api/v1/namespaces/{p['ns']}/pods/{p['name']}",
                         {"metadata": {"labels": {"bench-mark": m}}},
                         ctype="application/merge-patch+json")
        elif kind == "pod-create":
            ns, app = cl.services[rnd.randrange(cl.n_svcs)]
            p = {"ns": ns, "name": m, "app": app, "version": "v1",
                 "node": cl.nodes[rnd.randrange(cl.n_nodes)],
                 "ip": f"10.250.{(i // 250) % 250}.{i % 250 + 1}", "redir": ns in cl.ambient}
            created.append(p)
            subs = ['"type":"upsert"', f'//Pod/{ns}/{m}"']

            def w(p=p):
                api.call("POST", f"/api/v1/namespaces/{p['ns']}/pods", cl.pod_obj(p))
                api.call("PATCH", f"/api/v1/namespaces/{p['ns']}/pods/{p['name']}/status",
                         cl.pod_status(p), ctype="application/merge-patch+json")
        elif kind == "pod-delete":
            p = created.pop(0)
            subs = ['"type":"delete"', f'//Pod/{p["ns"]}/{p["name"]}"']

            def w(p=p):
                api.call("DELETE", f"/api/v1/namespaces/{p['ns']}/pods/{p['name']}"
                         "?gracePeriodSeconds=0", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                   "gracePeriodSeconds": 0})
        elif kind == "policy-update":
            want = ""
            while not want:  # a policy that applies somewhere
                o = pols[rnd.randrange(len(pols))]
                want = scope(o)
            ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
            subs = ['"type":"upsert"', f'"{ns}/{name}"', m]
            rules = [{"from": [{"source": {"principals": [f"cluster.local/ns/{ns}/sa/{m}"]}}],
                      "to": [{"operation": {"ports": ["8080"]}}]}]

            def w(ns=ns, name=name, rules=rules):
                api.call("PATCH", f"/apis/security.istio.io/v1/namespaces/{ns}"
                         f"/authorizationpolicies/{name}", {"spec": {"rules": rules}},
                         ctype="application/merge-patch+json")
        else:  # service-update: the grpc port's appProtocol carries the marker
            ns, name = cl.services[rnd.randrange(cl.n_svcs)]
            subs = ['"type":"upsert"', f'"{ns}/{name}.{ns}.svc.', f'"{m}"']

            def w(ns=ns, name=name, m=m):
                api.call("PATCH", f"/api/v1/namespaces/{ns}/services/{name}",
                         [{"op": "replace", "path": "/spec/ports/1/appProtocol", "value": m}],
                         ctype="application/json-patch+json")
        yield kind, (want if kind == "policy-update" else "*"), subs, w


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--operator", required=True)
    ap.add_argument("--agents", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--changes", type=int, default=0)
    ap.add_argument("--workers", type=int, default=24)
    ap.add_argument("--debounce-ms", type=int, default=0, help="0 = the operator's default")
    ap.add_argument("--plaintext", action="store_true")
    ap.add_argument("--perf", default="", help="perf record the operator into this file")
    ap.add_argument("--change-timeout", type=float, default=15.0)
    ap.add_argument("--gap-ms", type=int, default=200,
                    help="quiet time after a change was seen before the next write (0 = back to back)")
    a = ap.parse_args()

    api = Api(a.kubeconfig)
    cl = Cluster(a.scale)
    n_changes = a.changes or max(10, round(250 * a.scale))
    log(f"scale {a.scale}: {cl.n_nodes} nodes, {cl.n_ns} namespaces, {cl.n_pods} pods, "
        f"{cl.n_svcs} services, {cl.n_pols} policies; {n_changes} changes")
    load_s, counts = load(api, cl, a.workers)
    tokdir = os.path.join(a.dir, "tokens")
    agent_tokens(api, cl, tokdir, a.workers)

    # a plug-in CA (Secret cacerts), so the agents know the root before the operator starts
    pki = os.path.join(a.dir, "mesh-ca")
    os.makedirs(pki, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/O=opbench/CN=Root CA",
                    "-days", "2", "-addext", "basicConstraints=critical,CA:true",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout", f"{pki}/ca-key.pem", "-out", f"{pki}/ca-cert.pem"],
                   check=True, capture_output=True)
    import base64
    root = open(f"{pki}/ca-cert.pem", "rb").read()
    b64 = lambda b: base64.b64encode(b).decode()
    api.call("POST", "/api/v1/namespaces/istio-system/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts"},
        "data": {"ca-cert.pem": b64(root), "ca-key.pem": b64(open(f"{pki}/ca-key.pem", "rb").read()),
                 "root-cert.pem": b64(root), "cert-chain.pem": b64(root)}}, ok=(201, 409))

    def freeport():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    lport, mport = freeport(), freeport()
    op_argv = [a.operator, "--kubeconfig", a.kubeconfig, "--namespace", "istio-system",
               "--root-namespace", "istio-system", "--listen", f"127.0.0.1:{lport}",
               "--metrics-listen", f"127.0.0.1:{mport}", "--webhook-listen", ""]
    if a.debounce_ms:
        op_argv += ["--debounce-ms", str(a.debounce_ms)]
    if a.plaintext:
        op_argv += ["--plaintext"]
    ag_argv = [a.agents, "--url",
               f"{'http' if a.plaintext else 'https'}://127.0.0.1:{lport}",
               "--sni", "istiod.istio-system.svc", "--root", f"{pki}/ca-cert.pem",
               "--ready", f"127.0.0.1:{mport}", "--tokens", tokdir]
    ag_argv += cl.nodes
    oplog = open(os.path.join(a.dir, "operator.log"), "w")
    aglog = open(os.path.join(a.dir, "agents.log"), "w")
    env = dict(os.environ, LOG_LEVEL=os.environ.get("OPBENCH_LOG_LEVEL", "info"))

    # the agents wait for the operator's readiness endpoint themselves (polling every 10 ms),
    # then open all streams; started first so that nothing of theirs is on the clock
    agents = Agents(ag_argv, aglog)
    time.sleep(0.3)
    cpu_base = 0.0
    t_start = time.monotonic_ns()
    op = subprocess.Popen(op_argv, stdout=oplog, stderr=subprocess.STDOUT, env=env)
    sampler = Sampler(op.pid)
    sampler.start()
    perf = None
    if a.perf:
        perf = subprocess.Popen(["perf", "record", "-F", "200", "--call-graph", "dwarf,8192",
                                 "-o", a.perf, "-p",
                                 str(op.pid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    res = {"config": {"scale": a.scale, "nodes": cl.n_nodes, "agents": cl.n_nodes,
                      "namespaces": cl.n_ns, "pods": cl.n_pods, "services": cl.n_svcs,
                      "endpointslices": cl.n_svcs, "authorization_policies": cl.n_pols,
                      "peer_authentications": len(cl.peer_auths()),
                      "changes": n_changes, "transport": "http" if a.plaintext else "tls",
                      "debounce_ms": a.debounce_ms or "default", "gap_ms": a.gap_ms,
                      "nproc": os.cpu_count(),
                      "loadavg_at_start": open("/proc/loadavg").read().split()[:3]},
           "load": {"seconds": round(load_s, 1), "objects": counts}}
    failures = []

    def wait_for(word, timeout):
        """agents.expect in 1 s slices, giving up early if the operator exited"""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = agents.expect(word, 1)
            if got is not None:
                return got
            if op.poll() is not None:
                raise RuntimeError(f"the operator exited (status {op.returncode}), see operator.log")
        return None

    try:
        r = wait_for("ready", 300)
        if r is None:
            raise RuntimeError("operator never became ready (see operator.log)")
        t_ready = int(r[1])
        mem_ready = proc_mem(op.pid)  # informer caches + first snapshot, before any stream
        r = wait_for("allsynced", 300)
        if r is None:
            raise RuntimeError("not every agent received the full snapshot (see agents.log)")
        t_first, t_all, snap_bytes, snap_events = int(r[1]), int(r[2]), int(r[3]), int(r[4])
        mem_synced = proc_mem(op.pid)
        met_synced = scrape(mport)
        cpu_synced = proc_cpu(op.pid) - cpu_base
        ms = lambda ns: round(ns / 1e6, 1)
        res["first_push"] = {
            "start_to_ready_ms": ms(t_ready - t_start),
            "start_to_first_agent_synced_ms": ms(t_first - t_start),
            "start_to_all_synced_ms": ms(t_all - t_start),
            "ready_to_all_synced_ms": ms(t_all - t_ready),
            "snapshot_bytes_per_agent": snap_bytes, "snapshot_events_per_agent": snap_events,
            "operator_cpu_s": round(cpu_synced, 2), "operator_metrics": met_synced}
        log("first push:", json.dumps(res["first_push"]))
        time.sleep(2)  # let the startup writes (root ConfigMaps, policy status) settle
        cpu0 = proc_cpu(op.pid)
        lat = {}
        rnd = random.Random(7)
        t_churn = time.monotonic()
        fanout = []
        for i, (kind, want, subs, write) in enumerate(make_changes(api, cl, n_changes, rnd)):
            if op.poll() is not None:
                raise RuntimeError(f"the operator exited (status {op.returncode}) during the changes")
            time.sleep(a.gap_ms / 1000.0)
            agents.send(f"mark {i} {want} " + "\t".join(subs))
            write()
            t_w = time.monotonic_ns()
            r = agents.expect("seen", a.change_timeout)
            if r is None or int(r[1]) != i:
                failures.append(f"change {i} ({kind}) not seen by every agent: {subs}")
                log(failures[-1])
                agents.send(f"unmark {i}")
                continue
            t_f, t_l = int(r[2]), int(r[3])
            if kind == "policy-update":
                fanout.append(len(want.split(",")))
            if int(r[4]) > 0:
                failures.append(f"change {i} ({kind}) reached {r[4]} agents outside its scope")
                log(failures[-1])
            lat.setdefault(kind, []).append(((t_f - t_w) / 1e6, (t_l - t_w) / 1e6))
        churn_s = time.monotonic() - t_churn
        all_last = [x[1] for v in lat.values() for x in v]
        all_first = [x[0] for v in lat.values() for x in v]
        inc = {"changes": n_changes, "observed": len(all_last), "seconds": round(churn_s, 1),
               "last_agent_ms": {"p50": pct(all_last, 50), "p90": pct(all_last, 90),
                                 "p99": pct(all_last, 99), "max": max(all_last, default=None)},
               "first_agent_ms": {"p50": pct(all_first, 50), "p99": pct(all_first, 99)},
               "by_kind_last_agent_ms": {
                   k: {"n": len(v), "p50": pct([x[1] for x in v], 50),
                       "p99": pct([x[1] for x in v], 99), "max": max(x[1] for x in v)}
                   for k, v in sorted(lat.items())},
               "policy_agents_per_change": round(sum(fanout) / len(fanout), 1) if fanout else None,
               "operator_cpu_s": round(proc_cpu(op.pid) - cpu0, 2)}
        for d in (inc["last_agent_ms"], inc["first_agent_ms"]):
            for k in d:
                d[k] = None if d[k] is None else round(d[k], 1)
        for d in inc["by_kind_last_agent_ms"].values():
            for k in ("p50", "p99", "max"):
                d[k] = round(d[k], 1)
        res["incremental"] = inc
        log("incremental:", json.dumps(inc))
        mem = proc_mem(op.pid)
        res["operator_metrics_at_end"] = scrape(mport)
        res["operator"] = {"rss_at_ready_kib": mem_ready.get("VmRSS"),
                           "rss_after_first_push_kib": mem_synced.get("VmRSS"),
                           "rss_steady_kib": mem.get("VmRSS"), "rss_peak_kib": mem.get("VmHWM"),
                           "rss_peak_sampled_kib": sampler.max_rss,
                           "cpu_s_total": round(proc_cpu(op.pid), 2)}
        agents.send("stats")
        st = agents.expect("stats", 10)
        if st:
            res["agents"] = {"reconnects": int(st[1]), "bytes_total": int(st[2]),
                             "events_total": int(st[3])}
    except Exception as e:  # noqa: BLE001 - reported in the JSON, then re-raised as exit 1
        failures.append(str(e))
        log("FAILED:", e)
    finally:
        sampler.stop.set()
        if perf:
            perf.send_signal(2)
            try:
                perf.wait(timeout=60)
            except subprocess.TimeoutExpired:
                perf.kill()
        rc = agents.stop()
        if rc != 0:
            failures.append(f"opagents exited with status {rc} (see agents.log)")
        op.terminate()
        try:
            op.wait(timeout=10)
        except subprocess.TimeoutExpired:
            op.kill()
    fp, inc, opm = res.get("first_push", {}), res.get("incremental", {}), res.get("operator", {})
    res["targets"] = {
        "first_push_le_1s": (fp.get("start_to_all_synced_ms") or 1e9) <= 1000,
        "incremental_p99_le_100ms": ((inc.get("last_agent_ms") or {}).get("p99") or 1e9) <= 100,
        "rss_le_200MB": (opm.get("rss_peak_kib") or 1e9) <= 200 * 1024,
    }
    res["config"]["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    res["failures"] = failures
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res, indent=2))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
