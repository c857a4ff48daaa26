/* Fault injection (libclmoe_fi): fails the N-th runtime call (OpenCL,
 * CLBlast or host allocation, any kind) of a whole score -> route ->
 * forward run (and a Qwen2-MoE and a DeepSeek-V3 layer loaded from
 * checkpoints, each run with its shared expert, and a training step:
 * forward, backward, weight updates, forward and backward again), for
 * N = 1, 2, ... until a run completes without reaching N.
 * For every N: the run returns a specific error whose detail names the
 * failed call (or absorbs the fault and still gives the reference result),
 * no OpenCL object is left alive, and the next run without faults gives the
 * reference result bit for bit. Host leaks are LeakSanitizer's job (the
 * sanitizer CI run). Two walks: programs loaded from the on-disk cache,
 * and every run starting from an empty cache (programs built from source
 * and stored), so the recovery paths are walked too. Prints how many call
 * sites were covered: all of them. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <dirent.h>
#include <unistd.h>

#include "clmoe/clmoe_checkpoint.h"
#include "clmoe/clmoe_train.h"
#include "harness.h"
#include "runtime/fault_injection.h"
#include "st_writer.h"

enum { T = 24, D = 16, F = 12, E = 4, H = 2 };

typedef struct outputs {
  float importance[T], y_grouped[T * D], y_clblast[T * D], y_loaded[T * D];
  float y_deepseek[T * D];
  float y_train[T * D], dx[T * D], dw1[E * D * F], dwr[D * E];
  float dgate[D], dsw2[F * D];
  int64_t slots;
} outputs;

static cl_context g_cl;
static cl_device_id g_dev;
static float g_x[T * D], g_probs[H * T * T], g_wr[D * E];
static float g_w1[E * D * F], g_w3[E * D * F], g_w2[E * F * D], g_b1[E * F];
static char g_detail[4096];
static char g_model[64]; /* a Qwen2-MoE checkpoint directory */
/* a DeepSeek-V3 one: sigmoid scores, selection bias, groups, scaled gates,
 * a shared expert without a gate, FP8 experts with block scales */
static char g_model_ds[64];
/* Which scenario the walk runs: 0 score -> route -> forward, 1 a layer
 * loaded from g_model. */
static int g_part;
static clmoe_context *g_part_ctx; /* the second part's living context */
/* OpenCL objects alive between runs (the second part's context). */
static int64_t g_base_objects;
/* Call sites a run without faults reaches (in either cache mode). */
static const char *g_path_sites[1024];
static int g_num_path_sites;
/* 1: every run gets a new, empty program cache directory (g_cache). */
static int g_fresh_cache;
static char g_cache[64];

#define TRY(call)                                                              \
  do {                                                                         \
    if (!st && (st = (call)) != CLMOE_SUCCESS)                                 \
      snprintf(g_detail, sizeof g_detail, "%s", clmoe_last_error_detail());    \
  } while (0)

static clmoe_experts *experts(clmoe_context *ctx, clmoe_experts_path path,
                              clmoe_status *status) {
  /* The grouped experts store bfloat16 weights: the walk covers the 16-bit
   * conversion and kernel variant (the router GEMM keeps the float32 one). */
  clmoe_status st = *status;
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = D;
  ed.d_ff = F;
  ed.w1_host = g_w1;
  ed.w3_host = g_w3;
  ed.w2_host = g_w2;
  ed.b1_host = g_b1;
  ed.path = path;
  ed.weight_dtype =
      path == CLMOE_EXPERTS_PATH_GROUPED ? CLMOE_DTYPE_BF16 : CLMOE_DTYPE_F32;
  clmoe_experts *x = NULL;
  TRY(clmoe_experts_create(ctx, &ed, &x));
  *status = st;
  return x;
}

/* Training: forward and backward through bfloat16 grouped experts and a
 * gated float32 shared expert on the CLBlast path, with the auxiliary
 * losses, an update of the router and the experts (the
 * transposed weight copies are rebuilt), and a second step. */
