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
    if row.get("measured_by") == "sweep-rescnn-sgd.json":
        if not (results / row["measured_by"]).is_file():
            return "not measured yet"
        base = next(r for r in load("sweep-rescnn-sgd", results)["rows"] if r["factor"] == "lr" and r["value"] == 0.01)
        return (f"test **{pct(base['test_accuracy'])}** (seed 0, the sweep's base point); "
                f"{base['train_seconds'] / base['epochs_run']:.0f} s per epoch on one thread")
    if row.get("test_accuracy") is None:
        return row.get("note", "not measured")
    if "best_val_accuracy" in row:
        return (f"best val **{pct(row['best_val_accuracy'])}**, test {pct(row['test_accuracy'])}; "
                f"{row['train_seconds']} s of training, {row['seconds']} s wall")
    if row["published"].startswith("test error"):
        return f"test error **{pct(1 - row['test_accuracy'])}** ({pct(row['test_accuracy'])})"
    return f"test **{pct(row['test_accuracy'])}**"


def experiment_rows(results: Path) -> list[tuple[str, str, str]]:
    """The rows of benchmarks/experiments.py: the rescnn-sgd sweep, the reduced grid, the mnist-zoo
    comparison (each only once measured)."""
    rows = []
    if (results / "sweep-rescnn-sgd.json").is_file():
        sweep = load("sweep-rescnn-sgd", results)
        lr = {r["value"]: r for r in sweep["rows"] if r["factor"] == "lr"}
        accs = [r["test_accuracy"] for r in sweep["rows"] if not r["diverged"] and r["test_accuracy"] is not None]
        verdict = "diverged" if sweep["lr_0.3_diverged"] else \
            f"did **not** diverge (test {pct(lr[0.3]['test_accuracy'])})"
        rows.append(("`digitlab sweep --protocol rescnn-sgd` (11 trainings, 2 workers)",
                     "<= 60 min; lr 0.3 diverges, epochs and momentum matter little",
                     f"**{sweep['wall_seconds'] / 60:.0f} min**; lr 0.3 {verdict}; test {pct(min(accs))}-"
                     f"{pct(max(accs))} over the other points"))
    if (results / "grid-rescnn-small.json").is_file():
        grid = load("grid-rescnn-small", results)
        chosen = ", ".join(f"{k} {v}" for k, v in grid["chosen"]["params"].items()) if grid["chosen"] else "none"
        est = grid.get("full_grid_estimate")
        cost = f"; the full 3,120-training grid: about {est['machine_hours']:.0f} machine-hours" if est else ""
        rows.append(("`digitlab sweep --protocol rescnn-grid-small` (20 cells x 3 folds)", "<= 30 min",
                     f"**{grid['wall_seconds'] / 60:.0f} min**; chosen {chosen}{cost}"))
    if (results / "compare-mnist-zoo.json").is_file():
        zoo = load("compare-mnist-zoo", results)
        above = [r for r in zoo["rows"] if r.get("published") and r["test_accuracy_mean"] is not None
                 and r["test_accuracy_mean"] > r["published"]]
        with_figure = [r for r in zoo["rows"] if r.get("published")]
        seeds = len(zoo["seeds"])
        rows.append((f"`digitlab compare --protocol mnist-zoo --seeds {seeds}`",
                     "every model above its published figure; <= 2 h",
                     f"**{zoo['wall_seconds'] / 60:.0f} min**; {len(above)} of {len(with_figure)} models above "
                     f"their published figure (table: docs/experiments.md)"))
    return rows


