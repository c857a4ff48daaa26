/* The device tuning table: a user table overrides the shipped entry, and
 * unreadable or malformed tables fail context creation with file:line. */
#include <math.h>
#include <unistd.h>

#include "harness.h"

static char g_dir[] = "/tmp/clmoe-tuning-XXXXXX";

static const char *write_table(const char *name, const char *text) {
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0)
    exit(1);
  fclose(f);
  return path;
}

static clmoe_status create_with(const char *table, clmoe_context **ctx) {
  clmoe_context_desc d;
  clmoe_context_desc_init(&d);
  d.tuning_file = table;
  return clmoe_context_create(&d, ctx);
}

static clmoe_experts_path path_of(clmoe_context *ctx) {
  float w[6] = {1, 2, 3, 4, 5, 6};
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = 1;
  ed.d_model = 2;
  ed.d_ff = 3;
  ed.activation = CLMOE_ACTIVATION_RELU;
  ed.w1_host = w;
  ed.w2_host = w;
  clmoe_experts *ex = NULL;
  clmoe_experts_path p = CLMOE_EXPERTS_PATH_AUTO;
  REQUIRE_OK(clmoe_experts_create(ctx, &ed, &ex));
  CHECK_OK(clmoe_experts_get_path(ex, &p));
  clmoe_experts_destroy(ex);
  return p;
}

static void test_user_table_wins(void) {
  static const clmoe_experts_path paths[] = {CLMOE_EXPERTS_PATH_CLBLAST,
                                             CLMOE_EXPERTS_PATH_GROUPED};
  static const char *const lines[] = {
      "# comment\n\n*\t*\t*\tclblast\tRM=4 VW=4 LX=0\t-\t-\n",
      "*\tno such device\t*\tclblast\tRM=4 VW=4 LX=0\t-\t-\n"
      "*\t*\t*\tgrouped\tRM=3 VW=8 LX=1\t-\t-\n"};
  for (int i = 0; i < 2; ++i) {
    clmoe_context *ctx = NULL;
    CHECK_OK(create_with(write_table("ok.tsv", lines[i]), &ctx));
    if (ctx)
      CHECK(path_of(ctx) == paths[i]);
    clmoe_context_destroy(ctx);
  }
  /* CLMOE_TUNING_FILE is read when the desc names no file. */
  setenv("CLMOE_TUNING_FILE",
         write_table("env.tsv", "*\t*\t*\tclblast\tRM=4 VW=4 LX=0\t-\t-\n"), 1);
  clmoe_context *ctx = NULL;
  CHECK_OK(clmoe_context_create(NULL, &ctx));
  if (ctx)
    CHECK(path_of(ctx) == CLMOE_EXPERTS_PATH_CLBLAST);
  clmoe_context_destroy(ctx);
  unsetenv("CLMOE_TUNING_FILE");
}

static char g_log[1024];
static void keep_context_log(void *user, clmoe_log_level level,
                             const char *msg) {
  if (strstr(msg, "context on"))
    snprintf(g_log, sizeof g_log, "%s", msg);
}

/* y of a small top-2 forward (grouped experts) under a table. */
static void forward_under(const char *table, float *y_out, int T, int D) {
  enum { E = 4, F = 8 };
  clmoe_context_desc d;
  clmoe_context_desc_init(&d);
  d.tuning_file = table;
  d.log_fn = keep_context_log;
  clmoe_context *ctx = NULL;
  REQUIRE_OK(clmoe_context_create(&d, &ctx));
  test_rng rng = {7};
  float x[64 * 16], wr[16 * E], w1[E * 16 * F], w2[E * F * 16];
  for (int i = 0; i < T * D; ++i)
    x[i] = rng_normal(&rng);
  for (int i = 0; i < D * E; ++i)
    wr[i] = rng_normal(&rng);
  for (int i = 0; i < E * D * F; ++i) {
    w1[i] = rng_normal(&rng) * 0.3f;
    w2[i] = rng_normal(&rng) * 0.3f;
  }
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.weight_host = wr;
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = D;
  ed.d_ff = F;
  ed.activation = CLMOE_ACTIVATION_RELU;
  ed.w1_host = w1;
  ed.w2_host = w2;
  ed.path = CLMOE_EXPERTS_PATH_GROUPED;
  clmoe_experts *ex = NULL;
  REQUIRE_OK(clmoe_experts_create(ctx, &ed, &ex));
  clmoe_tensor *xt = NULL, *yt = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, x, &xt));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D},
                                 NULL, &yt));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  CHECK_OK(clmoe_forward(r, ex, xt, NULL, yt, rt, 0, 0, NULL, NULL));
  CHECK_OK(clmoe_tensor_read(yt, y_out, sizeof *y_out * T * D));
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(yt);
  clmoe_experts_destroy(ex);
  clmoe_router_destroy(r);
  clmoe_context_destroy(ctx);
}

