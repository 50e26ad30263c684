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
                       IPv6ExtHdrRouting, Jumbo, ICMPv6EchoRequest, ICMPv6DestUnreach, Raw,
                       SCTP, SCTPChunkInit, fragment, wrpcap, PPP, HDLC, Loopback)
from scapy.layers.l2 import CookedLinux, CookedLinuxV2
from scapy.layers.vxlan import VXLAN
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.ppp import PPP as PPP_
from scapy.layers.l2 import GRE_PPTP
from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
from scapy.layers.l2 import LLC, SNAP
from scapy.contrib.mpls import MPLS
import struct

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
        # 8 bytes to 4790: a VXLAN-GPE header with nothing behind it by default,
        # a VXLAN header with --vxlan-port 4790 (golden tunnels-port4790)
        outer(UDP(sport=45006, dport=4790) / b"\x08\x00\x00\x00\x00\x00\x2a\x00"),
        # a UDP packet to another port is just UDP
        outer(UDP(sport=45006, dport=4791) / b"\x08\x00\x00\x00\x00\x00\x2a\x00"),
    ]
    return pkts


# ---- the tunnels of issue 15: headers written out byte by byte ----

def inner_udp6():
    return IPv6(src=POD6_A, dst=POD6_B, hlim=63) / UDP(sport=53000, dport=53) / b"q6"


def gtpu(teid, payload, mtype=0xFF, flags=0x30, opt=b""):
    """GTP-U v1: flags (version 1, PT 1, E S PN), type, length, TEID, [optional]."""
    body = opt + bytes(payload)
    return struct.pack("!BBHI", flags, mtype, len(body), teid) + body


def gtp_packets():
    o6 = Ether(src=MAC_A, dst=MAC_B) / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64)
    # PDU session container (TS 38.415): length 1 word: 01, type/QFI 00 09, next 00
    pdu_session = b"\x01\x00\x09\x00"
    return [
        # plain G-PDU, TEID 0x11223344, IPv4 TCP inside
        outer(UDP(sport=2152, dport=2152) / Raw(gtpu(0x11223344, inner_ip_tcp("S")))),
        # with a sequence number (S): seq 7, N-PDU 0, next extension 0
        outer(UDP(sport=2152, dport=2152) / Raw(gtpu(0x11223344, inner_ip_tcp("SA"), flags=0x32,
                                                     opt=b"\x00\x07\x00\x00"))),
        # with N-PDU number (PN) only
        outer(UDP(sport=2152, dport=2152) / Raw(gtpu(0x11223344, inner_ip_tcp("A"), flags=0x31,
                                                     opt=b"\x00\x00\x05\x00"))),
        # with an extension header chain (E): PDU session container (0x85), IPv6 inside
        outer(UDP(sport=40000, dport=2152) / Raw(gtpu(0x55667788, inner_udp6(), flags=0x34,
                                                      opt=b"\x00\x00\x00\x85" + pdu_session))),
        # two extension headers: UDP port (0x40, 1 word) then PDU session container
        outer(UDP(sport=2152, dport=2152) / Raw(gtpu(0x55667788, inner_ip_tcp("S"), flags=0x36,
                                                     opt=b"\x00\x09\x00\x40" + b"\x01\x08\x68\x85" +
                                                     pdu_session))),
        # GTP-U over IPv6
        o6 / UDP(sport=2152, dport=2152) / Raw(gtpu(0x99, inner_ip_tcp("S"))),
        # echo request (type 1, with sequence): GTP's own traffic, plain UDP
        outer(UDP(sport=2152, dport=2152) / Raw(gtpu(0, b"", mtype=1, flags=0x32, opt=b"\x00\x01\x00\x00"))),
        # end marker (type 254): no packet inside
        outer(UDP(sport=2152, dport=2152) / Raw(gtpu(0x11223344, b"", mtype=0xFE))),
        # a G-PDU carrying an Ethernet frame (a 5G Ethernet PDU session)
        outer(UDP(sport=2152, dport=2152) / Raw(gtpu(0x1234, bytes(inner_tcp("S"))))),
        # a G-PDU carrying neither IP nor Ethernet (an unstructured PDU): not-ip
        outer(UDP(sport=2152, dport=2152) / Raw(gtpu(0x1235, b"\x01\x02\x03\x04" * 8))),
        # GTP v0 G-PDU on 3386: 20-byte header, flow label 0x0042, TID
        outer(UDP(sport=3386, dport=3386) / Raw(
            struct.pack("!BBHHHB3s8s", 0x1E, 0xFF, len(inner_ip_tcp("S")), 1, 0x42, 0xFF, b"\xff" * 3,
                        b"\x21\x43\x65\x87\x09\x21\x43\xf5") + bytes(inner_ip_tcp("S")))),
        # GTP' data record transfer request (type 240), 6-byte header, a record
        outer(UDP(sport=40001, dport=3386) / Raw(struct.pack("!BBHH", 0x2F, 240, 6, 9) + b"CDR..."),),
        # GTP' echo request with the 20-byte header
        outer(UDP(sport=3386, dport=40001) / Raw(struct.pack("!BBHH", 0x0E, 1, 0, 10) + b"\xff" * 14)),
        # something else on 3386 (no GTP header that fits): plain UDP
        outer(UDP(sport=40002, dport=3386) / Raw(b"\x27\x00\x00\x02" + b"z" * 30)),
    ]


