#!/usr/bin/python3
"""Minimal authoritative DNS responder for the podcap lab (cluster DNS stand-in).

Answers A queries for names under cluster.local from a zone file of
"name address" lines; everything else gets NXDOMAIN (or NOTIMP for non-queries).
Only the standard library, so it runs with Debian's /usr/bin/python3 without
dnslib.  Every query is treated as hostile: lengths are checked before each read
and label pointers are refused (queries never need them).
"""
import socket
import struct
import sys


def load_zone(path):
    zone = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                zone[parts[0].lower().rstrip(".")] = socket.inet_aton(parts[1])
    return zone


def parse_qname(msg, off):
    labels = []
    for _ in range(128):  # a name has at most 127 labels
        if off >= len(msg):
            return None, off
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels), off
        if n & 0xC0 or off + n > len(msg):
            return None, off
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return None, off


def answer(msg, zone):
    if len(msg) < 12:
        return None
    qid, flags, qd, _an, _ns, _ar = struct.unpack("!6H", msg[:12])
    if flags & 0x8000:  # a response, not a query: never answer those
        return None
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100
    if opcode != 0 or qd != 1:
        return struct.pack("!6H", qid, 0x8000 | rd | 4, 0, 0, 0, 0)  # NOTIMP
    name, off = parse_qname(msg, 12)
    if name is None or off + 4 > len(msg):
        return struct.pack("!6H", qid, 0x8000 | rd | 1, 0, 0, 0, 0)  # FORMERR
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    question = msg[12:off + 4]
    key = name.lower().rstrip(".")
    addr = zone.get(key)
    rcode = 0 if key in zone else 3
    ans = b""
    if addr is not None and qtype in (1, 255) and qclass == 1:
        ans = struct.pack("!HHHLH", 0xC00C, 1, 1, 30, 4) + addr
    hdr = struct.pack("!6H", qid, 0x8400 | rd | 0x0080 | rcode, 1, 1 if ans else 0, 0, 0)
    return hdr + question + ans


def main():
    if len(sys.argv) != 4:
        print("usage: dns-server.py BIND_ADDR PORT ZONEFILE", file=sys.stderr)
        return 2
    zone = load_zone(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(sys.argv[2])))
    while True:
        msg, peer = s.recvfrom(4096)
        try:
            resp = answer(msg, zone)
        except (ValueError, struct.error):
            resp = None
        if resp:
            s.sendto(resp, peer)


if __name__ == "__main__":
    sys.exit(main())
