//! Loads MoE layer LAYER of a Hugging Face model directory and runs it on
//! random tokens with the model's routing and with top-p:
//! `cargo run --example checkpoint -- DIR LAYER`.
use clmoe::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: checkpoint DIR LAYER");
        std::process::exit(2);
    }
    let layer_index: i32 = args[2].parse().unwrap_or(0);
    let ctx = Context::new()?;
    let ck = Checkpoint::open(&args[1])?;
    let t = 64;
    for (name, policy) in [
        ("model routing", None),
        ("TOPP(p=0.5)", Some(RouterConfig { policy: Policy::TopP, p: 0.5, ..Default::default() })),
    ] {
        let layer = load_moe_layer(&ctx, &ck, layer_index, &LoadOptions { policy, ..Default::default() })?;
        if name == "model routing" {
            println!(
                "{}, layer {}: E={}, d={}, d_ff={}, top-{}, {:?} scores, groups {:?}, gates x {}, gates on the {:?}, shared experts: {}, weights {:?}",
                args[1],
                layer_index,
                layer.num_experts,
                layer.d_model,
                layer.d_ff,
                layer.top_k,
                layer.scoring,
                layer.groups,
                layer.gate_scale,
                layer.gate_position,
                layer.shared.is_some(),
                layer.experts.weight_dtype()?
            );
        }
        let x: Vec<f32> = (0..t * layer.d_model).map(|i| ((i * 7919 % 2001) as f32 / 1000.0) - 1.0).collect();
        let xt = Tensor::from_f32(&ctx, &[t, layer.d_model], &x)?;
        let mut routing = Routing::new(&ctx)?;
        let y = layer.forward(&ctx, &xt, None, &mut routing)?.read_f32()?;
        let st = routing.stats()?;
        let norm: f32 = y.iter().map(|v| v * v).sum::<f32>().sqrt();
        println!("{:<14} mean K {:.2} (min {}, max {}), |y| = {:.4}", name, st.mean_k, st.min_k, st.max_k, norm);
    }
    Ok(())
}