static clmoe_status train_part(clmoe_context *ctx, outputs *out) {
  clmoe_status st = CLMOE_SUCCESS;
  clmoe_tensor *x = NULL, *y = NULL, *dx = NULL, *gw1 = NULL, *gwr = NULL;
  clmoe_tensor *gate = NULL, *ggate = NULL, *gsw2 = NULL;
  clmoe_routing *rt = NULL;
  clmoe_router *router = NULL;
  clmoe_experts *sh = NULL;
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.weight_host = g_wr;
  TRY(clmoe_router_create(ctx, &rd, &router));
  clmoe_experts *ex = experts(ctx, CLMOE_EXPERTS_PATH_GROUPED, &st);
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, g_x, &x));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, NULL,
                          &y));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, NULL,
                          &dx));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){E, D, F}, NULL,
                          &gw1));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){D, E}, NULL,
                          &gwr));
  TRY(clmoe_routing_create(ctx, &rt));
  /* A gated shared expert (float32, the CLBlast path) */
  clmoe_experts_desc sd;
  clmoe_experts_desc_init(&sd);
  sd.num_experts = 1;
  sd.d_model = D;
  sd.d_ff = F;
  sd.w1_host = g_w1;
  sd.w3_host = g_w3;
  sd.w2_host = g_w2;
  sd.path = CLMOE_EXPERTS_PATH_CLBLAST;
  TRY(clmoe_experts_create(ctx, &sd, &sh));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){D}, g_x, &gate));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){D}, NULL,
                          &ggate));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){1, F, D}, NULL,
                          &gsw2));
  clmoe_expert_grads sg;
  clmoe_expert_grads_init(&sg);
  sg.w2 = gsw2;
  clmoe_train_desc td;
  clmoe_train_desc_init(&td);
  td.balance_coeff = 0.01f;
  td.entropy_coeff = 0.01f;
  clmoe_router_grads rg;
  clmoe_router_grads_init(&rg);
  rg.weight = gwr;
  clmoe_expert_grads eg;
  clmoe_expert_grads_init(&eg);
  eg.w1 = gw1;
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = D;
  ed.d_ff = F;
  ed.w1_host = g_w3; /* new weights: swapped */
  ed.w3_host = g_w1;
  ed.w2_host = g_w2;
  for (int step = 0; step < 2; ++step) {
    TRY(clmoe_forward_train(router, ex, sh, gate, x, NULL, y, rt, 0, &td,
                            NULL));
    TRY(clmoe_backward(router, ex, sh, gate, rt, x, y, dx, &rg, &eg, &sg,
                       ggate, NULL, 0));
    if (step == 0) {
      TRY(clmoe_experts_update(ex, &ed));
      TRY(clmoe_router_update(router, g_wr, NULL, NULL, NULL));
    }
  }
  TRY(clmoe_tensor_read(y, out->y_train, sizeof out->y_train));
  TRY(clmoe_tensor_read(dx, out->dx, sizeof out->dx));
  TRY(clmoe_tensor_read(gw1, out->dw1, sizeof out->dw1));
  TRY(clmoe_tensor_read(gwr, out->dwr, sizeof out->dwr));
  TRY(clmoe_tensor_read(ggate, out->dgate, sizeof out->dgate));
  TRY(clmoe_tensor_read(gsw2, out->dsw2, sizeof out->dsw2));
  clmoe_routing_destroy(rt);
  clmoe_experts_destroy(ex);
  clmoe_experts_destroy(sh);
  clmoe_tensor_destroy(gate);
  clmoe_tensor_destroy(ggate);
  clmoe_tensor_destroy(gsw2);
  clmoe_router_destroy(router);
  clmoe_tensor_destroy(x);
  clmoe_tensor_destroy(y);
  clmoe_tensor_destroy(dx);
  clmoe_tensor_destroy(gw1);
  clmoe_tensor_destroy(gwr);
  return st;
}

/* The checkpoint part: a Qwen2-MoE layer loaded and run with its shared
 * expert, on a context made once before its walk (a walk of its own on a
 * living context: the context's own calls are walked by the first part,
 * and the context must stay usable after every fault). */
