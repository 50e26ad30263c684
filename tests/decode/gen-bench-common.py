#!/usr/bin/python3
"""Writes the decode benchmark's "common path" capture: what a node mostly sees.

40% plain IPv4 TCP, 15% IPv4 UDP (DNS-sized), 10% IPv6 TCP, 25% VXLAN (4789) with an
inner IPv4 TCP packet, 10% flannel VXLAN (8472) with inner UDP; varied ports and
payload sizes.  bench/decode-bench FILE measures dc_decode() on it: the figure that
must not drop when decode learns new tunnels.

usage: gen-bench-common.py OUT.pcap [PACKETS]   (default 200000)
"""
import random
import struct
import sys

from scapy.all import IP, TCP, UDP, Ether, IPv6, raw
from scapy.layers.vxlan import VXLAN


def templates(rng):
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    out = []
    for i in range(400):
        sp, dp = rng.randrange(32768, 61000), rng.choice([80, 443, 8080, 6443, 2379])
        pl = b"x" * rng.choice([0, 0, 64, 512, 1400])
        a = f"10.244.{i % 200}.{i % 250 + 1}"
        kind = rng.random()
        if kind < 0.40:
            p = e / IP(src=a, dst="10.96.0.10") / TCP(sport=sp, dport=dp, flags="PA") / pl
        elif kind < 0.55:
            p = e / IP(src=a, dst="10.96.0.10") / UDP(sport=sp, dport=53) / (b"q" * 40)
        elif kind < 0.65:
            p = e / IPv6(src="fd00::%x" % (i + 1), dst="fd00::a") / TCP(sport=sp, dport=dp, flags="A") / pl
        elif kind < 0.90:
            p = (e / IP(src="192.168.1.1", dst="192.168.1.2") / UDP(sport=sp, dport=4789) / VXLAN(vni=1) /
                 e / IP(src=a, dst="10.244.9.9") / TCP(sport=sp, dport=dp, flags="PA") / pl)
        else:
            p = (e / IP(src="192.168.1.1", dst="192.168.1.2") / UDP(sport=sp, dport=8472) / VXLAN(vni=1) /
                 e / IP(src=a, dst="10.244.9.9") / UDP(sport=sp, dport=53) / (b"q" * 40))
        out.append(raw(p))
    return out


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    rng = random.Random(15)
    t = templates(rng)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            b = t[rng.randrange(len(t))]
            f.write(struct.pack("<IIII", 1700000000 + i // 1000000, i % 1000000, len(b), len(b)))
            f.write(b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
