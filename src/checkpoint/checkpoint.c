/* clmoe_checkpoint_*: a safetensors file or a model directory (config.json,
 * model.safetensors or an index with shards) as one table of tensors sorted
 * by name; reads stream from the mappings with dtype conversion. */
/* madvise(MADV_DONTNEED) is Linux/BSD, beyond the POSIX level the build
 * asks for (posix_madvise's DONTNEED is a no-op on Linux). */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "quant/formats.h"
#include "runtime/runtime.h"

/* config.json is read whole; a real one is a few kB. */
#define CONFIG_MAX_BYTES (16u << 20)

struct clmoe_checkpoint {
  cm_st_file *files;
  int num_files;
  const cm_st_tensor **sorted; /* every tensor, by name */
  size_t count;
  char *config; /* config.json text, or NULL */
};

void clmoe_checkpoint_tensor_init(clmoe_checkpoint_tensor *info) {
  if (!info)
    return;
  memset(info, 0, sizeof *info);
  info->struct_size = sizeof *info;
}

void clmoe_checkpoint_close(clmoe_checkpoint *ck) {
  if (!ck)
    return;
  for (int i = 0; i < ck->num_files; ++i)
    cm_st_close(&ck->files[i]);
  free(ck->files);
  free(ck->sorted);
  free(ck->config);
  free(ck);
}

static int is_dir(const char *path) {
  struct stat sb;
  return !stat(path, &sb) && S_ISDIR(sb.st_mode);
}

static int exists(const char *path) {
  struct stat sb;
  return !stat(path, &sb);
}

/* dir + "/" + name into a new string. */
static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* A whole small text file (config.json, the index), NUL-terminated. */
static clmoe_status read_text(const char *path, char **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return cm_fail(CLMOE_ERROR_IO, "%s: cannot open: %s", path,
                   strerror(errno));
  long size = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
  clmoe_status st = CLMOE_SUCCESS;
  char *buf = NULL;
  if (size < 0 || fseek(f, 0, SEEK_SET))
    st = cm_fail(CLMOE_ERROR_IO, "%s: cannot read", path);
  else if ((unsigned long)size > CONFIG_MAX_BYTES)
    st = cm_fail(CLMOE_ERROR_BAD_FILE, "%s: larger than %u bytes", path,
                 CONFIG_MAX_BYTES);
  else if (!(buf = malloc((size_t)size + 1)))
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                 "%s: out of host memory", path);
  else if (fread(buf, 1, (size_t)size, f) != (size_t)size)
    st = cm_fail(CLMOE_ERROR_IO, "%s: cannot read", path);
  fclose(f);
  if (st) {
    free(buf);
    return st;
  }
  buf[size] = 0;
  *out = buf;
  return CLMOE_SUCCESS;
}

static int by_name(const void *a, const void *b) {
  return strcmp((*(const cm_st_tensor *const *)a)->name,
                (*(const cm_st_tensor *const *)b)->name);
}

/* The sorted table over every file; a name in two files is an error. */
static clmoe_status build_table(clmoe_checkpoint *ck) {
  size_t n = 0;
  for (int i = 0; i < ck->num_files; ++i)
    n += ck->files[i].count;
  ck->sorted = malloc(sizeof *ck->sorted * (n ? n : 1));
  if (!ck->sorted)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "checkpoint tensor table: out of host memory");
  for (int i = 0; i < ck->num_files; ++i)
    for (size_t j = 0; j < ck->files[i].count; ++j)
      ck->sorted[ck->count++] = &ck->files[i].tensors[j];
  qsort(ck->sorted, ck->count, sizeof *ck->sorted, by_name);
  for (size_t i = 1; i < ck->count; ++i)
    if (!strcmp(ck->sorted[i]->name, ck->sorted[i - 1]->name))
      return cm_fail(CLMOE_ERROR_BAD_FILE, "tensor \"%s\" is in both %s and %s",
                     ck->sorted[i]->name,
                     ck->files[ck->sorted[i - 1]->file].path,
                     ck->files[ck->sorted[i]->file].path);
  return CLMOE_SUCCESS;
}