def mpls_packets():
    eth_m = Ether(src=MAC_A, dst=MAC_B, type=0x8847)
    cw = b"\x00\x00\x00\x01"  # pseudowire control word, sequence 1
    return [
        # one label, IPv4 inside
        eth_m / MPLS(label=100, s=1, ttl=64) / inner_ip_tcp("S"),
        # three labels, IPv6 inside
        eth_m / MPLS(label=16, s=0, ttl=64) / MPLS(label=17, s=0, ttl=64) / MPLS(label=18, s=1, ttl=64) /
        inner_udp6(),
        # Ethernet pseudowire with a control word
        eth_m / MPLS(label=200, s=0, ttl=64) / MPLS(label=300, s=1, ttl=64) / Raw(cw + bytes(inner_tcp("S"))),
        # Ethernet pseudowire without control word (MACs with registered OUIs, as
        # tshark's guess needs them)
        eth_m / MPLS(label=201, s=1, ttl=64) / Ether(src="00:1b:21:00:00:01", dst="00:1b:21:00:00:02") /
        inner_ip_tcp("SA"),
        # MPLS in UDP (6635)
        outer(UDP(sport=49152, dport=6635) / MPLS(label=1000, s=1, ttl=64) / inner_ip_tcp("S")),
        # MPLS over GRE, key 9
        outer(GRE(proto=0x8847, key_present=1, key=9) / MPLS(label=2000, s=1, ttl=64) / inner_ip_tcp("S")),
        # MPLS over GRE without key, two labels, pseudowire with control word
        outer(GRE(proto=0x8847) / MPLS(label=2001, s=0, ttl=64) / MPLS(label=2002, s=1, ttl=64) /
              Raw(cw + bytes(inner_tcp("A")))),
        # MPLS in IP (protocol 137)
        Ether(src=MAC_A, dst=MAC_B) / IP(src=NODE_A, dst=NODE_B, id=1, proto=137) /
        MPLS(label=3000, s=1, ttl=64) / inner_ip_tcp("S"),
        # explicit null then an associated channel (OAM: not IP)
        eth_m / MPLS(label=0, s=0, ttl=64) / MPLS(label=13, s=1, ttl=64) / Raw(b"\x10\x00\x00\x07" + b"\x00" * 16),
    ]


def gre_udp_packets():
    return [
        # GRE in UDP (RFC 8086): IPv4 inside
        outer(UDP(sport=50000, dport=4754) / GRE(proto=0x0800) / inner_ip_tcp("S")),
        # with a key, IPv6 inside
        outer(UDP(sport=50001, dport=4754) / GRE(proto=0x86DD, key_present=1, key=4242) / inner_udp6()),
        # transparent Ethernet bridging inside
        outer(UDP(sport=50002, dport=4754) / GRE(proto=0x6558) / inner_tcp("SA")),
    ]


def nsh(spi, si, np, md2=False):
    """NSH: ver 0, TTL 63, length, MD type, next protocol, SPI, SI, context."""
    if md2:
        ctx = b"\x00\x01\x02\x01\x00\x00\x00\x2a"  # one TLV: class 1, type 2, len 1 word
        length, md = 2 + len(ctx) // 4, 2
    else:
        ctx = b"\x00" * 16
        length, md = 6, 1
    return struct.pack("!BBBBI", 0x0F, 0xC0 | length, md, np, spi << 8 | si) + ctx


