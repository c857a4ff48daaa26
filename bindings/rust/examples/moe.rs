//! The demo's MoE layer (T 512, d 256, f 512, E 16, SwiGLU) with the model
//! routing of top-2, top-p and importance, printing mean K and time, as
//! the C demo does: `cargo run --example moe`.
use clmoe::*;
use std::time::Instant;

fn fill(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect()
}

fn main() -> Result<()> {
    let (t, d, f, e) = (512, 256, 512, 16);
    let ctx = Context::new()?;
    let info = ctx.device_info()?;
    println!("clmoe {} on {} ({})", version(), info.name, info.platform);
    let wr = fill(d * e, 1, 1.0 / (d as f32).sqrt());
    let (w1, w3, w2) = (fill(e * d * f, 2, 0.05), fill(e * d * f, 3, 0.05), fill(e * f * d, 4, 0.05));
    let experts = Experts::new(
        &ctx,
        e,
        d,
        f,
        Weights::F32(&w1),
        Some(Weights::F32(&w3)),
        Weights::F32(&w2),
        Biases::default(),
        &ExpertsConfig::default(),
    )?;
    let x = Tensor::from_f32(&ctx, &[t, d], &fill(t * d, 5, 1.0))?;
    let mut y = Tensor::zeros(&ctx, Dtype::F32, &[t, d])?;
    // DA-MoE importance from a causal attention pattern (H 2).
    let h = 2;
    let mut probs = vec![0f32; h * t * t];
    for hh in 0..h {
        for i in 0..t {
            for j in 0..=i {
                probs[(hh * t + i) * t + j] = 1.0 / (i + 1) as f32;
            }
        }
    }
    let pt = Tensor::from_f32(&ctx, &[h, t, t], &probs)?;
    let mut importance = Tensor::zeros(&ctx, Dtype::F32, &[t])?;
    score_attention(&ctx, &ScoreConfig { causal: true, ..Default::default() }, ScoreInput::Probs(&pt), &mut importance)?;
    let policies = [
        ("TOPK(k=2)", RouterConfig::default()),
        ("TOPP(p=0.4)", RouterConfig { policy: Policy::TopP, p: 0.4, ..Default::default() }),
        ("IMPORTANCE(k~2)", RouterConfig { policy: Policy::Importance, k_max: 4, k_mean: 2.0, ..Default::default() }),
    ];
    println!("{:<16} {:>6} {:>9} {:>9} {:>10}", "policy", "mean K", "min/max", "dropped", "forward ms");
    for (name, cfg) in policies.iter() {
        let router = Router::new(&ctx, &wr, d, e, None, cfg)?;
        let mut routing = Routing::new(&ctx)?;
        let imp = if cfg.policy == Policy::Importance { Some(&importance) } else { None };
        forward(&router, &experts, None, &x, imp, &mut y, &mut routing, false)?; // warm-up
        ctx.finish()?;
        let start = Instant::now();
        forward(&router, &experts, None, &x, imp, &mut y, &mut routing, false)?;
        ctx.finish()?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let st = routing.stats()?;
        println!(
            "{:<16} {:>6.2} {:>4}/{:<4} {:>9} {:>10.2}",
            name, st.mean_k, st.min_k, st.max_k, st.dropped, ms
        );
    }
    Ok(())
}
