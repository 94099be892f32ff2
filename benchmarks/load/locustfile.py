"""Locust users of the service load test (benchmarks/serve_load.py runs them headless, from another process).

Each user (Locust's FastHttpUser: its gevent HTTP client, which costs the shared CPU far less than the
requests-based one) sends $LOAD_RATE requests per second, starting at a random point of its first interval so
that the users' requests spread over time instead of arriving together: /v1/predict with one real MNIST
test digit (dark on white, 4x
larger, as a scan of a digit), and with probability $LOAD_READ_SHARE /v1/read with samples/amount.png."""

import os
import random
from pathlib import Path

import gevent
from locust import FastHttpUser, constant_throughput, task

DIGITS = [Path(p).read_bytes() for p in os.environ["LOAD_DIGITS"].split(os.pathsep)]
STRING = Path(os.environ["LOAD_STRING"]).read_bytes()
READ_SHARE = float(os.environ.get("LOAD_READ_SHARE", "0"))
PNG = {"content-type": "image/png"}


RATE = float(os.environ.get("LOAD_RATE", "4"))


class Client(FastHttpUser):
    wait_time = constant_throughput(RATE)

    def on_start(self) -> None:
        gevent.sleep(random.random() / RATE)

    @task
    def request(self) -> None:
        if READ_SHARE and random.random() < READ_SHARE:
            self.client.post("/v1/read", data=STRING, headers=PNG, name="/v1/read")
        else:
            self.client.post("/v1/predict", data=random.choice(DIGITS), headers=PNG, name="/v1/predict")
