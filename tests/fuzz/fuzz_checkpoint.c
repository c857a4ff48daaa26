/* The checkpoint reader over arbitrary bytes: either one safetensors file,
 * or a model directory whose index (model.safetensors.index.json) and one
 * shard (s.safetensors) are both fuzzed; every tensor the open checkpoint
 * lists is then looked up and read as float32. Nothing may crash, leak or
 * read outside the mapping. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clmoe/clmoe_checkpoint.h"
#include "fuzz_common.h"

static const char *fuzz_dir(void) {
  static char dir[64];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/clmoe-fuzz-ckpt-XXXXXX");
    if (!mkdtemp(dir))
      abort();
  }
  return dir;
}

static void put(const char *dir, const char *name, const uint8_t *p, size_t n) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f)
    abort();
  if (n)
    fwrite(p, 1, n, f);
  fclose(f);
}

static void read_all(const clmoe_checkpoint *ck) {
  int64_t n = 0;
  clmoe_checkpoint_get_num_tensors(ck, &n);
  for (int64_t i = 0; i < n; ++i) {
    clmoe_checkpoint_tensor info;
    clmoe_checkpoint_tensor_init(&info);
    if (clmoe_checkpoint_get_tensor(ck, i, &info))
      continue;
    clmoe_checkpoint_tensor again;
    clmoe_checkpoint_tensor_init(&again);
    clmoe_checkpoint_find_tensor(ck, info.name, &again);
    uint64_t count = 1;
    for (int r = 0; r < info.rank; ++r)
      count *= (uint64_t)info.shape[r];
    if (count > (1u << 20))
      continue; /* keep each run small */
    float *dst = malloc(sizeof *dst * (count ? count : 1));
    clmoe_checkpoint_read(ck, info.name, CLMOE_DTYPE_F32, dst,
                          sizeof *dst * count);
    free(dst);
  }
  clmoe_checkpoint_tensor info;
  clmoe_checkpoint_tensor_init(&info);
  clmoe_checkpoint_find_tensor(ck, "model.layers.0.mlp.gate.weight", &info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *dir = fuzz_dir();
  char path[128];
  if (size >= 3 && data[0] & 1) {
    /* A directory: bytes 1-2 the index length (little-endian), the index,
     * then the shard. */
    size_t len = (size_t)data[1] | (size_t)data[2] << 8;
    if (len > size - 3)
      len = size - 3;
    put(dir, "model.safetensors.index.json", data + 3, len);
    put(dir, "s.safetensors", data + 3 + len, size - 3 - len);
    snprintf(path, sizeof path, "%s", dir);
  } else {
    put(dir, "one.safetensors", size ? data + 1 : data, size ? size - 1 : 0);
    snprintf(path, sizeof path, "%s/one.safetensors", dir);
    char index[128];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    unlink(index);
  }
  clmoe_checkpoint *ck = NULL;
  if (!clmoe_checkpoint_open(path, &ck))
    read_all(ck);
  clmoe_checkpoint_close(ck);
  return 0;
}