static clmoe_status loaded_part(clmoe_context *ctx, outputs *out) {
  clmoe_status st = CLMOE_SUCCESS;
  g_detail[0] = 0;
  memset(out, 0, sizeof *out);
  clmoe_tensor *x = NULL, *y = NULL;
  clmoe_routing *rt = NULL;
  clmoe_checkpoint *ck = NULL;
  clmoe_moe_layer layer;
  clmoe_moe_layer_init(&layer);
  clmoe_layer_desc ld;
  clmoe_layer_desc_init(&ld);
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, g_x, &x));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, NULL,
                          &y));
  TRY(clmoe_routing_create(ctx, &rt));
  /* The Qwen2-MoE layer, then the DeepSeek-V3 one. */
  const char *models[2] = {g_model, g_model_ds};
  float *ys[2] = {out->y_loaded, out->y_deepseek};
  for (int i = 0; i < 2; ++i) {
    ck = NULL;
    TRY(clmoe_checkpoint_open(models[i], &ck));
    TRY(clmoe_checkpoint_load_layer(ctx, ck, &ld, &layer));
    TRY(clmoe_forward_shared(layer.router, layer.experts,
                             layer.shared_experts, layer.shared_gate, x, NULL,
                             y, rt, 0, 0, NULL, NULL));
    TRY(clmoe_tensor_read(y, ys[i], sizeof out->y_loaded));
    clmoe_moe_layer_release(&layer);
    clmoe_checkpoint_close(ck);
  }
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(x);
  clmoe_tensor_destroy(y);
  if (!st)
    st = train_part(ctx, out);
  return st;
}

static clmoe_status scenario_body(outputs *out) {
  clmoe_status st = CLMOE_SUCCESS;
  g_detail[0] = 0;
  memset(out, 0, sizeof *out);
  clmoe_context_desc cd;
  clmoe_context_desc_init(&cd);
  cd.cl_context = g_cl;
  cd.cl_device = g_dev;
  cd.cache_dir = g_fresh_cache ? g_cache : NULL;
  clmoe_context *ctx = NULL;
  clmoe_tensor *x = NULL, *probs = NULL, *imp = NULL, *y = NULL;
  clmoe_router *router = NULL;
  clmoe_experts *grouped = NULL, *clblast = NULL;
  clmoe_routing *rt = NULL;
  TRY(clmoe_context_create(&cd, &ctx));
  if (st)
    return st;
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, g_x, &x));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){H, T, T},
                          g_probs, &probs));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, NULL, &imp));
  TRY(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, NULL,
                          &y));
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.weight_host = g_wr;
  rd.policy = CLMOE_POLICY_IMPORTANCE;
  rd.k_min = 1;
  rd.k_max = 3;
  TRY(clmoe_router_create(ctx, &rd, &router));
  grouped = experts(ctx, CLMOE_EXPERTS_PATH_GROUPED, &st);
  clblast = experts(ctx, CLMOE_EXPERTS_PATH_CLBLAST, &st);
  TRY(clmoe_routing_create(ctx, &rt));
  clmoe_score_desc sd;
  clmoe_score_desc_init(&sd);
  sd.mask = CLMOE_SCORE_MASK_CAUSAL;
  TRY(clmoe_score_attention(ctx, &sd, probs, NULL, NULL, imp, 0, NULL, NULL));
  TRY(clmoe_tensor_read(imp, out->importance, sizeof out->importance));
  TRY(clmoe_forward(router, grouped, x, imp, y, rt, 0, 0, NULL, NULL));
  TRY(clmoe_tensor_read(y, out->y_grouped, sizeof out->y_grouped));
  TRY(clmoe_forward(router, clblast, x, imp, y, rt, 0, 0, NULL, NULL));
  TRY(clmoe_tensor_read(y, out->y_clblast, sizeof out->y_clblast));
  clmoe_routing_stats stats;
  clmoe_routing_stats_init(&stats);
  TRY(clmoe_routing_read_stats(rt, &stats));
  out->slots = stats.num_slots;
  clmoe_routing_destroy(rt);
  clmoe_experts_destroy(grouped);
  clmoe_experts_destroy(clblast);
  clmoe_router_destroy(router);
  clmoe_tensor_destroy(x);
  clmoe_tensor_destroy(probs);
  clmoe_tensor_destroy(imp);
  clmoe_tensor_destroy(y);
  clmoe_context_destroy(ctx);
  return st;
}

static void remove_cache(void) {
  DIR *dir = opendir(g_cache);
  for (struct dirent *e; dir && (e = readdir(dir));) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_cache, e->d_name);
    if (e->d_name[0] != '.')
      unlink(path);
  }
  if (dir)
    closedir(dir);
  rmdir(g_cache);
}

/* One complete run with every object created and destroyed inside. */
static clmoe_status scenario(outputs *out) {
  if (g_part)
    return loaded_part(g_part_ctx, out);
  if (g_fresh_cache) {
    snprintf(g_cache, sizeof g_cache, "/tmp/clmoe-faults-XXXXXX");
    if (!mkdtemp(g_cache))
      exit(1);
  }
  clmoe_status st = scenario_body(out);
  if (g_fresh_cache)
    remove_cache();
  return st;
}

