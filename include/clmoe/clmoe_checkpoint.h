/* clmoe checkpoint reader (since 0.3): Hugging Face safetensors files and
 * model directories (config.json, model.safetensors or sharded
 * model-*.safetensors with model.safetensors.index.json).
 *
 * Shards are memory-mapped read-only and never read whole: opening parses
 * and validates every header (JSON, through jansson), reading a tensor
 * touches only its bytes. A checkpoint holds no OpenCL object and no
 * context; it may be read from several threads at once (every call below
 * is thread-safe on one checkpoint except clmoe_checkpoint_close).
 *
 * Errors specific to files: CLMOE_ERROR_IO (a file cannot be opened, read
 * or mapped), CLMOE_ERROR_BAD_FILE (malformed: the detail names the file
 * and what is wrong), CLMOE_ERROR_NOT_FOUND (a tensor or file that is not
 * there: for a tensor the detail also names the nearest existing name). */
#ifndef CLMOE_CLMOE_CHECKPOINT_H
#define CLMOE_CLMOE_CHECKPOINT_H

#include "clmoe/clmoe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clmoe_checkpoint clmoe_checkpoint;

/* The largest rank a checkpoint tensor may have. */
#define CLMOE_CHECKPOINT_MAX_RANK 8

/* One stored tensor. */
typedef struct clmoe_checkpoint_tensor {
  size_t struct_size;
  /* Borrowed from the checkpoint; valid until clmoe_checkpoint_close. */
  const char *name;
  /* The stored dtype as safetensors spells it ("F32", "BF16", "I64", ...). */
  char dtype[8];
  /* CLMOE_DTYPE_F32, _F16 or _BF16 for stored F32, F16 and BF16 (the dtypes
   * clmoe_checkpoint_read converts from); since 0.4 also _F8_E4M3,
   * _F8_E5M2, _I8 and _U8 for those (read as their bytes, or decoded to a
   * float dtype); 0 for any other. */
  clmoe_dtype readable_dtype;
  int32_t rank; /* 0 (a scalar) .. CLMOE_CHECKPOINT_MAX_RANK */
  int64_t shape[CLMOE_CHECKPOINT_MAX_RANK];
  uint64_t bytes; /* stored size */
  /* Which file holds it: 0 .. clmoe_checkpoint_get_num_files - 1. */
  int32_t file;
} clmoe_checkpoint_tensor;

/* Sets struct_size (the caller's sizeof) and clears the rest. */
CLMOE_API void clmoe_checkpoint_tensor_init(clmoe_checkpoint_tensor *info);

/* Opens `path`: a .safetensors file, or a directory holding config.json
 * (optional) and either model.safetensors or model.safetensors.index.json
 * with the shards its weight_map names (plain file names in that
 * directory). Checks, each a BAD_FILE naming the file: the 8-byte header
 * length past the end of the file or over 100 MB, a header that is not a
 * JSON object, duplicate names (in one header, or in two shards), an entry
 * without a dtype string, a shape of non-negative integers or data_offsets
 * [begin, end] inside the data, an unknown dtype, offsets that disagree
 * with dtype x shape, overlapping tensors, an index whose weight_map names
 * a tensor its shard does not hold; IO or NOT_FOUND for a missing shard or
 * file. Ranks above CLMOE_CHECKPOINT_MAX_RANK are UNSUPPORTED. On error
 * *out is NULL and nothing is left open. */
CLMOE_API clmoe_status clmoe_checkpoint_open(const char *path,
                                             clmoe_checkpoint **out);

/* Unmaps and frees everything; names handed out become invalid. NULL is
 * ignored. */
CLMOE_API void clmoe_checkpoint_close(clmoe_checkpoint *ck);

/* Tensors across all files, and the files (shards). */
CLMOE_API clmoe_status
clmoe_checkpoint_get_num_tensors(const clmoe_checkpoint *ck, int64_t *count);
CLMOE_API clmoe_status
clmoe_checkpoint_get_num_files(const clmoe_checkpoint *ck, int32_t *count);

/* Tensor `index` (0 .. count - 1, in ascending name order: byte-wise
 * strcmp). Errors: NULL_POINTER, INVALID_STRUCT_SIZE, INVALID_ARGUMENT
 * (index out of range). */
