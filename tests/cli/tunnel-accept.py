#!/usr/bin/python3
"""Issue 3 acceptance for tunnels: the inner flows and protocols that the newer nDPI
reader lists in ../shared/corpus/ndpi/result/<file>.out for the tunnel captures are
what `podcap read` stores (Debian's ndpiReader 4.2 sees only the outer UDP/GRE/IP).

usage: tunnel-accept.py PODCAP
Flows match on (L4, unordered endpoints; ports ignored for ICMP); protocols match when
the full name is equal or, the reader being newer (4.11 vs 4.2), the master protocol is.
Skips (77) without the corpus."""
import ipaddress, os, re, sqlite3, subprocess, sys, tempfile

FILES = ["vxlan.pcap", "4in4tunnel.pcap", "6in4tunnel.pcap", "gre.pcapng", "4in6tunnel.pcap", "6in6tunnel.pcap"]
LINE = re.compile(r'^\t\d+\t(\S+) (\[[^\]]+\]|[^ :]+):(\d+) (?:<->|->) (\[[^\]]+\]|[^ :]+):(\d+) .*?\[proto: ([^\]]+)\]')
HOST = re.compile(r'\[Hostname/SNI: ([^\]]+)\]')
L4 = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPV6", 132: "SCTP"}


def norm(a):
    # The reader writes "::2" where inet_ntop (RFC 5952) keeps a lone zero group.
    return str(ipaddress.ip_address(a.strip("[]")))


def key(l4, a, ap, b, bp):
    if l4 not in ("TCP", "UDP"):
        ap = bp = 0
    return (l4, frozenset([(norm(a), int(ap)), (norm(b), int(bp))]))


def main():
    podcap = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = os.environ.get("PODCAP_CORPUS") or os.path.join(here, "..", "..", "..", "shared", "corpus", "ndpi")
    if not os.path.isdir(os.path.join(corpus, "result")):
        print("SKIP: nDPI corpus not found at %s (set PODCAP_CORPUS)" % corpus)
        return 77
    bad = 0
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in FILES:
            pcap = os.path.join(corpus, "pcap", f)
            res = os.path.join(corpus, "result", f + ".out")
            if not os.path.exists(pcap) or not os.path.exists(res):
                print("note: %s not in the corpus" % f)
                continue
            db = os.path.join(tmp, f + ".db")
            r = subprocess.run([podcap, "read", pcap, "--db", db, "--quiet"], capture_output=True, text=True)
            if r.returncode != 0:
                print("FAIL - %s: podcap read: %s" % (f, r.stderr.strip()))
                bad += 1
                continue
            ours = {}
            con = sqlite3.connect(db)
            for ip_proto, src, sport, dst, dport, proto, host, tunnel, vni in con.execute(
                    "SELECT ip_proto, src, sport, dst, dport, coalesce(proto_name,'Unknown'), coalesce(host,''), tunnel, vni FROM flows"):
                l4 = L4.get(ip_proto, str(ip_proto))
                ours.setdefault(key(l4, src, sport, dst, dport), []).append((proto, host, tunnel, vni))
            con.close()
            for line in open(res, errors="replace"):
                m = LINE.match(line)
                if not m:
                    continue
                total += 1
                l4, a, ap, b, bp, proto = m.groups()
                want = proto.split("/")[-1]
                hm = HOST.search(line)
                want_host = hm.group(1) if hm else ""
                got = ours.get(key(l4, a, ap, b, bp))
                desc = "%s %s:%s <-> %s:%s" % (l4, a, ap, b, bp)
                if not got:
                    print("FAIL - %s: %s (%s) not stored" % (f, desc, want))
                    bad += 1
                    continue
                okp = [g for g in got if g[0] == want or g[0].split(".")[0] == want.split(".")[0]]
                if not okp:
                    print("FAIL - %s: %s: podcap %s, reader %s" % (f, desc, got[0][0], want))
                    bad += 1
                    continue
                g = okp[0]
                if want_host and not any(x[1] == want_host for x in okp):
                    print("FAIL - %s: %s: host %r, reader %r" % (f, desc, g[1], want_host))
                    bad += 1
                    continue
                print("ok - %s: %s %s%s (tunnel %s%s)" % (f, desc, g[0], " host " + g[1] if g[1] else "",
                                                       g[2], " vni %s" % g[3] if g[3] is not None else ""))
    print("tunnel acceptance: %d flows, %d passed, %d failed" % (total, total - bad, bad))
    return 1 if bad or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
