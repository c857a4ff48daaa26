/* Device enumeration and the CLMOE_DEVICE selection rules. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

typedef struct cm_device_entry {
  cl_platform_id platform;
  cl_device_id device;
  cl_device_type type;
  char platform_name[256];
  char device_name[256];
} cm_device_entry;

enum { CM_MAX_DEVICES = 64 };

static clmoe_status list_devices(cm_device_entry *out, int *count) {
  cl_platform_id platforms[16];
  cl_uint np = 0;
  *count = 0;
  cl_int err = clGetPlatformIDs(16, platforms, &np);
  if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || np == 0)
    return CLMOE_SUCCESS;
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clGetPlatformIDs");
  if (np > 16)
    np = 16;
  for (cl_uint p = 0; p < np; ++p) {
    cl_device_id devs[CM_MAX_DEVICES];
    cl_uint nd = 0;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, CM_MAX_DEVICES, devs,
                       &nd) != CL_SUCCESS)
      continue; /* a platform without devices is not an error */
    if (nd > CM_MAX_DEVICES)
      nd = CM_MAX_DEVICES;
    for (cl_uint d = 0; d < nd && *count < CM_MAX_DEVICES; ++d) {
      cm_device_entry *e = &out[(*count)++];
      memset(e, 0, sizeof *e);
      e->platform = platforms[p];
      e->device = devs[d];
      clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof e->type, &e->type, NULL);
      clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME,
                        sizeof e->platform_name - 1, e->platform_name, NULL);
      clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof e->device_name - 1,
                      e->device_name, NULL);
    }
  }
  return CLMOE_SUCCESS;
}

int cm_contains_nocase(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (const char *h = hay; *h; ++h) {
    size_t i = 0;
    while (i < n && h[i] &&
           tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
      ++i;
    if (i == n)
      return 1;
  }
  return n == 0;
}

static int first_of_type(const cm_device_entry *d, int n, cl_device_type t) {
  for (int i = 0; i < n; ++i)
    if (d[i].type & t)
      return i;
  return -1;
}

static int parse_index(const char *s, int *out) {
  if (!*s)
    return 0;
  long v = 0;
  for (const char *c = s; *c; ++c) {
    if (!isdigit((unsigned char)*c) || v > 100000)
      return 0;
    v = v * 10 + (*c - '0');
  }
  *out = (int)v;
  return 1;
}

static clmoe_status not_found(const cm_device_entry *d, int n,
                              const char *why) {
  char list[2048] = "";
  size_t used = 0;
  for (int i = 0; i < n && used < sizeof list; ++i)
    used += (size_t)snprintf(list + used, sizeof list - used, "%s[%d] %s / %s",
                             i ? "; " : "", i, d[i].platform_name,
                             d[i].device_name);
  return cm_fail(CLMOE_ERROR_DEVICE_NOT_FOUND, "%s; visible devices: %s", why,
                 n ? list : "none (no OpenCL platform is installed)");
}

void clmoe_device_choice_init(clmoe_device_choice *choice) {
  if (!choice)
    return;
  memset(choice, 0, sizeof *choice);
  choice->struct_size = sizeof *choice;
  choice->index = -1;
}

clmoe_status clmoe_device_select(const char *selector,
                                 clmoe_device_choice *choice) {
  clmoe_status st = cm_check_struct(choice, sizeof *choice, "choice");
  if (st)
    return st;
  const char *source = "argument";
  if (!selector) {
    selector = getenv("CLMOE_DEVICE");
    source = "CLMOE_DEVICE";
  }
  cm_device_entry devs[CM_MAX_DEVICES];
  int n = 0;
  if ((st = list_devices(devs, &n)))
    return st;
  int pick = -1, index = 0;
  char reason[256];
  if (!selector || !*selector) {
    static const struct {
      cl_device_type type;
      const char *name;
    } order[] = {{CL_DEVICE_TYPE_GPU, "GPU"},
                 {CL_DEVICE_TYPE_ACCELERATOR, "accelerator"},
                 {CL_DEVICE_TYPE_CPU, "CPU"}};
    for (int i = 0; i < 3 && pick < 0; ++i) {
      pick = first_of_type(devs, n, order[i].type);
      snprintf(reason, sizeof reason,
               "default rule (first GPU, else accelerator, else CPU): first "
               "%s device",
               order[i].name);
    }
    if (pick < 0)
      return not_found(devs, n, "no GPU, accelerator or CPU device found");
  } else if (!strcmp(selector, "gpu") || !strcmp(selector, "cpu")) {
    int gpu = selector[0] == 'g';
    pick =
        first_of_type(devs, n, gpu ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_CPU);
    snprintf(reason, sizeof reason, "%s=\"%s\": first %s device", source,
             selector, gpu ? "GPU" : "CPU");
    if (pick < 0) {
      char why[128];
      snprintf(why, sizeof why, "%s=\"%s\" but no %s device exists", source,
               selector, gpu ? "GPU" : "CPU");
      return not_found(devs, n, why);
    }
  } else if (parse_index(selector, &index)) {
    if (index >= n) {
      char why[128];
      snprintf(why, sizeof why, "%s=\"%s\" but only %d device(s) exist", source,
               selector, n);
      return not_found(devs, n, why);
    }
    pick = index;
    snprintf(reason, sizeof reason, "%s=\"%s\": device index %d", source,
             selector, index);
  } else {
    for (int i = 0; i < n && pick < 0; ++i)
      if (cm_contains_nocase(devs[i].device_name, selector) ||
          cm_contains_nocase(devs[i].platform_name, selector))
        pick = i;
    if (pick < 0) {
      char why[256];
      snprintf(why, sizeof why,
               "%s=\"%.100s\" matches no platform or device name", source,
               selector);
      return not_found(devs, n, why);
    }
    snprintf(reason, sizeof reason,
             "%s=\"%.60s\": first device whose platform or device name "
             "contains it",
             source, selector);
  }
  choice->platform = devs[pick].platform;
  choice->device = devs[pick].device;
  choice->index = pick;
  snprintf(choice->reason, sizeof choice->reason, "%s", reason);
  return CLMOE_SUCCESS;
}

static int has_extension(cl_device_id dev, const char *ext) {
  size_t len = 0;
  if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &len) != CL_SUCCESS)
    return 0;
  char *buf = malloc(len + 1);
  if (!buf)
    return 0;
  int found = 0;
  if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, len, buf, NULL) ==
      CL_SUCCESS) {
    buf[len] = 0;
    size_t n = strlen(ext);
    for (char *p = strstr(buf, ext); p && !found; p = strstr(p + 1, ext))
      found = (p == buf || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0);
  }
  free(buf);
  return found;
}

