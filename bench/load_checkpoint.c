/* clmoe-bench --load: writes a Mixtral-shaped checkpoint (bfloat16 experts,
 * one tensor per expert and projection) in a temporary directory, streamed
 * in small chunks, then times clmoe_checkpoint_open + load_layer and
 * measures how far the process's peak resident memory grows while loading.
 * On a CPU device the experts' device buffers are host memory too, so the
 * loader's own share is the growth minus the experts' device bytes; the
 * target bounds that share by the largest tensor plus 64 MiB. */
#include "load_checkpoint.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "clmoe/clmoe_checkpoint.h"

/* A field of /proc/self/status in KiB ("VmRSS:", "VmHWM:"), or -1. */
static long status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, field, strlen(field)))
      v = strtol(line + strlen(field), NULL, 10);
  if (f)
    fclose(f);
  return v;
}

/* Resets the kernel's peak-RSS mark (VmHWM) to the current RSS. */
static int reset_peak(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  int ok = f && fputs("5", f) >= 0;
  if (f)
    ok = !fclose(f) && ok;
  return ok;
}

typedef struct shape {
  int E, d, f, layers;
} shape;

/* model.safetensors with layer 0's router and experts (BF16), written by
 * chunks of at most 4 MiB. Returns the bytes of expert data. */
static uint64_t write_model(const char *dir, const shape *s) {
  char path[512];
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *f = fopen(path, "w");
  if (!f)
    die(CLMOE_ERROR_IO, "config.json");
  fprintf(f,
          "{\"model_type\": \"mixtral\", \"hidden_size\": %d, "
          "\"intermediate_size\": %d, \"num_local_experts\": %d, "
          "\"num_experts_per_tok\": 2, \"num_hidden_layers\": %d}\n",
          s->d, s->f, s->E, s->layers);
  fclose(f);
  /* The header: the router, then w1, w3, w2 of each expert. */
  size_t cap = 256 + (size_t)s->E * 3 * 160, len = 0;
  char *h = malloc(cap);
  uint64_t off = (uint64_t)s->E * s->d * 2, m = (uint64_t)s->f * s->d * 2;
  len += (size_t)snprintf(h + len, cap - len,
                          "{\"model.layers.0.block_sparse_moe.gate.weight\":"
                          "{\"dtype\":\"BF16\",\"shape\":[%d,%d],"
                          "\"data_offsets\":[0,%llu]}",
                          s->E, s->d, (unsigned long long)off);
  static const char *const w[3] = {"w1", "w3", "w2"};
  for (int e = 0; e < s->E; ++e)
    for (int k = 0; k < 3; ++k, off += m)
      len += (size_t)snprintf(
          h + len, cap - len,
          ",\"model.layers.0.block_sparse_moe.experts.%d.%s.weight\":"
          "{\"dtype\":\"BF16\",\"shape\":[%d,%d],\"data_offsets\":[%llu,%llu]}",
          e, w[k], k == 2 ? s->d : s->f, k == 2 ? s->f : s->d,
          (unsigned long long)off, (unsigned long long)(off + m));
  len += (size_t)snprintf(h + len, cap - len, "}");
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  f = fopen(path, "wb");
  if (!f)
    die(CLMOE_ERROR_IO, "model.safetensors");
  uint64_t n = len;
  unsigned char n8[8];
  for (int i = 0; i < 8; ++i)
    n8[i] = (unsigned char)(n >> (8 * i));
  fwrite(n8, 1, 8, f);
  fwrite(h, 1, len, f);
  free(h);
  /* Values: small bfloat16 numbers from an LCG. */
  enum { CHUNK = 2u << 20 };
  uint16_t *buf = malloc(sizeof *buf * CHUNK);
  uint32_t state = 12345;
  for (uint64_t left = off / 2; left;) {
    size_t c = left < CHUNK ? (size_t)left : CHUNK;
    for (size_t i = 0; i < c; ++i) {
      state = state * 1664525u + 1013904223u;
      buf[i] = (uint16_t)(0x3c00u + (state >> 24)) ^ (uint16_t)(state & 0x8000);
    }
    if (fwrite(buf, sizeof *buf, c, f) != c)
      die(CLMOE_ERROR_IO, "writing the checkpoint");
    left -= c;
  }
  free(buf);
  if (fclose(f))
    die(CLMOE_ERROR_IO, "writing the checkpoint");
  return (uint64_t)s->E * 3 * m;
}

