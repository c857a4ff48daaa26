//! Training (`clmoe_train.h`): the forward that keeps what the backward
//! needs, the backward of every stage, and weight updates in place.

use std::ptr;

use crate::{
    check, experts_desc, fail, ffi, init, shared_ptrs, Biases, Experts, ExpertsConfig, Result, Router,
    Routing, Status, Tensor, Weights,
};

/// Coefficients of the auxiliary losses (0: out of the gradient).
#[derive(Clone, Copy, Debug, Default)]
pub struct TrainConfig {
    /// Switch/GShard load-balance loss.
    pub balance_coeff: f32,
    /// Router z-loss.
    pub z_loss_coeff: f32,
    /// The top-p paper's dynamic (entropy) loss.
    pub entropy_coeff: f32,
}

impl TrainConfig {
    fn raw(&self) -> ffi::clmoe_train_desc {
        let mut d: ffi::clmoe_train_desc = init(ffi::clmoe_train_desc_init_sized);
        d.balance_coeff = self.balance_coeff;
        d.z_loss_coeff = self.z_loss_coeff;
        d.entropy_coeff = self.entropy_coeff;
        d
    }
}

/// The auxiliary losses of a training forward (unscaled) and their
/// weighted sum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AuxLosses {
    pub balance: f64,
    pub z_loss: f64,
    pub entropy: f64,
    pub total: f64,
}

/// Expert gradients to compute (float32 tensors in [E, in, out] layout:
/// w1, w3 [E, d, f], w2 [E, f, d], b1, b3 [E, f], b2 [E, d]); `None`
/// skips one.
#[derive(Default)]
pub struct ExpertGrads<'a, 'c> {
    pub w1: Option<&'a mut Tensor<'c>>,
    pub w3: Option<&'a mut Tensor<'c>>,
    pub w2: Option<&'a mut Tensor<'c>>,
    pub b1: Option<&'a mut Tensor<'c>>,
    pub b3: Option<&'a mut Tensor<'c>>,
    pub b2: Option<&'a mut Tensor<'c>>,
}

/// Router gradients to compute: weight [d, E], bias [E] (float32).
#[derive(Default)]
pub struct RouterGrads<'a, 'c> {
    pub weight: Option<&'a mut Tensor<'c>>,
    pub bias: Option<&'a mut Tensor<'c>>,
}

fn raw_tensor(t: &mut Option<&mut Tensor>) -> *mut ffi::clmoe_tensor {
    t.as_mut().map_or(ptr::null_mut(), |t| t.ptr())
}

impl ExpertGrads<'_, '_> {
    fn raw(&mut self) -> ffi::clmoe_expert_grads {
        let mut g: ffi::clmoe_expert_grads = init(ffi::clmoe_expert_grads_init_sized);
        g.w1 = raw_tensor(&mut self.w1);
        g.w3 = raw_tensor(&mut self.w3);
        g.w2 = raw_tensor(&mut self.w2);
        g.b1 = raw_tensor(&mut self.b1);
        g.b3 = raw_tensor(&mut self.b3);
        g.b2 = raw_tensor(&mut self.b2);
        g
    }
}

/// `clmoe_forward` with `shared` experts (and their gate) that also keeps
/// in `routing` what [`backward`] needs, and returns the auxiliary losses.
#[allow(clippy::too_many_arguments)]
pub fn forward_train(
    router: &Router,
    experts: &Experts,
    shared: Option<(&Experts, Option<&Tensor>)>,
    x: &Tensor,
    importance: Option<&Tensor>,
    y: &mut Tensor,
    routing: &mut Routing,
    cfg: &TrainConfig,
) -> Result<AuxLosses> {
    let (sx, sg) = shared_ptrs(shared);
    let desc = cfg.raw();
    let mut l: ffi::clmoe_aux_losses = init(ffi::clmoe_aux_losses_init_sized);
    check(unsafe {
        ffi::clmoe_forward_train(
            router.ptr(),
            experts.ptr(),
            sx,
            sg,
            x.ptr(),
            importance.map_or(ptr::null(), |t| t.ptr()),
            y.ptr(),
            routing.ptr(),
            0,
            &desc,
            &mut l,
        )
    })?;
    Ok(AuxLosses { balance: l.balance, z_loss: l.z_loss, entropy: l.entropy, total: l.total })
}

