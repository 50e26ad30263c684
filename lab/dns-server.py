#!/usr/bin/python3
"""Minimal authoritative DNS responder for the podcap lab (cluster DNS stand-in).

Answers A queries for names under cluster.local from a zone file of
"name address" lines (pods and Services); everything else gets NXDOMAIN (or NOTIMP
for non-queries).  Serves UDP and TCP on the same address and port, as CoreDNS
does behind the kube-dns Service (ports "dns" and "dns-tcp").
Only the standard library, so it runs with Debian's /usr/bin/python3 without
dnslib.  Every query is treated as hostile: lengths are checked before each read
and label pointers are refused (queries never need them); TCP connections are
bounded in number, in queries and in idle time.
"""
import socket
import struct
import sys
import threading

TCP_MAX_CONNS = 32       # concurrent TCP clients; more are closed at once
TCP_MAX_QUERIES = 100    # queries on one connection before it is closed
TCP_IDLE_SECONDS = 5     # a client that says nothing for this long is dropped


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


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve_tcp_conn(conn, zone, slots):
    """DNS over TCP: each message is preceded by its length in two bytes (RFC 1035
    4.2.2); the client may send several on one connection."""
    try:
        conn.settimeout(TCP_IDLE_SECONDS)
        for _ in range(TCP_MAX_QUERIES):
            hdr = recv_exact(conn, 2)
            if hdr is None:
                break
            (n,) = struct.unpack("!H", hdr)
            msg = recv_exact(conn, n) if n else b""
            if msg is None:
                break
            try:
                resp = answer(msg, zone)
            except (ValueError, struct.error):
                resp = None
            if not resp:
                break
            conn.sendall(struct.pack("!H", len(resp)) + resp)
    except OSError:
        pass
    finally:
        conn.close()
        slots.release()


def serve_tcp(addr, port, zone):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(16)
    slots = threading.BoundedSemaphore(TCP_MAX_CONNS)
    while True:
        conn, _ = ls.accept()
        if not slots.acquire(blocking=False):
            conn.close()
            continue
        threading.Thread(target=serve_tcp_conn, args=(conn, zone, slots), daemon=True).start()


def main():
    if len(sys.argv) != 4:
        print("usage: dns-server.py BIND_ADDR PORT ZONEFILE", file=sys.stderr)
        return 2
    zone = load_zone(sys.argv[3])
    addr, port = sys.argv[1], int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    # TCP in its own thread; `lab/lab up` waits until both ports listen.
    threading.Thread(target=serve_tcp, args=(addr, port, zone), daemon=True).start()
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
