#!/usr/bin/env python3
"""Which of a running program's machine code is resident, by crate (issue 18).

Usage: resident.py PID [BINARY]

Reads /proc/PID/maps and /proc/PID/pagemap (root, or the process's owner on kernels that
allow it) and counts, for every executable page of BINARY (default: the process's
executable) that is in the process's page table, the function symbols on it (`nm -S`). A
page holding parts of several functions is split between them by bytes. Prints resident
machine code per crate (the first path segment of the demangled name; generic code counts
under the crate that defines the generic, so `tokio` includes tasks of certgate's futures)
and the share of all machine code that is resident.
"""
import bisect
import collections
import os
import re
import struct
import subprocess
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")


def exec_mappings(pid, binary):
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == binary and "x" in parts[1]:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                yield start, end, int(parts[2], 16)


def load_segments(binary):
    """(file offset, virtual address, file size) of each PT_LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True)
    segs = []
    for line in out.stdout.splitlines():
        p = line.split()
        if p and p[0] == "LOAD":
            segs.append((int(p[1], 16), int(p[2], 16), int(p[4], 16)))
    return segs


def functions(binary):
    out = subprocess.run(["nm", "-S", "-C", "--defined-only", binary], capture_output=True,
                         text=True, check=True)
    syms = []
    for line in out.stdout.splitlines():
        p = line.split(None, 3)
        if len(p) == 4 and p[2] in "tT":
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    syms.sort()
    return syms


def crate(name):
    m = re.match(r"^[<&]*(?:dyn )?([A-Za-z_][A-Za-z0-9_]*)::", name)
    return m.group(1) if m else ("C (aws-lc, libc glue)" if "::" not in name else "other")


def main():
    pid = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else os.readlink(f"/proc/{pid}/exe")
    segs = load_segments(binary)
    resident = []  # ELF virtual addresses of resident code pages
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for start, end, off in exec_mappings(pid, binary):
            for addr in range(start, end, PAGE):
                pm.seek(addr // PAGE * 8)
                (entry,) = struct.unpack("<Q", pm.read(8))
                if entry >> 63:
                    foff = addr - start + off
                    for s_off, s_vaddr, s_size in segs:
                        if s_off <= foff < s_off + s_size:
                            resident.append(foff - s_off + s_vaddr)
    syms = functions(binary)
    by_crate = collections.Counter()
    total = collections.Counter()
    for addr, size, name in syms:
        total[crate(name)] += size
    starts = [s[0] for s in syms]
    for page in resident:
        i = max(bisect.bisect_right(starts, page) - 1, 0)
        while i < len(syms) and syms[i][0] < page + PAGE:
            a, size, name = syms[i]
            overlap = min(a + size, page + PAGE) - max(a, page)
            if overlap > 0:
                by_crate[crate(name)] += overlap
            i += 1
    code = sum(total.values())
    res = sum(by_crate.values())
    print(f"resident machine code: {res / 1e6:.2f} MB of {code / 1e6:.2f} MB "
          f"({100 * res / max(code, 1):.0f}%), {len(resident)} pages")
    if resident:
        # Where in the code the resident pages are: one digit per 256 KB of the executable
        # segment, tenths resident (0-9, '*' for all of it).
        first, last = min(resident), max(resident)
        step = 256 * 1024
        buckets = collections.Counter((p - first) // step for p in resident)
        cells = []
        for b in range((last - first) // step + 1):
            share = buckets[b] * PAGE / step
            cells.append("*" if share >= 1 else str(int(share * 10)))
        print("resident by 256 KB of code, tenths: " + "".join(cells))
    print(f"{'crate':<28}{'resident MB':>12}{'of MB':>9}")
    for name, size in by_crate.most_common(20):
        print(f"{name:<28}{size / 1e6:>12.2f}{total[name] / 1e6:>9.2f}")


if __name__ == "__main__":
    main()
