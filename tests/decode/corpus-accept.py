#!/usr/bin/python3
"""Corpus acceptance: on the nDPI test captures that carry tunnels, every flow that
nDPI's own result file lists (its inner tuples, after its decapsulation) must be
among the inner tuples `podcap decode` prints.

usage: corpus-accept.py PODCAP CORPUSDIR   (skips, exit 77, when CORPUSDIR is absent)
"""
import ipaddress
import os
import re
import subprocess
import sys

FILES = ["vxlan.pcap", "4in4tunnel.pcap", "6in4tunnel.pcap", "gre.pcapng",
         "4in6tunnel.pcap", "6in6tunnel.pcap"]

# nDPI result flow line: "\t1\tTCP 10.0.0.1:80 <-> 10.0.0.2:443 [..." or with "->";
# IPv6 addresses in brackets.
NDPI_FLOW = re.compile(r"^\s+\d+\s+(TCP|UDP|ICMP|ICMPV6)\s+(\S+)\s+<?->\s+(\S+)\s")
# podcap decode line: "... | INNER" or, untunnelled, the outer; tuple "A[:p] -> B[:q] PROTO"
ENDPOINT = re.compile(r"^\[?([0-9a-fA-F:.]+?)\]?(?::(\d+))?$")


def endpoint(s):
    m = ENDPOINT.match(s)
    if not m:
        raise ValueError(s)
    return str(ipaddress.ip_address(m.group(1))), int(m.group(2) or 0)


def key(proto, a, b):
    proto = proto.upper()
    if proto.startswith("ICMP"):  # nDPI shows port 0; podcap shows type/code instead
        a, b = (a[0], 0), (b[0], 0)
    return (proto, frozenset([a, b]))


def ndpi_flows(path):
    flows = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = NDPI_FLOW.match(line)
            if m:
                flows.add(key(m.group(1), endpoint(m.group(2)), endpoint(m.group(3))))
    return flows


def podcap_flows(podcap, pcap):
    out = subprocess.run([podcap, "decode", pcap], capture_output=True, text=True)
    if out.returncode > 1 or out.returncode < 0:
        raise RuntimeError(f"podcap decode {pcap} exited {out.returncode}: {out.stderr}")
    flows = set()
    for line in out.stdout.splitlines():
        if line.startswith("summary:"):
            continue
        tup = line.split(" | ")[-1]
        m = re.match(r"^(?:\d+ \d+/\d+ (?:vlan \S+ )?(?:mpls \S+ )?(?:nsh spi \d+ si \d+ )?)?(\S+) -> (\S+) (\S+)", tup)
        if not m:
            continue
        flows.add(key(m.group(3), endpoint(m.group(1)), endpoint(m.group(2))))
    return flows


def main():
    podcap, corpus = sys.argv[1], os.environ.get("PODCAP_CORPUS") or sys.argv[2]
    if not os.path.isdir(os.path.join(corpus, "pcap")):
        print(f"SKIP: nDPI corpus not found at {corpus} (set PODCAP_CORPUS)")
        return 77
    passed = failed = 0
    for name in FILES:
        pcap = os.path.join(corpus, "pcap", name)
        result = os.path.join(corpus, "result", name + ".out")
        if not os.path.exists(pcap) or not os.path.exists(result):
            print(f"note: {name} not in this corpus")
            continue
        want = ndpi_flows(result)
        have = podcap_flows(podcap, pcap)
        missing = want - have
        if not want:
            print(f"FAIL: {name}: no flow lines parsed from {result}")
            failed += 1
        elif missing:
            print(f"FAIL: {name}: {len(missing)} of {len(want)} nDPI flows not among podcap's inner tuples:")
            for m in sorted(missing, key=str):
                print("   ", m)
            failed += 1
        else:
            print(f"ok: {name}: all {len(want)} nDPI flows found")
            passed += 1
    print(f"decode corpus acceptance: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
