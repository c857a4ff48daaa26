/* Device tuning table: parsing, matching and applying CLBlast overrides. */
#include "runtime/runtime.h"

#include <clblast_c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Errors name the table and line: "tuning table <file>:<line>: ...". */
static clmoe_status bad_line(const char *where, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static clmoe_status bad_line(const char *where, const char *fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  char at[200];
  snprintf(at, sizeof at, "tuning table %s", where);
  return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, at, "%s", detail);
}

const cm_tuning cm_tuning_defaults = {
    .path = CLMOE_EXPERTS_PATH_CLBLAST,
    .rm = 8,
    .vw = 16,
    .lx = 1,
    .tc = 1,
    .bm = 64,
    .np = 2,
    .bk = 16,
    .tm = 4,
    .tn = 4,
    .router_gemm = CLMOE_EXPERTS_PATH_CLBLAST,
    .in_flight_max_k = 8,
    .in_flight_max_mib = 256,
    .score_rm = 8,
    .score_vw = 16,
    .score_lx = 0,
    .origin = "built-in default",
};

/* A table field matches: "*" anything, else a case-insensitive substring. */
static int field_matches(const char *pattern, const char *hay) {
  return !strcmp(pattern, "*") || cm_contains_nocase(hay, pattern);
}

/* Parses "NAME=VALUE NAME=VALUE ..." ("-" = none) into p. */
static clmoe_status parse_clblast(char *text, const char *where,
                                  cm_clblast_params *p) {
  p->count = 0;
  if (!strcmp(text, "-"))
    return CLMOE_SUCCESS;
  for (char *save, *tok = strtok_r(text, " ", &save); tok;
       tok = strtok_r(NULL, " ", &save)) {
    char *eq = strchr(tok, '=');
    char *end;
    if (!eq || eq == tok || (size_t)(eq - tok) >= sizeof p->names[0])
      return bad_line(where, "\"%s\" is not NAME=VALUE", tok);
    if (p->count == CM_TUNING_MAX_PARAMS)
      return bad_line(where, "more than %d CLBlast parameters",
                      CM_TUNING_MAX_PARAMS);
    unsigned long v = strtoul(eq + 1, &end, 10);
    if (*end || end == eq + 1)
      return bad_line(where, "\"%s\" has no integer value", tok);
    memcpy(p->names[p->count], tok, (size_t)(eq - tok));
    p->names[p->count][eq - tok] = 0;
    p->values[p->count++] = v;
  }
  return CLMOE_SUCCESS;
}

