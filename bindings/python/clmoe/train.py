"""Training demo: `python3 -m clmoe.train [--steps N] [--plot FILE.svg]`.

A small network (input projection -> 2 MoE blocks with residuals ->
classifier) learns a synthetic task of three difficulty levels that the
program generates (a linear rule, a two-feature XOR, a three-feature
parity), with AdamW on the default device, once with top-2 routing and
once with top-p routing (p = 0.4, with the entropy loss). It prints loss
and mean K per step, K by difficulty at the end, and with --plot writes an
SVG of loss and mean K per step for both runs. Needs PyTorch."""
import argparse
import sys
import time

import numpy as np
import torch

from .torch import MoE, default_context

LEVELS = ("linear", "xor", "parity")
FEATURES = 8


def make_batch(rng, n):
    """Inputs [n, FEATURES + 3] (features + one-hot level), labels in 0..3
    and each example's level."""
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    level = rng.integers(0, 3, n)
    pos = x > 0
    labels = np.where(
        level == 0, 2 * pos[:, 0] + pos[:, 1],
        np.where(level == 1, 2 * (pos[:, 0] ^ pos[:, 1]) + pos[:, 2],
                 2 * (pos[:, 0] ^ pos[:, 1] ^ pos[:, 2]) +
                 (pos[:, 3] ^ pos[:, 4])))
    onehot = np.eye(3, dtype=np.float32)[level]
    return (torch.from_numpy(np.concatenate([x, onehot], 1)),
            torch.from_numpy(labels.astype(np.int64)), level)


class Net(torch.nn.Module):
    def __init__(self, d, f, E, **moe_args):
        super().__init__()
        self.embed = torch.nn.Linear(FEATURES + 3, d)
        self.norms = torch.nn.ModuleList([torch.nn.LayerNorm(d)
                                          for _ in range(2)])
        self.moes = torch.nn.ModuleList([MoE(d, f, E, **moe_args)
                                         for _ in range(2)])
        self.head = torch.nn.Linear(d, 4)

    def forward(self, x):
        h = self.embed(x)
        for norm, moe in zip(self.norms, self.moes):
            h = h + moe(norm(h))
        return self.head(h)

    def aux_loss(self):
        return sum(m.aux_loss for m in self.moes)

    def mean_k(self):
        return float(np.mean([m.last_routing["mean_k"] for m in self.moes]))


def train(name, steps, batch, seed, d, f, E, **moe_args):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = Net(d, f, E, **moe_args)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.01)
    losses, ks = [], []
    start = time.perf_counter()
    for step in range(steps):
        x, y, _ = make_batch(rng, batch)
        task = torch.nn.functional.cross_entropy(net(x), y)
        (task + net.aux_loss()).backward()
        opt.step()
        opt.zero_grad()
        losses.append(task.item())
        ks.append(net.mean_k())
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"  {name:6s} step {step:4d}  loss {losses[-1]:.4f}  "
                  f"mean K {ks[-1]:.2f}", flush=True)
    seconds = time.perf_counter() - start
    # K and accuracy by difficulty on a fresh batch.
    x, y, level = make_batch(np.random.default_rng(seed + 1), 3 * batch)
    with torch.no_grad():
        pred = net(x).argmax(1)
    counts = [m.last_routing["counts"] for m in net.moes]
    by_level = {}
    for i, lv in enumerate(LEVELS):
        sel = level == i
        k = float(np.mean([c[sel].mean() for c in counts]))
        acc = float((pred[torch.from_numpy(sel)] ==
                     y[torch.from_numpy(sel)]).float().mean())
        by_level[lv] = (k, acc)
    return {"loss": losses, "k": ks, "seconds": seconds, "by_level": by_level}


def svg_plot(path, runs):
    """Loss (left) and mean K (right) per step, one line per run."""
    w, h, pad = 900, 320, 40
    colours = ("#1f77b4", "#d62728")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" '
             f'height="{h}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>']
    for panel, key in enumerate(("loss", "k")):
        x0, pw, ph = pad + panel * (w // 2), w // 2 - 2 * pad, h - 2 * pad
        top = max(max(r[key]) for r in runs.values())
        bottom = 0.0
        parts.append(f'<text x="{x0}" y="{pad - 12}">'
                     f'{"task loss" if key == "loss" else "mean K"} per step '
                     f'(0 to {top:.2f})</text>')
        parts.append(f'<rect x="{x0}" y="{pad}" width="{pw}" height="{ph}" '
                     f'fill="none" stroke="#888"/>')
        for (name, r), c in zip(runs.items(), colours):
            n = len(r[key])
            pts = " ".join(
                f"{x0 + pw * i / max(1, n - 1):.1f},"
                f"{pad + ph * (1 - (v - bottom) / (top - bottom or 1)):.1f}"
                for i, v in enumerate(r[key]))
            parts.append(f'<polyline points="{pts}" fill="none" '
                         f'stroke="{c}" stroke-width="1.2"/>')
            parts.append(f'<text x="{x0 + pw - 60}" fill="{c}" '
                         f'y="{pad + 16 + 14 * list(runs).index(name)}">'
                         f'{name}</text>')
    parts.append("</svg>")
    with open(path, "w") as out:
        out.write("\n".join(parts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", metavar="FILE.svg")
    args = ap.parse_args(argv)
    ctx = default_context()
    print(f"clmoe training demo on {ctx.device_name}: 2 MoE blocks, d = 32, "
          f"d_ff = 64, E = 8, batch {args.batch}, {args.steps} AdamW steps")
    shape = dict(d=32, f=64, E=8)
    runs = {
        "top-2": train("top-2", args.steps, args.batch, args.seed,
                       policy="top_k", k=2, balance_coeff=0.01, **shape),
        "top-p": train("top-p", args.steps, args.batch, args.seed,
                       policy="top_p", p=0.4, balance_coeff=0.01,
                       entropy_coeff=0.01, **shape),
    }
    ok = True
    print("\nrun     first loss  last loss (mean of last 10)  ratio   "
          "mean K   seconds")
    for name, r in runs.items():
        first, last = r["loss"][0], float(np.mean(r["loss"][-10:]))
        ok &= last <= 0.5 * first
        print(f"{name:6s}  {first:10.4f}  {last:27.4f}  {last / first:5.2f}  "
              f"{np.mean(r['k'][-10:]):7.2f}  {r['seconds']:8.1f}")
    print("\nK and accuracy by difficulty (fresh batch, after training):")
    for name, r in runs.items():
        cells = "  ".join(f"{lv}: K {k:.2f} acc {acc:.2f}"
                          for lv, (k, acc) in r["by_level"].items())
        print(f"  {name:6s} {cells}")
    kp = runs["top-p"]["k"]
    print(f"\ntop-p mean K: {np.mean(kp[:10]):.2f} over the first 10 steps, "
          f"{np.mean(kp[-10:]):.2f} over the last 10 (measured)")
    if args.plot:
        svg_plot(args.plot, runs)
        print(f"plot written to {args.plot}")
    if not ok:
        print("the loss did not fall to half its first value", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
