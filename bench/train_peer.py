"""The PyTorch peer of clmoe-bench --train: the same layer (softmax top-2
router, SwiGLU experts, float32) as a plain expert loop with autograd,
forward + backward timed as clmoe's. Prints one line: "torch_ms <median>"
(or "torch_ms skipped <why>"). Usage: train_peer.py T d f E k runs."""
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
    w1 = (torch.randn(E, d, f) * 0.02).requires_grad_()
    w3 = (torch.randn(E, d, f) * 0.02).requires_grad_()
    w2 = (torch.randn(E, f, d) * 0.02).requires_grad_()
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
        for t in (x, wr, w1, w3, w2):
            t.grad = None

    step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    print(f"torch_ms {times[len(times) // 2]:.3f} threads "
          f"{torch.get_num_threads()}")


if __name__ == "__main__":
    main()