CLMOE_API clmoe_status clmoe_checkpoint_get_tensor(
    const clmoe_checkpoint *ck, int64_t index, clmoe_checkpoint_tensor *info);

/* The tensor called `name`. Errors: NOT_FOUND (the detail names the
 * nearest existing name by edit distance), NULL_POINTER,
 * INVALID_STRUCT_SIZE. */
CLMOE_API clmoe_status
clmoe_checkpoint_find_tensor(const clmoe_checkpoint *ck, const char *name,
                             clmoe_checkpoint_tensor *info);

/* Copies tensor `name` into dst (dst_bytes must be exactly its element
 * count times the size of `dtype`; dst may be NULL for an empty tensor),
 * converted to `dtype`: F32, F16 or
 * BF16, from stored F32, F16 or BF16 (since 0.4 also from F8_E4M3,
 * F8_E5M2, I8 and U8, whose element codes are decoded without any scale;
 * or `dtype` equal to such a stored dtype: its bytes as stored). Widening
 * is exact; narrowing rounds
 * to nearest even and keeps NaN and Inf, and a finite value that would
 * become Inf is INVALID_ARGUMENT naming the tensor and the element. The
 * copy streams through a small buffer (no allocation of the tensor's
 * size). Errors: NOT_FOUND, UNSUPPORTED (another stored dtype, named, or a
 * target dtype that is not a float), SHAPE_MISMATCH (dst_bytes),
 * NULL_POINTER, INVALID_ARGUMENT. */
CLMOE_API clmoe_status clmoe_checkpoint_read(const clmoe_checkpoint *ck,
                                             const char *name,
                                             clmoe_dtype dtype, void *dst,
                                             size_t dst_bytes);

/* The text of the directory's config.json (NUL-terminated, borrowed until
 * close), or NULL when the checkpoint is a lone file or the directory has
 * none. Errors: NULL_POINTER. */
CLMOE_API clmoe_status clmoe_checkpoint_get_config(const clmoe_checkpoint *ck,
                                                   const char **json);

/* ------------------------------------------------------------------------ */
/* MoE layers from checkpoints                                               */
/* ------------------------------------------------------------------------ */

/* Model families whose MoE blocks clmoe knows (tensor names and gate
 * conventions of the Hugging Face transformers definitions). */
typedef int32_t clmoe_arch;
enum {
  CLMOE_ARCH_AUTO = 0,      /* from config.json "model_type" */
  CLMOE_ARCH_MIXTRAL = 1,   /* model.layers.L.block_sparse_moe: gate, experts
                               .e.{w1,w3,w2}; top-k gates renormalised */
  CLMOE_ARCH_OLMOE = 2,     /* model.layers.L.mlp: gate, experts.e.{gate,up,
                               down}_proj; renormalised iff norm_topk_prob */
  CLMOE_ARCH_QWEN2_MOE = 3, /* as OLMoE (moe_intermediate_size), plus
                               shared_expert.{gate,up,down}_proj and
                               shared_expert_gate; sparse layers per
                               decoder_sparse_step and mlp_only_layers */
  CLMOE_ARCH_QWEN3_MOE = 4, /* as Qwen2-MoE without shared experts */
  CLMOE_ARCH_CUSTOM = 5,    /* the desc's name templates and conventions */
  /* Since 0.4 (routing conventions in docs/policies.md): */
  /* model_type "deepseek_v2": model.layers.L.mlp: gate, experts.e.{gate,up,
   * down}_proj, shared_experts.*; softmax scores, topk_method "greedy" or
   * "group_limited_greedy" (groups scored by their best, CLMOE_GROUP_SCORE_
   * MAX), gates normalised iff norm_topk_prob, times routed_scaling_factor */
  CLMOE_ARCH_DEEPSEEK_V2 = 6,
  /* model_type "deepseek_v3" or "kimi_k2": as DEEPSEEK_V2 with sigmoid
   * scores, gate.e_score_correction_bias as the selection bias, topk_method
   * "noaux_tc" (groups scored by their two best) */
  CLMOE_ARCH_DEEPSEEK_V3 = 7,
  /* model_type "glm4_moe": DeepSeek-V3's router and names (GLM-4.5 ships
   * without topk_method / scoring_func: noaux_tc and sigmoid) */
  CLMOE_ARCH_GLM4_MOE = 8,
  /* model_type "gpt_oss": mlp.router.{weight,bias}; stacked
   * mlp.experts.gate_up_proj [E, d, 2f] (x.W order, gate/up columns
   * interleaved, de-interleaved at load) with gate_up_proj_bias [E, 2f],
   * down_proj [E, f, d] with down_proj_bias [E, d]; top-k of the logits,
   * softmax over them (RENORM), CLMOE_ACTIVATION_SWIGLU_OAI with
   * swiglu_limit from config.json and alpha 1.702 */
  CLMOE_ARCH_GPT_OSS = 9,
  /* model_type "llama4" (fields under "text_config") or "llama4_text":
   * language_model.model.layers.L.feed_forward. (or model.layers.L.
   * feed_forward.): router.weight, experts.gate_up_proj [E, d, 2f] (x.W
   * order, gate half first), experts.down_proj [E, f, d], shared_expert.*;
   * top-k by logit, sigmoid gate applied to the expert input
   * (CLMOE_GATE_INPUT); MoE layers per moe_layers or
   * interleave_moe_layer_step */
  CLMOE_ARCH_LLAMA4 = 10
};

