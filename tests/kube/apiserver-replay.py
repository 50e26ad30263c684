#!/usr/bin/env python3
"""A stand-in for kube-apiserver that serves recorded responses (recordings/)
with scripted faults, for podcap's Kubernetes client tests and for the real
kubectl.  Python 3 standard library only.

  apiserver-replay.py --recordings DIR [--port 0] [--port-file F]
                      [--scenario NAME] [--tls-cert C --tls-key K] [--token T]

Serves:
  discovery   /version /api /apis /api/v1 /apis/<group> /apis/<group>/<version>
  openapi     /openapi/v2 (protobuf, as kube-apiserver: the recorded v1.27.0
              definitions encoded as gnostic's OpenAPIv2 Document); /openapi/v3
              answers 404 as a pre-1.27 server does, so newer kubectl falls back
  lists       pods, services (core/v1), endpointslices (discovery.k8s.io/v1),
              cluster-wide or per namespace, with ?limit/&continue paging and
              fieldSelector=spec.nodeName=NODE for pods; as Table when asked
              (kubectl), with the column definitions kube-apiserver sends
  watches     ?watch=1: chunked, one event per line, from recordings/watch
  objects     GET of a single object: 404 NotFound (what `kubectl apply
              --dry-run=client` sees for objects that do not exist yet)

Scenarios (recordings/scenarios.json) script, per resource, what the Nth list
and the Nth watch get: a recorded list, a Status with an HTTP error, garbage, a
hang, a huge list, a watch stream that then closes (as at timeoutSeconds),
stays open, or drops the connection.  Stream files may hold control lines:
{"_gate": "name"} waits until POST /_control/release?gate=name.

Control (for tests): POST /_control/scenario?name=X (reset), POST
/_control/release?gate=G, GET /_control/requests (what was asked, in order).
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESOURCES = {
    # path segment -> (name, group/version, kind, list kind)
    "pods": ("pods", "v1", "Pod", "PodList"),
    "services": ("services", "v1", "Service", "ServiceList"),
    "endpointslices": ("endpointslices", "discovery.k8s.io/v1", "EndpointSlice", "EndpointSliceList"),
}

# ---- protobuf (gnostic OpenAPIv2.proto) ---------------------------------------


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _varint(field << 3 | wire)


def _bytes(field, data):
    return _key(field, 2) + _varint(len(data)) + data


def _str(field, s):
    return _bytes(field, s.encode())


def _bool(field, b):
    return _key(field, 0) + _varint(1 if b else 0)


def _int(field, n):
    return _key(field, 0) + _varint(n & 0xFFFFFFFFFFFFFFFF)


def _double(field, x):
    return _key(field, 1) + struct.pack("<d", float(x))


def _any(value):
    # gnostic keeps defaults, enums, examples and vendor extensions as YAML
    # text; JSON is YAML.
    return _str(2, json.dumps(value) + "\n")


def _schema(s):
    out = b""
    if "$ref" in s:
        out += _str(1, s["$ref"])
    if "format" in s:
        out += _str(2, s["format"])
    if "title" in s:
        out += _str(3, s["title"])
    if "description" in s:
        out += _str(4, s["description"])
    if "default" in s:
        out += _bytes(5, _any(s["default"]))
    for f, k in ((6, "multipleOf"), (7, "maximum"), (9, "minimum")):
        if k in s:
            out += _double(f, s[k])
    for f, k in ((8, "exclusiveMaximum"), (10, "exclusiveMinimum"), (16, "uniqueItems"),
                 (27, "readOnly")):
        if k in s:
            out += _bool(f, s[k])
    for f, k in ((11, "maxLength"), (12, "minLength"), (14, "maxItems"), (15, "minItems"),
                 (17, "maxProperties"), (18, "minProperties")):
        if k in s:
            out += _int(f, s[k])
    if "pattern" in s:
        out += _str(13, s["pattern"])
    for r in s.get("required", []):
        out += _str(19, r)
    for e in s.get("enum", []):
        out += _bytes(20, _any(e))
    if "additionalProperties" in s:
        ap = s["additionalProperties"]
        inner = _bool(2, ap) if isinstance(ap, bool) else _bytes(1, _schema(ap))
        out += _bytes(21, inner)
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        out += _bytes(22, b"".join(_str(1, t) for t in types))
    if "items" in s:
        items = s["items"] if isinstance(s["items"], list) else [s["items"]]
        out += _bytes(23, b"".join(_bytes(1, _schema(i)) for i in items))
    for a in s.get("allOf", []):
        out += _bytes(24, _schema(a))
    if "properties" in s:
        props = b"".join(_bytes(1, _str(1, k) + _bytes(2, _schema(v)))
                         for k, v in s["properties"].items())
        out += _bytes(25, props)
    for k, v in s.items():
        if k.startswith("x-"):
            out += _bytes(31, _str(1, k) + _bytes(2, _any(v)))
    return out


def openapi_v2_pb(doc):
    out = _str(1, doc.get("swagger", "2.0"))
    info = doc.get("info", {})
    out += _bytes(2, _str(1, info.get("title", "")) + _str(2, info.get("version", "")))
    defs = b"".join(_bytes(1, _str(1, k) + _bytes(2, _schema(v)))
                    for k, v in doc["definitions"].items())
    out += _bytes(9, defs)
    return out

# ---- tables ---------------------------------------------------------------------


def age(ts, now):
    if not ts:
        return "<unknown>"
    t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    d = max(0, int((now - t).total_seconds()))
    # kube's duration.HumanDuration, the shape of it
    if d < 120:
        return "%ds" % d
    m = d // 60
    if m < 10:
        s = d % 60
        return "%dm%ds" % (m, s) if s else "%dm" % m
    if m < 180:
        return "%dm" % m
    h = d // 3600
    if h < 8:
        mm = m % 60
        return "%dh%dm" % (h, mm) if mm else "%dh" % h
    if h < 48:
        return "%dh" % h
    days = h // 24
    if days < 8:
        hh = h % 24
        return "%dd%dh" % (days, hh) if hh else "%dd" % days
    if days < 365 * 2:
        return "%dd" % days
    return "%dy" % (days // 365)


def pod_cells(o, now):
    st = o.get("status", {})
    cs = st.get("containerStatuses") or []
    spec = o.get("spec", {})
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    reason = st.get("reason") or st.get("phase") or ""
    for c in cs:
        w = (c.get("state") or {}).get("waiting")
        if w and w.get("reason"):
            reason = w["reason"]
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(c.get("restartCount", 0) for c in cs)
    return [o["metadata"]["name"], "%d/%d" % (ready, total), reason, str(restarts),
            age(o["metadata"].get("creationTimestamp"), now), st.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>",
            "<none>"]


def svc_cells(o, now):
    sp = o.get("spec", {})
    ports = []
    for p in sp.get("ports") or []:
        s = "%d" % p["port"]
        if p.get("nodePort"):
            s += ":%d" % p["nodePort"]
        ports.append(s + "/" + p.get("protocol", "TCP"))
    sel = ",".join("%s=%s" % kv for kv in sorted((sp.get("selector") or {}).items()))
    return [o["metadata"]["name"], sp.get("type", ""), sp.get("clusterIP", ""),
            ",".join(sp.get("externalIPs") or []) or "<none>", ",".join(ports) or "<none>",
            age(o["metadata"].get("creationTimestamp"), now), sel or "<none>"]


def slice_cells(o, now):
    ports = ",".join(str(p.get("port")) for p in o.get("ports") or []) or "<unset>"
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses", [])]
    eps = ",".join(addrs[:3]) + (" + %d more..." % (len(addrs) - 3) if len(addrs) > 3 else "")
    return [o["metadata"]["name"], o.get("addressType", ""), ports, eps or "<unset>",
            age(o["metadata"].get("creationTimestamp"), now)]


CELLS = {"pods": pod_cells, "services": svc_cells, "endpointslices": slice_cells}

# ---- the server --------------------------------------------------------------------


class State:
    def __init__(self, rec, scenarios):
        self.rec = rec
        self.scenarios = scenarios
        self.lock = threading.Lock()
        self.reset("default")

    def reset(self, name):
        with self.lock:
            if name not in self.scenarios:
                raise KeyError(name)
            self.name = name
            self.counts = {}
            self.requests = []
            self.gates = {}
            self.stop = threading.Event()

    def gate(self, name):
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def step(self, route):
        with self.lock:
            steps = self.scenarios[self.name].get(route) or self.scenarios["default"].get(route)
            if not steps:
                return None
            n = self.counts.get(route, 0)
            self.counts[route] = n + 1
            return steps[min(n, len(steps) - 1)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-replay"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("replay: " + (fmt % args) + "\n")

    # -- plumbing
    def send_json(self, code, obj_or_bytes, ctype="application/json"):
        body = obj_or_bytes if isinstance(obj_or_bytes, bytes) else \
            json.dumps(obj_or_bytes, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Audit-Id", "00000000-0000-0000-0000-%012d" % len(self.server.state.requests))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", ctype)
        self.send_header("X-Kubernetes-Pf-Flowschema-Uid", "c5fe77bd-459a-432a-acc7-aaa26202b970")
        self.send_header("X-Kubernetes-Pf-Prioritylevel-Uid", "56973fcb-d667-42e8-a872-0f50f7b95e1e")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, reason, message, details=None):
        obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason}
        if details:
            obj["details"] = details
        obj["code"] = code
        self.send_json(code, obj)

    def rec(self, path):
        with open(os.path.join(self.server.state.rec, path), "rb") as f:
            return f.read()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def client_gone(self):
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if r:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
        return False

    def wait(self, seconds, gate=None):
        """Sleeps up to seconds (or until the gate opens); False if the client left."""
        end = time.time() + seconds
        while time.time() < end:
            if gate is not None and gate.is_set():
                return True
            if self.stop_ev.is_set() or self.server.stopping or self.client_gone():
                return False
            time.sleep(0.05)
        return True

    # -- requests
    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        st = self.server.state
        self.stop_ev = st.stop  # a scenario switch ends this request's waits
        with st.lock:
            st.requests.append({"method": "GET", "path": u.path, "query": q,
                                "accept": self.headers.get("Accept", ""),
                                "auth": self.headers.get("Authorization", "") != "",
                                "agent": self.headers.get("User-Agent", ""),
                                "time": time.time()})
        if u.path.startswith("/_control/"):
            return self.control(u.path, q)
        if self.server.token is not None and \
                self.headers.get("Authorization", "") != "Bearer " + self.server.token:
            return self.send_json(401, self.rec("status/401.json"))
        p = u.path.rstrip("/")
        disc = {"/version": "version.json", "/api": "api.json", "/apis": "apis.json",
                "/api/v1": "api__v1.json"}
        if p in disc:
            return self.send_json(200, self.rec("discovery/" + disc[p]))
        parts = p.split("/")
        if len(parts) in (3, 4) and parts[1] == "apis":
            f = "discovery/" + "__".join(parts[1:]) + ".json"
            if os.path.exists(os.path.join(st.rec, f)):
                return self.send_json(200, self.rec(f))
        if p == "/openapi/v2":
            # As kube-openapi's handler: protobuf when asked for (either media
            # type name), JSON otherwise, with Vary and an ETag.
            accept = self.headers.get("Accept", "*/*")
            proto = "protobuf" in accept
            body = self.server.openapi_pb if proto else self.server.openapi_json
            self.send_response(200)
            self.send_header("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
                             if proto else "application/json")
            self.send_header("Vary", "Accept")
            self.send_header("Etag", '"%s"' % hashlib.sha512(body).hexdigest().upper())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        # /api/v1[/namespaces/NS]/RES[/NAME], /apis/G/V[/namespaces/NS]/RES[/NAME]
        rest = parts[3:] if parts[1] == "api" else parts[4:]
        gv = "v1" if parts[1] == "api" else "/".join(parts[2:4])
        ns = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            ns = rest[1]
            rest = rest[2:]
        if rest and rest[0] in RESOURCES and RESOURCES[rest[0]][1] == gv:
            if len(rest) == 1:
                if q.get("watch") in ("1", "true"):
                    return self.watch(rest[0], ns, q)
                return self.list(rest[0], ns, q)
        if len(rest) == 2 or (not rest and ns):
            kind = rest[0] if rest else "namespaces"
            name = rest[1] if rest else ns
            return self.status(404, "NotFound", '%s "%s" not found' % (kind, name),
                               {"name": name, "kind": kind})
        return self.status(404, "NotFound", "the server could not find the requested resource")

    def control(self, path, q):
        st = self.server.state
        if path == "/_control/requests":
            with st.lock:
                return self.send_json(200, st.requests)
        if path == "/_control/scenario":
            st.stop.set()  # ends streams of the previous scenario
            try:
                st.reset(q.get("name", "default"))
            except KeyError:
                return self.send_json(400, {"error": "no such scenario"})
            return self.send_json(200, {"scenario": st.name})
        if path == "/_control/release":
            st.gate(q.get("gate", "")).set()
            return self.send_json(200, {"released": q.get("gate")})
        return self.send_json(404, {"error": "unknown control"})

    do_POST = do_GET

    def filtered(self, res, items, ns, q):
        out = []
        sel = q.get("fieldSelector", "")
        node = sel[len("spec.nodeName="):] if sel.startswith("spec.nodeName=") else None
        for it in items:
            md = it.get("metadata", {})
            if ns and md.get("namespace") != ns:
                continue
            if node is not None and res == "pods" and it.get("spec", {}).get("nodeName") != node:
                continue
            out.append(it)
        return out

    def as_table(self, res, objs, rv, cont=None, headers=True):
        now = datetime.datetime.now(datetime.timezone.utc)
        rows = []
        for o in objs:
            md = {k: v for k, v in o["metadata"].items()}
            rows.append({"cells": CELLS[res](o, now),
                         "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                    "metadata": md}})
        t = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}}
        if cont:
            t["metadata"]["continue"] = cont
        t["columnDefinitions"] = self.server.columns[res] if headers else None
        t["rows"] = rows
        return t

    def list(self, res, ns, q):
        step = self.server.state.step(res + ".list") or {"file": res + "-list.json"}
        if "hang" in step:
            self.wait(step["hang"])
            self.close_connection = True
            return
        if "status" in step:
            return self.send_json(step["status"], self.rec(step["body"]))
        if "garbage" in step:
            return self.send_json(200, step["garbage"].encode())
        doc = json.loads(self.rec(step["file"]))
        items = self.filtered(res, doc["items"], ns, q)
        if "huge_bytes" in step:
            # A list far over any sane size: the recorded items repeated.
            body = json.dumps(doc, separators=(",", ":")).encode()
            reps = step["huge_bytes"] // max(1, len(body)) + 1
            big = dict(doc)
            big["items"] = doc["items"] * reps
            return self.send_json(200, json.dumps(big, separators=(",", ":")).encode())
        rv = doc["metadata"]["resourceVersion"]
        start = 0
        if q.get("continue"):
            try:
                tok = json.loads(base64.b64decode(q["continue"]))
                start = int(tok["start"].split("\u0000")[0] or 0)
            except (ValueError, KeyError):
                return self.status(400, "BadRequest", "continue key is not valid")
            if step.get("expire_continue"):
                return self.send_json(410, self.rec("status/410-continue.json"))
        limit = int(q.get("limit") or 0)
        page = items[start:start + limit] if limit else items[start:]
        cont = None
        if limit and start + limit < len(items):
            # The shape of kube-apiserver's continue token (base64 JSON).
            cont = base64.b64encode(json.dumps(
                {"v": "meta.k8s.io/v1", "rv": int(rv), "start": "%d\u0000" % (start + limit)},
                separators=(",", ":")).encode()).decode()
        if "as=Table" in self.headers.get("Accept", ""):
            return self.send_json(200, self.as_table(res, page, rv, cont))
        out = {"kind": doc["kind"], "apiVersion": doc["apiVersion"],
               "metadata": {"resourceVersion": rv}}
        if cont:
            out["metadata"]["continue"] = cont
            out["metadata"]["remainingItemCount"] = len(items) - start - limit
        out["items"] = page
        return self.send_json(200, out)

    def watch(self, res, ns, q):
        st = self.server.state
        step = st.step(res + ".watch") or {"stream": None, "end": "close"}
        if "status" in step:
            return self.send_json(step["status"], self.rec(step["body"]))
        if "hang" in step:
            self.wait(step["hang"])
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Audit-Id", "00000000-0000-0000-0000-%012d" % len(st.requests))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        table = "as=Table" in self.headers.get("Accept", "")
        first = True
        try:
            lines = self.rec("watch/" + step["stream"]).splitlines() if step.get("stream") else []
            for line in lines:
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = {}  # a deliberately broken line: sent as it is
                if "_gate" in ev:
                    if not self.wait(300, st.gate(ev["_gate"])):
                        break
                    continue
                if "_sleep" in ev:
                    if not self.wait(ev["_sleep"]):
                        break
                    continue
                obj = ev.get("object", {})
                if ev.get("type") == "BOOKMARK" and q.get("allowWatchBookmarks") not in ("1", "true"):
                    continue  # sent only to clients that ask for them
                if ev.get("type") in ("ADDED", "MODIFIED", "DELETED") and \
                        not self.filtered(res, [obj], ns, q):
                    continue
                if table and ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    ev = {"type": ev["type"],
                          "object": self.as_table(res, [obj], obj["metadata"]["resourceVersion"],
                                                  headers=first)}
                    first = False
                data = line if not table else json.dumps(ev, separators=(",", ":")).encode()
                self.chunk(data + b"\n")
                if step.get("garbage_after"):
                    self.chunk(step["garbage_after"].encode())
            end = step.get("end", "close")
            if end == "drop":
                # The connection dies mid-stream: no final chunk.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if end == "hold":
                # As kube-apiserver: the watch ends at timeoutSeconds.
                timeout = float(q.get("timeoutSeconds") or 1800)
                self.wait(min(timeout, step.get("hold_max", 1800)))
            elif end == "hang":
                # Silent and never ends (a wedged server or proxy).
                self.wait(step.get("hold_max", 600))
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recordings", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--token")
    ap.add_argument("--client-ca", help="require a client certificate signed by this CA")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    rec = os.path.abspath(a.recordings)
    scenarios = json.load(open(os.path.join(rec, "scenarios.json")))
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.state = State(rec, scenarios)
    srv.state.reset(a.scenario)
    srv.token = a.token
    srv.verbose = a.verbose
    srv.stopping = False
    srv.columns = json.load(open(os.path.join(rec, "tables", "columns.json")))
    openapi = json.load(open(os.path.join(rec, "openapi", "definitions-v1.27.0.json")))
    srv.openapi_pb = openapi_v2_pb(openapi)
    srv.openapi_json = json.dumps(openapi, separators=(",", ":")).encode()
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(a.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)
    sys.stderr.write("replay: listening on %s://127.0.0.1:%d (scenario %s)\n" %
                     ("https" if a.tls_cert else "http", port, a.scenario))
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    srv.stopping = True


if __name__ == "__main__":
    main()
