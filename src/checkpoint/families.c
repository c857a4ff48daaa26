/* The model families clmoe loads, as config.json describes them: which
 * layers are MoE layers, their sizes, tensor names and routing conventions.
 * Field names and defaults follow the released models' configurations and
 * the Hugging Face transformers definitions:
 *  - Mixtral renormalises its top-k softmax probabilities; OLMoE and Qwen
 *    only with norm_topk_prob; Qwen2-MoE adds sigmoid(x . w) * shared(x);
 *    Qwen's dense layers are in mlp_only_layers or off decoder_sparse_step.
 *  - DeepSeek-V3 / Kimi K2 / GLM-4.5 ("noaux_tc"): sigmoid scores, a
 *    selection bias, groups scored by their two best, routed_scaling_factor,
 *    shared experts of n_shared_experts * moe_intermediate_size; DeepSeek-V2
 *    ("group_limited_greedy"): softmax, groups scored by their best. Dense
 *    layers: below first_k_dense_replace or off moe_layer_freq.
 *  - gpt-oss: a router bias, softmax over the selected logits (= RENORM),
 *    the clamped SwiGLU with biases, gate/up columns interleaved, x.W order.
 *  - Llama 4: top-k by logit, sigmoid gate on the expert input, a shared
 *    expert, gate/up halves in x.W order; MoE layers per moe_layers or
 *    interleave_moe_layer_step; the text model's fields under text_config. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/layer_plan.h"
#include "runtime/runtime.h"

static const char *const FN = "clmoe_checkpoint_load_layer";

#define MLP "model.layers.{layer}.mlp."
static const arch_names k_mixtral = {
    .router = "model.layers.{layer}.block_sparse_moe.gate.weight",
    .w1 = "model.layers.{layer}.block_sparse_moe.experts.{expert}.w1.weight",
    .w3 = "model.layers.{layer}.block_sparse_moe.experts.{expert}.w3.weight",
    .w2 = "model.layers.{layer}.block_sparse_moe.experts.{expert}.w2.weight",
    .gate_up = "model.layers.{layer}.block_sparse_moe.experts.gate_up_proj",
    .down = "model.layers.{layer}.block_sparse_moe.experts.down_proj"};
/* The router and experts of the model.layers.L.mlp families. */
#define MLP_EXPERTS                                                            \
  .router = MLP "gate.weight", .w1 = MLP "experts.{expert}.gate_proj.weight",  \
  .w3 = MLP "experts.{expert}.up_proj.weight",                                 \
  .w2 = MLP "experts.{expert}.down_proj.weight",                               \
  .gate_up = MLP "experts.gate_up_proj", .down = MLP "experts.down_proj"
static const arch_names k_olmoe_qwen3 = {MLP_EXPERTS};
static const arch_names k_qwen2 = {
    MLP_EXPERTS, .shared_w1 = MLP "shared_expert.gate_proj.weight",
    .shared_w3 = MLP "shared_expert.up_proj.weight",
    .shared_w2 = MLP "shared_expert.down_proj.weight",
    .shared_gate = MLP "shared_expert_gate.weight"};
/* DeepSeek-V2/V3, Kimi K2, GLM-4.5. */
static const arch_names k_deepseek = {
    MLP_EXPERTS, .shared_w1 = MLP "shared_experts.gate_proj.weight",
    .shared_w3 = MLP "shared_experts.up_proj.weight",
    .shared_w2 = MLP "shared_experts.down_proj.weight",
    .selection_bias = MLP "gate.e_score_correction_bias"};
#undef MLP_EXPERTS
static const arch_names k_gpt_oss = {.router = MLP "router.weight",
                                     .router_bias = MLP "router.bias",
                                     .gate_up = MLP "experts.gate_up_proj",
                                     .down = MLP "experts.down_proj",
                                     .gate_up_bias =
                                         MLP "experts.gate_up_proj_bias",
                                     .down_bias = MLP "experts.down_proj_bias"};
#undef MLP
#define LLAMA4_NAMES(P)                                                        \
  {                                                                            \
    .router = P "router.weight", .gate_up = P "experts.gate_up_proj",          \
    .down = P "experts.down_proj",                                             \
    .shared_w1 = P "shared_expert.gate_proj.weight",                           \
    .shared_w3 = P "shared_expert.up_proj.weight",                             \
    .shared_w2 = P "shared_expert.down_proj.weight"                            \
  }
/* The multimodal checkpoint nests the text model under language_model;
 * the text-only one does not. */
