/* Quantized layers from checkpoints whose F8 / U8 headers and scale shapes
 * are drawn: a Qwen3-MoE FP8 layer (F8_E4M3 weights, weight_scale_inv of a
 * drawn dtype and shape, sometimes missing) or a gpt-oss MXFP4 layer
 * (blocks and scales of drawn shapes and dtypes), with raw code bytes from
 * the input (NaN codes included) and drawn quantization_config fields.
 * clmoe_checkpoint_load_layer must load it or fail with a status and a
 * detail: never crash, hang, leak or read outside the mapping. */
#include <stdio.h>
#include <sys/stat.h>

#include "clmoe/clmoe_checkpoint.h"
#include "fuzz_common.h"

enum { E = 2, D = 32, F = 32 };

typedef struct st_file {
  char header[8192];
  size_t len;
  uint8_t data[65536];
  size_t bytes;
} st_file;

/* A tensor of `dtype` and shape dims[0..rank) filled from the input. */
static void add(st_file *s, fuzz_bytes *b, const char *name, const char *dtype,
                int esize, int rank, const int *dims) {
  size_t n = (size_t)esize;
  char shape[64] = "";
  for (int i = 0; i < rank; ++i) {
    n *= (size_t)dims[i];
    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%d",
             i ? "," : "", dims[i]);
  }
  if (s->bytes + n > sizeof s->data)
    n = 0;
  fuzz_take(b, s->data + s->bytes, n);
  s->len += (size_t)snprintf(
      s->header + s->len, sizeof s->header - s->len,
      "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
      s->len ? "," : "{", name, dtype, shape, s->bytes, s->bytes + n);
  s->bytes += n;
}

static const char *const k_scale_dtypes[4] = {"F32", "BF16", "F16", "U8"};
static const int k_scale_size[4] = {4, 2, 2, 1};

/* A dimension near `want`: mostly right, sometimes off. */
static int near(fuzz_bytes *b, int want) {
  int r = fuzz_range(b, 0, 7);
  return r < 5 ? want : r == 5 ? want + 1 : (want > 1 ? want - 1 : 0);
}

static void qwen3_fp8(st_file *s, fuzz_bytes *b) {
  float gate[E * D];
  for (int i = 0; i < E * D; ++i)
    gate[i] = 0.01f * (float)(i % 7);
  s->len += (size_t)snprintf(
      s->header, sizeof s->header,
      "{\"model.layers.0.mlp.gate.weight\":{\"dtype\":\"F32\",\"shape\":[%d,"
      "%d],\"data_offsets\":[0,%zu]}",
      E, D, sizeof gate);
  memcpy(s->data, gate, sizeof gate);
  s->bytes = sizeof gate;
  static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
  for (int e = 0; e < E; ++e)
    for (int k = 0; k < 3; ++k) {
      char name[128], sname[160];
      snprintf(name, sizeof name, "model.layers.0.mlp.experts.%d.%s.weight",
               e, proj[k]);
      int out = k == 2 ? D : F, in = k == 2 ? F : D;
      int wd[2] = {near(b, out), near(b, in)};
      add(s, b, name, fuzz_range(b, 0, 9) ? "F8_E4M3" : "U8", 1, 2, wd);
      if (!fuzz_range(b, 0, 15))
        continue; /* no scale */
      snprintf(sname, sizeof sname, "%s_scale_inv", name);
      int sd[2] = {near(b, (out + 127) / 128), near(b, (in + 127) / 128)};
      int st = fuzz_range(b, 0, 3);
      add(s, b, sname, k_scale_dtypes[st], k_scale_size[st], 2, sd);
    }
}

