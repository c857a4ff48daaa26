/* Checkpoint reader: safetensors files and model directories written here
 * byte by byte (the test's own writer), listed and read back with dtype
 * conversion; a 3-shard directory with its index; and every malformed case
 * the reader must reject with a clear status and detail. */
#include <sys/stat.h>
#include <unistd.h>

#include "clmoe/clmoe_checkpoint.h"
#include "harness.h"
#include "ref_16bit.h"
#include "st_writer.h"

static char g_dir[64];

static char *path_of(const char *name) {
  static char buf[4][256];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, 256, "%s/%s", g_dir, name);
  return p;
}

/* A valid file: "a.f32" [2, 3] F32, "b.bf16" [3] BF16, "c.f16" [2] F16,
 * "d.i64" [1] I64, at unaligned offsets (a 1-byte gap first). */
static void write_valid(const char *path, float *a, uint16_t *bf, uint16_t *h) {
  unsigned char data[1 + 24 + 6 + 4 + 8] = {0};
  for (int i = 0; i < 6; ++i)
    a[i] = (float)(i + 1) * 0.75f - 2.0f;
  const float bv[3] = {1.5f, -3.25f, 1e30f}, hv[2] = {0.5f, -65504.0f};
  for (int i = 0; i < 3; ++i)
    bf[i] = bits16(CLMOE_DTYPE_BF16, round_bf16(bv[i]));
  for (int i = 0; i < 2; ++i)
    h[i] = bits16(CLMOE_DTYPE_F16, hv[i]);
  memcpy(data + 1, a, 24);
  memcpy(data + 25, bf, 6);
  memcpy(data + 31, h, 4);
  int64_t i64 = 7;
  memcpy(data + 35, &i64, 8);
  write_st(
      path,
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[1,"
      "25]},"
      "\"b.bf16\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[25,"
      "31]},"
      "\"c.f16\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[31,35]}"
      ",\"d.i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[35,"
      "43]}}",
      data, sizeof data);
}

static void test_single_file(void) {
  float a[6];
  uint16_t bf[3], h[2];
  write_valid(path_of("one.safetensors"), a, bf, h);
  clmoe_checkpoint *ck = NULL;
  REQUIRE_OK(clmoe_checkpoint_open(path_of("one.safetensors"), &ck));
  int64_t n = 0;
  int32_t files = 0;
  CHECK_OK(clmoe_checkpoint_get_num_tensors(ck, &n));
  CHECK_OK(clmoe_checkpoint_get_num_files(ck, &files));
  CHECK(n == 4 && files == 1);
  const char *cfg = "x";
  CHECK_OK(clmoe_checkpoint_get_config(ck, &cfg));
  CHECK(cfg == NULL);
  /* Sorted by name, with dtype, shape and bytes. */
  static const char *names[4] = {"a.f32", "b.bf16", "c.f16", "d.i64"};
  static const char *dts[4] = {"F32", "BF16", "F16", "I64"};
  static const clmoe_dtype readable[4] = {CLMOE_DTYPE_F32, CLMOE_DTYPE_BF16,
                                          CLMOE_DTYPE_F16, 0};
  for (int i = 0; i < 4; ++i) {
    clmoe_checkpoint_tensor info;
    clmoe_checkpoint_tensor_init(&info);
    CHECK_OK(clmoe_checkpoint_get_tensor(ck, i, &info));
    CHECK(!strcmp(info.name, names[i]) && !strcmp(info.dtype, dts[i]));
    CHECK(info.readable_dtype == readable[i]);
  }
  clmoe_checkpoint_tensor info;
  clmoe_checkpoint_tensor_init(&info);
  CHECK_OK(clmoe_checkpoint_find_tensor(ck, "a.f32", &info));
  CHECK(info.rank == 2 && info.shape[0] == 2 && info.shape[1] == 3 &&
        info.bytes == 24);
  CHECK_STATUS(clmoe_checkpoint_get_tensor(ck, 4, &info),
               CLMOE_ERROR_INVALID_ARGUMENT);
  /* Reads: as stored, widened, narrowed. */
  float fa[6], fb[3], fh[2];
  uint16_t ha[6];
  CHECK_OK(clmoe_checkpoint_read(ck, "a.f32", CLMOE_DTYPE_F32, fa, sizeof fa));
  CHECK(!memcmp(fa, a, sizeof fa));
  CHECK_OK(clmoe_checkpoint_read(ck, "b.bf16", CLMOE_DTYPE_F32, fb, sizeof fb));
  for (int i = 0; i < 3; ++i)
    CHECK(fb[i] == widen16(CLMOE_DTYPE_BF16, bf[i]));
  CHECK_OK(clmoe_checkpoint_read(ck, "c.f16", CLMOE_DTYPE_F32, fh, sizeof fh));
  CHECK(fh[0] == 0.5f && fh[1] == -65504.0f);
  CHECK_OK(clmoe_checkpoint_read(ck, "a.f32", CLMOE_DTYPE_F16, ha, sizeof ha));
  for (int i = 0; i < 6; ++i)
    CHECK(ha[i] == bits16(CLMOE_DTYPE_F16, round_f16(a[i])));
  /* 1e30 in bf16 does not fit float16: an error naming tensor and element. */
  uint16_t hb[3];
  CHECK_STATUS(
      clmoe_checkpoint_read(ck, "b.bf16", CLMOE_DTYPE_F16, hb, sizeof hb),
      CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "\"b.bf16\" element 2") != NULL);
  /* Other stored dtypes, wrong sizes, missing names. */
  int64_t i64;
  CHECK_STATUS(clmoe_checkpoint_read(ck, "d.i64", CLMOE_DTYPE_F32, &i64, 4),
               CLMOE_ERROR_UNSUPPORTED);
  CHECK(strstr(clmoe_last_error_detail(), "I64") != NULL);
  CHECK_STATUS(clmoe_checkpoint_read(ck, "a.f32", CLMOE_DTYPE_F32, fa, 20),
               CLMOE_ERROR_SHAPE_MISMATCH);
  CHECK_STATUS(clmoe_checkpoint_read(ck, "a.f32", CLMOE_DTYPE_I32, fa, 24),
               CLMOE_ERROR_UNSUPPORTED);
  CHECK_STATUS(clmoe_checkpoint_find_tensor(ck, "a.f23", &info),
               CLMOE_ERROR_NOT_FOUND);
  CHECK(strstr(clmoe_last_error_detail(), "nearest: \"a.f32\"") != NULL);
  CHECK_STATUS(clmoe_checkpoint_read(ck, "c_f16", CLMOE_DTYPE_F32, fh, 8),
               CLMOE_ERROR_NOT_FOUND);
  CHECK(strstr(clmoe_last_error_detail(), "nearest: \"c.f16\"") != NULL);
  CHECK_STATUS(clmoe_checkpoint_get_num_tensors(NULL, &n),
               CLMOE_ERROR_NULL_POINTER);
  clmoe_checkpoint_close(ck);
  clmoe_checkpoint_close(NULL);
}

