//! The crate against plain-Rust references written here from
//! docs/policies.md: routing (top-k, top-p with its strict threshold and
//! tie rule, importance) and the whole layer (softmax router, SwiGLU experts
//! in f64), training (dW1, dW2 against an f64 backward, updates against
//! fresh objects), 16-bit round trips, a checkpoint written by hand, error paths,
//! drop orders, and two threads (each with its own context and queue on one
//! cl_context) sharing one experts object.
use clmoe::*;

/// Values on a binary grid (multiples of 1/64 of modest size), so x . W is
/// exact in float32 whatever the summation order.
fn grid(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = ((s >> 33) as f64) / (1u64 << 31) as f64 - 0.5;
            ((u * scale * 64.0).round() / 64.0) as f32
        })
        .collect()
}

/// Contexts are made one at a time: the OpenCL ICD loader's first
/// platform query is not safe to race (tests run on several threads).
static CONTEXTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ctx() -> Context {
    let _one = CONTEXTS.lock().unwrap_or_else(|e| e.into_inner());
    Context::new().expect("a clmoe context")
}

/// Softmax in f64, then float32, as the reference's probabilities.
fn softmax(z: &[f32]) -> Vec<f32> {
    let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| (v / s) as f32).collect()
}

/// Experts by probability descending, ties to the lower id.
fn order(p: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].partial_cmp(&p[a]).unwrap().then(a.cmp(&b)));
    idx
}

/// The reference route of one token: (experts, gates).
fn ref_route(z: &[f32], policy: Policy, k: usize, p: f32, kmax: usize, s: f32) -> (Vec<usize>, Vec<f64>) {
    let pr = softmax(z);
    let o = order(&pr);
    let (kk, renorm) = match policy {
        Policy::TopK => (k, true),
        Policy::TopP => {
            let mut cum = 0f32;
            let mut kk = pr.len();
            for (j, &e) in o.iter().enumerate() {
                cum += pr[e];
                if cum > p {
                    kk = j + 1;
                    break;
                }
            }
            (kk.clamp(1, kmax), false)
        }
        _ => (((s * kmax as f32).ceil() as usize).clamp(1, kmax), true),
    };
    let ids: Vec<usize> = o[..kk].to_vec();
    let sum: f64 = ids.iter().map(|&e| pr[e] as f64).sum();
    let gates = ids.iter().map(|&e| if renorm { pr[e] as f64 / sum } else { pr[e] as f64 }).collect();
    (ids, gates)
}

struct Model {
    e: usize,
    d: usize,
    f: usize,
    wr: Vec<f32>,
    w1: Vec<f32>,
    w3: Vec<f32>,
    w2: Vec<f32>,
}

fn model(e: usize, d: usize, f: usize) -> Model {
    Model {
        e,
        d,
        f,
        wr: grid(d * e, 1, 2.0),
        w1: grid(e * d * f, 2, 0.5),
        w3: grid(e * d * f, 3, 0.5),
        w2: grid(e * f * d, 4, 0.5),
    }
}

/// SwiGLU expert `e` of the [E, d, f] / [E, f, d] weights on x (f64).
fn ref_expert(m: &Model, e: usize, x: &[f32]) -> Vec<f64> {
    let (d, f) = (m.d, m.f);
    let h: Vec<f64> = (0..f)
        .map(|j| {
            let (mut g, mut u) = (0f64, 0f64);
            for i in 0..d {
                g += x[i] as f64 * m.w1[(e * d + i) * f + j] as f64;
                u += x[i] as f64 * m.w3[(e * d + i) * f + j] as f64;
            }
            g / (1.0 + (-g).exp()) * u
        })
        .collect();
    (0..d).map(|c| (0..f).map(|j| h[j] * m.w2[(e * f + j) * d + c] as f64).sum()).collect()
}

/// The model's SwiGLU experts (float32 host weights) with `cfg`.
fn swiglu_experts<'c>(c: &'c Context, m: &Model, cfg: &ExpertsConfig) -> Experts<'c> {
    Experts::new(
        c,
        m.e,
        m.d,
        m.f,
        Weights::F32(&m.w1),
        Some(Weights::F32(&m.w3)),
        Weights::F32(&m.w2),
        Biases::default(),
        cfg,
    )
    .unwrap()
}