static void gpt_oss_mxfp4(st_file *s, fuzz_bytes *b) {
  static const char *const mats[2] = {"gate_up_proj", "down_proj"};
  int outs[2] = {2 * F, D}, ins[2] = {D, F};
  int rd[2] = {E, D}, rb[1] = {E}, bd[2] = {E, 2 * F}, dd[2] = {E, D};
  add(s, b, "model.layers.0.mlp.router.weight", "F32", 4, 2, rd);
  add(s, b, "model.layers.0.mlp.router.bias", "F32", 4, 1, rb);
  add(s, b, "model.layers.0.mlp.experts.gate_up_proj_bias", "F32", 4, 2, bd);
  add(s, b, "model.layers.0.mlp.experts.down_proj_bias", "F32", 4, 2, dd);
  for (int i = 0; i < 2; ++i) {
    char name[128];
    snprintf(name, sizeof name, "model.layers.0.mlp.experts.%s_blocks",
             mats[i]);
    int blk[4] = {near(b, E), near(b, outs[i]), near(b, ins[i] / 32),
                  near(b, 16)};
    add(s, b, name, fuzz_range(b, 0, 9) ? "U8" : "I8", 1, 4, blk);
    snprintf(name, sizeof name, "model.layers.0.mlp.experts.%s_scales",
             mats[i]);
    int sc[3] = {near(b, E), near(b, outs[i]), near(b, ins[i] / 32)};
    int st = fuzz_range(b, 0, 3) ? 3 : fuzz_range(b, 0, 2);
    add(s, b, name, k_scale_dtypes[st], k_scale_size[st], 3, sc);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char dir[64];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/clmoe-fuzz-quant-XXXXXX");
    if (!mkdtemp(dir))
      abort();
  }
  fuzz_bytes b = {data, size};
  int mxfp4 = fuzz_range(&b, 0, 1);
  static st_file s;
  memset(&s, 0, sizeof s);
  if (mxfp4)
    gpt_oss_mxfp4(&s, &b);
  else
    qwen3_fp8(&s, &b);
  snprintf(s.header + s.len, sizeof s.header - s.len, "}");
  char path[128], config[512];
  static const char *const methods[3] = {"fp8", "mxfp4", "gptq"};
  int method = fuzz_range(&b, 0, 4);
  snprintf(config, sizeof config,
           "{\"model_type\": \"%s\", \"hidden_size\": %d, "
           "\"num_hidden_layers\": 1, \"num_experts_per_tok\": 2, "
           "\"num_experts\": %d, \"num_local_experts\": %d, "
           "\"moe_intermediate_size\": %d, \"intermediate_size\": %d, "
           "\"quantization_config\": {\"quant_method\": \"%s\", \"fmt\": "
           "\"%s\", \"weight_block_size\": [%d, 128]}}",
           mxfp4 ? "gpt_oss" : "qwen3_moe", D, E, E, F, F,
           method < 3 ? methods[method] : mxfp4 ? "mxfp4" : "fp8",
           fuzz_range(&b, 0, 5) ? "e4m3" : "e5m2",
           fuzz_range(&b, 0, 5) ? 128 : 64);
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *f = fopen(path, "wb");
  if (!f)
    abort();
  fputs(config, f);
  fclose(f);
  size_t hlen = strlen(s.header);
  uint8_t len8[8];
  for (int i = 0; i < 8; ++i)
    len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  f = fopen(path, "wb");
  if (!f)
    abort();
  fwrite(len8, 1, 8, f);
  fwrite(s.header, 1, hlen, f);
  fwrite(s.data, 1, s.bytes, f);
  fclose(f);
  clmoe_checkpoint *ck = NULL;
  if (!clmoe_checkpoint_open(dir, &ck)) {
    clmoe_layer_desc ld;
    clmoe_layer_desc_init(&ld);
    ld.weight_dtype = fuzz_range(&b, 0, 3) ? 0 : CLMOE_DTYPE_BF16;
    clmoe_moe_layer layer;
    clmoe_moe_layer_init(&layer);
    clmoe_status st = clmoe_checkpoint_load_layer(fuzz_context(), ck, &ld,
                                                  &layer);
    if (st && (layer.router || layer.experts || !*clmoe_last_error_detail()))
      abort(); /* a failed load leaves nothing behind and says why */
    clmoe_moe_layer_release(&layer);
  }
  clmoe_checkpoint_close(ck);
  return 0;
}