const cm_st_tensor *cm_ck_lookup(const clmoe_checkpoint *ck, const char *name) {
  size_t lo = 0, hi = ck->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(ck->sorted[mid]->name, name);
    if (!c)
      return ck->sorted[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* Opens shard `name` of dir as file number ck->num_files (once). */
static clmoe_status open_shard(clmoe_checkpoint *ck, const char *dir,
                               const char *name, const char *index) {
  for (int i = 0; i < ck->num_files; ++i) {
    const char *p = ck->files[i].path, *base = strrchr(p, '/');
    if (!strcmp(base ? base + 1 : p, name))
      return CLMOE_SUCCESS;
  }
  if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
    return cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: shard \"%.64s\" is not a plain file name", index, name);
  char *path = join(dir, name);
  if (!path)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "shard path: out of host memory");
  clmoe_status st = cm_st_open(path, ck->num_files, &ck->files[ck->num_files]);
  if (!st)
    ++ck->num_files;
  else if (st == CLMOE_ERROR_NOT_FOUND)
    st = cm_fail(CLMOE_ERROR_NOT_FOUND, "%s names shard %s, which is missing",
                 index, path);
  free(path);
  return st;
}

/* The index's weight_map: opens every shard it names, then checks that
 * each listed tensor is in its shard. */
static clmoe_status open_index(clmoe_checkpoint *ck, const char *dir,
                               const char *index) {
  char *text;
  clmoe_status st = read_text(index, &text);
  if (st)
    return st;
  json_error_t err;
  json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
  free(text);
  if (!root)
    return cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: not valid JSON (%s, line %d column %d)", index,
                   err.text, err.line, err.column);
  json_t *map = json_object_get(root, "weight_map");
  const char *key;
  json_t *v;
  if (!json_is_object(map)) {
    st = cm_fail(CLMOE_ERROR_BAD_FILE, "%s: no \"weight_map\" object", index);
    goto done;
  }
  ck->files = calloc(json_object_size(map) + 1, sizeof *ck->files);
  if (!ck->files) {
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "shard table: out of host memory");
    goto done;
  }
  json_object_foreach(map, key, v) {
    if (!json_is_string(v)) {
      st = cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: weight_map[\"%s\"] is not a file name", index, key);
      goto done;
    }
    if ((st = open_shard(ck, dir, json_string_value(v), index)))
      goto done;
  }
  if ((st = build_table(ck)))
    goto done;
  json_object_foreach(map, key, v) {
    const cm_st_tensor *t = cm_ck_lookup(ck, key);
    const char *shard = json_string_value(v),
               *p = t ? ck->files[t->file].path : NULL;
    const char *base = p ? strrchr(p, '/') : NULL;
    if (!t || strcmp(base ? base + 1 : p, shard)) {
      st = cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: weight_map puts \"%s\" in %s, which does not hold it",
                   index, key, shard);
      goto done;
    }
  }
done:
  json_decref(root);
  return st;
}

static clmoe_status open_dir(clmoe_checkpoint *ck, const char *dir) {
  char *config = join(dir, "config.json"),
       *index = join(dir, "model.safetensors.index.json"),
       *single = join(dir, "model.safetensors");
  clmoe_status st = CLMOE_SUCCESS;
  if (!config || !index || !single)
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "paths: out of host memory");
  else if (exists(config))
    st = read_text(config, &ck->config);
  if (!st) {
    if (exists(index)) {
      st = open_index(ck, dir, index);
    } else if (exists(single)) {
      if (!(ck->files = calloc(1, sizeof *ck->files)))
        st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "shard table: out of host memory");
      else if (!(st = cm_st_open(single, 0, &ck->files[0])))
        ck->num_files = 1;
      if (!st)
        st = build_table(ck);
    } else {
      st = cm_fail(CLMOE_ERROR_NOT_FOUND,
                   "%s holds neither model.safetensors nor "
                   "model.safetensors.index.json",
                   dir);
    }
  }
  free(config);
  free(index);
  free(single);
  return st;
}

