"""Kernel microbenchmarks: fused ops against eager and torch.compile of their own references, in one run.

    python -m benchmarks.kernels --ops logprob,entropy,rmu_mse --shapes llama3   # on a GPU
    python -m benchmarks.kernels --shapes small                                  # on CPU

Per op and shape: forward and forward+backward median time, peak extra memory, achieved TFLOP/s or GB/s and
% of the datasheet and of the matmul / copy ceiling measured in the same run; JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import triton
from torch.profiler import ProfilerActivity, profile
from unlearn.kernels.entropy import entropy, entropy_definition
from unlearn.kernels.fused_logprob import fused_linear_logprob, linear_logprob_definition
from unlearn.kernels.rmu_mse import fused_masked_mse, masked_mse_definition

from benchmarks.results_file import result_name

RESULTS = Path(__file__).parent / "results"
# The fused providers: Triton on a GPU (auto) and under the interpreter (a rehearsal), else the chunked PyTorch path.
BACKEND = "triton" if os.environ.get("TRITON_INTERPRET") == "1" else "auto"
# Dense bf16 TFLOP/s and HBM TB/s from the vendor datasheets (SXM parts).
DATASHEET = {"H100": (989.4, 3.35), "H200": (989.4, 4.8), "A100": (312.0, 2.04)}
# Shapes per preset: op → list of dicts.
SHAPES = {
    "llama3": {
        "logprob": [dict(N=n, H=4096, V=128256) for n in (8192, 16384)],
        "logprob_entropy": [dict(N=8192, H=4096, V=128256)],
        "entropy": [dict(N=n, V=128256) for n in (4096, 8192)],
        "rmu_mse": [dict(B=8, T=2048, D=4096, target="vector"), dict(B=8, T=2048, D=4096, target="tensor")],
    },
    "small": {
        "logprob": [dict(N=2048, H=256, V=32000)],
        "logprob_entropy": [dict(N=512, H=256, V=32000)],
        "entropy": [dict(N=512, V=32000)],
        "rmu_mse": [dict(B=4, T=256, D=1024, target="tensor")],
    },
    "tiny": {  # a rehearsal under the interpreter
        "logprob": [dict(N=64, H=32, V=300)],
        "logprob_entropy": [dict(N=32, H=32, V=300)],
        "entropy": [dict(N=16, V=300)],
        "rmu_mse": [dict(B=2, T=8, D=40, target="tensor")],
    },
}


@dataclass
class Case:
    """One op at one shape: inputs, the three providers, and the work it must do."""

    leaves: list[torch.Tensor]  # inputs that get gradients
    providers: dict[str, Callable[[], torch.Tensor]]  # name → forward returning one tensor
    upstream: torch.Tensor  # weights of the outputs in the scalar that is backpropagated
    flops: tuple[float, float] | None  # (forward, forward+backward) model FLOPs
    bytes: tuple[float, float] | None  # (forward, forward+backward) fewest bytes moved


def _logprob_case(N, H, V, device, dtype, entropy_too=False):
    g = torch.Generator(device).manual_seed(0)
    hidden = torch.randn(N, H, device=device, dtype=dtype, generator=g).requires_grad_()
    weight = (torch.randn(V, H, device=device, dtype=dtype, generator=g) / H**0.5).requires_grad_()
    targets = torch.randint(0, V, (N,), device=device, generator=g)
    compiled = torch.compile(linear_logprob_definition, dynamic=False)

    def first(fn):
        def run():
            logp, ent = fn(hidden, weight, targets, with_entropy=entropy_too)
            return logp + ent if entropy_too else logp

        return run

    providers = {
        "eager": first(linear_logprob_definition),
        "compiled": first(compiled),
        "fused": first(functools.partial(fused_linear_logprob, backend=BACKEND)),
    }
    if not entropy_too:  # per-token −cross-entropy = log p(target): the same quantity
        providers["liger"] = lambda: -_liger()(hidden, weight, targets, reduction="none")
        providers["cce"] = lambda: -_cce()(hidden, weight, targets, reduction="none")
    mm = 2.0 * N * H * V
    return Case([hidden, weight], providers, torch.randn(N, device=device, generator=g), (mm, 3 * mm), None)


def _entropy_case(N, V, device, dtype):
    g = torch.Generator(device).manual_seed(0)
    logits = (3 * torch.randn(N, V, device=device, generator=g)).to(dtype).requires_grad_()
    compiled = torch.compile(entropy_definition, dynamic=False)
    providers = {
        "eager": lambda: entropy_definition(logits, temperature=0.7),
        "compiled": lambda: compiled(logits, temperature=0.7),
        "fused": lambda: entropy(logits, temperature=0.7, backend=BACKEND),
    }
    size = N * V * logits.element_size()
    return Case([logits], providers, torch.randn(N, device=device, generator=g), None, (size, 3 * size))


def _rmu_case(B, T, D, target, device, dtype):
    g = torch.Generator(device).manual_seed(0)
    hidden = torch.randn(B, T, D, device=device, dtype=dtype, generator=g).requires_grad_()
    y = torch.randn(D if target == "vector" else (B, T, D), device=device, dtype=dtype, generator=g)
    mask = torch.rand(B, T, device=device, generator=g) > 0.2
    compiled = torch.compile(masked_mse_definition, dynamic=False)
    providers = {
        "eager": lambda: masked_mse_definition(hidden, y, mask),
        "compiled": lambda: compiled(hidden, y, mask),
        "fused": lambda: fused_masked_mse(hidden, y, mask, backend=BACKEND),
    }
    size = hidden.numel() * hidden.element_size()
    reads = size * (2 if target == "tensor" else 1)
    # forward+backward at the floor: read h (and y) once, write ∂h once.
    return Case([hidden], providers, torch.ones((), device=device), None, (reads, reads + size))


def _liger():
    """Liger-Kernel's fused linear cross-entropy (PyPI liger-kernel), imported when its provider runs."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    def loss(*args, **kwargs):
        out = liger_fused_linear_cross_entropy(*args, **kwargs)
        return out[0] if isinstance(out, tuple) else out  # some versions also return the z-loss

    return loss