def gpe(vni, np, flags=0x0C):
    """VXLAN-GPE: flags (I, P), reserved, next protocol, VNI."""
    return struct.pack("!BHBI", flags, 0, np, vni << 8)


def vxlan_gpe_packets():
    return [
        outer(UDP(sport=51000, dport=4790) / Raw(gpe(10, 1) + bytes(inner_ip_tcp("S")))),
        outer(UDP(sport=51001, dport=4790) / Raw(gpe(11, 2) + bytes(inner_udp6()))),
        outer(UDP(sport=51002, dport=4790) / Raw(gpe(12, 3) + bytes(inner_tcp("SA")))),
        # without the P bit: Ethernet, as VXLAN
        outer(UDP(sport=51003, dport=4790) / Raw(gpe(13, 0, flags=0x08) + bytes(inner_tcp("A")))),
        # NSH MD type 1, SPI 0x123 SI 254, IPv4 inside
        outer(UDP(sport=51004, dport=4790) / Raw(gpe(14, 4) + nsh(0x123, 254, 1) + bytes(inner_ip_tcp("S")))),
        # NSH MD type 2 (one context TLV), Ethernet inside
        outer(UDP(sport=51005, dport=4790) / Raw(gpe(15, 4) + nsh(0x456, 200, 3, md2=True) + bytes(inner_tcp("S")))),
        # MPLS inside
        outer(UDP(sport=51006, dport=4790) / Raw(gpe(16, 5) + bytes(MPLS(label=77, s=1, ttl=9) / inner_ip_tcp("S")))),
        # NSH straight on Ethernet (0x894F) and over GRE
        Ether(src=MAC_A, dst=MAC_B, type=0x894F) / Raw(nsh(0x789, 255, 1) + bytes(inner_ip_tcp("S"))),
        outer(GRE(proto=0x894F) / Raw(nsh(0x78A, 253, 2) + bytes(inner_udp6()))),
    ]


def teredo_packets():
    client, server = "192.0.2.10", "198.51.100.1"
    e = Ether(src=MAC_A, dst=MAC_B)
    t6 = IPv6(src="2001:0:c633:6401::1", dst="2001:db8::99", hlim=64)
    origin = b"\x00\x00" + struct.pack("!H", 40000 ^ 0xFFFF) + bytes(b ^ 0xFF for b in bytes([192, 0, 2, 10]))
    auth = b"\x00\x01\x00\x00" + b"\x11" * 8 + b"\x00"  # no id, no value, nonce, confirmation
    bubble = IPv6(src="2001:0:c633:6401::1", dst="2001:0:c633:6401::2", nh=59, plen=0)
    return [
        # IPv6 in UDP, client to relay
        e / IP(src=client, dst=server) / UDP(sport=40000, dport=3544) / t6 / TCP(sport=1025, dport=80, flags="S"),
        # server to client (source port 3544) with an origin indication
        e / IP(src=server, dst=client) / UDP(sport=3544, dport=40000) / Raw(origin + bytes(t6 / UDP(sport=1, dport=2) / b"r")),
        # authentication then origin indication, then IPv6 (a router solicitation)
        e / IP(src=client, dst=server) / UDP(sport=40000, dport=3544) /
        Raw(auth + origin + bytes(IPv6(src="fe80::8000:ffff:ffff:fffd", dst="ff02::2", hlim=255) / ICMPv6EchoRequest())),
        # a bubble: IPv6 with no next header and no payload
        e / IP(src=client, dst=server) / UDP(sport=40000, dport=3544) / bubble,
        # not IPv6 after the indicators: left as UDP
        e / IP(src=client, dst=server) / UDP(sport=40000, dport=3544) / Raw(b"\x45" + b"\x00" * 10),
    ]


def ayiya(nh, payload, opcode=1):
    """AYIYA: id len 2^4 = 16 (an IPv6 address), id type 1, signature 5 words (SHA1),
    hash 2, auth 1, opcode, next header, epoch, identity, signature."""
    return (struct.pack("!BBBBI", 0x41, 0x52, 0x10 | opcode, nh, 1700000000) + b"\x20\x01" + b"\x00" * 14 +
            b"\xaa" * 20 + bytes(payload))


