/* Fault injection (libclmoe_fi): fails the N-th runtime call (OpenCL,
 * CLBlast or host allocation, any kind) of a whole score -> route ->
 * forward run, for N = 1, 2, ... until a run completes without reaching N.
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

#include "harness.h"
#include "runtime/fault_injection.h"

enum { T = 24, D = 16, F = 12, E = 4, H = 2 };

typedef struct outputs {
  float importance[T], y_grouped[T * D], y_clblast[T * D];
  int64_t slots;
} outputs;

static cl_context g_cl;
static cl_device_id g_dev;
static float g_x[T * D], g_probs[H * T * T], g_wr[D * E];
static float g_w1[E * D * F], g_w3[E * D * F], g_w2[E * F * D], g_b1[E * F];
static char g_detail[4096];
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
  ed.weight_dtype = path == CLMOE_EXPERTS_PATH_GROUPED ? CLMOE_DTYPE_BF16
                                                       : CLMOE_DTYPE_F32;
  clmoe_experts *x = NULL;
  TRY(clmoe_experts_create(ctx, &ed, &x));
  *status = st;
  return x;
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
  CHECK(clmoe_test_live_objects() == 0);
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
  printf("%s program cache: reference run makes %lld runtime calls at %d "
         "call sites\n",
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
    if (clmoe_test_live_objects() != 0) {
      fprintf(stderr, "fault %lld (%s at %s): %lld OpenCL objects leaked\n",
              (long long)n, call, site, (long long)clmoe_test_live_objects());
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

  /* CLMOE_FAULT_WALKS=warm: the warm-cache walk only (the sanitizer run,
   * where every runtime call is several times slower). */
  steady_state_allocates_nothing();
  const char *walks = getenv("CLMOE_FAULT_WALKS");
  int num_walks = walks && !strcmp(walks, "warm") ? 1 : 2;
  for (g_fresh_cache = 0; g_fresh_cache < num_walks; ++g_fresh_cache)
    walk();
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
  clReleaseContext(g_cl);
  return test_finish("test_faults");
}
