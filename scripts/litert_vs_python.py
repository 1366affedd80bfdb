"""Interleaved latency comparison: bench's litert-xnnpack against Python's ai_edge_litert.

Usage: python litert_vs_python.py BENCH MODEL.tflite CORE [ROUNDS]

Alternates, ROUNDS times, one `bench run --model-file MODEL --backends litert-xnnpack` and
one Python Interpreter run (XNNPACK, 1 thread) pinned to the same core, 50 warm-up and 1000
timed runs each. Each timed iteration copies the input in, invokes and copies the output
out, as bench's session does. Prints each round's medians and the ratio of the medians of
the round medians.
"""
import csv
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

WARMUP, RUNS = 50, 1000


def harness_median(bench, model, core):
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [bench, "run", "--model-file", model, "--backends", "litert-xnnpack", "--core", str(core),
             "--warmup", str(WARMUP), "--runs", str(RUNS), "--out", out],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (summary,) = glob.glob(f"{out}/*/*/summary.csv")
        (row,) = list(csv.DictReader(open(summary)))
        assert row["status"] == "ok", row
        return float(row["p50_ms"])


def python_median(model, core):
    os.sched_setaffinity(0, {core})
    it = Interpreter(model_path=model, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.random.default_rng(0).uniform(-1, 1, inp["shape"]).astype(np.float32)
    for _ in range(WARMUP):
        it.set_tensor(inp["index"], x)
        it.invoke()
        it.get_tensor(out["index"])
    samples = []
    prev = time.perf_counter_ns()
    for _ in range(RUNS):
        it.set_tensor(inp["index"], x)
        it.invoke()
        it.get_tensor(out["index"])
        now = time.perf_counter_ns()
        samples.append(now - prev)
        prev = now
    return statistics.median(samples) / 1e6


def main():
    bench, model, core = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    h, p = [], []
    for r in range(rounds):
        h.append(harness_median(bench, model, core))
        p.append(python_median(model, core))
        print(f"round {r + 1}: bench litert-xnnpack {h[-1]:.4f} ms, python ai_edge_litert {p[-1]:.4f} ms")
    hm, pm = statistics.median(h), statistics.median(p)
    print(f"median of medians: bench {hm:.4f} ms, python {pm:.4f} ms, ratio bench/python {hm / pm:.3f}")


if __name__ == "__main__":
    main()