def ayiya_packets():
    return [
        outer(UDP(sport=5072, dport=5072) / Raw(ayiya(41, inner_udp6()))),
        outer(UDP(sport=41000, dport=5072) / Raw(ayiya(4, inner_ip_tcp("S")))),
        # heartbeat (opcode 0, next header 59): no packet
        outer(UDP(sport=5072, dport=41000) / Raw(ayiya(59, b"", opcode=0))),
    ]


def wccp_cmd_packets():
    cmd = b"\x01\x01\x00\x01\x00\x10"  # version 1, length 1, option SGT, SGT 16
    return [
        # WCCP v2: redirect header (service 0x5a), then IPv4
        outer(GRE(proto=0x883E) / Raw(b"\x00\x5a\x00\x03" + bytes(inner_ip_tcp("S")))),
        # WCCP v1: IPv4 right after GRE
        outer(GRE(proto=0x883E) / inner_ip_tcp("SA")),
        # Cisco MetaData on Ethernet, IPv4 inside
        Ether(src=MAC_A, dst=MAC_B, type=0x8909) / Raw(cmd + b"\x08\x00" + bytes(inner_ip_tcp("S"))),
        # a VLAN tag, then Cisco MetaData, then IPv6
        Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=7, type=0x8909) / Raw(cmd + b"\x86\xdd" + bytes(inner_udp6())),
        # GRE carrying Cisco MetaData
        outer(GRE(proto=0x8909) / Raw(cmd + b"\x08\x00" + bytes(inner_ip_tcp("A")))),
        # Cisco FabricPath (0x8903): FTag/TTL, then the classic frame with its VLAN tag
        Ether(src="00:50:56:00:00:01", dst="00:50:56:00:00:02", type=0x8903) /
        Raw(b"\x40\x20" + bytes(Ether(src="00:50:56:83:8e:f3", dst="00:50:56:83:5d:58") /
                                Dot1Q(vlan=7) / inner_ip_tcp("S"))),
    ]


STA, AP, GW = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def wlan_data(payload, qos=False, fc="to-DS", subtype=0, amsdu=False, snap=True):
    """An 802.11 data frame to the AP carrying LLC/SNAP (or not)."""
    d = Dot11(type=2, subtype=subtype | (8 if qos else 0), FCfield=fc, addr1=AP, addr2=STA, addr3=GW, SC=0x10)
    if qos:
        d = d / Dot11QoS(A_MSDU_Present=1 if amsdu else 0, TID=0)
    if amsdu:
        body = bytes(LLC() / SNAP(code=0x0800) / payload)
        return d / Raw(bytes.fromhex(GW.replace(":", "")) + bytes.fromhex(STA.replace(":", "")) +
                       struct.pack("!H", len(body)) + body)
    if not snap:
        return d / Raw(payload)
    return d / LLC() / SNAP(code=0x0800 if payload.name == "IP" else 0x86DD) / payload


def wlan_packets():
    """LINKTYPE_IEEE802_11 (105)."""
    return [
        wlan_data(inner_ip_tcp("S")),
        wlan_data(inner_udp6(), qos=True),
        Dot11(type=2, subtype=0, FCfield="to-DS+from-DS", addr1=AP, addr2=STA, addr3=GW, addr4=STA) /
        LLC() / SNAP(code=0x0800) / inner_ip_tcp("SA"),
        wlan_data(inner_ip_tcp("A"), qos=True, amsdu=True),
        # null function (no body), a beacon, a protected data frame: not IP
        Dot11(type=2, subtype=4, FCfield="to-DS", addr1=AP, addr2=STA, addr3=GW),
        Dot11(type=0, subtype=8, addr1="ff:ff:ff:ff:ff:ff", addr2=AP, addr3=AP) / Raw(b"\x00" * 12),
        Dot11(type=2, subtype=0, FCfield="to-DS+protected", addr1=AP, addr2=STA, addr3=GW) / Raw(b"\x00" * 40),
    ]


def radiotap_packets():
    """LINKTYPE_IEEE802_11_RADIOTAP (127)."""
    return [RadioTap(present="Flags+Rate", Flags=0, Rate=2) / wlan_data(inner_ip_tcp("S")),
            RadioTap() / wlan_data(inner_udp6(), qos=True)]


def capwap(payload, t_bit, wbid=1, flags=0):
    """CAPWAP data header: preamble 0, HLEN 2 words, RID 0, WBID, T, flags."""
    w = (2 << 19) | (wbid << 9) | (t_bit << 8) | flags
    return struct.pack("!IHH", w, 0, 0) + bytes(payload)


