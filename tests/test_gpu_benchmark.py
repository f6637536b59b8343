"""benchmarks/gpu.py runs anywhere at toy size (CPU here) and writes a JSON row with every column (issue 17)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = mod  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("gpu_bench", None)


def test_toy_run_writes_every_column(gpu_bench, tmp_path, capsys):
    out = tmp_path / "toy.json"
    assert gpu_bench.main(["--toy", "--models", "vits16", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "img/s" in printed and "MFU" in printed and f"wrote {out}" in printed
    d = json.loads(out.read_text())
    assert d["toy"] is True and d["device"] == "cpu" and d["columns"] == gpu_bench.COLUMNS
    rows = d["rows"]
    assert {(r["precision"], r["compile"], r["views"]) for r in rows} == set(gpu_bench.plan(False))
    for r in rows:
        assert set(gpu_bench.COLUMNS) <= set(r), set(gpu_bench.COLUMNS) - set(r)
        assert r["status"] == "ok", r["status"]
        assert r["model"] == "ViT-S/16" and r["batch"] == 8
        assert r["images_per_s"] > 0 and r["flops_per_step"] > 0 and r["achieved_tflops"] > 0
        assert r["peak_mem_gib"] > 0
        phases = [r[k] for k in ("data_ms", "forward_ms", "sigreg_ms", "backward_ms", "optimizer_ms")]
        assert all(p >= 0 for p in phases) and r["sigreg_ms"] > 0
        assert math.isclose(sum(phases), r["step_ms"], rel_tol=1e-6)  # the split adds up to the step
        assert 0 < r["sigreg_share"] < 1
        assert r["peak_tflops"] is None and r["mfu"] is None  # a CPU has no entry in the peak table
    assert {r["workers"] for r in rows if r["views"] == "cpu"} == {0}


def test_peak_table(gpu_bench):
    assert gpu_bench.device_peaks("NVIDIA H200")["bf16"] == pytest.approx(989.4)
    assert gpu_bench.device_peaks("NVIDIA H100 80GB HBM3")["bf16"] == pytest.approx(989.4)
    assert gpu_bench.device_peaks("NVIDIA H100 PCIe")["bf16"] == pytest.approx(756.0)
    assert gpu_bench.device_peaks("NVIDIA A100-SXM4-80GB") == {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}
    assert gpu_bench.device_peaks("NVIDIA L4")["fp32"] == pytest.approx(30.3)
    assert gpu_bench.device_peaks("NVIDIA L40S")["bf16"] == pytest.approx(362.0)
    assert gpu_bench.device_peaks("NVIDIA H100 80GB HBM3 MIG 3g.40gb") is None  # a slice: its share is unknown
    assert gpu_bench.device_peaks("Some Future GPU") is None
    assert gpu_bench.row_peak(None, "bf16") == (None, "unknown")
    assert gpu_bench.row_peak({"bf16": 1.0, "tf32": 2.0, "fp32": 3.0}, "bf16") == (1.0, "bf16")


def test_out_of_memory_halves_the_batch(gpu_bench, tmp_path, monkeypatch):
    """A row that does not fit is retried at half the batch until it does (simulated OOM above batch 2)."""
    import torch

    real = gpu_bench.run_row
    tried = []

    def run_row(model, precision, compiled, views, batch, *a, **k):
        tried.append(batch)
        if batch > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return real(model, precision, compiled, views, batch, *a, **k)

    monkeypatch.setattr(gpu_bench, "run_row", run_row)
    monkeypatch.setattr(gpu_bench, "plan", lambda full: [("fp32", False, "device")])
    out = tmp_path / "oom.json"
    assert gpu_bench.main(["--toy", "--models", "vits16", "--json", str(out)]) == 0
    assert tried == [8, 4, 2]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "ok" and row["batch"] == 2