/* The detail must name the call that failed. */
static int names_call(const char *detail, const char *call) {
  if (!strcmp(call, "malloc") || !strcmp(call, "calloc") ||
      !strcmp(call, "realloc"))
    return strstr(detail, "host memory") != NULL;
  if (!strncmp(call, "CLBlast", 7))
    return strstr(detail, call) != NULL || strstr(detail, "CLBlast") != NULL;
  return strstr(detail, call) != NULL;
}

static void fill(float *v, int n, float scale, uint64_t seed) {
  test_rng r = {seed};
  for (int i = 0; i < n; ++i)
    v[i] = rng_normal(&r) * scale;
}

/* Fails each runtime call of the scenario once, in turn. */
static void walk(void) {
  outputs ref, out;
  clmoe_test_fault_inject("any", 0);
  if (!g_fresh_cache)
    REQUIRE_OK(scenario(&ref)); /* fills the program cache: warm from now */
  clmoe_test_fault_inject("any", 0);
  REQUIRE_OK(scenario(&ref));
  int64_t calls = clmoe_test_fault_calls("any");
  g_base_objects = clmoe_test_live_objects();
  CHECK(g_part || g_base_objects == 0);
  int32_t sites = 0;
  for (int32_t i = 0; i < clmoe_test_sites_seen(); ++i) {
    int64_t hits = 0;
    const char *site = clmoe_test_site(i, NULL, &hits);
    int known = 0;
    for (int j = 0; j < g_num_path_sites; ++j)
      known |= g_path_sites[j] == site;
    if (hits && !known && g_num_path_sites < 1024)
      g_path_sites[g_num_path_sites++] = site;
    sites += hits > 0;
  }
  printf("%s, %s program cache: reference run makes %lld runtime calls at "
         "%d call sites\n",
         g_part ? "loaded layer" : "score -> route -> forward",
         g_fresh_cache ? "empty" : "warm", (long long)calls, sites);

  int runs = 0, errors = 0, absorbed = 0;
  for (int64_t n = 1;; ++n) {
    clmoe_test_fault_inject("any", n);
    clmoe_status st = scenario(&out);
    const char *site = NULL, *call = clmoe_test_fault_injected(&site);
    clmoe_test_fault_inject("any", 0);
    if (!call)
      break; /* the run made fewer than n calls: every call was failed once */
    ++runs;
    if (st == CLMOE_SUCCESS) {
      ++absorbed; /* e.g. a cache file not written: the result must hold */
      if (memcmp(&out, &ref, sizeof ref)) {
        fprintf(stderr, "fault %lld (%s at %s) absorbed, wrong result\n",
                (long long)n, call, site);
        ++g_failures;
      }
    } else {
      ++errors;
      if (!names_call(g_detail, call)) {
        fprintf(stderr,
                "fault %lld (%s at %s): %s, detail does not name it: "
                "%s\n",
                (long long)n, call, site, clmoe_status_string(st), g_detail);
        ++g_failures;
      }
    }
    if (clmoe_test_live_objects() != g_base_objects) {
      fprintf(stderr, "fault %lld (%s at %s): %lld OpenCL objects leaked\n",
              (long long)n, call, site,
              (long long)(clmoe_test_live_objects() - g_base_objects));
      ++g_failures;
      break;
    }
    st = scenario(&out);
    if (st != CLMOE_SUCCESS || memcmp(&out, &ref, sizeof ref)) {
      fprintf(stderr, "clean run after fault %lld (%s at %s): %s %s\n",
              (long long)n, call, site, clmoe_status_string(st), g_detail);
      ++g_failures;
    }
  }
  printf("  %d faulted runs: %d errors, %d absorbed\n", runs, errors, absorbed);
  CHECK(runs == calls);
}

/* Scoring and the forward keep their buffers and kernels in workspaces that
 * grow only: once warm, a call of the same size allocates nothing. */