typedef struct clmoe_layer_desc {
  size_t struct_size;
  int32_t layer; /* decoder layer index, from 0 */
  clmoe_arch arch;
  /* Storage dtype of the experts' weights: 0 keeps the stored one (F32, F16
   * or BF16; since 0.4 also F8_E4M3 experts with their block scales and
   * gpt-oss's MXFP4, see docs/quantization.md); F32, F16 or BF16 converts
   * (dequantizes) at load, rounding to nearest even; F8_E4M3, MXFP4, I8 or
   * I4 quantizes float experts by clmoe's rule (through host arrays). */
  clmoe_dtype weight_dtype;
  /* The routing policy. NULL: the model's own (TOPK with its
   * num_experts_per_tok, gates RENORM or RAW as the model normalises).
   * Otherwise its policy fields (policy .. fallback) are used, and
   * num_experts, d_model, the weights and the model's routing conventions
   * (scoring, selection bias, groups, gate_scale, gate_position) are the
   * loader's: a dynamic policy then runs over the model's own scores. */
  const clmoe_router_desc *policy;
  clmoe_experts_path path; /* of the experts objects; AUTO by default */
  /* CUSTOM only: tensor names in which "{layer}" and "{expert}" are
   * replaced by the numbers; weights as stored by PyTorch ([out, in]). */
  const char *router_name;  /* [E, d] */
  const char *w1_name;      /* per expert [f, d] (gate), or NULL and: */
  const char *gate_up_name; /* stacked [E, 2f, d], gate rows then up rows */
  const char *w3_name;      /* per expert [f, d] (up); NULL if not gated */
  const char *w2_name;      /* per expert [d, f] (down), or NULL and: */
  const char *down_name;    /* stacked [E, d, f] */
  const char *shared_w1_name, *shared_w3_name, *shared_w2_name; /* optional */
  const char *shared_gate_name; /* optional [1, d] */
  int32_t top_k;                /* CUSTOM: the model's k */
  int32_t renormalize;          /* CUSTOM: 1 renormalises the top-k gates */
  clmoe_activation activation;  /* CUSTOM: SWIGLU by default */
} clmoe_layer_desc;

/* Sets struct_size and the defaults: layer 0, AUTO, stored dtype, the
 * model's policy, AUTO path, SWIGLU, everything else 0 / NULL. Call it
 * through the macro (the caller's sizeof). */
CLMOE_API void clmoe_layer_desc_init_sized(clmoe_layer_desc *desc, size_t size);
#define clmoe_layer_desc_init(desc)                                            \
  clmoe_layer_desc_init_sized((desc), sizeof *(desc))

/* A loaded layer: the objects are owned by the caller (destroy them, or
 * call clmoe_moe_layer_release). */