def federated_rows(results: Path) -> list[tuple[str, str, str]]:
    """The rows of benchmarks/federated.py (each only once measured)."""
    rows = []
    if (results / "federated-tibetan.json").is_file():
        fed = load("federated-tibetan", results)
        runs = ", ".join(f"K = {r['exchange_every']}: {'**' if r['exchange_every'] == 1000 else ''}"
                         f"{pct(r['test_accuracy'])}{'**' if r['exchange_every'] == 1000 else ''} "
                         f"({r['wall_seconds'] / 60:.0f} min)" for r in fed["runs"])
        rows.append(("`digitlab federate --preset tibetan-exchange` (2 clients, models exchanged every K of 5000 "
                     "iterations)", f"{pct(fed['published_test_accuracy'])} test with K = 1000", runs))
    if (results / "federated-fedavg-mnist.json").is_file():
        labels = {"plain": "FedAvg", "lr0.1": "client lr 0.1", "fedavgm": "server momentum 0.5", "fedprox": "FedProx"}
        paper = {"iid": 20, "shards": 229}
        parts = []
        for part in paper:
            runs = [r for r in load("federated-fedavg-mnist", results)["runs"] if r["partition"] == part]
            shown = ", ".join(f"{labels.get(r['variant'], r['variant'])} " + (
                (f"**{r['round_at_99']}**" if r["round_at_99"] <= paper[part] else str(r["round_at_99"]))
                if r["round_at_99"] else f"not in {r['rounds']}") for r in runs)
            if runs:
                parts.append(f"{'IID' if part == 'iid' else 'non-IID'}: {shown}")
        rows.append(("FedAvg paper's MNIST CNN (100 clients, C 0.1, E 5, B 10): rounds to 99%, IID / non-IID",
                     "20 / 229 (paper)", "; ".join(parts)))
    if (results / "federated-faults.json").is_file():
        faults = load("federated-faults", results)["rows"]
        attacked = ", ".join(f"{r['strategy']} {pct(r['test_accuracy'], 1)}" for r in faults
                             if r["fault"] == "1 malicious of 10")
        dropout = [r["test_accuracy"] for r in faults if r["fault"] == "20% dropout"]
        rows.append(("federated faults, 10 clients: 1 malicious (update x50); 20% dropping out",
                     "robust strategies resist", f"{attacked}; with dropouts all >= {pct(min(dropout), 1)}"))
    if (results / "federated-privacy.json").is_file():
        privacy = load("federated-privacy", results)
        dp = ", ".join(f"eps {r['epsilon']:.3g}: {pct(r['test_accuracy'], 1)}" if r["epsilon"] is not None
                       else f"no DP: {pct(r['test_accuracy'], 1)}" for r in privacy["sweep"])
        plain, secagg = privacy["overhead"][0], privacy["overhead"][1]
        dp_cost = max(r["seconds_per_round"] for r in privacy["overhead"][2:]) / plain["seconds_per_round"]
        rows.append((f"federated privacy: accuracy vs epsilon ({privacy['dp']['clients']} clients); cost per round",
                     "measured", f"{dp}; SecAgg+ {secagg['seconds_per_round'] / plain['seconds_per_round']:.2f}x "
                     f"time, {secagg['bytes_received_per_round'] / plain['bytes_received_per_round']:.2f}x bytes "
                     f"received; DP <= {dp_cost:.2f}x time"))
    return rows


def inference_rows(results: Path) -> list[tuple[str, str, str]]:
    """The rows of benchmarks/inference.py, once measured."""
    if not (results / "inference.json").is_file():
        return []
    t = load("inference", results)["targets"]
    lc, cp, tb = t["lenet_class"], t["compressed"], t.get("tibetan")
    rows = [
        (f"LeNet-class model on ONNX Runtime ({lc['model']}: {lc['macs'] / 1e6:.2f}M MACs, "
         f"{pct(lc['test_accuracy'])} MNIST test)", ">= 150,000 images/s batched; <= 30 µs p50 at batch 1",
         f"**{lc['images_per_s']:,.0f}**/s, p50 **{lc['p50_us']:.0f} µs**; {lc['vs_pytorch_eager_batched']:.1f}x "
         f"PyTorch eager batched, {lc['vs_pytorch_eager_batch1']:.1f}x at batch 1"),
        (f"most accurate MNIST model compressed ({cp['model']})", ">= 40x smaller, <= 0.1 point lost, faster",
         f"**{cp['smaller']:.1f}x** smaller ({cp['bytes']:,} bytes), {pct(cp['test_accuracy_fp32'])} -> "
         f"{pct(cp['test_accuracy'])}, {cp['speedup_onnx']:.1f}x faster batched")]
    if tb:
        rows.append(("TibetanMNIST MobileNetV3-small, energy-aware pruning (half the channels)",
                     "the published next step",
         f"test {pct(tb['test_accuracy'])} -> {pct(tb['test_accuracy_pruned'])}, {tb['macs'] / 1e6:.1f}M -> "
         f"{tb['macs_pruned'] / 1e6:.1f}M MACs, {tb['speedup_onnx']:.1f}x faster batched"))
    return rows


def serve_rows(results: Path) -> list[tuple[str, str, str]]:
    """The row of benchmarks/serve_load.py, once measured."""
    if not (results / "serve-load.json").is_file():
        return []
    r = load("serve-load", results)
    s, target = r["phases"]["steady"]["stats"]["Aggregated"], r["target"]
    held = {w: c["held"] for w, c in r["capacity"].items()}
    return [("`digitlab serve`, /v1/predict under Locust on the same machine",
             f"p99 <= {target['p99_ms']:g} ms at {target['rate']} requests/s, no errors",
             f"p99 **{s['p99_ms']:.0f} ms** (p50 {s['p50_ms']:.0f}), {s['failures']} errors at "
             f"{s['requests_per_s']:.0f}/s; "
             f"held with p99 <= {r['capacity_p99_ms']:g} ms: {held['1']}/s by 1 worker, {held['2']}/s by 2")]


