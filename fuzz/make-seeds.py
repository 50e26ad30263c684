#!/usr/bin/python3
"""Turns the packets of pcap files into fuzz_decode inputs: 4-byte prefix (link type
index as fuzz_decode.c numbers them, configuration 0x03 = decap on, depth 3, no snaplen
cut) + the frame.  Plain pcap only (what gen-captures.py writes); no scapy needed.

usage: make-seeds.py OUTDIR PCAP...
       make-seeds.py --frag OUTDIR PCAP...   fuzz_frag inputs: each capture becomes one
                                             sequence of frames (twice: roomy and tight caps)
"""
import hashlib
import os
import struct
import sys

# pcap LINKTYPE -> index in fuzz_decode.c's link_types[]
LINK_INDEX = {1: 0, 0: 4, 9: 5, 12: 6, 101: 7, 104: 8, 108: 9, 113: 10, 228: 11, 229: 12, 276: 13, 192: 14,
              105: 16, 127: 17}


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        if off + caplen > len(data):
            return
        yield linktype, data[off:off + caplen]
        off += caplen


# pcap LINKTYPE -> index in fuzz_frag.c's link_types[]
FRAG_LINK_INDEX = {1: 0, 101: 2, 113: 3, 105: 4, 276: 5, 228: 6, 229: 7}


def frag_seeds(out, pcaps):
    n = 0
    for path in pcaps:
        frames = [(lt, f) for lt, f in packets(path) if lt in FRAG_LINK_INDEX]
        if not frames:
            continue
        body = b"".join(struct.pack("!HBB", len(f), 1, 0) + f for _, f in frames if len(f) < 65536)
        for config in (0x0F, 0x70):
            seed = bytes([FRAG_LINK_INDEX[frames[0][0]], config]) + body
            name = hashlib.sha1(seed).hexdigest()
            with open(os.path.join(out, name), "wb") as f:
                f.write(seed)
            n += 1
    print(f"make-seeds: {n} frag seeds in {out}")


def main():
    if sys.argv[1] == "--frag":
        os.makedirs(sys.argv[2], exist_ok=True)
        frag_seeds(sys.argv[2], sys.argv[3:])
        return
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    n = 0
    for path in sys.argv[2:]:
        for linktype, frame in packets(path):
            if linktype not in LINK_INDEX:
                continue
            seed = bytes([LINK_INDEX[linktype], 0x03, 0, 0]) + frame
            name = hashlib.sha1(seed).hexdigest()
            with open(os.path.join(out, name), "wb") as f:
                f.write(seed)
            n += 1
    print(f"make-seeds: {n} seeds in {out}")


if __name__ == "__main__":
    main()