static const arch_names k_llama4 =
    LLAMA4_NAMES("language_model.model.layers.{layer}.feed_forward.");
static const arch_names k_llama4_text =
    LLAMA4_NAMES("model.layers.{layer}.feed_forward.");
#undef LLAMA4_NAMES

static const struct {
  const char *model_type;
  clmoe_arch arch;
} k_model_types[] = {{"mixtral", CLMOE_ARCH_MIXTRAL},
                     {"olmoe", CLMOE_ARCH_OLMOE},
                     {"qwen2_moe", CLMOE_ARCH_QWEN2_MOE},
                     {"qwen3_moe", CLMOE_ARCH_QWEN3_MOE},
                     {"deepseek_v2", CLMOE_ARCH_DEEPSEEK_V2},
                     {"deepseek_v3", CLMOE_ARCH_DEEPSEEK_V3},
                     {"kimi_k2", CLMOE_ARCH_DEEPSEEK_V3},
                     {"glm4_moe", CLMOE_ARCH_GLM4_MOE},
                     {"gpt_oss", CLMOE_ARCH_GPT_OSS},
                     {"llama4", CLMOE_ARCH_LLAMA4},
                     {"llama4_text", CLMOE_ARCH_LLAMA4}};

void cm_expand_name(const char *tmpl, int layer, int expert, char *out,
                    size_t len) {
  size_t n = 0;
  for (const char *p = tmpl; *p && n + 1 < len;) {
    int v = -1;
    if (!strncmp(p, "{layer}", 7)) {
      v = layer;
      p += 7;
    } else if (!strncmp(p, "{expert}", 8)) {
      v = expert;
      p += 8;
    }
    if (v >= 0) {
      int w = snprintf(out + n, len - n, "%d", v);
      n += w > 0 ? (size_t)w : 0;
      if (n >= len)
        n = len - 1;
    } else {
      out[n++] = *p++;
    }
  }
  out[n] = 0;
}

/* ---- config.json fields ---- */

static clmoe_status config_int(json_t *cfg, const char *key, int required,
                               int fallback, int *out) {
  json_t *v = json_object_get(cfg, key);
  if ((!v || json_is_null(v)) && !required) {
    *out = fallback;
    return CLMOE_SUCCESS;
  }
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      json_integer_value(v) > INT32_MAX)
    return cm_fail_at(CLMOE_ERROR_BAD_FILE, FN,
                      "config.json: \"%s\" is %s; expected a non-negative "
                      "integer",
                      key, v ? "not one" : "missing");
  *out = (int)json_integer_value(v);
  return CLMOE_SUCCESS;
}

static clmoe_status config_float(json_t *cfg, const char *key, float fallback,
                                 float *out) {
  json_t *v = json_object_get(cfg, key);
  if (!v || json_is_null(v)) {
    *out = fallback;
    return CLMOE_SUCCESS;
  }
  if (!json_is_number(v) || !isfinite(json_number_value(v)))
    return cm_fail_at(CLMOE_ERROR_BAD_FILE, FN,
                      "config.json: \"%s\" is not a finite number", key);
  *out = (float)json_number_value(v);
  return CLMOE_SUCCESS;
}

static int config_bool(json_t *cfg, const char *key, int fallback) {
  json_t *v = json_object_get(cfg, key);
  return json_is_boolean(v) ? json_is_true(v) : fallback;
}

static const char *config_string(json_t *cfg, const char *key,
                                 const char *fallback) {
  const char *s = json_string_value(json_object_get(cfg, key));
  return s ? s : fallback;
}

/* The sizes every family has; `experts_key` and `width_key` name its
 * fields. */
static clmoe_status common_sizes(json_t *cfg, const char *experts_key,
                                 const char *width_key, int *layers, plan *p) {
  clmoe_status st;
  if ((st = config_int(cfg, "hidden_size", 1, 0, &p->d)) ||
      (st = config_int(cfg, "num_hidden_layers", 1, 0, layers)) ||
      (st = config_int(cfg, "num_experts_per_tok", 1, 0, &p->k)) ||
      (st = config_int(cfg, experts_key, 1, 0, &p->E)) ||
      (st = config_int(cfg, width_key, 1, 0, &p->f)))
    return st;
  if (p->layer < 0 || p->layer >= *layers)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "layer %d is outside 0..%d (num_hidden_layers = %d)",
                      p->layer, *layers - 1, *layers);
  return CLMOE_SUCCESS;
}

