/* Streaming read bandwidth: every work-item sums a contiguous chunk with
 * 16-wide vector loads (the grouped kernel's access pattern), so the figure
 * is what a weight-streaming kernel can reach on this device. */
#define CL_TARGET_OPENCL_VERSION 120
#include "bandwidth.h"

#include <CL/cl.h>

#include "bench_common.h"

/* Four independent accumulators, so the adds never limit the loads. */
static const char *k_source =
    "kernel void stream_read(global const float16 *a, long chunk,\n"
    "                        global float *out) {\n"
    "  size_t i = get_global_id(0);\n"
    "  global const float16 *p = a + i * chunk;\n"
    "  float16 s0 = 0, s1 = 0, s2 = 0, s3 = 0;\n"
    "  for (long j = 0; j < chunk; j += 4) {\n"
    "    s0 += p[j];\n"
    "    s1 += p[j + 1];\n"
    "    s2 += p[j + 2];\n"
    "    s3 += p[j + 3];\n"
    "  }\n"
    "  float16 s = s0 + s1 + s2 + s3;\n"
    "  out[i] = s.s0 + s.s1 + s.s2 + s.s3 + s.s4 + s.s5 + s.s6 + s.s7 +\n"
    "           s.s8 + s.s9 + s.sa + s.sb + s.sc + s.sd + s.se + s.sf;\n"
    "}\n";

static void check_cl(cl_int err, const char *what) {
  if (err != CL_SUCCESS) {
    fprintf(stderr, "bandwidth: %s failed (%d)\n", what, (int)err);
    exit(1);
  }
}

double bench_read_bandwidth(clmoe_context *ctx, int mib, int runs) {
  cl_context c;
  cl_device_id dev;
  cl_command_queue q;
  die(clmoe_context_get_cl(ctx, &c, &dev, &q), "bandwidth context");
  cl_int err;
  cl_program prog = clCreateProgramWithSource(c, 1, &k_source, NULL, &err);
  check_cl(err, "clCreateProgramWithSource");
  check_cl(clBuildProgram(prog, 1, &dev, "-cl-std=CL1.2", NULL, NULL),
           "clBuildProgram");
  cl_kernel k = clCreateKernel(prog, "stream_read", &err);
  check_cl(err, "clCreateKernel");
  size_t bytes = (size_t)mib << 20, items = 1024;
  cl_long chunk = (cl_long)(bytes / 64 / items); /* float16 = 64 bytes */
  cl_mem a = clCreateBuffer(c, CL_MEM_READ_ONLY, bytes, NULL, &err);
  check_cl(err, "clCreateBuffer");
  cl_mem out = clCreateBuffer(c, CL_MEM_WRITE_ONLY, items * 4, NULL, &err);
  check_cl(err, "clCreateBuffer");
  const cl_int zero = 0;
  check_cl(clEnqueueFillBuffer(q, a, &zero, 4, 0, bytes, 0, NULL, NULL),
           "clEnqueueFillBuffer");
  check_cl(clSetKernelArg(k, 0, sizeof a, &a), "clSetKernelArg");
  check_cl(clSetKernelArg(k, 1, sizeof chunk, &chunk), "clSetKernelArg");
  check_cl(clSetKernelArg(k, 2, sizeof out, &out), "clSetKernelArg");
  /* One work-item per work-group on CPU devices (as the grouped kernel runs
   * there); the driver's choice elsewhere. */
  cl_device_type type = 0;
  clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  size_t one = 1, *local = (type & CL_DEVICE_TYPE_CPU) ? &one : NULL;
  double samples[64];
  for (int r = -1; r < runs; ++r) {
    clFinish(q);
    double t0 = now_ms();
    check_cl(clEnqueueNDRangeKernel(q, k, 1, NULL, &items, local, 0, NULL,
                                    NULL),
             "clEnqueueNDRangeKernel");
    clFinish(q);
    if (r >= 0)
      samples[r] = now_ms() - t0;
  }
  clReleaseMemObject(a);
  clReleaseMemObject(out);
  clReleaseKernel(k);
  clReleaseProgram(prog);
  /* The best run: the bandwidth the device can give, where a shared
   * machine's other tenants slow some runs down. */
  double best = samples[0];
  for (int r = 1; r < runs; ++r)
    best = samples[r] < best ? samples[r] : best;
  return (double)(items * (size_t)chunk * 64) / (best * 1e6);
}
