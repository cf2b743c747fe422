"""Rewrites one driver's generated telemetry as FastF1 users save it, for tests/fastf1_exports.rs.

Reads pitwall's generated CSV for one driver (no anomalies injected) and writes, with pandas and
pyarrow exactly as a FastF1 session's frames are saved:

  telemetry.csv      lap.get_telemetry().to_csv(): UTF-8 BOM (encoding="utf-8-sig"), the unnamed
                     index column, no Driver/LapNumber, DriverAhead/DistanceToDriverAhead with
                     empty cells, fractional RPM and Throttle (FastF1 3.x), naive dates
  telemetry.parquet  the same frame, .to_parquet() (timedelta64 -> duration[ns],
                     datetime64 -> timestamp[ns])
  car_data.csv       get_car_data().to_csv(): car channels only, integer RPM/Throttle (older exports)
  pos_data.csv       get_pos_data().to_csv(): Date, SessionTime, Status, X, Y, Z, Source, Time
  truth.json         what the test expects: row counts, sentinel counts, gaps, the crash

The frame carries what real exports contain: irregular sampling (jitter) and gaps of several
seconds (one across a braking zone), FastF1's invalid throttle (104) with the brake on, DRS
status codes outside 0/1/8/10/12/14, a Distance starting slightly negative and stepping back,
and a crash: ~300 km/h to near zero in about two seconds in a high gear, then the car stays.
"""

import json
import sys

import numpy as np
import pandas as pd

source, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
raw = pd.read_csv(source, index_col=0)
df = pd.DataFrame(
    {
        "Date": pd.to_datetime(raw["Date"]),
        "SessionTime": pd.to_timedelta(raw["SessionTime"]),
        "RPM": raw["RPM"].astype(float),
        "Speed": raw["Speed"].astype(float),
        "nGear": raw["nGear"].astype(int),
        "Throttle": raw["Throttle"].astype(float),
        "Brake": raw["Brake"].astype(bool),
        "DRS": raw["DRS"].astype(int),
        "X": raw["X"].astype(float),
        "Y": raw["Y"].astype(float),
        "Z": raw["Z"].astype(float),
    }
).reset_index(drop=True)

# Irregular sampling: jitter every time by up to +-40 ms (order kept: samples are >= 100 ms apart).
step = df["SessionTime"].diff().dt.total_seconds().median()
assert step >= 0.1, f"samples too dense for the jitter: {step}"
offsets = rng.integers(-40, 41, len(df))
offsets[0] = 0
jitter = pd.to_timedelta(offsets, unit="ms")
df["SessionTime"] = df["SessionTime"] + jitter
df["Date"] = df["Date"] + jitter

