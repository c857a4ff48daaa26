/* safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, optional
 * "__metadata__"}), then the data, with offsets relative to its start.
 * Every field is checked before anything is trusted; the JSON parser is
 * jansson, chosen because it rejects duplicate keys while parsing
 * (JSON_REJECT_DUPLICATES) and parses a length-bounded buffer, so a
 * duplicate tensor name cannot silently shadow another and the header
 * needs no NUL terminator. */
#include "checkpoint/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/runtime.h"

/* The safetensors format caps its header at 100 MB. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)

static const struct {
  const char *name;
  int size;
  clmoe_dtype readable;
} k_dtypes[] = {
    {"F32", 4, CLMOE_DTYPE_F32},
    {"F16", 2, CLMOE_DTYPE_F16},
    {"BF16", 2, CLMOE_DTYPE_BF16},
    {"F64", 8, 0},
    {"I64", 8, 0},
    {"I32", 4, 0},
    {"I16", 2, 0},
    {"I8", 1, CLMOE_DTYPE_I8},
    {"U64", 8, 0},
    {"U32", 4, 0},
    {"U16", 2, 0},
    {"U8", 1, CLMOE_DTYPE_U8},
    {"BOOL", 1, 0},
    {"F8_E4M3", 1, CLMOE_DTYPE_F8_E4M3},
    {"F8_E5M2", 1, CLMOE_DTYPE_F8_E5M2},
};

uint64_t cm_st_elements(const cm_st_tensor *t) {
  uint64_t n = 1;
  for (int i = 0; i < t->rank; ++i)
    n *= (uint64_t)t->shape[i];
  return n;
}

void cm_st_close(cm_st_file *f) {
  if (f->map)
    munmap((void *)f->map, f->map_bytes);
  for (size_t i = 0; i < f->count; ++i)
    free(f->tensors[i].name);
  free(f->tensors);
  free(f->path);
  memset(f, 0, sizeof *f);
}

static clmoe_status bad(const cm_st_file *f, const char *what,
                        const char *name) {
  return name ? cm_fail(CLMOE_ERROR_BAD_FILE, "%s: tensor \"%s\": %s", f->path,
                        name, what)
              : cm_fail(CLMOE_ERROR_BAD_FILE, "%s: %s", f->path, what);
}

/* dtype, shape and data_offsets of one header entry into t. */
static clmoe_status parse_entry(const cm_st_file *f, const char *name,
                                json_t *v, cm_st_tensor *t) {
  if (!json_is_object(v))
    return bad(f, "entry is not a JSON object", name);
  json_t *dt = json_object_get(v, "dtype"),
         *shape = json_object_get(v, "shape"),
         *offs = json_object_get(v, "data_offsets");
  if (!json_is_string(dt))
    return bad(f, "no \"dtype\" string", name);
  const char *dts = json_string_value(dt);
  size_t k = 0, nk = sizeof k_dtypes / sizeof *k_dtypes;
  while (k < nk && strcmp(k_dtypes[k].name, dts))
    ++k;
  if (k == nk)
    return cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: tensor \"%s\": unknown dtype \"%.32s\"", f->path, name,
                   dts);
  strcpy(t->dtype, k_dtypes[k].name);
  t->elem_size = k_dtypes[k].size;
  t->readable = k_dtypes[k].readable;
  if (!json_is_array(shape))
    return bad(f, "no \"shape\" array", name);
  if (json_array_size(shape) > CLMOE_CHECKPOINT_MAX_RANK)
    return cm_fail(CLMOE_ERROR_UNSUPPORTED,
                   "%s: tensor \"%s\" has rank %zu; at most %d is supported",
                   f->path, name, json_array_size(shape),
                   CLMOE_CHECKPOINT_MAX_RANK);
  t->rank = (int)json_array_size(shape);
  uint64_t bytes = (uint64_t)t->elem_size;
  for (int i = 0; i < t->rank; ++i) {
    json_t *d = json_array_get(shape, (size_t)i);
    if (!json_is_integer(d) || json_integer_value(d) < 0)
      return bad(f, "shape holds something other than a non-negative integer",
                 name);
    t->shape[i] = (int64_t)json_integer_value(d);
    if (t->shape[i] && bytes > UINT64_MAX / (uint64_t)t->shape[i])
      return bad(f, "shape overflows 64 bits", name);
    bytes *= (uint64_t)t->shape[i];
  }
  if (!json_is_array(offs) || json_array_size(offs) != 2 ||
      !json_is_integer(json_array_get(offs, 0)) ||
      !json_is_integer(json_array_get(offs, 1)))
    return bad(f, "no \"data_offsets\" [begin, end] of integers", name);
  json_int_t b = json_integer_value(json_array_get(offs, 0)),
             e = json_integer_value(json_array_get(offs, 1));
  if (b < 0 || e < b || (uint64_t)e > f->data_bytes)
    return cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: tensor \"%s\": data_offsets [%lld, %lld] are not "
                   "inside the %llu data bytes",
                   f->path, name, (long long)b, (long long)e,
                   (unsigned long long)f->data_bytes);
  if ((uint64_t)(e - b) != bytes)
    return cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: tensor \"%s\": data_offsets span %llu bytes but %s x "
                   "shape needs %llu",
                   f->path, name, (unsigned long long)(e - b), t->dtype,
                   (unsigned long long)bytes);
  t->begin = (uint64_t)b;
  t->end = (uint64_t)e;
  return CLMOE_SUCCESS;
}

