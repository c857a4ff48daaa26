/* Benchmark provenance (provenance.h). */
#include "provenance.h"

#include <string.h>
#include <time.h>

#ifndef CLMOE_SOURCE_DIR
#define CLMOE_SOURCE_DIR "."
#endif

/* The first line a shell command prints, without its newline. */
static void first_line(const char *cmd, char *out, size_t len) {
  out[0] = 0;
  FILE *p = popen(cmd, "r");
  if (!p)
    return;
  if (fgets(out, (int)len, p))
    out[strcspn(out, "\n")] = 0;
  pclose(p);
}

/* A JSON string body: quotes and backslashes escaped, control bytes
 * dropped. */
static void json_string(FILE *f, const char *s) {
  for (; *s; ++s)
    if (*s == '"' || *s == '\\')
      fprintf(f, "\\%c", *s);
    else if ((unsigned char)*s >= 0x20)
      fputc(*s, f);
}

void bench_provenance_read(clmoe_context *ctx, bench_provenance *p) {
  memset(p, 0, sizeof *p);
  first_line("git -C '" CLMOE_SOURCE_DIR "' rev-parse HEAD 2>/dev/null",
             p->commit, sizeof p->commit);
  if (!p->commit[0])
    snprintf(p->commit, sizeof p->commit, "unknown");
  char line[256];
  /* The results folder does not count: a benchmark writing its own
   * results file there does not make the code it measures dirty. */
  first_line("git -C '" CLMOE_SOURCE_DIR
             "' status --porcelain --untracked-files=no -- . "
             "':(exclude)bench/results' 2>/dev/null",
             line, sizeof line);
  p->dirty = line[0] != 0;
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  if (ctx && !clmoe_context_get_device_info(ctx, &info)) {
    snprintf(p->device, sizeof p->device, "%s", info.name);
    snprintf(p->platform, sizeof p->platform, "%s", info.platform_name);
    snprintf(p->driver, sizeof p->driver, "%s", info.driver_version);
  }
  FILE *f = fopen("/proc/cpuinfo", "r");
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
      const char *v = strchr(line, ':') + 1;
      while (*v == ' ')
        ++v;
      snprintf(p->cpu, sizeof p->cpu, "%s", v);
      p->cpu[strcspn(p->cpu, "\n")] = 0;
      break;
    }
  if (f)
    fclose(f);
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(p->date, sizeof p->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void bench_provenance_json(FILE *f, const bench_provenance *p) {
  const char *keys[6] = {"commit", "device", "platform", "driver", "cpu",
                         "date"};
  const char *vals[6] = {p->commit, p->device, p->platform,
                         p->driver, p->cpu,    p->date};
  fprintf(f, "  \"provenance\": {");
  for (int i = 0; i < 6; ++i) {
    fprintf(f, "\"%s\": \"", keys[i]);
    json_string(f, vals[i]);
    fprintf(f, "\", ");
  }
  fprintf(f, "\"dirty\": %s}", p->dirty ? "true" : "false");
}

void bench_provenance_print(FILE *f, const bench_provenance *p) {
  fprintf(f, "commit %s%s, %s (%s, driver %s), CPU %s, %s\n", p->commit,
          p->dirty ? " (uncommitted changes)" : "", p->device, p->platform,
          p->driver, p->cpu, p->date);
}
