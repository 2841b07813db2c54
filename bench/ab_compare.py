#!/usr/bin/env python3
"""Compares two builds of executor_bench: runs them interleaved (A, B, A, B, ...) so that a slow
spell of the machine falls on both, and prints, per benchmark and figure, the median of the
processes' medians for each build, the range of those medians, and B / A.

Usage: bench/ab_compare.py A_BINARY B_BINARY [--processes 5] [--repetitions 3]
                           [--filter REGEX]
Figures: real_time, and the counters p50_ns, p99_ns, p999_ns and ns_per_task when present.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

FIGURES = ("real_time", "p50_ns", "p99_ns", "p999_ns", "ns_per_task")


def run_once(binary, bench_filter, repetitions):
    """One process; returns {benchmark name: {figure: median over its repetitions}}."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [binary, f"--benchmark_filter={bench_filter}",
             f"--benchmark_repetitions={repetitions}",
             "--benchmark_report_aggregates_only=false",
             f"--benchmark_out={out.name}", "--benchmark_out_format=json"],
            check=True, stdout=subprocess.DEVNULL)
        data = json.load(open(out.name))
    samples = defaultdict(lambda: defaultdict(list))
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b.get("run_name", b["name"])
        for figure in FIGURES:
            if figure in b:
                samples[name][figure].append(float(b[figure]))
    return {name: {f: statistics.median(v) for f, v in figs.items()}
            for name, figs in samples.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--filter", default=".")
    args = parser.parse_args()
    medians = {"A": defaultdict(lambda: defaultdict(list)),
               "B": defaultdict(lambda: defaultdict(list))}
    for i in range(args.processes):
        for label, binary in (("A", args.a), ("B", args.b)):
            print(f"process {i + 1}/{args.processes} of {label}", file=sys.stderr, flush=True)
            for name, figs in run_once(binary, args.filter, args.repetitions).items():
                for figure, value in figs.items():
                    medians[label][name][figure].append(value)
    print(f"{'benchmark':48} {'figure':11} {'A median':>12} {'A range':>23} "
          f"{'B median':>12} {'B range':>23} {'B/A':>6}")
    for name in medians["A"]:
        for figure in FIGURES:
            a = medians["A"][name].get(figure)
            b = medians["B"].get(name, {}).get(figure)
            if not a or not b:
                continue
            ma, mb = statistics.median(a), statistics.median(b)
            ratio = mb / ma if ma else float("nan")
            print(f"{name:48} {figure:11} {ma:12.4g} {min(a):11.4g}-{max(a):<11.4g} "
                  f"{mb:12.4g} {min(b):11.4g}-{max(b):<11.4g} {ratio:6.3f}")


if __name__ == "__main__":
    main()