static clmoe_status plan_mixtral_qwen(json_t *cfg, plan *p) {
  int layers = 0, step = 1;
  int qwen = p->arch == CLMOE_ARCH_QWEN2_MOE || p->arch == CLMOE_ARCH_QWEN3_MOE;
  clmoe_status st;
  if ((st = common_sizes(
           cfg,
           p->arch == CLMOE_ARCH_MIXTRAL ? "num_local_experts" : "num_experts",
           qwen ? "moe_intermediate_size" : "intermediate_size", &layers, p)) ||
      (qwen && (st = config_int(cfg, "decoder_sparse_step", 0, 1, &step))) ||
      (p->arch == CLMOE_ARCH_QWEN2_MOE &&
       (st = config_int(cfg, "shared_expert_intermediate_size", 0, 0, &p->fs))))
    return st;
  p->renorm = p->arch == CLMOE_ARCH_MIXTRAL
                  ? 1
                  : json_is_true(json_object_get(cfg, "norm_topk_prob"));
  if (qwen) {
    json_t *dense = json_object_get(cfg, "mlp_only_layers");
    size_t i;
    json_t *v;
    int listed = 0;
    json_array_foreach(dense, i, v) listed |=
        json_is_integer(v) && json_integer_value(v) == p->layer;
    if (listed || p->E == 0 || step < 1 || (p->layer + 1) % step != 0)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "layer %d is a dense MLP in this model, not an MoE "
                        "layer (mlp_only_layers%s, decoder_sparse_step = %d)",
                        p->layer, listed ? " lists it" : "", step);
  }
  p->names = p->arch == CLMOE_ARCH_MIXTRAL     ? k_mixtral
             : p->arch == CLMOE_ARCH_QWEN2_MOE ? k_qwen2
                                               : k_olmoe_qwen3;
  return CLMOE_SUCCESS;
}

/* DeepSeek-V2/V3, Kimi K2 and GLM-4.5. Family defaults where a field is
 * absent (GLM-4.5 ships without topk_method and scoring_func). */
static clmoe_status plan_deepseek(json_t *cfg, plan *p) {
  int v2 = p->arch == CLMOE_ARCH_DEEPSEEK_V2;
  int v3 = p->arch == CLMOE_ARCH_DEEPSEEK_V3;
  int layers = 0, shared = 0, dense_below = 0, freq = 1;
  clmoe_status st;
  if ((st = common_sizes(cfg, "n_routed_experts", "moe_intermediate_size",
                         &layers, p)) ||
      (st = config_int(cfg, "n_shared_experts", 0, 0, &shared)) ||
      (st = config_int(cfg, "n_group", 0, v3 ? 8 : 1, &p->num_groups)) ||
      (st = config_int(cfg, "topk_group", 0, v3 ? 4 : 1, &p->topk_groups)) ||
      (st = config_int(cfg, "first_k_dense_replace", 0, 0, &dense_below)) ||
      (st = config_int(cfg, "moe_layer_freq", 0, 1, &freq)) ||
      (st = config_float(cfg, "routed_scaling_factor", v3 ? 2.5f : 1.0f,
                         &p->gate_scale)))
    return st;
  if (p->layer < dense_below)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "layer %d is a dense MLP in this model, not an MoE "
                      "layer (first_k_dense_replace = %d)",
                      p->layer, dense_below);
  if (freq < 1 || p->layer % freq != 0)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "layer %d is a dense MLP in this model, not an MoE "
                      "layer (moe_layer_freq = %d)",
                      p->layer, freq);
  const char *method =
      config_string(cfg, "topk_method", v2 ? "greedy" : "noaux_tc");
  const char *scoring =
      config_string(cfg, "scoring_func", v2 ? "softmax" : "sigmoid");
  if (!strcmp(scoring, "sigmoid"))
    p->scoring = CLMOE_SCORING_SIGMOID;
  else if (!strcmp(scoring, "softmax"))
    p->scoring = CLMOE_SCORING_SOFTMAX;
  else
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "config.json scoring_func \"%.32s\" is not one clmoe "
                      "knows (softmax, sigmoid)",
                      scoring);
  p->names = k_deepseek;
  if (!strcmp(method, "noaux_tc")) {
    p->group_score = CLMOE_GROUP_SCORE_TOP2_SUM;
  } else if (!strcmp(method, "group_limited_greedy")) {
    p->group_score = CLMOE_GROUP_SCORE_MAX;
    p->names.selection_bias = NULL;
  } else if (!strcmp(method, "greedy")) {
    p->num_groups = p->topk_groups = 1;
    p->names.selection_bias = NULL;
  } else {
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "config.json topk_method \"%.32s\" is not one clmoe "
                      "knows (greedy, group_limited_greedy, noaux_tc)",
                      method);
  }
  p->renorm = config_bool(cfg, "norm_topk_prob", !v2);
  p->fs = shared * p->f;
  if (!shared)
    p->names.shared_w1 = p->names.shared_w3 = p->names.shared_w2 = NULL;
  return CLMOE_SUCCESS;
}

