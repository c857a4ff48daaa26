/* Router objects: parameter validation, weight upload and the data derived
 * from the weight (cosine norms, grouped-kernel panels). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "clmoe/clmoe_train.h"
#include "moe/grouped_gemm.h"
#include "moe/router.h"

void clmoe_router_desc_init_sized(clmoe_router_desc *desc, size_t size) {
  static const clmoe_router_desc defaults = {.policy = CLMOE_POLICY_TOPK,
                                             .k = 2,
                                             .p = 0.4f,
                                             .k_min = 1,
                                             .weight_dtype = CLMOE_DTYPE_F32,
                                             .gate_scale = 1.0f};
  cm_init_struct(desc, &defaults, sizeof defaults, size);
}

void(clmoe_router_desc_init)(clmoe_router_desc *desc) {
  clmoe_router_desc_init_sized(desc, offsetof(clmoe_router_desc, weight_dtype));
}

static const char *const FN = "clmoe_router_create";

/* The 0.4 fields of a descriptor, with their defaults for an older one. */
typedef struct router_v04 {
  clmoe_scoring scoring;
  int num_groups, topk_groups;
  clmoe_group_score group_score;
  float gate_scale;
  clmoe_gate_position gate_position;
  const float *bias_host;
  const clmoe_tensor *bias;
} router_v04;

static router_v04 read_v04(const clmoe_router_desc *d) {
  router_v04 v = {CLMOE_SCORING_SOFTMAX, 0, 0, CLMOE_GROUP_SCORE_TOP2_SUM,
                  1.0f, CLMOE_GATE_OUTPUT, NULL, NULL};
  if (!CM_HAS_FIELD(d, clmoe_router_desc, gate_position))
    return v;
  v.scoring = d->scoring;
  v.num_groups = d->num_groups;
  v.topk_groups = d->topk_groups;
  v.group_score = d->group_score;
  v.gate_scale = d->gate_scale;
  v.gate_position = d->gate_position;
  v.bias_host = d->selection_bias_host;
  v.bias = d->selection_bias;
  return v;
}

/* Scoring, groups, gate scale and position; *allowed receives the experts
 * the kept groups hold. */
static clmoe_status validate_v04(const router_v04 *v, int E, int *allowed) {
  if (v->scoring != CLMOE_SCORING_SOFTMAX &&
      v->scoring != CLMOE_SCORING_SIGMOID)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown scoring %d",
                      (int)v->scoring);
  if (v->group_score != CLMOE_GROUP_SCORE_TOP2_SUM &&
      v->group_score != CLMOE_GROUP_SCORE_MAX)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "unknown group_score %d", (int)v->group_score);
  if (v->gate_position != CLMOE_GATE_OUTPUT &&
      v->gate_position != CLMOE_GATE_INPUT)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "unknown gate_position %d", (int)v->gate_position);
  if (!isfinite(v->gate_scale) || !(v->gate_scale > 0.0f))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "gate_scale = %g; it must be finite and > 0",
                      (double)v->gate_scale);
  if (v->bias_host && v->bias)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "set selection_bias_host or selection_bias, not both");
  int G = v->num_groups;
  if (G < 0 || G > E || (G > 1 && E % G != 0))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "num_groups = %d does not divide num_experts = %d", G, E);
  int kept = v->topk_groups == 0 ? (G > 1 ? G : 1) : v->topk_groups;
  if (v->topk_groups < 0 || kept > (G > 1 ? G : 1))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "topk_groups = %d is outside 0..num_groups (%d)",
                      v->topk_groups, G);
  if (G > 1 && v->group_score == CLMOE_GROUP_SCORE_TOP2_SUM && E / G < 2)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "group_score TOP2_SUM needs groups of at least 2 "
                      "experts; num_groups = %d makes groups of %d",
                      G, E / G);
  *allowed = G > 1 ? kept * (E / G) : E;
  return CLMOE_SUCCESS;
}

