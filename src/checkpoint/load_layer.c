/* clmoe_checkpoint_load_layer: one MoE block of a Hugging Face model as a
 * router, experts and shared experts, from the plan families.c makes of
 * config.json. Weights stored [out, in] (nn.Linear) are loaded with the
 * experts' OUT_IN layout; stacked experts stored in x.W order ([E, in, out]:
 * gpt-oss, Llama 4) are transposed one expert at a time as they stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/expert_source.h"
#include "moe/experts.h"
#include "quant/formats.h"
#include "runtime/runtime.h"

static const char *const FN = "clmoe_checkpoint_load_layer";

void clmoe_layer_desc_init_sized(clmoe_layer_desc *desc, size_t size) {
  static const clmoe_layer_desc defaults = {.activation =
                                                CLMOE_ACTIVATION_SWIGLU};
  cm_init_struct(desc, &defaults, sizeof defaults, size);
}

void clmoe_moe_layer_init_sized(clmoe_moe_layer *layer, size_t size) {
  static const clmoe_moe_layer zero;
  cm_init_struct(layer, &zero, sizeof zero, size);
}

void(clmoe_moe_layer_init)(clmoe_moe_layer *layer) {
  clmoe_moe_layer_init_sized(layer, offsetof(clmoe_moe_layer, scoring));
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

/* gpt-oss's expert biases: gate_up_proj_bias [E, 2f] (interleaved like the
 * weight) split into b1 and b3 [E, f], and down_proj_bias [E, d]; float32
 * host arrays in b[3]. A checkpoint without them is refused: gpt-oss's
 * experts are not the same function without. */
static clmoe_status read_expert_biases(const clmoe_checkpoint *ck,
                                       const plan *p, float *b[3]) {
  const arch_names *nm = &p->names;
  const char *tmpl[2] = {nm->gate_up_bias, nm->down_bias};
  int64_t dims[2][2] = {{p->E, 2 * p->f}, {p->E, p->d}};
  const cm_st_tensor *t[2];
  for (int i = 0; i < 2; ++i)
    if (!cm_layer_exists(ck, p, tmpl[i], 0)) {
      char name[512];
      cm_expand_name(tmpl[i], p->layer, 0, name, sizeof name);
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "this gpt_oss checkpoint has no \"%s\": gpt-oss "
                        "experts need their biases",
                        name);
    }
  clmoe_status st;
  if ((st = cm_layer_find(ck, p, tmpl[0], 0, 2, dims[0], &t[0])) ||
      (st = cm_layer_find(ck, p, tmpl[1], 0, 2, dims[1], &t[1])))
    return st;
  size_t ef = (size_t)p->E * p->f;
  float *gu = malloc(sizeof *gu * 2 * ef);
  b[0] = malloc(sizeof *b[0] * ef);
  b[1] = malloc(sizeof *b[1] * ef);
  b[2] = malloc(sizeof *b[2] * (size_t)p->E * p->d);
  if (!gu || !b[0] || !b[1] || !b[2])
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                 "%s: expert biases: out of host memory", FN);
  if (!st && !(st = cm_ck_read_range(ck, t[0], 0, 2 * ef, CLMOE_DTYPE_F32, gu)))
    for (size_t i = 0; i < ef; ++i) {
      b[0][i] = gu[2 * i];
      b[1][i] = gu[2 * i + 1];
    }
  if (!st)
    st = cm_ck_read_range(ck, t[1], 0, (uint64_t)p->E * p->d, CLMOE_DTYPE_F32,
                          b[2]);
  free(gu);
  return st;
}

/* Experts from a source (and optional float32 biases b[3]): streamed on the
 * grouped path; on the CLBlast path (whose layout is transposed) through
 * whole float32 arrays. */