clmoe_status cm_query_device_info(cl_platform_id platform, cl_device_id dev,
                                  clmoe_device_info *info) {
  clmoe_device_info_init(info);
  cl_int err = clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof info->name - 1,
                               info->name, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clGetDeviceInfo(CL_DEVICE_NAME)");
  clGetDeviceInfo(dev, CL_DEVICE_VENDOR, sizeof info->vendor - 1, info->vendor,
                  NULL);
  clGetDeviceInfo(dev, CL_DEVICE_VERSION, sizeof info->version - 1,
                  info->version, NULL);
  clGetDeviceInfo(dev, CL_DRIVER_VERSION, sizeof info->driver_version - 1,
                  info->driver_version, NULL);
  if (platform)
    clGetPlatformInfo(platform, CL_PLATFORM_NAME,
                      sizeof info->platform_name - 1, info->platform_name,
                      NULL);
  cl_device_type type = 0;
  clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  info->type = (type & CL_DEVICE_TYPE_GPU)   ? CLMOE_DEVICE_TYPE_GPU
               : (type & CL_DEVICE_TYPE_CPU) ? CLMOE_DEVICE_TYPE_CPU
               : (type & CL_DEVICE_TYPE_ACCELERATOR)
                   ? CLMOE_DEVICE_TYPE_ACCELERATOR
                   : CLMOE_DEVICE_TYPE_OTHER;
  cl_device_fp_config fp64 = 0;
  clGetDeviceInfo(dev, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64, NULL);
  info->has_fp64 = fp64 != 0 || has_extension(dev, "cl_khr_fp64");
  info->has_fp16 = has_extension(dev, "cl_khr_fp16");
  cl_uint cu = 0;
  clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
  info->compute_units = (int32_t)cu;
  cl_ulong v = 0;
  clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof v, &v, NULL);
  info->global_mem_bytes = v;
  clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof v, &v, NULL);
  info->max_alloc_bytes = v;
  clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof v, &v, NULL);
  info->local_mem_bytes = v;
  return CLMOE_SUCCESS;
}

void clmoe_device_info_init(clmoe_device_info *info) {
  if (!info)
    return;
  memset(info, 0, sizeof *info);
  info->struct_size = sizeof *info;
}
