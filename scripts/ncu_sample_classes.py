"""Where a kernel's warps spend their time, grouped by how often each instruction ran (Nsight Compute SASS samples).

In a kernel whose code runs per KV step, per work tile and per CTA, an instruction's execution count tells which of
these it belongs to (e.g. tiles x warps for the code at a tile's start). Summing the warp-stall samples per count
gives each level's share of the time, so a per-tile fixed cost can be read off as steps: share(tile) / share(step) x
steps per tile. Input: `ncu --import report.ncu-rep --page source --csv --print-source sass > sass.csv` (.gz too).

    python scripts/ncu_sample_classes.py sass.csv [--top 20] [--ranges 111584]
"""

from __future__ import annotations

import argparse
import collections
import csv
import gzip
import sys


def read_rows(path: str) -> list[dict[str, str]]:
    """The per-instruction rows of the report (its first line names the kernel, the second holds the columns)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        lines = list(csv.reader(f))
    header = lines[1]
    return [dict(zip(header, line)) for line in lines[2:]]


def opcode(source: str) -> str:
    words = source.split()
    return words[1] if words and words[0].startswith("@") else (words[0] if words else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--top", type=int, default=20, help="execution counts to list, by samples")
    parser.add_argument("--ranges", type=int, nargs="*", default=[],
                        help="execution counts whose contiguous instruction ranges to list, with their opcodes")
    args = parser.parse_args()
    rows = read_rows(args.csv)
    samples = [int(r["Warp Stall Sampling (All Samples)"] or 0) for r in rows]
    executed = [int(r["Instructions Executed"] or 0) for r in rows]
    total = sum(samples)
    per_count: dict[int, list[int]] = collections.defaultdict(lambda: [0, 0])
    for n, s in zip(executed, samples):
        per_count[n][0] += 1
        per_count[n][1] += s
    print(f"{len(rows)} instructions, {total} samples")
    print(f"{'executed':>10} {'instructions':>12} {'samples':>8} {'share':>6}")
    for n, (count, s) in sorted(per_count.items(), key=lambda item: -item[1][1])[:args.top]:
        print(f"{n:>10} {count:>12} {s:>8} {100 * s / total:5.1f}%")
    for wanted in args.ranges:
        print(f"\ninstructions executed {wanted} times, by contiguous range:")
        index = [i for i, n in enumerate(executed) if n == wanted]
        runs: list[list[int]] = []
        for i in index:
            if runs and i == runs[-1][-1] + 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            ops = collections.Counter(opcode(rows[i]["Source"]) for i in run)
            s = sum(samples[i] for i in run)
            top_ops = ", ".join(f"{op} {c}" for op, c in ops.most_common(6))
            print(f"  [{run[0]}, {run[-1]}] {len(run):>4} instructions {s:>7} samples  {top_ops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
