#!/usr/bin/python3
"""Checks for tests/lab/lab-services.sh that need JSON: the inventory against the
links the CNI plugins made, the inventory's Services, and `lab/lab k8s-json`.

  lab_checks.py cni INVENTORY STATE_DIR
  lab_checks.py inventory INVENTORY
  lab_checks.py k8s INVENTORY LAB
  lab_checks.py chain PREFIX NAME     kube-proxy's chain name for NAME

Prints "ok - ..." / "FAIL - ..." lines; exits 1 if anything failed.
"""
import base64
import hashlib
import json
import os
import re
import subprocess
import sys

failed = False


def ok(msg):
    print("ok - " + msg)


def bad(msg):
    global failed
    failed = True
    print("FAIL - " + msg)


def ipj(*args):
    out = subprocess.run(["ip", "-j"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout or b"[]")


def load(path):
    with open(path) as f:
        return json.load(f)


def check_cni(inv_path, state):
    """Every pod's host veth is the one its CNI result names, with the inventory's
    ifindex and MACs, its peer is the pod's eth0, and host-local holds its address
    for the same container id."""
    inv = load(inv_path)
    results = {}
    rdir = os.path.join(state, "cni", "results")
    for name in os.listdir(rdir):
        c = load(os.path.join(rdir, name))
        if c.get("kind") != "cniCacheV1" or name != "%s-%s-eth0" % (c["networkName"], c["containerId"]):
            bad("CNI cache %s is not in libcni's layout" % name)
        results[c["containerId"]] = c
    if len(results) != len(inv["pods"]):
        bad("%d CNI results for %d pods" % (len(results), len(inv["pods"])))
    for p in inv["pods"]:
        what = "%s/%s" % (p["namespace"], p["name"])
        for key, typ in (("name", str), ("namespace", str), ("netns", str), ("node", str),
                         ("host_veth", str), ("host_ifindex", int), ("ips", list), ("labels", dict)):
            if not isinstance(p.get(key), typ):
                bad("%s: inventory field %s missing or not a %s" % (what, key, typ.__name__))
        cid = p.get("cni", {}).get("container_id", "")
        c = results.get(cid)
        if not c:
            bad("%s: no CNI result for container %s" % (what, cid[:12]))
            continue
        conf = json.loads(base64.b64decode(c["config"]))
        want_plugin = "bridge" if p["node"] == "pc-node1" else "ptp"
        if conf["type"] != want_plugin or p["cni"]["plugin"] != want_plugin:
            bad("%s: plugin %s, want %s" % (what, conf["type"], want_plugin))
        if conf["ipam"]["type"] != "host-local" or not conf["ipam"]["dataDir"].startswith(state + "/"):
            bad("%s: IPAM %r does not keep its state under %s" % (what, conf["ipam"], state))
        args = dict(c["cniArgs"])
        if args.get("K8S_POD_NAME") != p["name"] or args.get("K8S_POD_NAMESPACE") != p["namespace"]:
            bad("%s: CNI_ARGS %r" % (what, args))
        res_ifs = {i["name"]: i for i in c["result"]["interfaces"]}
        if p["host_veth"] not in res_ifs or res_ifs[p["host_veth"]].get("mac") != p["host_mac"]:
            bad("%s: veth %s / %s not the CNI result's %r" % (what, p["host_veth"], p["host_mac"], res_ifs))
        if res_ifs.get("eth0", {}).get("sandbox") != "/run/netns/" + p["netns"]:
            bad("%s: CNI result's eth0 is not in %s" % (what, p["netns"]))
        if [i["address"].split("/")[0] for i in c["result"]["ips"]] != p["ips"]:
            bad("%s: CNI result IPs %r, inventory %r" % (what, c["result"]["ips"], p["ips"]))
        if not re.match(r"^veth[0-9a-f]{8}$", p["host_veth"]):
            bad("%s: host veth %s is not named as the plugins name them" % (what, p["host_veth"]))
        link = ipj("-n", p["node"], "addr", "show", "dev", p["host_veth"])
        if not link:
            bad("%s: %s not in %s" % (what, p["host_veth"], p["node"]))
            continue
        link = link[0]
        if link["ifindex"] != p["host_ifindex"] or link["address"] != p["host_mac"]:
            bad("%s: %s has ifindex %s mac %s, inventory %s %s" % (what, p["host_veth"], link["ifindex"],
                                                                  link["address"], p["host_ifindex"], p["host_mac"]))
        if p["node"] == "pc-node1" and link.get("master") != "cni0":
            bad("%s: %s not a port of cni0 (bridge plugin)" % (what, p["host_veth"]))
        if p["node"] == "pc-node2":
            # ptp puts the pod's gateway on the host end of the veth, as a /32
            gw = c["result"]["ips"][0]["gateway"]
            addrs = ["%s/%s" % (a["local"], a["prefixlen"]) for a in link.get("addr_info", []) if a["family"] == "inet"]
            if addrs != [gw + "/32"]:
                bad("%s: %s carries %r, ptp gives it the gateway %s/32" % (what, p["host_veth"], addrs, gw))
        eth0 = ipj("-n", p["netns"], "addr", "show", "dev", "eth0")
        if not eth0:
            bad("%s: no eth0 in %s" % (what, p["netns"]))
            continue
        eth0 = eth0[0]
        pod_ips = [a["local"] for a in eth0.get("addr_info", []) if a["family"] == "inet"]
        if eth0.get("link_index") != p["host_ifindex"] or eth0["address"] != p["mac"] or pod_ips != p["ips"]:
            bad("%s: eth0 peer %s mac %s ips %r, inventory %s %s %r" % (
                what, eth0.get("link_index"), eth0["address"], pod_ips, p["host_ifindex"], p["mac"], p["ips"]))
        if eth0.get("mtu") != 1450:
            bad("%s: eth0 MTU %s, the netconf says 1450" % (what, eth0.get("mtu")))
        lease = os.path.join(state, "cni", "networks", p["cni"]["network"], p["ips"][0])
        try:
            with open(lease) as f:
                holder = f.read().split()[0]
        except (OSError, IndexError):
            holder = None
        if holder != cid:
            bad("%s: host-local lease %s held by %s, want %s" % (what, lease, holder, cid[:12]))
    if not failed:
        ok("CNI: %d pods, each veth as its plugin's result says (bridge on pc-node1, ptp on pc-node2), "
           "peer = pod eth0, host-local lease under %s" % (len(inv["pods"]), state))


def check_inventory(inv_path):
    inv = load(inv_path)
    pods = {(p["namespace"], p["name"]): p for p in inv["pods"]}
    svcs = {(s["namespace"], s["name"]): s for s in inv.get("services", [])}
    want = {("kube-system", "kube-dns"), ("default", "web"), ("default", "api")}
    if set(svcs) != want:
        bad("inventory services %r, want %r" % (sorted(svcs), sorted(want)))
        return
    web = svcs[("default", "web")]
    if web["cluster_ip"] != "10.96.0.80" or web["type"] != "NodePort" or web["ports"] != [
            {"name": "http", "port": 80, "protocol": "TCP", "target_port": 8080, "node_port": 30080}]:
        bad("web service %r" % web)
    dns = svcs[("kube-system", "kube-dns")]
    if dns["cluster_ip"] != "10.96.0.10" or sorted((p["protocol"], p["port"]) for p in dns["ports"]) != [
            ("TCP", 53), ("UDP", 53)]:
        bad("kube-dns service %r" % dns)
    for s in svcs.values():
        for key in ("namespace", "name", "cluster_ip", "ports", "selector", "endpoints"):
            if key not in s:
                bad("%s/%s: no %s" % (s["namespace"], s["name"], key))
        sel = s["selector"]
        selected = sorted(n for (ns, n), p in pods.items()
                          if ns == s["namespace"] and all(p["labels"].get(k) == v for k, v in sel.items()))
        eps = sorted({e["pod"] for e in s["endpoints"]})
        if eps != selected or not eps:
            bad("%s/%s: endpoints %r, selector picks %r" % (s["namespace"], s["name"], eps, selected))
        for e in s["endpoints"]:
            p = pods.get((e["namespace"], e["pod"]))
            if not p or [e["ip"]] != p["ips"] or e["node"] != p["node"]:
                bad("%s/%s: endpoint %r does not match its pod" % (s["namespace"], s["name"], e))
            if e["port"] not in [x["target_port"] for x in s["ports"]]:
                bad("%s/%s: endpoint port %r" % (s["namespace"], s["name"], e))
    if sorted(e["pod"] for e in web["endpoints"]) != ["web-1", "web-2"]:
        bad("web endpoints %r" % web["endpoints"])
    owners = {n: p.get("owner") for (ns, n), p in pods.items()}
    if owners.get("web-1") != {"kind": "Deployment", "name": "web"} or \
            owners.get("tls-1") != {"kind": "StatefulSet", "name": "tls"} or not all(owners.values()):
        bad("pod owners %r" % owners)
    if [n["name"] for n in inv.get("nodes", [])] != ["pc-node1", "pc-node2"]:
        bad("inventory nodes %r" % inv.get("nodes"))
    if not failed:
        ok("inventory: %d pods with owners, services %s, web -> %s" % (
            len(pods), ", ".join("%s/%s %s" % (k[0], k[1], svcs[k]["cluster_ip"]) for k in sorted(svcs)),
            ", ".join("%s %s:%d" % (e["pod"], e["ip"], e["port"]) for e in web["endpoints"])))


def k8s_json(lab, kind):
    out = subprocess.run([lab, "k8s-json"] + ([kind] if kind else []), stdout=subprocess.PIPE)
    if out.returncode != 0:
        bad("lab k8s-json %s: exit %d" % (kind, out.returncode))
        return None
    return json.loads(out.stdout)


def check_k8s(inv_path, lab):
    inv = load(inv_path)
    ipods = {(p["namespace"], p["name"]): p for p in inv["pods"]}
    pl = k8s_json(lab, "pods")
    sl = k8s_json(lab, "services")
    el = k8s_json(lab, "endpointslices")
    al = k8s_json(lab, "")
    if not (pl and sl and el and al):
        return
    for lst, kind, api in ((pl, "PodList", "v1"), (sl, "ServiceList", "v1"),
                           (el, "EndpointSliceList", "discovery.k8s.io/v1")):
        if lst.get("kind") != kind or lst.get("apiVersion") != api or not lst["metadata"].get("resourceVersion"):
            bad("%s header %r" % (kind, {k: lst.get(k) for k in ("kind", "apiVersion", "metadata")}))
        for it in lst["items"]:
            m = it["metadata"]
            if not (m.get("name") and m.get("namespace") and re.match(r"^[0-9a-f-]{36}$", m.get("uid", ""))
                    and m.get("resourceVersion", "").isdigit() and m.get("creationTimestamp")):
                bad("%s item metadata %r" % (kind, m))
            if "kind" in it:
                bad("%s item carries kind (a real list does not)" % kind)
    if len(pl["items"]) != len(ipods):
        bad("PodList has %d pods, inventory %d" % (len(pl["items"]), len(ipods)))
    uids = {}
    for it in pl["items"]:
        m, sp, st = it["metadata"], it["spec"], it["status"]
        p = ipods.get((m["namespace"], m["name"]))
        if not p:
            bad("PodList pod %s/%s not in the inventory" % (m["namespace"], m["name"]))
            continue
        uids[m["uid"]] = p
        if sp.get("nodeName") != p["node"] or st.get("podIP") != p["ips"][0] or \
                [x["ip"] for x in st.get("podIPs", [])] != p["ips"] or st.get("phase") != "Running" or \
                m["uid"] != p.get("uid"):
            bad("pod %s: nodeName %s podIP %s phase %s uid %s vs inventory" % (
                m["name"], sp.get("nodeName"), st.get("podIP"), st.get("phase"), m["uid"]))
        for k, v in p["labels"].items():
            if m["labels"].get(k) != v:
                bad("pod %s: label %s=%s missing" % (m["name"], k, v))
        ref = (m.get("ownerReferences") or [{}])[0]
        okind, oname = p["owner"]["kind"], p["owner"]["name"]
        if okind == "Deployment":
            good = ref.get("kind") == "ReplicaSet" and ref.get("name") == "%s-%s" % (oname, m["labels"].get("pod-template-hash"))
        else:
            good = ref.get("kind") == okind and ref.get("name") == oname
        if not good or ref.get("controller") is not True:
            bad("pod %s: ownerReference %r for %s/%s" % (m["name"], ref, okind, oname))
    isvcs = {(s["namespace"], s["name"]): s for s in inv["services"]}
    for it in sl["items"]:
        m, sp = it["metadata"], it["spec"]
        s = isvcs.get((m["namespace"], m["name"]))
        if not s or sp.get("clusterIP") != s["cluster_ip"] or sp.get("selector") != s["selector"] or \
                sorted((p["port"], p["protocol"], p["targetPort"], p.get("nodePort", 0)) for p in sp["ports"]) != \
                sorted((p["port"], p["protocol"], p["target_port"], p["node_port"]) for p in s["ports"]):
            bad("Service %s/%s %r does not match the inventory" % (m["namespace"], m["name"], sp))
    if len(sl["items"]) != len(isvcs):
        bad("ServiceList has %d services, inventory %d" % (len(sl["items"]), len(isvcs)))
    for it in el["items"]:
        m = it["metadata"]
        svc = m["labels"].get("kubernetes.io/service-name")
        s = isvcs.get((m["namespace"], svc))
        if not s or it.get("addressType") != "IPv4":
            bad("EndpointSlice %s for unknown service %s" % (m["name"], svc))
            continue
        got = sorted((e["addresses"][0], e["targetRef"]["name"], e.get("nodeName")) for e in it["endpoints"])
        want = sorted({(e["ip"], e["pod"], e["node"]) for e in s["endpoints"]})
        if got != want:
            bad("EndpointSlice %s: %r, inventory %r" % (m["name"], got, want))
        for e in it["endpoints"]:
            if uids.get(e["targetRef"].get("uid"), {}).get("name") != e["targetRef"]["name"]:
                bad("EndpointSlice %s: targetRef uid of %s is not its pod's" % (m["name"], e["targetRef"]["name"]))
            if e.get("conditions", {}).get("ready") is not True:
                bad("EndpointSlice %s: %s not ready" % (m["name"], e["targetRef"]["name"]))
    kinds = sorted({i.get("kind") for i in al.get("items", [])})
    if al.get("kind") != "List" or kinds != ["EndpointSlice", "Pod", "Service"]:
        bad("k8s-json List: kind %s, item kinds %r" % (al.get("kind"), kinds))
    if not failed:
        ok("k8s-json: PodList %d, ServiceList %d, EndpointSliceList %d agree with the inventory (IPs, nodes, "
           "owners, uids)" % (len(pl["items"]), len(sl["items"]), len(el["items"])))


def chain(prefix, name):
    h = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8]
    print("%s-%s-%s" % (prefix, h, name))


def main(argv):
    if len(argv) >= 4 and argv[1] == "cni":
        check_cni(argv[2], argv[3])
    elif len(argv) >= 3 and argv[1] == "inventory":
        check_inventory(argv[2])
    elif len(argv) >= 4 and argv[1] == "k8s":
        check_k8s(argv[2], argv[3])
    elif len(argv) >= 4 and argv[1] == "chain":
        chain(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
