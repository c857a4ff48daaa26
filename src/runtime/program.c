/* Kernel programs: built once per context from the embedded sources, with
 * binaries cached on disk keyed by device, driver, options and source. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/kernel_abi.h"
#include "runtime/runtime.h"

static const char *const k_build_options = "-cl-std=CL1.2";

typedef struct cm_program_spec {
  const char *name;
  const char *sources[6]; /* embedded files concatenated, NULL-terminated */
  /* grouped GEMM programs: GEMM_WTYPE + 1 (cl/weight_formats.cl); 0 for
   * the others */
  int gemm_wtype;
} cm_program_spec;

#define GROUPED_GEMM(name, wtype)                                              \
  {                                                                            \
    name, {"common", "weight_formats", "grouped_gemm", "grouped_gemm_local",   \
           NULL},                                                              \
        (wtype) + 1                                                            \
  }
static const cm_program_spec k_programs[CM_PROG_COUNT] = {
    [CM_PROG_ROUTE] = {"route", {"common", "route", NULL}, 0},
    [CM_PROG_GROUP] = {"group", {"common", "group", NULL}, 0},
    [CM_PROG_DISPATCH_COMBINE] = {"dispatch_combine",
                                  {"common", "dispatch_combine", NULL}, 0},
    [CM_PROG_EXPERTS_RUN] = {"experts_run", {"common", "experts_run", NULL},
                             0},
    [CM_PROG_SCORE] = {"score", {"common", "score", "score_local", NULL}, 0},
    [CM_PROG_GROUPED_GEMM] = GROUPED_GEMM("grouped_gemm", 0),
    [CM_PROG_GROUPED_GEMM_F16] = GROUPED_GEMM("grouped_gemm_f16", 1),
    [CM_PROG_GROUPED_GEMM_BF16] = GROUPED_GEMM("grouped_gemm_bf16", 2),
    [CM_PROG_GROUPED_GEMM_F8] = GROUPED_GEMM("grouped_gemm_f8", 3),
    [CM_PROG_GROUPED_GEMM_MXFP4] = GROUPED_GEMM("grouped_gemm_mxfp4", 4),
    [CM_PROG_GROUPED_GEMM_I8] = GROUPED_GEMM("grouped_gemm_i8", 5),
    [CM_PROG_GROUPED_GEMM_I4] = GROUPED_GEMM("grouped_gemm_i4", 6),
    [CM_PROG_EXPERT_GRADS] = {"expert_grads", {"common", "expert_grads", NULL},
                              0},
    [CM_PROG_ROUTER_GRADS] = {"router_grads", {"common", "router_grads", NULL},
                              0},
};
#undef GROUPED_GEMM

/* The on-disk entry: header, then the binary. Every field is checked on load;
 * anything unexpected means the file is ignored and rebuilt. */
typedef struct cm_cache_header {
  char magic[8];
  uint64_t key;
  uint64_t binary_size;
  uint64_t binary_hash;
} cm_cache_header;

static const char k_magic[8] = {'C', 'L', 'M', 'O', 'E', 'B', 'N', '1'};

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static uint64_t fnv1a_str(uint64_t h, const char *s) {
  return fnv1a(h, s, strlen(s) + 1); /* the NUL separates fields */
}

static const char *find_source(const char *name) {
  for (int i = 0; i < cm_cl_source_count; ++i)
    if (!strcmp(cm_cl_sources[i].name, name))
      return cm_cl_sources[i].text;
  return NULL;
}

void cm_resolve_cache_dir(const char *explicit_dir, char *out, size_t len) {
  const char *env;
  if (explicit_dir)
    snprintf(out, len, "%s", explicit_dir);
  else if ((env = getenv("CLMOE_CACHE_DIR")) && *env)
    snprintf(out, len, "%s", env);
  else if ((env = getenv("XDG_CACHE_HOME")) && *env)
    snprintf(out, len, "%s/clmoe", env);
  else if ((env = getenv("HOME")) && *env)
    snprintf(out, len, "%s/.cache/clmoe", env);
  else
    out[0] = 0;
}

static int make_dirs(const char *path) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; ++p) {
    if (*p != '/')
      continue;
    *p = 0;
    if (mkdir(tmp, 0755) && errno != EEXIST)
      return -1;
    *p = '/';
  }
  return (mkdir(tmp, 0755) && errno != EEXIST) ? -1 : 0;
}

/* Build options of a program: the common ones, the shared constants
 * (kernel_abi.h), and the tuned kernel parameters of the grouped GEMM and
 * the fused scoring kernels. */
