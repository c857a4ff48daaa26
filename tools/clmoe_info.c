/* clmoe-info: lists the OpenCL platforms and devices clmoe can see, in the
 * order that CLMOE_DEVICE=<n> indexes them, and which one clmoe picks. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>

#include "clmoe/clmoe.h"

static const char *type_name(cl_device_type t) {
  if (t & CL_DEVICE_TYPE_GPU)
    return "GPU";
  if (t & CL_DEVICE_TYPE_ACCELERATOR)
    return "accelerator";
  if (t & CL_DEVICE_TYPE_CPU)
    return "CPU";
  return "other";
}

static void print_choice(const char *label, const char *selector) {
  clmoe_device_choice c;
  clmoe_device_choice_init(&c);
  clmoe_status st = clmoe_device_select(selector, &c);
  if (st)
    printf("%s: none (%s: %s)\n", label, clmoe_status_string(st),
           clmoe_last_error_detail());
  else
    printf("%s: device [%d], because %s\n", label, c.index, c.reason);
}

int main(void) {
  printf("clmoe %s\n", clmoe_version_string());
  cl_platform_id platforms[16];
  cl_uint np = 0;
  if (clGetPlatformIDs(16, platforms, &np) != CL_SUCCESS || np == 0) {
    printf("no OpenCL platform found (is an ICD such as pocl-opencl-icd "
           "installed?)\n");
    return 1;
  }
  int index = 0;
  for (cl_uint p = 0; p < np && p < 16; ++p) {
    char pname[256] = "", pver[256] = "";
    clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME, sizeof pname - 1, pname,
                      NULL);
    clGetPlatformInfo(platforms[p], CL_PLATFORM_VERSION, sizeof pver - 1, pver,
                      NULL);
    printf("platform %u: %s (%s)\n", p, pname, pver);
    cl_device_id devs[64];
    cl_uint nd = 0;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 64, devs, &nd) !=
        CL_SUCCESS)
      nd = 0;
    for (cl_uint d = 0; d < nd && d < 64; ++d, ++index) {
      cl_device_type type = 0;
      clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
      cl_context ctx = clCreateContext(NULL, 1, &devs[d], NULL, NULL, NULL);
      clmoe_context_desc desc;
      clmoe_context_desc_init(&desc);
      desc.cl_context = ctx;
      desc.cl_device = devs[d];
      desc.flags = CLMOE_CONTEXT_NO_DISK_CACHE;
      clmoe_context *mctx = NULL;
      clmoe_device_info info;
      clmoe_device_info_init(&info);
      if (ctx && clmoe_context_create(&desc, &mctx) == CLMOE_SUCCESS)
        clmoe_context_get_device_info(mctx, &info);
      printf("  [%d] %s  (%s)\n", index, info.name[0] ? info.name : "?",
             type_name(type));
      printf("      vendor %s; %s; driver %s\n", info.vendor, info.version,
             info.driver_version);
      printf("      %d compute units, %.1f GiB global memory, max allocation "
             "%.1f GiB, %llu KiB local memory, fp16 %s, fp64 %s\n",
             info.compute_units, info.global_mem_bytes / 1073741824.0,
             info.max_alloc_bytes / 1073741824.0,
             (unsigned long long)(info.local_mem_bytes / 1024),
             info.has_fp16 ? "yes" : "no", info.has_fp64 ? "yes" : "no");
      clmoe_context_destroy(mctx);
      if (ctx)
        clReleaseContext(ctx);
    }
  }
  print_choice("default selection", "");
  const char *env = getenv("CLMOE_DEVICE");
  if (env && *env)
    print_choice("CLMOE_DEVICE selection", NULL);
  else
    printf("CLMOE_DEVICE is not set, so clmoe uses the default selection\n");
  return 0;
}
