"""Loads libclmoe and declares the C ABI for ctypes."""
import ctypes
import ctypes.util
import os
from pathlib import Path

c_size = ctypes.c_size_t
c_i32 = ctypes.c_int32
c_i64 = ctypes.c_int64
c_void = ctypes.c_void_p
LOG_FN = ctypes.CFUNCTYPE(None, c_void, c_i32, ctypes.c_char_p)


class ContextDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("cl_context", c_void),
                ("cl_device", c_void), ("cl_queue", c_void),
                ("device", ctypes.c_char_p), ("cache_dir", ctypes.c_char_p),
                ("flags", ctypes.c_uint32), ("log_fn", LOG_FN),
                ("log_user_data", c_void), ("tuning_file", ctypes.c_char_p)]


class DeviceInfo(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("name", ctypes.c_char * 256),
                ("vendor", ctypes.c_char * 256),
                ("platform_name", ctypes.c_char * 256),
                ("version", ctypes.c_char * 128),
                ("driver_version", ctypes.c_char * 128), ("type", c_i32),
                ("has_fp16", c_i32), ("has_fp64", c_i32),
                ("compute_units", c_i32), ("global_mem_bytes", ctypes.c_uint64),
                ("max_alloc_bytes", ctypes.c_uint64),
                ("local_mem_bytes", ctypes.c_uint64)]


class RouterDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("num_experts", c_i32),
                ("d_model", c_i32), ("policy", c_i32), ("k", c_i32),
                ("p", ctypes.c_float), ("k_min", c_i32), ("k_max", c_i32),
                ("k_mean", ctypes.c_float), ("capacity_factor", ctypes.c_float),
                ("overflow", c_i32), ("gates", c_i32), ("affinity", c_i32),
                ("fallback", c_i32), ("weight_host", c_void),
                ("weight", c_void), ("bias_host", c_void), ("bias", c_void),
                ("weight_dtype", c_i32),
                # since 0.4
                ("scoring", c_i32), ("selection_bias_host", c_void),
                ("selection_bias", c_void), ("num_groups", c_i32),
                ("topk_groups", c_i32), ("group_score", c_i32),
                ("gate_scale", ctypes.c_float), ("gate_position", c_i32)]


class RoutingStats(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("num_tokens", c_i64),
                ("num_experts", c_i64), ("num_slots", c_i64),
                ("dropped", c_i64), ("mean_k", ctypes.c_double),
                ("min_k", c_i32), ("max_k", c_i32),
                ("balance_loss", ctypes.c_double),
                ("mean_entropy", ctypes.c_double),
                ("k_histogram", ctypes.POINTER(c_i64)),
                ("expert_load", ctypes.POINTER(ctypes.c_float)),
                ("mean_prob", ctypes.POINTER(ctypes.c_float)),
                ("array_capacity", c_i64)]


class ExpertsDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("num_experts", c_i32),
                ("d_model", c_i32), ("d_ff", c_i32), ("activation", c_i32),
                ("layout", c_i32)] + [
        (name, c_void) for w in ("w1", "w3", "w2", "b1", "b3", "b2")
        for name in (w + "_host", w)] + [("path", c_i32),
                                         ("weight_dtype", c_i32),
                                         ("host_dtype", c_i32),
                                         ("swiglu_limit", ctypes.c_float),
                                         ("swiglu_alpha", ctypes.c_float)]


class ScoreDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("mask", c_i32), ("norm", c_i32),
                ("scale", ctypes.c_float), ("seq_offsets", c_void),
                ("key_lengths", c_void), ("flags", ctypes.c_uint32),
                ("layout", c_i32), ("lse", c_void)]


class CheckpointTensor(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("name", ctypes.c_char_p),
                ("dtype", ctypes.c_char * 8), ("readable_dtype", c_i32),
                ("rank", c_i32), ("shape", c_i64 * 8),
                ("bytes", ctypes.c_uint64), ("file", c_i32)]


class LayerDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("layer", c_i32), ("arch", c_i32),
                ("weight_dtype", c_i32), ("policy", c_void), ("path", c_i32)] + [
        (name, ctypes.c_char_p) for name in (
            "router_name", "w1_name", "gate_up_name", "w3_name", "w2_name",
            "down_name", "shared_w1_name", "shared_w3_name",
            "shared_w2_name", "shared_gate_name")] + [
        ("top_k", c_i32), ("renormalize", c_i32), ("activation", c_i32)]