def _cce():
    """Apple's Cut Cross-Entropy (PyPI cut-cross-entropy), imported when its provider runs."""
    from cut_cross_entropy import linear_cross_entropy

    return linear_cross_entropy


def _build(op: str, shape: dict, device: str, dtype: torch.dtype) -> Case:
    if op == "logprob":
        return _logprob_case(**shape, device=device, dtype=dtype)
    if op == "logprob_entropy":
        return _logprob_case(**shape, device=device, dtype=dtype, entropy_too=True)
    if op == "entropy":
        return _entropy_case(**shape, device=device, dtype=dtype)
    return _rmu_case(**shape, device=device, dtype=dtype)


def _time_ms(fn: Callable[[], object], leaves: list[torch.Tensor], cuda: bool) -> float:
    """Median milliseconds: CUDA events through do_bench on a GPU, the wall clock on CPU."""
    if cuda:
        return triton.testing.do_bench(fn, warmup=50, rep=300, grad_to_none=leaves, return_mode="median")
    fn()
    times = []
    for _ in range(3):
        for leaf in leaves:
            leaf.grad = None
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _peak_bytes(fn: Callable[[], object], leaves: list[torch.Tensor], cuda: bool) -> int:
    """Peak allocation above what was live before fn: the CUDA allocator's counter, or the CPU profiler's."""
    for leaf in leaves:
        leaf.grad = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    ):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def _ceilings(cuda: bool) -> dict:
    """Measured bf16 matmul TFLOP/s and copy GB/s (bytes read + written) on this device."""
    if not cuda:
        return {}
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = triton.testing.do_bench(lambda: a @ b, warmup=100, rep=500, return_mode="median")
    src = torch.randn(1 << 29, device="cuda", dtype=torch.float32)  # 2 GiB
    dst = torch.empty_like(src)
    copy_ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=100, rep=500, return_mode="median")
    return {"matmul_tflops": 2 * 8192**3 / mm_ms / 1e9, "copy_gbps": 2 * src.nbytes / copy_ms / 1e6}


