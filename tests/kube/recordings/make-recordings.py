#!/usr/bin/env python3
"""Builds tests/kube/recordings/ from templates copied from real kube-apiserver
output (see README.md for where each shape comes from), filled with the lab's
pods (lab/lab PODS), and checks every field of every object against the real
OpenAPI schema of Kubernetes v1.27.0, so nothing here is a field a real server
would not send.

  make-recordings.py [--swagger FULL_SWAGGER.json]

With --swagger (kube-openapi's pkg/schemaconv/testdata/swagger.json, the
v1.27.0 spec) it also rewrites openapi/definitions-v1.27.0.json: the
definitions the manifests and the recordings use, closed over $ref.  Without
it, the existing trimmed file is used for the checks.  Output is deterministic.
"""
import base64
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- the lab (lab/lab PODS, nodes) -----------------------------------------

NODES = {"pc-node1": "172.18.0.11", "pc-node2": "172.18.0.12"}
# name, namespace, node, IP, labels, owner kind, owner name, server (lab/lab PODS)
PODS = [
    ("web-1", "default", "pc-node1", "10.244.1.10", {"app": "web", "tier": "frontend"}, "Deployment", "web", "http"),
    ("coredns", "kube-system", "pc-node1", "10.244.1.11", {"k8s-app": "kube-dns"}, "Deployment", "coredns", "dns"),
    ("client-1", "default", "pc-node1", "10.244.1.12", {"app": "client"}, "Deployment", "client", "none"),
    ("tls-1", "default", "pc-node2", "10.244.2.10", {"app": "tls", "tier": "backend"}, "StatefulSet", "tls", "tls"),
    ("client-2", "default", "pc-node2", "10.244.2.11", {"app": "client"}, "Deployment", "client", "none"),
    ("api-1", "default", "pc-node2", "10.244.3.10", {"app": "api", "tier": "backend"}, "Deployment", "api", "http"),
    ("web-2", "default", "pc-node2", "10.244.2.12", {"app": "web", "tier": "frontend"}, "Deployment", "web", "http"),
]
SERVER_PORTS = {"http": [("http", 8080, "TCP")], "dns": [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
                "tls": [("https", 8443, "TCP")], "none": [], "podcap": [("api", 7070, "TCP")]}
IMAGES = {"http": "docker.io/library/python:3.11-slim", "dns": "registry.k8s.io/coredns/coredns:v1.11.1",
          "tls": "docker.io/alpine/openssl:3.3.2", "none": "docker.io/curlimages/curl:8.10.1",
          "podcap": "podcap:0.1.0"}
T_CREATE = "2026-11-28T07:58:41Z"
T_START = "2026-11-28T07:58:43Z"
T_READY = "2026-11-28T07:58:47Z"


def stable_uid(*parts):
    """As lab/lab derives UIDs (uuid5 of the object's path), so the recordings and
    the lab's inventory give a pod the same uid."""
    import uuid
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "podcap-lab:" + "/".join(parts)))


def short_hash(text, n, alphabet="bcdfghjklmnpqrstvwxz2456789"):
    """lab/lab's generated-name suffix, in Kubernetes' name alphabet."""
    import hashlib
    h = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    out = ""
    for _ in range(n):
        h, r = divmod(h, len(alphabet))
        out += alphabet[r]
    return out


def uid(seed):
    return stable_uid(*seed.split("/"))


def suffix(seed, n=5):
    return short_hash(seed, n)


# ---- pods: the structure of a real pod as kube-apiserver v1.26-1.29 returns it
# (zhaohuabing's recorded watch stream; the kubectl -v9 log of a v1.29 pod) -----


