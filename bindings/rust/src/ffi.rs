//! The C ABI of libclmoe (`include/clmoe/clmoe.h`, `clmoe_checkpoint.h`),
//! declared by hand. Every descriptor starts with `struct_size` and is
//! filled by its `*_init_sized` with this crate's own `size_of`, so the
//! crate keeps working against a newer libclmoe whose structs have grown.
#![allow(non_camel_case_types, dead_code)]

use std::os::raw::{c_char, c_void};

pub type clmoe_status = i32;
pub type clmoe_dtype = i32;
pub type cl_handle = *mut c_void;
pub type clmoe_log_fn = Option<unsafe extern "C" fn(*mut c_void, i32, *const c_char)>;

pub enum clmoe_context {}
pub enum clmoe_tensor {}
pub enum clmoe_router {}
pub enum clmoe_routing {}
pub enum clmoe_experts {}
pub enum clmoe_checkpoint {}

pub const CLMOE_MAX_RANK: usize = 4;
pub const CLMOE_CHECKPOINT_MAX_RANK: usize = 8;

#[repr(C)]
pub struct clmoe_device_choice {
    pub struct_size: usize,
    pub platform: cl_handle,
    pub device: cl_handle,
    pub index: i32,
    pub reason: [c_char; 256],
}

#[repr(C)]
pub struct clmoe_context_desc {
    pub struct_size: usize,
    pub cl_context: cl_handle,
    pub cl_device: cl_handle,
    pub cl_queue: cl_handle,
    pub device: *const c_char,
    pub cache_dir: *const c_char,
    pub flags: u32,
    pub log_fn: clmoe_log_fn,
    pub log_user_data: *mut c_void,
    pub tuning_file: *const c_char,
}

#[repr(C)]
pub struct clmoe_device_info {
    pub struct_size: usize,
    pub name: [c_char; 256],
    pub vendor: [c_char; 256],
    pub platform_name: [c_char; 256],
    pub version: [c_char; 128],
    pub driver_version: [c_char; 128],
    pub type_: i32,
    pub has_fp16: i32,
    pub has_fp64: i32,
    pub compute_units: i32,
    pub global_mem_bytes: u64,
    pub max_alloc_bytes: u64,
    pub local_mem_bytes: u64,
}

#[repr(C)]
pub struct clmoe_router_desc {
    pub struct_size: usize,
    pub num_experts: i32,
    pub d_model: i32,
    pub policy: i32,
    pub k: i32,
    pub p: f32,
    pub k_min: i32,
    pub k_max: i32,
    pub k_mean: f32,
    pub capacity_factor: f32,
    pub overflow: i32,
    pub gates: i32,
    pub affinity: i32,
    pub fallback: i32,
    pub weight_host: *const f32,
    pub weight: *const clmoe_tensor,
    pub bias_host: *const f32,
    pub bias: *const clmoe_tensor,
    pub weight_dtype: clmoe_dtype,
    pub scoring: i32,
    pub selection_bias_host: *const f32,
    pub selection_bias: *const clmoe_tensor,
    pub num_groups: i32,
    pub topk_groups: i32,
    pub group_score: i32,
    pub gate_scale: f32,
    pub gate_position: i32,
}

#[repr(C)]
pub struct clmoe_routing_stats {
    pub struct_size: usize,
    pub num_tokens: i64,
    pub num_experts: i64,
    pub num_slots: i64,
    pub dropped: i64,
    pub mean_k: f64,
    pub min_k: i32,
    pub max_k: i32,
    pub balance_loss: f64,
    pub mean_entropy: f64,
    pub k_histogram: *mut i64,
    pub expert_load: *mut f32,
    pub mean_prob: *mut f32,
    pub array_capacity: i64,
}

#[repr(C)]
pub struct clmoe_experts_desc {
    pub struct_size: usize,
    pub num_experts: i32,
    pub d_model: i32,
    pub d_ff: i32,
    pub activation: i32,
    pub layout: i32,
    pub w1_host: *const c_void,
    pub w1: *const clmoe_tensor,
    pub w3_host: *const c_void,
    pub w3: *const clmoe_tensor,
    pub w2_host: *const c_void,
    pub w2: *const clmoe_tensor,
    pub b1_host: *const f32,
    pub b1: *const clmoe_tensor,
    pub b3_host: *const f32,
    pub b3: *const clmoe_tensor,
    pub b2_host: *const f32,
    pub b2: *const clmoe_tensor,
    pub path: i32,
    pub weight_dtype: clmoe_dtype,
    pub host_dtype: clmoe_dtype,
    pub swiglu_limit: f32,
    pub swiglu_alpha: f32,
    pub w1_codes: *const c_void,
    pub w3_codes: *const c_void,
    pub w2_codes: *const c_void,
    pub w1_scales: *const c_void,
    pub w3_scales: *const c_void,
    pub w2_scales: *const c_void,
}

