"""Tile-shape sweep for the fused log-prob kernels on a GPU: python -m benchmarks.logprob_tiles [N]."""

import sys

import torch
import triton
from unlearn.kernels import fused_logprob

CONFIGS = [  # (BLOCK_N, BLOCK_V, BLOCK_H, GROUP_N, num_warps, num_stages)
    (128, 128, 64, 8, 8, 3),
    (128, 128, 64, 8, 4, 4),
    (128, 256, 64, 8, 8, 3),
    (64, 256, 64, 8, 8, 4),
    (128, 128, 128, 8, 8, 3),
]


def main(n: int = 8192, h: int = 4096, v: int = 128256) -> None:
    hidden = torch.randn(n, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    weight = (torch.randn(v, h, device="cuda", dtype=torch.bfloat16) / h**0.5).requires_grad_()
    targets = torch.randint(0, v, (n,), device="cuda")
    up = torch.randn(n, device="cuda")
    flops = 2.0 * n * h * v
    for config in CONFIGS:
        fused_logprob.GPU_CONFIG = config

        def fwd():
            return fused_logprob.fused_linear_logprob(hidden, weight, targets)[0]

        def both():
            (fwd() * up).sum().backward()

        try:
            both()
            f = triton.testing.do_bench(fwd, warmup=50, rep=200, return_mode="median")
            b = triton.testing.do_bench(both, warmup=50, rep=200, grad_to_none=[hidden, weight], return_mode="median")
        except Exception as error:  # a tile that does not fit in shared memory or registers
            print(config, "failed:", repr(error)[:200])
            continue
        print(
            f"{config}: fwd {f:.2f} ms ({flops / f / 1e9:.0f} TFLOP/s)  fwd+bwd {b:.2f} ms "
            f"(model {3 * flops / b / 1e9:.0f}, executed {4 * flops / b / 1e9:.0f} TFLOP/s)",
            flush=True,
        )


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
