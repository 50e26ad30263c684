#!/usr/bin/python3
"""A VXLAN TCP connection whose carrier is fragmented on the underlay (MTU 1450),
read with `podcap read --db --store`: it must be ONE flow (the inner tuple) with all
its packets and bytes, and `podcap export --flow ID` must give back every original
frame (the fragments, byte for byte, in capture order), which tshark reassembles
into the connection's TCP segments.  Then the same capture with the last fragment of
one datagram missing: the timeout is counted in the summary, and no frame is lost
from the store.  Last, a pod's fragmented datagram in carriers fragmented again.

usage: frag-vxlan-cli.py PODCAP WORKDIR
Exit 0 ok, 1 a difference, 77 no scapy or tshark (skipped).
"""
import json
import os
import re
import shutil
import subprocess
import sys

try:
    from scapy.all import IP, TCP, UDP, Ether, fragment, rdpcap, wrpcap
    from scapy.layers.vxlan import VXLAN
except ImportError:
    print("SKIP: /usr/bin/python3 has no scapy")
    sys.exit(77)

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
NODE_A, NODE_B = "10.10.0.1", "10.10.0.2"
POD_C, POD_S = "10.244.1.2", "10.244.2.3"
CPORT, SPORT = 40123, 8080
failed = 0


def check(ok, what):
    global failed
    if not ok:
        print("FAIL:", what)
        failed += 1


def inner(c2s, flags, seq, ack, payload=b""):
    src, dst, sp, dp = (POD_C, POD_S, CPORT, SPORT) if c2s else (POD_S, POD_C, SPORT, CPORT)
    return (Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst, ttl=63) /
            TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack) / payload)


def carrier(pkt, c2s, ip_id):
    src, dst = (NODE_A, NODE_B) if c2s else (NODE_B, NODE_A)
    return (Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst, id=ip_id) /
            UDP(sport=45000 if c2s else 45001, dport=4789) / VXLAN(vni=42, flags=0x08) / pkt)


def connection():
    """Inner packets of one HTTP-like exchange: (c2s, flags, payload length)."""
    steps = [(1, "S", 0), (0, "SA", 0), (1, "A", 0)]
    steps += [(1, "PA", 1400)] * 4 + [(0, "A", 0)]
    steps += [(0, "PA", 1380), (0, "PA", 1200), (1, "A", 0)]
    steps += [(1, "FA", 0), (0, "FA", 0), (1, "A", 0)]
    seq = {1: 1000, 0: 5000}
    out = []
    for c2s, flags, n in steps:
        p = inner(c2s, flags, seq[c2s], seq[1 - c2s], bytes([65 + len(out) % 26]) * n)
        seq[c2s] += n + (1 if "S" in flags or "F" in flags else 0)
        out.append((c2s, p, n))
    return out


