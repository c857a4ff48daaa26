/* clmoe_checkpoint_load_layer: one MoE block of a Hugging Face model as a
 * router, experts and (Qwen2-MoE) shared experts. Tensor names and gate
 * conventions follow the transformers model definitions: Mixtral
 * renormalises its top-k softmax probabilities; OLMoE and Qwen renormalise
 * only with norm_topk_prob; Qwen2-MoE adds sigmoid(x . w) * shared(x);
 * Qwen's dense layers are those in mlp_only_layers or with
 * (layer + 1) % decoder_sparse_step != 0. Weights are stored [out, in] and
 * loaded expert-major with the experts' OUT_IN layout. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/checkpoint.h"
#include "moe/experts.h"
#include "runtime/runtime.h"

static const char *const FN = "clmoe_checkpoint_load_layer";

void clmoe_layer_desc_init_sized(clmoe_layer_desc *desc, size_t size) {
  static const clmoe_layer_desc defaults = {.activation =
                                                CLMOE_ACTIVATION_SWIGLU};
  cm_init_struct(desc, &defaults, sizeof defaults, size);
}

void clmoe_moe_layer_init(clmoe_moe_layer *layer) {
  if (!layer)
    return;
  memset(layer, 0, sizeof *layer);
  layer->struct_size = sizeof *layer;
}

void clmoe_moe_layer_release(clmoe_moe_layer *layer) {
  if (!layer)
    return;
  clmoe_router_destroy(layer->router);
  clmoe_experts_destroy(layer->experts);
  clmoe_experts_destroy(layer->shared_experts);
  clmoe_tensor_destroy(layer->shared_gate);
  layer->router = NULL;
  layer->experts = layer->shared_experts = NULL;
  layer->shared_gate = NULL;
}

/* Name templates of one architecture ({layer}, {expert}). */
typedef struct arch_names {
  const char *router, *w1, *w3, *w2, *gate_up, *down;
  const char *shared_w1, *shared_w3, *shared_w2, *shared_gate;
} arch_names;

#define MLP "model.layers.{layer}.mlp."
static const arch_names k_mixtral = {
    "model.layers.{layer}.block_sparse_moe.gate.weight",
    "model.layers.{layer}.block_sparse_moe.experts.{expert}.w1.weight",
    "model.layers.{layer}.block_sparse_moe.experts.{expert}.w3.weight",
    "model.layers.{layer}.block_sparse_moe.experts.{expert}.w2.weight",
    "model.layers.{layer}.block_sparse_moe.experts.gate_up_proj",
    "model.layers.{layer}.block_sparse_moe.experts.down_proj",
    NULL,
    NULL,
    NULL,
    NULL};
static const arch_names k_olmoe_qwen3 = {
    MLP "gate.weight",
    MLP "experts.{expert}.gate_proj.weight",
    MLP "experts.{expert}.up_proj.weight",
    MLP "experts.{expert}.down_proj.weight",
    MLP "experts.gate_up_proj",
    MLP "experts.down_proj",
    NULL,
    NULL,
    NULL,
    NULL};
static const arch_names k_qwen2 = {MLP "gate.weight",
                                   MLP "experts.{expert}.gate_proj.weight",
                                   MLP "experts.{expert}.up_proj.weight",
                                   MLP "experts.{expert}.down_proj.weight",
                                   MLP "experts.gate_up_proj",
                                   MLP "experts.down_proj",
                                   MLP "shared_expert.gate_proj.weight",
                                   MLP "shared_expert.up_proj.weight",
                                   MLP "shared_expert.down_proj.weight",
                                   MLP "shared_expert_gate.weight"};
#undef MLP

static const struct {
  const char *model_type;
  clmoe_arch arch;
} k_model_types[] = {{"mixtral", CLMOE_ARCH_MIXTRAL},
                     {"olmoe", CLMOE_ARCH_OLMOE},
                     {"qwen2_moe", CLMOE_ARCH_QWEN2_MOE},
                     {"qwen3_moe", CLMOE_ARCH_QWEN3_MOE}};

/* What the loader needs to know of a layer. */
typedef struct plan {
  arch_names names;
  clmoe_arch arch;
  int layer, E, d, f, fs, k, renorm;
  clmoe_activation activation;
} plan;

