#!/usr/bin/python3
"""Writes the decode test captures into OUTDIR (at test time; no pcap is committed).

Each capture groups one theme; the golden files tests/decode/golden/<name>.txt are
`podcap decode` of them.  Every packet is built field by field so the output is
the same on every run (fixed ports, ids, timestamps).

usage: gen-captures.py OUTDIR
"""
import os
import sys

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, GRE, IPOption_RR,
                       IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, ICMPv6EchoRequest, ICMPv6DestUnreach, Raw,
                       SCTP, SCTPChunkInit, fragment, wrpcap, PPP, HDLC, Loopback)
from scapy.layers.l2 import CookedLinux, CookedLinuxV2
from scapy.layers.vxlan import VXLAN
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.ppp import PPP as PPP_
from scapy.layers.l2 import GRE_PPTP

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"
NODE_A, NODE_B = "10.10.0.1", "10.10.0.2"
POD_A, POD_B = "10.244.1.2", "10.244.2.3"
POD6_A, POD6_B = "fd00:244:1::2", "fd00:244:2::3"


def stamp(pkts):
    for i, p in enumerate(pkts):
        p.time = 1700000000 + i
    return pkts


def inner_tcp(flags="S", payload=b""):
    """A pod-to-pod TCP packet, as the overlay carries it."""
    return (Ether(src=MAC_A, dst=MAC_B) /
            IP(src=POD_A, dst=POD_B, id=7, ttl=63) /
            TCP(sport=45228, dport=443, flags=flags, seq=1000, window=64240) / payload)


def inner_ip_tcp(flags="S"):
    return IP(src=POD_A, dst=POD_B, id=7, ttl=63) / TCP(sport=45228, dport=443, flags=flags, seq=1000)


def outer(l4):
    return Ether(src=MAC_A, dst=MAC_B) / IP(src=NODE_A, dst=NODE_B, id=1, ttl=64) / l4


def link_packets():
    base = IP(src="192.168.1.10", dst="192.168.1.20", id=1, ttl=64)
    b6 = IPv6(src="2001:db8::10", dst="2001:db8::20", hlim=64)
    eth = Ether(src=MAC_A, dst=MAC_B)
    pkts = [
        eth / base / TCP(sport=40000, dport=80, flags="S", seq=1, options=[("MSS", 1460)]),
        eth / base / TCP(sport=80, dport=40000, flags="SA", seq=5, ack=2),
        eth / base / TCP(sport=40000, dport=80, flags="PA", seq=2, ack=6) / b"GET / HTTP/1.1\r\n\r\n",
        eth / base / TCP(sport=40000, dport=80, flags="FA", seq=20, ack=6),
        eth / base / UDP(sport=5353, dport=53) / b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
        eth / base / ICMP(type=8, code=0, id=1, seq=1) / b"ping",
        eth / IP(src="192.168.1.10", dst="192.168.1.20", id=2, options=[IPOption_RR(routers=["1.1.1.1"])]) /
        UDP(sport=1000, dport=2000) / b"opt",
        eth / b6 / TCP(sport=40000, dport=443, flags="S", seq=1),
        eth / b6 / UDP(sport=5353, dport=53) / b"q",
        eth / b6 / ICMPv6EchoRequest(id=1, seq=1),
        eth / b6 / ICMPv6DestUnreach(code=4) / (b"x" * 8),
        eth / b6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=1, dport=2, flags="S"),
        eth / b6 / IPv6ExtHdrRouting(addresses=["2001:db8::30"], segleft=1) / UDP(sport=3, dport=4),
        eth / base / SCTP(sport=36412, dport=36412) / SCTPChunkInit(),
        eth / ARP(op=1, psrc="192.168.1.10", pdst="192.168.1.20", hwsrc=MAC_A),
        Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=5) / base / UDP(sport=1, dport=2),
        Ether(src=MAC_A, dst=MAC_B, type=0x88a8) / Dot1AD(vlan=100) / Dot1Q(vlan=200) / base / UDP(sport=1, dport=2),
    ]
    # IPv4 fragments of a 1200-byte UDP datagram: the first carries the ports.
    pkts += fragment(eth / IP(src="192.168.1.10", dst="192.168.1.20", id=99) /
                     UDP(sport=7000, dport=7001) / (b"f" * 1200), fragsize=512)
    # IPv6 fragments
    frag6 = eth / b6 / IPv6ExtHdrFragment(id=5, offset=0, m=1, nh=17) / UDP(sport=7000, dport=7001, len=1208) / (b"g" * 64)
    frag6b = eth / b6 / IPv6ExtHdrFragment(id=5, offset=9, m=0, nh=17) / (b"g" * 64)
    pkts += [frag6, frag6b]
    return pkts