# The crash, near the end: from the first sample at >= 285 km/h in the last third, speed falls
# to ~3 km/h over 2 s in the same gear, then the car stays there for 1.5 s; the file ends.
last_third = df.index[len(df) * 2 // 3 :]
fast = [i for i in last_third if df.at[i, "Speed"] >= 285.0 and df.at[i, "nGear"] >= 7]
assert fast, "no fast sample in the last third: change the seed"
c = fast[0]
gear = int(df.at[c, "nGear"])
t0 = df.at[c, "SessionTime"]
times = [t0 + pd.Timedelta(milliseconds=250 * k) for k in range(1, 15)]
v0 = df.at[c, "Speed"]
crash = []
for k, t in enumerate(times, start=1):
    speed = max(3.0, v0 - (v0 - 3.0) * min(1.0, k / 8))  # 8 x 250 ms = 2 s to a standstill
    crash.append({"Date": df.at[c, "Date"] + (t - t0), "SessionTime": t, "RPM": 4000.0 + speed * 30, "Speed": speed,
                  "nGear": gear, "Throttle": 0.0, "Brake": k <= 8, "DRS": 1,
                  "X": df.at[c, "X"] + speed / 10, "Y": df.at[c, "Y"], "Z": df.at[c, "Z"]})
df = pd.concat([df.loc[:c], pd.DataFrame(crash)], ignore_index=True)
crash_start_ms = int(t0.total_seconds() * 1000)

# Gaps of several seconds: three spans removed, one across the heaviest braking before the crash.
def drop_span(frame, start, seconds):
    t = frame.at[start, "SessionTime"]
    keep = (frame["SessionTime"] <= t) | (frame["SessionTime"] > t + pd.Timedelta(seconds=seconds))
    return frame[keep].reset_index(drop=True)

drops = df["Speed"].diff(-12).iloc[: c - 40]  # speed now minus speed ~3 s later
brake_zone = int(drops.idxmax())
for start, seconds in [(brake_zone, 3.0), (len(df) // 5, 4.5), (len(df) // 2, 6.0)]:
    df = drop_span(df, start, seconds)

# FastF1 3.x interpolated channels: fractional RPM and Throttle.
df["RPM"] = df["RPM"] + 0.37
pre = df["SessionTime"] < t0
df.loc[pre & (df["Throttle"] > 5) & (df["Throttle"] < 95), "Throttle"] += 0.25
# Throttle 104 (invalid) on 2% of the samples before the crash, with the brake on: not a pedal
# position, so no brake+throttle overlap.
invalid = df.index[pre].to_series().sample(frac=0.02, random_state=3).index
df.loc[invalid, ["Throttle", "Brake"]] = [104.0, True]
# DRS codes outside the documented set on 3% of the samples.
odd = df.index[pre].to_series().sample(frac=0.03, random_state=4).index
df.loc[odd, "DRS"] = rng.choice([2, 3, 9, 11, 13], len(odd))
# Distance: integrated speed from slightly before the line, stepping back a little sometimes.
dt = df["SessionTime"].diff().dt.total_seconds().fillna(0).clip(upper=0.5)
df["Distance"] = (df["Speed"] / 3.6 * dt).cumsum() - 0.4
back = df.index[5::97]
df.loc[back, "Distance"] = df["Distance"].shift(1).loc[back] - 0.05
df["RelativeDistance"] = df["Distance"].clip(lower=0) / df["Distance"].max()
df["Time"] = df["SessionTime"] - df["SessionTime"].iloc[0]
df["Status"] = "OnTrack"
df["Source"] = np.where(df.index % 2 == 0, "car", "pos")
df["DriverAhead"] = np.where(df.index % 3 == 0, "", "44")
df["DistanceToDriverAhead"] = np.where(df.index % 3 == 0, np.nan, 12.5)

columns = ["Date", "SessionTime", "DriverAhead", "Time", "RPM", "Speed", "nGear", "Throttle", "Brake", "DRS", "Source",
           "Distance", "RelativeDistance", "Status", "X", "Y", "Z", "DistanceToDriverAhead"]
df[columns].to_csv(f"{out}/telemetry.csv", encoding="utf-8-sig")
df[columns].to_parquet(f"{out}/telemetry.parquet")

car = df[df["Source"] == "car"][["Date", "SessionTime", "Time", "RPM", "Speed", "nGear", "Throttle", "Brake", "DRS", "Source"]].copy()
car["RPM"] = car["RPM"].round().astype(int)
car.loc[car["Throttle"] <= 100, "Throttle"] = car["Throttle"].round()
car["Throttle"] = car["Throttle"].astype(int)
car.reset_index(drop=True).to_csv(f"{out}/car_data.csv")
pos = df[df["Source"] == "pos"][["Date", "SessionTime", "Status", "X", "Y", "Z", "Source", "Time"]]
pos.reset_index(drop=True).to_csv(f"{out}/pos_data.csv")

gaps = int((df["SessionTime"].diff().dt.total_seconds() > 1.5).sum())
json.dump(
    {
        "rows": len(df),
        "car_rows": len(car),
        "pos_rows": len(pos),
        "crash_start_ms": crash_start_ms,
        "crash_speed_kmh": float(v0),
        "throttle_invalid": int((df["Throttle"] > 100).sum()),
        "gaps": gaps,
    },
    open(f"{out}/truth.json", "w"),
)