/* `tmpl` with {layer} and {expert} replaced. */
static void expand(const char *tmpl, int layer, int expert, char *out,
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

/* ---- config.json ---- */

static clmoe_status config_int(json_t *cfg, const char *key, int required,
                               int fallback, int *out) {
  json_t *v = json_object_get(cfg, key);
  if (!v && !required) {
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

/* Sizes and conventions of layer `layer` from config.json. */
static clmoe_status plan_from_config(json_t *cfg, clmoe_arch arch, int layer,
                                     plan *p) {
  int layers = 0, step = 1;
  int qwen = arch == CLMOE_ARCH_QWEN2_MOE || arch == CLMOE_ARCH_QWEN3_MOE;
  clmoe_status st;
  if ((st = config_int(cfg, "hidden_size", 1, 0, &p->d)) ||
      (st = config_int(cfg, "num_hidden_layers", 1, 0, &layers)) ||
      (st = config_int(cfg, "num_experts_per_tok", 1, 0, &p->k)) ||
      (st = config_int(cfg,
                       arch == CLMOE_ARCH_MIXTRAL ? "num_local_experts"
                                                  : "num_experts",
                       1, 0, &p->E)) ||
      (st =
           config_int(cfg, qwen ? "moe_intermediate_size" : "intermediate_size",
                      1, 0, &p->f)) ||
      (qwen && (st = config_int(cfg, "decoder_sparse_step", 0, 1, &step))) ||
      (arch == CLMOE_ARCH_QWEN2_MOE &&
       (st = config_int(cfg, "shared_expert_intermediate_size", 0, 0, &p->fs))))
    return st;
  if (layer < 0 || layer >= layers)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "layer %d is outside 0..%d (num_hidden_layers = %d)",
                      layer, layers - 1, layers);
  json_t *norm = json_object_get(cfg, "norm_topk_prob");
  p->renorm = arch == CLMOE_ARCH_MIXTRAL ? 1 : json_is_true(norm);
  if (qwen) {
    json_t *dense = json_object_get(cfg, "mlp_only_layers");
    size_t i;
    json_t *v;
    int listed = 0;
    json_array_foreach(dense, i, v) listed |=
        json_is_integer(v) && json_integer_value(v) == layer;
    if (listed || p->E == 0 || step < 1 || (layer + 1) % step != 0)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "layer %d is a dense MLP in this model, not an MoE "
                        "layer (mlp_only_layers%s, decoder_sparse_step = %d)",
                        layer, listed ? " lists it" : "", step);
  }
  p->activation = CLMOE_ACTIVATION_SWIGLU;
  return CLMOE_SUCCESS;
}

/* The architecture and its sizes: from config.json, or (CUSTOM) from the
 * desc and the tensors' shapes (filled later). */
static clmoe_status make_plan(const clmoe_checkpoint *ck,
                              const clmoe_layer_desc *desc, plan *p) {
  memset(p, 0, sizeof *p);
  p->arch = desc->arch;
  p->layer = desc->layer;
  if (p->arch == CLMOE_ARCH_CUSTOM) {
    p->names = (arch_names){desc->router_name,    desc->w1_name,
                            desc->w3_name,        desc->w2_name,
                            desc->gate_up_name,   desc->down_name,
                            desc->shared_w1_name, desc->shared_w3_name,
                            desc->shared_w2_name, desc->shared_gate_name};
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
    const char *type = json_string_value(json_object_get(cfg, "model_type"));
    for (size_t i = 0; type && i < sizeof k_model_types / sizeof *k_model_types;
         ++i)
      if (!strcmp(type, k_model_types[i].model_type))
        p->arch = k_model_types[i].arch;
    if (p->arch == CLMOE_ARCH_AUTO)
      st = cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "config.json model_type \"%.64s\" is not one clmoe "
                      "knows (mixtral, olmoe, qwen2_moe, qwen3_moe); use arch "
                      "CUSTOM with tensor names",
                      type ? type : "(missing)");
  } else if (p->arch < CLMOE_ARCH_AUTO || p->arch > CLMOE_ARCH_CUSTOM) {
    st = cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown arch %d",
                    (int)p->arch);
  }
  if (!st) {
    p->names = p->arch == CLMOE_ARCH_MIXTRAL     ? k_mixtral
               : p->arch == CLMOE_ARCH_QWEN2_MOE ? k_qwen2
                                                 : k_olmoe_qwen3;
    st = plan_from_config(cfg, p->arch, desc->layer, p);
  }
  json_decref(cfg);
  return st;
}

/* ---- tensors ---- */

/* The tensor `tmpl` names for (layer, expert), checked against `rank` and
 * dims (< 0: any, then filled in). */