static clmoe_status plan_gpt_oss(json_t *cfg, plan *p) {
  int layers = 0;
  clmoe_status st;
  if ((st = common_sizes(cfg, "num_local_experts", "intermediate_size", &layers,
                         p)) ||
      (st = config_float(cfg, "swiglu_limit", 7.0f, &p->swiglu_limit)))
    return st;
  p->names = k_gpt_oss;
  p->renorm = 1; /* softmax of the selected logits */
  p->activation = CLMOE_ACTIVATION_SWIGLU_OAI;
  p->swiglu_alpha = 1.702f; /* gpt-oss's constant, not in config.json */
  p->xw = p->interleaved = 1;
  p->needs_expert_biases = 1;
  return CLMOE_SUCCESS;
}

static clmoe_status plan_llama4(const clmoe_checkpoint *ck, json_t *top,
                                plan *p) {
  const char *type = config_string(top, "model_type", "");
  json_t *cfg =
      strcmp(type, "llama4_text") ? json_object_get(top, "text_config") : top;
  if (!json_is_object(cfg))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "config.json of a llama4 model has no \"text_config\" "
                      "object (the text model's fields)");
  int layers = 0, step = 1;
  clmoe_status st;
  if ((st = common_sizes(cfg, "num_local_experts", "intermediate_size", &layers,
                         p)) ||
      (st = config_int(cfg, "interleave_moe_layer_step", 0, 1, &step)))
    return st;
  json_t *listed = json_object_get(cfg, "moe_layers");
  int moe = 0;
  if (json_is_array(listed)) {
    size_t i;
    json_t *v;
    json_array_foreach(listed, i, v) moe |=
        json_is_integer(v) && json_integer_value(v) == p->layer;
    if (!moe)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "layer %d is a dense MLP in this model, not an MoE "
                        "layer (moe_layers does not list it)",
                        p->layer);
  } else if (step < 1 || (p->layer + 1) % step != 0) {
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "layer %d is a dense MLP in this model, not an MoE "
                      "layer (interleave_moe_layer_step = %d)",
                      p->layer, step);
  }
  /* Either checkpoint layout: the nested names unless only the text
   * model's are there. */
  char name[512];
  cm_expand_name(k_llama4.router, p->layer, 0, name, sizeof name);
  p->names = k_llama4;
  if (!cm_ck_lookup(ck, name)) {
    cm_expand_name(k_llama4_text.router, p->layer, 0, name, sizeof name);
    if (cm_ck_lookup(ck, name))
      p->names = k_llama4_text;
  }
  p->fs = p->f;
  p->scoring = CLMOE_SCORING_SIGMOID;
  p->renorm = 0;
  p->gate_position = CLMOE_GATE_INPUT;
  p->xw = 1;
  return CLMOE_SUCCESS;
}

/* The quantization clmoe loads as stored: FP8 e4m3 with 128 x 128 block
 * scales (DeepSeek-V3, Kimi K2, Qwen3-FP8) and MXFP4 (gpt-oss). */
static clmoe_status check_quantization(json_t *cfg) {
  json_t *q = json_object_get(cfg, "quantization_config");
  if (!q)
    return CLMOE_SUCCESS;
  const char *method = config_string(q, "quant_method", "?");
  if (!strcmp(method, "mxfp4"))
    return CLMOE_SUCCESS;
  if (!strcmp(method, "fp8")) {
    const char *fmt = config_string(q, "fmt", "e4m3");
    json_t *block = json_object_get(q, "weight_block_size");
    int blocks_ok = !block || (json_array_size(block) == 2 &&
                               json_integer_value(json_array_get(block, 0)) ==
                                   128 &&
                               json_integer_value(json_array_get(block, 1)) ==
                                   128);
    if (!strcmp(fmt, "e4m3") && blocks_ok)
      return CLMOE_SUCCESS;
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "config.json quantization_config: fp8 with fmt "
                      "\"%.16s\" and weight_block_size other than [128, "
                      "128]; clmoe loads e4m3 with 128 x 128 blocks",
                      fmt);
  }
  return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                    "config.json quantization_config has quant_method "
                    "\"%.32s\"; clmoe loads fp8 (e4m3, 128 x 128 blocks) and "
                    "mxfp4",
                    method);
}