typedef struct clmoe_moe_layer {
  size_t struct_size;
  clmoe_router *router;
  clmoe_experts *experts;
  clmoe_experts *shared_experts; /* NULL when the model has none */
  clmoe_tensor *shared_gate;     /* float32 [d], NULL when none */
  clmoe_arch arch;               /* resolved (never AUTO) */
  int32_t num_experts, d_model, d_ff, shared_d_ff; /* shared_d_ff 0: none */
  int32_t top_k;            /* the model's num_experts_per_tok */
  int32_t renormalize;      /* the model renormalises its top-k gates */
  clmoe_dtype weight_dtype; /* of the experts */
  /* Since 0.4: the model's routing and expert conventions, as loaded. */
  clmoe_scoring scoring;
  int32_t num_groups, topk_groups; /* 1, 1: no groups */
  clmoe_group_score group_score;
  float gate_scale; /* routed_scaling_factor; 1 for the others */
  clmoe_gate_position gate_position;
  int32_t has_selection_bias;  /* e_score_correction_bias loaded */
  int32_t has_router_bias;     /* gpt-oss */
  int32_t has_expert_biases;   /* gpt-oss */
  clmoe_activation activation; /* of the routed experts */
  float swiglu_limit;          /* SWIGLU_OAI only, else 0 */
} clmoe_moe_layer;

/* Sets struct_size to `size` (at most sizeof(clmoe_moe_layer)) and clears
 * the rest; call it through the clmoe_moe_layer_init(layer) macro (the
 * caller's sizeof). A layer of the 0.3 size receives the 0.3 fields. */
CLMOE_API void clmoe_moe_layer_init_sized(clmoe_moe_layer *layer, size_t size);
/* The 0.3 entry point: initialises the 0.3 fields only (up to
 * weight_dtype). */
CLMOE_API void(clmoe_moe_layer_init)(clmoe_moe_layer *layer);
#define clmoe_moe_layer_init(layer)                                            \
  clmoe_moe_layer_init_sized((layer), sizeof *(layer))

/* Destroys the layer's objects and sets them to NULL. NULL is ignored. */
CLMOE_API void clmoe_moe_layer_release(clmoe_moe_layer *layer);

/* Loads MoE layer desc->layer of a checkpoint onto ctx: the router (weight
 * transposed to W_r [d, E], float32), the experts (both expert layouts in
 * use: one tensor per expert and projection, or stacked gate_up_proj /
 * down_proj; laid out once), and shared experts with their gate where the
 * model has them. Run it with clmoe_forward_shared (or clmoe_forward when
 * shared_experts is NULL). Sizes come from config.json (hidden_size,
 * intermediate_size or moe_intermediate_size, the expert count,
 * num_experts_per_tok, num_hidden_layers) and every tensor's shape is
 * checked against them. Errors: NOT_FOUND (a tensor, naming the nearest
 * existing one), SHAPE_MISMATCH (a tensor that disagrees with
 * config.json, both named), INVALID_ARGUMENT (a layer outside the model,
 * or one that is not an MoE layer there, naming the config field: Qwen's
 * mlp_only_layers or decoder_sparse_step, DeepSeek's
 * first_k_dense_replace or moe_layer_freq, Llama 4's moe_layers or
 * interleave_moe_layer_step; AUTO without config.json; a llama4 config
 * without text_config; a gpt-oss checkpoint without its expert or router
 * biases, naming the tensor), UNSUPPORTED (a model_type, topk_method or
 * scoring_func clmoe does not know, named; a quantization_config, naming
 * its quant_method; a stored dtype it cannot read),
 * BAD_FILE (config.json not JSON or missing a needed field), and those of
 * clmoe_router_create and clmoe_experts_create. On error nothing is left
 * allocated and *out is cleared. */
CLMOE_API clmoe_status clmoe_checkpoint_load_layer(clmoe_context *ctx,
                                                   const clmoe_checkpoint *ck,
                                                   const clmoe_layer_desc *desc,
                                                   clmoe_moe_layer *out);

#ifdef __cplusplus
}
#endif

#endif /* CLMOE_CLMOE_CHECKPOINT_H */