static clmoe_status create_experts(clmoe_context *ctx, const plan *p, int E,
                                   int f, expert_source *s, float *const b[3],
                                   clmoe_activation activation,
                                   clmoe_dtype dtype, clmoe_experts_path path,
                                   clmoe_experts **out) {
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = p->d;
  ed.d_ff = f;
  ed.activation = activation;
  ed.swiglu_limit = p->swiglu_limit;
  ed.swiglu_alpha = p->swiglu_alpha;
  ed.layout = CLMOE_LAYOUT_OUT_IN;
  ed.weight_dtype = dtype;
  ed.path = path;
  if (b) {
    ed.b1_host = b[0];
    ed.b3_host = b[1];
    ed.b2_host = b[2];
  }
  /* Kept as stored: streamed expert by expert (one expert's matrices on
   * the host at a time). */
  if (s->codes && dtype == s->codes)
    return cm_experts_create_quantized(ctx, &ed, cm_source_qmatrix, s, out);
  clmoe_status st =
      cm_experts_create_from_rows(ctx, &ed, cm_source_rows, s, out);
  if (st != CLMOE_ERROR_UNSUPPORTED)
    return st;
  size_t m = (size_t)f * p->d, n = (size_t)E * m;
  int gated = s->t[E] != NULL;
  float *w[3] = {malloc(sizeof(float) * n),
                 gated ? malloc(sizeof(float) * n) : NULL,
                 malloc(sizeof(float) * n)};
  if (!w[0] || !w[2] || (gated && !w[1]))
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                 "%s: expert weights: out of host memory", FN);
  else
    st = CLMOE_SUCCESS;
  for (int k = 0; k < 3 && !st; ++k)
    for (int e = 0; w[k] && e < E && !st; ++e)
      st = cm_source_rows(s, k, e, 0, k == 2 ? p->d : f, w[k] + e * m);
  ed.w1_host = w[0];
  ed.w3_host = w[1];
  ed.w2_host = w[2];
  if (!st)
    st = clmoe_experts_create(ctx, &ed, out);
  for (int k = 0; k < 3; ++k)
    free(w[k]);
  return st;
}

/* A float32 [E] vector tensor of the layer (selection or router bias). */
static clmoe_status read_vector(const clmoe_checkpoint *ck, const plan *p,
                                const char *tmpl, int E, float **out) {
  const cm_st_tensor *t;
  clmoe_status st = cm_layer_find(ck, p, tmpl, 0, 1, (int64_t[]){E}, &t);
  if (st)
    return st;
  if (!(*out = malloc(sizeof **out * (size_t)E)))
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "%s: router vector: out of host memory", FN);
  return cm_ck_read_range(ck, t, 0, (uint64_t)E, CLMOE_DTYPE_F32, *out);
}

/* The router: gate [E, d] read as float32 and transposed to W_r [d, E],
 * with the family's scoring, selection bias, groups, scale, gate position
 * and (gpt-oss) router bias. */
