#!/usr/bin/env python3
"""Turns one benchmark run directory into summary.json, report.md and PNG charts, and prints the
summary table.

  make_report.py RUN_DIR

Reads RUN_DIR/raw/brokered.jsonl (rows from broker_bench, offload_roundtrip and python_bench, or
failures: rows with "error"), RUN_DIR/raw/executor_bench.json (Google Benchmark, optional) and
RUN_DIR/machine.txt. Every path has exactly one row with variant "default"; a path that could not
be measured has its rows marked "measured": false with the reason, and no figures. A (path,
variant) measured in several interleaved rounds becomes one row of medians, each figure with its
range ("<figure>_range": [min, max], "rounds": n).
"""
import json
import os
import re
import sys

# Order of the paths in tables and charts: in process first, then brokers, then Python tools.
PATH_ORDER = ["offload", "tbb", "asio", "mutex_pool", "std_async", "redis", "rabbitmq",
              "celery-redis", "celery-rabbitmq", "rq"]
IN_PROCESS_PEERS = {"tbb", "asio", "mutex_pool", "std_async"}
FIGURES = ["p50_us", "p90_us", "p99_us", "p999_us", "throughput_per_s"]


def path_key(path):
    return (PATH_ORDER.index(path) if path in PATH_ORDER else len(PATH_ORDER), path)


def read_brokered(run_dir):
    rows = []
    name = os.path.join(run_dir, "raw", "brokered.jsonl")
    if not os.path.exists(name):
        return rows
    with open(name) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            r.setdefault("mode", "pingpong")
            r.setdefault("work_us", 0)
            if "error" in r:
                r["measured"] = False
                for k in FIGURES:
                    r[k] = None
            else:
                r["measured"] = True
            rows.append(r)
    return rows


def seconds_or_ns(v):
    """ns_per_task as Google Benchmark writes it: an inverted rate counter comes out in seconds."""
    return v * 1e9 if v < 1e-3 else v


def read_executor_bench(run_dir):
    """Rows for the in-process peers from executor_bench: hot (cold:0) latency as the default
    variant, cold:1 as "cold", gap_us:N (a round trip every N µs) as "trickle-Nus", and 100 000
    empty tasks from one producer as "batch-1-producer". offload's own latency rows from it are
    prefixed "empty-task" ("empty-task", "empty-task-cold", "empty-task-trickle-Nus"): its default
    row comes from offload_roundtrip, which carries the same 100-byte message as the brokered
    paths."""
    name = os.path.join(run_dir, "raw", "executor_bench.json")
    if not os.path.exists(name):
        return []
    with open(name) as f:
        data = json.load(f)
    picked = {}
    for b in data.get("benchmarks", []):
        # With repetitions, keep the median aggregate; with one run, the run itself.
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        base = b.get("run_name", b["name"])
        if b.get("run_type") == "iteration" and base in picked:
            continue
        picked[base] = b
    lat, thr = {}, {}
    for base, b in picked.items():
        m = re.match(r"latency/([^/]+)/(cold:[01]|gap_us:\d+)", base)
        if m and "p50_ns" in b:
            lat[(m.group(1), m.group(2))] = b
        m = re.match(r"throughput/([^/]+)/producers:1", base)
        if m and "ns_per_task" in b:
            thr[m.group(1)] = 1e9 / seconds_or_ns(b["ns_per_task"])
    rows = []
    for peer, rate in sorted(thr.items()):
        # Variants of offload's own benchmark (e.g. offload_timed) are rows of path offload.
        path, variant = peer, "batch-1-producer"
        if peer.startswith("offload_"):
            path, variant = "offload", "batch-1-producer-" + peer[len("offload_"):]
        rows.append({
            "path": path, "variant": variant, "mode": "batch", "work_us": 0,
            "source": "executor_bench", "measured": True, "p50_us": None, "p90_us": None,
            "p99_us": None, "p999_us": None, "throughput_per_s": rate,
        })
    for (peer, kind), b in sorted(lat.items()):
        path = peer
        if kind.startswith("gap_us:"):
            variant = "trickle-" + kind[len("gap_us:"):] + "us"
        else:
            variant = "cold" if kind == "cold:1" else "default"
        if peer == "offload":
            variant = "empty-task" if variant == "default" else "empty-task-" + variant
        rows.append({
            "path": path, "variant": variant, "mode": "pingpong", "work_us": 0,
            "source": "executor_bench", "measured": True,
            "p50_us": b["p50_ns"] / 1e3, "p90_us": None, "p99_us": b["p99_ns"] / 1e3,
            "p999_us": b["p999_ns"] / 1e3,
            "throughput_per_s": None,
        })
    return rows