/// The backward of the last [`forward_train`] into `routing` (same router,
/// experts, shared experts and x): dy in, dx and the gradients asked for
/// out. `aux` overrides the forward's loss coefficients; `accumulate` adds
/// into the weight gradients, `accumulate_dx` into dx.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    router: &Router,
    experts: &Experts,
    shared: Option<(&Experts, Option<&Tensor>)>,
    routing: &mut Routing,
    x: &Tensor,
    dy: &Tensor,
    dx: Option<&mut Tensor>,
    router_grads: Option<&mut RouterGrads>,
    expert_grads: Option<&mut ExpertGrads>,
    shared_grads: Option<&mut ExpertGrads>,
    shared_gate_grad: Option<&mut Tensor>,
    aux: Option<&TrainConfig>,
    accumulate: bool,
    accumulate_dx: bool,
) -> Result<()> {
    let (sx, sg) = shared_ptrs(shared);
    let mut rg = router_grads.map(|g| {
        let mut r: ffi::clmoe_router_grads = init(ffi::clmoe_router_grads_init_sized);
        r.weight = raw_tensor(&mut g.weight);
        r.bias = raw_tensor(&mut g.bias);
        r
    });
    let mut eg = expert_grads.map(|g| g.raw());
    let mut sgr = shared_grads.map(|g| g.raw());
    let aux_desc = aux.map(|a| a.raw());
    let flags = (accumulate as u32) | ((accumulate_dx as u32) << 1);
    check(unsafe {
        ffi::clmoe_backward(
            router.ptr(),
            experts.ptr(),
            sx,
            sg,
            routing.ptr(),
            x.ptr(),
            dy.ptr(),
            dx.map_or(ptr::null_mut(), |t| t.ptr()),
            rg.as_mut().map_or(ptr::null_mut(), |g| g as *mut _),
            eg.as_mut().map_or(ptr::null_mut(), |g| g as *mut _),
            sgr.as_mut().map_or(ptr::null_mut(), |g| g as *mut _),
            shared_gate_grad.map_or(ptr::null_mut(), |t| t.ptr()),
            aux_desc.as_ref().map_or(ptr::null(), |a| a as *const _),
            flags,
        )
    })
}

impl Routing<'_> {
    /// Device bytes the routing keeps for a backward (0 when none).
    pub fn saved_bytes(&self) -> Result<i64> {
        let mut n = 0;
        check(unsafe { ffi::clmoe_routing_saved_bytes(self.ptr(), &mut n) })?;
        Ok(n)
    }
}

impl Experts<'_> {
    /// New weights into this object (an optimizer step), as for
    /// [`Experts::new`]: sizes and activation must be the object's; its
    /// path and storage dtype stay (`cfg` gives the activation and
    /// layout). Biases become exactly the ones given.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        num_experts: usize,
        d_model: usize,
        d_ff: usize,
        w1: Weights,
        w3: Option<Weights>,
        w2: Weights,
        biases: Biases,
        cfg: &ExpertsConfig,
    ) -> Result<()> {
        let d = experts_desc(num_experts, d_model, d_ff, w1, w3, w2, biases, cfg)?;
        check(unsafe { ffi::clmoe_experts_update(self.ptr(), &d) })
    }
}

impl Router<'_> {
    /// A new weight [d, E] and/or bias [E] (float32, host) into this
    /// router; `None` keeps one.
    pub fn update(&mut self, weight: Option<&[f32]>, bias: Option<&[f32]>) -> Result<()> {
        let (e, d) = self.shape()?;
        if weight.map_or(false, |w| w.len() != d * e) || bias.map_or(false, |b| b.len() != e) {
            return fail(Status::SHAPE_MISMATCH, format!("the weight must hold d * E = {} values and the bias E = {}", d * e, e));
        }
        check(unsafe {
            ffi::clmoe_router_update(
                self.ptr(),
                weight.map_or(ptr::null(), |w| w.as_ptr()),
                ptr::null(),
                bias.map_or(ptr::null(), |b| b.as_ptr()),
                ptr::null(),
            )
        })
    }
}