#[repr(C)]
pub struct clmoe_score_desc {
    pub struct_size: usize,
    pub mask: i32,
    pub norm: i32,
    pub scale: f32,
    pub seq_offsets: *const clmoe_tensor,
    pub key_lengths: *const clmoe_tensor,
    pub flags: u32,
    pub layout: i32,
    pub lse: *const clmoe_tensor,
}

#[repr(C)]
pub struct clmoe_checkpoint_tensor {
    pub struct_size: usize,
    pub name: *const c_char,
    pub dtype: [c_char; 8],
    pub readable_dtype: clmoe_dtype,
    pub rank: i32,
    pub shape: [i64; CLMOE_CHECKPOINT_MAX_RANK],
    pub bytes: u64,
    pub file: i32,
}

#[repr(C)]
pub struct clmoe_layer_desc {
    pub struct_size: usize,
    pub layer: i32,
    pub arch: i32,
    pub weight_dtype: clmoe_dtype,
    pub policy: *const clmoe_router_desc,
    pub path: i32,
    pub router_name: *const c_char,
    pub w1_name: *const c_char,
    pub gate_up_name: *const c_char,
    pub w3_name: *const c_char,
    pub w2_name: *const c_char,
    pub down_name: *const c_char,
    pub shared_w1_name: *const c_char,
    pub shared_w3_name: *const c_char,
    pub shared_w2_name: *const c_char,
    pub shared_gate_name: *const c_char,
    pub top_k: i32,
    pub renormalize: i32,
    pub activation: i32,
}

#[repr(C)]
pub struct clmoe_moe_layer {
    pub struct_size: usize,
    pub router: *mut clmoe_router,
    pub experts: *mut clmoe_experts,
    pub shared_experts: *mut clmoe_experts,
    pub shared_gate: *mut clmoe_tensor,
    pub arch: i32,
    pub num_experts: i32,
    pub d_model: i32,
    pub d_ff: i32,
    pub shared_d_ff: i32,
    pub top_k: i32,
    pub renormalize: i32,
    pub weight_dtype: clmoe_dtype,
    pub scoring: i32,
    pub num_groups: i32,
    pub topk_groups: i32,
    pub group_score: i32,
    pub gate_scale: f32,
    pub gate_position: i32,
    pub has_selection_bias: i32,
    pub has_router_bias: i32,
    pub has_expert_biases: i32,
    pub activation: i32,
    pub swiglu_limit: f32,
}

/* ---- training (clmoe_train.h) ---- */

#[repr(C)]
pub struct clmoe_train_desc {
    pub struct_size: usize,
    pub balance_coeff: f32,
    pub z_loss_coeff: f32,
    pub entropy_coeff: f32,
}

#[repr(C)]
pub struct clmoe_aux_losses {
    pub struct_size: usize,
    pub balance: f64,
    pub z_loss: f64,
    pub entropy: f64,
    pub total: f64,
}

#[repr(C)]
pub struct clmoe_expert_grads {
    pub struct_size: usize,
    pub w1: *mut clmoe_tensor,
    pub w3: *mut clmoe_tensor,
    pub w2: *mut clmoe_tensor,
    pub b1: *mut clmoe_tensor,
    pub b3: *mut clmoe_tensor,
    pub b2: *mut clmoe_tensor,
}

#[repr(C)]
pub struct clmoe_router_grads {
    pub struct_size: usize,
    pub weight: *mut clmoe_tensor,
    pub bias: *mut clmoe_tensor,
}