def managed_fields(p, ip):
    name = p["metadata"]["name"]
    owner = p["metadata"].get("ownerReferences")
    spec_fields = {
        "f:containers": {"k:{\"name\":\"%s\"}" % p["spec"]["containers"][0]["name"]: {
            ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
            "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
        "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
        "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}
    meta_fields = {"f:labels": dict({".": {}}, **{"f:" + k: {} for k in p["metadata"]["labels"]})}
    if owner:
        meta_fields["f:ownerReferences"] = {".": {}, "k:{\"uid\":\"%s\"}" % owner[0]["uid"]: {}}
    out = [{
        "manager": "kube-controller-manager",
        "operation": "Update", "apiVersion": "v1", "time": T_CREATE, "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": meta_fields, "f:spec": spec_fields}}]
    if ip:
        out.append({
            "manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": T_READY,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {
                "f:conditions": {
                    "k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                    "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                    "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
                "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {},
                "f:podIPs": {".": {}, "k:{\"ip\":\"%s\"}" % ip: {".": {}, "f:ip": {}}}, "f:startTime": {}}},
            "subresource": "status"})
    return out


def make_pod(name, ns, node, ip, labels, okind, oname, server, rv, uid_seed=None, phase="Running",
             created=T_CREATE):
    u = uid(uid_seed or ("pod/%s/%s" % (ns, name)))
    labels = dict(labels)
    meta = {"name": name, "namespace": ns, "uid": u, "resourceVersion": str(rv),
            "creationTimestamp": created, "labels": labels}
    if okind == "Deployment":
        tmpl = short_hash("template/%s/%s" % (ns, oname), 10)
        labels["pod-template-hash"] = tmpl
        rs = "%s-%s" % (oname, tmpl)
        meta["generateName"] = rs + "-"
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                 "uid": stable_uid("replicaset", ns, oname, tmpl)}
    else:
        meta["generateName"] = oname + "-"
        labels["controller-revision-hash"] = "%s-%s" % (oname, short_hash("rev/" + oname, 10))
        labels["statefulset.kubernetes.io/pod-name"] = name
        owner = {"apiVersion": "apps/v1", "kind": okind, "name": oname,
                 "uid": stable_uid(okind.lower(), ns, oname)}
    owner.update(controller=True, blockOwnerDeletion=True)
    meta["ownerReferences"] = [owner]
    meta = {k: meta[k] for k in ["name", "generateName", "namespace", "uid", "resourceVersion",
                                 "creationTimestamp", "labels", "ownerReferences"] if k in meta}
    image = IMAGES[server]
    cname = oname
    vol = "kube-api-access-" + short_hash("vol/" + u, 5)
    container = {"name": cname, "image": image}
    if server == "dns":
        container["args"] = ["-conf", "/etc/coredns/Corefile"]
    ports = [{"name": n, "containerPort": port, "protocol": proto}
             for n, port, proto in SERVER_PORTS[server]]
    if ports:
        container["ports"] = ports
    container.update({
        "resources": {},
        "volumeMounts": [{"name": vol, "readOnly": True,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"})
    sa = "coredns" if server == "dns" else "default"
    spec = {
        "volumes": [{"name": vol, "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
            "defaultMode": 420}}],
        "containers": [container],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "Default" if server == "dns" else "ClusterFirst",
        "serviceAccountName": sa, "serviceAccount": sa, "nodeName": node,
        "securityContext": {}}
    if okind == "StatefulSet":
        spec["hostname"] = name
        spec["subdomain"] = oname
    spec.update({
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]})
    if server == "dns":
        spec.update({"priorityClassName": "system-cluster-critical", "priority": 2000000000})
    else:
        spec["priority"] = 0
    spec.update({"enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority"})
    if phase == "Pending":
        status = {"phase": "Pending", "conditions": [
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": created},
            {"type": "Ready", "status": "False", "lastProbeTime": None, "lastTransitionTime": created,
             "reason": "ContainersNotReady", "message": "containers with unready status: [%s]" % cname},
            {"type": "ContainersReady", "status": "False", "lastProbeTime": None, "lastTransitionTime": created,
             "reason": "ContainersNotReady", "message": "containers with unready status: [%s]" % cname},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": created}],
            "hostIP": NODES[node], "startTime": created,
            "containerStatuses": [{"name": cname, "state": {"waiting": {"reason": "ContainerCreating"}},
                                   "lastState": {}, "ready": False, "restartCount": 0, "image": image,
                                   "imageID": "", "started": False}],
            "qosClass": "BestEffort"}
        ip_for_mf = None
    else:
        import hashlib
        status = {"phase": "Running", "conditions": [
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": created},
            {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": T_READY},
            {"type": "ContainersReady", "status": "True", "lastProbeTime": None, "lastTransitionTime": T_READY},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": created}],
            "hostIP": NODES[node], "podIP": ip, "podIPs": [{"ip": ip}], "startTime": created,
            "containerStatuses": [{"name": cname, "state": {"running": {"startedAt": T_START}},
                                   "lastState": {}, "ready": True, "restartCount": 0,
                                   "image": image, "imageID": image + "@sha256:" +
                                   hashlib.sha256(image.encode()).hexdigest(),
                                   "containerID": "containerd://" + hashlib.sha256((u + "/" + cname).encode()).hexdigest(),
                                   "started": True}],
            "qosClass": "BestEffort"}
        ip_for_mf = ip
    p = {"metadata": meta, "spec": spec, "status": status}
    p["metadata"]["managedFields"] = managed_fields(p, ip_for_mf)
    return p


def as_event_object(obj, kind, api_version):
    o = {"kind": kind, "apiVersion": api_version}
    o.update(obj)
    return o

# ---- Services and EndpointSlices (shapes: kind v1.27 kube-dns and kubernetes
# Services; EndpointSlices as the endpointslice controller writes them) --------


def make_service(name, ns, cluster_ip, ports, selector, labels=None, svc_type="ClusterIP",
                 annotations=None, rv=500, created=T_CREATE):
    meta = {"name": name, "namespace": ns, "uid": uid("service/%s/%s" % (ns, name)),
            "resourceVersion": str(rv), "creationTimestamp": created}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    mf_spec = {"f:internalTrafficPolicy": {}, "f:ports": {".": {}}, "f:sessionAffinity": {},
               "f:type": {}}
    if selector:
        mf_spec["f:selector"] = {}
    meta["managedFields"] = [{"manager": "kubectl-create",
                              "operation": "Update", "apiVersion": "v1", "time": created,
                              "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": mf_spec}}]
    spec = {"ports": ports}
    if selector:
        spec["selector"] = selector
    spec.update({"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "type": svc_type,
                 "sessionAffinity": "None"})
    if svc_type == "NodePort":
        spec["externalTrafficPolicy"] = "Cluster"
    spec.update({"ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "internalTrafficPolicy": "Cluster"})
    return {"metadata": meta, "spec": spec, "status": {"loadBalancer": {}}}


def make_slice(svc, ns, endpoints, ports, svc_labels=None, rv=600, created=T_CREATE, gen_suffix=None):
    name = svc + "-" + (gen_suffix or suffix("slice/%s/%s" % (ns, svc)))
    labels = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    labels.update(svc_labels or {})
    labels["kubernetes.io/service-name"] = svc
    meta = {"name": name, "generateName": svc + "-", "namespace": ns,
            "uid": uid("endpointslice/%s/%s" % (ns, name)), "resourceVersion": str(rv), "generation": 1,
            "creationTimestamp": created, "labels": dict(sorted(labels.items())),
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": T_READY},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc,
                                 "uid": uid("service/%s/%s" % (ns, svc)), "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                               "apiVersion": "discovery.k8s.io/v1", "time": T_READY,
                               "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:addressType": {}, "f:endpoints": {},
                                            "f:metadata": {"f:annotations": {".": {}, "f:endpoints.kubernetes.io/last-change-trigger-time": {}},
                                                           "f:generateName": {}, "f:labels": {".": {}},
                                                           "f:ownerReferences": {".": {}}},
                                            "f:ports": {}}}]}
    eps = []
    for pod, pns, node, ip, ready in endpoints:
        ep = {"addresses": [ip], "conditions": {"ready": ready, "serving": ready,
                                                "terminating": False}}
        if pod:
            ep["targetRef"] = {"kind": "Pod", "namespace": pns, "name": pod,
                               "uid": uid("pod/%s/%s" % (pns, pod))}
            ep["nodeName"] = node
        eps.append(ep)
    return {"metadata": meta, "addressType": "IPv4", "endpoints": eps, "ports": ports}

# ---- schema check ----------------------------------------------------------


class Schema:
    def __init__(self, defs):
        self.defs = defs

    def check(self, obj, ref, path="$"):
        d = self.defs[ref.split("/")[-1]] if isinstance(ref, str) else ref
        self._check(obj, d, path)

    def _check(self, v, d, path):
        if "$ref" in d:
            return self._check(v, self.defs[d["$ref"].split("/")[-1]], path)
        if "allOf" in d:
            for x in d["allOf"]:
                self._check(v, x, path)
            return
        t = d.get("type")
        if v is None:
            return  # null is what the API sends for empty optional fields
        if t == "object" or "properties" in d:
            if not isinstance(v, dict):
                raise SystemExit("%s: want an object" % path)
            props = d.get("properties")
            for k, x in v.items():
                if props is not None and k in props:
                    self._check(x, props[k], path + "." + k)
                elif "additionalProperties" in d:
                    ap = d["additionalProperties"]
                    if isinstance(ap, dict):
                        self._check(x, ap, path + "." + k)
                elif props is None and d.get("x-kubernetes-preserve-unknown-fields"):
                    pass
                elif props is None and t == "object":
                    pass  # free-form (e.g. fieldsV1)
                else:
                    raise SystemExit("%s: field %r is not in the Kubernetes v1.27 schema" % (path, k))
        elif t == "array":
            if not isinstance(v, list):
                raise SystemExit("%s: want an array" % path)
            for i, x in enumerate(v):
                self._check(x, d["items"], "%s[%d]" % (path, i))
        elif t == "string":
            if d.get("format") == "int-or-string":
                if not isinstance(v, (str, int)):
                    raise SystemExit("%s: want int-or-string" % path)
            elif not isinstance(v, str):
                raise SystemExit("%s: want a string" % path)
        elif t == "integer":
            if not isinstance(v, int) or isinstance(v, bool):
                raise SystemExit("%s: want an integer" % path)
        elif t == "boolean":
            if not isinstance(v, bool):
                raise SystemExit("%s: want a boolean" % path)


KINDS = {  # what the manifests (deploy/) and the recordings hold
    "io.k8s.api.core.v1.Pod", "io.k8s.api.core.v1.PodList", "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.ServiceList", "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.core.v1.Namespace", "io.k8s.api.discovery.v1.EndpointSlice",
    "io.k8s.api.discovery.v1.EndpointSliceList", "io.k8s.api.apps.v1.DaemonSet",
    "io.k8s.api.rbac.v1.ClusterRole", "io.k8s.api.rbac.v1.ClusterRoleBinding",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
    "io.k8s.apimachinery.pkg.version.Info",
}


def closure(defs, roots):
    seen = set()
    todo = list(roots)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)

        def walk(x):
            if isinstance(x, dict):
                for k, v in x.items():
                    if k == "$ref":
                        todo.append(v.split("/")[-1])
                    else:
                        walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
        walk(defs[n])
    return {k: defs[k] for k in sorted(seen)}

# ---- output ----------------------------------------------------------------


def dump(path, obj, compact=True):
    with open(os.path.join(HERE, path), "w") as f:
        if compact:
            f.write(json.dumps(obj, separators=(",", ":")))
        else:
            json.dump(obj, f, indent=2)
        f.write("\n")


def event(t, obj):
    return json.dumps({"type": t, "object": obj}, separators=(",", ":"))


def main():
    args = sys.argv[1:]
    defs_path = os.path.join(HERE, "openapi", "definitions-v1.27.0.json")
    if args[:1] == ["--swagger"]:
        full = json.load(open(args[1]))
        doc = {"swagger": full["swagger"], "info": full["info"], "paths": {},
               "definitions": closure(full["definitions"], KINDS)}
        os.makedirs(os.path.dirname(defs_path), exist_ok=True)
        dump(os.path.relpath(defs_path, HERE), doc)
    schema = Schema(json.load(open(defs_path))["definitions"])

    pods = {}
    for i, (name, ns, node, ip, labels, okind, oname, server) in enumerate(PODS):
        pods[name] = make_pod(name, ns, node, ip, labels, okind, oname, server, rv=400 + i)
    # lab/lab SERVICES
    svcs = [
        make_service("kube-dns", "kube-system", "10.96.0.10",
                     [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
                      {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 53}],
                     {"k8s-app": "kube-dns"},
                     labels={"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}, rv=260),
        make_service("web", "default", "10.96.0.80",
                     [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
                     {"app": "web"}, labels={"app": "web"}, svc_type="NodePort", rv=510),
        make_service("api", "default", "10.96.0.90",
                     [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                     {"app": "api"}, labels={"app": "api"}, rv=520),
    ]
    slices = [
        make_slice("kube-dns", "kube-system", [("coredns", "kube-system", "pc-node1", "10.244.1.11", True)],
                   [{"name": "dns", "protocol": "UDP", "port": 53},
                    {"name": "dns-tcp", "protocol": "TCP", "port": 53}], rv=610),
        make_slice("web", "default", [("web-1", "default", "pc-node1", "10.244.1.10", True),
                                      ("web-2", "default", "pc-node2", "10.244.2.12", True)],
                   [{"name": "http", "protocol": "TCP", "port": 8080}], rv=620),
        make_slice("api", "default", [("api-1", "default", "pc-node2", "10.244.3.10", True)],
                   [{"name": "http", "protocol": "TCP", "port": 8080}], rv=630),
    ]
    for p in pods.values():
        schema.check(p, "io.k8s.api.core.v1.Pod")
    for s in svcs:
        schema.check(s, "io.k8s.api.core.v1.Service")
    for s in slices:
        schema.check(s, "io.k8s.api.discovery.v1.EndpointSlice")

    def plist(items, rv):
        d = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)},
             "items": items}
        schema.check(d, "io.k8s.api.core.v1.PodList")
        return d
    dump("pods-list.json", plist([pods[n[0]] for n in PODS], 1000))
    dump("services-list.json", {"kind": "ServiceList", "apiVersion": "v1",
                                "metadata": {"resourceVersion": "1000"}, "items": svcs})
    dump("endpointslices-list.json", {"kind": "EndpointSliceList",
                                      "apiVersion": "discovery.k8s.io/v1",
                                      "metadata": {"resourceVersion": "1000"}, "items": slices})
    schema.check(json.load(open(os.path.join(HERE, "services-list.json"))), "io.k8s.api.core.v1.ServiceList")
    schema.check(json.load(open(os.path.join(HERE, "endpointslices-list.json"))),
                 "io.k8s.api.discovery.v1.EndpointSliceList")

    # client-2 goes; its Deployment's new pod client-3 gets the same address
    # (host-local hands a freed address out again).
    p3 = make_pod("client-3", "default", "pc-node2", "10.244.2.11", {"app": "client"}, "Deployment",
                  "client", "none", rv=1990, created="2026-11-28T08:20:02Z")
    # The relist after a 410: client-2 gone, client-3 there.
    dump("pods-list-2.json", plist([pods[n[0]] for n in PODS if n[0] != "client-2"] + [p3], 2000))

    # kubectl-podcap (issue 13): the lab's pods and deploy/'s DaemonSet, an agent
    # pod per node in namespace podcap (hostNetwork: the pod's IP is the node's);
    # pc-node1's is Running, pc-node2's still Pending (ContainerCreating), so the
    # plugin's "no agent ready on that node" is tested too.
    agents = []
    for node, phase, rv in (("pc-node1", "Running", 700), ("pc-node2", "Pending", 710)):
        a = make_pod("podcap-" + suffix("daemonset/podcap/" + node), "podcap", node, NODES[node],
                     {"app.kubernetes.io/name": "podcap"}, "DaemonSet", "podcap", "podcap", rv=rv, phase=phase)
        lab = a["metadata"]["labels"]
        # A DaemonSet's pods carry these two labels (not StatefulSet's pod-name).
        del lab["statefulset.kubernetes.io/pod-name"]
        lab["pod-template-generation"] = "1"
        a["spec"]["hostNetwork"] = True
        a["spec"]["dnsPolicy"] = "ClusterFirstWithHostNet"
        a["spec"]["serviceAccountName"] = a["spec"]["serviceAccount"] = "podcap"
        agents.append(a)
    dump("pods-list-agents.json", plist([pods[n[0]] for n in PODS] + agents, 1000))

    E = lambda o: as_event_object(o, "Pod", "v1")
    # A real BOOKMARK for pods (kube-rs, from a real apiserver): the object is an
    # empty Pod holding only the resourceVersion.
    def bookmark(rv):
        return {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv), "creationTimestamp": None},
                "spec": {"containers": None}, "status": {}}
    def gone(rv_from, rv_now):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version: %d (%d)" % (rv_from, rv_now),
                "reason": "Expired", "code": 410}

    def deleting(pod, rv_mod, rv_del, when):
        """The two events of a graceful delete: MODIFIED with deletionTimestamp,
        then DELETED (the recorded stream's shape)."""
        md = pod["metadata"]
        term = copy.deepcopy(pod)
        term["metadata"] = {k: md[k] for k in ["name", "generateName", "namespace", "uid",
                                              "resourceVersion", "creationTimestamp"]}
        term["metadata"]["resourceVersion"] = str(rv_mod)
        term["metadata"]["deletionTimestamp"] = when
        term["metadata"]["deletionGracePeriodSeconds"] = 30
        for k in ["labels", "ownerReferences", "managedFields"]:
            term["metadata"][k] = md[k]
        gone_obj = copy.deepcopy(term)
        gone_obj["metadata"]["resourceVersion"] = str(rv_del)
        gone_obj["metadata"]["deletionGracePeriodSeconds"] = 0
        schema.check(term, "io.k8s.api.core.v1.Pod")
        schema.check(gone_obj, "io.k8s.api.core.v1.Pod")
        return [event("MODIFIED", E(term)), event("DELETED", E(gone_obj))]

    def at(pod, rv):
        o = copy.deepcopy(pod)
        o["metadata"]["resourceVersion"] = str(rv)
        schema.check(o, "io.k8s.api.core.v1.Pod")
        return o

    # Lifecycle: tls-1 is deleted and its StatefulSet re-creates it (same name,
    # new uid, same address); client-2 goes and client-3 takes its address;
    # web-1's labels change.
    tls_pending = make_pod("tls-1", "default", "pc-node2", "10.244.2.10", {"app": "tls", "tier": "backend"},
                           "StatefulSet", "tls", "tls", rv=1015, uid_seed="pod/default/tls-1/2",
                           phase="Pending", created="2026-11-28T08:10:07Z")
    tls_new = make_pod("tls-1", "default", "pc-node2", "10.244.2.10", {"app": "tls", "tier": "backend"},
                       "StatefulSet", "tls", "tls", rv=1018, uid_seed="pod/default/tls-1/2",
                       created="2026-11-28T08:10:07Z")
    web_v2 = at(pods["web-1"], 1030)
    web_v2["metadata"]["labels"]["version"] = "v2"
    lines = ([event("BOOKMARK", bookmark(1005)),
              json.dumps({"_gate": "deleted"})] +
             deleting(pods["tls-1"], 1010, 1012, "2026-11-28T08:10:35Z") +
             [json.dumps({"_gate": "recreated"}),
              event("ADDED", E(at(tls_pending, 1015))),
              event("MODIFIED", E(at(tls_new, 1018))),
              json.dumps({"_gate": "reused"})] +
             deleting(pods["client-2"], 1020, 1021, "2026-11-28T08:19:30Z") +
             [event("ADDED", E(at(p3, 1022))),
              json.dumps({"_gate": "more"}),
              event("MODIFIED", E(web_v2)),
              event("BOOKMARK", bookmark(1040))])
    with open(os.path.join(HERE, "watch", "pods-lifecycle.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for ev in lines:
        e = json.loads(ev)
        if "type" in e:
            schema.check(e, "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent")

    def write_stream(name, evs):
        with open(os.path.join(HERE, "watch", name), "w") as f:
            f.write("\n".join(evs) + "\n")
    # A bookmark, then the server ends the watch (timeoutSeconds): the next watch
    # must start at the bookmark's resourceVersion.
    write_stream("pods-bookmark.jsonl", [event("BOOKMARK", bookmark(1500))])
    # The watch cache moved on: an ERROR event with a 410 Status (as kube-apiserver
    # sends it, HTTP 200 then the event).
    write_stream("pods-gone.jsonl", [event("ERROR", gone(1000, 2000))])
    # An event, then the connection drops mid-stream.
    write_stream("pods-drop.jsonl", deleting(pods["client-2"], 1100, 1101, "2026-11-28T08:19:30Z"))
    # A garbage line in the middle of a watch.
    write_stream("pods-garbage.jsonl", [event("BOOKMARK", bookmark(1101)),
                                        '{"type":"MODIFIED","object":{"kind":"Pod",<<<garbage>>>'])
    # For kubectl --watch: web-1 changes, client-2 goes, client-3 comes; the
    # stream then stays open.
    write_stream("pods-kubectl.jsonl", [event("MODIFIED", E(web_v2))] +
                 deleting(pods["client-2"], 1020, 1021, "2026-11-28T08:19:30Z") +
                 [event("ADDED", E(at(p3, 1022))), event("BOOKMARK", bookmark(1040))])
    # Services/slices: quiet watches with a bookmark.
    write_stream("services-quiet.jsonl", [event("BOOKMARK", {"kind": "Service", "apiVersion": "v1",
                                                             "metadata": {"resourceVersion": "1005", "creationTimestamp": None},
                                                             "spec": {}, "status": {"loadBalancer": {}}})])
    write_stream("endpointslices-quiet.jsonl", [event("BOOKMARK", {"kind": "EndpointSlice",
                                                                   "apiVersion": "discovery.k8s.io/v1",
                                                                   "metadata": {"resourceVersion": "1005", "creationTimestamp": None},
                                                                   "addressType": "", "endpoints": None})])

    dump("status/410-gone.json", gone(1000, 2000))
    dump("status/410-continue.json", {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        "reason": "Expired", "code": 410})
    dump("status/500.json", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": "Internal error occurred: etcdserver: request timed out",
                             "reason": "InternalError",
                             "details": {"causes": [{"message": "etcdserver: request timed out"}]},
                             "code": 500})
    dump("status/401.json", {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    for f in ("410-gone", "410-continue", "500", "401"):
        schema.check(json.load(open(os.path.join(HERE, "status", f + ".json"))),
                     "io.k8s.apimachinery.pkg.apis.meta.v1.Status")
    for f in os.listdir(os.path.join(HERE, "discovery")):
        d = json.load(open(os.path.join(HERE, "discovery", f)))
        ref = {"APIResourceList": "APIResourceList", "APIGroupList": "APIGroupList",
               "APIGroup": "APIGroup", "APIVersions": "APIVersions"}.get(d.get("kind"))
        schema.check(d, "io.k8s.apimachinery.pkg.apis.meta.v1." + ref if ref else
                     "io.k8s.apimachinery.pkg.version.Info")
    # Table column definitions, as kube-apiserver's printers declare them
    # (pkg/printers/internalversion/printers.go): descriptions are the API's
    # field docs (v1.27.0 schema); the pod columns are as recorded from a real
    # server (kubectl -v9 log of a v1.29 cluster).
    defs = json.load(open(defs_path))["definitions"]
    def doc(d, f):
        return defs[d]["properties"][f]["description"]
    meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    def col(name, desc, prio=0, fmt=""):
        return {"name": name, "type": "string", "format": fmt, "description": desc, "priority": prio}
    columns = {
        "pods": [
            col("Name", doc(meta, "name"), fmt="name"),
            col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "The aggregate status of the containers in this pod."),
            col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            col("Age", doc(meta, "creationTimestamp")),
            col("IP", doc("io.k8s.api.core.v1.PodStatus", "podIP"), 1),
            col("Node", doc("io.k8s.api.core.v1.PodSpec", "nodeName"), 1),
            col("Nominated Node", doc("io.k8s.api.core.v1.PodStatus", "nominatedNodeName"), 1),
            col("Readiness Gates", doc("io.k8s.api.core.v1.PodSpec", "readinessGates"), 1)],
        "services": [
            col("Name", doc(meta, "name"), fmt="name"),
            col("Type", doc("io.k8s.api.core.v1.ServiceSpec", "type")),
            col("Cluster-IP", doc("io.k8s.api.core.v1.ServiceSpec", "clusterIP")),
            col("External-IP", doc("io.k8s.api.core.v1.ServiceSpec", "externalIPs")),
            col("Port(s)", doc("io.k8s.api.core.v1.ServiceSpec", "ports")),
            col("Age", doc(meta, "creationTimestamp")),
            col("Selector", doc("io.k8s.api.core.v1.ServiceSpec", "selector"), 1)],
        "endpointslices": [
            col("Name", doc(meta, "name"), fmt="name"),
            col("AddressType", doc("io.k8s.api.discovery.v1.EndpointSlice", "addressType")),
            col("Ports", doc("io.k8s.api.discovery.v1.EndpointSlice", "ports")),
            col("Endpoints", doc("io.k8s.api.discovery.v1.EndpointSlice", "endpoints")),
            col("Age", doc(meta, "creationTimestamp"))],
    }
    os.makedirs(os.path.join(HERE, "tables"), exist_ok=True)
    dump("tables/columns.json", columns, compact=False)
    print("recordings written and checked against the v1.27.0 schema")


if __name__ == "__main__":
    main()
