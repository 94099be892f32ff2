"""The service load test: `digitlab serve` under Locust, from a second process on 127.0.0.1.

    pip install -e '.[serve,onnx]' locust
    python benchmarks/serve_load.py --data-dir ../shared/datasets      # about 8 minutes, on a quiet machine

Phases, each against a fresh server with the bundled models:
- steady: 200 requests/s to /v1/predict for 60 s, one worker (target: p99 <= 20 ms, no errors);
- mix: 200 requests/s for 60 s, 10% of them /v1/read of samples/amount.png, one worker;
- capacity: with one worker and with --workers 2, rising rates of /v1/predict for 20 s each, up to the first
  whose p99 passes 100 ms (or that has errors, or whose throughput falls 10% short of the rate asked).

Each /v1/predict carries one of 50 real MNIST test digits (dark on white, 4x larger: a scan of one digit). The
load generator shares the machine's cores with the server: on 2 cores it takes most of one, so the capacity
figures are the server's under that handicap. Saves benchmarks/results/serve-load.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import report as report_io  # beside this script

HERE = Path(__file__).parent
LOCUSTFILE = HERE / "load" / "locustfile.py"
PER_USER = 20.0  # requests/s of one simulated user
TARGET = {"rate": 200, "p99_ms": 20.0}
CAPACITY_P99_MS = 100.0


def server(workers: int, folder: Path):
    """`digitlab serve --workers N` on a free port (digitlab.serve.process), its log and cache in folder."""
    from digitlab.serve.process import ServerProcess

    return ServerProcess("--workers", str(workers), "--log-level", "warning", log=folder / f"serve-{workers}.log",
                         env={"DIGITLAB_CACHE": str(folder / "cache")}, timeout=180)


def locust(url: str, rate: float, seconds: int, read_share: float, env: dict, folder: Path) -> dict:
    """Run Locust headless at `rate` requests/s for `seconds`; its figures per endpoint and in all."""
    users = max(1, round(rate / PER_USER))
    prefix = folder / f"locust-{int(rate)}-{int(100 * read_share)}-{time.monotonic_ns()}"
    subprocess.run(["locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
                    "--run-time", f"{seconds}s", "--host", url, "--csv", str(prefix), "--only-summary",
                    "--stop-timeout", "5", "--exit-code-on-error", "0", "--loglevel", "WARNING"],
                   env={**env, "LOAD_RATE": str(PER_USER), "LOAD_READ_SHARE": str(read_share)}, check=True,
                   stdout=subprocess.DEVNULL)
    out = {}
    with open(f"{prefix}_stats.csv") as f:
        for row in csv.DictReader(f):
            out[row["Name"]] = {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                                "requests_per_s": float(row["Requests/s"]), "p50_ms": float(row["50%"]),
                                "p99_ms": float(row["99%"]), "max_ms": float(row["Max Response Time"])}
    return {"rate": rate, "seconds": seconds, "users": users, "read_share": read_share, "stats": out}


def digit_files(data_dir: str | None, folder: Path) -> list[Path]:
    import numpy as np
    from PIL import Image

    from digitlab.data import load_dataset

    test = load_dataset("mnist", "test", data_dir=data_dir)
    paths = []
    for i in range(50):
        path = folder / f"digit-{i}.png"
        Image.fromarray(np.kron(255 - test.images[i].numpy(), np.ones((4, 4), np.uint8))).save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="data root holding mnist/")
    parser.add_argument("--quick", action="store_true", help="5 s phases, two capacity steps; saves nothing")
    args = parser.parse_args()
    steady = 5 if args.quick else 60
    step = 5 if args.quick else 20
    rates = [200, 400] if args.quick else [200, 300, 400, 500, 600, 800, 1000, 1200]

    with tempfile.TemporaryDirectory(prefix="digitlab-load-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "LOAD_DIGITS": os.pathsep.join(map(str, digit_files(args.data_dir, folder))),
               "LOAD_STRING": str(HERE.parent / "samples" / "amount.png")}
        phases = {}
        with server(1, folder) as url:
            locust(url, 50, 3, 0.0, env, folder)  # warm-up: sessions, caches, the thread pool
            phases["steady"] = locust(url, TARGET["rate"], steady, 0.0, env, folder)
            print("steady:", phases["steady"]["stats"]["Aggregated"], flush=True)
            phases["mix"] = locust(url, TARGET["rate"], steady, 0.1, env, folder)
            print("mix:", phases["mix"]["stats"], flush=True)
        capacity = {}
        for workers in (1, 2):
            steps = []
            with server(workers, folder) as url:
                time.sleep(2 if workers > 1 else 0)  # every worker up, not only the first to answer
                locust(url, 50, 3, 0.0, env, folder)
                for rate in rates:
                    result = locust(url, rate, step, 0.0, env, folder)
                    s = result["stats"]["Aggregated"]
                    result["held"] = (s["p99_ms"] <= CAPACITY_P99_MS and s["failures"] == 0
                                      and s["requests_per_s"] >= 0.9 * rate)
                    steps.append(result)
                    print(f"workers {workers}, {rate}/s:", s, "held" if result["held"] else "not held", flush=True)
                    if not result["held"]:
                        break
            held = [r["rate"] for r in steps if r["held"]]
            capacity[workers] = {"steps": steps, "held": max(held) if held else 0}
    if args.quick:
        return
    import onnxruntime
    import torch

    report = {"env": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                      "python": platform.python_version(), "torch": torch.__version__,
                      "onnxruntime": onnxruntime.__version__},
              "target": TARGET, "capacity_p99_ms": CAPACITY_P99_MS, "phases": phases,
              "capacity": {str(k): v for k, v in capacity.items()}}
    report_io.save("serve-load", report, markdown(report))


def markdown(report: dict) -> str:
    def row(name: str, s: dict) -> str:
        return (f"| {name} | {s['requests']:,} | {s['failures']} | {s['requests_per_s']:.1f} | {s['p50_ms']:.0f} | "
                f"{s['p99_ms']:.0f} | {s['max_ms']:.0f} |")

    env = report["env"]
    steady = report["phases"]["steady"]["stats"]["Aggregated"]
    met = steady["p99_ms"] <= TARGET["p99_ms"] and steady["failures"] == 0 and \
        steady["requests_per_s"] >= 0.95 * TARGET["rate"]
    lines = ["# Service load test", "",
             f"`digitlab serve` (bundled MNIST models, ONNX Runtime {env['onnxruntime']}) and Locust on the same "
             f"{env['cpus']}-core machine, 127.0.0.1; each /v1/predict is one real MNIST test digit as a 112x112 "
             f"PNG, each /v1/read samples/amount.png. Latencies in ms as Locust measures them (client side).", "",
             "| phase | requests | errors | requests/s | p50 | p99 | max |", "|---|---|---|---|---|---|---|",
             row("steady: 200/s /v1/predict, 1 worker, 60 s", steady)]
    for name, s in report["phases"]["mix"]["stats"].items():
        lines.append(row(f"mix: 200/s, 10% /v1/read, 1 worker, 60 s: {name}", s))
    lines += ["", f"Target (p99 <= {TARGET['p99_ms']:g} ms at {TARGET['rate']} requests/s of /v1/predict, no "
                  f"errors): **{'met' if met else 'not met'}** (p99 {steady['p99_ms']:.0f} ms, "
                  f"{steady['failures']} errors).", "",
              f"## Capacity: the highest rate held with p99 <= {CAPACITY_P99_MS:g} ms", "",
              "| workers | rate asked | requests/s | errors | p50 | p99 | held |", "|---|---|---|---|---|---|---|"]
    for workers, c in report["capacity"].items():
        for r in c["steps"]:
            s = r["stats"]["Aggregated"]
            lines.append(f"| {workers} | {r['rate']} | {s['requests_per_s']:.1f} | {s['failures']} | "
                         f"{s['p50_ms']:.0f} | {s['p99_ms']:.0f} | {'yes' if r['held'] else 'no'} |")
    lines += [""] + [f"- {w} worker{'s' if w != '1' else ''}: {c['held']} requests/s held"
                     for w, c in report["capacity"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