static clmoe_status load_router(clmoe_context *ctx, const clmoe_checkpoint *ck,
                                const clmoe_layer_desc *desc, plan *p,
                                clmoe_router **out) {
  int64_t dims[2] = {p->E ? p->E : -1, p->d ? p->d : -1};
  const cm_st_tensor *t;
  clmoe_status st = cm_layer_find(ck, p, p->names.router, 0, 2, dims, &t);
  if (st)
    return st;
  p->E = (int)dims[0];
  p->d = (int)dims[1];
  size_t n = (size_t)p->E * p->d;
  float *g = malloc(sizeof *g * (n ? n : 1)),
        *w = malloc(sizeof *w * (n ? n : 1)), *sel = NULL, *bias = NULL;
  if (!g || !w)
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                 "%s: router: out of host memory", FN);
  else
    st = cm_ck_read_range(ck, t, 0, n, CLMOE_DTYPE_F32, g);
  for (int e = 0; !st && e < p->E; ++e)
    for (int i = 0; i < p->d; ++i)
      w[(size_t)i * p->E + e] = g[(size_t)e * p->d + i];
  if (!st && p->names.selection_bias)
    st = read_vector(ck, p, p->names.selection_bias, p->E, &sel);
  if (!st && p->names.router_bias) {
    if (!cm_layer_exists(ck, p, p->names.router_bias, 0)) {
      char name[512];
      cm_expand_name(p->names.router_bias, p->layer, 0, name, sizeof name);
      st = cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "this checkpoint has no router bias \"%s\", which the "
                      "model's router adds to its logits",
                      name);
    } else {
      st = read_vector(ck, p, p->names.router_bias, p->E, &bias);
    }
  }
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  if (desc->policy) {
    /* The caller's policy fields (policy .. fallback) only. */
    size_t end = offsetof(clmoe_router_desc, weight_host);
    size_t copy = desc->policy->struct_size < end ? desc->policy->struct_size
                                                  : end;
    memcpy(&rd, desc->policy, copy);
    rd.struct_size = sizeof rd;
  } else {
    rd.policy = CLMOE_POLICY_TOPK;
    rd.k = p->k;
    rd.gates = p->renorm ? CLMOE_GATES_RENORM : CLMOE_GATES_RAW;
  }
  rd.num_experts = p->E;
  rd.d_model = p->d;
  rd.weight_host = w;
  rd.bias_host = bias;
  rd.scoring = p->scoring;
  rd.selection_bias_host = sel;
  rd.num_groups = p->num_groups;
  rd.topk_groups = p->topk_groups;
  rd.group_score = p->group_score;
  rd.gate_scale = p->gate_scale;
  rd.gate_position = p->gate_position;
  if (!st)
    st = clmoe_router_create(ctx, &rd, out);
  free(g);
  free(w);
  free(sel);
  free(bias);
  return st;
}

/* Shared experts (Qwen2-MoE, DeepSeek, Llama 4) and Qwen2-MoE's gate
 * [1, d] (as a float32 [d]). */
static clmoe_status load_shared(clmoe_context *ctx, const clmoe_checkpoint *ck,
                                const clmoe_layer_desc *desc, plan *p,
                                clmoe_moe_layer *out) {
  const arch_names *nm = &p->names;
  if (!nm->shared_w1 || !nm->shared_w2)
    return CLMOE_SUCCESS;
  const cm_st_tensor *t;
  int64_t dims[2] = {p->fs ? p->fs : -1, p->d};
  char name[512]; /* the weight may be stored quantized (DeepSeek-V3 FP8) */
  cm_expand_name(nm->shared_w1, p->layer, 0, name, sizeof name);
  clmoe_status st = cm_layer_find_codes(ck, name, 2, dims, &t);
  if (st)
    return st;
  p->fs = (int)dims[0];
  expert_source src = {0};
  clmoe_dtype stored = 0;
  plan sp = *p;
  sp.xw = 0; /* shared experts are nn.Linear in every family */
  if (!(st = cm_find_experts(ck, &sp, nm->shared_w1, nm->shared_w3,
                          nm->shared_w2, NULL, NULL, 1, p->fs, &src, &stored)))
    st = create_experts(ctx, &sp, 1, p->fs, &src, NULL,
                        CLMOE_ACTIVATION_SWIGLU,
                        desc->weight_dtype ? desc->weight_dtype : stored,
                        desc->path, &out->shared_experts);
  cm_free_source(&src);
  if (st || !nm->shared_gate)
    return st;
  float *g = malloc(sizeof *g * (size_t)p->d);
  if (!g)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "%s: shared gate: out of host memory", FN);
  if (!(st = cm_layer_find(ck, p, nm->shared_gate, 0, 2, (int64_t[]){1, p->d}, &t)) &&
      !(st = cm_ck_read_range(ck, t, 0, (uint64_t)p->d, CLMOE_DTYPE_F32, g)))
    st = clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){p->d}, g,
                             &out->shared_gate);
  free(g);
  return st;
}

/* The model's conventions into the 0.4 fields of a large enough layer. */
static void report(const plan *p, clmoe_moe_layer *out) {
  if (!CM_HAS_FIELD(out, clmoe_moe_layer, swiglu_limit))
    return;
  out->scoring = p->scoring;
  out->num_groups = p->num_groups;
  out->topk_groups = p->topk_groups;
  out->group_score = p->group_score;
  out->gate_scale = p->gate_scale;
  out->gate_position = p->gate_position;
  out->has_selection_bias = p->names.selection_bias != NULL;
  out->has_router_bias = p->names.router_bias != NULL;
  out->has_expert_biases = p->needs_expert_biases;
  out->activation = p->activation;
  out->swiglu_limit =
      p->activation == CLMOE_ACTIVATION_SWIGLU_OAI ? p->swiglu_limit : 0.0f;
}

