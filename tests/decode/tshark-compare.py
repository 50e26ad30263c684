#!/usr/bin/python3
"""Compares podcap's innermost addresses with tshark's, packet by packet.

For every packet in which tshark decodes an IP layer (outside ICMP error quotes),
the innermost IPv4/IPv6 source and destination tshark shows must be the addresses
of the innermost tuple `podcap decode` prints.  Packets where podcap knowingly
stops earlier are listed in EXPECTED below with the reason; any other difference
fails.

usage: tshark-compare.py PODCAP PCAP...          compare these files
       tshark-compare.py --gen PODCAP SRCDIR WORK  generate the crafted captures
                                                  (gen-captures.py) and compare all
Exit 0 all equal, 1 a difference, 77 no tshark or scapy (skipped).
"""
import ipaddress
import os
import re
import shutil
import subprocess
import sys

# (capture name, packet number) -> why podcap's innermost differs from tshark's.
EXPECTED = {
    # nested tunnels beyond --max-tunnel-depth 3: podcap stops at the carrier
    ("tunnels", 19): "tunnel-depth cap",
    # VXLAN-GPE header of 8 bytes with nothing behind it (4790, see golden)
    ("tunnels", 21): "empty VXLAN-GPE: tshark shows the UDP carrier, podcap a truncated inner Ethernet",
    # tshark reassembles IP fragments; podcap decode shows each fragment (frag/ does it)
    ("fragments", 2): "tshark reassembled the VXLAN carrier and shows the inner packet",
    # tshark's pseudowire guess looks up the first bytes as MAC OUIs; a control word
    # (00 00 ..) reads as Xerox's OUI, so it decodes the control word as a MAC address
    ("mpls", 7): "tshark takes the pseudowire control word for an Ethernet header",
    # the draft says a VXLAN-GPE header without the P bit carries Ethernet; tshark stops
    ("vxlan-gpe", 4): "tshark does not open VXLAN-GPE without the P bit",
    # tshark does not register Cisco MetaData as a GRE protocol
    ("wccp-cmd", 5): "tshark does not open Cisco MetaData in GRE",
    # tshark's default reads CAPWAP's 802.11 frame control swapped (Cisco); podcap
    # takes either order
    ("wlan-tunnels", 4): "tshark expects Cisco's swapped frame control in CAPWAP",
}

# Files whose packets are all expected to differ (malformed on purpose).
SKIP_FILES = {"malformed", "tunnels-malformed"}

ADDR = re.compile(r"^\[?([0-9a-fA-F:.]+?)\]?(?::\d+)?$")


def norm(a):
    return str(ipaddress.ip_address(a))


def tshark_inner(pcap):
    """packet number -> (src, dst) of tshark's innermost IP layer, or None."""
    out = subprocess.run(
        ["tshark", "-n", "-r", pcap, "-d", "udp.port==8472,vxlan", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
         "-E", "aggregator=,", "-e", "frame.number", "-e", "frame.protocols",
         "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst"],
        capture_output=True, text=True)
    res = {}
    for line in out.stdout.splitlines():
        f = line.split("\t")
        f += [""] * (6 - len(f))
        num, protos = int(f[0]), f[1].split(":")
        # ICMP errors quote an IP header: not a layer of the packet itself.
        for i, p in enumerate(protos):
            if p in ("icmp", "icmpv6"):
                protos = protos[:i]
                break
        n4 = protos.count("ip")
        n6 = protos.count("ipv6")
        last = None
        for p in protos:
            if p in ("ip", "ipv6"):
                last = p
        if last is None:
            res[num] = None
            continue
        if last == "ip":
            src, dst = f[2].split(","), f[3].split(",")
            k = n4 - 1
        else:
            src, dst = f[4].split(","), f[5].split(",")
            k = n6 - 1
        if k >= len(src) or k >= len(dst) or not src[k]:
            res[num] = None
            continue
        res[num] = (norm(src[k]), norm(dst[k]))
    return res


def podcap_inner(podcap, pcap):
    """packet number -> (src, dst) of podcap's innermost tuple, or None; and the line."""
    out = subprocess.run([podcap, "decode", pcap], capture_output=True, text=True)
    res, lines = {}, {}
    for line in out.stdout.splitlines():
        if line.startswith("summary:"):
            continue
        num = int(line.split(" ", 1)[0])
        lines[num] = line
        parts = line.split(" | ")
        tup = parts[-1]
        if len(parts) == 3 and tup.startswith("- "):
            tup = parts[0]  # inner == outer
        m = re.search(r"(\S+) -> (\S+) ", tup + " ")
        if not m:
            res[num] = None
            continue
        a, b = ADDR.match(m.group(1)), ADDR.match(m.group(2))
        try:
            res[num] = (norm(a.group(1)), norm(b.group(1))) if a and b else None
        except ValueError:
            res[num] = None
    return res, lines


def compare(podcap, pcap, quiet=False):
    name = os.path.splitext(os.path.basename(pcap))[0]
    ts = tshark_inner(pcap)
    pc, lines = podcap_inner(podcap, pcap)
    with_ip = same = 0
    bad = []
    for num, t in sorted(ts.items()):
        if t is None:
            continue
        with_ip += 1
        p = pc.get(num)
        if p == t:
            same += 1
        elif (name, num) in EXPECTED:
            pass
        else:
            bad.append((num, t, p, lines.get(num, "?")))
    return name, with_ip, same, bad


def main():
    args = sys.argv[1:]
    if not shutil.which("tshark"):
        print("SKIP: tshark not found (apt-get install tshark)")
        return 77
    if args and args[0] == "--gen":
        podcap, src, work = args[1], args[2], args[3]
        if subprocess.run(["/usr/bin/python3", "-c", "import scapy"], capture_output=True).returncode:
            print("SKIP: /usr/bin/python3 has no scapy")
            return 77
        caps = os.path.join(work, "tshark-captures")
        shutil.rmtree(caps, ignore_errors=True)
        subprocess.run(["/usr/bin/python3", os.path.join(src, "gen-captures.py"), caps], check=True)
        pcaps = sorted(os.path.join(caps, f) for f in os.listdir(caps) if f.endswith(".pcap"))
        pcaps = [p for p in pcaps if os.path.splitext(os.path.basename(p))[0] not in SKIP_FILES]
    else:
        podcap, pcaps = args[0], args[1:]
    failed = 0
    total_ip = total_same = 0
    for pcap in pcaps:
        name, with_ip, same, bad = compare(podcap, pcap)
        total_ip += with_ip
        total_same += same
        status = "ok" if not bad else "FAIL"
        print(f"{status}: {name}: tshark finds IP in {with_ip} packets, podcap's innermost "
              f"addresses equal in {same}, {len(bad)} differ unexpectedly")
        for num, t, p, line in bad[:10]:
            print(f"    packet {num}: tshark {t[0]} -> {t[1]}, podcap {p}: {line}")
        if bad:
            failed += 1
    print(f"tshark compare: {len(pcaps)} files, {total_same} of {total_ip} packets with IP "
          f"equal, {failed} files with unexpected differences")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