fn logits(m: &Model, x: &[f32], t: usize) -> Vec<f32> {
    (0..m.e)
        .map(|e| (0..m.d).map(|i| x[t * m.d + i] * m.wr[i * m.e + e]).sum())
        .collect()
}

fn max_rel(got: &[f32], want: &[f64]) -> f64 {
    let mut err = 0f64;
    let mut top = 1e-30f64;
    for (g, w) in got.iter().zip(want) {
        err = err.max((*g as f64 - w).abs());
        top = top.max(w.abs());
    }
    err / top
}

#[test]
fn routing_matches_reference() {
    let c = ctx();
    let m = model(8, 16, 12);
    let t = 33;
    let x = grid(t * m.d, 9, 2.0);
    let xt = Tensor::from_f32(&c, &[t, m.d], &x).unwrap();
    let imp: Vec<f32> = (0..t).map(|i| i as f32 / (t - 1) as f32).collect();
    let it = Tensor::from_f32(&c, &[t], &imp).unwrap();
    for (policy, k, p) in [(Policy::TopK, 2, 0.0), (Policy::TopP, 0, 0.5), (Policy::Importance, 0, 0.0)] {
        let cfg = RouterConfig { policy, k: k as i32, p, k_max: 4, ..Default::default() };
        let cfg = if policy == Policy::TopK { RouterConfig { k_max: 0, ..cfg } } else { cfg };
        let router = Router::new(&c, &m.wr, m.d, m.e, None, &cfg).unwrap();
        let mut rt = Routing::new(&c).unwrap();
        router.route(&xt, if policy == Policy::Importance { Some(&it) } else { None }, &mut rt).unwrap();
        let (off, ids, gates) = (rt.token_offsets().unwrap(), rt.expert_ids().unwrap(), rt.gates().unwrap());
        assert_eq!(rt.sizes().unwrap().0, t);
        for tok in 0..t {
            let (want_ids, want_g) = ref_route(&logits(&m, &x, tok), policy, k, p, 4, imp[tok]);
            let s = off[tok] as usize..off[tok + 1] as usize;
            let got: Vec<usize> = ids[s.clone()].iter().map(|&v| v as usize).collect();
            assert_eq!(got, want_ids, "{:?} token {}", policy, tok);
            assert!(max_rel(&gates[s], &want_g) <= 1e-5, "{:?} token {} gates", policy, tok);
        }
        let st = rt.stats().unwrap();
        assert_eq!(st.num_tokens, t as i64);
        assert_eq!(st.k_histogram.iter().sum::<i64>(), t as i64);
    }
}

#[test]
fn forward_matches_reference_with_shared_experts() {
    let c = ctx();
    let m = model(6, 16, 12);
    let t = 17;
    let x = grid(t * m.d, 11, 2.0);
    let cfg = RouterConfig::default(); // top-2, renormalised
    let router = Router::new(&c, &m.wr, m.d, m.e, None, &cfg).unwrap();
    let experts = swiglu_experts(&c, &m, &ExpertsConfig::default());
    let one = model(1, 16, 12);
    let shared = swiglu_experts(&c, &one, &ExpertsConfig::default());
    let xt = Tensor::from_f32(&c, &[t, m.d], &x).unwrap();
    let mut y = Tensor::zeros(&c, Dtype::F32, &[t, m.d]).unwrap();
    let mut rt = Routing::new(&c).unwrap();
    forward(&router, &experts, Some((&shared, None)), &xt, None, &mut y, &mut rt, false).unwrap();
    let got = y.read_f32().unwrap();
    let mut want = vec![0f64; t * m.d];
    for tok in 0..t {
        let xr = &x[tok * m.d..(tok + 1) * m.d];
        let (ids, gates) = ref_route(&logits(&m, &x, tok), Policy::TopK, 2, 0.0, 0, 0.0);
        for (e, g) in ids.iter().zip(gates) {
            for (c, v) in ref_expert(&m, *e, xr).iter().enumerate() {
                want[tok * m.d + c] += g * v;
            }
        }
        for (c, v) in ref_expert(&one, 0, xr).iter().enumerate() {
            want[tok * m.d + c] += v;
        }
    }
    assert!(max_rel(&got, &want) <= 1e-5);
}

