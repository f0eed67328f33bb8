"""Benchmark result names stay as the files in benchmarks/results/ are already named."""

import pytest

from benchmarks.results_file import result_name


@pytest.mark.parametrize(
    ("kind", "device", "expected"),
    [
        ("kernels", "CPU x86_64", "kernels_cpu-x86-64_2026-11-23"),
        ("mcq_real", "CPU x86_64", "mcq_real_cpu-x86-64_2026-11-23"),
        ("methods", "CPU, 2 cores (x86_64)".split(",")[0], "methods_cpu_2026-11-23"),
        ("zero3_memory", "NVIDIA H100 80GB HBM3", "zero3_memory_nvidia-h100-80gb-hbm3_2026-11-23"),
    ],
)
def test_result_name(kind, device, expected):
    assert result_name(kind, device, "2026-11-23") == expected
