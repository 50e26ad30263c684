#!/usr/bin/python3
"""Turns the packets of pcap files into fuzz_decode inputs: 4-byte prefix (link type
index as fuzz_decode.c numbers them, configuration 0x03 = decap on, depth 3, no snaplen
cut) + the frame.  Plain pcap only (what gen-captures.py writes); no scapy needed.

usage: make-seeds.py OUTDIR PCAP...
       make-seeds.py --frag OUTDIR PCAP...   fuzz_frag inputs: each capture becomes one
                                             sequence of frames (twice: roomy and tight caps)
       make-seeds.py --capfile OUTDIR PCAP... fuzz_capfile inputs: the first 16 packets of
                                             each capture as pcap (LE, BE/ns) and as pcapng
       make-seeds.py --ring OUTDIR PCAP...   fuzz_ringrec inputs: Ethernet frames as eBPF
                                             ring records (struct pc_rec_hdr + frame)
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


def pcap_bytes(linktype, frames, e="<", magic=0xA1B2C3D4, minor=4):
    out = struct.pack(e + "IHHiIII", magic, 2, minor, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(e + "IIII", 1700000000 + i, 1000 * i, len(f), len(f) + (4 if i % 3 == 0 else 0)) + f
    return out


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def pcapng_bytes(linktype, frames):
    def block(btype, body):
        body = pad4(body)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    opt_end = struct.pack("<HH", 0, 0)
    name = b"eth0"
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + opt_end)
    idb = block(1, struct.pack("<HHI", linktype, 0, 65535) + struct.pack("<HH", 2, len(name)) + pad4(name) + opt_end)
    idb2 = block(1, struct.pack("<HHI", linktype, 0, 65535) + struct.pack("<HH", 9, 1) + pad4(b"\x09") + opt_end)
    out = shb + idb + idb2
    for i, f in enumerate(frames):
        ts = (1700000000 + i) * 1000000
        out += block(6, struct.pack("<IIIII", i % 2, ts >> 32, ts & 0xFFFFFFFF, len(f), len(f)) + pad4(f) +
                     struct.pack("<HHI", 2, 4, 1 + i % 2) + opt_end)
    return out


def write_seed(out, seed):
    with open(os.path.join(out, hashlib.sha1(seed).hexdigest()), "wb") as f:
        f.write(seed)


def capfile_seeds(out, pcaps):
    n = 0
    for path in pcaps:
        by_link = {}
        for lt, f in packets(path):
            by_link.setdefault(lt, []).append(f)
        for lt, frames in by_link.items():
            frames = [f for f in frames if len(f) <= 4096][:16]
            if not frames:
                continue
            for seed in (pcap_bytes(lt, frames), pcap_bytes(lt, frames, ">", 0xA1B23C4D),
                         pcap_bytes(lt, frames, "<", 0xA1B2C3D4, 3), pcapng_bytes(lt, frames)):
                write_seed(out, seed)
                n += 1
    print(f"make-seeds: {n} capfile seeds in {out}")


def ring_seeds(out, pcaps):
    n = 0
    for path in pcaps:
        recs = []
        for i, (lt, f) in enumerate(packets(path)):
            if lt != 1 or not f:
                continue
            f = f[:2048]
            # struct pc_rec_hdr (capture/tc_shared.h): magic, ifindex, ts_ns, caplen, wirelen, dir, flags
            rec = struct.pack("<IIQIIBBHI", 0x70637230, 1 + i % 3, 1000 * i, len(f), len(f) + 100 * (i % 2),
                              i % 2, 1, 0, 0) + f
            recs.append(struct.pack("<H", len(rec)) + rec)
            if len(recs) == 8:
                break
        if recs:
            write_seed(out, bytes([3]) + struct.pack("<q", 10 ** 18) + b"".join(recs))
            n += 1
    print(f"make-seeds: {n} ring seeds in {out}")


def main():
    if sys.argv[1] in ("--capfile", "--ring"):
        os.makedirs(sys.argv[2], exist_ok=True)
        (capfile_seeds if sys.argv[1] == "--capfile" else ring_seeds)(sys.argv[2], sys.argv[3:])
        return
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
