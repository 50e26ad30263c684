#!/usr/bin/python3
"""Hostile captures for tests/cli/hardening.sh and the caps test (stdlib only).

usage: hardening-gen.py wire OUT.pcap        a record claiming a 4 GB wire length, and two sane ones
       hardening-gen.py ctl OUT.pcap         a DNS query and an HTTP request whose host names carry
                                             ESC, BEL and a C1 control (as UTF-8)
       hardening-gen.py flows OUT.pcap N [SIZE]  N UDP flows of one SIZE-byte packet each (default
                                             200; distinct addresses and ports), one millisecond apart
"""
import struct
import sys


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, bytes(src), bytes(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def eth(payload):
    return b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02" + b"\x08\x00" + payload


def udp(src, dst, sport, dport, data):
    return eth(ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data))


def tcp(src, dst, sport, dport, seq, ack, flags, data=b""):
    return eth(ipv4(src, dst, 6, struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0) + data))


def write(path, frames):
    """frames: (frame, wirelen or None)"""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, (fr, wire) in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000 + i // 1000, (i % 1000) * 1000, len(fr),
                                len(fr) if wire is None else wire) + fr)


def dns_query(name):
    q = b"".join(bytes([len(l)]) + l for l in name.split(b".")) + b"\0"
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def main():
    kind, out = sys.argv[1], sys.argv[2]
    c, s = [10, 244, 1, 10], [10, 244, 2, 20]
    if kind == "wire":
        fr = udp(c, s, 40000, 9999, b"x" * 60)
        write(out, [(fr, None), (fr, 0xFFFFFFFF), (fr, None)])
    elif kind == "ctl":
        evil = b"ev\x1b[31mil\x07\xc2\x9b.example.com"
        host = b"web\x1b]0;owned\x07.example.com"
        frames = [(udp(c, s, 40001, 53, dns_query(evil)), None)]
        req = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nUser-Agent: t\r\n\r\n"
        frames += [(tcp(c, s, 40002, 80, 1, 0, 0x02), None), (tcp(s, c, 80, 40002, 9, 2, 0x12), None),
                   (tcp(c, s, 40002, 80, 2, 10, 0x10), None), (tcp(c, s, 40002, 80, 2, 10, 0x18, req), None),
                   (tcp(s, c, 80, 40002, 10, 2 + len(req), 0x18, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), None)]
        write(out, frames)
    elif kind == "flows":
        n = int(sys.argv[3])
        size = int(sys.argv[4]) if len(sys.argv) > 4 else 200
        frames = []
        for i in range(n):
            a = [10, 1 + (i >> 16) % 200, (i >> 8) & 255, i & 255]
            frames.append((udp(a, s, 10000 + i % 50000, 7000 + i % 1000, b"f" * max(size - 42, 0)), None))
        write(out, frames)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
