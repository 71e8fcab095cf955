#!/usr/bin/env python3
"""Per-launch device times from an ncu --csv run (gpu__time_duration.sum), in launch order,
one line a launch: index, kernel, microseconds. Usage: ncu_order.py FILE.csv"""
import csv
import re
import sys

scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1, "usecond": 1, "ms": 1e3, "msecond": 1e3}
for r in csv.reader(open(sys.argv[1])):
    if len(r) > 14 and r[12] == "gpu__time_duration.sum":
        name = r[4].replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
        name = re.sub(r"[<(].*", "", name).split("::")[-1].split(" ")[-1]
        print(f"{r[0]:>5} {name:40s} {float(r[14].replace(',', '')) * scale[r[13]]:12.1f}")