/* A model directory: config.json, three shards, the index. */
static void test_sharded_dir(void) {
  char dir[128];
  snprintf(dir, sizeof dir, "%s/model", g_dir);
  mkdir(dir, 0755);
  float v[3][4];
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 4; ++i)
      v[s][i] = (float)(s * 10 + i);
    char header[256], name[256];
    snprintf(header, sizeof header,
             "{\"layer.%d.w\":{\"dtype\":\"F32\",\"shape\":[2,2],"
             "\"data_offsets\":[0,16]}}",
             s);
    snprintf(name, sizeof name, "%s/model-0000%d-of-00003.safetensors", dir,
             s + 1);
    write_st(name, header, v[s], sizeof v[s]);
  }
  char index[512], p[192];
  snprintf(index, sizeof index,
           "{\"metadata\":{\"total_size\":48},\"weight_map\":{"
           "\"layer.0.w\":\"model-00001-of-00003.safetensors\","
           "\"layer.1.w\":\"model-00002-of-00003.safetensors\","
           "\"layer.2.w\":\"model-00003-of-00003.safetensors\"}}");
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  write_bytes(p, index, strlen(index));
  const char *config =
      "{\"model_type\": \"mixtral\", \"num_local_experts\": 4}";
  snprintf(p, sizeof p, "%s/config.json", dir);
  write_bytes(p, config, strlen(config));
  clmoe_checkpoint *ck = NULL;
  REQUIRE_OK(clmoe_checkpoint_open(dir, &ck));
  int64_t n;
  int32_t files;
  CHECK_OK(clmoe_checkpoint_get_num_tensors(ck, &n));
  CHECK_OK(clmoe_checkpoint_get_num_files(ck, &files));
  CHECK(n == 3 && files == 3);
  const char *cfg = NULL;
  CHECK_OK(clmoe_checkpoint_get_config(ck, &cfg));
  CHECK(cfg && !strcmp(cfg, config));
  for (int s = 0; s < 3; ++s) {
    char name[32];
    float got[4];
    snprintf(name, sizeof name, "layer.%d.w", s);
    CHECK_OK(clmoe_checkpoint_read(ck, name, CLMOE_DTYPE_F32, got, 16));
    CHECK(!memcmp(got, v[s], 16));
  }
  clmoe_checkpoint_close(ck);
  /* The index naming a missing shard, and a tensor its shard lacks. */
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  const char *missing =
      "{\"weight_map\":{\"layer.0.w\":\"model-00009-of-00003.safetensors\"}}";
  write_bytes(p, missing, strlen(missing));
  CHECK_STATUS(clmoe_checkpoint_open(dir, &ck), CLMOE_ERROR_NOT_FOUND);
  CHECK(strstr(clmoe_last_error_detail(), "model-00009") != NULL);
  CHECK(ck == NULL);
  const char *wrong =
      "{\"weight_map\":{\"layer.1.w\":\"model-00001-of-00003.safetensors\"}}";
  write_bytes(p, wrong, strlen(wrong));
  CHECK_STATUS(clmoe_checkpoint_open(dir, &ck), CLMOE_ERROR_BAD_FILE);
  CHECK(strstr(clmoe_last_error_detail(), "layer.1.w") != NULL);
  const char *escape = "{\"weight_map\":{\"x\":\"../one.safetensors\"}}";
  write_bytes(p, escape, strlen(escape));
  CHECK_STATUS(clmoe_checkpoint_open(dir, &ck), CLMOE_ERROR_BAD_FILE);
  write_bytes(p, "{\"weight_map\": [", 16);
  CHECK_STATUS(clmoe_checkpoint_open(dir, &ck), CLMOE_ERROR_BAD_FILE);
  /* The same tensor in two shards (the index names one of them). */
  snprintf(p, sizeof p, "%s/model-00003-of-00003.safetensors", dir);
  write_st(p,
           "{\"layer.2.w\":{\"dtype\":\"F32\",\"shape\":[2,2],"
           "\"data_offsets\":[0,16]},\"layer.0.w\":{\"dtype\":\"F32\","
           "\"shape\":[2,2],\"data_offsets\":[16,32]}}",
           v, 32);
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  write_bytes(p, index, strlen(index));
  CHECK_STATUS(clmoe_checkpoint_open(dir, &ck), CLMOE_ERROR_BAD_FILE);
  CHECK(strstr(clmoe_last_error_detail(), "\"layer.0.w\" is in both") != NULL);
  snprintf(p, sizeof p, "%s/model-00003-of-00003.safetensors", dir);
  write_st(p,
           "{\"layer.2.w\":{\"dtype\":\"F32\",\"shape\":[2,2],"
           "\"data_offsets\":[0,16]}}",
           v[2], 16);
  /* A truncated shard (its header promises more bytes than it has). */
  write_bytes(p, index, strlen(index));
  snprintf(p, sizeof p, "%s/model-00002-of-00003.safetensors", dir);
  write_st(p,
           "{\"layer.1.w\":{\"dtype\":\"F32\",\"shape\":[2,2],"
           "\"data_offsets\":[0,16]}}",
           v[1], 10);
  CHECK_STATUS(clmoe_checkpoint_open(dir, &ck), CLMOE_ERROR_BAD_FILE);
  CHECK(strstr(clmoe_last_error_detail(), "model-00002") != NULL);
  /* A directory without weights. */
  char empty[160];
  snprintf(empty, sizeof empty, "%s/empty", g_dir);
  mkdir(empty, 0755);
  CHECK_STATUS(clmoe_checkpoint_open(empty, &ck), CLMOE_ERROR_NOT_FOUND);
  rmdir(empty);
}

