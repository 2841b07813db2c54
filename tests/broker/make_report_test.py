"""bench/report/make_report.py on a small fixture run (tests/broker/report_fixture)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "bench", "report", "make_report.py")


class MakeReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="offload-report-test-")
        cls.run_dir = os.path.join(cls.tmp, "run")
        shutil.copytree(os.path.join(HERE, "report_fixture"), cls.run_dir)
        cls.proc = subprocess.run([sys.executable, SCRIPT, cls.run_dir], capture_output=True,
                                  text=True, timeout=120)
        with open(os.path.join(cls.run_dir, "summary.json")) as f:
            cls.rows = json.load(f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def row(self, path, variant):
        found = [r for r in self.rows if r["path"] == path and r["variant"] == variant]
        self.assertEqual(len(found), 1, (path, variant))
        return found[0]

    def test_exits_zero_and_prints_the_summary_table(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        self.assertIn("redis", self.proc.stdout)
        self.assertIn("200 µs", self.proc.stdout)

    def test_every_path_has_exactly_one_default_row(self):
        paths = {r["path"] for r in self.rows}
        self.assertEqual(paths, {"offload", "tbb", "redis", "rabbitmq", "celery-redis"})
        for p in paths:
            self.assertEqual(len([r for r in self.rows if r["path"] == p
                                  and r["variant"] == "default"]), 1, p)

    def test_measured_rows_keep_their_figures(self):
        r = self.row("redis", "default")
        self.assertTrue(r["measured"])
        self.assertEqual((r["p50_us"], r["p99_us"], r["throughput_per_s"]), (200.0, 400.0, 4500.0))

    def test_failures_are_not_measured_and_carry_no_figures(self):
        r = self.row("rabbitmq", "default")
        self.assertFalse(r["measured"])
        self.assertIn("failed to start", r["error"])
        self.assertIsNone(r["p50_us"])
        # A path with only a failed variant still gets a default row marked not measured.
        d = self.row("celery-redis", "default")
        self.assertFalse(d["measured"])
        self.assertIsNone(d["throughput_per_s"])

    def test_peers_come_from_google_benchmark_json(self):
        hot = self.row("tbb", "default")
        self.assertTrue(hot["measured"])
        self.assertGreater(hot["p50_us"], 0)
        self.assertIsNone(hot["p90_us"])  # executor_bench has no p90: no invented figure
        batch = self.row("tbb", "batch-1-producer")
        self.assertGreater(batch["throughput_per_s"], 1e5)  # ~1 µs per task, not 1e-6 per second
        self.assertTrue(self.row("offload", "empty-task")["measured"])

    def test_trickle_latency_rows_come_from_gap_benchmarks(self):
        tbb = self.row("tbb", "trickle-30us")
        self.assertEqual((tbb["p50_us"], tbb["p99_us"]), (1.57, 5.516))
        off = self.row("offload", "empty-task-trickle-30us")
        self.assertEqual((off["p50_us"], off["p99_us"], off["p999_us"]), (1.023, 33.674, 59.716))

    def test_report_has_tables_break_even_and_charts(self):
        with open(os.path.join(self.run_dir, "report.md")) as f:
            md = f.read()
        self.assertIn("| redis | default | 200 µs", md)
        self.assertIn("not measured: rabbitmq failed to start", md)
        # Break-even of redis: 9 × 200 µs and 99 × 200 µs.
        self.assertIn("| redis | 200 µs | 1.80 ms | 19.80 ms |", md)
        for chart in ("latency.png", "overhead_share.png", "throughput.png"):
            name = os.path.join(self.run_dir, "charts", chart)
            with open(name, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", chart)
            self.assertIn("charts/" + chart, md)


class WorkerComparisonTest(unittest.TestCase):
    """Rounds of one (path, variant) merge into medians with ranges; Celery's worker and the C++
    worker (variants cpp-worker...) get a table of ratios against the targets, and a chart."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="offload-report-rounds-")
        os.makedirs(os.path.join(cls.tmp, "raw"))

        def row(variant, mode, **figures):
            base = {"path": "celery-redis", "variant": variant, "mode": mode, "work_us": 0,
                    "count": 100, "p50_us": 1.0, "p90_us": 1.0, "p99_us": 1.0, "p999_us": 1.0,
                    "throughput_per_s": 1.0}
            base.update(figures)
            return base

        rows = []
        for p50, cpp50, thr, cppthr, w, cppw in [(3000, 1000, 400, 1300, 2000, 150),
                                                 (2000, 1200, 500, 1500, 2400, 250),
                                                 (2500, 1100, 450, 1400, 2200, 200)]:
            rows += [row("default", "pingpong", p50_us=p50),
                     row("cpp-worker", "pingpong", p50_us=cpp50),
                     row("clients-4-pipelined", "pipelined", throughput_per_s=thr),
                     row("cpp-worker-clients-4-pipelined", "pipelined", throughput_per_s=cppthr),
                     row("events", "pingpong", worker_p50_us=w),
                     row("cpp-worker-events", "pingpong", worker_p50_us=cppw)]
        with open(os.path.join(cls.tmp, "raw", "brokered.jsonl"), "w") as f:
            f.write("\n".join(json.dumps(r) for r in rows) + "\n")
        with open(os.path.join(cls.tmp, "machine.txt"), "w") as f:
            f.write("date: test\n")
        cls.proc = subprocess.run([sys.executable, SCRIPT, cls.tmp], capture_output=True,
                                  text=True, timeout=120)
        with open(os.path.join(cls.tmp, "summary.json")) as f:
            cls.rows = {(r["path"], r["variant"]): r for r in json.load(f)}
        with open(os.path.join(cls.tmp, "report.md")) as f:
            cls.md = f.read()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_rounds_merge_into_medians_with_ranges(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        r = self.rows[("celery-redis", "default")]
        self.assertEqual((r["p50_us"], r["p50_us_range"], r["rounds"]), (2500, [2000, 3000], 3))
        w = self.rows[("celery-redis", "cpp-worker-events")]
        self.assertEqual((w["worker_p50_us"], w["worker_p50_us_range"]), (200, [150, 250]))

    def test_comparison_gives_ratios_and_targets(self):
        # p50 1.10 ms / 2.50 ms = 0.44 (target 0.8: met); worker time 200 / 2200 = 0.09 (met);
        # throughput 1400 / 450 = 3.11 (target 3: met).
        self.assertIn("Celery's own worker vs offload's C++ worker", self.md)
        self.assertIn("| 0.44× | ≤ 0.8× (met) |", self.md)
        self.assertIn("| 0.09× | ≤ 0.1× (met) |", self.md)
        self.assertIn("| 3.11× | ≥ 3× (met) |", self.md)
        self.assertIn("2.50 ms (2.00 ms–3.00 ms, 3 runs)", self.md)
        with open(os.path.join(self.tmp, "charts", "celery_workers.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main()