static void write_json(const char *file, const bench_provenance *prov,
                       const shape *s, double expert_mib, double largest_mib,
                       double ms, int have_memory, double growth_mib,
                       double device_mib, double own_mib, double bound_mib) {
  FILE *f = fopen(file, "w");
  if (!f)
    die(CLMOE_ERROR_INVALID_ARGUMENT, "cannot write the --json file");
  fprintf(f, "{\n");
  bench_provenance_json(f, prov);
  fprintf(f,
          ",\n  \"load\": {\"E\": %d, \"d\": %d, \"f\": %d, "
          "\"expert_mib\": %.3f, \"largest_tensor_mib\": %.3f, "
          "\"open_load_ms\": %.3f,\n    \"memory_measured\": %s, "
          "\"peak_growth_mib\": %.3f, \"device_buffers_mib\": %.3f, "
          "\"loader_own_mib\": %.3f, \"bound_mib\": %.3f}\n}\n",
          s->E, s->d, s->f, expert_mib, largest_mib, ms,
          have_memory ? "true" : "false", growth_mib, device_mib, own_mib,
          bound_mib);
  fclose(f);
}

int bench_load_checkpoint(clmoe_context *ctx, int quick,
                          const bench_provenance *prov, const char *json) {
  shape s = quick ? (shape){4, 128, 256, 2} : (shape){8, 2048, 11264, 2};
  char dir[] = "/tmp/clmoe-bench-load-XXXXXX";
  if (!mkdtemp(dir)) {
    fprintf(stderr, "mkdtemp failed\n");
    return 1;
  }
  uint64_t expert_bytes = write_model(dir, &s);
  uint64_t largest = (uint64_t)s.f * s.d * 2;
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  die(clmoe_context_get_device_info(ctx, &info), "device info");
  int peak_ok = reset_peak();
  long rss0 = status_kib("VmRSS:");
  double t0 = now_ms();
  clmoe_checkpoint *ck = NULL;
  die(clmoe_checkpoint_open(dir, &ck), "open");
  clmoe_moe_layer layer;
  clmoe_moe_layer_init(&layer);
  clmoe_layer_desc d;
  clmoe_layer_desc_init(&d);
  die(clmoe_checkpoint_load_layer(ctx, ck, &d, &layer), "load layer");
  die(clmoe_context_finish(ctx), "finish");
  double ms = now_ms() - t0;
  long hwm = status_kib("VmHWM:");
  int64_t device_bytes = 0;
  die(clmoe_experts_get_bytes(layer.experts, &device_bytes, NULL), "bytes");
  clmoe_moe_layer_release(&layer);
  clmoe_checkpoint_close(ck);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd))
    fprintf(stderr, "could not remove %s\n", dir);
  double mib = 1048576.0, growth = (double)(hwm - rss0) * 1024.0;
  int cpu = info.type == CLMOE_DEVICE_TYPE_CPU;
  double own = growth - (cpu ? (double)device_bytes : 0.0);
  double bound = (double)largest + 64.0 * mib;
  printf("checkpoint load (Mixtral-shaped: E %d, d %d, f %d, bfloat16, one "
         "tensor per expert and projection, page cache warm)\n",
         s.E, s.d, s.f);
  printf("  expert data          %10.1f MiB (largest tensor %.1f MiB)\n",
         expert_bytes / mib, largest / mib);
  printf("  open + load_layer    %10.1f ms (%.2f GB/s of expert data)\n", ms,
         expert_bytes / (ms * 1e6));
  int have_memory = peak_ok && rss0 >= 0 && hwm >= 0;
  if (json)
    write_json(json, prov, &s, expert_bytes / mib, largest / mib, ms,
               have_memory, growth / mib, device_bytes / mib, own / mib,
               bound / mib);
  if (!have_memory) {
    printf("  peak memory: /proc/self/clear_refs or status unavailable\n");
    return 0;
  }
  printf("  peak resident growth %10.1f MiB, of which the experts' device "
         "buffers %.1f MiB%s\n",
         growth / mib, device_bytes / mib,
         cpu ? " (host memory on a CPU device)" : " (on the device)");
  printf("  loader's own share   %10.1f MiB; target <= largest tensor + 64 "
         "MiB = %.1f MiB: %s\n",
         own / mib, bound / mib, own <= bound ? "met" : "NOT MET");
  return 0;
}
