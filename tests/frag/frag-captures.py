#!/usr/bin/python3
"""Reassembly on crafted captures (gen-frag-captures.py): the output of frag-read for
each must equal tests/frag/golden/<name>.txt (UPDATE_GOLDEN=1 rewrites them), and for
every datagram frag completes, the innermost addresses of the rebuilt frame must be
those tshark shows for the packet that completed it (tshark reassembles IP too).

usage: frag-captures.py FRAG_READ SRCDIR WORKDIR
Exit 0 ok, 1 a difference, 77 no scapy or tshark (skipped).
"""
import difflib
import importlib.util
import os
import re
import shutil
import subprocess
import sys


def main():
    frag_read, src, work = sys.argv[1:4]
    if subprocess.run(["/usr/bin/python3", "-c", "import scapy"], capture_output=True).returncode:
        print("SKIP: /usr/bin/python3 has no scapy")
        return 77
    caps = os.path.join(work, "frag-captures")
    shutil.rmtree(caps, ignore_errors=True)
    subprocess.run(["/usr/bin/python3", os.path.join(src, "gen-frag-captures.py"), caps], check=True,
                   stderr=subprocess.DEVNULL)
    # tshark_inner() from the decode test
    spec = importlib.util.spec_from_file_location(
        "tshark_compare", os.path.join(src, "..", "decode", "tshark-compare.py"))
    tc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tc)
    have_tshark = shutil.which("tshark") is not None
    if not have_tshark:
        print("note: no tshark: the golden files only")
    failed = 0
    for name in sorted(f[:-5] for f in os.listdir(caps) if f.endswith(".pcap")):
        pcap = os.path.join(caps, name + ".pcap")
        out = subprocess.run([frag_read, pcap], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"FAIL: {name}: frag-read exited {out.returncode}: {out.stderr}")
            failed += 1
            continue
        golden = os.path.join(src, "golden", name + ".txt")
        if os.environ.get("UPDATE_GOLDEN") == "1":
            with open(golden, "w") as f:
                f.write(out.stdout)
            print(f"updated golden/{name}.txt")
        elif not os.path.exists(golden):
            print(f"FAIL: {name}: no golden/{name}.txt")
            failed += 1
        else:
            want = open(golden).read()
            if want != out.stdout:
                print(f"FAIL: {name} differs from golden/{name}.txt:")
                sys.stdout.writelines(difflib.unified_diff(
                    want.splitlines(True), out.stdout.splitlines(True), "golden", "now"))
                failed += 1
        if not have_tshark:
            continue
        ts = tc.tshark_inner(pcap)
        compared = 0
        for line in out.stdout.splitlines():
            m = re.match(r"^(\d+) complete from \S+: (.*)$", line)
            if not m:
                continue
            num, rest = int(m.group(1)), m.group(2)
            tup = rest.split(" | ")[-1]
            a = re.match(r"(\S+) -> (\S+) ", tup)
            mine = tuple(tc.norm(tc.ADDR.match(x).group(1)) for x in a.groups()) if a else None
            compared += 1
            if ts.get(num) != mine:
                print(f"FAIL: {name} packet {num}: tshark {ts.get(num)}, frag {mine}: {line}")
                failed += 1
        print(f"ok: {name}: {compared} reassembled datagrams, innermost addresses as tshark's")
    print(f"frag captures: {failed} failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