def tunnel_packets():
    o6 = Ether(src=MAC_A, dst=MAC_B) / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64)
    pkts = [
        # VXLAN on 4789 and on flannel's 8472, with an outer VLAN
        Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=5) / IP(src=NODE_A, dst=NODE_B, id=1) /
        UDP(sport=45000, dport=4789) / VXLAN(vni=42, flags=0x08) / inner_tcp("S"),
        outer(UDP(sport=45001, dport=8472) / VXLAN(vni=1, flags=0x08) / inner_tcp("SA")),
        outer(UDP(sport=45002, dport=4789) / VXLAN(vni=42, flags=0x08) /
              Ether(src=MAC_A, dst=MAC_B) / ARP(op=1, psrc=POD_A, pdst=POD_B, hwsrc=MAC_A)),
        outer(UDP(sport=45003, dport=4789) / VXLAN(vni=42, flags=0x08) / Ether(src=MAC_A, dst=MAC_B) /
              IPv6(src=POD6_A, dst=POD6_B) / TCP(sport=45228, dport=443, flags="S")),
        # Geneve with an option, Ethernet inside; and Geneve with IPv4 inside
        outer(UDP(sport=46000, dport=6081) /
              GENEVE(vni=7, proto=0x6558, options=[GeneveOptions(classid=0x0102, type=0x80, length=1, data=b"\xde\xad\xbe\xef")]) /
              inner_tcp("A")),
        outer(UDP(sport=46001, dport=6081) / GENEVE(vni=8, proto=0x0800) / inner_ip_tcp("S")),
        # GRE: plain, checksum+key+sequence, transparent Ethernet bridging, IPv6 carrier
        outer(GRE(proto=0x0800) / inner_ip_tcp("S")),
        outer(GRE(chksum_present=1, key_present=1, seqnum_present=1, key=0x1234, seqence_number=9, proto=0x0800) /
              inner_ip_tcp("S")),
        outer(GRE(proto=0x6558, key_present=1, key=77) / inner_tcp("S")),
        o6 / GRE(proto=0x86dd) / IPv6(src=POD6_A, dst=POD6_B) / UDP(sport=53000, dport=53) / b"q",
        # ERSPAN type II, type I (no sequence), type III with the platform subheader
        outer(GRE(seqnum_present=1, seqence_number=1, proto=0x88be) / ERSPAN_II(ver=1, session_id=7) / inner_tcp("S")),
        outer(GRE(proto=0x88be) / inner_tcp("S")),
        outer(GRE(seqnum_present=1, seqence_number=2, proto=0x22eb) / ERSPAN_III(session_id=9, o=1) /
              ERSPAN_PlatformSpecific() / inner_tcp("S")),
        # IP in IP, all four
        outer(inner_ip_tcp("S")),
        outer(IPv6(src=POD6_A, dst=POD6_B) / TCP(sport=45228, dport=443, flags="S")),
        o6 / inner_ip_tcp("S"),
        o6 / IPv6(src=POD6_A, dst=POD6_B) / UDP(sport=1, dport=2),
        # nested: IPIP -> GRE(key 5) -> VXLAN 42 -> pod TCP  (depth 3 = the default cap)
        outer(IP(src="172.16.0.1", dst="172.16.0.2", id=3) / GRE(key_present=1, key=5, proto=0x0800) /
              IP(src="172.17.0.1", dst="172.17.0.2", id=4) / UDP(sport=45004, dport=4789) /
              VXLAN(vni=42, flags=0x08) / inner_tcp("S")),
        # four nested tunnels: one past the cap
        outer(IP(src="172.16.0.1", dst="172.16.0.2", id=3) / IP(src="172.16.1.1", dst="172.16.1.2", id=5) /
              GRE(proto=0x0800) / IP(src="172.17.0.1", dst="172.17.0.2", id=4) /
              UDP(sport=45005, dport=4789) / VXLAN(vni=43, flags=0x08) / inner_tcp("S")),
        # PPTP: enhanced GRE carrying PPP/IP
        outer(GRE_PPTP(payload_len=32, call_id=0x4000, seqnum_present=1, seqence_number=1) /
              PPP_(proto=0x0021) / IP(src="192.168.10.2", dst="192.168.10.3", id=9) / UDP(sport=5060, dport=5060) / b"x"),
        # a UDP packet to another port is just UDP
        outer(UDP(sport=45006, dport=4790) / b"\x08\x00\x00\x00\x00\x00\x2a\x00"),
    ]
    return pkts


