/* Fault-injection wrappers (see call_layer.h); compiled into the test-only
 * library libclmoe_fi. A wrapper counts its call by kind and site, fails it
 * when it is the chosen one (once: a transient fault), and tracks live
 * OpenCL objects. The state is process-wide, which is acceptable in a test
 * build only; a mutex keeps it consistent. */
#include "runtime/runtime.h"

#ifdef CLMOE_FAULT_INJECTION
#include <string.h>

#include "runtime/fault_injection.h"

enum { MAX_KINDS = 64, MAX_SITES = 1024 };

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_target[64];
static int64_t g_nth, g_any;
static struct {
  const char *call;
  int64_t count;
} g_kinds[MAX_KINDS];
static struct {
  const char *site, *call;
  int32_t failed;
  int64_t hits; /* since the last clmoe_test_fault_inject */
} g_sites[MAX_SITES];
static int32_t g_num_sites;
static const char *g_injected, *g_injected_site;
static int64_t g_live;

/* Counts a call; returns 1 when it must fail. */
static int fi_fail(const char *call, const char *site) {
  pthread_mutex_lock(&g_lock);
  int s = 0;
  while (s < g_num_sites && strcmp(g_sites[s].site, site))
    ++s;
  if (s == g_num_sites && s < MAX_SITES) {
    g_sites[s].site = site;
    g_sites[s].call = call;
    ++g_num_sites;
  }
  if (s < MAX_SITES)
    ++g_sites[s].hits;
  int k = 0;
  while (k < MAX_KINDS && g_kinds[k].call && strcmp(g_kinds[k].call, call))
    ++k;
  int64_t n = 0;
  if (k < MAX_KINDS) {
    g_kinds[k].call = call;
    n = ++g_kinds[k].count;
  }
  ++g_any;
  int hit = g_nth > 0 && !g_injected &&
            (strcmp(g_target, "any") ? !strcmp(g_target, call) && n == g_nth
                                     : g_any == g_nth);
  if (hit) {
    g_injected = call;
    g_injected_site = site;
    if (s < MAX_SITES)
      g_sites[s].failed = 1;
  }
  pthread_mutex_unlock(&g_lock);
  return hit;
}

static void fi_live(int delta) {
  pthread_mutex_lock(&g_lock);
  g_live += delta;
  pthread_mutex_unlock(&g_lock);
}