class MoELayerOut(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("router", c_void),
                ("experts", c_void), ("shared_experts", c_void),
                ("shared_gate", c_void), ("arch", c_i32),
                ("num_experts", c_i32), ("d_model", c_i32), ("d_ff", c_i32),
                ("shared_d_ff", c_i32), ("top_k", c_i32),
                ("renormalize", c_i32), ("weight_dtype", c_i32),
                # since 0.4
                ("scoring", c_i32), ("num_groups", c_i32),
                ("topk_groups", c_i32), ("group_score", c_i32),
                ("gate_scale", ctypes.c_float), ("gate_position", c_i32),
                ("has_selection_bias", c_i32), ("has_router_bias", c_i32),
                ("has_expert_biases", c_i32), ("activation", c_i32),
                ("swiglu_limit", ctypes.c_float)]


class TrainDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("balance_coeff", ctypes.c_float),
                ("z_loss_coeff", ctypes.c_float),
                ("entropy_coeff", ctypes.c_float)]


class AuxLosses(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("balance", ctypes.c_double),
                ("z_loss", ctypes.c_double), ("entropy", ctypes.c_double),
                ("total", ctypes.c_double)]


class ExpertGrads(ctypes.Structure):
    _fields_ = [("struct_size", c_size)] + [
        (name, c_void) for name in ("w1", "w3", "w2", "b1", "b3", "b2")]


class RouterGrads(ctypes.Structure):
    _fields_ = [("struct_size", c_size), ("weight", c_void), ("bias", c_void)]


def _candidates():
    env = os.environ.get("CLMOE_LIBRARY")
    if env:
        yield env
    root = Path(__file__).resolve().parents[3]
    for build in sorted(root.glob("build*")):
        yield str(build / "libclmoe.so")
    found = ctypes.util.find_library("clmoe")
    if found:
        yield found
    yield "libclmoe.so.0"


def _load():
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    raise ImportError("libclmoe not found; build it (bash scripts/test.sh) or "
                      "set CLMOE_LIBRARY. Tried: " + "; ".join(errors))


lib = _load()