/* Each malformed file: status and a word the detail must hold. */
static void test_malformed(void) {
  static const struct {
    const char *header;
    size_t data_bytes;
    clmoe_status want;
    const char *detail;
  } cases[] = {
      {"not json", 0, CLMOE_ERROR_BAD_FILE, "not valid JSON"},
      {"[1, 2]", 0, CLMOE_ERROR_BAD_FILE, "not a JSON object"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       8, CLMOE_ERROR_BAD_FILE, "duplicate"},
      {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
       CLMOE_ERROR_BAD_FILE, "unknown dtype \"Q4\""},
      {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
       CLMOE_ERROR_BAD_FILE, "dtype"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
       CLMOE_ERROR_BAD_FILE, "non-negative"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
       CLMOE_ERROR_BAD_FILE, "non-negative"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
       CLMOE_ERROR_BAD_FILE, "needs 8"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
       CLMOE_ERROR_BAD_FILE, "not inside"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
       CLMOE_ERROR_BAD_FILE, "not inside"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
       CLMOE_ERROR_BAD_FILE, "data_offsets"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
       12, CLMOE_ERROR_BAD_FILE, "overlap"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
       "\"data_offsets\":[0,4]}}",
       4, CLMOE_ERROR_UNSUPPORTED, "rank 9"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
       "\"data_offsets\":[0,4]}}",
       4, CLMOE_ERROR_BAD_FILE, "overflows"},
      {"{\"__metadata__\":3}", 0, CLMOE_ERROR_BAD_FILE, "__metadata__"},
      {"{\"a\":7}", 0, CLMOE_ERROR_BAD_FILE, "not a JSON object"},
  };
  unsigned char zeros[16] = {0};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
    write_st(path_of("bad.safetensors"), cases[i].header, zeros,
             cases[i].data_bytes);
    clmoe_checkpoint *ck = (clmoe_checkpoint *)1;
    clmoe_status st = clmoe_checkpoint_open(path_of("bad.safetensors"), &ck);
    const char *detail = clmoe_last_error_detail();
    if (st != cases[i].want || !strstr(detail, cases[i].detail))
      fprintf(stderr, "malformed case %zu: %s: %s\n", i,
              clmoe_status_string(st), detail);
    CHECK(st == cases[i].want && strstr(detail, cases[i].detail));
    CHECK(ck == NULL);
  }
  /* Header length past the end; a file shorter than 8 bytes; no file. */
  unsigned char big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
  write_bytes(path_of("bad.safetensors"), big, 10);
  clmoe_checkpoint *ck = NULL;
  CHECK_STATUS(clmoe_checkpoint_open(path_of("bad.safetensors"), &ck),
               CLMOE_ERROR_BAD_FILE);
  CHECK(strstr(clmoe_last_error_detail(), "header length 65535") != NULL);
  write_bytes(path_of("bad.safetensors"), big, 5);
  CHECK_STATUS(clmoe_checkpoint_open(path_of("bad.safetensors"), &ck),
               CLMOE_ERROR_BAD_FILE);
  CHECK_STATUS(clmoe_checkpoint_open(path_of("none.safetensors"), &ck),
               CLMOE_ERROR_NOT_FOUND);
  CHECK_STATUS(clmoe_checkpoint_open(NULL, &ck), CLMOE_ERROR_NULL_POINTER);
  /* A valid empty file (header "{}") opens with no tensors. */
  write_st(path_of("empty.safetensors"), "{}", NULL, 0);
  REQUIRE_OK(clmoe_checkpoint_open(path_of("empty.safetensors"), &ck));
  clmoe_checkpoint_tensor info;
  clmoe_checkpoint_tensor_init(&info);
  CHECK_STATUS(clmoe_checkpoint_find_tensor(ck, "x", &info),
               CLMOE_ERROR_NOT_FOUND);
  clmoe_checkpoint_close(ck);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/clmoe-ckpt-XXXXXX");
  if (!mkdtemp(g_dir)) {
    fprintf(stderr, "mkdtemp failed\n");
    return 1;
  }
  test_single_file();
  test_sharded_dir();
  test_malformed();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  if (system(cmd))
    fprintf(stderr, "could not remove %s\n", g_dir);
  return test_finish("test_checkpoint");
}
