"""benchmarks/gpu_check.py's CPU dry run: every step of the GPU check, at tiny sizes, so the script
is ready (and known to work) whenever a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_cpu_dry_run_passes_every_step(tmp_path, tiny_text_model):
    # As `make gpu-wheels` carries a text model's config and tokenizer to a bare GPU image, the script builds
    # random weights of that architecture: here the tests' tiny BERT's, since the dry run tests the script's
    # steps, not MiniLM's cost (which the GPU run measures).
    result = subprocess.run([sys.executable, str(SCRIPT), "--cpu-dry-run", "--out", str(tmp_path / "out"),
                             "--random-text-init", str(tiny_text_model)], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    amp = report["amp_resume"]["fp32"]
    assert amp["ok"] and amp["sigterm_exit"] == 143 and amp["resumed_from_checkpoint"], amp
    assert report["torchrun"]["ok"] and report["torchrun"]["validation_items"] == report["torchrun"]["dev_rows"]
    assert report["throughput"]["ok"] and all(r["samples_per_second"] > 0 for r in report["throughput"]["runs"].values())
    assert report["memory"]["ok"] and len(report["memory"]["steps"]) == 3
    assert report["encoders"]["ok"] and report["encoders"]["exit"] == 0, report["encoders"]
    assert "| torchrun x2 (gloo), --cache-dir |" in result.stdout  # the summary table