static clmoe_status validate(const clmoe_router_desc *d, int has_weight,
                             int allowed) {
  int E = d->num_experts;
  if (E < 1 || E > 1024)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "num_experts = %d is outside 1..1024", E);
  if (d->policy < CLMOE_POLICY_TOPK || d->policy > CLMOE_POLICY_EXPERT_CHOICE)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown policy %d",
                      (int)d->policy);
  if (d->gates < CLMOE_GATES_DEFAULT || d->gates > CLMOE_GATES_RAW)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown gates mode %d",
                      (int)d->gates);
  if (d->overflow != CLMOE_OVERFLOW_DROP_LOWEST_GATE &&
      d->overflow != CLMOE_OVERFLOW_DROP_LATEST_TOKEN)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "unknown overflow policy %d", (int)d->overflow);
  if (d->affinity != CLMOE_AFFINITY_PROB &&
      d->affinity != CLMOE_AFFINITY_COSINE)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown affinity %d",
                      (int)d->affinity);
  if (d->fallback != CLMOE_FALLBACK_NONE && d->fallback != CLMOE_FALLBACK_TOP1)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown fallback %d",
                      (int)d->fallback);
  if (!isfinite(d->capacity_factor))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "capacity_factor is not finite");
  if (d->d_model < 0 || (has_weight && d->d_model < 1))
    return cm_fail_at(
        CLMOE_ERROR_INVALID_ARGUMENT, FN,
        "d_model = %d; it must be >= 1 with a weight (0 only for a "
        "logits-only router)",
        d->d_model);
  int k_max = d->k_max == 0 ? allowed : d->k_max;
  const char *bound = allowed < E ? "the experts the kept groups hold"
                                  : "num_experts";
  switch (d->policy) {
  case CLMOE_POLICY_TOPK:
  case CLMOE_POLICY_RESONANCE:
    if (d->k < 1 || d->k > allowed)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "k = %d is outside 1..%s (%d)", d->k, bound, allowed);
    break;
  case CLMOE_POLICY_TOPP:
  case CLMOE_POLICY_IMPORTANCE:
    if (d->k_max < 0 || k_max > allowed)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "k_max = %d is outside 0..%s (%d)", d->k_max, bound,
                        allowed);
    if (d->k_min < 0 || d->k_min > k_max)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "k_min = %d is outside 0..k_max (%d)", d->k_min, k_max);
    break;
  default:
    break;
  }
  if (d->policy == CLMOE_POLICY_TOPP && !(d->p > 0.0f && d->p <= 1.0f))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "p = %g is outside (0, 1]", (double)d->p);
  if (d->policy == CLMOE_POLICY_IMPORTANCE) {
    if (k_max < 1)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "k_max must be >= 1 for IMPORTANCE");
    if (!(d->k_mean == 0.0f ||
          (d->k_mean >= (float)d->k_min && d->k_mean <= (float)k_max)))
      return cm_fail_at(
          CLMOE_ERROR_INVALID_ARGUMENT, FN,
          "k_mean = %g is neither 0 (off) nor inside [k_min, k_max] = "
          "[%d, %d]",
          (double)d->k_mean, d->k_min, k_max);
  }
  if ((d->policy == CLMOE_POLICY_RESONANCE ||
       d->policy == CLMOE_POLICY_EXPERT_CHOICE) &&
      d->capacity_factor < 0.0f)
    return cm_fail_at(
        CLMOE_ERROR_INVALID_ARGUMENT, FN,
        "capacity_factor = %g is negative (0 means the default 1.0)",
        (double)d->capacity_factor);
  if (d->policy == CLMOE_POLICY_RESONANCE &&
      d->affinity == CLMOE_AFFINITY_COSINE && !has_weight)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "COSINE affinity needs the router weight");
  return CLMOE_SUCCESS;
}

/* Column norms of W[d, E] for cosine affinity, computed in double. */
static clmoe_status upload_column_norms(clmoe_router *r, const float *w) {
  size_t n = (size_t)r->d * r->E;
  float *norms = malloc((size_t)r->E * sizeof *norms);
  double *acc = calloc((size_t)r->E, sizeof *acc);
  clmoe_status st = CLMOE_SUCCESS;
  if (!norms || !acc)
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                 "clmoe_router_create: out of host memory");
  if (!st) {
    for (size_t i = 0; i < n; ++i)
      acc[i % (size_t)r->E] += (double)w[i] * w[i];
    for (int e = 0; e < r->E; ++e)
      norms[e] = (float)sqrt(acc[e]);
    st = cm_buffer_upload(r->ctx, norms, NULL, (size_t)r->E * sizeof *norms,
                          "router weight norms", &r->wnorm);
  }
  free(norms);
  free(acc);
  return st;
}