static clmoe_status parse_grouped(char *text, const char *where, cm_tuning *t) {
  for (char *save, *tok = strtok_r(text, " ", &save); tok;
       tok = strtok_r(NULL, " ", &save)) {
    int v;
    char extra;
    if (sscanf(tok, "RM=%d%c", &v, &extra) == 1 && v >= 1 && v <= 16)
      t->rm = v;
    else if (sscanf(tok, "VW=%d%c", &v, &extra) == 1 &&
             (v == 4 || v == 8 || v == 16))
      t->vw = v;
    else if (sscanf(tok, "LX=%d%c", &v, &extra) == 1 && v >= 0 && v <= 1024)
      t->lx = v;
    else if (sscanf(tok, "TC=%d%c", &v, &extra) == 1 && v >= 0 && v <= 1024)
      t->tc = v;
    else if (sscanf(tok, "PN=%d%c", &v, &extra) == 1 && v >= 0 && v <= 1)
      t->pn = v;
    else if (!strcmp(tok, "KERNEL=private"))
      t->local_kernel = 0;
    else if (!strcmp(tok, "KERNEL=local"))
      t->local_kernel = 1;
    else if (sscanf(tok, "BM=%d%c", &v, &extra) == 1 && v >= 1 && v <= 256)
      t->bm = v;
    else if (sscanf(tok, "NP=%d%c", &v, &extra) == 1 && v >= 1 && v <= 8)
      t->np = v;
    else if (sscanf(tok, "BK=%d%c", &v, &extra) == 1 && v >= 1 && v <= 64)
      t->bk = v;
    else if (sscanf(tok, "TM=%d%c", &v, &extra) == 1 && v >= 1 && v <= 16)
      t->tm = v;
    else if (sscanf(tok, "TN=%d%c", &v, &extra) == 1 && v >= 1 && v <= 16)
      t->tn = v;
    else
      return bad_line(where,
                      "grouped parameter \"%s\" is not RM=1..16, "
                      "VW=4|8|16, LX=0..1024, TC=0..1024, PN=0|1, "
                      "KERNEL=private|local, BM=1..256, NP=1..8, BK=1..64, "
                      "TM=1..16 or TN=1..16",
                      tok);
  }
  if (!t->local_kernel)
    return CLMOE_SUCCESS;
  if (t->bm % t->tm || t->vw % t->tn)
    return bad_line(where,
                    "the local kernel's TM = %d must divide BM = %d and TN = "
                    "%d must divide VW = %d",
                    t->tm, t->bm, t->tn, t->vw);
  size_t shape[2];
  cm_tuning_local_shape(t, shape);
  if (shape[0] * shape[1] > 1024)
    return bad_line(where,
                    "the local kernel's work-group of (BM / TM) x (NP * VW / "
                    "TN) = %zu work-items exceeds 1024",
                    shape[0] * shape[1]);
  return CLMOE_SUCCESS;
}

/* Parses the optional layer column: "ROUTER=grouped|clblast INFLIGHT_K=n
 * INFLIGHT_MIB=n SCORE_RM=n SCORE_VW=n SCORE_LX=n" ("-" = defaults). */
static clmoe_status parse_layer(char *text, const char *where, cm_tuning *t) {
  if (!strcmp(text, "-"))
    return CLMOE_SUCCESS;
  for (char *save, *tok = strtok_r(text, " ", &save); tok;
       tok = strtok_r(NULL, " ", &save)) {
    int v;
    char extra;
    if (!strcmp(tok, "ROUTER=grouped"))
      t->router_gemm = CLMOE_EXPERTS_PATH_GROUPED;
    else if (!strcmp(tok, "ROUTER=clblast"))
      t->router_gemm = CLMOE_EXPERTS_PATH_CLBLAST;
    else if (sscanf(tok, "INFLIGHT_K=%d%c", &v, &extra) == 1 && v >= 0 &&
             v <= 1024)
      t->in_flight_max_k = v;
    else if (sscanf(tok, "INFLIGHT_MIB=%d%c", &v, &extra) == 1 && v >= 0 &&
             v <= 65536)
      t->in_flight_max_mib = v;
    else if (sscanf(tok, "SCORE_RM=%d%c", &v, &extra) == 1 && v >= 1 && v <= 16)
      t->score_rm = v;
    else if (sscanf(tok, "SCORE_VW=%d%c", &v, &extra) == 1 &&
             (v == 4 || v == 8 || v == 16))
      t->score_vw = v;
    else if (sscanf(tok, "SCORE_LX=%d%c", &v, &extra) == 1 && v >= 0 &&
             v <= 1024)
      t->score_lx = v;
    else if (sscanf(tok, "SCORE_DC=%d%c", &v, &extra) == 1 && v >= 0 &&
             v <= 256)
      t->score_dc = v;
    else if (sscanf(tok, "SCAN_LX=%d%c", &v, &extra) == 1 && v >= 0 &&
             v <= 1024)
      t->scan_lx = v;
    else
      return bad_line(where,
                      "layer parameter \"%s\" is not ROUTER=grouped|clblast, "
                      "INFLIGHT_K=0..1024, INFLIGHT_MIB=0..65536, "
                      "SCORE_RM=1..16, SCORE_VW=4|8|16, SCORE_LX=0..1024, "
                      "SCORE_DC=0..256 or SCAN_LX=0..1024",
                      tok);
  }
  if (t->score_dc && !t->score_lx)
    return bad_line(where,
                    "SCORE_DC=%d (the work-group scoring kernels) "
                    "needs SCORE_LX > 0",
                    t->score_dc);
  return CLMOE_SUCCESS;
}