def read_machine(run_dir):
    out = {}
    name = os.path.join(run_dir, "machine.txt")
    if os.path.exists(name):
        with open(name) as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    out[k.strip()] = v.strip()
    return out


WORKER_FIGURES = ["worker_p50_us", "worker_p99_us", "worker_mean_us", "worker_cpu_us_per_task"]


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def merge_rounds(group):
    """Rows of one (path, variant) measured in several interleaved rounds: each figure is the
    median of the rounds, with its [min, max] in <figure>_range and the round count in rounds."""
    measured = [r for r in group if r["measured"]]
    if not measured:
        return group[-1]
    if len(measured) == 1:
        return measured[0]
    out = dict(measured[0])
    out["rounds"] = len(measured)
    for k in FIGURES + WORKER_FIGURES:
        vals = [r[k] for r in measured if r.get(k) is not None]
        if vals:
            out[k] = median(vals)
            out[k + "_range"] = [min(vals), max(vals)]
    return out


def normalise(rows):
    """One row per (path, variant), rounds merged (merge_rounds); every path gets a default row."""
    groups = {}
    for r in rows:
        groups.setdefault((r["path"], r["variant"]), []).append(r)
    by_key = {k: merge_rounds(g) for k, g in groups.items()}
    paths = {r["path"] for r in rows}
    for p in paths:
        if (p, "default") not in by_key:
            by_key[(p, "default")] = {"path": p, "variant": "default", "mode": "pingpong",
                                      "work_us": 0, "measured": False,
                                      "error": "no default measurement in this run",
                                      **{k: None for k in FIGURES}}
    return sorted(by_key.values(), key=lambda r: (path_key(r["path"]), r["mode"] != "pingpong",
                                                 r.get("work_us", 0), r["variant"]))


# Celery's own worker against offload's C++ worker (variant prefix "cpp-worker"), on one broker
# with one Python client: (label, Celery's variant, figure, lower is better, target ratio).
WORKER_COMPARISON = [
    ("round trip p50, one in flight", "default", "p50_us", True, 0.8),
    ("round trip p99, one in flight", "default", "p99_us", True, None),
    ("worker's time per task p50 (task-received to task-succeeded)", "events",
     "worker_p50_us", True, 0.1),
    ("throughput, 64 in flight, one client", "pipelined", "throughput_per_s", False, None),
    ("throughput, 64 in flight, 4 client processes", "clients-4-pipelined", "throughput_per_s",
     False, 3.0),
    ("worker's CPU time per task (all its processes), 4 client processes",
     "clients-4-pipelined", "worker_cpu_us_per_task", True, None),
]


def cpp_variant(variant):
    return "cpp-worker" if variant == "default" else "cpp-worker-" + variant


def fmt_figure(key, v):
    return fmt_rate(v) if key == "throughput_per_s" else fmt_us(v)


def fmt_with_range(r, key):
    v = r.get(key)
    if v is None:
        return "—"
    text = fmt_figure(key, v)
    lo_hi = r.get(key + "_range")
    if lo_hi:
        text += " (%s–%s, %d runs)" % (fmt_figure(key, lo_hi[0]), fmt_figure(key, lo_hi[1]),
                                        r["rounds"])
    return text