def frames(drop_last_of=None):
    """The wire: each carrier longer than the underlay MTU (1450) fragmented as a
    router does; the server's carriers' fragments reversed.  Returns the frames,
    and per inner packet the length of its whole carrier frame."""
    wire, whole = [], []
    for i, (c2s, p, n) in enumerate(connection()):
        c = carrier(p, c2s, 100 + i)
        whole.append(len(c))
        if len(c) - 14 > 1450:
            fr = fragment(c, fragsize=(1450 - 20) // 8 * 8)
            if not c2s:
                fr = list(reversed(fr))
            if drop_last_of == i:
                fr = [f for f in fr if f[IP].flags.MF or f[IP].frag == 0]
            wire += fr
        else:
            wire.append(c)
    for k, f in enumerate(wire):
        f.time = 1700000000 + k * 0.001
    return wire, whole


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        print("FAIL:", " ".join(cmd), "exited", r.returncode, r.stdout, r.stderr)
        sys.exit(1)
    return r.stdout


def read_and_export(podcap, work, name, wire):
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    pcap = os.path.join(d, "in.pcap")
    wrpcap(pcap, wire)
    db, store = os.path.join(d, "flows.db"), os.path.join(d, "store")
    summary = run([podcap, "read", pcap, "--db", db, "--store", store])
    flows = json.loads(run([podcap, "flows", "--db", db, "--json", "--limit", "0"]))
    return d, db, summary, flows


def main():
    podcap, work = sys.argv[1:3]
    if not shutil.which("tshark"):
        print("SKIP: no tshark")
        return 77
    os.makedirs(work, exist_ok=True)
    conn = connection()

    # ---- the whole connection ----
    wire, whole = frames()
    nfrag = sum(1 for f in wire if f[IP].flags.MF or f[IP].frag)
    d, db, summary, flows = read_and_export(podcap, work, "frag-vxlan", wire)
    check(len(flows) == 1, f"{len(flows)} flow records, want 1: {flows}")
    f = flows[0]
    check((f["src"], f["sport"], f["dst"], f["dport"]) == (POD_C, CPORT, POD_S, SPORT),
          f"flow tuple {f['src']}:{f['sport']} -> {f['dst']}:{f['dport']}")
    check(f["tunnel"] == "vxlan" and f["vni"] == 42, f"tunnel {f['tunnel']} vni {f['vni']}")
    want_c = [w for (c2s, _, _), w in zip(conn, whole) if c2s]
    want_s = [w for (c2s, _, _), w in zip(conn, whole) if not c2s]
    check(f["c2s_pkts"] == len(want_c) and f["s2c_pkts"] == len(want_s),
          f"packets {f['c2s_pkts']}/{f['s2c_pkts']}, want {len(want_c)}/{len(want_s)}")
    check(f["c2s_bytes"] == sum(want_c) and f["s2c_bytes"] == sum(want_s),
          f"bytes {f['c2s_bytes']}/{f['s2c_bytes']}, want {sum(want_c)}/{sum(want_s)}")
    pay_c = sum(n for c2s, _, n in conn if c2s)
    pay_s = sum(n for c2s, _, n in conn if not c2s)
    check(f["c2s_payload"] == pay_c and f["s2c_payload"] == pay_s,
          f"payload {f['c2s_payload']}/{f['s2c_payload']}, want {pay_c}/{pay_s}")
    check(f["syn"] == 1 and f["synack"] == 1 and f["fin"] == 2, "TCP flags not all seen")
    m = re.search(r"ip fragments (\d+): (\d+) datagrams reassembled", summary)
    nbig = sum(1 for w in whole if w - 14 > 1450)
    check(m and int(m.group(1)) == nfrag and int(m.group(2)) == nbig,
          f"summary says {m and m.groups()}, want {nfrag} fragments, {nbig} datagrams:\n{summary}")
    check("tunnelled: vxlan %d" % len(wire) in summary, f"every frame counted as vxlan:\n{summary}")

    out = os.path.join(d, "flow.pcapng")
    run([podcap, "export", "--db", db, "--flow", f["id"], "-w", out])
    got = [bytes(p) for p in rdpcap(out)]
    check(got == [bytes(p) for p in wire],
          f"export: {len(got)} frames, want the {len(wire)} original frames in capture order")
    # tshark reassembles the carriers and opens VXLAN: the connection's segments
    seg = run(["tshark", "-r", out, "-o", "ip.defragment:TRUE", "-Y", "vxlan && tcp",
               "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.len"])
    rows = [line.split("\t") for line in seg.splitlines() if line]
    check(len(rows) == len(conn), f"tshark: {len(rows)} TCP segments in VXLAN, want {len(conn)}")
    check(sum(int(n) for _, n in rows) == pay_c + pay_s, "tshark: payload bytes differ")
    mf = run(["tshark", "-r", out, "-Y", "ip.flags.mf == 1", "-T", "fields", "-e", "frame.number"])
    check(len(mf.split()) == nbig, f"tshark: {len(mf.split())} first fragments in the export, want {nbig}")

    # ---- one datagram's last fragment lost: counted as a timeout, nothing lost ----
    lost = 4  # the second 1400-byte data packet
    wire2, _ = frames(drop_last_of=lost)
    # the capture goes on 40 s later (another connection's packet), past the timeout
    tail = carrier(inner(1, "A", 99, 99), 1, 999)
    tail[TCP].sport = 50000
    tail.time = float(wire2[-1].time) + 40
    wire2.append(tail)
    d2, db2, summary2, flows2 = read_and_export(podcap, work, "frag-vxlan-lost", wire2)
    check(re.search(r"timed out 1,", summary2) is not None, f"timeout not counted:\n{summary2}")
    m = re.search(r"packet store: (\d+) packets stored", summary2)
    check(m and int(m.group(1)) == len(wire2), f"store kept {m and m.group(1)} of {len(wire2)} frames")
    main_flow = [x for x in flows2 if x["sport"] == CPORT]
    check(len(main_flow) == 1, f"{len(main_flow)} records of the connection")
    if main_flow:
        x = main_flow[0]
        check(x["c2s_pkts"] == len(want_c) - 1, f"connection: {x['c2s_pkts']} packets c2s, want "
              f"{len(want_c) - 1} (the datagram that lost a fragment is not one)")
    # ---- a pod's fragmented datagram in carriers that are fragmented again ----
    # Each carrier is rebuilt; the inner fragments it then holds reach the flow
    # table as fragments (joined by IP id), not rebuilt a second time: one flow of
    # two packets, and every frame on the wire stored under it.
    pod = IP(src=POD_C, dst=POD_S, id=77) / UDP(sport=5000, dport=5001) / (b"n" * 2500)
    wire3 = []
    for k, fr in enumerate(fragment(pod, fragsize=1400)):
        c = (Ether(src=MAC_A, dst=MAC_B) / IP(src=NODE_A, dst=NODE_B, id=300 + k) /
             UDP(sport=45000, dport=4789) / VXLAN(vni=42, flags=0x08) /
             Ether(src=MAC_A, dst=MAC_B) / fr)
        wire3 += fragment(c, fragsize=800)
    for k, fr in enumerate(wire3):
        fr.time = 1700000000 + k * 0.001
    d3, db3, summary3, flows3 = read_and_export(podcap, work, "frag-vxlan-nested", wire3)
    check(len(flows3) == 1 and flows3[0]["sport"] == 5000 and flows3[0]["c2s_pkts"] == 2,
          f"nested: flows {[(x['sport'], x['c2s_pkts']) for x in flows3]}, want one of 2 packets")
    check(re.search(r"ip fragments %d: 2 datagrams reassembled" % len(wire3), summary3) is not None,
          f"nested: summary\n{summary3}")
    if flows3:
        out3 = os.path.join(d3, "flow.pcapng")
        run([podcap, "export", "--db", db3, "--flow", flows3[0]["id"], "-w", out3])
        check([bytes(p) for p in rdpcap(out3)] == [bytes(p) for p in wire3],
              "nested: the export is not the frames on the wire")
    print("frag-vxlan-cli:", "ok" if not failed else f"{failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
