#!/usr/bin/python3
"""Writes the reassembly test captures into OUTDIR (at test time; no pcap is
committed).  Each packet is one second after the previous one, so frag-read can
name held frames by their timestamp.

usage: gen-frag-captures.py OUTDIR
"""
import os
import sys

from scapy.all import (IP, TCP, UDP, Ether, GRE, IPv6, IPv6ExtHdrFragment, Raw, fragment,
                       fragment6, wrpcap)
from scapy.layers.vxlan import VXLAN
from scapy.contrib.geneve import GENEVE
import struct

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
NODE_A, NODE_B = "10.10.0.1", "10.10.0.2"
POD_A, POD_B = "10.244.1.2", "10.244.2.3"


def stamp(pkts):
    for i, p in enumerate(pkts):
        p.time = 1700000000 + i
    return pkts


def pod_tcp(sport, payload_len, seq=1000):
    return (Ether(src=MAC_A, dst=MAC_B) / IP(src=POD_A, dst=POD_B, id=7, ttl=63) /
            TCP(sport=sport, dport=443, flags="PA", seq=seq) / (b"p" * payload_len))


def vxlan(inner, sport=45000, vni=42, ip_id=1):
    return (Ether(src=MAC_A, dst=MAC_B) / IP(src=NODE_A, dst=NODE_B, id=ip_id) /
            UDP(sport=sport, dport=4789) / VXLAN(vni=vni, flags=0x08) / inner)


def underlay(pkt, mtu):
    """Fragments the carrier as a router with this MTU does (payload multiple of 8)."""
    size = (mtu - 20) // 8 * 8
    return fragment(pkt, fragsize=size)


def vxlan_mtu1450():
    pkts = []
    for i in range(3):
        pkts += underlay(vxlan(pod_tcp(40000 + i, 1400 + 100 * i), ip_id=100 + i), 1450)
    return pkts


def vxlan_mtu1480_reversed():
    pkts = []
    for i in range(2):
        pkts += list(reversed(underlay(vxlan(pod_tcp(41000 + i, 2900), ip_id=200 + i), 1480)))
    return pkts


def inner_in_tunnels():
    """A pod's UDP datagram fragmented before the tunnel, in VXLAN 42 and, with the
    same addresses and IP id, in Geneve 7: they must not mix."""
    inner = (Ether(src=MAC_A, dst=MAC_B) / IP(src=POD_A, dst=POD_B, id=301, ttl=63) /
             UDP(sport=5000, dport=5001) / (b"i" * 2500))
    frags = fragment(inner, fragsize=1200)
    pkts = []
    for f in frags:
        pkts.append(vxlan(f, sport=45001))
        pkts.append(Ether(src=MAC_A, dst=MAC_B) / IP(src=NODE_A, dst=NODE_B) /
                    UDP(sport=46000, dport=6081) / GENEVE(vni=7, proto=0x6558) / f)
    return pkts


def ipv6_cases():
    e = Ether(src=MAC_A, dst=MAC_B)
    # a plain IPv6 UDP datagram, fragments reversed
    p = e / IPv6(src="fd00:244:1::2", dst="fd00:244:2::3") / IPv6ExtHdrFragment(id=0x1234) / \
        UDP(sport=6000, dport=6001) / (b"6" * 3000)
    pkts = list(reversed(fragment6(p, 1280)))
    # VXLAN over an IPv6 underlay, fragmented
    v = e / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=0x99) / \
        UDP(sport=45002, dport=4789) / VXLAN(vni=43, flags=0x08) / pod_tcp(42000, 2000)
    pkts += fragment6(v, 1280)
    return pkts


def gtp_underlay():
    inner = IP(src=POD_A, dst=POD_B, id=9) / UDP(sport=7000, dport=7001) / (b"g" * 1800)
    body = bytes(inner)
    gtp = struct.pack("!BBHI", 0x30, 0xFF, len(body), 0x11223344) + body
    p = Ether(src=MAC_A, dst=MAC_B) / IP(src=NODE_A, dst=NODE_B, id=400) / \
        UDP(sport=2152, dport=2152) / Raw(gtp)
    return underlay(p, 1500)


def trouble():
    """A duplicate, an overlap, a missing last fragment, a snaplen cut."""
    e = Ether(src=MAC_A, dst=MAC_B)
    d = IP(src=POD_A, dst=POD_B, id=500) / UDP(sport=8000, dport=8001) / (b"t" * 3000)
    f = fragment(e / d, fragsize=1480)
    pkts = [f[0], f[0], f[1], f[2]]                       # duplicate, then complete
    d2 = IP(src=POD_A, dst=POD_B, id=501) / UDP(sport=8000, dport=8001) / (b"o" * 3000)
    f2 = fragment(e / d2, fragsize=1480)
    ov = f2[1].copy()
    ov[IP].frag = 1440 // 8                                # starts 40 bytes too early
    ov[IP].chksum = None
    pkts += [f2[0], Ether(bytes(ov)), f2[2]]               # overlap: the datagram is dropped
    d3 = IP(src=POD_A, dst=POD_B, id=502) / UDP(sport=8000, dport=8001) / (b"m" * 3000)
    f3 = fragment(e / d3, fragsize=1480)
    pkts += [f3[0], f3[1]]                                 # the last never comes
    d4 = IP(src=POD_A, dst=POD_B, id=503) / UDP(sport=8000, dport=8001) / (b"c" * 3000)
    f4 = fragment(e / d4, fragsize=1480)
    cut = Ether(bytes(f4[0])[:200])
    cut.wirelen = len(f4[0])
    pkts += [cut]                                          # cut by the snaplen
    return pkts


CAPTURES = {
    "vxlan-mtu1450": vxlan_mtu1450,
    "vxlan-mtu1480-reversed": vxlan_mtu1480_reversed,
    "inner-in-tunnels": inner_in_tunnels,
    "ipv6": ipv6_cases,
    "gtp-underlay": gtp_underlay,
    "trouble": trouble,
}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, make in CAPTURES.items():
        wrpcap(os.path.join(out, name + ".pcap"), stamp(make()), linktype=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