def worker_comparison(rows, path):
    """Table rows for `path`: Celery's worker, the C++ worker, their ratio and the target."""
    by_variant = {r["variant"]: r for r in rows if r["path"] == path}
    out = []
    for label, variant, key, lower, target in WORKER_COMPARISON:
        celery, cpp = by_variant.get(variant), by_variant.get(cpp_variant(variant))
        if not celery or not cpp:
            continue
        cells = [label, fmt_with_range(celery, key) if celery["measured"] else
                 "not measured", fmt_with_range(cpp, key) if cpp["measured"] else
                 "not measured (see below)"]
        a, b = celery.get(key), cpp.get(key)
        ratio = b / a if celery["measured"] and cpp["measured"] and a and b else None
        cells.append("%.2f×" % ratio if ratio is not None else "—")
        if target is None:
            cells.append("")
        else:
            met = ratio is not None and (ratio <= target if lower else ratio >= target)
            cells.append(("≤ " if lower else "≥ ") + "%g× %s" % (
                target, "(met)" if met else "(not met)" if ratio is not None else ""))
        out.append(cells)
    return out


WORKS = [100, 1000, 10000, 100000]


def measured_overhead(rows):
    """Table rows: per path, p50 − work at each work size of the ping-pong sweep."""
    out = []
    for path in sorted({r["path"] for r in rows}, key=path_key):
        cells = []
        for w in WORKS:
            hit = [r for r in rows if r["path"] == path and r["mode"] == "pingpong"
                   and r.get("work_us") == w and r["measured"] and r["p50_us"] is not None]
            cells.append(fmt_us(hit[0]["p50_us"] - w) if hit else "—")
        if any(c != "—" for c in cells):
            out.append([path] + cells)
    return out


def break_even(rows):
    """Per path: the round-trip overhead of a no-op (its ping-pong p50) and the task durations
    above which it is under 10% and 1% of the total: overhead/(overhead + d) < x."""
    out = {}
    for r in rows:
        if r["variant"] == "default" and r["measured"] and r["p50_us"] is not None:
            o = r["p50_us"]
            out[r["path"]] = {"overhead_us": o, "work_for_10pct_us": 9 * o,
                              "work_for_1pct_us": 99 * o}
    return out


def fmt_us(v):
    if v is None:
        return "—"
    if v >= 1000:
        return "%.2f ms" % (v / 1000)
    if v >= 10:
        return "%.0f µs" % v
    return "%.2f µs" % v


def fmt_rate(v):
    if v is None:
        return "—"
    if v >= 1e6:
        return "%.2f M/s" % (v / 1e6)
    if v >= 1e3:
        return "%.1f k/s" % (v / 1e3)
    return "%.0f /s" % v


def row_cells(r):
    if not r["measured"]:
        return [r["path"], r["variant"], "not measured: " + r.get("error", "")[:120], "", "", "", ""]
    return [r["path"], r["variant"], fmt_us(r["p50_us"]), fmt_us(r["p90_us"]), fmt_us(r["p99_us"]),
            fmt_us(r["p999_us"]), fmt_rate(r["throughput_per_s"])]


HEADER = ["path", "variant", "p50", "p90", "p99", "p99.9", "throughput"]


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    return "\n".join([fmt % tuple(header)] + [fmt % tuple(str(c) for c in r) for r in rows])