def swap_fc(frame):
    b = bytes(frame)
    return b[1:2] + b[0:1] + b[2:]


def wlan_tunnel_packets():
    return [
        # Aruba GRE (0x8200): 802.11 data frame, LLC/SNAP, IPv4
        outer(GRE(proto=0x8200) / wlan_data(inner_ip_tcp("S"))),
        outer(GRE(proto=0x8210) / wlan_data(inner_udp6(), qos=True)),
        # CAPWAP data: 802.11 (T bit, WBID 1) with the frame control bytes swapped as
        # Cisco sends them (and Wireshark reads them by default), then in the order
        # of the standard; an 802.3 frame; a keep-alive (K)
        outer(UDP(sport=5247, dport=45000) / Raw(capwap(swap_fc(wlan_data(inner_ip_tcp("SA"))), 1))),
        outer(UDP(sport=5247, dport=45000) / Raw(capwap(wlan_data(inner_ip_tcp("S")), 1))),
        outer(UDP(sport=45001, dport=5247) / Raw(capwap(inner_tcp("A"), 0))),
        outer(UDP(sport=45001, dport=5247) / Raw(capwap(b"", 0, flags=0x08))),
    ]


def bigtcp_packets():
    """Segmentation-offload captures longer than 64 KiB (written with a 256 KiB snaplen)."""
    e = Ether(src=MAC_A, dst=MAC_B)
    data = b"b" * 100000
    # IPv4 total length 0 (scapy computes the TCP checksum with it)
    p4 = bytearray(bytes(e / IP(src=POD_A, dst=POD_B, id=7, len=0) / TCP(sport=45228, dport=443, flags="A") / data))
    hbh = IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=8 + 20 + len(data))])
    p6 = bytearray(bytes(e / IPv6(src=POD6_A, dst=POD6_B, plen=0) / hbh / TCP(sport=45228, dport=443, flags="A") / data))
    p6[18:20] = b"\x00\x00"
    # no jumbo option: the frame's length
    p6b = bytearray(bytes(e / IPv6(src=POD6_A, dst=POD6_B, plen=0) / TCP(sport=45228, dport=443, flags="A") / data))
    return [Ether(bytes(p4)), Ether(bytes(p6)), Ether(bytes(p6b))]


def fragment_packets():
    """Fragment cases: decode shows them as they are; tests/frag reassembles them."""
    big = inner_tcp("PA", b"v" * 1400)
    vx = outer(UDP(sport=45000, dport=4789) / VXLAN(vni=42, flags=0x08) / big)
    vx[IP].id = 300
    pkts = fragment(vx, fragsize=1400)  # VXLAN fragmented on the underlay
    # an inner IPv4 datagram fragmented before it entered the tunnel
    inner = Ether(src=MAC_A, dst=MAC_B) / IP(src=POD_A, dst=POD_B, id=301, ttl=63) / UDP(sport=5000, dport=5001) / (b"i" * 2000)
    for f in fragment(inner, fragsize=1000):
        pkts.append(outer(UDP(sport=45001, dport=4789) / VXLAN(vni=42, flags=0x08) / f))
    # IPv6 fragments of a UDP datagram, in reverse order
    o6 = Ether(src=MAC_A, dst=MAC_B) / IPv6(src=POD6_A, dst=POD6_B, hlim=64)
    payload = bytes(UDP(sport=6000, dport=6001, len=8 + 1500) / (b"6" * 1500))
    f1 = o6 / IPv6ExtHdrFragment(id=0x1234, offset=0, m=1, nh=17) / Raw(payload[:1000])
    f2 = o6 / IPv6ExtHdrFragment(id=0x1234, offset=125, m=0, nh=17) / Raw(payload[1000:])
    pkts += [f2, f1]
    return pkts


def cut(pkt, n):
    """pkt as a capture with snaplen n keeps it: n bytes captured, the rest on the wire."""
    b = bytes(pkt)
    p = Ether(b[:n])
    p.wirelen = len(b)
    return p


