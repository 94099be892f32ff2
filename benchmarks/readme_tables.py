"""The README's results table, generated from benchmarks/results/*.json so that it is never copied by hand.

    python benchmarks/readme_tables.py            # rewrite the table in README.md
    python benchmarks/readme_tables.py --check    # exit 1 if README.md's table is not what the JSON gives

The table sits between `<!-- results:start -->` and `<!-- results:end -->`. Each row comes from the
JSON of the benchmark that measured it; presets.json records, by hand, the preset runs that no
benchmark script repeats.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
README = RESULTS.parents[1] / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# The reading targets (the goals the reading benchmarks were built against, not measurements)
EXACT_MATCH_TARGET = {"easy": 0.97, "hard": 0.90}
PHOTO_MS_TARGET = 50.0


def load(name: str, results: Path = RESULTS) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%"


def mean_std(stat: dict, scale: float = 1.0, digits: int = 1) -> str:
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def preset_figure(row: dict, results: Path) -> str:
    """What digitlab measured for one row of presets.json, from the JSON that measured it."""
    if row.get("measured_by") == "best_accuracy.json":
        best = load("best_accuracy", results)
        seeds = [s["seed"] for s in best["seeds"]]
        each = ", ".join(f"{100 * s['test_accuracy']:.2f}" for s in best["seeds"])
        return (f"test **{mean_std(best['test_accuracy'], 100, 2)}%** over seeds {min(seeds)}-{max(seeds)} "
                f"({each}), {mean_std(best['seconds'], digits=0)} s wall each")
    if row.get("measured_by") == "time_to_accuracy.json":
        targets = load("time_to_accuracy", results)["targets"]
        key, run = next((k, t["digitlab"]) for k, t in targets.items() if t["digitlab"]["preset"] == row["preset"])
        epochs = sorted({int(s["epochs"]) for s in run["seeds"] if s["reached"]})
        text = (f"{pct(float(key), 1)} in **{mean_std(run['seconds'])} s** wall from process start, "
                f"{run['reached']}/{run['runs']} seeds")
        if len(epochs) > 1:
            text += f", at epoch {' or '.join(map(str, epochs))}" if len(epochs) == 2 else \
                f", at epochs {epochs[0]}-{epochs[-1]}"
        accs = [s["test_accuracy"] for s in run["seeds"]]
        if epochs == [1]:
            text += f" (test {100 * min(accs):.2f}-{pct(max(accs))})"
        base = targets[key].get("baseline")
        if base and targets[key].get("speedup"):
            text += f"; {targets[key]['speedup']:.1f}x pytorch/examples ({mean_std(base['seconds'])} s)"
        return text
    if row.get("test_accuracy") is None:
        return row.get("note", "not measured")
    if "best_val_accuracy" in row:
        return (f"best val **{pct(row['best_val_accuracy'])}**, test {pct(row['test_accuracy'])}; "
                f"{row['train_seconds']} s of training, {row['seconds']} s wall")
    if row["published"].startswith("test error"):
        return f"test error **{pct(1 - row['test_accuracy'])}** ({pct(row['test_accuracy'])})"
    return f"test **{pct(row['test_accuracy'])}**"


def results_table(results: Path = RESULTS) -> str:
    rows = [("preset or benchmark", "published or target", "digitlab")]
    presets = load("presets", results)
    for row in presets["results"]:
        rows.append((f"`{row['preset']}`", row["published"], preset_figure(row, results)))
    synthetic = load("read_synthetic", results)["results"]
    for variant in ("easy", "hard"):
        r = synthetic[variant]
        lines = "" if r["mean_lines"] < 1.5 else f" on {r['mean_lines']:.0f} lines"
        rows.append((f"reading synthetic {variant} strings (seed {r['seed']}, {r['n']} images, "
                     f"{r['mean_digits']:.1f} digits{lines})",
                     f"exact match >= {pct(EXACT_MATCH_TARGET[variant], 0)}",
                     f"exact match **{pct(r['exact_match'], 1)}** (ceiling {pct(r['ceiling'], 1)}), "
                     f"digit accuracy {pct(r['digit_accuracy'])}"))
    speed = load("read_speed", results)
    image = speed["image"]
    rows.append((f"reading a {image['width'] * image['height'] / 1e6:.0f} MP JPEG of {image['digits']} digits",
                 f"<= {PHOTO_MS_TARGET:.0f} ms",
                 f"median **{speed['median_ms']:.1f} ms**, p95 {speed['p95_ms']:.1f} ms"))
    envs = {(e["cpus"], e["torch"]) for e in (presets["env"], load("best_accuracy", results)["env"],
                                              load("time_to_accuracy", results)["env"], speed["env"])}
    machine = "; ".join(f"{cpus} CPU cores, torch {torch}" for cpus, torch in sorted(envs))
    out = [f"| {' | '.join(rows[0])} |", "|---|---|---|"] + [f"| {' | '.join(r)} |" for r in rows[1:]]
    out.append("")
    out.append(f"Measured on {machine}; generated by `python benchmarks/readme_tables.py` from "
               "`benchmarks/results/*.json`.")
    return "\n".join(out)


def with_table(readme: str, table: str) -> str:
    """readme with the text between the markers replaced by table; a ValueError if a marker is missing."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise ValueError(f"README.md needs one {START} followed by one {END}")
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if README.md is out of date")
    args = ap.parse_args()
    readme = README.read_text()
    updated = with_table(readme, results_table())
    if args.check:
        if updated != readme:
            sys.exit("README.md's results table differs from benchmarks/results/*.json: "
                     "run python benchmarks/readme_tables.py")
        print("README.md's results table is up to date")
    elif updated != readme:
        README.write_text(updated)
        print(f"rewrote the results table in {README}")
    else:
        print("README.md's results table was already up to date")


if __name__ == "__main__":
    main()