static void steady_state_allocates_nothing(void) {
  outputs out;
  clmoe_test_fault_inject("any", 0);
  clmoe_context_desc cd;
  clmoe_context_desc_init(&cd);
  cd.cl_context = g_cl;
  cd.cl_device = g_dev;
  clmoe_context *ctx = NULL;
  REQUIRE_OK(clmoe_context_create(&cd, &ctx));
  clmoe_tensor *x = NULL, *probs = NULL, *imp = NULL, *y = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, g_x, &x));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){H, T, T},
                                 g_probs, &probs));
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, NULL, &imp));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D},
                                 NULL, &y));
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.weight_host = g_wr;
  rd.policy = CLMOE_POLICY_IMPORTANCE;
  rd.k_max = 3;
  clmoe_router *router = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &router));
  clmoe_status st = CLMOE_SUCCESS;
  clmoe_experts *grouped = experts(ctx, CLMOE_EXPERTS_PATH_GROUPED, &st);
  REQUIRE_OK(st);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  clmoe_score_desc sd;
  clmoe_score_desc_init(&sd);
  for (int rep = 0; rep < 3; ++rep) {
    if (rep == 2)
      clmoe_test_fault_inject("any", 0); /* resets the counters */
    REQUIRE_OK(
        clmoe_score_attention(ctx, &sd, probs, NULL, NULL, imp, 0, NULL, NULL));
    REQUIRE_OK(clmoe_forward(router, grouped, x, imp, y, rt, 0, 0, NULL, NULL));
  }
  const char *allocators[] = {"clCreateBuffer", "clCreateKernel", "malloc",
                              "calloc", "realloc"};
  for (int i = 0; i < 5; ++i)
    if (clmoe_test_fault_calls(allocators[i]) != 0) {
      fprintf(stderr, "steady-state score + forward called %s %lld times\n",
              allocators[i], (long long)clmoe_test_fault_calls(allocators[i]));
      ++g_failures;
    }
  REQUIRE_OK(clmoe_tensor_read(y, out.y_grouped, sizeof out.y_grouped));
  clmoe_routing_destroy(rt);
  clmoe_experts_destroy(grouped);
  clmoe_router_destroy(router);
  clmoe_tensor_destroy(x);
  clmoe_tensor_destroy(probs);
  clmoe_tensor_destroy(imp);
  clmoe_tensor_destroy(y);
  clmoe_context_destroy(ctx);
}

/* Layer 0 of a Qwen2-MoE (router, experts, shared expert and its gate) or
 * (deepseek) a DeepSeek-V3 model (router with its selection bias, experts,
 * shared experts) from the walk's weights, stored [out, in] as the models
 * store them. */
static void write_model(char *dir, size_t len, int deepseek) {
  snprintf(dir, len, "/tmp/clmoe-faults-XXXXXX");
  if (!mkdtemp(dir))
    exit(1);
  char path[128];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char config[768];
  if (deepseek)
    snprintf(config, sizeof config,
             "{\"model_type\": \"deepseek_v3\", \"hidden_size\": %d, "
             "\"moe_intermediate_size\": %d, \"n_routed_experts\": %d, "
             "\"num_experts_per_tok\": 2, \"num_hidden_layers\": 1, "
             "\"n_shared_experts\": 1, \"n_group\": 2, \"topk_group\": 1, "
             "\"topk_method\": \"noaux_tc\", \"scoring_func\": \"sigmoid\", "
             "\"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5, "
             "\"first_k_dense_replace\": 0, \"quantization_config\": "
             "{\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", "
             "\"weight_block_size\": [128, 128]}}",
             D, F, E);
  else
    snprintf(config, sizeof config,
             "{\"model_type\": \"qwen2_moe\", \"hidden_size\": %d, "
             "\"moe_intermediate_size\": %d, \"num_experts\": %d, "
             "\"num_experts_per_tok\": 2, \"num_hidden_layers\": 1, "
             "\"shared_expert_intermediate_size\": %d}",
             D, F, E, F);
  write_bytes(path, config, strlen(config));
  const char *shared = deepseek ? "shared_experts" : "shared_expert";
  st_builder b = {0};
  float m[F * D];
  char name[128];
  for (int e = 0; e < E; ++e)
    for (int k = 0; k < 3; ++k) {
      static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
      const float *w = (k == 0   ? g_w1
                        : k == 1 ? g_w3
                                 : g_w2) +
                       (size_t)e * D * F;
      for (int i = 0; i < F * D; ++i) /* [in, out] -> [out, in] */
        m[i] = k == 2 ? w[(i % F) * D + i / F] : w[(i % D) * F + i / D];
      /* DeepSeek-V3's experts as FP8 codes (from the weights' magnitudes,
       * never NaN) with one F32 block scale each, as the release stores
       * them. */
      uint8_t codes[F * D];
      for (int i = 0; i < F * D; ++i)
        codes[i] = (uint8_t)(((int)(fabsf(m[i]) * 300) % 0x70) |
                             (m[i] < 0 ? 0x80 : 0));
      const float scale = 1.0f / 64;
      for (int copy = 0; copy < (e == 0 ? 2 : 1); ++copy) {
        /* the shared expert reuses expert 0's matrices */
        if (copy)
          snprintf(name, sizeof name, "model.layers.0.mlp.%s.%s.weight",
                   shared, proj[k]);
        else
          snprintf(name, sizeof name,
                   "model.layers.0.mlp.experts.%d.%s.weight", e, proj[k]);
        if (!deepseek) {
          st_add_f32(&b, name, k == 2 ? D : F, k == 2 ? F : D, m);
          continue;
        }
        st_add(&b, name, "F8_E4M3", 1, k == 2 ? D : F, k == 2 ? F : D, codes);
        strncat(name, "_scale_inv", sizeof name - strlen(name) - 1);
        st_add_f32(&b, name, 1, 1, &scale);
      }
    }
  for (int i = 0; i < E * D; ++i) /* W_r [D, E] -> gate [E, D] */
    m[i] = g_wr[(i % D) * E + i / D];
  st_add_f32(&b, "model.layers.0.mlp.gate.weight", E, D, m);
  if (deepseek)
    st_add_f32(&b, "model.layers.0.mlp.gate.e_score_correction_bias", E, -1,
               g_b1);
  else
    st_add_f32(&b, "model.layers.0.mlp.shared_expert_gate.weight", 1, D, g_x);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  st_write(&b, path);
}