static clmoe_status plan_from_config(const clmoe_checkpoint *ck, json_t *cfg,
                                     plan *p) {
  json_t *text = json_object_get(cfg, "text_config");
  clmoe_status st = check_quantization(cfg);
  if (st || (json_is_object(text) && (st = check_quantization(text))))
    return st;
  switch (p->arch) {
  case CLMOE_ARCH_DEEPSEEK_V2:
  case CLMOE_ARCH_DEEPSEEK_V3:
  case CLMOE_ARCH_GLM4_MOE:
    return plan_deepseek(cfg, p);
  case CLMOE_ARCH_GPT_OSS:
    return plan_gpt_oss(cfg, p);
  case CLMOE_ARCH_LLAMA4:
    return plan_llama4(ck, cfg, p);
  default:
    return plan_mixtral_qwen(cfg, p);
  }
}

static clmoe_status plan_custom(const clmoe_layer_desc *desc, plan *p) {
  p->names = (arch_names){.router = desc->router_name,
                          .w1 = desc->w1_name,
                          .w3 = desc->w3_name,
                          .w2 = desc->w2_name,
                          .gate_up = desc->gate_up_name,
                          .down = desc->down_name,
                          .shared_w1 = desc->shared_w1_name,
                          .shared_w3 = desc->shared_w3_name,
                          .shared_w2 = desc->shared_w2_name,
                          .shared_gate = desc->shared_gate_name};
  p->k = desc->top_k;
  p->renorm = desc->renormalize != 0;
  p->activation = desc->activation;
  if (!p->names.router || !(p->names.w1 || p->names.gate_up) ||
      !(p->names.w2 || p->names.down))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "CUSTOM needs router_name, w1_name or gate_up_name, "
                      "and w2_name or down_name");
  return CLMOE_SUCCESS;
}

clmoe_status cm_layer_plan(const clmoe_checkpoint *ck,
                           const clmoe_layer_desc *desc, plan *p) {
  memset(p, 0, sizeof *p);
  p->arch = desc->arch;
  p->layer = desc->layer;
  p->activation = CLMOE_ACTIVATION_SWIGLU;
  p->swiglu_limit = 7.0f;
  p->swiglu_alpha = 1.702f;
  p->scoring = CLMOE_SCORING_SOFTMAX;
  p->num_groups = p->topk_groups = 1;
  p->gate_scale = 1.0f;
  p->gate_position = CLMOE_GATE_OUTPUT;
  if (p->arch == CLMOE_ARCH_CUSTOM)
    return plan_custom(desc, p);
  if (p->arch < CLMOE_ARCH_AUTO || p->arch > CLMOE_ARCH_LLAMA4)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown arch %d",
                      (int)p->arch);
  const char *text = NULL;
  clmoe_checkpoint_get_config(ck, &text);
  if (!text)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "the checkpoint has no config.json; give a model "
                      "directory, or arch CUSTOM with names and sizes");
  json_error_t err;
  json_t *cfg = json_loads(text, 0, &err);
  if (!json_is_object(cfg)) {
    json_decref(cfg);
    return cm_fail_at(CLMOE_ERROR_BAD_FILE, FN,
                      "config.json is not a JSON object (%s)",
                      cfg ? "another value" : err.text);
  }
  clmoe_status st = CLMOE_SUCCESS;
  if (p->arch == CLMOE_ARCH_AUTO) {
    const char *type = config_string(cfg, "model_type", NULL);
    for (size_t i = 0; type && i < sizeof k_model_types / sizeof *k_model_types;
         ++i)
      if (!strcmp(type, k_model_types[i].model_type))
        p->arch = k_model_types[i].arch;
    if (p->arch == CLMOE_ARCH_AUTO)
      st = cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "config.json model_type \"%.64s\" is not one clmoe "
                      "knows (mixtral, olmoe, qwen2_moe, qwen3_moe, "
                      "deepseek_v2, deepseek_v3, kimi_k2, glm4_moe, gpt_oss, "
                      "llama4, llama4_text); use arch CUSTOM with tensor "
                      "names",
                      type ? type : "(missing)");
  }
  if (!st)
    st = plan_from_config(ck, cfg, p);
  json_decref(cfg);
  return st;
}
