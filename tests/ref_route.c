/* Host reference of routing: straightforward loops and sorts. */
#include "ref_route.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct item {
  float key;
  int idx;
} item;

/* key descending, then idx ascending */
static int cmp_item(const void *a, const void *b) {
  const item *x = a, *y = b;
  if (x->key != y->key)
    return x->key > y->key ? -1 : 1;
  return x->idx - y->idx;
}

typedef struct litem {
  long long key;
  int idx;
} litem;

static int cmp_litem(const void *a, const void *b) {
  const litem *x = a, *y = b;
  if (x->key != y->key)
    return x->key > y->key ? -1 : 1;
  return x->idx - y->idx;
}

static void softmax_row(const float *z, int E, float *p) {
  float m = z[0];
  for (int e = 1; e < E; ++e)
    m = z[e] > m ? z[e] : m;
  double s = 0;
  for (int e = 0; e < E; ++e)
    s += exp((double)z[e] - m);
  for (int e = 0; e < E; ++e)
    p[e] = (float)(exp((double)z[e] - m) / s);
}

/* DA-MoE budget: k_min each, the rest proportional to quantised importance
 * with a k_max cap (water-filling), largest remainder, ties by lower index. */
static void budget_counts(const ref_params *rp, int T, const float *imp,
                          int *K) {
  long long *w = malloc(sizeof *w * (size_t)(T > 0 ? T : 1));
  char *sat = calloc((size_t)(T > 0 ? T : 1), 1);
  long long W = 0;
  for (int t = 0; t < T; ++t) {
    float s = imp[t] < 0 ? 0 : imp[t] > 1 ? 1 : imp[t];
    w[t] = (long long)(s * 65536.0f + 0.5f);
    W += w[t];
  }
  if (W == 0)
    for (int t = 0; t < T; ++t)
      w[t] = 1;
  long long B = (long long)floor((double)T * rp->k_mean + 0.5);
  long long c = rp->k_max - rp->k_min, R0 = B - (long long)T * rp->k_min;
  long long R = 0, Wu = 0;
  if (c > 0 && R0 > 0) {
    for (;;) {
      long long nsat = 0;
      Wu = 0;
      for (int t = 0; t < T; ++t) {
        nsat += sat[t];
        Wu += sat[t] ? 0 : w[t];
      }
      R = R0 - c * nsat;
      if (R <= 0)
        break;
      if (Wu == 0) {
        for (int t = 0; t < T; ++t)
          w[t] = 1;
        continue;
      }
      int newly = 0;
      for (int t = 0; t < T; ++t)
        if (!sat[t] && R * w[t] >= c * Wu) {
          sat[t] = 1;
          newly = 1;
        }
      if (!newly)
        break;
    }
  }
  if (R < 0)
    R = 0;
  litem *rem = malloc(sizeof *rem * (size_t)(T ? T : 1));
  int n_rem = 0;
  long long given = 0;
  for (int t = 0; t < T; ++t) {
    if (c == 0 || R0 <= 0) {
      K[t] = rp->k_min;
    } else if (sat[t]) {
      K[t] = rp->k_max;
    } else {
      long long q = Wu > 0 ? R * w[t] : 0;
      K[t] = rp->k_min + (int)(Wu > 0 ? q / Wu : 0);
      given += Wu > 0 ? q / Wu : 0;
      rem[n_rem++] = (litem){Wu > 0 ? q % Wu : 0, t};
    }
  }
  qsort(rem, (size_t)n_rem, sizeof *rem, cmp_litem);
  long long left = (c > 0 && R0 > 0) ? R - given : 0;
  for (long long i = 0; i < left && i < n_rem; ++i)
    K[rem[i].idx] += 1;
  free(rem);
  free(w);
  free(sat);
}

ref_params ref_params_from_desc(const clmoe_router_desc *d) {
  ref_params rp;
  memset(&rp, 0, sizeof rp);
  rp.policy = d->policy;
  rp.k = d->k;
  rp.k_min = d->k_min;
  rp.k_max = d->k_max ? d->k_max : d->num_experts;
  rp.p = d->p;
  rp.k_mean = d->k_mean;
  rp.capacity_factor = d->capacity_factor;
  if ((d->policy == CLMOE_POLICY_RESONANCE ||
       d->policy == CLMOE_POLICY_EXPERT_CHOICE) &&
      d->capacity_factor == 0.0f)
    rp.capacity_factor = 1.0f;
  rp.overflow = d->overflow;
  rp.renorm =
      d->gates == CLMOE_GATES_RENORM ||
      (d->gates == CLMOE_GATES_DEFAULT && d->policy != CLMOE_POLICY_TOPP &&
       d->policy != CLMOE_POLICY_EXPERT_CHOICE);
  rp.fallback_top1 = d->fallback == CLMOE_FALLBACK_TOP1;
  return rp;
}

