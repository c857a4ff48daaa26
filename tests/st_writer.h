/* The tests' own safetensors writer (8-byte little-endian header length,
 * the JSON header, the data), independent of the library's reader. */
#ifndef CLMOE_TEST_ST_WRITER_H
#define CLMOE_TEST_ST_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  fclose(f);
}

static inline void write_st(const char *path, const char *header,
                            const void *data, size_t data_bytes) {
  size_t n = strlen(header);
  unsigned char *buf = malloc(8 + n + data_bytes + 1);
  for (int i = 0; i < 8; ++i)
    buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
  memcpy(buf + 8, header, n);
  if (data_bytes)
    memcpy(buf + 8 + n, data, data_bytes);
  write_bytes(path, buf, 8 + n + data_bytes);
  free(buf);
}

/* Builds a header and data of float32 tensors one by one. */
typedef struct st_builder {
  char header[16384];
  size_t len;
  unsigned char *data;
  size_t bytes;
} st_builder;

/* A [rows, cols] tensor of `dtype` (safetensors' name, `esize` bytes an
 * element); cols < 0 makes it the vector [rows]. */
static inline void st_add(st_builder *b, const char *name, const char *dtype,
                          int esize, int rows, int cols, const void *v) {
  size_t n = (size_t)rows * (cols < 0 ? 1 : cols) * (size_t)esize;
  char shape[32];
  if (cols < 0)
    snprintf(shape, sizeof shape, "%d", rows);
  else
    snprintf(shape, sizeof shape, "%d,%d", rows, cols);
  b->len += (size_t)snprintf(
      b->header + b->len, sizeof b->header - b->len,
      "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,"
      "%zu]}",
      b->len ? "," : "{", name, dtype, shape, b->bytes, b->bytes + n);
  b->data = realloc(b->data, b->bytes + n);
  memcpy(b->data + b->bytes, v, n);
  b->bytes += n;
}

static inline void st_add_f32(st_builder *b, const char *name, int rows,
                              int cols, const float *v) {
  st_add(b, name, "F32", 4, rows, cols, v);
}

static inline void st_write(st_builder *b, const char *path) {
  snprintf(b->header + b->len, sizeof b->header - b->len, "}");
  write_st(path, b->header, b->data, b->bytes);
  free(b->data);
  memset(b, 0, sizeof *b);
}

#endif /* CLMOE_TEST_ST_WRITER_H */