static void program_options(const clmoe_context *ctx, cm_program_id id,
                            char *out, size_t len) {
  int n = snprintf(out, len, "%s%s", k_build_options,
                   ctx->exact_divide ? " -cl-fp32-correctly-rounded-divide-sqrt"
                                     : "");
  size_t used = n > 0 ? (size_t)n : 0;
  if (used < len)
    used += cm_kernel_defines(out + used, len - used);
  /* GEMM_WTYPE: the weight panels' storage (cl/weight_formats.cl). */
  int gemm = k_programs[id].gemm_wtype != 0,
      wtype = k_programs[id].gemm_wtype - 1;
  if (id == CM_PROG_SCORE && used < len)
    used +=
        (size_t)snprintf(out + used, len - used, " -DSCORE_RM=%d -DSCORE_VW=%d",
                         ctx->tuning.score_rm, ctx->tuning.score_vw);
  if (id == CM_PROG_SCORE && ctx->tuning.score_dc && used < len)
    used += (size_t)snprintf(out + used, len - used, " -DSCORE_DC=%d",
                             ctx->tuning.score_dc);
  if (gemm && used < len)
    used += (size_t)snprintf(out + used, len - used,
                             " -DGEMM_RM=%d -DGEMM_VW=%d -DGEMM_WTYPE=%d",
                             ctx->tuning.rm, ctx->tuning.vw, wtype);
  if (gemm && ctx->tuning.pn && used < len)
    used += (size_t)snprintf(out + used, len - used, " -DGEMM_PN=1");
  /* Quantized codes decode by exponent rebiasing when float32 denormals
   * are kept (cl/weight_formats.cl); a device that flushes them gets the
   * select-based decoding, exact either way. */
  cl_device_fp_config fp = 0;
  if (gemm && wtype >= 3 &&
      clGetDeviceInfo(ctx->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp,
                      NULL) == CL_SUCCESS &&
      (fp & CL_FP_DENORM) && used < len)
    used += (size_t)snprintf(out + used, len - used, " -DWF_DENORMS=1");
  /* The work-group (local-memory) kernel is compiled only where the entry
   * picks it. */
  const cm_tuning *t = &ctx->tuning;
  if (gemm && t->local_kernel && used < len)
    snprintf(out + used, len - used,
             " -DLM_BM=%d -DLM_NP=%d -DLM_BK=%d -DLM_TM=%d "
             "-DLM_TN=%d",
             t->bm, t->np, t->bk, t->tm, t->tn);
}

static uint64_t program_key(const clmoe_context *ctx, const char *options,
                            const char *source) {
  uint64_t h = 14695981039346656037ull;
  h = fnv1a_str(h, ctx->info.platform_name);
  h = fnv1a_str(h, ctx->info.name);
  h = fnv1a_str(h, ctx->info.version);
  h = fnv1a_str(h, ctx->info.driver_version);
  h = fnv1a_str(h, options);
  return fnv1a_str(h, source);
}

static void cache_path(const clmoe_context *ctx, const char *name, uint64_t key,
                       char *out, size_t len) {
  snprintf(out, len, "%s/%s-%016llx.bin", ctx->cache_dir, name,
           (unsigned long long)key);
}

/* Returns a malloc'ed binary from a valid cache entry, or NULL. */
static unsigned char *cache_load(clmoe_context *ctx, const char *name,
                                 const char *path, uint64_t key, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  cm_cache_header h;
  unsigned char *bin = NULL;
  const char *why = NULL;
  if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, k_magic, 8))
    why = "bad header";
  else if (h.key != key)
    why = "built for another device, driver or source";
  else if (h.binary_size == 0 || h.binary_size > (256u << 20))
    why = "implausible size";
  else if (!(bin = malloc(h.binary_size)))
    why = "out of host memory";
  else if (fread(bin, 1, h.binary_size, f) != h.binary_size || fgetc(f) != EOF)
    why = "truncated or oversized";
  else if (fnv1a(14695981039346656037ull, bin, h.binary_size) != h.binary_hash)
    why = "checksum mismatch";
  fclose(f);
  if (why) {
    free(bin);
    cm_log(ctx, CLMOE_LOG_WARNING,
           "program %s: cache entry rejected (%s): %s; rebuilding", name, why,
           path);
    return NULL;
  }
  *size = h.binary_size;
  return bin;
}

static void cache_store(clmoe_context *ctx, const char *name, const char *path,
                        uint64_t key, cl_program prog) {
  size_t size = 0;
  if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size,
                       NULL) != CL_SUCCESS ||
      size == 0)
    return;
  unsigned char *bin = malloc(size);
  if (!bin)
    return;
  unsigned char *bins[1] = {bin};
  if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) !=
      CL_SUCCESS) {
    free(bin);
    return;
  }
  cm_cache_header h;
  memcpy(h.magic, k_magic, 8);
  h.key = key;
  h.binary_size = size;
  h.binary_hash = fnv1a(14695981039346656037ull, bin, size);
  /* Write to a private name and rename, so concurrent processes never see a
   * half-written entry. */
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
  FILE *f = (make_dirs(ctx->cache_dir) == 0) ? fopen(tmp, "wb") : NULL;
  int ok =
      f && fwrite(&h, sizeof h, 1, f) == 1 && fwrite(bin, 1, size, f) == size;
  if (f)
    ok = (fclose(f) == 0) && ok;
  if (ok && rename(tmp, path) == 0)
    cm_log(ctx, CLMOE_LOG_DEBUG, "program %s: cached at %s", name, path);
  else {
    remove(tmp);
    cm_log(ctx, CLMOE_LOG_WARNING, "program %s: could not write cache %s", name,
           path);
  }
  free(bin);
}