def malformed_packets():
    good = outer(UDP(sport=45000, dport=4789) / VXLAN(vni=42, flags=0x08) / inner_tcp("S"))
    raw = bytes(good)

    def patch(b, off, val):
        b = bytearray(b)
        b[off:off + len(val)] = val
        return bytes(b)

    eth = 14
    pkts = [
        Ether(patch(raw, eth, b"\x55")),                  # bad-ipv4-version
        Ether(patch(raw, eth, b"\x44")),                  # bad-ihl
        Ether(patch(raw, eth + 2, b"\x10\x00")),          # bad-ipv4-len (4096)
        Ether(patch(raw, eth + 20 + 4, b"\x00\x04")),     # bad-udp-len
        Ether(patch(raw, eth + 28, b"\x00")),             # vxlan-flags
        Ether(patch(raw, eth + 36 + 14 + 20 + 12, b"\x30")),  # bad-tcp-offset (inner)
        outer(UDP(sport=45000, dport=4789) / b"\x08\x00\x00\x00"),  # truncated-vxlan (4 bytes)
        Ether(bytes(outer(UDP(sport=46000, dport=6081) / GENEVE(vni=7, proto=0x6558)))[:eth + 28] +
              b"\x40\x00\x65\x58\x00\x00\x07\x00" + bytes(inner_tcp())),  # geneve-version
        Ether(bytes(outer(GRE(proto=0x0800) / inner_ip_tcp()))[:eth + 20] + b"\x00\x02\x08\x00" +
              bytes(inner_ip_tcp())),                     # gre-version (2)
        Ether(bytes(outer(GRE(seqnum_present=1, proto=0x88be) / ERSPAN_II(ver=1, session_id=7) / inner_tcp()))[:eth + 28] +
              b"\x20\x00\x00\x07\x00\x00\x00\x00" + bytes(inner_tcp())),  # erspan-version
        outer(UDP(sport=46000, dport=6081) / Raw(b"\x01\x00\x65\x58\x00\x00\x07\x00" +
              b"\x01\x02\x80\x05\x00\x00\x00\x00" + bytes(inner_tcp()))),  # geneve-optlen
        Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / Dot1Q(vlan=4) /
        Dot1Q(vlan=5) / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(),  # vlan-depth
        Ether(src=MAC_A, dst=MAC_B) / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=60) /
        Raw(b"".join(bytes([60, 0, 1, 4, 0, 0, 0, 0]) for _ in range(9))),  # ipv6-ext-depth
    ]
    # IPv6 payload length fixed after the fact (scapy fills it in otherwise)
    return pkts


def sll_packets():
    ip = IP(src="10.0.0.1", dst="10.0.0.2", id=1) / TCP(sport=1234, dport=80, flags="S")
    return [CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x01\x00\x00", proto=0x0800) / ip,
            CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x01\x00\x00", proto=0x86dd) /
            IPv6(src="fe80::1", dst="fe80::2") / UDP(sport=546, dport=547)]


def sll2_packets():
    ip = IP(src="10.0.0.1", dst="10.0.0.2", id=1) / UDP(sport=1234, dport=4789) / VXLAN(vni=3, flags=0x08) / inner_tcp("S")
    return [CookedLinuxV2(proto=0x0800, ifindex=3, lladdrtype=1, pkttype=0, lladdrlen=6,
                          src=b"\x02\x00\x00\x00\x00\x01\x00\x00") / ip]


def raw_packets():
    return [IP(src="10.0.0.1", dst="10.0.0.2", id=1) / UDP(sport=1, dport=2) / b"r",
            IPv6(src="fe80::1", dst="fe80::2") / TCP(sport=1, dport=2, flags="S")]


def null_packets():
    return [Loopback(type=2) / IP(src="127.0.0.1", dst="127.0.0.1", id=1) / TCP(sport=1, dport=2, flags="S"),
            Loopback(type=30) / IPv6(src="::1", dst="::1") / UDP(sport=1, dport=2)]


def ppp_packets():
    return [HDLC() / PPP(proto=0x0021) / IP(src="10.0.0.1", dst="10.0.0.2", id=1) / UDP(sport=1, dport=2),
            HDLC() / PPP(proto=0xc021) / b"\x01\x01\x00\x04",
            # no address/control, uncompressed protocol 0x0057 (IPv6)
            Raw(b"\x00\x57" + bytes(IPv6(src="fe80::1", dst="fe80::2") / UDP(sport=1, dport=2)))]


CAPTURES = {
    # name: (packets, linktype)
    "link": (link_packets, 1),
    "tunnels": (tunnel_packets, 1),
    "malformed": (malformed_packets, 1),
    "sll": (sll_packets, 113),
    "sll2": (sll2_packets, 276),
    "raw": (raw_packets, 101),
    "null": (null_packets, 0),
    "ppp": (ppp_packets, 9),
}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, (make, linktype) in CAPTURES.items():
        wrpcap(os.path.join(out, name + ".pcap"), stamp(make()), linktype=linktype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