/* W[d, E] packed into the grouped kernel's panels (one group). */
static clmoe_status upload_packed(clmoe_router *r, const float *w) {
  int vw = r->ctx->tuning.vw, panels = cm_panel_count(r->E, vw, 0);
  size_t n = (size_t)panels * r->d * 2 * vw;
  float *buf = malloc(n * sizeof *buf);
  if (!buf)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_router_create: out of host memory");
  cm_pack_panels(buf, w, NULL, 0, CLMOE_LAYOUT_IN_OUT, 1, r->d, r->E, vw);
  clmoe_status st = cm_buffer_upload(r->ctx, buf, NULL, n * sizeof *buf,
                                     "router weight panels", &r->packed);
  free(buf);
  if (!st) {
    r->packed_vw = vw;
    r->packed_panels = panels;
  }
  return st;
}

/* What the weight feeds besides the CLBlast GEMM: column norms (COSINE) and
 * the grouped kernel's panels. Computed from the caller's host weight, or
 * from the uploaded copy of a device weight read back once. */
static clmoe_status derive_from_weight(clmoe_router *r, const float *host) {
  int norms = r->policy == CLMOE_POLICY_RESONANCE &&
              r->affinity == CLMOE_AFFINITY_COSINE;
  /* The device's tuning entry decides where the router GEMM runs. */
  int packed = r->ctx->tuning.router_gemm == CLMOE_EXPERTS_PATH_GROUPED;
  if (!norms && !packed)
    return CLMOE_SUCCESS;
  const float *w = host;
  float *read_back = NULL;
  if (!w) {
    size_t n = (size_t)r->d * r->E;
    if (!(read_back = malloc(n * sizeof *read_back)))
      return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                     "clmoe_router_create: out of host memory");
    cl_int err =
        clEnqueueReadBuffer(r->ctx->queue, r->weight, CL_TRUE, 0,
                            n * sizeof *read_back, read_back, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
      free(read_back);
      return cm_cl_fail(err, "clEnqueueReadBuffer(router weight)");
    }
    w = read_back;
  }
  clmoe_status st = CLMOE_SUCCESS;
  if (norms)
    st = upload_column_norms(r, w);
  if (!st && packed)
    st = upload_packed(r, w);
  free(read_back);
  return st;
}

/* The selection bias, checked finite on the host (a tensor is read back
 * once: E floats). */
static clmoe_status upload_selection_bias(clmoe_router *r,
                                          const router_v04 *v) {
  float *b = malloc((size_t)r->E * sizeof *b);
  clmoe_status st = CLMOE_SUCCESS;
  if (!b)
    return cm_fail_at(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN,
                      "out of host memory");
  if (v->bias)
    st = clmoe_tensor_read(v->bias, b, (size_t)r->E * sizeof *b);
  else
    memcpy(b, v->bias_host, (size_t)r->E * sizeof *b);
  for (int e = 0; !st && e < r->E; ++e)
    if (!isfinite(b[e]))
      st = cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "selection_bias[%d] = %g is not finite", e, (double)b[e]);
  if (!st)
    st = cm_buffer_upload(r->ctx, b, NULL, (size_t)r->E * sizeof *b,
                          "router selection bias", &r->selection_bias);
  free(b);
  return st;
}

/* The router weight [d, E] as float32 on the host, from a 16-bit host array
 * or tensor. */
static clmoe_status widen_weight(clmoe_router *r, const clmoe_router_desc *desc,
                                 clmoe_dtype host_dtype, float **out) {
  size_t n = (size_t)r->d * r->E;
  clmoe_dtype dtype = desc->weight ? desc->weight->dtype : host_dtype;
  uint16_t *raw = desc->weight ? malloc(n * sizeof *raw) : NULL;
  float *w = malloc(n * sizeof *w);
  clmoe_status st = CLMOE_SUCCESS;
  if (!w || (desc->weight && !raw))
    st = cm_fail_at(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN, "out of host memory");
  else if (desc->weight)
    st = clmoe_tensor_read(desc->weight, raw, n * sizeof *raw);
  const void *src = desc->weight ? (const void *)raw : desc->weight_host;
  for (size_t i = 0; !st && i < n; ++i)
    w[i] = cm_to_f32(dtype, src, i);
  free(raw);
  if (st)
    free(w);
  else
    *out = w;
  return st;
}

