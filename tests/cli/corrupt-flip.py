#!/usr/bin/python3
"""Header-level byte flipper for the corruption sweep (tests/cli/corrupt-sweep.sh).

usage: corrupt-flip.py SEED IN OUT

Unlike `editcap -E`, which damages packet bytes only, this damages the framing the
readers trust: for classic pcap the file header (snaplen, link type, magic's
neighbours) and record headers (caplen, wire length, times); for pcapng the block
types, block lengths (leading and trailing), interface ids, captured and original
lengths and option headers.  Per file: 1 to 8 fields, each replaced by a random
value, an extreme one (0, 0xffffffff, 0x7fffffff, a small or a huge length) or
bit-flipped; now and then the file is also cut short at a random point.
Deterministic for a seed.  Standard library only.
"""
import random
import struct
import sys


def pcap_fields(b):
    """(offset, size) of header fields of a classic pcap."""
    if len(b) < 24:
        return []
    e = "<" if b[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out = [(4, 2), (6, 2), (16, 4), (20, 4)]
    off = 24
    while off + 16 <= len(b) and len(out) < 100000:
        out += [(off, 4), (off + 4, 4), (off + 8, 4), (off + 12, 4)]
        caplen = struct.unpack(e + "I", b[off + 8:off + 12])[0]
        off += 16 + caplen
    return out


def pcapng_fields(b):
    out = []
    off = 0
    e = "<"
    while off + 12 <= len(b) and len(out) < 100000:
        btype, blen = struct.unpack(e + "II", b[off:off + 8])
        if btype == 0x0A0D0D0A and off + 12 <= len(b):
            e = "<" if b[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack(e + "II", b[off:off + 8])
        # the first block's type is left alone: without it the file is just "not a capture"
        out += [(off, 4), (off + 4, 4)] if off else [(off + 4, 4)]
        if blen < 12 or off + blen > len(b):
            break
        out.append((off + blen - 4, 4))
        if btype == 6 and blen >= 32:      # EPB: interface id, times, caplen, len
            out += [(off + 8, 4), (off + 12, 4), (off + 20, 4), (off + 24, 4)]
            caplen = struct.unpack(e + "I", b[off + 20:off + 24])[0]
            opt = off + 28 + ((caplen + 3) & ~3)
            if opt + 4 <= off + blen - 4:
                out += [(opt, 2), (opt + 2, 2)]
        elif btype == 1 and blen >= 20:    # IDB: link type, snaplen, first option
            out += [(off + 8, 2), (off + 12, 4), (off + 16, 2), (off + 18, 2)]
        elif btype == 3 and blen >= 16:    # SPB: original length
            out.append((off + 8, 4))
        elif btype == 0x0A0D0D0A and blen >= 28:  # SHB: version, section length
            out += [(off + 12, 2), (off + 16, 8)]
        off += blen
    return out


def main():
    seed, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    rnd = random.Random(seed * 1000003 + sum(src.encode()))
    b = bytearray(open(src, "rb").read())
    fields = pcapng_fields(b) if b[:4] == b"\x0a\x0d\x0d\x0a" else pcap_fields(b)
    for _ in range(rnd.randint(1, 8) if fields else 0):
        off, size = rnd.choice(fields)
        if off + size > len(b):
            continue
        how = rnd.random()
        if how < 0.3:
            v = rnd.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1, 3, 12, 16, 65535, 65536, 262145, 0x40000])
            v &= (1 << (8 * size)) - 1
            b[off:off + size] = v.to_bytes(size, rnd.choice(["little", "big"]))
        elif how < 0.7:
            for i in range(size):
                b[off + i] = rnd.randrange(256)
        else:
            i = off + rnd.randrange(size)
            b[i] ^= 1 << rnd.randrange(8)
    if rnd.random() < 0.2 and len(b) > 24:
        del b[rnd.randrange(24, len(b)):]
    open(dst, "wb").write(bytes(b))


if __name__ == "__main__":
    main()
