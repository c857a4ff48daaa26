/* The device tuning table: a user table overrides the shipped entry, and
 * unreadable or malformed tables fail context creation with file:line. */
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
         write_table("env.tsv", "*\t*\t*\tclblast\tRM=4 VW=4 LX=0\t-\t-\n"),
         1);
  clmoe_context *ctx = NULL;
  CHECK_OK(clmoe_context_create(NULL, &ctx));
  if (ctx)
    CHECK(path_of(ctx) == CLMOE_EXPERTS_PATH_CLBLAST);
  clmoe_context_destroy(ctx);
  unsetenv("CLMOE_TUNING_FILE");
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