clmoe_status clmoe_router_create(clmoe_context *ctx,
                                 const clmoe_router_desc *desc,
                                 clmoe_router **out) {
  if (!out)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_router_create: out is NULL");
  *out = NULL;
  if (!ctx)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_router_create: ctx is NULL");
  clmoe_status st = cm_check_struct(
      desc, offsetof(clmoe_router_desc, weight_dtype), "router desc");
  if (st)
    return st;
  if (desc->weight_host && desc->weight)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "set weight_host or weight, not both");
  if (desc->bias_host && desc->bias)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "set bias_host or bias, not both");
  int has_weight = desc->weight_host || desc->weight;
  if (!has_weight && (desc->bias_host || desc->bias))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "a bias needs a weight");
  router_v04 v = read_v04(desc);
  int allowed = 0;
  if ((st = validate_v04(&v, desc->num_experts, &allowed)) ||
      (st = validate(desc, has_weight, allowed)))
    return st;
  int E = desc->num_experts, d = desc->d_model;
  clmoe_dtype host_dtype = CM_HAS_FIELD(desc, clmoe_router_desc, weight_dtype)
                               ? desc->weight_dtype
                               : 0;
  host_dtype = host_dtype ? host_dtype : CLMOE_DTYPE_F32;
  if (!cm_is_float_dtype(host_dtype))
    return cm_fail_at(CLMOE_ERROR_DTYPE_MISMATCH, FN,
                      "weight_dtype %s must be F32, F16 or BF16",
                      cm_dtype_name(host_dtype));
  if (desc->weight && !cm_is_float_dtype(desc->weight->dtype))
    return cm_fail_at(CLMOE_ERROR_DTYPE_MISMATCH, FN,
                      "the router weight is %s; it must be float32, float16 "
                      "or bfloat16",
                      cm_dtype_name(desc->weight->dtype));
  if (desc->weight &&
      (st = cm_check_tensor(desc->weight, ctx, "router weight",
                            desc->weight->dtype, 2, (int64_t[]){d, E})))
    return st;
  if (desc->bias && (st = cm_check_tensor(desc->bias, ctx, "router bias",
                                          CLMOE_DTYPE_F32, 1, (int64_t[]){E})))
    return st;
  if (v.bias &&
      (st = cm_check_tensor(v.bias, ctx, "selection_bias", CLMOE_DTYPE_F32, 1,
                            (int64_t[]){E})))
    return st;
  if ((int64_t)d * E > INT32_MAX)
    return cm_fail(
        CLMOE_ERROR_TOO_LARGE,
        "clmoe_router_create: d_model * num_experts overflows int32");
  clmoe_router *r = calloc(1, sizeof *r);
  if (!r)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_router_create: out of host memory");
  r->ctx = ctx;
  r->policy = desc->policy;
  r->E = E;
  r->d = d;
  r->k = desc->k;
  r->k_min = desc->k_min;
  r->k_max = desc->k_max == 0 ? E : desc->k_max;
  r->p = desc->p;
  r->k_mean = desc->k_mean;
  r->capacity_factor = desc->capacity_factor;
  if ((r->policy == CLMOE_POLICY_RESONANCE ||
       r->policy == CLMOE_POLICY_EXPERT_CHOICE) &&
      r->capacity_factor == 0.0f)
    r->capacity_factor = 1.0f;
  r->overflow = desc->overflow;
  r->renorm =
      desc->gates == CLMOE_GATES_RENORM ||
      (desc->gates == CLMOE_GATES_DEFAULT && r->policy != CLMOE_POLICY_TOPP &&
       r->policy != CLMOE_POLICY_EXPERT_CHOICE);
  r->affinity = desc->affinity;
  r->fallback = desc->fallback;
  r->scoring = v.scoring;
  r->num_groups = v.num_groups > 1 ? v.num_groups : 1;
  r->topk_groups = v.topk_groups ? v.topk_groups : r->num_groups;
  r->allowed = allowed;
  r->group_score = v.group_score;
  r->gate_scale = v.gate_scale;
  r->gate_position = v.gate_position;
  /* A 16-bit weight is widened on the host first (exact). */
  float *widened = NULL;
  const float *host_w = desc->weight_host;
  if (has_weight &&
      (desc->weight ? desc->weight->dtype : host_dtype) != CLMOE_DTYPE_F32)
    st = widen_weight(r, desc, host_dtype, &widened);
  if (widened)
    host_w = widened;
  if (!st && has_weight)
    st = cm_buffer_upload(
        ctx, host_w, desc->weight && !widened ? desc->weight->mem : NULL,
        (size_t)d * E * sizeof(float), "router weight", &r->weight);
  if (!st && (desc->bias_host || desc->bias))
    st = cm_buffer_upload(ctx, desc->bias_host,
                          desc->bias ? desc->bias->mem : NULL,
                          (size_t)E * sizeof(float), "router bias", &r->bias);
  if (!st && (v.bias_host || v.bias))
    st = upload_selection_bias(r, &v);
  if (!st && has_weight)
    st = derive_from_weight(r, host_w);
  free(widened);
  if (st) {
    clmoe_router_destroy(r);
    return st;
  }
  *out = r;
  return CLMOE_SUCCESS;
}