clmoe_status clmoe_checkpoint_open(const char *path, clmoe_checkpoint **out) {
  if (out)
    *out = NULL;
  if (!path || !out)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_checkpoint_open: %s is NULL", path ? "out" : "path");
  clmoe_checkpoint *ck = calloc(1, sizeof *ck);
  if (!ck)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "checkpoint: out of host memory");
  clmoe_status st;
  if (is_dir(path)) {
    st = open_dir(ck, path);
  } else if (!(ck->files = calloc(1, sizeof *ck->files))) {
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "shard table: out of host memory");
  } else {
    st = cm_st_open(path, 0, &ck->files[0]);
    if (!st) {
      ck->num_files = 1;
      st = build_table(ck);
    }
  }
  if (st) {
    clmoe_checkpoint_close(ck);
    return st;
  }
  *out = ck;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_checkpoint_get_num_tensors(const clmoe_checkpoint *ck,
                                              int64_t *count) {
  if (!ck || !count)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_checkpoint_get_num_tensors: NULL argument");
  *count = (int64_t)ck->count;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_checkpoint_get_num_files(const clmoe_checkpoint *ck,
                                            int32_t *count) {
  if (!ck || !count)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_checkpoint_get_num_files: NULL argument");
  *count = ck->num_files;
  return CLMOE_SUCCESS;
}

static clmoe_status describe(const cm_st_tensor *t,
                             clmoe_checkpoint_tensor *info) {
  clmoe_status st = cm_check_struct(info, sizeof *info, "checkpoint tensor");
  if (st)
    return st;
  size_t size = info->struct_size;
  clmoe_checkpoint_tensor v;
  memset(&v, 0, sizeof v);
  v.struct_size = size;
  v.name = t->name;
  memcpy(v.dtype, t->dtype, sizeof v.dtype);
  v.readable_dtype = t->readable;
  v.rank = t->rank;
  memcpy(v.shape, t->shape, sizeof t->shape);
  v.bytes = t->end - t->begin;
  v.file = t->file;
  memcpy(info, &v, size < sizeof v ? size : sizeof v);
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_checkpoint_get_tensor(const clmoe_checkpoint *ck,
                                         int64_t index,
                                         clmoe_checkpoint_tensor *info) {
  if (!ck || !info)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_checkpoint_get_tensor: NULL argument");
  if (index < 0 || (uint64_t)index >= ck->count)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "clmoe_checkpoint_get_tensor: index %lld is outside 0..%zu",
                   (long long)index, ck->count ? ck->count - 1 : 0);
  return describe(ck->sorted[index], info);
}

/* Edit distance of a and b (capped rows: names are short). */
static size_t edit_distance(const char *a, const char *b) {
  size_t n = strlen(b), row[257];
  if (n > 256)
    n = 256;
  for (size_t j = 0; j <= n; ++j)
    row[j] = j;
  for (size_t i = 1; *a && i <= 256; ++i, ++a) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= n; ++j) {
      size_t up = row[j];
      size_t best = diag + (*a != b[j - 1]);
      best = up + 1 < best ? up + 1 : best;
      best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
      row[j] = best;
      diag = up;
    }
  }
  return row[n];
}

clmoe_status cm_ck_not_found(const clmoe_checkpoint *ck, const char *name) {
  const char *best = NULL;
  size_t best_d = (size_t)-1;
  for (size_t i = 0; i < ck->count; ++i) {
    size_t d = edit_distance(name, ck->sorted[i]->name);
    if (d < best_d) {
      best_d = d;
      best = ck->sorted[i]->name;
    }
  }
  return best ? cm_fail(CLMOE_ERROR_NOT_FOUND,
                        "no tensor \"%.200s\" in the checkpoint; nearest: "
                        "\"%.200s\"",
                        name, best)
              : cm_fail(CLMOE_ERROR_NOT_FOUND,
                        "no tensor \"%.200s\": the checkpoint is empty", name);
}

clmoe_status clmoe_checkpoint_find_tensor(const clmoe_checkpoint *ck,
                                          const char *name,
                                          clmoe_checkpoint_tensor *info) {
  if (!ck || !name || !info)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_checkpoint_find_tensor: NULL argument");
  const cm_st_tensor *t = cm_ck_lookup(ck, name);
  return t ? describe(t, info) : cm_ck_not_found(ck, name);
}