int main(void) {
  g_cl = test_cl_context(&g_dev);
  fill(g_x, T * D, 1.0f, 1);
  fill(g_wr, D * E, 0.5f, 2);
  fill(g_w1, E * D * F, 0.3f, 3);
  fill(g_w3, E * D * F, 0.3f, 4);
  fill(g_w2, E * F * D, 0.3f, 5);
  fill(g_b1, E * F, 0.1f, 6);
  for (int h = 0; h < H; ++h) /* causal rows, uniform over visible keys */
    for (int i = 0; i < T; ++i)
      for (int j = 0; j < T; ++j)
        g_probs[(h * T + i) * T + j] = j <= i ? 1.0f / (i + 1) : 0.0f;
  write_model(g_model, sizeof g_model, 0);
  write_model(g_model_ds, sizeof g_model_ds, 1);

  /* CLMOE_FAULT_WALKS=warm: the warm-cache walk only (the sanitizer run,
   * where every runtime call is several times slower). */
  steady_state_allocates_nothing();
  const char *walks = getenv("CLMOE_FAULT_WALKS");
  int num_walks = walks && !strcmp(walks, "warm") ? 1 : 2;
  for (g_fresh_cache = 0; g_fresh_cache < num_walks; ++g_fresh_cache)
    walk();
  g_part = 1;
  g_fresh_cache = 0;
  clmoe_context_desc cd;
  clmoe_context_desc_init(&cd);
  cd.cl_context = g_cl;
  cd.cl_device = g_dev;
  REQUIRE_OK(clmoe_context_create(&cd, &g_part_ctx));
  walk();
  clmoe_context_destroy(g_part_ctx);
  int covered = 0, beyond = 0;
  for (int32_t i = 0; i < clmoe_test_sites_seen(); ++i) {
    int32_t failed = 0;
    const char *site = clmoe_test_site(i, &failed, NULL);
    int on_path = 0;
    for (int j = 0; j < g_num_path_sites; ++j)
      on_path |= g_path_sites[j] == site;
    if (on_path) {
      covered += failed;
      if (!failed)
        fprintf(stderr, "call site on the path never failed: %s\n", site);
    } else {
      ++beyond; /* reached only while handling an earlier fault */
    }
  }
  printf("fault injection: call sites covered: %d of %d reached by runs "
         "without faults (%d more are reached only while handling an "
         "injected fault)\n",
         covered, g_num_path_sites, beyond);
  CHECK(covered == g_num_path_sites);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s %s", g_model, g_model_ds);
  if (system(cmd))
    fprintf(stderr, "could not remove %s\n", g_model);
  clReleaseContext(g_cl);
  return test_finish("test_faults");
}