void clmoe_router_destroy(clmoe_router *router) {
  if (!router)
    return;
  cm_release_mem(&router->weight);
  cm_release_mem(&router->bias);
  cm_release_mem(&router->selection_bias);
  cm_release_mem(&router->wnorm);
  cm_release_mem(&router->packed);
  free(router);
}

clmoe_status clmoe_router_get_shape(const clmoe_router *router,
                                    int32_t *num_experts, int32_t *d_model,
                                    clmoe_policy *policy) {
  if (!router)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_router_get_shape: router is NULL");
  if (num_experts)
    *num_experts = router->E;
  if (d_model)
    *d_model = router->d;
  if (policy)
    *policy = router->policy;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_router_get_gate_position(const clmoe_router *router,
                                            clmoe_gate_position *position) {
  if (!router || !position)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_router_get_gate_position: router or position is "
                   "NULL");
  *position = router->gate_position;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_router_update(clmoe_router *router, const float *weight_host,
                                 const clmoe_tensor *weight,
                                 const float *bias_host,
                                 const clmoe_tensor *bias) {
  const char *fn = "clmoe_router_update";
  if (!router)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, fn, "router is NULL");
  clmoe_router *r = router;
  int new_w = weight_host || weight, new_b = bias_host || bias;
  if ((weight_host && weight) || (bias_host && bias))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn,
                      "the %s is given both as host memory and as a tensor",
                      weight_host && weight ? "weight" : "bias");
  if ((new_w && !r->weight) || (new_b && !r->bias))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn,
                      "the router was created without a %s",
                      new_w && !r->weight ? "weight" : "bias");
  clmoe_status st;
  if (weight && !cm_is_float_dtype(weight->dtype))
    return cm_fail_at(CLMOE_ERROR_DTYPE_MISMATCH, fn,
                      "the weight is %s; it must be float32, float16 or "
                      "bfloat16",
                      cm_dtype_name(weight->dtype));
  if ((weight && (st = cm_check_tensor(weight, r->ctx, "router weight",
                                       weight->dtype, 2,
                                       (int64_t[]){r->d, r->E}))) ||
      (bias && (st = cm_check_tensor(bias, r->ctx, "router bias",
                                     CLMOE_DTYPE_F32, 1, (int64_t[]){r->E}))))
    return st;
  /* Built in a copy: on failure the router is unchanged. */
  clmoe_router fresh = *r;
  fresh.weight = fresh.bias = fresh.packed = fresh.wnorm = NULL;
  float *widened = NULL;
  const float *host_w = weight_host;
  st = CLMOE_SUCCESS;
  if (weight && weight->dtype != CLMOE_DTYPE_F32) {
    clmoe_router_desc d;
    clmoe_router_desc_init(&d);
    d.weight = weight;
    st = widen_weight(r, &d, CLMOE_DTYPE_F32, &widened);
    host_w = widened;
  }
  if (!st && new_w)
    st = cm_buffer_upload(r->ctx, host_w, widened ? NULL : weight ? weight->mem
                                                                  : NULL,
                          (size_t)r->d * r->E * sizeof(float), "router weight",
                          &fresh.weight);
  if (!st && new_w)
    st = derive_from_weight(&fresh, host_w);
  if (!st && new_b)
    st = cm_buffer_upload(r->ctx, bias_host, bias ? bias->mem : NULL,
                          (size_t)r->E * sizeof(float), "router bias",
                          &fresh.bias);
  free(widened);
  cl_mem *olds[2][4] = {{&r->weight, &r->packed, &r->wnorm, NULL},
                        {&r->bias, NULL, NULL, NULL}};
  cl_mem *news[2][4] = {{&fresh.weight, &fresh.packed, &fresh.wnorm, NULL},
                        {&fresh.bias, NULL, NULL, NULL}};
  int take[2] = {new_w && !st, new_b && !st};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; olds[i][j]; ++j) {
      if (take[i]) {
        cm_release_mem(olds[i][j]);
        *olds[i][j] = *news[i][j];
      } else {
        cm_release_mem(news[i][j]);
      }
    }
  if (take[0])
    r->packed_vw = fresh.packed_vw, r->packed_panels = fresh.packed_panels;
  return st;
}