def tunnel_malformed_packets():
    """One packet per way each new tunnel header can be cut short or lie."""
    u = lambda dport, data, sport=40000: outer(UDP(sport=sport, dport=dport) / Raw(data))
    ip = bytes(inner_ip_tcp("S"))
    eth_m = Ether(src=MAC_A, dst=MAC_B, type=0x8847)
    layer_bomb = b"".join(nsh(1, 1, 3) + bytes(Ether(src=MAC_A, dst=MAC_B, type=0x894F)) for _ in range(40))
    return [
        u(2152, b"\x30\xff\x00"),                                        # truncated-gtp
        u(2152, b"\x50\xff\x00\x00\x00\x00\x00\x01"),                    # gtp-version (v2)
        u(2152, b"\x30\xff\x01\x00\x00\x00\x00\x01" + ip),               # gtp-len (256 > datagram)
        u(2152, gtpu(1, ip, flags=0x34, opt=b"\x00\x00\x00\x85\x00\x00\x00\x00")),  # gtp-ext (length 0)
        eth_m / Raw(b"\x00\x06\x40"),                                      # truncated-mpls
        eth_m / Raw(b"\x00\x06\x00\x40" * 9 + ip),                          # mpls-depth (9 labels)
        u(4790, b"\x0c\x00\x00"),                                        # truncated-vxlan-gpe
        u(4790, b"\x2c\x00\x00\x01\x00\x00\x0a\x00" + ip),               # vxlan-gpe-flags (version 2)
        u(4790, gpe(1, 4) + b"\x0f\xc6\x01"),                             # truncated-nsh
        u(4790, gpe(1, 4) + b"\x4f" + nsh(1, 1, 1)[1:] + ip),              # nsh-version
        u(4790, gpe(1, 4) + b"\x0f\xc5" + nsh(1, 1, 1)[2:] + ip),          # nsh-len (MD1 with 5 words)
        u(3544, b"\x00\x01\x00\x00" + b"\x11" * 3),                       # truncated-teredo
        u(5072, b"\x41\x52\x11\x29\x00\x00\x00\x00" + b"\x00" * 10),      # truncated-ayiya
        outer(GRE(proto=0x883E) / Raw(b"\x00\x5a")),                       # truncated-wccp
        Ether(src=MAC_A, dst=MAC_B, type=0x8909) / Raw(b"\x01\x01\x00"),     # truncated-cmd
        outer(GRE(proto=0x8200) / Raw(b"\x08\x01\x00\x00" + b"\x02" * 10)),  # truncated-wlan
        cut(u(5247, capwap(inner_tcp("S"), 0)), 14 + 20 + 8 + 4),          # truncated-capwap (snaplen)
        u(5247, b"\x00\x08\x01\x00\x00\x00\x00\x00" + ip),               # capwap-hlen (1 word)
        Ether(bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6(src=POD6_A, dst=POD6_B, plen=0) /
                    IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=1000)]) / TCP(sport=1, dport=2))),  # bad-ipv6-jumbo
        Ether(src=MAC_A, dst=MAC_B, type=0x894F) / Raw(layer_bomb),         # layer-depth
    ]


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
            Raw(b"\x00\x57" + bytes(IPv6(src="fe80::1", dst="fe80::2") / UDP(sport=1, dport=2))),
            # Cisco HDLC framing in a PPP capture (address 0x0f, control 0, ethertype)
            Raw(b"\x0f\x00\x08\x00" + bytes(IP(src="100.16.1.2", dst="100.16.1.1", id=1) /
                                          TCP(sport=179, dport=11000, flags="S")))]


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
    "gtp": (gtp_packets, 1),
    "mpls": (mpls_packets, 1),
    "gre-udp": (gre_udp_packets, 1),
    "vxlan-gpe": (vxlan_gpe_packets, 1),
    "teredo": (teredo_packets, 1),
    "ayiya": (ayiya_packets, 1),
    "wccp-cmd": (wccp_cmd_packets, 1),
    "wlan": (wlan_packets, 105),
    "radiotap": (radiotap_packets, 127),
    "wlan-tunnels": (wlan_tunnel_packets, 1),
    "bigtcp": (bigtcp_packets, 1),
    "fragments": (fragment_packets, 1),
    "tunnels-malformed": (tunnel_malformed_packets, 1),
}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, (make, linktype) in CAPTURES.items():
        # 256 KiB snaplen: the BIG TCP frames are longer than 64 KiB
        wrpcap(os.path.join(out, name + ".pcap"), stamp(make()), linktype=linktype, snaplen=262144)
    return 0


if __name__ == "__main__":
    sys.exit(main())