static clmoe_status load(clmoe_context *ctx, const clmoe_checkpoint *ck,
                         const clmoe_layer_desc *desc, clmoe_moe_layer *out) {
  plan p;
  clmoe_status st = cm_layer_plan(ck, desc, &p);
  if (st || (st = load_router(ctx, ck, desc, &p, &out->router)))
    return st;
  if (p.arch == CLMOE_ARCH_CUSTOM) { /* d_ff from the first gate matrix */
    const cm_st_tensor *t;
    int64_t dims[3] = {p.E, -1, p.d};
    int per_expert = p.names.w1 && cm_layer_exists(ck, &p, p.names.w1, 0);
    char name[512]; /* the weight may be stored quantized */
    cm_expand_name(per_expert ? p.names.w1 : p.names.gate_up, p.layer, 0, name,
                   sizeof name);
    if ((st = per_expert ? cm_layer_find_codes(ck, name, 2, dims + 1, &t)
                         : cm_layer_find_codes(ck, name, 3, dims, &t)))
      return st;
    p.f = (int)(per_expert ? dims[1] : dims[1] / 2);
  }
  if (!desc->policy && (p.k < 1 || p.k > p.E))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "the model's top-k %d is outside 1..%d", p.k, p.E);
  expert_source src = {0};
  clmoe_dtype stored = 0;
  float *b[3] = {NULL, NULL, NULL};
  if (p.needs_expert_biases)
    st = read_expert_biases(ck, &p, b);
  if (!st &&
      !(st = cm_find_experts(ck, &p, p.names.w1, p.names.w3, p.names.w2,
                          p.names.gate_up, p.names.down, p.E, p.f, &src,
                          &stored))) {
    out->weight_dtype = desc->weight_dtype ? desc->weight_dtype : stored;
    st = create_experts(ctx, &p, p.E, p.f, &src, p.needs_expert_biases ? b : NULL,
                        p.activation, out->weight_dtype, desc->path,
                        &out->experts);
  }
  cm_free_source(&src);
  for (int i = 0; i < 3; ++i)
    free(b[i]);
  if (st || (st = load_shared(ctx, ck, desc, &p, out)))
    return st;
  out->arch = p.arch;
  out->num_experts = p.E;
  out->d_model = p.d;
  out->d_ff = p.f;
  out->shared_d_ff = out->shared_experts ? p.fs : 0;
  out->top_k = p.k;
  out->renormalize = p.renorm;
  report(&p, out);
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_checkpoint_load_layer(clmoe_context *ctx,
                                         const clmoe_checkpoint *ck,
                                         const clmoe_layer_desc *desc,
                                         clmoe_moe_layer *out) {
  if (!ctx || !ck || !out)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, FN,
                      "ctx, checkpoint or out is NULL");
  clmoe_status st =
      cm_check_struct(out, offsetof(clmoe_moe_layer, scoring), "layer");
  if (st)
    return st;
  clmoe_moe_layer_init_sized(out, out->struct_size);
  clmoe_layer_desc defaults;
  clmoe_layer_desc_init(&defaults);
  const clmoe_layer_desc *d = desc ? desc : &defaults;
  if ((st = cm_check_struct(d, sizeof *d, "layer desc")))
    return st;
  if (d->weight_dtype && !cm_is_float_dtype(d->weight_dtype) &&
      !cm_is_quant_dtype(d->weight_dtype))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "weight_dtype %d is not 0, F32, F16, BF16, F8_E4M3, "
                      "MXFP4, I8 or I4",
                      (int)d->weight_dtype);
  if ((st = load(ctx, ck, d, out)))
    clmoe_moe_layer_release(out);
  return st;
}