#[test]
fn sixteen_bit_round_trips() {
    let c = ctx();
    let v: Vec<f32> = vec![1.0, -2.5, 0.1, 65504.0, 1e-8, 3.0e38];
    for dt in [Dtype::F16, Dtype::BF16] {
        let bits = to_bits(dt, &v).unwrap();
        let t = Tensor::from_bits(&c, dt, &[2, 3], &bits).unwrap();
        assert_eq!(t.dtype().unwrap(), dt);
        assert_eq!(t.shape().unwrap(), vec![2, 3]);
        assert_eq!(t.read_bits().unwrap(), bits);
        let back = from_bits(dt, &bits).unwrap();
        assert_eq!(back[0], 1.0);
        assert_eq!(back[1], -2.5);
    }
    // float16 overflows to +Inf, as IEEE rounds it
    assert!(from_bits(Dtype::F16, &to_bits(Dtype::F16, &[1e6]).unwrap()).unwrap()[0].is_infinite());
}

/// A safetensors file: 8-byte header length, JSON header, data.
fn write_safetensors(path: &std::path::Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let mut header = String::from("{");
    let mut data: Vec<u8> = Vec::new();
    for (i, (name, shape, v)) in tensors.iter().enumerate() {
        let begin = data.len();
        for x in v {
            data.extend_from_slice(&x.to_le_bytes());
        }
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header += &format!(
            "{}\"{}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            if i > 0 { "," } else { "" },
            name,
            dims.join(","),
            begin,
            data.len()
        );
    }
    header += "}";
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

/// [E, a, b] -> per expert [b, a] (the PyTorch [out, in] storage).
fn transposed(w: &[f32], e: usize, a: usize, b: usize) -> Vec<f32> {
    let mut out = vec![0f32; a * b];
    for i in 0..a {
        for j in 0..b {
            out[j * a + i] = w[(e * a + i) * b + j];
        }
    }
    out
}

#[test]
fn checkpoint_loads_and_runs() {
    let dir = std::env::temp_dir().join(format!("clmoe-rust-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = model(4, 16, 12);
    let p = "model.layers.0.block_sparse_moe.";
    let mut tensors = vec![(format!("{}gate.weight", p), vec![m.e, m.d], transposed(&m.wr, 0, m.d, m.e))];
    for e in 0..m.e {
        tensors.push((format!("{}experts.{}.w1.weight", p, e), vec![m.f, m.d], transposed(&m.w1, e, m.d, m.f)));
        tensors.push((format!("{}experts.{}.w3.weight", p, e), vec![m.f, m.d], transposed(&m.w3, e, m.d, m.f)));
        tensors.push((format!("{}experts.{}.w2.weight", p, e), vec![m.d, m.f], transposed(&m.w2, e, m.f, m.d)));
    }
    let refs: Vec<(&str, Vec<usize>, Vec<f32>)> =
        tensors.iter().map(|(n, s, v)| (n.as_str(), s.clone(), v.clone())).collect();
    write_safetensors(&dir.join("model.safetensors"), &refs);
    std::fs::write(
        dir.join("config.json"),
        format!(
            "{{\"model_type\": \"mixtral\", \"hidden_size\": {}, \"intermediate_size\": {}, \
             \"num_local_experts\": {}, \"num_experts_per_tok\": 2, \"num_hidden_layers\": 1}}",
            m.d, m.f, m.e
        ),
    )
    .unwrap();
    let c = ctx();
    let ck = Checkpoint::open(dir.to_str().unwrap()).unwrap();
    assert_eq!(ck.tensors().unwrap().len(), 1 + 3 * m.e);
    assert_eq!(ck.info(&format!("{}gate.weight", p)).unwrap().shape, vec![4, 16]);
    let layer = load_moe_layer(&c, &ck, 0, &LoadOptions::default()).unwrap();
    assert_eq!((layer.num_experts, layer.d_model, layer.d_ff, layer.top_k), (4, 16, 12, 2));
    assert!(layer.renormalize && layer.shared.is_none());
    let t = 9;
    let x = grid(t * m.d, 21, 2.0);
    let xt = Tensor::from_f32(&c, &[t, m.d], &x).unwrap();
    let mut rt = Routing::new(&c).unwrap();
    let y = layer.forward(&c, &xt, None, &mut rt).unwrap().read_f32().unwrap();
    let mut want = vec![0f64; t * m.d];
    for tok in 0..t {
        let (ids, gates) = ref_route(&logits(&m, &x, tok), Policy::TopK, 2, 0.0, 0, 0.0);
        for (e, g) in ids.iter().zip(gates) {
            for (c, v) in ref_expert(&m, *e, &x[tok * m.d..(tok + 1) * m.d]).iter().enumerate() {
                want[tok * m.d + c] += g * v;
            }
        }
    }
    assert!(max_rel(&y, &want) <= 1e-5);
    // top-p over the same weights
    let o = LoadOptions { policy: Some(RouterConfig { policy: Policy::TopP, p: 0.5, ..Default::default() }), ..Default::default() };
    let layer = load_moe_layer(&c, &ck, 0, &o).unwrap();
    layer.forward(&c, &xt, None, &mut rt).unwrap();
    assert!(rt.stats().unwrap().mean_k >= 1.0);
    let err = load_moe_layer(&c, &ck, 5, &LoadOptions::default()).err().unwrap();
    assert_eq!(err.status, Status::INVALID_ARGUMENT);
    drop(layer);
    drop(ck);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_carry_status_and_detail() {
    let c = ctx();
    let w = vec![0f32; 8 * 4];
    let bad = RouterConfig { k: 9, ..Default::default() };
    let e = Router::new(&c, &w, 8, 4, None, &bad).err().unwrap();
    assert_eq!(e.status, Status::INVALID_ARGUMENT);
    assert!(e.detail.contains("k = 9"), "{}", e.detail);
    assert!(e.to_string().starts_with("CLMOE_ERROR_INVALID_ARGUMENT"));
    let e = Router::new(&c, &w, 8, 5, None, &RouterConfig::default()).err().unwrap();
    assert_eq!(e.status, Status::SHAPE_MISMATCH);
    let e = Tensor::from_f32(&c, &[3, 3], &[1.0; 4]).err().unwrap();
    assert_eq!(e.status, Status::SHAPE_MISMATCH);
    let e = Tensor::zeros(&c, Dtype::F32, &[1, 2, 3, 4, 5]).err().unwrap();
    assert_eq!(e.status, Status::INVALID_ARGUMENT);
    let router = Router::new(&c, &w, 8, 4, None, &RouterConfig::default()).unwrap();
    let x = Tensor::from_f32(&c, &[2, 7], &[0.0; 14]).unwrap(); // d 7 != 8
    let mut rt = Routing::new(&c).unwrap();
    let e = router.route(&x, None, &mut rt).err().unwrap();
    assert_eq!(e.status, Status::SHAPE_MISMATCH);
    assert!(!e.detail.is_empty());
    let nan = Tensor::from_f32(&c, &[1, 8], &[f32::NAN; 8]).unwrap();
    assert_eq!(router.route(&nan, None, &mut rt).err().unwrap().status, Status::NONFINITE_INPUT);
    assert_eq!(Checkpoint::open("/nonexistent/clmoe").err().unwrap().status, Status::NOT_FOUND);
    assert_eq!(select_device(Some("no such device at all")).err().unwrap().status, Status::DEVICE_NOT_FOUND);
    let e = Experts::new(
        &c,
        2,
        4,
        3,
        Weights::F32(&[0.0; 24]),
        None,
        Weights::F32(&[0.0; 24]),
        Biases::default(),
        &ExpertsConfig::default(), // SwiGLU needs w3
    )
    .err()
    .unwrap();
    assert_eq!(e.status, Status::INVALID_ARGUMENT);
    let e = Experts::new(
        &c,
        2,
        40,
        3,
        Weights::F32(&[0.0; 240]),
        Some(Weights::F32(&[0.0; 240])),
        Weights::F32(&[0.0; 240]),
        Biases::default(),
        &ExpertsConfig { weight_dtype: Dtype::Mxfp4, ..Default::default() },
    )
    .err()
    .unwrap();
    assert!(e.detail.contains("multiples of 32"), "{}", e.detail);
}

#[test]
fn objects_drop_in_any_order() {
    for order in 0..3 {
        let c = ctx();
        let m = model(4, 8, 4);
        let router = Router::new(&c, &m.wr, m.d, m.e, None, &RouterConfig::default()).unwrap();
        let experts = swiglu_experts(&c, &m, &ExpertsConfig { weight_dtype: Dtype::BF16, ..Default::default() });
        assert_eq!(experts.weight_dtype().unwrap(), Dtype::BF16);
        let x = Tensor::from_f32(&c, &[3, m.d], &grid(3 * m.d, 5, 1.0)).unwrap();
        let mut y = Tensor::zeros(&c, Dtype::F32, &[3, m.d]).unwrap();
        let mut rt = Routing::new(&c).unwrap();
        forward(&router, &experts, None, &x, None, &mut y, &mut rt, false).unwrap();
        match order {
            0 => {
                drop(rt);
                drop(router);
                drop(experts);
                drop(x);
                drop(y);
            }
            1 => {
                drop(experts);
                drop(y);
                drop(rt);
                drop(x);
                drop(router);
            }
            _ => {} // dropped at the end of scope, in reverse declaration order
        }
    }
}

#[test]
fn two_threads_share_one_experts_object() {
    let shared_ctx = ctx();
    let m = model(8, 16, 12);
    let experts = swiglu_experts(&shared_ctx, &m, &ExpertsConfig { path: ExpertsPath::Grouped, ..Default::default() });
    let x = grid(29 * m.d, 31, 2.0);
    let run = |c: &Context| -> Vec<f32> {
        // each thread: its own context, router, tensors and routing
        let router = Router::new(c, &m.wr, m.d, m.e, None, &RouterConfig::default()).unwrap();
        let xt = Tensor::from_f32(c, &[29, m.d], &x).unwrap();
        let mut y = Tensor::zeros(c, Dtype::F32, &[29, m.d]).unwrap();
        let mut rt = Routing::new(c).unwrap();
        let mut last = Vec::new();
        for _ in 0..3 {
            forward(&router, &experts, None, &xt, None, &mut y, &mut rt, false).unwrap();
            last = y.read_f32().unwrap();
        }
        last
    };
    // Each thread gets a context of its own on the same cl_context (so the
    // experts object is usable from both), hence a queue of its own.
    let (cl, dev, _) = shared_ctx.cl_handles().unwrap();
    let own = || {
        let _one = CONTEXTS.lock().unwrap_or_else(|e| e.into_inner());
        unsafe { Context::from_cl(cl, dev, std::ptr::null_mut()) }.unwrap()
    };
    let (ca, cb) = (own(), own());
    let (a, b) = std::thread::scope(|s| {
        let ha = s.spawn(|| run(&ca));
        let hb = s.spawn(|| run(&cb));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    assert!(version().starts_with("0."));
    assert!(version_number() >= 400);
}

/// d/dg of SiLU in f64.
fn silu_grad(g: f64) -> f64 {
    let s = 1.0 / (1.0 + (-g).exp());
    s * (1.0 + g * (1.0 - s))
}

#[test]
fn training_gradients_match_reference() {
    let c = ctx();
    let m = model(4, 16, 12);
    let (t, d, f) = (13, m.d, m.f);
    let x = grid(t * d, 21, 2.0);
    let dy = grid(t * d, 22, 1.0);
    let router = Router::new(&c, &m.wr, d, m.e, None, &RouterConfig::default()).unwrap();
    let mut experts = swiglu_experts(&c, &m, &ExpertsConfig::default());
    let xt = Tensor::from_f32(&c, &[t, d], &x).unwrap();
    let dyt = Tensor::from_f32(&c, &[t, d], &dy).unwrap();
    let mut y = Tensor::zeros(&c, Dtype::F32, &[t, d]).unwrap();
    let mut dx = Tensor::zeros(&c, Dtype::F32, &[t, d]).unwrap();
    let mut g1 = Tensor::zeros(&c, Dtype::F32, &[m.e, d, f]).unwrap();
    let mut g2 = Tensor::zeros(&c, Dtype::F32, &[m.e, f, d]).unwrap();
    let mut rt = Routing::new(&c).unwrap();
    let cfg = TrainConfig { balance_coeff: 0.01, ..Default::default() };
    // No training forward yet: refused.
    let err = backward(&router, &experts, None, &mut rt, &xt, &dyt, None, None, None, None, None, None, false, false)
        .unwrap_err();
    assert_eq!(err.status, Status::INVALID_ARGUMENT);
    let losses = forward_train(&router, &experts, None, &xt, None, &mut y, &mut rt, &cfg).unwrap();
    assert!(losses.balance > 0.0 && (losses.total - 0.01 * losses.balance).abs() < 1e-9);
    assert!(rt.saved_bytes().unwrap() > 0);
    {
        let mut eg = ExpertGrads { w1: Some(&mut g1), w2: Some(&mut g2), ..Default::default() };
        backward(&router, &experts, None, &mut rt, &xt, &dyt, Some(&mut dx), None, Some(&mut eg), None, None, None, false, false)
            .unwrap();
    }
    // dW1 and dW2 from the routing's decisions, in f64.
    let (mut w1, mut w2) = (vec![0f64; m.e * d * f], vec![0f64; m.e * f * d]);
    for tok in 0..t {
        let xr = &x[tok * d..(tok + 1) * d];
        let (ids, gates) = ref_route(&logits(&m, &x, tok), Policy::TopK, 2, 0.0, 0, 0.0);
        for (&e, g) in ids.iter().zip(gates) {
            for j in 0..f {
                let (mut a1, mut a3) = (0f64, 0f64);
                for i in 0..d {
                    a1 += xr[i] as f64 * m.w1[(e * d + i) * f + j] as f64;
                    a3 += xr[i] as f64 * m.w3[(e * d + i) * f + j] as f64;
                }
                let h = a1 / (1.0 + (-a1).exp()) * a3;
                let mut dh = 0f64;
                for col in 0..d {
                    let d_o = g * dy[tok * d + col] as f64;
                    w2[(e * f + j) * d + col] += h * d_o;
                    dh += d_o * m.w2[(e * f + j) * d + col] as f64;
                }
                let da1 = dh * a3 * silu_grad(a1);
                for i in 0..d {
                    w1[(e * d + i) * f + j] += xr[i] as f64 * da1;
                }
            }
        }
    }
    assert!(max_rel(&g1.read_f32().unwrap(), &w1) <= 1e-4);
    assert!(max_rel(&g2.read_f32().unwrap(), &w2) <= 1e-4);
    // An update equals fresh objects with the new weights.
    let mut m2 = model(4, 16, 12);
    m2.w2 = grid(m.e * f * d, 31, 0.5);
    m2.wr = grid(d * m.e, 32, 2.0);
    experts
        .update(m.e, d, f, Weights::F32(&m2.w1), Some(Weights::F32(&m2.w3)), Weights::F32(&m2.w2), Biases::default(), &ExpertsConfig::default())
        .unwrap();
    let mut router = router;
    router.update(Some(&m2.wr), None).unwrap();
    assert!(router.update(Some(&m2.wr[..3]), None).is_err());
    let fresh_router = Router::new(&c, &m2.wr, d, m.e, None, &RouterConfig::default()).unwrap();
    let fresh = swiglu_experts(&c, &m2, &ExpertsConfig::default());
    let mut y2 = Tensor::zeros(&c, Dtype::F32, &[t, d]).unwrap();
    forward_train(&router, &experts, None, &xt, None, &mut y, &mut rt, &cfg).unwrap();
    let mut rt2 = Routing::new(&c).unwrap();
    forward_train(&fresh_router, &fresh, None, &xt, None, &mut y2, &mut rt2, &cfg).unwrap();
    assert_eq!(y.read_f32().unwrap(), y2.read_f32().unwrap());
}
