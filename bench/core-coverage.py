#!/usr/bin/env python3
"""The protocol core's line coverage, from an lcov file on standard input.

Prints "covered count percent covered' count' percent'": first over every
instrumented line of impl/src/core, then (primed) without the lines of
`impl fmt::Debug` and `impl fmt::Display` blocks, which only format states
for traces and logs and which the checker calls only when it prints one.

With --files, prints one row per file instead, and its unreached lines.
"""

import re
import sys

FMT_IMPL = re.compile(r"^\s*impl\b.*\b(fmt::)?(Debug|Display) for\b")


def fmt_lines(path):
    """The line numbers (1-based) inside formatting impl blocks of `path`."""
    lines = open(path, encoding="utf-8").read().splitlines()
    inside = set()
    i = 0
    while i < len(lines):
        if FMT_IMPL.match(lines[i]):
            depth = 0
            start = i
            while i < len(lines):
                depth += lines[i].count("{") - lines[i].count("}")
                if depth == 0 and "{" in "".join(lines[start : i + 1]):
                    break
                i += 1
            inside.update(range(start + 1, i + 2))
        i += 1
    return inside


def parse(lcov):
    files = {}
    current = None
    for line in lcov:
        line = line.strip()
        if line.startswith("SF:"):
            current = line[3:]
            files[current] = {}
        elif line.startswith("DA:") and current is not None:
            number, count = line[3:].split(",")[:2]
            files[current][int(number)] = int(count)
    return {path: hits for path, hits in files.items() if "/impl/src/core/" in path}


def ranges(numbers):
    out = []
    for n in sorted(numbers):
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def main():
    files = parse(sys.stdin)
    totals = [0, 0, 0, 0]
    rows = []
    for path in sorted(files):
        hits = files[path]
        skip = fmt_lines(path)
        covered = sum(1 for c in hits.values() if c > 0)
        kept = {n: c for n, c in hits.items() if n not in skip}
        covered_kept = sum(1 for c in kept.values() if c > 0)
        totals[0] += covered
        totals[1] += len(hits)
        totals[2] += covered_kept
        totals[3] += len(kept)
        missed = [n for n, c in kept.items() if c == 0]
        name = path[path.index("impl/src/core/") :]
        rows.append((name, covered_kept, len(kept), missed))
    if "--files" in sys.argv:
        print(f"{'file (formatting impls left out)':<34} {'lines':>9} {'covered':>8}  unreached lines")
        for name, covered, count, missed in rows:
            percent = 100.0 * covered / count if count else 100.0
            print(f"{name:<34} {covered:>4}/{count:<4} {percent:>7.1f}%  {ranges(missed)}")
        return
    c, n, ck, nk = totals
    print(f"{c} {n} {100.0 * c / n:.1f} {ck} {nk} {100.0 * ck / nk:.1f}")


if __name__ == "__main__":
    main()