void ref_route(const ref_params *rp, int T, int E, const float *logits,
               const float *importance, const float *affinity, ref_result *o) {
  memset(o, 0, sizeof *o);
  o->T = T;
  o->E = E;
  size_t TE = (size_t)T * E;
  o->probs = malloc(sizeof(float) * (TE ? TE : 1));
  int *order = malloc(sizeof(int) * (TE ? TE : 1));
  int *K = calloc((size_t)T + 1, sizeof(int));
  o->near_p = calloc((size_t)T + 1, 1);
  item *tmp = malloc(sizeof(item) * (size_t)(E > T ? E : T) + sizeof(item));
  o->mean_entropy = 0;
  for (int t = 0; t < T; ++t) {
    float *p = o->probs + (size_t)t * E;
    softmax_row(logits + (size_t)t * E, E, p);
    double h = 0;
    for (int e = 0; e < E; ++e) {
      tmp[e] = (item){p[e], e};
      if (p[e] > 0)
        h -= (double)p[e] * log((double)p[e]);
    }
    o->mean_entropy += h;
    qsort(tmp, (size_t)E, sizeof *tmp, cmp_item);
    for (int j = 0; j < E; ++j)
      order[(size_t)t * E + j] = tmp[j].idx;
  }
  if (T)
    o->mean_entropy /= T;

  /* Proposals per token (first K of sorted). */
  for (int t = 0; t < T; ++t) {
    const int *ord = order + (size_t)t * E;
    const float *p = o->probs + (size_t)t * E;
    switch (rp->policy) {
    case CLMOE_POLICY_TOPK:
    case CLMOE_POLICY_RESONANCE:
      K[t] = rp->k;
      break;
    case CLMOE_POLICY_TOPP: {
      float cum = 0;
      K[t] = E;
      for (int j = 0; j < E; ++j) {
        cum += p[ord[j]];
        if (fabsf(cum - rp->p) <= CM_REF_NEAR_P)
          o->near_p[t] = 1;
        if (cum > rp->p && K[t] == E)
          K[t] = j + 1;
        if (cum > rp->p + CM_REF_NEAR_P)
          break;
      }
      if (rp->topp_adjust)
        K[t] += rp->topp_adjust[t];
      K[t] = K[t] < rp->k_min ? rp->k_min : K[t] > rp->k_max ? rp->k_max : K[t];
      break;
    }
    case CLMOE_POLICY_IMPORTANCE: {
      float s = importance[t] < 0 ? 0 : importance[t] > 1 ? 1 : importance[t];
      int k = (int)ceilf(s * (float)rp->k_max);
      K[t] = k < rp->k_min ? rp->k_min : k > rp->k_max ? rp->k_max : k;
      break;
    }
    default:
      K[t] = 0;
    }
  }
  if (rp->policy == CLMOE_POLICY_IMPORTANCE && rp->k_mean > 0)
    budget_counts(rp, T, importance, K);

  /* keep[t*E+e]: 1 if the (token, expert) slot survives. */
  char *keep = calloc(TE ? TE : 1, 1);
  int n_prop = 0;
  for (int t = 0; t < T; ++t) {
    n_prop += K[t];
    for (int j = 0; j < K[t]; ++j)
      keep[(size_t)t * E + order[(size_t)t * E + j]] = 1;
  }
  int capacity = 0;
  int global_step = 0;
  if (rp->policy == CLMOE_POLICY_EXPERT_CHOICE) {
    capacity = (int)ceilf(rp->capacity_factor * (float)T / (float)E);
    global_step = 1;
    memset(keep, 1, TE);
  } else if (rp->policy == CLMOE_POLICY_RESONANCE || rp->capacity_factor > 0) {
    capacity = (int)ceilf(rp->capacity_factor * (float)n_prop / (float)E);
    global_step = 1;
  }
  if (global_step) {
    int by_order = rp->policy != CLMOE_POLICY_RESONANCE &&
                   rp->policy != CLMOE_POLICY_EXPERT_CHOICE &&
                   rp->overflow == CLMOE_OVERFLOW_DROP_LATEST_TOKEN;
    const float *rank = (rp->policy == CLMOE_POLICY_RESONANCE && affinity)
                            ? affinity
                            : o->probs;
    for (int e = 0; e < E; ++e) {
      int n = 0;
      for (int t = 0; t < T; ++t)
        if (keep[(size_t)t * E + e])
          tmp[n++] = (item){by_order ? 0.0f : rank[(size_t)t * E + e], t};
      qsort(tmp, (size_t)n, sizeof *tmp, cmp_item);
      for (int i = capacity; i < n; ++i)
        keep[(size_t)tmp[i].idx * E + e] = 0;
    }
  }

  /* Kept slots in sorted order, gates, CSR. */
  o->counts = calloc((size_t)T + 1, sizeof(int));
  o->offsets = calloc((size_t)T + 1, sizeof(int));
  size_t cap = (TE ? TE : 1);
  o->ids = malloc(sizeof(int) * cap);
  o->gates = malloc(sizeof(float) * cap);
  int N = 0;
  for (int t = 0; t < T; ++t) {
    const int *ord = order + (size_t)t * E;
    const float *p = o->probs + (size_t)t * E;
    int limit = rp->policy == CLMOE_POLICY_EXPERT_CHOICE ? E : K[t];
    o->offsets[t] = N;
    float sum = 0;
    for (int j = 0; j < limit; ++j)
      if (keep[(size_t)t * E + ord[j]]) {
        o->ids[N] = ord[j];
        o->gates[N] = p[ord[j]];
        sum += p[ord[j]];
        ++N;
      }
    if (N == o->offsets[t] && K[t] > 0 && rp->fallback_top1) {
      o->ids[N] = ord[0];
      o->gates[N] = p[ord[0]];
      sum = p[ord[0]];
      ++N;
    }
    int n = N - o->offsets[t];
    o->counts[t] = n;
    if (rp->renorm)
      for (int j = o->offsets[t]; j < N; ++j)
        o->gates[j] = sum > 0 ? o->gates[j] / sum : 1.0f / (float)n;
  }
  o->offsets[T] = N;
  o->N = N;
  o->n_proposed =
      (global_step && rp->policy != CLMOE_POLICY_EXPERT_CHOICE) ? n_prop : N;

  /* Expert-major rows, ascending token inside each expert. */
  o->expert_offsets = calloc((size_t)E + 1, sizeof(int));
  o->slot_rows = malloc(sizeof(int) * (N ? N : 1));
  o->row_tokens = malloc(sizeof(int) * (N ? N : 1));
  for (int s = 0; s < N; ++s)
    o->expert_offsets[o->ids[s] + 1]++;
  for (int e = 0; e < E; ++e)
    o->expert_offsets[e + 1] += o->expert_offsets[e];
  int *fill = malloc(sizeof(int) * (size_t)E);
  memcpy(fill, o->expert_offsets, sizeof(int) * (size_t)E);
  for (int t = 0; t < T; ++t)
    for (int s = o->offsets[t]; s < o->offsets[t + 1]; ++s) {
      int row = fill[o->ids[s]]++;
      o->slot_rows[s] = row;
      o->row_tokens[row] = t;
    }

  /* Stats. */
  o->k_hist = calloc((size_t)E + 1, sizeof(long long));
  o->load = calloc((size_t)E, sizeof(double));
  o->mean_prob = calloc((size_t)E, sizeof(double));
  o->min_k = T ? E + 1 : 0;
  o->max_k = 0;
  for (int t = 0; t < T; ++t) {
    int k = o->counts[t];
    o->k_hist[k]++;
    o->min_k = k < o->min_k ? k : o->min_k;
    o->max_k = k > o->max_k ? k : o->max_k;
  }
  o->balance_loss = 0;
  for (int e = 0; e < E; ++e) {
    double q = 0;
    for (int t = 0; t < T; ++t)
      q += o->probs[(size_t)t * E + e];
    o->mean_prob[e] = T ? q / T : 0;
    o->load[e] =
        N ? (double)(o->expert_offsets[e + 1] - o->expert_offsets[e]) / N : 0;
    o->balance_loss += o->load[e] * o->mean_prob[e];
  }
  o->balance_loss *= E;
  free(fill);
  free(keep);
  free(tmp);
  free(K);
  free(order);
}

void ref_free(ref_result *r) {
  free(r->counts);
  free(r->offsets);
  free(r->ids);
  free(r->gates);
  free(r->expert_offsets);
  free(r->slot_rows);
  free(r->row_tokens);
  free(r->probs);
  free(r->near_p);
  free(r->k_hist);
  free(r->load);
  free(r->mean_prob);
  memset(r, 0, sizeof *r);
}
