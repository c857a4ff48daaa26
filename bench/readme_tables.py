#!/usr/bin/python3
"""The README's performance tables, generated from the committed results.

README.md marks each generated table with
    <!-- bench-table KIND MACHINE -->
    ...
    <!-- /bench-table -->
where KIND is stages, policies, weights or targets (from
bench/results/MACHINE/clmoe-bench.json), score or score-targets (from
score.json), train (train.json, clmoe-bench --train), or route or
route-families (route.json, bench_route), load (load.json,
clmoe-bench --load), or ep (ep.json, clmoe-bench-ep). Each table opens with a line that
names the machine, the commit and the date its figures come from.

    bench/readme_tables.py          rewrite README.md's tables
    bench/readme_tables.py --check  exit 1 if any table differs (a ctest)
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(
    r"(<!-- bench-table (\S+) (\S+) -->\n)(.*?)(<!-- /bench-table -->)", re.S)


def provenance(d, machine, stem):
    where = f"`bench/results/{machine}/{stem}.json`"
    p = d.get("provenance")
    if not p:
        return (f"From {where} ({d.get('device', '?')}; recorded before "
                f"results carried their commit).")
    commit = p["commit"][:10] + (" with uncommitted changes"
                                 if p.get("dirty") else "")
    return (f"From {where}: commit {commit}, {p['device']} "
            f"({p['platform']}), CPU {p['cpu']}, {p['date'][:10]}.")


def fmt(v, digits=1):
    return f"{v:.{digits}f}"


def stages(d):
    rows = ["| workload | N | score | route | dispatch | experts | combine "
            "| forward | grouped GFLOP/s | other path | OpenBLAS loop | "
            "OpenBLAS dense | CLBlast dense | grouped, 1 dense expert | "
            "PyTorch fp32 loop | PyTorch bf16 loop |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in d["workloads"]:
        ms, gf = w["ms"], w["expert_gflop"]
        other = next(v for k, v in ms.items()
                     if k.startswith("experts_") and k != "experts_alternating_with_dense")

        def g(t):
            return fmt(gf / (t * 1e-3), 0) if t else "-"
        rows.append(
            f"| {w['name']} (T={w['T']}, d={w['d']}, f={w['f']}, E={w['E']}, "
            f"top-{w['k']}) | {w['N']} | {fmt(ms['score'], 2)} | "
            f"{fmt(ms['route'], 2)} | {fmt(ms['dispatch'], 2)} | "
            f"{fmt(ms['experts'])} | {fmt(ms['combine'], 2)} | "
            f"{fmt(ms['forward'])} | {g(ms['experts'])} | {g(other)} | "
            f"{g(ms['openblas_loop'])} | {g(ms['openblas_dense'])} | "
            f"{g(ms['dense_clblast'])} | {g(ms['dense_same_kernel'])} | "
            f"{g(ms.get('torch_fp32_loop'))} | {g(ms.get('torch_bf16_loop'))} "
            "|")
    return rows


def policies(d):
    names = [p["name"] for p in d["workloads"][0]["policies"]]
    rows = ["| workload | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|"]
    for w in d["workloads"]:
        cells = [f"{fmt(p['forward_ms'])} (K {p['mean_k']:.2f})"
                 for p in w["policies"]]
        rows.append(f"| {w['name']} | " + " | ".join(cells) + " |")
    return rows


def weights(d):
    rows = ["| workload | weights | experts ms | GFLOP/s | MiB streamed | "
            "GB/s | of bandwidth |", "|---|---|---|---|---|---|---|"]
    for w in d["workloads"]:
        for x in w.get("weights", []):
            rows.append(
                f"| {w['name']} | {x['dtype']} | {fmt(x['experts_ms'], 2)} | "
                f"{fmt(x['gflops'], 0)} | "
                f"{fmt(x['streamed_bytes'] / 2**20)} | "
                f"{fmt(x['stream_gbs'])} | "
                f"{100 * x['fraction_of_bandwidth']:.0f} % |")
    rows.append(f"(memory bandwidth measured in the same run: "
                f"{d['memory_bandwidth_gbs']:.1f} GB/s)")
    return rows


def targets(d):
    rows = ["| target | measured | goal | |", "|---|---|---|---|"]
    for t in d["targets"]:
        rows.append(f"| {t['target']} | {t['measured']:.3f} | "
                    f"{t['goal']:.3f} | "
                    f"{'met' if t['met'] else '**not met**'} |")
    return rows


def score(d):
    rows = ["| T | H | H_kv | dh | two-pass ms | lse ms | materialised ms "
            "| GF two-pass | GF lse | two-pass / dense expert | extra MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in d["points"]:
        mat = p.get("materialised_ms") or 0
        rows.append(
            f"| {p['T']} | {p['H']} | {p['H_kv']} | {p['dh']} | "
            f"{fmt(p['two_pass_ms'])} | {fmt(p['lse_ms'])} | "
            f"{fmt(mat) if mat > 0 else '-'} | "
            f"{fmt(p['two_pass_qk_gflops'], 0)} | "
            f"{fmt(p['lse_qk_gflops'], 0)} | "
            f"{p['two_pass_qk_gflops'] / d['grouped_dense_gflops']:.2f} | "
            f"{fmt(p['fused_extra_mib'])} |")
    rows.append(f"(the grouped expert kernel on one dense expert of W1's "
                f"size, same run: {d['grouped_dense_gflops']:.0f} GFLOP/s)")
    return rows


def score_targets(d):
    rows = ["| target | value | |", "|---|---|---|"]
    for t in d["targets"]:
        verdict = ("information" if t["met"] is None
                   else "met" if t["met"] else "**not met**")
        rows.append(f"| {t['target']} | {t['value']:.3f} | {verdict} |")
    return rows


def train(d):
    t = d["train"]
    torch_ms = t["torch_ms"]
    rows = [f"T {t['T']}, d {t['d']}, f {t['f']}, E {t['E']}, SwiGLU, float32 "
            "weights, every gradient.", "",
            "| | ms | ratio | target | |", "|---|---|---|---|---|",
            f"| clmoe_forward, top-2 | {fmt(t['forward_ms'], 2)} | | | |",
            f"| training forward (kept state, aux losses) | "
            f"{fmt(t['forward_train_ms'], 2)} | | | |"]

    def verdict(ok):
        return "met" if ok else "**not met**"
    rows.append(f"| forward + backward, top-2 | {fmt(t['fwd_bwd_top2_ms'], 2)} "
                f"| ÷ forward {t['fwd_bwd_over_fwd']:.2f} | <= 3.3 | "
                f"{verdict(t['fwd_bwd_over_fwd'] <= 3.3)} |")
    rows.append(f"| forward + backward, top-p (p {t['topp_p']:.3f}, mean K "
                f"{t['topp_mean_k']:.2f}) | {fmt(t['fwd_bwd_topp_ms'], 2)} | "
                f"÷ top-2 {t['topp_over_top2']:.2f} | <= 0.8 | "
                f"{verdict(t['topp_over_top2'] <= 0.8)} |")
    if torch_ms > 0:
        rows.append(f"| PyTorch fp32 expert loop + autograd | "
                    f"{fmt(torch_ms, 1)} | ÷ clmoe {t['torch_over_clmoe']:.2f}"
                    f" | >= 1.5 | {verdict(t['torch_over_clmoe'] >= 1.5)} |")
    else:
        rows.append("| PyTorch peer | skipped (torch not installed) | | | |")
    return rows


def route(d):
    rows = [f"T = {d['T']}, d = {d['d']}, median of {d['runs']}.", "",
            "| policy | E | router GEMM ms | policy kernels ms | route ns/token "
            "| policy / GEMM |", "|---|---|---|---|---|---|"]
    for r in d["policies"]:
        rows.append(f"| {r['policy']} | {r['E']} | {r['gemm_ms']:.3f} | "
                    f"{r['policy_ms']:.3f} | {r['route_ns_per_token']:.1f} | "
                    f"{r['policy_ms'] / r['gemm_ms']:.2f} |")
    return rows


def route_families(d):
    rows = ["| E | softmax top-8 ms | DeepSeek-V3 ms | ratio (goal <= 1.10) "
            "| softmax policy ms | DeepSeek-V3 policy ms | ratio |",
            "|---|---|---|---|---|---|---|"]
    for r in d["deepseek_vs_softmax"]:
        rows.append(f"| {r['E']} | {r['softmax_ms']:.3f} | "
                    f"{r['deepseek_ms']:.3f} | "
                    f"{r['deepseek_ms'] / r['softmax_ms']:.3f} | "
                    f"{r['softmax_policy_ms']:.3f} | "
                    f"{r['deepseek_policy_ms']:.3f} | "
                    f"{r['deepseek_policy_ms'] / r['softmax_policy_ms']:.3f} |")
    return rows


def load(d):
    x = d["load"]
    gbs = x["expert_mib"] * 1048576 / (x["open_load_ms"] * 1e6)
    rows = [f"Mixtral-shaped: E {x['E']}, d {x['d']}, f {x['f']}, bfloat16.",
            "", "| expert data MiB | largest tensor MiB | open + load_layer ms "
            "| GB/s | peak resident growth MiB | experts' device buffers MiB "
            "| loader's own MiB | target (largest + 64 MiB) |",
            "|---|---|---|---|---|---|---|---|"]
    if x["memory_measured"]:
        verdict = "met" if x["loader_own_mib"] <= x["bound_mib"] else \
            "**not met**"
        mem = (f"{x['peak_growth_mib']:.1f} | {x['device_buffers_mib']:.1f} "
               f"| {x['loader_own_mib']:.1f} | <= {x['bound_mib']:.1f}: "
               f"{verdict}")
    else:
        mem = "- | - | - | not measured"
    rows.append(f"| {x['expert_mib']:.1f} | {x['largest_tensor_mib']:.1f} | "
                f"{x['open_load_ms']:.1f} | {gbs:.2f} | {mem} |")
    return rows


def ep(d):
    rows = [f"{d['ranks']} ranks, {d['tokens_per_rank']} tokens each, E "
            f"{d['E']}, d {d['d']}, f {d['f']}, {d['rows']} rows; stage ms = "
            f"the slowest rank's median of {d['runs']}.", "",
            "| policy | K | route | exchange out | experts | exchange back | "
            "combine | bytes/token | minimum | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["policies"]:
        rows.append(f"| {r['policy']} | {r['mean_k']:.2f} | "
                    f"{r['route_ms']:.2f} | {r['exchange_out_ms']:.2f} | "
                    f"{r['experts_ms']:.2f} | {r['exchange_back_ms']:.2f} | "
                    f"{r['combine_ms']:.2f} | {r['bytes_per_token']:.0f} | "
                    f"{r['minimum_bytes_per_token']:.0f} | "
                    f"{r['bytes_per_token'] / r['minimum_bytes_per_token']:.2f} |")
    a, b = d["policies"]
    s = d["schedules"]
    rows += ["", f"top-p (p = {d['topp_p']:.3f}) / top-2: K "
             f"{b['mean_k'] / a['mean_k']:.3f}, bytes per token "
             f"{b['bytes_per_token'] / a['bytes_per_token']:.3f} (the bytes "
             f"follow K). Schedules, top-2 whole forward: bulk "
             f"{s['bulk_ms']:.2f} ms, overlap {s['overlap_ms']:.2f} ms "
             f"(overlap / bulk {s['overlap_ms'] / s['bulk_ms']:.3f})."]
    return rows


# kind: (results file, table)
KINDS = {"stages": ("clmoe-bench", stages),
         "policies": ("clmoe-bench", policies),
         "weights": ("clmoe-bench", weights),
         "targets": ("clmoe-bench", targets),
         "score": ("score", score),
         "score-targets": ("score", score_targets),
         "train": ("train", train),
         "route": ("route", route),
         "route-families": ("route", route_families),
         "load": ("load", load),
         "ep": ("ep", ep)}


def render(kind, machine):
    stem, table = KINDS[kind]
    path = ROOT / "bench" / "results" / machine / f"{stem}.json"
    d = json.loads(path.read_text())
    return "\n".join([provenance(d, machine, stem), ""] + table(d)) + "\n"


def main(argv):
    readme = ROOT / "README.md"
    text = readme.read_text()

    def sub(m):
        return m.group(1) + render(m.group(2), m.group(3)) + m.group(5)
    new = MARK.sub(sub, text)
    if not MARK.search(text):
        print("README.md has no bench-table markers", file=sys.stderr)
        return 1
    if "--check" in argv:
        if new != text:
            print("README.md's performance tables differ from what "
                  "bench/readme_tables.py generates from bench/results; run "
                  "it and commit the result", file=sys.stderr)
            return 1
        print("README tables match bench/results")
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
