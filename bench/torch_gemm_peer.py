"""The PyTorch peer of clmoe-bench's expert GEMMs: the same per-expert
groups (gate, up and down projections, the activation left out as for the
OpenBLAS peer) as torch.matmul in float32 and in bfloat16, on the CPU.
Prints "torch_gemm fp32_ms <ms> bf16_ms <ms> threads <n>" (the faster of
one and all threads for each dtype), or "torch_gemm skipped <why>".
Usage: torch_gemm_peer.py d f runs rows_0 rows_1 ... (rows per expert)."""
import os
import sys
import time


def main():
    d, f, runs = (int(a) for a in sys.argv[1:4])
    rows = [int(a) for a in sys.argv[4:]]
    try:
        import torch
    except ImportError as exc:
        print(f"torch_gemm skipped {exc}")
        return
    torch.manual_seed(0)
    result = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        xs = [torch.randn(n, d).to(dtype) for n in rows]
        w1 = [torch.randn(d, f).to(dtype) for _ in rows]
        w3 = [torch.randn(d, f).to(dtype) for _ in rows]
        w2 = [torch.randn(f, d).to(dtype) for _ in rows]

        def experts():
            for x, a, b, c in zip(xs, w1, w3, w2):
                if x.shape[0]:
                    h = x @ a
                    x @ b
                    h @ c

        best = None
        for threads in sorted({1, len(os.sched_getaffinity(0))}):
            torch.set_num_threads(threads)
            experts()
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                experts()
                times.append((time.perf_counter() - start) * 1e3)
            times.sort()
            ms = times[len(times) // 2]
            if best is None or ms < best[0]:
                best = (ms, threads)
        result[name] = best
    print(f"torch_gemm fp32_ms {result['fp32'][0]:.4f} bf16_ms "
          f"{result['bf16'][0]:.4f} threads {result['fp32'][1]} "
          f"{result['bf16'][1]}")


if __name__ == "__main__":
    main()