def results_table(results: Path = RESULTS) -> str:
    rows = [("preset or benchmark", "published or target", "digitlab")]
    presets = load("presets", results)
    for row in presets["results"]:
        rows.append((f"`{row['preset']}`", row["published"], preset_figure(row, results)))
    rows += experiment_rows(results)
    rows += federated_rows(results)
    rows += inference_rows(results)
    rows += serve_rows(results)
    synthetic = load("read_synthetic", results)["results"]
    for variant in ("easy", "hard"):
        r = synthetic[variant]
        lines = "" if r["mean_lines"] < 1.5 else f" on {r['mean_lines']:.0f} lines"
        rows.append((f"reading synthetic {variant} strings (seed {r['seed']}, {r['n']} images, "
                     f"{r['mean_digits']:.1f} digits{lines})",
                     f"exact match >= {pct(EXACT_MATCH_TARGET[variant], 0)}",
                     f"exact match **{pct(r['exact_match'], 1)}** (ceiling {pct(r['ceiling'], 1)}), "
                     f"digit accuracy {pct(r['digit_accuracy'])}"))
    for variant, what in (("cheque", "cheque amounts"), ("cell", "register cells")):
        if f"{variant}, field reader" in synthetic:
            seg, field = synthetic[variant], synthetic[f"{variant}, field reader"]
            at = field["exact_at_rejection"]
            rows.append((f"reading synthetic {what} (seed {seg['seed']}, {seg['n']} images)",
                         "exact match >= 90%",
                         f"`--field`: **{pct(field['exact_match'], 1)}** ({pct(at['0.1'], 1)} with 10% rejected); "
                         f"page reader {pct(seg['exact_match'], 1)}"))
    if (results / "field_speed.json").is_file():
        fields = load("field_speed", results)
        torch_ms = fields["results"]["cell"].get("torch", {}).get("median_ms")
        rows.append((f"reading a {fields['size'][0]}x{fields['size'][1]} field (`--field`)", "<= 5 ms",
                     f"median **{fields['median_ms']:.1f} ms**, p95 {fields['p95_ms']:.1f} ms"
                     + (f" (PyTorch {torch_ms:.1f})" if fields["backend"] != "torch" and torch_ms else "")))
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


EXPERIMENTS_DOC = README.parent / "docs" / "experiments.md"
EXP_START, EXP_END = "<!-- experiments:start -->", "<!-- experiments:end -->"


def experiments_section(results: Path = RESULTS) -> str:
    """docs/experiments.md's results: the Markdown of each experiment benchmark, its figures shown."""
    parts = []
    compares = sorted(p.stem for p in results.glob("compare-*.json"))
    for name in ("sweep-rescnn-sgd", "grid-rescnn-small", *compares):
        if not (results / f"{name}.md").is_file():
            continue
        text = (results / f"{name}.md").read_text().replace("](figures/", "](../benchmarks/results/figures/")
        text = "\n".join("### " + line[2:] if line.startswith("# ") else line for line in text.splitlines())
        figures = load(name, results).get("figures", [])
        parts.append(text + "\n\n" + "\n".join(f"![{Path(f).stem}](../benchmarks/results/{f})" for f in figures))
    return "\n\n".join(parts) if parts else "(not measured yet)"


def with_table(readme: str, table: str, start: str = START, end: str = END) -> str:
    """readme with the text between the markers replaced by table; a ValueError if a marker is missing."""
    if readme.count(start) != 1 or readme.count(end) != 1 or readme.index(start) > readme.index(end):
        raise ValueError(f"the file needs one {start} followed by one {end}")
    head, rest = readme.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{table}\n{end}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if README.md is out of date")
    args = ap.parse_args()
    for path, make, start, end in ((README, results_table, START, END),
                                   (EXPERIMENTS_DOC, experiments_section, EXP_START, EXP_END)):
        text = path.read_text()
        updated = with_table(text, make(), start, end)
        if args.check:
            if updated != text:
                sys.exit(f"{path.name}'s results differ from benchmarks/results/*.json: "
                         "run python benchmarks/readme_tables.py")
            print(f"{path.name}'s results are up to date")
        elif updated != text:
            path.write_text(updated)
            print(f"rewrote the results in {path}")
        else:
            print(f"{path.name}'s results were already up to date")


if __name__ == "__main__":
    main()