/* The optional layer column: the router GEMM's path and the forward's
 * in-flight thresholds; 7-column lines keep the defaults. Both settings
 * give the same layer (to rounding: the two GEMMs sum in other orders). */
static void test_layer_column(void) {
  enum { T = 64, D = 16 };
  static float y_a[T * D], y_b[T * D];
  forward_under(write_table("ok.tsv", "*\t*\t*\tgrouped\tRM=8 VW=16 LX=1"
                                      "\t-\t-\n"),
                y_a, T, D);
  CHECK(strstr(g_log, "router GEMM: clblast, in flight: <= 8 slots per "
                      "token and <= 256 MiB") != NULL);
  forward_under(write_table("ok.tsv", "*\t*\t*\tgrouped\tRM=8 VW=16 LX=1"
                                      "\t-\t-\tROUTER=grouped INFLIGHT_K=0 "
                                      "INFLIGHT_MIB=64\n"),
                y_b, T, D);
  CHECK(strstr(g_log, "router GEMM: grouped, in flight: <= 0 slots per "
                      "token and <= 64 MiB") != NULL);
  double worst = 0, scale = 1e-30;
  for (int i = 0; i < T * D; ++i) {
    double e = fabs((double)y_a[i] - y_b[i]);
    worst = e > worst ? e : worst;
    scale = fabs(y_a[i]) > scale ? fabs(y_a[i]) : scale;
  }
  CHECK(worst / scale < 1e-5);
}

static void test_bad_tables(void) {
  static const struct {
    const char *text, *want; /* want: a substring of the detail */
    clmoe_status status;
  } cases[] = {
      {"*\t*\t*\tgrouped\n", "bad.tsv:1", CLMOE_ERROR_INVALID_ARGUMENT},
      {"# ok\n*\t*\t*\tfast\tRM=4\t-\t-\n", "bad.tsv:2",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tRM=99 VW=16 LX=1\t-\t-\n", "RM=99",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tRM=8 VW=5 LX=1\t-\t-\n", "VW=5",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tclblast\tRM=4 VW=4 LX=0\tMWG\t-\n", "not NAME=VALUE",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tclblast\tRM=4 VW=4 LX=0\tMWG=x\t-\n", "no integer",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tRM=8 VW=16 LX=1 TC=-1\t-\t-\n", "TC=-1",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tRM=8 VW=16 LX=1 PN=2\t-\t-\n", "PN=2",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tVW=16 KERNEL=shared\t-\t-\n", "KERNEL=shared",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tVW=16 KERNEL=local BM=30 TM=4\t-\t-\n",
       "TM = 4 must divide BM = 30", CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tVW=8 KERNEL=local TN=3\t-\t-\n",
       "TN = 3 must divide VW = 8", CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tVW=16 KERNEL=local BM=256 TM=1 TN=1\t-\t-\n",
       "exceeds 1024", CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tVW=16 KERNEL=local BK=65\t-\t-\n", "BK=65",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tRM=8 VW=16 LX=1\t-\t-\tROUTER=fast\n", "ROUTER=fast",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tRM=8 VW=16 LX=1\t-\t-\tINFLIGHT_K=-1\n", "bad.tsv:1",
       CLMOE_ERROR_INVALID_ARGUMENT},
      {"*\t*\t*\tgrouped\tRM=8 VW=16 LX=1\t-\t-\t-\textra\n", "bad.tsv:1",
       CLMOE_ERROR_INVALID_ARGUMENT},
      /* CLBlast itself refuses an incomplete Xgemm set */
      {"*\t*\t*\tclblast\tRM=4 VW=4 LX=0\tMWG=64\t-\n", "Xgemm",
       CLMOE_ERROR_CLBLAST},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
    clmoe_context *ctx = (clmoe_context *)1;
    CHECK_STATUS(create_with(write_table("bad.tsv", cases[i].text), &ctx),
                 cases[i].status);
    CHECK(ctx == NULL);
    if (!strstr(clmoe_last_error_detail(), cases[i].want)) {
      fprintf(stderr, "case %zu: detail \"%s\" lacks \"%s\"\n", i,
              clmoe_last_error_detail(), cases[i].want);
      ++g_failures;
    }
  }
  clmoe_context *ctx = NULL;
  CHECK_STATUS(create_with("/nonexistent/table.tsv", &ctx),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "/nonexistent/table.tsv") != NULL);
}

int main(void) {
  if (!mkdtemp(g_dir))
    return 1;
  unsetenv("CLMOE_TUNING_FILE");
  test_user_table_wins();
  test_bad_tables();
  test_layer_column();
  char path[256];
  snprintf(path, sizeof path, "%s/ok.tsv", g_dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/bad.tsv", g_dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/env.tsv", g_dir);
  unlink(path);
  rmdir(g_dir);
  return test_finish("test_tuning");
}