static clmoe_status build_failed(clmoe_context *ctx, cl_program prog,
                                 const char *name, cl_int err) {
  size_t len = 0;
  clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len);
  char *log = malloc(len + 1);
  if (log) {
    log[0] = 0;
    clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, len, log,
                          NULL);
    log[len] = 0;
  }
  clmoe_status st =
      cm_fail(CLMOE_ERROR_BUILD_FAILED,
              "clBuildProgram(%s) failed: %s (%d); build log:\n%s", name,
              cm_cl_error_name(err), (int)err, log ? log : "(unavailable)");
  free(log);
  return st;
}

static char *concat_sources(const cm_program_spec *spec) {
  size_t total = 1;
  for (int i = 0; spec->sources[i]; ++i) {
    const char *s = find_source(spec->sources[i]);
    if (!s)
      return NULL;
    total += strlen(s) + 1;
  }
  char *all = malloc(total);
  if (!all)
    return NULL;
  all[0] = 0;
  for (int i = 0; spec->sources[i]; ++i) {
    strcat(all, find_source(spec->sources[i]));
    strcat(all, "\n");
  }
  return all;
}

static clmoe_status build_program(clmoe_context *ctx, cm_program_id id,
                                  cl_program *out) {
  const cm_program_spec *spec = &k_programs[id];
  char *source = concat_sources(spec);
  if (!source)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "program %s: out of host memory assembling its source",
                   spec->name);
  char options[1024];
  program_options(ctx, id, options, sizeof options);
  uint64_t key = program_key(ctx, options, source);
  char path[1100] = "";
  cl_program prog = NULL;
  cl_int err;
  if (ctx->cache_dir[0]) {
    cache_path(ctx, spec->name, key, path, sizeof path);
    size_t size = 0;
    unsigned char *bin = cache_load(ctx, spec->name, path, key, &size);
    if (bin) {
      const unsigned char *bins[1] = {bin};
      cl_int bin_status = CL_SUCCESS;
      prog = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &size,
                                       bins, &bin_status, &err);
      free(bin);
      if (prog && (err != CL_SUCCESS || bin_status != CL_SUCCESS ||
                   clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL) !=
                       CL_SUCCESS)) {
        clReleaseProgram(prog);
        prog = NULL;
      }
      if (prog)
        cm_log(ctx, CLMOE_LOG_INFO, "program %s: loaded from cache %s",
               spec->name, path);
      else
        cm_log(ctx, CLMOE_LOG_WARNING,
               "program %s: cache entry rejected (driver refused the "
               "binary): %s; rebuilding",
               spec->name, path);
    }
  }
  if (!prog) {
    const char *src = source;
    prog = clCreateProgramWithSource(ctx->context, 1, &src, NULL, &err);
    if (!prog) {
      free(source);
      return cm_cl_fail(err, "clCreateProgramWithSource");
    }
    err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
      clmoe_status st = build_failed(ctx, prog, spec->name, err);
      clReleaseProgram(prog);
      free(source);
      return st;
    }
    cm_log(ctx, CLMOE_LOG_INFO, "program %s: built from source", spec->name);
    if (path[0])
      cache_store(ctx, spec->name, path, key, prog);
  }
  free(source);
  *out = prog;
  return CLMOE_SUCCESS;
}

clmoe_status cm_get_program(clmoe_context *ctx, cm_program_id id,
                            cl_program *out) {
  clmoe_status st = CLMOE_SUCCESS;
  pthread_mutex_lock(&ctx->lock);
  if (!ctx->programs[id])
    st = build_program(ctx, id, &ctx->programs[id]);
  *out = ctx->programs[id];
  pthread_mutex_unlock(&ctx->lock);
  return st;
}

clmoe_status cm_create_kernel(clmoe_context *ctx, cm_program_id id,
                              const char *name, cl_kernel *out) {
  cl_program prog;
  clmoe_status st = cm_get_program(ctx, id, &prog);
  if (st)
    return st;
  cl_int err;
  *out = clCreateKernel(prog, name, &err);
  if (!*out) {
    char what[128];
    snprintf(what, sizeof what, "clCreateKernel(%s)", name);
    return cm_cl_fail(err, what);
  }
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_context_build_programs(clmoe_context *ctx) {
  if (!ctx)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_context_build_programs: ctx is NULL");
  for (int i = 0; i < CM_PROG_COUNT; ++i) {
    cl_program prog;
    clmoe_status st = cm_get_program(ctx, (cm_program_id)i, &prog);
    if (st)
      return st;
  }
  return CLMOE_SUCCESS;
}