static clmoe_status find(const clmoe_checkpoint *ck, const plan *p,
                         const char *tmpl, int expert, int rank, int64_t *dims,
                         const cm_st_tensor **out) {
  char name[512];
  expand(tmpl, p->layer, expert, name, sizeof name);
  const cm_st_tensor *t = cm_ck_lookup(ck, name);
  if (!t)
    return cm_ck_not_found(ck, name);
  if (!t->readable)
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "tensor \"%s\" is stored as %s; clmoe loads F32, F16 "
                      "and BF16",
                      name, t->dtype);
  int ok = t->rank == rank;
  for (int i = 0; ok && i < rank; ++i)
    ok = dims[i] < 0 || dims[i] == t->shape[i];
  if (!ok) {
    char want[96] = "", got[96] = "";
    for (int i = 0; i < rank; ++i)
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld",
               i ? ", " : "", (long long)dims[i]);
    for (int i = 0; i < t->rank; ++i)
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld",
               i ? ", " : "", (long long)t->shape[i]);
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN,
                      "tensor \"%s\" has shape [%s]; the model's config "
                      "says [%s] (-1 = any)",
                      name, got, want);
  }
  for (int i = 0; i < rank; ++i)
    dims[i] = t->shape[i];
  *out = t;
  return CLMOE_SUCCESS;
}

static int exists(const clmoe_checkpoint *ck, const plan *p, const char *tmpl,
                  int expert) {
  char name[512];
  expand(tmpl, p->layer, expert, name, sizeof name);
  return cm_ck_lookup(ck, name) != NULL;
}

/* Where each expert matrix lives: tensor and element offset per (matrix,
 * expert), matrices 0 W1 [f, d], 1 W3 [f, d], 2 W2 [d, f], stored
 * [out, in]. A cm_row_source over it streams rows out of the mappings. */
typedef struct expert_source {
  const clmoe_checkpoint *ck;
  int E, in[3];
  const cm_st_tensor **t; /* [3][E] */
  uint64_t *first;        /* [3][E] */
} expert_source;

static clmoe_status source_rows(void *user, int m, int e, int row0, int n,
                                float *dst) {
  const expert_source *s = user;
  size_t at = (size_t)m * s->E + e;
  return cm_ck_read_range(s->ck, s->t[at],
                          s->first[at] + (uint64_t)row0 * s->in[m],
                          (uint64_t)n * s->in[m], CLMOE_DTYPE_F32, dst);
}

static void free_source(expert_source *s) {
  free(s->t);
  free(s->first);
}

/* The E experts' matrices: one tensor per expert and projection
 * (templates w1, w3, w2) or stacked (gate_up [E, 2f, d], down [E, d, f]),
 * each checked against the sizes. *stored: the first gate matrix's dtype. */
static clmoe_status find_experts(const clmoe_checkpoint *ck, const plan *p,
                                 const char *w1, const char *w3, const char *w2,
                                 const char *gate_up, const char *down, int E,
                                 int f, expert_source *s, clmoe_dtype *stored) {
  int gated = w3 || gate_up, d = p->d;
  s->ck = ck;
  s->E = E;
  s->in[0] = s->in[1] = d;
  s->in[2] = f;
  s->t = calloc((size_t)3 * E, sizeof *s->t);
  s->first = calloc((size_t)3 * E, sizeof *s->first);
  if (!s->t || !s->first)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: expert table: out of host memory", FN);
  const cm_st_tensor *t;
  clmoe_status st = CLMOE_SUCCESS;
  int stacked =
      !w1 || (!exists(ck, p, w1, 0) && gate_up && exists(ck, p, gate_up, 0));
  if (stacked &&
      !(st = find(ck, p, gate_up, 0, 3, (int64_t[]){E, 2 * f, d}, &t)))
    for (int e = 0; e < E; ++e) {
      s->t[e] = s->t[E + e] = t;
      s->first[e] = (uint64_t)e * 2 * f * d;
      s->first[E + e] = s->first[e] + (uint64_t)f * d;
    }
  for (int e = 0; !stacked && e < E && !st; ++e)
    if (!(st = find(ck, p, w1, e, 2, (int64_t[]){f, d}, &s->t[e])) && gated)
      st = find(ck, p, w3, e, 2, (int64_t[]){f, d}, &s->t[E + e]);
  if (st)
    return st;
  *stored = s->t[0]->readable;
  if (!w2 || (!exists(ck, p, w2, 0) && down && exists(ck, p, down, 0))) {
    if ((st = find(ck, p, down, 0, 3, (int64_t[]){E, d, f}, &t)))
      return st;
    for (int e = 0; e < E; ++e) {
      s->t[2 * E + e] = t;
      s->first[2 * E + e] = (uint64_t)e * d * f;
    }
    return CLMOE_SUCCESS;
  }
  for (int e = 0; e < E && !st; ++e)
    st = find(ck, p, w2, e, 2, (int64_t[]){d, f}, &s->t[2 * E + e]);
  return st;
}

