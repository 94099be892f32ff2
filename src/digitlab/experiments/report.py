"""One self-contained HTML page for any experiment folder: a training run, cv, sweep, grid, search or
comparison. Figures are embedded as base64 data URIs and the style is inline, so the file can be mailed
or archived alone; it has no scripts and no links. Every text is escaped.

The kind is told by the JSON file the folder holds (cv.json, sweep.json, grid.json, search.json,
compare.json), else summary.json for a training run."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from digitlab.atomic import write_text
from digitlab.errors import ConfigError
from digitlab.experiments.cv import history
from digitlab.experiments.tables import cell

KINDS = ("cv", "sweep", "grid", "search", "compare")  # experiment JSONs, looked for in this order
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.diverged td { color: #a00; } tr.chosen td { background: #eef7ee; font-weight: 600; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #666; font-size: 12px; }
.note { color: #555; } .missing { color: #a00; }
"""


def write_report(folder: str | Path, out_html: str | Path | None = None) -> Path:
    """Write the report of `folder` to out_html (default folder/report.html) and return its path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    kind, data = detect(folder)
    title, body = RENDER[kind](folder, data)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{esc(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>\n"
            f"<p class=\"meta\">{esc(kind)} report of {esc(folder.resolve())}, written "
            f"{datetime.now():%Y-%m-%d %H:%M}</p>\n{body}\n</body>\n</html>\n")
    out = Path(out_html) if out_html else folder / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, page)
    return out


def detect(folder: Path) -> tuple[str, dict[str, Any]]:
    """(kind, its JSON's content) of an experiment folder."""
    for kind in (*KINDS, "run"):
        path = folder / ("summary.json" if kind == "run" else f"{kind}.json")
        if path.is_file():
            try:
                return kind, json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    raise ConfigError(f"{folder} is no experiment folder: it holds none of "
                      f"{', '.join(f'{k}.json' for k in KINDS)} or summary.json (a training run)")


# ---- building blocks


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A value as table text: floats to `digits` decimals, ints with thousands separators."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v, digits)}" for k, v in value.items())
    return cell(value, digits)  # None, yes/no, floats: as the Markdown tables write them