static int by_begin(const void *a, const void *b) {
  const cm_st_tensor *x = *(const cm_st_tensor *const *)a,
                     *y = *(const cm_st_tensor *const *)b;
  return (x->begin > y->begin) - (x->begin < y->begin);
}

/* No two tensors share a byte. */
static clmoe_status check_overlap(const cm_st_file *f) {
  if (f->count < 2)
    return CLMOE_SUCCESS;
  const cm_st_tensor **order = malloc(sizeof *order * f->count);
  if (!order)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: tensor table: out of host memory", f->path);
  size_t n = 0;
  for (size_t i = 0; i < f->count; ++i)
    if (f->tensors[i].end > f->tensors[i].begin)
      order[n++] = &f->tensors[i];
  qsort(order, n, sizeof *order, by_begin);
  clmoe_status st = CLMOE_SUCCESS;
  for (size_t i = 1; i < n && !st; ++i)
    if (order[i]->begin < order[i - 1]->end)
      st = cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: tensors \"%s\" and \"%s\" overlap (bytes %llu..%llu "
                   "and %llu..%llu)",
                   f->path, order[i - 1]->name, order[i]->name,
                   (unsigned long long)order[i - 1]->begin,
                   (unsigned long long)order[i - 1]->end,
                   (unsigned long long)order[i]->begin,
                   (unsigned long long)order[i]->end);
  free(order);
  return st;
}

static clmoe_status parse_header(cm_st_file *f, const char *text, size_t len,
                                 int file) {
  json_error_t err;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
  if (!root)
    return cm_fail(CLMOE_ERROR_BAD_FILE,
                   "%s: the header is not valid JSON (%s, line %d column %d)",
                   f->path, err.text, err.line, err.column);
  clmoe_status st = CLMOE_SUCCESS;
  if (!json_is_object(root)) {
    st = bad(f, "the header is not a JSON object", NULL);
    goto done;
  }
  f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors);
  if (!f->tensors) {
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: tensor table: out of host memory", f->path);
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (!strcmp(key, "__metadata__")) {
      if (!json_is_object(v))
        st = bad(f, "__metadata__ is not a JSON object", NULL);
      if (st)
        goto done;
      continue;
    }
    cm_st_tensor *t = &f->tensors[f->count];
    if (!(t->name = strdup(key))) {
      st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: names: out of host memory", f->path);
      goto done;
    }
    ++f->count;
    t->file = file;
    if ((st = parse_entry(f, key, v, t)))
      goto done;
  }
  st = check_overlap(f);
done:
  json_decref(root);
  return st;
}

clmoe_status cm_st_open(const char *path, int file, cm_st_file *f) {
  memset(f, 0, sizeof *f);
  if (!(f->path = strdup(path)))
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "path: out of host memory");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    clmoe_status st =
        cm_fail(errno == ENOENT ? CLMOE_ERROR_NOT_FOUND : CLMOE_ERROR_IO,
                "%s: cannot open: %s", path, strerror(errno));
    cm_st_close(f);
    return st;
  }
  struct stat sb;
  clmoe_status st = CLMOE_SUCCESS;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode))
    st = cm_fail(CLMOE_ERROR_IO, "%s: not a readable regular file", path);
  else if (sb.st_size < 8)
    st = bad(f, "shorter than the 8-byte header length", NULL);
  if (!st) {
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
      st = cm_fail(CLMOE_ERROR_IO, "%s: cannot map: %s", path, strerror(errno));
    else {
      f->map = m;
      f->map_bytes = (size_t)sb.st_size;
    }
  }
  close(fd);
  if (st) {
    cm_st_close(f);
    return st;
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = n << 8 | f->map[i];
  if (n > f->map_bytes - 8 || n > ST_MAX_HEADER)
    st = cm_fail(CLMOE_ERROR_BAD_FILE,
                 "%s: header length %llu runs past the end of the file (%zu "
                 "bytes) or over the format's 100 MB",
                 path, (unsigned long long)n, f->map_bytes);
  if (!st) {
    f->data = f->map + 8 + n;
    f->data_bytes = f->map_bytes - 8 - n;
    st = parse_header(f, (const char *)f->map + 8, (size_t)n, file);
  }
  if (st)
    cm_st_close(f);
  return st;
}