/* Experts from a source: streamed on the grouped path; on the CLBlast
 * path (whose layout is transposed) through whole float32 arrays. */
static clmoe_status create_experts(clmoe_context *ctx, const plan *p, int E,
                                   int f, expert_source *s, clmoe_dtype dtype,
                                   clmoe_experts_path path,
                                   clmoe_experts **out) {
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = p->d;
  ed.d_ff = f;
  ed.activation = p->activation;
  ed.layout = CLMOE_LAYOUT_OUT_IN;
  ed.weight_dtype = dtype;
  ed.path = path;
  clmoe_status st = cm_experts_create_from_rows(ctx, &ed, source_rows, s, out);
  if (st != CLMOE_ERROR_UNSUPPORTED)
    return st;
  size_t m = (size_t)f * p->d, n = (size_t)E * m;
  int gated = s->t[E] != NULL;
  float *w[3] = {malloc(sizeof(float) * n),
                 gated ? malloc(sizeof(float) * n) : NULL,
                 malloc(sizeof(float) * n)};
  if (!w[0] || !w[2] || (gated && !w[1]))
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: expert weights: out of host memory", FN);
  else
    st = CLMOE_SUCCESS;
  for (int k = 0; k < 3 && !st; ++k)
    for (int e = 0; w[k] && e < E && !st; ++e)
      st = source_rows(s, k, e, 0, k == 2 ? p->d : f, w[k] + e * m);
  ed.w1_host = w[0];
  ed.w3_host = w[1];
  ed.w2_host = w[2];
  if (!st)
    st = clmoe_experts_create(ctx, &ed, out);
  for (int k = 0; k < 3; ++k)
    free(w[k]);
  return st;
}

/* The router: gate [E, d] read as float32 and transposed to W_r [d, E]. */
static clmoe_status load_router(clmoe_context *ctx, const clmoe_checkpoint *ck,
                                const clmoe_layer_desc *desc, plan *p,
                                clmoe_router **out) {
  int64_t dims[2] = {p->E ? p->E : -1, p->d ? p->d : -1};
  const cm_st_tensor *t;
  clmoe_status st = find(ck, p, p->names.router, 0, 2, dims, &t);
  if (st)
    return st;
  p->E = (int)dims[0];
  p->d = (int)dims[1];
  size_t n = (size_t)p->E * p->d;
  float *g = malloc(sizeof *g * (n ? n : 1)),
        *w = malloc(sizeof *w * (n ? n : 1));
  if (!g || !w)
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: router: out of host memory", FN);
  else
    st = cm_ck_read_range(ck, t, 0, n, CLMOE_DTYPE_F32, g);
  for (int e = 0; !st && e < p->E; ++e)
    for (int i = 0; i < p->d; ++i)
      w[(size_t)i * p->E + e] = g[(size_t)e * p->d + i];
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  if (desc->policy) {
    size_t copy = desc->policy->struct_size < sizeof rd
                      ? desc->policy->struct_size
                      : sizeof rd;
    memcpy(&rd, desc->policy, copy);
    rd.struct_size = sizeof rd;
    rd.weight_host = NULL;
    rd.weight = NULL;
    rd.bias_host = NULL;
    rd.bias = NULL;
    rd.weight_dtype = CLMOE_DTYPE_F32;
  } else {
    rd.policy = CLMOE_POLICY_TOPK;
    rd.k = p->k;
    rd.gates = p->renorm ? CLMOE_GATES_RENORM : CLMOE_GATES_RAW;
  }
  rd.num_experts = p->E;
  rd.d_model = p->d;
  rd.weight_host = w;
  if (!st)
    st = clmoe_router_create(ctx, &rd, out);
  free(g);
  free(w);
  return st;
}