#[link(name = "clmoe")]
extern "C" {
    pub fn clmoe_version_string() -> *const c_char;
    pub fn clmoe_version_number() -> i32;
    pub fn clmoe_status_string(status: clmoe_status) -> *const c_char;
    pub fn clmoe_last_error_detail() -> *const c_char;

    pub fn clmoe_device_choice_init(choice: *mut clmoe_device_choice);
    pub fn clmoe_device_select(
        selector: *const c_char,
        choice: *mut clmoe_device_choice,
    ) -> clmoe_status;

    pub fn clmoe_context_desc_init_sized(desc: *mut clmoe_context_desc, size: usize);
    pub fn clmoe_context_create(
        desc: *const clmoe_context_desc,
        out: *mut *mut clmoe_context,
    ) -> clmoe_status;
    pub fn clmoe_context_destroy(ctx: *mut clmoe_context);
    pub fn clmoe_context_build_programs(ctx: *mut clmoe_context) -> clmoe_status;
    pub fn clmoe_device_info_init(info: *mut clmoe_device_info);
    pub fn clmoe_context_get_device_info(
        ctx: *const clmoe_context,
        info: *mut clmoe_device_info,
    ) -> clmoe_status;
    pub fn clmoe_context_finish(ctx: *mut clmoe_context) -> clmoe_status;
    pub fn clmoe_context_get_cl(
        ctx: *const clmoe_context,
        context: *mut cl_handle,
        device: *mut cl_handle,
        queue: *mut cl_handle,
    ) -> clmoe_status;

    pub fn clmoe_convert_ex(
        src_dtype: clmoe_dtype,
        src: *const c_void,
        dst_dtype: clmoe_dtype,
        dst: *mut c_void,
        count: i64,
        flags: u32,
    ) -> clmoe_status;

    pub fn clmoe_tensor_create(
        ctx: *mut clmoe_context,
        dtype: clmoe_dtype,
        rank: i32,
        shape: *const i64,
        host_data: *const c_void,
        out: *mut *mut clmoe_tensor,
    ) -> clmoe_status;
    pub fn clmoe_tensor_destroy(tensor: *mut clmoe_tensor);
    pub fn clmoe_tensor_read(t: *const clmoe_tensor, host: *mut c_void, bytes: usize)
        -> clmoe_status;
    pub fn clmoe_tensor_write(t: *mut clmoe_tensor, host: *const c_void, bytes: usize)
        -> clmoe_status;
    pub fn clmoe_tensor_get_shape(
        t: *const clmoe_tensor,
        rank: *mut i32,
        shape: *mut i64,
    ) -> clmoe_status;
    pub fn clmoe_tensor_get_dtype(t: *const clmoe_tensor, dtype: *mut clmoe_dtype)
        -> clmoe_status;

    pub fn clmoe_router_desc_init_sized(desc: *mut clmoe_router_desc, size: usize);
    pub fn clmoe_router_create(
        ctx: *mut clmoe_context,
        desc: *const clmoe_router_desc,
        out: *mut *mut clmoe_router,
    ) -> clmoe_status;
    pub fn clmoe_router_destroy(router: *mut clmoe_router);
    pub fn clmoe_router_get_shape(
        router: *const clmoe_router,
        num_experts: *mut i32,
        d_model: *mut i32,
        policy: *mut i32,
    ) -> clmoe_status;

    pub fn clmoe_routing_create(ctx: *mut clmoe_context, out: *mut *mut clmoe_routing)
        -> clmoe_status;
    pub fn clmoe_routing_destroy(routing: *mut clmoe_routing);
    pub fn clmoe_routing_get_sizes(
        routing: *mut clmoe_routing,
        num_tokens: *mut i64,
        num_experts: *mut i64,
        num_slots: *mut i64,
    ) -> clmoe_status;
    pub fn clmoe_routing_get_array(
        routing: *mut clmoe_routing,
        which: i32,
        view: *mut *const clmoe_tensor,
    ) -> clmoe_status;
    pub fn clmoe_routing_stats_init(stats: *mut clmoe_routing_stats);
    pub fn clmoe_routing_read_stats(
        routing: *mut clmoe_routing,
        stats: *mut clmoe_routing_stats,
    ) -> clmoe_status;
    pub fn clmoe_route(
        router: *mut clmoe_router,
        x: *const clmoe_tensor,
        importance: *const clmoe_tensor,
        routing: *mut clmoe_routing,
        num_wait: u32,
        wait: *const cl_handle,
        out_event: *mut cl_handle,
    ) -> clmoe_status;
    pub fn clmoe_route_logits(
        router: *mut clmoe_router,
        logits: *const clmoe_tensor,
        importance: *const clmoe_tensor,
        routing: *mut clmoe_routing,
        num_wait: u32,
        wait: *const cl_handle,
        out_event: *mut cl_handle,
    ) -> clmoe_status;

    pub fn clmoe_experts_desc_init_sized(desc: *mut clmoe_experts_desc, size: usize);
    pub fn clmoe_experts_create(
        ctx: *mut clmoe_context,
        desc: *const clmoe_experts_desc,
        out: *mut *mut clmoe_experts,
    ) -> clmoe_status;
    pub fn clmoe_experts_destroy(experts: *mut clmoe_experts);
    pub fn clmoe_experts_get_path(experts: *const clmoe_experts, path: *mut i32)
        -> clmoe_status;
    pub fn clmoe_experts_get_bytes(
        experts: *const clmoe_experts,
        weight_bytes: *mut i64,
        bias_bytes: *mut i64,
    ) -> clmoe_status;
    pub fn clmoe_experts_get_weight_dtype(
        experts: *const clmoe_experts,
        dtype: *mut clmoe_dtype,
    ) -> clmoe_status;
    pub fn clmoe_experts_get_shape(
        experts: *const clmoe_experts,
        num_experts: *mut i32,
        d_model: *mut i32,
        d_ff: *mut i32,
        activation: *mut i32,
    ) -> clmoe_status;

    pub fn clmoe_forward_shared(
        router: *mut clmoe_router,
        experts: *mut clmoe_experts,
        shared: *mut clmoe_experts,
        shared_gate: *const clmoe_tensor,
        x: *const clmoe_tensor,
        importance: *const clmoe_tensor,
        y: *mut clmoe_tensor,
        routing: *mut clmoe_routing,
        flags: u32,
        num_wait: u32,
        wait: *const cl_handle,
        out_event: *mut cl_handle,
    ) -> clmoe_status;

    pub fn clmoe_score_desc_init_sized(desc: *mut clmoe_score_desc, size: usize);
    pub fn clmoe_score_attention(
        ctx: *mut clmoe_context,
        desc: *const clmoe_score_desc,
        probs: *const clmoe_tensor,
        q: *const clmoe_tensor,
        k: *const clmoe_tensor,
        importance: *mut clmoe_tensor,
        num_wait: u32,
        wait: *const cl_handle,
        out_event: *mut cl_handle,
    ) -> clmoe_status;

    pub fn clmoe_checkpoint_tensor_init(info: *mut clmoe_checkpoint_tensor);
    pub fn clmoe_checkpoint_open(path: *const c_char, out: *mut *mut clmoe_checkpoint)
        -> clmoe_status;
    pub fn clmoe_checkpoint_close(ck: *mut clmoe_checkpoint);
    pub fn clmoe_checkpoint_get_num_tensors(ck: *const clmoe_checkpoint, count: *mut i64)
        -> clmoe_status;
    pub fn clmoe_checkpoint_get_tensor(
        ck: *const clmoe_checkpoint,
        index: i64,
        info: *mut clmoe_checkpoint_tensor,
    ) -> clmoe_status;
    pub fn clmoe_checkpoint_find_tensor(
        ck: *const clmoe_checkpoint,
        name: *const c_char,
        info: *mut clmoe_checkpoint_tensor,
    ) -> clmoe_status;
    pub fn clmoe_checkpoint_read(
        ck: *const clmoe_checkpoint,
        name: *const c_char,
        dtype: clmoe_dtype,
        dst: *mut c_void,
        dst_bytes: usize,
    ) -> clmoe_status;
    pub fn clmoe_layer_desc_init_sized(desc: *mut clmoe_layer_desc, size: usize);
    pub fn clmoe_moe_layer_init_sized(layer: *mut clmoe_moe_layer, size: usize);
    pub fn clmoe_checkpoint_load_layer(
        ctx: *mut clmoe_context,
        ck: *const clmoe_checkpoint,
        desc: *const clmoe_layer_desc,
        out: *mut clmoe_moe_layer,
    ) -> clmoe_status;

    pub fn clmoe_train_desc_init_sized(desc: *mut clmoe_train_desc, size: usize);
    pub fn clmoe_aux_losses_init_sized(losses: *mut clmoe_aux_losses, size: usize);
    pub fn clmoe_expert_grads_init_sized(g: *mut clmoe_expert_grads, size: usize);
    pub fn clmoe_router_grads_init_sized(g: *mut clmoe_router_grads, size: usize);
    pub fn clmoe_forward_train(
        router: *mut clmoe_router,
        experts: *mut clmoe_experts,
        shared: *mut clmoe_experts,
        shared_gate: *const clmoe_tensor,
        x: *const clmoe_tensor,
        importance: *const clmoe_tensor,
        y: *mut clmoe_tensor,
        routing: *mut clmoe_routing,
        flags: u32,
        train: *const clmoe_train_desc,
        losses: *mut clmoe_aux_losses,
    ) -> clmoe_status;
    pub fn clmoe_routing_saved_bytes(routing: *const clmoe_routing, bytes: *mut i64)
        -> clmoe_status;
    pub fn clmoe_backward(
        router: *mut clmoe_router,
        experts: *mut clmoe_experts,
        shared: *mut clmoe_experts,
        shared_gate: *const clmoe_tensor,
        routing: *mut clmoe_routing,
        x: *const clmoe_tensor,
        dy: *const clmoe_tensor,
        dx: *mut clmoe_tensor,
        router_grads: *mut clmoe_router_grads,
        expert_grads: *mut clmoe_expert_grads,
        shared_grads: *mut clmoe_expert_grads,
        shared_gate_grad: *mut clmoe_tensor,
        aux: *const clmoe_train_desc,
        flags: u32,
    ) -> clmoe_status;
    pub fn clmoe_experts_update(
        experts: *mut clmoe_experts,
        desc: *const clmoe_experts_desc,
    ) -> clmoe_status;
    pub fn clmoe_router_update(
        router: *mut clmoe_router,
        weight_host: *const f32,
        weight: *const clmoe_tensor,
        bias_host: *const f32,
        bias: *const clmoe_tensor,
    ) -> clmoe_status;
}
