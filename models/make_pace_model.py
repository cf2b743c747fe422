"""Fits and writes models/pace_next5s.onnx, pitwall's telemetry prediction model (needs numpy, onnx).

What it predicts: a driver's mean speed (km/h) over the NEXT 5 s, from the features of the
5 s sliding window that just closed (pitwall's default `--window-length-ms 5000`).

Input  `features`   [N, 8] float32, in this order (all from a sliding WindowResult):
       speed mean, speed min, speed max (km/h), rpm mean, throttle mean (%), brake (% of
       samples), gear changes (count), DRS open (fraction of the window).
Output `prediction` [N, 1] float32: km/h, clipped to 0..380.

How it was fitted: ordinary least squares (numpy.linalg.lstsq) on standardised features, the
scaling folded back into one MatMul + Add, on the windows of a generated race
(`pitwall gen race --drivers 20 --laps 3 --seed 11 --out DIR`, then
`python3 models/make_pace_model.py DIR`). Drivers sorted by code: the first 15 train, the last 5
are held out; the script prints the held-out R^2 and mean absolute error, and stores them in the
model's metadata (`heldout_r2`, `heldout_mae_kmh`), next to the baseline "the next 5 s look like
this 5 s" (`baseline_r2`). Fitted 2026-11-23: held-out R^2 0.548, MAE 28.5 km/h (baseline: R^2 -1.44, MAE 69.2 km/h).

Limits: a linear model of one generated circuit. It learns "what comes after this kind of 5 s"
on that track (braking zones precede slow corners, ...). It says nothing about a real circuit
until refitted on that circuit's FastF1 data, which the same script accepts (CSV with the
FastF1 columns, one file per driver).
"""
import csv
import glob
import os
import re
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LENGTH_MS = 5000
SLIDE_MS = 1000
FEATURES = ["speed_mean", "speed_min", "speed_max", "rpm_mean", "throttle_mean", "brake_pct", "gear_changes", "drs_open_frac"]


def session_ms(text):
    # pandas Timedelta text: "0 days 01:00:02.160000"
    m = re.match(r"(\d+) days (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if not m:
        return int(float(text))
    d, h, mi, s = m.groups()
    return int(round(((int(d) * 24 + int(h)) * 60 + int(mi)) * 60000 + float(s) * 1000))


def load(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append((session_ms(r["SessionTime"]), float(r["Speed"]), float(r["RPM"]), float(r["Throttle"]),
                         r["Brake"] in ("True", "true", "1"), int(float(r["nGear"])), int(float(r["DRS"])) >= 10))
    rows.sort()
    return rows


def windows(rows):
    """(features, start) of every full sliding window, pitwall's definition."""
    t0 = rows[0][0] // SLIDE_MS * SLIDE_MS
    t_end = rows[-1][0]
    times = np.array([r[0] for r in rows])
    out = []
    start = t0
    while start + LENGTH_MS <= t_end:
        lo, hi = np.searchsorted(times, start), np.searchsorted(times, start + LENGTH_MS)
        w = rows[lo:hi]
        if len(w) >= 2:
            speed = np.array([r[1] for r in w])
            gear_changes = sum(1 for a, b in zip(w, w[1:]) if a[5] != b[5])
            drs_ms = sum(b[0] - a[0] for a, b in zip(w, w[1:]) if a[6])
            out.append((start, [speed.mean(), speed.min(), speed.max(), np.mean([r[2] for r in w]), np.mean([r[3] for r in w]),
                                100.0 * np.mean([r[4] for r in w]), gear_changes, drs_ms / LENGTH_MS]))
        start += SLIDE_MS
    return dict(out)


def dataset(paths):
    xs, ys = [], []
    for p in paths:
        ws = windows(load(p))
        for start, feats in ws.items():
            nxt = ws.get(start + LENGTH_MS)
            if nxt is not None:
                xs.append(feats)
                ys.append(nxt[0])
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)


def main(race_dir, out):
    paths = sorted(glob.glob(os.path.join(race_dir, "*.csv")))
    if len(paths) < 2:
        sys.exit(f"need at least 2 driver CSVs in {race_dir}")
    split = max(1, len(paths) * 3 // 4)
    x, y = dataset(paths[:split])
    xt, yt = dataset(paths[split:])
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    a = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    w = coef[:-1] / sd
    b = coef[-1] - np.sum(coef[:-1] * mu / sd)
    pred = xt @ w + b
    mae = float(np.mean(np.abs(pred - yt)))
    r2 = float(1 - np.sum((pred - yt) ** 2) / np.sum((yt - yt.mean()) ** 2))
    base = xt[:, 0]
    base_r2 = float(1 - np.sum((base - yt) ** 2) / np.sum((yt - yt.mean()) ** 2))
    base_mae = float(np.mean(np.abs(base - yt)))
    print(f"baseline (next 5 s = this 5 s): R^2 {base_r2:.3f}, MAE {base_mae:.2f} km/h")
    print(f"trained on {len(x)} windows of {split} drivers; held out {len(xt)} windows of {len(paths) - split}: R^2 {r2:.3f}, MAE {mae:.2f} km/h")

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["raw"]),
            # A linear model extrapolates; a speed is never below 0 or above 380 km/h.
            helper.make_node("Clip", ["raw", "lo", "hi"], ["prediction"]),
        ],
        "pace_next5s",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(FEATURES)])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["N", 1])],
        initializer=[
            numpy_helper.from_array(w.reshape(-1, 1).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([b], dtype=np.float32), "b"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "lo"),
            numpy_helper.from_array(np.array(380.0, dtype=np.float32), "hi"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pitwall")
    model.ir_version = 8
    model.model_version = 1
    model.doc_string = __doc__
    for k, v in {"features": ",".join(FEATURES), "heldout_r2": f"{r2:.4f}", "heldout_mae_kmh": f"{mae:.3f}", "baseline_r2": f"{base_r2:.4f}", "target": "mean speed over the next 5 s (km/h)"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: make_pace_model.py RACE_DIR [OUT.onnx]")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "models/pace_next5s.onnx")