/* Parses one table line (modified in place). *matched says whether it
 * applies to `info`; comments and blank lines never match. */
static clmoe_status parse_line(char *line, const char *where,
                               const clmoe_device_info *info, cm_tuning *t,
                               int *matched) {
  *matched = 0;
  line[strcspn(line, "\r\n")] = 0;
  if (!line[0] || line[0] == '#')
    return CLMOE_SUCCESS;
  char *col[8];
  int n = 0;
  for (char *p = line; p; ++n) {
    char *tab = strchr(p, '\t');
    if (tab)
      *tab = 0;
    if (n < 8)
      col[n] = p;
    p = tab ? tab + 1 : NULL;
  }
  if (n != 7 && n != 8)
    return bad_line(where, "%d tab-separated columns, expected 7 or 8", n);
  clmoe_status st;
  *t = cm_tuning_defaults;
  if (!strcmp(col[3], "grouped"))
    t->path = CLMOE_EXPERTS_PATH_GROUPED;
  else if (!strcmp(col[3], "clblast"))
    t->path = CLMOE_EXPERTS_PATH_CLBLAST;
  else
    return bad_line(where, "path \"%s\" is neither grouped nor clblast",
                    col[3]);
  if ((st = parse_grouped(col[4], where, t)) ||
      (st = parse_clblast(col[5], where, &t->xgemm)) ||
      (st = parse_clblast(col[6], where, &t->xgemm_direct)) ||
      (n == 8 && (st = parse_layer(col[7], where, t))))
    return st;
  *matched = field_matches(col[0], info->platform_name) &&
             field_matches(col[1], info->name) &&
             field_matches(col[2], info->driver_version);
  if (*matched)
    snprintf(t->origin, sizeof t->origin, "%s", where);
  return CLMOE_SUCCESS;
}

/* Scans a table held in memory; *found says whether a line matched. */
static clmoe_status scan_text(const char *text, const char *name,
                              const clmoe_device_info *info, cm_tuning *t,
                              int *found) {
  char line[2048], where[160];
  int lineno = 0;
  *found = 0;
  while (*text && !*found) {
    size_t len = strcspn(text, "\n");
    ++lineno;
    if (len >= sizeof line) {
      snprintf(where, sizeof where, "%s:%d", name, lineno);
      return bad_line(where, "line longer than %zu characters",
                      sizeof line - 1);
    }
    memcpy(line, text, len);
    line[len] = 0;
    text += len + (text[len] == '\n');
    snprintf(where, sizeof where, "%s:%d", name, lineno);
    clmoe_status st = parse_line(line, where, info, t, found);
    if (st)
      return st;
  }
  return CLMOE_SUCCESS;
}

static clmoe_status read_file(const char *path, char **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "tuning table %s cannot be opened", path);
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  while (buf) {
    len += fread(buf + len, 1, cap - 1 - len, f);
    if (len < cap - 1 || cap > (1u << 20))
      break;
    char *bigger = realloc(buf, cap * 2);
    if (!bigger) {
      free(buf);
      buf = NULL;
    } else {
      buf = bigger;
      cap *= 2;
    }
  }
  int err = ferror(f);
  fclose(f);
  if (!buf)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "tuning table %s: out of host memory", path);
  if (err || len >= cap - 1) {
    free(buf);
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "tuning table %s cannot be read (or is over 1 MiB)", path);
  }
  buf[len] = 0;
  *out = buf;
  return CLMOE_SUCCESS;
}

