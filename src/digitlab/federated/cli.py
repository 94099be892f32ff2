"""The `digitlab federate` command, added to digitlab's parser by ``add_commands``. Building the parser imports
no torch and no flwr; the command loads them when it runs."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from digitlab.configs import add_config_options, config_values
from digitlab.errors import DigitlabError
from digitlab.table import format_table


def add_commands(command) -> None:
    from digitlab.federated.config import ATTACKS, DP_CLIPPING, STRATEGIES, FedConfig
    from digitlab.train.config import INITS, KEEPS, OPTIMIZERS, SCHEDULES, TrainConfig

    p = command("federate", "federated training on Flower: a simulation on this machine", cmd_federate,
                description="Train one model across clients that keep their data, with Flower: on this machine a "
                            "private SuperLink runs the simulation and is stopped at the end. Each round: the "
                            "sampled clients train locally (the same training loop as `train`), the strategy "
                            "aggregates, the server tests the global model and saves it as a checkpoint. Run "
                            "again with the same --out and settings to resume.")
    p.add_argument("--preset", metavar="NAME", help="a named federation (see --list-presets)")
    p.add_argument("--list-presets", action="store_true", help="list the named federations and exit")
    p.add_argument("--out", metavar="DIR", help="federation folder (default runs/<time>-federate/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar; one line per round")
    p.add_argument("--write-run-config", metavar="FILE.toml",
                   help="write the run config for `flwr run` against your own SuperLink (a deployment; the "
                        "ServerApp writes to --out on the SuperLink's machine) and exit")
    add_config_options(p, TrainConfig, "clients' training settings (as for `train`; --epochs is not used: "
                                       "see --local-epochs, --local-steps, --rounds)",
                       {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "init": INITS, "keep": KEEPS})
    add_config_options(p, FedConfig, "federation settings",
                       {"strategy": STRATEGIES, "attack": ATTACKS, "dp_clipping": DP_CLIPPING})


def cmd_federate(args: argparse.Namespace) -> None:
    from digitlab.federated.presets import FED_PRESETS, get_fed_preset

    if args.list_presets:
        rows = [("preset", "model", "dataset", "clients", "rounds", "published", "description")]
        for p in FED_PRESETS.values():
            rows.append((p.name, p.train.get("model", ""), p.train.get("dataset", ""),
                         str(p.federation.get("clients", "")), str(p.federation.get("rounds", "")), p.published,
                         p.description))
        print(format_table(rows))
        return
    from digitlab.federated.config import FedConfig
    from digitlab.federated.run import federate
    from digitlab.train.config import TrainConfig

    train_values = config_values(args, TrainConfig)
    if "epochs" in train_values:
        raise DigitlabError("federate trains in rounds: give --rounds R and --local-epochs E (or --local-steps K), "
                            "not --epochs")
    if train_values.get("threads") is not None:
        raise DigitlabError("give --client-threads (torch threads per client), not --threads")
    preset = get_fed_preset(args.preset) if args.preset else None
    cfg = TrainConfig.from_dict({**(preset.train if preset else {}), **train_values})
    fed = FedConfig.from_dict({**(preset.federation if preset else {}), **config_values(args, FedConfig)})
    out = Path(args.out) if args.out else Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-federate"
    if args.write_run_config:
        from digitlab.federated.run import write_run_config
        from digitlab.federated.runtime import app_dir

        path = write_run_config(cfg, fed, out, args.write_run_config)
        print(f"wrote {path}; start the run with:\n  flwr run {app_dir()} CONNECTION --run-config {path} --stream")
        return
    summary = federate(cfg, fed, out, progress=not args.no_progress)
    acc = summary["test_accuracy"]
    shown = "-" if acc is None else f"{100 * acc:.2f}%"
    line = f"test accuracy after {summary['rounds']} rounds: {shown}"
    if preset and preset.published:
        line += f" (published: {preset.published})"
    print(line)
