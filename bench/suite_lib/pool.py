"""Pool the A/B throughput pairs of several full runs into one table.

    cd bench && python3 -m suite_lib.pool [--last-only DIR,..] RESULTS_DIR...

One run has 3 interleaved pairs per configuration, and this machine flips
between two placements from one run to the next: the median of 3 per-pair
ratios moves by 20-40% between runs of the same code. Pooling the pairs of
runs made on the same code narrows that. --last-only names directions
(fe2be, be2fe, bidir, loop) whose code changed between the runs: only the
last run counts for them.
"""
import argparse
import json
import os
import statistics

from .report import pair_of

ORDER = {"fe2be": 0, "be2fe": 1, "bidir": 2, "loop": 3}


def pool(dirs, last_only=()):
    rows = {}
    for k, d in enumerate(dirs):
        with open(os.path.join(d, "results.json")) as f:
            results = json.load(f)["results"]
        for r in results:
            if r.get("test") != "tput" or r.get("phase") != "tput" or r.get("path") not in ("A", "B"):
                continue
            if r["dir"] in last_only and k != len(dirs) - 1:
                continue
            rows.setdefault((r["dir"], r["size"]), {}).setdefault((k, pair_of(r)), {})[r["path"]] = r.get("mpps")
    out = ["| direction | frame B | pairs | A/B median (min-max) | A Mpps median | B Mpps median |",
           "|---|---|---|---|---|---|"]
    for key in sorted(rows, key=lambda x: (ORDER.get(x[0], 9), x[1])):
        pairs = [v for v in rows[key].values() if v.get("A") and v.get("B")]
        if not pairs:
            continue
        rs = [v["A"] / v["B"] for v in pairs]
        a = statistics.median(v["A"] for v in pairs)
        b = statistics.median(v["B"] for v in pairs)
        out.append(f"| {key[0]} | {key[1]} | {len(rs)} | {statistics.median(rs):.2f} "
                   f"({min(rs):.2f}-{max(rs):.2f}) | {a:.2f} | {b:.2f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="results directories of full runs, oldest first")
    ap.add_argument("--last-only", default="", help="directions counted from the last run only")
    a = ap.parse_args()
    print(pool(a.dirs, tuple(x for x in a.last_only.split(",") if x)))


if __name__ == "__main__":
    main()