#define CM_FI_DEFINE(ret, name, params, args)                                  \
  ret cm_fi_##name(const char *site, CM_FI_UNPAREN params) {                   \
    if (fi_fail(#name, site))                                                  \
      return CL_OUT_OF_RESOURCES;                                              \
    return (name)args;                                                         \
  }
#define CM_FI_DEFINE_CREATE(ret, name, params, args)                           \
  ret cm_fi_##name(const char *site, CM_FI_UNPAREN params) {                   \
    if (fi_fail(#name, site)) {                                                \
      if (err)                                                                 \
        *err = CL_OUT_OF_RESOURCES;                                            \
      return NULL;                                                             \
    }                                                                          \
    ret obj = (name)args;                                                      \
    if (obj)                                                                   \
      fi_live(1);                                                              \
    return obj;                                                                \
  }
#define CM_FI_DEFINE_RETAIN(name, type)                                        \
  cl_int cm_fi_##name(const char *site, type obj) {                            \
    if (fi_fail(#name, site))                                                  \
      return CL_OUT_OF_RESOURCES;                                              \
    cl_int e = (name)(obj);                                                    \
    if (e == CL_SUCCESS)                                                       \
      fi_live(1);                                                              \
    return e;                                                                  \
  }
/* Releases never fail: the library cannot do anything about it. */
#define CM_FI_DEFINE_RELEASE(name, type)                                       \
  cl_int cm_fi_##name(const char *site, type obj) {                            \
    (void)site;                                                                \
    cl_int e = (name)(obj);                                                    \
    if (e == CL_SUCCESS)                                                       \
      fi_live(-1);                                                             \
    return e;                                                                  \
  }

CM_FI_CALLS(CM_FI_DEFINE)
CM_FI_CREATES(CM_FI_DEFINE_CREATE)
CM_FI_RETAINS(CM_FI_DEFINE_RETAIN)
CM_FI_RELEASES(CM_FI_DEFINE_RELEASE)

CLBlastStatusCode cm_fi_CLBlastSgemm(const char *site, CLBlastLayout layout,
                                     CLBlastTranspose a_transpose,
                                     CLBlastTranspose b_transpose, size_t m,
                                     size_t n, size_t k, float alpha, cl_mem a,
                                     size_t a_off, size_t a_ld, cl_mem b,
                                     size_t b_off, size_t b_ld, float beta,
                                     cl_mem c, size_t c_off, size_t c_ld,
                                     cl_command_queue *queue, cl_event *event) {
  if (fi_fail("CLBlastSgemm", site))
    return CLBlastOpenCLOutOfResources;
  return (CLBlastSgemm)(layout, a_transpose, b_transpose, m, n, k, alpha, a,
                        a_off, a_ld, b, b_off, b_ld, beta, c, c_off, c_ld,
                        queue, event);
}

CLBlastStatusCode
cm_fi_CLBlastOverrideParameters(const char *site, cl_device_id device,
                                const char *kernel_name,
                                CLBlastPrecision precision, size_t num,
                                const char **names, const size_t *values) {
  if (fi_fail("CLBlastOverrideParameters", site))
    return CLBlastInvalidOverrideKernel;
  return (CLBlastOverrideParameters)(device, kernel_name, precision, num, names,
                                     values);
}

void *cm_fi_malloc(const char *site, size_t n) {
  return fi_fail("malloc", site) ? NULL : (malloc)(n);
}

void *cm_fi_calloc(const char *site, size_t n, size_t size) {
  return fi_fail("calloc", site) ? NULL : (calloc)(n, size);
}

void *cm_fi_realloc(const char *site, void *p, size_t n) {
  return fi_fail("realloc", site) ? NULL : (realloc)(p, n);
}

void clmoe_test_fault_inject(const char *call, int64_t nth) {
  pthread_mutex_lock(&g_lock);
  snprintf(g_target, sizeof g_target, "%s", call ? call : "any");
  g_nth = nth;
  g_any = 0;
  for (int k = 0; k < MAX_KINDS; ++k)
    g_kinds[k].count = 0;
  for (int i = 0; i < g_num_sites; ++i)
    g_sites[i].hits = 0;
  g_injected = g_injected_site = NULL;
  pthread_mutex_unlock(&g_lock);
}

int64_t clmoe_test_fault_calls(const char *call) {
  int64_t n = 0;
  pthread_mutex_lock(&g_lock);
  if (!call || !strcmp(call, "any"))
    n = g_any;
  else
    for (int k = 0; k < MAX_KINDS && g_kinds[k].call; ++k)
      if (!strcmp(g_kinds[k].call, call))
        n = g_kinds[k].count;
  pthread_mutex_unlock(&g_lock);
  return n;
}

const char *clmoe_test_fault_injected(const char **site) {
  pthread_mutex_lock(&g_lock);
  const char *call = g_injected;
  if (site)
    *site = g_injected_site;
  pthread_mutex_unlock(&g_lock);
  return call;
}

int64_t clmoe_test_live_objects(void) {
  pthread_mutex_lock(&g_lock);
  int64_t n = g_live;
  pthread_mutex_unlock(&g_lock);
  return n;
}

int32_t clmoe_test_sites_seen(void) {
  pthread_mutex_lock(&g_lock);
  int32_t n = g_num_sites;
  pthread_mutex_unlock(&g_lock);
  return n;
}

const char *clmoe_test_site(int32_t i, int32_t *failed, int64_t *hits) {
  pthread_mutex_lock(&g_lock);
  const char *site = i >= 0 && i < g_num_sites ? g_sites[i].site : NULL;
  if (failed)
    *failed = site ? g_sites[i].failed : 0;
  if (hits)
    *hits = site ? g_sites[i].hits : 0;
  pthread_mutex_unlock(&g_lock);
  return site;
}
#else
/* Release builds: the library calls the runtime directly. */
typedef int cm_fault_injection_unused;
#endif
