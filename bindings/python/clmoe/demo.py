"""python3 -m clmoe.demo [--plot routing.png]: the C demo's MoE layer
(E = 16, d = 512, d_ff = 1024, SwiGLU, seeded weights, T = 1024) under four
routing policies; --plot draws the K histogram per policy and expert load.

python3 -m clmoe.demo --checkpoint DIR --layer L [--hidden x.npy]: MoE layer
L of a Hugging Face checkpoint (Mixtral, OLMoE, Qwen2-MoE, Qwen3-MoE) with
the model's own top-k, then with top-p and importance routing on the same
weights, on the given hidden states [T, d] (.npy) or random ones."""
import argparse
import time

import numpy as np

import clmoe

T, D, F, E = 1024, 512, 1024, 16

POLICIES = [("TOPK(k=2)", dict(policy="top_k", k=2)),
            ("TOPP(p=0.4)", dict(policy="top_p", p=0.4)),
            ("IMPORTANCE(k~2)", dict(policy="importance", k_min=1, k_max=4,
                                     k_mean=2.0)),
            ("RESONANCE(k=2)", dict(policy="resonance", k=2,
                                    capacity_factor=1.0))]


def synthetic_attention(rng, T):
    """A causal attention matrix A[1, T, T] with a few anchor tokens that
    draw attention; clmoe scores it into DA-MoE importance."""
    bias = np.where(np.arange(T) % 97 == 0, 1.0,
                    np.where(np.arange(T) % 13 == 0, 0.6, 0.0))
    logits = bias[None, :] + 0.5 * rng.normal(size=(T, T))
    logits[np.triu_indices(T, 1)] = -np.inf
    a = np.exp(logits - logits.max(1, keepdims=True))
    return (a / a.sum(1, keepdims=True)).astype(np.float32)[None]


def time_layer(layer, x, imp):
    """(median ms of 5 runs after a warm-up, the last routing)."""
    layer(x, importance=imp)  # warm-up (first use compiles kernels)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        _, r = layer(x, importance=imp)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)), r


