"""Markdown tables of the fallback rows of benchmarks/fusion_fallback_results.json (written
by benchmarks/fusion.py --missing fallback): per seed and the mean over seeds, fusion, each
device alone, each device without the other (its fallback model, and the same fused model on
zeros), accuracy / macro-F1 % and the differences to the devices alone.

    python benchmarks/fusion_fallback_tables.py [FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

R10 = ("intermediate, dropout 0.75, aux 1 aux_skip_missing True branch 32 head_from features "
       "head_hidden 64-32 hidden 64, fallback, watch raw")
SETUPS = {"R10 sensors (phone spectral, watch raw), R10's fused model": (R10, "phone",
                                                                        "watch, watch raw"),
          "the example's default (both spectral, early fusion, dropout 0.25)": (
              "fusion, fallback", "phone", "watch"),
          "the example's sensors and model without sensor dropout (early fusion, dropout 0)": (
              "fusion, dropout 0, fallback", "phone", "watch")}


def seeded(name: str, seed: int) -> str:
    return name if not seed else f"{name}, seed {seed}"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else \
        Path(__file__).with_name("fusion_fallback_results.json")
    d = json.loads(path.read_text())
    for title, (fz, phone, watch) in SETUPS.items():
        seeds = [s for s in (0, 1, 2) if seeded(fz, s) in d]
        if not seeds:
            continue
        print(f"\n{title}: accuracy / macro-F1 %, mean of 4 person-disjoint folds\n")
        cols = ["fusion", "phone alone", "watch alone",
                "watch-less: phone's fallback", "watch-less: fused on zeros",
                "phone-less: watch's fallback", "phone-less: fused on zeros"]
        print("| seed | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        acc: dict[str, list] = {c: [] for c in cols}
        for s in seeds:
            rows = {"fusion": d[seeded(fz, s)],
                    "phone alone": d[seeded(phone, s)], "watch alone": d[seeded(watch, s)],
                    "watch-less: phone's fallback": d[seeded(fz, s) + ", watch missing"],
                    "watch-less: fused on zeros": d[seeded(fz, s) +
                                                    ", watch missing, fused head on zeros"],
                    "phone-less: watch's fallback": d[seeded(fz, s) + ", phone missing"],
                    "phone-less: fused on zeros": d[seeded(fz, s) +
                                                    ", phone missing, fused head on zeros"]}
            for c in cols:
                acc[c].append((rows[c]["accuracy_mean"], rows[c]["macro_f1_mean"]))
            print(f"| {s} | " + " | ".join(f"{rows[c]['accuracy_mean']:.2f} / "
                                          f"{rows[c]['macro_f1_mean']:.2f}" for c in cols) + " |")
        mean = {c: (sum(a for a, _ in v) / len(v), sum(f for _, f in v) / len(v))
                for c, v in acc.items()}
        print(f"| mean | " + " | ".join(f"**{mean[c][0]:.2f} / {mean[c][1]:.2f}**"
                                        for c in cols) + " |")
        print("\ndifferences (points, accuracy / macro-F1)\n")
        diffs = [("fusion - watch alone", "fusion", "watch alone"),
                 ("watch-less (fallback) - phone alone", "watch-less: phone's fallback",
                  "phone alone"),
                 ("watch-less (fused on zeros) - phone alone", "watch-less: fused on zeros",
                  "phone alone"),
                 ("phone-less (fallback) - watch alone", "phone-less: watch's fallback",
                  "watch alone"),
                 ("phone-less (fused on zeros) - watch alone", "phone-less: fused on zeros",
                  "watch alone")]
        print("| figure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
        print("|---" * (len(seeds) + 2) + "|")
        for name, a, b in diffs:
            per = [(x[0] - y[0], x[1] - y[1]) for x, y in zip(acc[a], acc[b])]
            m = (mean[a][0] - mean[b][0], mean[a][1] - mean[b][1])
            print(f"| {name} | " + " | ".join(f"{p[0]:+.2f} / {p[1]:+.2f}" for p in per)
                  + f" | **{m[0]:+.2f} / {m[1]:+.2f}** |")
        c = d[seeded(fz, seeds[0])]
        print(f"\ncost (nano33ble, the deployed pipeline with DSP): flash {c['flash_bytes']:,} B, "
              f"RAM {c['ram_bytes']:,} B, arena {c['arena_bytes']:,} B, "
              f"{c['latency_ms']:.2f} ms per window")


if __name__ == "__main__":
    main()