def _datasheet(name: str) -> tuple[float, float] | None:
    return next((v for k, v in DATASHEET.items() if k in name), None)


def _accuracy(device: str, dtype: torch.dtype) -> dict:
    """‖out − ref‖/‖ref‖ of values and gradients against float64: 256 rows of a Llama-3 lm-head on a GPU."""
    n, h, v = (256, 4096, 128256) if device == "cuda" else (64, 256, 32000)
    g = torch.Generator(device).manual_seed(1)
    hidden = torch.randn(n, h, device=device, generator=g).to(dtype)
    weight = (torch.randn(v, h, device=device, generator=g) / h**0.5).to(dtype)
    targets = torch.randint(0, v, (n,), device=device, generator=g)
    targets[::7] = -100
    up = torch.randn(2, n, device=device, generator=g, dtype=torch.float64)
    result = {}
    runs = (
        ("reference", linear_logprob_definition, torch.float64),
        ("eager", linear_logprob_definition, dtype),
        ("fused", fused_linear_logprob, dtype),
    )
    for name, fn, cast in runs:
        leaves = [hidden.to(cast, copy=True).requires_grad_(), weight.to(cast, copy=True).requires_grad_()]
        logp, ent = fn(*leaves, targets, temperature=0.8, with_entropy=True)
        (up[0] * logp + up[1] * ent).sum().backward()
        result[name] = [logp.detach(), ent.detach(), leaves[0].grad, leaves[1].grad]
    names = ("logp", "entropy", "grad_hidden", "grad_weight")
    return {
        provider: {
            k: float((a.double() - b).norm() / b.norm())
            for k, a, b in zip(names, result[provider], result["reference"], strict=True)
        }
        for provider in ("eager", "fused")
    }