def checkpoint_demo(ctx, args, rng):
    path = args.checkpoint
    base = clmoe.load_moe_layer(ctx, path, args.layer)
    info = base.info
    T = args.tokens
    if args.hidden:
        x = np.load(args.hidden).astype(np.float32)
        if x.ndim != 2 or x.shape[1] != info["d_model"]:
            raise SystemExit(f"--hidden must be [T, {info['d_model']}]; got "
                             f"{x.shape}")
        T = x.shape[0]
    else:
        x = rng.normal(size=(T, info["d_model"])).astype(np.float32)
    k = info["top_k"]
    print(f"{path}, layer {args.layer}: {info['arch']}, E={info['num_experts']}"
          f", d={info['d_model']}, d_ff={info['d_ff']}, top-{k} "
          f"({'renormalised' if info['renormalize'] else 'raw'} gates), "
          f"{info['dtype']} weights"
          + (f", shared expert d_ff={info['shared_d_ff']}"
             if info["shared_d_ff"] else "") + f"; T={T}")
    groups, allowed = info["groups"], info["num_experts"]
    if groups[0] > 1:
        allowed = allowed // groups[0] * groups[1]
    conventions = [f"{info['scoring']} scores"]
    if info["selection_bias"]:
        conventions.append("selection bias")
    if info["router_bias"]:
        conventions.append("router bias")
    if groups[0] > 1:
        conventions.append(f"{groups[1]} of {groups[0]} groups "
                           f"({info['group_score']})")
    if info["gate_scale"] != 1.0:
        conventions.append(f"gates x {info['gate_scale']:g}")
    conventions.append(f"gates on the expert {info['gate_position']}")
    conventions.append(f"{info['activation']} experts" +
                       (" with biases" if info["expert_biases"] else ""))
    print("conventions: " + ", ".join(conventions) + "\n")
    imp = ctx.score_attention(probs=synthetic_attention(rng, T), causal=True)
    runs = [(f"model top-{k}", base, None),
            ("TOPP(p=0.5)", clmoe.load_moe_layer(ctx, path, args.layer,
                                                 policy="top_p", p=0.5),
             None),
            (f"IMPORTANCE(k~{k})",
             clmoe.load_moe_layer(ctx, path, args.layer, policy="importance",
                                  k_min=1, k_max=min(2 * k, allowed),
                                  k_mean=float(k)), imp)]
    print(f"{'policy':<18} {'mean K':>6} {'K histogram (K=0,1,..)':<28} "
          f"{'ms':>8}")
    results = []
    for name, layer, importance in runs:
        ms, r = time_layer(layer, x, importance)
        st = r.stats
        hist = " ".join(str(int(v)) for v in st["k_hist"][:st["max_k"] + 1])
        print(f"{name:<18} {st['mean_k']:6.2f} {hist:<28} {ms:8.1f}")
        results.append((name, st))
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--plot", help="write a PNG figure of K and expert load")
    ap.add_argument("--device", help="CLMOE_DEVICE-style selector")
    ap.add_argument("--checkpoint", help="a Hugging Face model directory")
    ap.add_argument("--layer", type=int, default=0,
                    help="decoder layer to load (with --checkpoint)")
    ap.add_argument("--hidden", help=".npy hidden states [T, d] (with "
                    "--checkpoint; default random)")
    ap.add_argument("--tokens", type=int, default=256,
                    help="random tokens without --hidden (default 256)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    ctx = clmoe.Context(device=args.device)
    print(f"clmoe {clmoe.version()} on {ctx.device_name}")
    if args.checkpoint:
        results = checkpoint_demo(ctx, args, rng)
        if args.plot:
            plot(results, args.plot)
            print(f"\nwrote {args.plot}")
        return
    x = rng.normal(size=(T, D)).astype(np.float32)
    wr = (rng.normal(size=(D, E)) * 2 / np.sqrt(D)).astype(np.float32)
    w1, w3 = (rng.normal(size=(2, E, D, F)) / np.sqrt(D)).astype(np.float32)
    w2 = (rng.normal(size=(E, F, D)) / np.sqrt(F)).astype(np.float32)
    imp = ctx.score_attention(probs=synthetic_attention(rng, T), causal=True)
    experts = clmoe.Experts(ctx, w1=w1, w2=w2, w3=w3, activation="swiglu")
    print(f"MoE layer: T={T}, d={D}, d_ff={F}, E={E}, SwiGLU\n")
    print(f"{'policy':<16} {'mean K':>6} {'dropped':>8} {'load min':>9} "
          f"{'load max':>9} {'forward ms':>11} {'tokens/s':>9}")
    results = []
    for name, params in POLICIES:
        layer = clmoe.MoELayer(clmoe.Router(ctx, weight=wr, **params), experts)
        ms, r = time_layer(layer, x, imp)
        st = r.stats
        print(f"{name:<16} {st['mean_k']:6.2f} {st['dropped']:8d} "
              f"{100 * st['load'].min():8.1f}% {100 * st['load'].max():8.1f}% "
              f"{ms:11.1f} {T / ms * 1e3:9.0f}")
        results.append((name, st))
    if args.plot:
        plot(results, args.plot)
        print(f"\nwrote {args.plot}")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_k, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(results)
    for i, (name, st) in enumerate(results):
        ks = np.arange(len(st["k_hist"]))
        keep = ks <= max(st["max_k"], 1)
        ax_k.bar(ks[keep] + i * width, st["k_hist"][keep], width, label=name)
        ax_l.plot(np.arange(len(st["load"])), 100 * st["load"], marker="o",
                  label=name)
    ax_k.set(title="experts per token (K histogram)", xlabel="K",
             ylabel="tokens")
    ax_k.legend()
    ax_l.set(title="expert load", xlabel="expert", ylabel="% of slots")
    ax_l.axhline(100 / len(results[0][1]["load"]), color="gray", ls="--",
                 lw=1)
    ax_l.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