clmoe_status cm_tuning_lookup(const clmoe_device_info *info,
                              const char *user_file, cm_tuning *out) {
  int found = 0;
  clmoe_status st;
  memset(out, 0, sizeof *out);
  if (user_file && *user_file) {
    char *text;
    if ((st = read_file(user_file, &text)))
      return st;
    st = scan_text(text, user_file, info, out, &found);
    free(text);
    if (st || found)
      return st;
  }
  const char *shipped = NULL;
  for (int i = 0; i < cm_cl_source_count; ++i)
    if (!strcmp(cm_cl_sources[i].name, "devices"))
      shipped = cm_cl_sources[i].text;
  if (shipped &&
      (st = scan_text(shipped, "tuning/devices.tsv", info, out, &found)))
    return st;
  if (!found) /* the shipped table ends with a catch-all; be safe anyway */
    *out = cm_tuning_defaults;
  return CLMOE_SUCCESS;
}

static clmoe_status apply_set(cl_device_id device, const char *kernel,
                              const cm_clblast_params *p, const char *origin) {
  if (!p->count)
    return CLMOE_SUCCESS;
  const char *names[CM_TUNING_MAX_PARAMS];
  for (int i = 0; i < p->count; ++i)
    names[i] = p->names[i];
  CLBlastStatusCode s =
      CLBlastOverrideParameters(device, kernel, CLBlastPrecisionSingle,
                                (size_t)p->count, names, p->values);
  if (s != CLBlastSuccess)
    return cm_fail(CLMOE_ERROR_CLBLAST,
                   "CLBlastOverrideParameters(%s) with the set from %s failed "
                   "with CLBlast status %d",
                   kernel, origin, (int)s);
  return CLMOE_SUCCESS;
}

clmoe_status cm_tuning_apply_clblast(cl_device_id device, const cm_tuning *t) {
  clmoe_status st = apply_set(device, "Xgemm", &t->xgemm, t->origin);
  return st ? st
            : apply_set(device, "XgemmDirect", &t->xgemm_direct, t->origin);
}

void cm_tuning_local_shape(const cm_tuning *t, size_t shape[2]) {
  shape[0] = (size_t)(t->np * t->vw / t->tn);
  shape[1] = (size_t)(t->bm / t->tm);
}

/* Local memory of one work-group of the local grouped kernel, in bytes. */
static size_t local_bytes(const cm_tuning *t) {
  /* cl/grouped_gemm_local.cl: As[BK][BM + 1] and Bs[BK][NP * 2 * VW]. */
  return sizeof(float) * (size_t)t->bk *
         ((size_t)t->bm + 1 + (size_t)t->np * 2 * t->vw);
}

clmoe_status cm_tuning_check_device(const cm_tuning *t, cl_device_id device,
                                    const clmoe_device_info *info) {
  size_t max_items = 0;
  cl_int err = clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                               sizeof max_items, &max_items, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clGetDeviceInfo(CL_DEVICE_MAX_WORK_GROUP_SIZE)");
  if ((size_t)t->scan_lx > max_items || (size_t)t->score_lx > max_items)
    return bad_line(t->origin,
                    "SCAN_LX=%d or SCORE_LX=%d exceeds the device's "
                    "work-group size %zu",
                    t->scan_lx, t->score_lx, max_items);
  int uses_grouped = t->path == CLMOE_EXPERTS_PATH_GROUPED ||
                     t->router_gemm == CLMOE_EXPERTS_PATH_GROUPED;
  if (!uses_grouped || !t->local_kernel)
    return CLMOE_SUCCESS;
  size_t shape[2];
  cm_tuning_local_shape(t, shape);
  size_t items = shape[0] * shape[1], bytes = local_bytes(t);
  if (items > max_items || bytes > info->local_mem_bytes)
    return bad_line(t->origin,
                    "the local kernel needs %zu work-items and %zu bytes of "
                    "local memory per work-group; the device allows %zu and "
                    "%llu",
                    items, bytes, max_items,
                    (unsigned long long)info->local_mem_bytes);
  return CLMOE_SUCCESS;
}