def charts(rows, be, chart_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(chart_dir, exist_ok=True)
    made = []
    defaults = [r for r in rows if r["variant"] == "default" and r["measured"]]

    # 1. latency percentiles per path, log scale
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.2
    for i, (key, label) in enumerate([("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"),
                                      ("p999_us", "p99.9")]):
        xs = [j + (i - 1.5) * width for j in range(len(defaults))]
        ys = [r[key] if r[key] else 0 for r in defaults]
        ax.bar(xs, ys, width, label=label)
    ax.set_xticks(range(len(defaults)))
    ax.set_xticklabels([r["path"] for r in defaults], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("round trip (µs, log scale)")
    ax.set_title("No-op round trip, one in flight (default variant of each path)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(chart_dir, "latency.png"), dpi=100)
    plt.close(fig)
    made.append("latency.png")

    # 2. overhead share vs task duration: measured points and the model o/(o+d)
    fig, ax = plt.subplots(figsize=(10, 5))
    durations = [10 ** (k / 10) for k in range(0, 61)]  # 1 µs .. 1 s
    # offload and the brokered paths; the in-process peers are in the latency chart.
    for path in sorted((p for p in be if p not in IN_PROCESS_PEERS), key=path_key):
        o = be[path]["overhead_us"]
        line, = ax.plot(durations, [100 * o / (o + d) for d in durations], label=path)
        # The break-even points: overhead at 10% and 1% of the total.
        ax.scatter([9 * o, 99 * o], [10, 1], marker="x", color=line.get_color(), s=40, zorder=3)
        pts = [r for r in rows if r["path"] == path and r["measured"] and r["mode"] == "pingpong"
               and r.get("work_us", 0) > 0 and r["p50_us"]]
        if pts:
            ax.scatter([r["work_us"] for r in pts],
                       [100 * max(r["p50_us"] - r["work_us"], 0) / r["p50_us"] for r in pts],
                       color=line.get_color(), s=18)
    for level in (10, 1):
        ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
        ax.text(1.2, level * 1.1, "%d%%" % level, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(0.01, 100)
    ax.set_xlabel("task duration (µs, log scale)")
    ax.set_ylabel("share of the total that is overhead (%)")
    ax.set_title("Overhead share vs task duration\n(lines: from the no-op p50; x: break-even at "
                 "10% and 1%; dots: measured p50 − work)")
    ax.legend(fontsize=8)
    ax.grid(which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(chart_dir, "overhead_share.png"), dpi=100)
    plt.close(fig)
    made.append("overhead_share.png")

    # 3. throughput: no-op, one in flight and 64 in flight
    paths = sorted({r["path"] for r in rows if r["measured"]}, key=path_key)
    def thr(path, mode):
        for r in rows:
            if (r["path"] == path and r["measured"] and r["mode"] == mode and r.get("work_us", 0) == 0
                    and r["variant"] in ("default", "pipelined", "batch-1-producer")):
                return r["throughput_per_s"] or 0
        return 0
    fig, ax = plt.subplots(figsize=(10, 5))
    xs = range(len(paths))
    ax.bar([x - 0.27 for x in xs], [thr(p, "pingpong") for p in paths], 0.27, label="one in flight")
    ax.bar(list(xs), [thr(p, "pipelined") for p in paths], 0.27, label="64 in flight")
    ax.bar([x + 0.27 for x in xs], [thr(p, "batch") for p in paths], 0.27,
           label="100 000 empty tasks, one producer (executor_bench)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(paths, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("no-op tasks per second (log scale)")
    ax.set_title("Throughput")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(chart_dir, "throughput.png"), dpi=100)
    plt.close(fig)
    made.append("throughput.png")

    # 4. Celery's worker vs the C++ worker, same client and broker: medians with their range
    panels = [(label, variant, key) for label, variant, key, _, target in WORKER_COMPARISON
              if target is not None]
    pairs = []
    for path in ("celery-redis", "celery-rabbitmq"):
        by_variant = {r["variant"]: r for r in rows if r["path"] == path and r["measured"]}
        if any(v in by_variant and cpp_variant(v) in by_variant for _, v, _ in panels):
            pairs.append((path, by_variant))
    if pairs:
        fig, axes = plt.subplots(1, len(panels), figsize=(12, 4.5))
        for ax, (label, variant, key) in zip(axes, panels):
            for i, (path, by_variant) in enumerate(pairs):
                for j, (name, v) in enumerate([("Celery worker", variant),
                                               ("C++ worker", cpp_variant(variant))]):
                    r = by_variant.get(v)
                    if not r or r.get(key) is None:
                        continue
                    lo, hi = r.get(key + "_range", [r[key], r[key]])
                    ax.bar(i + (j - 0.5) * 0.38, r[key], 0.38,
                           yerr=[[r[key] - lo], [hi - r[key]]], capsize=3,
                           color="C%d" % j, label=name if i == 0 else None)
            ax.set_xticks(range(len(pairs)))
            ax.set_xticklabels([p for p, _ in pairs])
            ax.set_title(label, fontsize=9)
            ax.set_ylabel("tasks per second" if key == "throughput_per_s" else "µs")
            ax.grid(axis="y", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("Same Python Celery client and broker: Celery's worker vs offload's C++ "
                     "worker (median, range of runs)")
        fig.tight_layout()
        fig.savefig(os.path.join(chart_dir, "celery_workers.png"), dpi=100)
        plt.close(fig)
        made.append("celery_workers.png")
    return made


def write_report(run_dir, rows, be, machine, made):
    defaults = [r for r in rows if r["variant"] == "default"]
    missing = [r for r in rows if not r["measured"]]
    md = ["# offload benchmark report", ""]
    md.append("Run %s (%s). Machine: %s, %s cores, kernel %s." % (
        machine.get("date", "?"), machine.get("mode", "?"), machine.get("cpu", "?"),
        machine.get("cores", "?"), machine.get("kernel", "?")))
    md += ["", "Every figure is a measurement of this run; a dash is a figure the tool does not "
           "produce (executor_bench has no p90); \"not measured\" says why.", ""]
    md += ["## Default variant of each path (no-op, one in flight)", "",
           md_table(HEADER, [row_cells(r) for r in defaults]), ""]
    md += ["## Break-even: task duration above which the round trip is under 10% / 1%", "",
           md_table(["path", "no-op round trip (p50)", "< 10% from", "< 1% from"],
                    [[p, fmt_us(v["overhead_us"]), fmt_us(v["work_for_10pct_us"]),
                      fmt_us(v["work_for_1pct_us"])]
                     for p, v in sorted(be.items(), key=lambda kv: path_key(kv[0]))]), ""]
    md += ["## Overhead measured at each task duration (ping-pong p50 minus the work)", "",
           "The break-even table above extrapolates from the no-op round trip; this one is "
           "measured. Where the two differ, the task's own wake-up costs show.", "",
           md_table(["path"] + [fmt_us(w) for w in WORKS], measured_overhead(rows)), ""]
    for path in ("celery-redis", "celery-rabbitmq"):
        table = worker_comparison(rows, path)
        if table:
            md += ["## %s: Celery's own worker vs offload's C++ worker" % path, "",
                   "The same Python Celery client (`bench/brokered/python_bench.py`), broker and "
                   "tasks, served by Celery's worker (prefork, 2 processes, as shipped) and by "
                   "`celery_bench_worker` (examples/celery_worker, 2 executor workers). Figures "
                   "are medians of the interleaved runs, with their range. The worker's time is "
                   "read from each worker's task-received and task-succeeded events (both workers "
                   "started with task events on for that row only).", "",
                   md_table(["", "Celery worker", "C++ worker", "ratio", "target"], table), ""]
    md += ["## Charts", ""] + ["![%s](charts/%s)" % (c, c) for c in made] + [""]
    md += ["## Every row", "",
           "p99.9 of fewer than 1000 round trips is the slowest one; `n` says how many there were.",
           "", md_table(HEADER + ["mode", "work", "n"], [
               row_cells(r) + [r["mode"], fmt_us(r.get("work_us", 0)) if r.get("work_us") else
                               "none", r.get("count", "")]
               for r in rows]), ""]
    if missing:
        md += ["## Not measured", ""] + ["- %s / %s: %s" % (r["path"], r["variant"],
                                                           r.get("error", "")) for r in missing]
        md.append("")
    md += ["## Machine", "", "```"] + ["%s: %s" % kv for kv in machine.items()] + ["```", ""]
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write("\n".join(md))


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run_dir = argv[1]
    rows = normalise(read_executor_bench(run_dir) + read_brokered(run_dir))
    be = break_even(rows)
    machine = read_machine(run_dir)
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(rows, f, indent=1)
    made = charts(rows, be, os.path.join(run_dir, "charts"))
    write_report(run_dir, rows, be, machine, made)
    defaults = [r for r in rows if r["variant"] == "default"]
    print(text_table(HEADER, [row_cells(r) for r in defaults]))
    print()
    print(text_table(["path", "no-op p50", "<10% from", "<1% from"],
                     [[p, fmt_us(v["overhead_us"]), fmt_us(v["work_for_10pct_us"]),
                       fmt_us(v["work_for_1pct_us"])]
                      for p, v in sorted(be.items(), key=lambda kv: path_key(kv[0]))]))
    for path in ("celery-redis", "celery-rabbitmq"):
        table = worker_comparison(rows, path)
        if table:
            print()
            print(path + ": Celery's worker vs offload's C++ worker (medians, range)")
            print(text_table(["", "Celery worker", "C++ worker", "ratio", "target"], table))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