def run(ops: list[str], preset: str, providers: list[str], out: Path | None = None) -> dict:
    """Every op × shape × provider, with ratios against eager and compiled from the same run; with `out`, the report
    so far is saved after each shape, so a run stopped by a timeout keeps what it measured."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    name = torch.cuda.get_device_name() if cuda else f"CPU {platform.processor() or platform.machine()}"
    ceilings, sheet = _ceilings(cuda), _datasheet(name)
    accuracy = _accuracy(device, dtype)
    print(f"{name}: ceilings {ceilings}, logprob relative errors vs float64 {accuracy}", flush=True)
    rows = []
    report = dict(
        device=name,
        date=datetime.date.today().isoformat(),
        torch=torch.__version__,
        triton=triton.__version__,
        dtype=str(dtype).removeprefix("torch."),
        preset=preset,
        ceilings=ceilings,
        logprob_accuracy=accuracy,
        datasheet=dict(zip(("bf16_tflops", "hbm_tbps"), sheet, strict=True)) if sheet else None,
        results=rows,
    )
    for op in ops:
        for shape in SHAPES[preset][op]:
            case = _build(op, shape, device, dtype)
            found = {}
            for provider in (p for p in providers if p in case.providers):
                fwd = case.providers[provider]

                def both(fwd=fwd, up=case.upstream):
                    (fwd() * up).sum().backward()

                try:
                    both()  # compiles and warms up
                    row = dict(
                        op=op,
                        shape=shape,
                        dtype=str(dtype).removeprefix("torch."),
                        provider=provider,
                        fwd_ms=_time_ms(fwd, case.leaves, cuda),
                        fwdbwd_ms=_time_ms(both, case.leaves, cuda),
                        fwd_peak_bytes=_peak_bytes(fwd, case.leaves, cuda),
                        fwdbwd_peak_bytes=_peak_bytes(both, case.leaves, cuda),
                    )
                except Exception as error:  # e.g. torch.compile without a C++ compiler: record and go on
                    rows.append(dict(op=op, shape=shape, provider=provider, error=repr(error)[:300]))
                    print(f"{op} {shape} {provider}: {error!r}"[:300], flush=True)
                    continue
                _rates(row, case, ceilings, sheet)
                found[provider] = row
                rows.append(row)
                print(_line(row), flush=True)
            for row in found.values():
                for base in ("eager", "compiled"):
                    if base in found:
                        ref = found[base]
                        row[f"speedup_fwd_vs_{base}"] = ref["fwd_ms"] / row["fwd_ms"]
                        row[f"speedup_fwdbwd_vs_{base}"] = ref["fwdbwd_ms"] / row["fwdbwd_ms"]
                        peak = max(ref["fwdbwd_peak_bytes"], 1)
                        row[f"memory_ratio_vs_{base}"] = row["fwdbwd_peak_bytes"] / peak
            del case
            if cuda:
                torch.cuda.empty_cache()
            if out is not None:
                _save(report, out)
    return report


def _rates(row: dict, case: Case, ceilings: dict, sheet: tuple[float, float] | None) -> None:
    """Achieved TFLOP/s (matmul ops) or GB/s (memory-bound ops) and their share of both ceilings."""
    for phase, index in (("fwd", 0), ("fwdbwd", 1)):
        seconds = row[f"{phase}_ms"] / 1e3
        if case.flops:
            rate = case.flops[index] / seconds / 1e12
            row[f"{phase}_tflops"] = rate
            if ceilings:
                row[f"{phase}_pct_measured_matmul"] = 100 * rate / ceilings["matmul_tflops"]
            if sheet:
                row[f"{phase}_pct_datasheet"] = 100 * rate / sheet[0]
        else:
            rate = case.bytes[index] / seconds / 1e9
            row[f"{phase}_gbps"] = rate
            if ceilings:
                row[f"{phase}_pct_measured_copy"] = 100 * rate / ceilings["copy_gbps"]
            if sheet:
                row[f"{phase}_pct_datasheet"] = 100 * rate / (1e3 * sheet[1])


def _line(row: dict) -> str:
    unit = "tflops" if "fwd_tflops" in row else "gbps"
    return (
        f"{row['op']:16s} {json.dumps(row['shape']):48s} {row['provider']:8s} "
        f"fwd {row['fwd_ms']:9.3f} ms  "
        f"fwd+bwd {row['fwdbwd_ms']:9.3f} ms  peak {row['fwdbwd_peak_bytes'] / 2**20:9.1f} MiB  "
        f"{unit} {row[f'fwdbwd_{unit}']:8.3g}"
    )


def _save(report: dict, out: Path) -> Path:
    """Write atomically to <out>/kernels_<device>_<date>.json."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result_name('kernels', report['device'], report['date'])}.json"
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as f:
        json.dump(report, f, indent=1)
    os.replace(f.name, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ops",
        default="logprob,logprob_entropy,entropy,rmu_mse",
        help="comma-separated: logprob, logprob_entropy, entropy, rmu_mse",
    )
    parser.add_argument(
        "--shapes", default=None, choices=sorted(SHAPES), help="shape preset; default llama3 on a GPU, small on CPU"
    )
    parser.add_argument(
        "--providers",
        default="eager,compiled,fused,liger,cce",
        help="comma-separated subset; liger and cce serve logprob only",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON result")
    args = parser.parse_args()
    preset = args.shapes or ("llama3" if torch.cuda.is_available() else "small")
    ops = args.ops.split(",")
    unknown = set(ops) - set(SHAPES[preset])
    if unknown:
        parser.error(f"unknown ops {sorted(unknown)}; choose from {sorted(SHAPES[preset])}")
    report = run(ops, preset, args.providers.split(","), args.out)
    print(f"saved {_save(report, args.out)}")


if __name__ == "__main__":
    main()