def pm(mean: float | None, std: float | None) -> str:
    return "" if mean is None else f"{mean:.4f} ± {std or 0.0:.4f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] = ()) -> str:
    """An HTML table; numbers right-aligned; classes[i] marks row i (e.g. "diverged")."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(rows):
        cls = f' class="{esc(classes[i])}"' if i < len(classes) and classes[i] else ""
        cells = "".join(f'<td class="num">{esc(fmt(v))}</td>' if isinstance(v, (int, float)) and not isinstance(
            v, bool) else f"<td>{esc(fmt(v))}</td>" for v in row)
        lines.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(lines) + "\n</table>"


def keyvalue(items: dict[str, Any]) -> str:
    return table(("setting", "value"), [(k, fmt(v)) for k, v in items.items()])


def figure(path: Path, caption: str = "") -> str:
    """The PNG at path as an embedded image, or a line saying it is missing."""
    if not path.is_file():
        return f"<p class=\"missing\">no {esc(path.name)} in the folder</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{esc(path.name)}\">"
            f"<figcaption>{esc(caption or path.name)}</figcaption></figure>")


def section(heading: str, *parts: str) -> str:
    return f"<h2>{esc(heading)}</h2>\n" + "\n".join(p for p in parts if p)


def para(text: str, cls: str = "note") -> str:
    return f"<p class=\"{cls}\">{esc(text)}</p>"


def names(config: dict[str, Any] | None) -> str:
    config = config or {}
    return f"{config.get('model', '?')} on {config.get('dataset', '?')}"


# ---- one renderer per kind: (folder, its JSON) -> (title, body)


def render_run(folder: Path, s: dict[str, Any]) -> tuple[str, str]:
    config = s.get("config")
    if config is None and (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
    figures = {
        "model": s.get("model"), "dataset": s.get("dataset"), "epochs trained": s.get("epochs"),
        "best epoch": s.get("best_epoch"), "best val accuracy": s.get("best_val_accuracy"),
        "test accuracy": s.get("test_accuracy"), "test loss": s.get("test_loss"),
        "temperature": s.get("temperature"), "test ECE": s.get("test_ece"),
        "test ECE, calibrated": s.get("test_ece_calibrated"), "train seconds": s.get("train_seconds"),
        "diverged": s.get("diverged"), "diverged because": s.get("diverged_reason"),
        "stopped at target": s.get("stopped_at_target"),
        **{f"{k} images": v for k, v in (s.get("sizes") or {}).items()},
    }
    parts = [section("Summary", keyvalue({k: v for k, v in figures.items() if v is not None}))]
    rows = history(folder)
    if rows:
        columns = list(rows[0])
        parts.append(section("Epochs", table(columns, [[r[c] for c in columns] for r in rows]),
                             figure(folder / "curves.png", "loss and accuracy per epoch")))
    per_class = s.get("per_class_accuracy")
    if per_class:
        parts.append(section("Per-class test accuracy", table(("class", "accuracy"), list(per_class.items())),
                             figure(folder / "confusion.png", "confusion matrix of the test set"),
                             table(("true", "predicted", "count"), [(d["true"], d["predicted"], d["count"])
                                                                    for d in s.get("most_confused") or []])))
    if config:
        parts.append(section("Configuration", keyvalue(config)))
    return f"Training run: {s.get('model')} on {s.get('dataset')}", "\n".join(parts)


def render_cv(folder: Path, r: dict[str, Any]) -> tuple[str, str]:
    columns = ("fold", "dir", "diverged", "epochs", *METRICS, "best_val_accuracy", "test_accuracy", "train_seconds")
    rows = [[row.get(c) + 1 if c == "fold" else row.get(c) for c in columns] for row in r["rows"]]
    mean, std = r.get("mean", {}), r.get("std", {})
    stats = [["mean ± std", "", r.get("diverged"), "", *(pm(mean.get(m), std.get(m)) for m in columns[4:])]]
    k, diverged = r.get("folds", len(rows)), r.get("diverged", 0)
    text = (f"{k} folds; mean and sample std over the {k - diverged} that did not diverge; {diverged} diverged.")
    body = [section("Folds", para(text), table(columns, rows + stats,
                                               ["diverged" if row["diverged"] else "" for row in r["rows"]])),
            section("Validation per epoch", figure(folder / "cv.png", "validation loss and accuracy, one line "
                                                                       "per fold (dashed: diverged)")),
            section("Base configuration", keyvalue(r.get("config") or {}))]
    return f"{k}-fold cross-validation: {names(r.get('config'))}", "\n".join(body)


def render_sweep(folder: Path, r: dict[str, Any]) -> tuple[str, str]:
    parts = [para(f"One factor varied at a time, the others at the base values; {r.get('folds') or 'no'} folds "
                  f"per point. Final: the last epoch; best: the best epoch of each metric.")]
    for factor, points in r["factors"].items():
        columns = ("value", "state", "diverged", *(f"final {m}" for m in METRICS), *(f"best {m}" for m in METRICS),
                   "test_accuracy")
        rows = [[p.get("value"), p.get("state"), p.get("diverged"), *((p.get("final") or {}).get(m) for m in METRICS),
                 *((p.get("best") or {}).get(m) for m in METRICS), p.get("test_accuracy")] for p in points]
        parts.append(section(f"Factor {factor}", table(columns, rows, ["diverged" if p.get("diverged") else ""
                                                                       for p in points]),
                             figure(folder / f"sweep-{factor}.png", f"each {factor} value's train (solid) and val "
                                                                     f"(dashed) curves")))
    parts.append(section("Base configuration", keyvalue(r.get("config") or {})))
    name = f" {r['name']}" if r.get("name") else ""
    return f"Sensitivity sweep{name}: {names(r.get('config'))}", "\n".join(parts)


def render_grid(folder: Path, r: dict[str, Any]) -> tuple[str, str]:
    axes = list(r.get("axes") or {})
    columns = (*axes, "state", "mean_train_loss", "mean_val_loss", "std_val_loss", "mean_val_accuracy", "diverged")
    chosen = (r.get("chosen") or {}).get("params")
    rows = [[c["params"].get(a) for a in axes] + [c.get(k) for k in columns[len(axes):]] for c in r["cells"]]
    classes = ["chosen" if chosen and c["params"] == chosen else "diverged" if c.get("diverged") else ""
               for c in r["cells"]]
    chosen_text = ", ".join(f"{k}={v}" for k, v in chosen.items()) if chosen else "none"
    parts = [section("Chosen cell", para(f"chosen: {chosen_text}", "chosen"), para(r.get("why") or "")),
             section("Heat map", figure(folder / "grid.png", "mean validation loss per cell (x: a fold diverged; "
                                                              "framed: chosen)")),
             section("Cells", para(f"{len(rows)} cells, each scored by its mean validation loss over "
                                   f"{r.get('folds') or 1} {'folds' if r.get('folds') else 'run'}; diverged: the "
                                   f"number of folds that diverged."), table(columns, rows, classes)),
             section("Base configuration", keyvalue(r.get("config") or {}))]
    name = f" {r['name']}" if r.get("name") else ""
    return f"Grid{name}: {names(r.get('config'))}", "\n".join(parts)


def render_search(folder: Path, r: dict[str, Any]) -> tuple[str, str]:
    metric = r.get("metric", "value")
    best = r.get("best")
    space = list(r.get("space") or {})
    if best:
        best_part = keyvalue({"trial": best.get("number"), metric: best.get("value"), **(best.get("params") or {})})
    else:
        best_part = para("no trial has completed yet")
    columns = ("trial", "state", metric, *space, "epochs", "test_accuracy")
    trials = r.get("trials") or []
    rows = [[t.get("number"), t.get("state"), t.get("value"), *((t.get("params") or {}).get(p) for p in space),
             t.get("epochs"), t.get("test_accuracy")] for t in trials]
    classes = ["chosen" if best and t.get("number") == best.get("number") else
               "diverged" if t.get("diverged") else "" for t in trials]
    parts = [section("Best trial", best_part),
             section("Optuna plots", figure(folder / "history.png", "optimisation history"),
                     figure(folder / "importances.png", "parameter importances"),
                     figure(folder / "parallel.png", "parallel coordinates")),
             section("Trials", para(f"{r.get('direction', '')} {metric}; {len(trials)} trials"),
                     table(columns, rows, classes)),
             section("Search space", keyvalue(r.get("space") or {})),
             section("Base configuration", keyvalue(r.get("config") or {}))]
    return f"Search {r.get('study', '')}: {names(r.get('config'))}", "\n".join(parts)


def render_compare(folder: Path, r: dict[str, Any]) -> tuple[str, str]:
    from digitlab.experiments.compare import display_rows, title

    cells = display_rows(r)
    classes = ["diverged" if row.get("diverged") else "" for row in r["rows"]]
    sources = [f"{row['model']}: {row['published']:.2%}, {row.get('published_source') or ''}"
               for row in r["rows"] if row.get("published") is not None]
    runs = [[row["model"], p.get("seed"), None if p.get("fold") is None else p["fold"] + 1, p.get("dir"),
             p.get("diverged"), p.get("epochs"), p.get("test_accuracy"), p.get("train_seconds")]
            for row in r["rows"] for p in row.get("per_run") or []]
    run_classes = ["diverged" if run[4] else "" for run in runs]
    parts = [section("Models", para("Test accuracy: mean ± sample std over the runs that did not diverge; a "
                                    "diverged run is counted, not averaged."), table(cells[0], cells[1:], classes)),
             section("Test accuracy", figure(folder / "compare.png", "mean test accuracy with std error bars; red: "
                                                                      "the published figure")),
             section("Published figures", *(para(s) for s in sources)) if sources else "",
             section("Runs", table(("model", "seed", "fold", "dir", "diverged", "epochs", "test_accuracy",
                                    "train_seconds"), runs, run_classes))]
    return title(r), "\n".join(parts)


RENDER: dict[str, Callable[[Path, dict[str, Any]], tuple[str, str]]] = {
    "run": render_run, "cv": render_cv, "sweep": render_sweep, "grid": render_grid, "search": render_search,
    "compare": render_compare,
}
