#!/usr/bin/python3
"""Writes the API tests' captures (scapy): the same pod traffic as seen on a pod's
veth (veth.pcap) and VXLAN-encapsulated on the underlay (underlay.pcap), so every
connection has a record at two observation points with one Community ID.

usage: mkfixture.py OUTDIR [N_CLIENTS]

Traffic: HTTP (one Host is an HTML/script injection attempt, for the web page's
escaping test), DNS, TLS with an SNI, a TCP connection with a retransmission.
Deterministic: fixed times, addresses and ports.
"""
import sys

from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, VXLAN, Ether, Raw, wrpcap
from scapy.layers.tls.all import TLS, TLSClientHello
from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
T0 = 1732860000.0
veth, under = [], []
t = T0


def add(p):
    global t
    p.time = t
    veth.append(p)
    enc = Ether() / IP(src="172.18.0.11", dst="172.18.0.12") / UDP(sport=51000, dport=4789) / VXLAN(vni=42) / p
    enc.time = t
    under.append(enc)
    t += 0.0005


def tcp_conn(c, s, sport, dport, req, resp, retrans=False):
    seq_c, seq_s = 1000, 5000
    add(Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="S", seq=seq_c))
    add(Ether() / IP(src=s, dst=c) / TCP(sport=dport, dport=sport, flags="SA", seq=seq_s, ack=seq_c + 1))
    add(Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="A", seq=seq_c + 1, ack=seq_s + 1))
    add(Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="PA", seq=seq_c + 1, ack=seq_s + 1) / Raw(req))
    if retrans:
        add(Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="PA", seq=seq_c + 1, ack=seq_s + 1) / Raw(req))
    add(Ether() / IP(src=s, dst=c) / TCP(sport=dport, dport=sport, flags="PA", seq=seq_s + 1, ack=seq_c + 1 + len(req)) / Raw(resp))
    add(Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="FA", seq=seq_c + 1 + len(req), ack=seq_s + 1 + len(resp)))
    add(Ether() / IP(src=s, dst=c) / TCP(sport=dport, dport=sport, flags="FA", seq=seq_s + 1 + len(resp), ack=seq_c + 2 + len(req)))


for i in range(n):
    c = "10.244.1.%d" % (10 + i % 5)
    host = "web-%d.default" % i if i != 7 else "<img src=x onerror=alert(1)>"
    tcp_conn(c, "10.244.2.10", 40000 + i, 80,
             b"GET /x HTTP/1.1\r\nHost: " + host.encode() + b"\r\nUser-Agent: t\r\n\r\n",
             b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", retrans=(i % 10 == 3))
    q = "svc%d.default.svc.cluster.local" % i
    add(Ether() / IP(src=c, dst="10.244.2.53") / UDP(sport=50000 + i, dport=53) / DNS(id=i, rd=1, qd=DNSQR(qname=q)))
    add(Ether() / IP(src="10.244.2.53", dst=c) / UDP(sport=53, dport=50000 + i) /
        DNS(id=i, qr=1, qd=DNSQR(qname=q), an=DNSRR(rrname=q, rdata="10.96.0.%d" % (i % 250 + 1))))
    if i % 4 == 0:
        hello = TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=b"tls-%d.example.com" % i)])])])
        tcp_conn(c, "10.244.2.20", 45000 + i, 443, bytes(hello), b"\x15\x03\x03\x00\x02\x02\x28")

wrpcap(out + "/veth.pcap", veth)
wrpcap(out + "/underlay.pcap", under)
