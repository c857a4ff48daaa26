/* The on-disk program cache: a second context loads instead of compiling,
 * and corrupt or foreign entries are rejected and rebuilt. Counted through
 * the log callback, not by timing. */
#include <dirent.h>
#include <unistd.h>

#include "harness.h"

typedef struct counts {
  int built, loaded, rejected;
} counts;

static void count_log(void *user, clmoe_log_level level, const char *msg) {
  counts *c = user;
  if (strncmp(msg, "program ", 8))
    return;
  c->built += strstr(msg, ": built from source") != NULL;
  c->loaded += strstr(msg, ": loaded from cache") != NULL;
  c->rejected += strstr(msg, ": cache entry rejected") != NULL;
}

static counts run_context(const char *dir) {
  counts c = {0, 0, 0};
  clmoe_context_desc desc;
  clmoe_context_desc_init(&desc);
  desc.cache_dir = dir;
  desc.log_fn = count_log;
  desc.log_user_data = &c;
  clmoe_context *ctx = NULL;
  REQUIRE_OK(clmoe_context_create(&desc, &ctx));
  CHECK_OK(clmoe_context_build_programs(ctx));
  /* A second request in the same context reuses the built program. */
  CHECK_OK(clmoe_context_build_programs(ctx));
  clmoe_context_destroy(ctx);
  return c;
}

/* Applies `edit` to every cache file in dir; returns how many. */
static int for_each_entry(const char *dir, void (*edit)(const char *path)) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (!strstr(e->d_name, ".bin"))
      continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    edit(path);
    ++n;
  }
  if (d)
    closedir(d);
  return n;
}

static void corrupt_tail(const char *path) {
  FILE *f = fopen(path, "r+b");
  fseek(f, -16, SEEK_END);
  fputs("garbage-garbage", f);
  fclose(f);
}

static void truncate_file(const char *path) { truncate(path, 20); }

static void make_foreign(const char *path) {
  /* Flip a byte of the key field (offset 8): the entry now claims another
   * device/driver/source. */
  FILE *f = fopen(path, "r+b");
  fseek(f, 8, SEEK_SET);
  int c = fgetc(f);
  fseek(f, 8, SEEK_SET);
  fputc(c ^ 0x5a, f);
  fclose(f);
}

static void remove_file(const char *path) { remove(path); }

int main(void) {
  char dir[] = "/tmp/clmoe-cache-test-XXXXXX";
  REQUIRE_OK(mkdtemp(dir) ? CLMOE_SUCCESS : CLMOE_ERROR_INVALID_ARGUMENT);

  counts first = run_context(dir);
  CHECK(first.built > 0 && first.loaded == 0);
  counts second = run_context(dir);
  CHECK(second.built == 0 && second.loaded == first.built);

  void (*edits[])(const char *) = {corrupt_tail, truncate_file, make_foreign};
  for (int i = 0; i < 3; ++i) {
    CHECK(for_each_entry(dir, edits[i]) == first.built);
    counts bad = run_context(dir);
    CHECK(bad.rejected == first.built && bad.built == first.built);
    counts healed = run_context(dir);
    CHECK(healed.built == 0 && healed.loaded == first.built);
  }

  /* The cache can be turned off. */
  counts off = {0, 0, 0};
  clmoe_context_desc desc;
  clmoe_context_desc_init(&desc);
  desc.flags = CLMOE_CONTEXT_NO_DISK_CACHE;
  desc.log_fn = count_log;
  desc.log_user_data = &off;
  clmoe_context *ctx = NULL;
  REQUIRE_OK(clmoe_context_create(&desc, &ctx));
  CHECK_OK(clmoe_context_build_programs(ctx));
  clmoe_context_destroy(ctx);
  CHECK(off.built == first.built && off.loaded == 0);

  for_each_entry(dir, remove_file);
  rmdir(dir);
  return test_finish("test_program_cache");
}