/* Qwen2-MoE's shared expert and its gate [1, d] (as a float32 [d]). */
static clmoe_status load_shared(clmoe_context *ctx, const clmoe_checkpoint *ck,
                                const clmoe_layer_desc *desc, plan *p,
                                clmoe_moe_layer *out) {
  const arch_names *nm = &p->names;
  if (!nm->shared_w1 || !nm->shared_w2)
    return CLMOE_SUCCESS;
  const cm_st_tensor *t;
  int64_t dims[2] = {p->fs ? p->fs : -1, p->d};
  clmoe_status st = find(ck, p, nm->shared_w1, 0, 2, dims, &t);
  if (st)
    return st;
  p->fs = (int)dims[0];
  expert_source src = {0};
  clmoe_dtype stored = 0;
  if (!(st = find_experts(ck, p, nm->shared_w1, nm->shared_w3, nm->shared_w2,
                          NULL, NULL, 1, p->fs, &src, &stored)))
    st = create_experts(ctx, p, 1, p->fs, &src,
                        desc->weight_dtype ? desc->weight_dtype : stored,
                        desc->path, &out->shared_experts);
  free_source(&src);
  if (st || !nm->shared_gate)
    return st;
  float *g = malloc(sizeof *g * (size_t)p->d);
  if (!g)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: shared gate: out of host memory", FN);
  if (!(st = find(ck, p, nm->shared_gate, 0, 2, (int64_t[]){1, p->d}, &t)) &&
      !(st = cm_ck_read_range(ck, t, 0, (uint64_t)p->d, CLMOE_DTYPE_F32, g)))
    st = clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){p->d}, g,
                             &out->shared_gate);
  free(g);
  return st;
}

static clmoe_status load(clmoe_context *ctx, const clmoe_checkpoint *ck,
                         const clmoe_layer_desc *desc, clmoe_moe_layer *out) {
  plan p;
  clmoe_status st = make_plan(ck, desc, &p);
  if (st || (st = load_router(ctx, ck, desc, &p, &out->router)))
    return st;
  if (p.arch == CLMOE_ARCH_CUSTOM) { /* d_ff from the first gate matrix */
    const cm_st_tensor *t;
    int64_t dims[3] = {p.E, -1, p.d};
    int per_expert = p.names.w1 && exists(ck, &p, p.names.w1, 0);
    if ((st = per_expert ? find(ck, &p, p.names.w1, 0, 2, dims + 1, &t)
                         : find(ck, &p, p.names.gate_up, 0, 3, dims, &t)))
      return st;
    p.f = (int)(per_expert ? dims[1] : dims[1] / 2);
  }
  if (!desc->policy && (p.k < 1 || p.k > p.E))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "the model's top-k %d is outside 1..%d", p.k, p.E);
  expert_source src = {0};
  clmoe_dtype stored = 0;
  if (!(st = find_experts(ck, &p, p.names.w1, p.names.w3, p.names.w2,
                          p.names.gate_up, p.names.down, p.E, p.f, &src,
                          &stored))) {
    out->weight_dtype = desc->weight_dtype ? desc->weight_dtype : stored;
    st = create_experts(ctx, &p, p.E, p.f, &src, out->weight_dtype, desc->path,
                        &out->experts);
  }
  free_source(&src);
  if (st || (st = load_shared(ctx, ck, desc, &p, out)))
    return st;
  out->arch = p.arch;
  out->num_experts = p.E;
  out->d_model = p.d;
  out->d_ff = p.f;
  out->shared_d_ff = out->shared_experts ? p.fs : 0;
  out->top_k = p.k;
  out->renormalize = p.renorm;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_checkpoint_load_layer(clmoe_context *ctx,
                                         const clmoe_checkpoint *ck,
                                         const clmoe_layer_desc *desc,
                                         clmoe_moe_layer *out) {
  if (!ctx || !ck || !out)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, FN,
                      "ctx, checkpoint or out is NULL");
  clmoe_status st = cm_check_struct(out, sizeof *out, "layer");
  if (st)
    return st;
  clmoe_moe_layer_init(out);
  clmoe_layer_desc defaults;
  clmoe_layer_desc_init(&defaults);
  const clmoe_layer_desc *d = desc ? desc : &defaults;
  if ((st = cm_check_struct(d, sizeof *d, "layer desc")))
    return st;
  if (d->weight_dtype && d->weight_dtype != CLMOE_DTYPE_F32 &&
      d->weight_dtype != CLMOE_DTYPE_F16 && d->weight_dtype != CLMOE_DTYPE_BF16)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "weight_dtype %d is not 0, F32, F16 or BF16",
                      (int)d->weight_dtype);
  if ((st = load(ctx, ck, d, out)))
    clmoe_moe_layer_release(out);
  return st;
}