_P = ctypes.POINTER
_SIGNATURES = {
    "clmoe_train_desc_init_sized": (None, [_P(TrainDesc), c_size]),
    "clmoe_aux_losses_init_sized": (None, [_P(AuxLosses), c_size]),
    "clmoe_expert_grads_init_sized": (None, [_P(ExpertGrads), c_size]),
    "clmoe_router_grads_init_sized": (None, [_P(RouterGrads), c_size]),
    "clmoe_forward_train": (c_i32, [c_void, c_void, c_void, c_void, c_void,
                                    c_void, c_void, c_void, ctypes.c_uint32,
                                    _P(TrainDesc), _P(AuxLosses)]),
    "clmoe_backward": (c_i32, [c_void, c_void, c_void, c_void, c_void,
                               c_void, c_void, c_void, _P(RouterGrads),
                               _P(ExpertGrads), _P(ExpertGrads), c_void,
                               _P(TrainDesc), ctypes.c_uint32]),
    "clmoe_routing_saved_bytes": (c_i32, [c_void, _P(c_i64)]),
    "clmoe_experts_update": (c_i32, [c_void, _P(ExpertsDesc)]),
    "clmoe_router_update": (c_i32, [c_void, c_void, c_void, c_void, c_void]),
    "clmoe_version_string": (ctypes.c_char_p, []),
    "clmoe_status_string": (ctypes.c_char_p, [c_i32]),
    "clmoe_last_error_detail": (ctypes.c_char_p, []),
    "clmoe_context_desc_init_sized": (None, [_P(ContextDesc), c_size]),
    "clmoe_context_create": (c_i32, [_P(ContextDesc), _P(c_void)]),
    "clmoe_context_destroy": (None, [c_void]),
    "clmoe_context_build_programs": (c_i32, [c_void]),
    "clmoe_context_finish": (c_i32, [c_void]),
    "clmoe_device_info_init": (None, [_P(DeviceInfo)]),
    "clmoe_context_get_device_info": (c_i32, [c_void, _P(DeviceInfo)]),
    "clmoe_tensor_create": (c_i32, [c_void, c_i32, c_i32, _P(c_i64), c_void,
                                    _P(c_void)]),
    "clmoe_tensor_wrap": (c_i32, [c_void, c_void, c_i32, c_i32, _P(c_i64),
                                  _P(c_void)]),
    "clmoe_tensor_destroy": (None, [c_void]),
    "clmoe_tensor_read": (c_i32, [c_void, c_void, c_size]),
    "clmoe_tensor_write": (c_i32, [c_void, c_void, c_size]),
    "clmoe_tensor_get_shape": (c_i32, [c_void, _P(c_i32), _P(c_i64)]),
    "clmoe_tensor_get_dtype": (c_i32, [c_void, _P(c_i32)]),
    "clmoe_router_desc_init_sized": (None, [_P(RouterDesc), c_size]),
    "clmoe_router_create": (c_i32, [c_void, _P(RouterDesc), _P(c_void)]),
    "clmoe_router_destroy": (None, [c_void]),
    "clmoe_routing_create": (c_i32, [c_void, _P(c_void)]),
    "clmoe_routing_destroy": (None, [c_void]),
    "clmoe_routing_get_array": (c_i32, [c_void, c_i32, _P(c_void)]),
    "clmoe_routing_get_sizes": (c_i32, [c_void, _P(c_i64), _P(c_i64),
                                        _P(c_i64)]),
    "clmoe_routing_stats_init": (None, [_P(RoutingStats)]),
    "clmoe_routing_read_stats": (c_i32, [c_void, _P(RoutingStats)]),
    "clmoe_route": (c_i32, [c_void, c_void, c_void, c_void, ctypes.c_uint32,
                            c_void, c_void]),
    "clmoe_route_logits": (c_i32, [c_void, c_void, c_void, c_void,
                                   ctypes.c_uint32, c_void, c_void]),
    "clmoe_experts_desc_init_sized": (None, [_P(ExpertsDesc), c_size]),
    "clmoe_experts_get_path": (c_i32, [c_void, _P(c_i32)]),
    "clmoe_experts_get_bytes": (c_i32, [c_void, _P(c_i64), _P(c_i64)]),
    "clmoe_experts_get_weight_dtype": (c_i32, [c_void, _P(c_i32)]),
    "clmoe_convert": (c_i32, [c_i32, c_void, c_i32, c_void, c_i64]),
    "clmoe_convert_ex": (c_i32, [c_i32, c_void, c_i32, c_void, c_i64,
                                 ctypes.c_uint32]),
    "clmoe_experts_create": (c_i32, [c_void, _P(ExpertsDesc), _P(c_void)]),
    "clmoe_experts_destroy": (None, [c_void]),
    "clmoe_forward": (c_i32, [c_void, c_void, c_void, c_void, c_void, c_void,
                              ctypes.c_uint32, ctypes.c_uint32, c_void,
                              c_void]),
    "clmoe_checkpoint_open": (c_i32, [ctypes.c_char_p, _P(c_void)]),
    "clmoe_checkpoint_close": (None, [c_void]),
    "clmoe_checkpoint_get_num_tensors": (c_i32, [c_void, _P(c_i64)]),
    "clmoe_checkpoint_get_num_files": (c_i32, [c_void, _P(c_i32)]),
    "clmoe_checkpoint_tensor_init": (None, [_P(CheckpointTensor)]),
    "clmoe_checkpoint_get_tensor": (c_i32, [c_void, c_i64,
                                            _P(CheckpointTensor)]),
    "clmoe_checkpoint_find_tensor": (c_i32, [c_void, ctypes.c_char_p,
                                             _P(CheckpointTensor)]),
    "clmoe_checkpoint_read": (c_i32, [c_void, ctypes.c_char_p, c_i32, c_void,
                                      c_size]),
    "clmoe_checkpoint_get_config": (c_i32, [c_void, _P(ctypes.c_char_p)]),
    "clmoe_layer_desc_init_sized": (None, [_P(LayerDesc), c_size]),
    "clmoe_moe_layer_init": (None, [_P(MoELayerOut)]),
    "clmoe_moe_layer_init_sized": (None, [_P(MoELayerOut), c_size]),
    "clmoe_moe_layer_release": (None, [_P(MoELayerOut)]),
    "clmoe_checkpoint_load_layer": (c_i32, [c_void, c_void, _P(LayerDesc),
                                            _P(MoELayerOut)]),
    "clmoe_forward_shared": (c_i32, [c_void, c_void, c_void, c_void, c_void,
                                     c_void, c_void, c_void, ctypes.c_uint32,
                                     ctypes.c_uint32, c_void, c_void]),
    "clmoe_score_desc_init_sized": (None, [_P(ScoreDesc), c_size]),
    "clmoe_score_attention": (c_i32, [c_void, _P(ScoreDesc), c_void, c_void,
                                      c_void, c_void, ctypes.c_uint32, c_void,
                                      c_void]),
}
for _name, (_res, _args) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args
