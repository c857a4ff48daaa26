"""The PyTorch peer of clmoe-bench --train: the same layer (softmax top-2
router, SwiGLU experts, float32) as a plain expert loop with autograd, the
way Hugging Face's Mixtral block writes it (one weight tensor per expert,
tokens gathered per expert, index_add back), forward + backward timed as
clmoe's. Prints one line: "torch_ms <median>"
(or "torch_ms skipped <why>"). Usage: train_peer.py T d f E k runs."""
import os
import sys
import time


def main():
    T, d, f, E, k, runs = (int(a) for a in sys.argv[1:7])
    try:
        import torch
    except ImportError as exc:
        print(f"torch_ms skipped {exc}")
        return
    torch.manual_seed(0)
    x = torch.randn(T, d, requires_grad=True)
    wr = (torch.randn(d, E) * 0.1).requires_grad_()
    # Separate leaves per expert: slicing one [E, d, f] tensor would make
    # every slice's backward write a whole [E, d, f] gradient.
    w1 = [(torch.randn(d, f) * 0.02).requires_grad_() for _ in range(E)]
    w3 = [(torch.randn(d, f) * 0.02).requires_grad_() for _ in range(E)]
    w2 = [(torch.randn(f, d) * 0.02).requires_grad_() for _ in range(E)]
    dy = torch.randn(T, d)

    def step():
        p = torch.softmax(x @ wr, dim=-1)
        g, idx = torch.topk(p, k, dim=-1)
        g = g / g.sum(-1, keepdim=True)
        y = torch.zeros(T, d)
        for e in range(E):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            xe = x[tok]
            h = torch.nn.functional.silu(xe @ w1[e]) * (xe @ w3[e])
            y = y.index_add(0, tok, (h @ w2[e]) * g[tok, slot, None])
        y.backward(dy)
        for t in [x, wr] + w1 + w3 + w2:
            t.grad = None

    # The peer's best: every core the process may run on, or one thread
    # (this torch build starts with one; on two cores one can be faster).
    best = None
    for threads in sorted({1, len(os.sched_getaffinity(0))}):
        torch.set_num_threads(threads)
        step()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1e3)
        times.sort()
        ms = times[len(times) // 2]
        if best is None or ms < best[0]:
            best = (ms, threads)
    print(f"torch_ms {best[0]:.3f} threads {best[1]}")


if __name__ == "__main__":
    main()