clmoe_status clmoe_checkpoint_read(const clmoe_checkpoint *ck, const char *name,
                                   clmoe_dtype dtype, void *dst,
                                   size_t dst_bytes) {
  if (!ck || !name || (!dst && dst_bytes))
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_checkpoint_read: NULL argument");
  const cm_st_tensor *t = cm_ck_lookup(ck, name);
  if (!t)
    return cm_ck_not_found(ck, name);
  if (!t->readable)
    return cm_fail(CLMOE_ERROR_UNSUPPORTED,
                   "tensor \"%s\" is stored as %s; clmoe reads F32, F16, "
                   "BF16, F8_E4M3, F8_E5M2, I8 and U8",
                   name, t->dtype);
  int raw = dtype == t->readable && cm_is_code_dtype(dtype);
  if (!cm_is_float_dtype(dtype) && !raw)
    return cm_fail(CLMOE_ERROR_UNSUPPORTED,
                   "clmoe_checkpoint_read: target dtype %d is not F32, F16, "
                   "BF16 or the stored code dtype",
                   (int)dtype);
  uint64_t n = cm_st_elements(t);
  size_t esize = raw ? 1 : cm_dtype_size(dtype);
  if (n > SIZE_MAX / 4 || dst_bytes != n * esize)
    return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                   "tensor \"%s\" has %llu elements: %llu bytes as %s, not "
                   "%zu",
                   name, (unsigned long long)n,
                   (unsigned long long)(n * esize),
                   raw ? t->dtype : cm_dtype_name(dtype), dst_bytes);
  return cm_ck_read_range(ck, t, 0, n, dtype, dst);
}

/* Drops the whole pages of [p, p + bytes) from the process's resident set
 * once read: the mapping is read-only and private, so a later read faults
 * them in again from the file. Loading a model then never keeps more of
 * its shards resident than it is copying. */
static void release_pages(const unsigned char *p, uint64_t bytes) {
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t lo = ((uintptr_t)p + page - 1) / page * page,
            hi = ((uintptr_t)p + bytes) / page * page;
  if (hi > lo)
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* n elements at src (element `first` of t, for error details) into dst as
 * dtype. */
static clmoe_status convert(const cm_st_tensor *t, const unsigned char *src,
                            uint64_t first, uint64_t n, clmoe_dtype dtype,
                            void *dst) {
  if (dtype == t->readable) {
    memcpy(dst, src, n * (uint64_t)t->elem_size);
    return CLMOE_SUCCESS;
  }
  if (t->readable == CLMOE_DTYPE_BF16 && dtype == CLMOE_DTYPE_F32) {
    /* The common widening (bfloat16 checkpoints) is a shift. */
    uint32_t *out = dst;
    for (uint64_t i = 0; i < n; ++i)
      out[i] = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;
    return CLMOE_SUCCESS;
  }
  /* Through an aligned chunk (the stored data need not be aligned). */
  enum { CHUNK = 4096 };
  float chunk_in[CHUNK]; /* room for CHUNK elements of any stored dtype */
  size_t in_size = (size_t)t->elem_size;
  for (uint64_t at = 0; at < n; at += CHUNK) {
    size_t m = n - at < CHUNK ? (size_t)(n - at) : CHUNK;
    memcpy(chunk_in, src + at * in_size, m * in_size);
    for (size_t i = 0; i < m; ++i) {
      float v = cm_is_code_dtype(t->readable)
                    ? cm_code_value(t->readable, chunk_in, i)
                    : cm_to_f32(t->readable, chunk_in, i);
      if (cm_from_f32(dtype, v, dst, (size_t)at + i))
        return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                       "tensor \"%s\" element %llu (%g) overflows %s", t->name,
                       (unsigned long long)(first + at + i), (double)v,
                       cm_dtype_name(dtype));
    }
  }
  return CLMOE_SUCCESS;
}

clmoe_status cm_ck_read_range(const clmoe_checkpoint *ck, const cm_st_tensor *t,
                              uint64_t first, uint64_t n, clmoe_dtype dtype,
                              void *dst) {
  const unsigned char *src =
      ck->files[t->file].data + t->begin + first * (uint64_t)t->elem_size;
  if (n == 0)
    return CLMOE_SUCCESS;
  clmoe_status st = convert(t, src, first, n, dtype, dst);
  release_pages(src, n * (uint64_t)t->elem_size);
  return st;
}

clmoe_status clmoe_checkpoint_get_config(const clmoe_checkpoint *ck,
                                         const char **json) {
  if (!ck || !json)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_checkpoint_get_config: NULL argument");
  *json = ck->config;
  return CLMOE_SUCCESS;
}
