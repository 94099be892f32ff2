"""digitlab's ServerApp behind a Grid that saves what each client sends in SecAgg+'s masked-vector stage
(received/client-K.npz: the masked arrays, and the bytes of plain arrays beside them)."""

from pathlib import Path

import numpy as np
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.serverapp import ServerApp

from digitlab.federated.config import unpack
from digitlab.federated.server_app import run_server

app = ServerApp()


class Recorder:
    def __init__(self, grid, folder: Path):
        self._grid, self.folder = grid, folder
        folder.mkdir(parents=True, exist_ok=True)

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout=None):
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_error():
                continue
            configs = reply.content.config_records.get(RECORD_KEY_CONFIGS)
            if configs is None or Key.MASKED_PARAMETERS not in configs:
                continue
            client = int(reply.content.config_records["fitres.metrics"]["client"])
            masked = [bytes_to_ndarray(b) for b in configs[Key.MASKED_PARAMETERS]]
            plain = sum(r.count_bytes() for r in reply.content.array_records.values())
            np.savez(self.folder / f"client-{client}.npz", *masked, plain_array_bytes=np.array(plain))
        return replies


@app.main()
def main(grid, context):
    cfg, fed = unpack(str(context.run_config["digitlab-config"]))
    out = Path(str(context.run_config["out"]))
    run_server(Recorder(grid, out / "received"), cfg, fed, out, context)
