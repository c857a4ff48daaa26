/* The one layer between the library and OpenCL, CLBlast and the host
 * allocator. In release builds it is empty: calls go straight to the
 * runtime. In the fault-injection build (CLMOE_FAULT_INJECTION, tests only)
 * every call is redirected to a wrapper in fault_injection.c that counts it by
 * kind and call site, can fail it on purpose, and counts live OpenCL objects.
 * Included last by runtime.h, after every header that declares these
 * functions, so only the library's own calls are redirected. */
#ifndef CLMOE_CALL_LAYER_H
#define CLMOE_CALL_LAYER_H

#ifdef CLMOE_FAULT_INJECTION
#include <clblast_c.h>
#include <stdlib.h>

#define CM_STR_(x) #x
#define CM_STR(x) CM_STR_(x)
#define CM_SITE __FILE__ ":" CM_STR(__LINE__)

/* Every wrapper: (site, the call's own arguments). */
#define CM_FI_CALLS(X)                                                         \
  X(cl_int, clGetPlatformIDs, (cl_uint a, cl_platform_id * b, cl_uint * c),    \
    (a, b, c))                                                                 \
  X(cl_int, clGetPlatformInfo,                                                 \
    (cl_platform_id a, cl_platform_info b, size_t c, void *d, size_t *e),      \
    (a, b, c, d, e))                                                           \
  X(cl_int, clGetDeviceIDs,                                                    \
    (cl_platform_id a, cl_device_type b, cl_uint c, cl_device_id * d,          \
     cl_uint * e),                                                             \
    (a, b, c, d, e))                                                           \
  X(cl_int, clGetDeviceInfo,                                                   \
    (cl_device_id a, cl_device_info b, size_t c, void *d, size_t *e),          \
    (a, b, c, d, e))                                                           \
  X(cl_int, clGetCommandQueueInfo,                                             \
    (cl_command_queue a, cl_command_queue_info b, size_t c, void *d,           \
     size_t *e),                                                               \
    (a, b, c, d, e))                                                           \
  X(cl_int, clGetMemObjectInfo,                                                \
    (cl_mem a, cl_mem_info b, size_t c, void *d, size_t *e), (a, b, c, d, e))  \
  X(cl_int, clGetProgramInfo,                                                  \
    (cl_program a, cl_program_info b, size_t c, void *d, size_t *e),           \
    (a, b, c, d, e))                                                           \
  X(cl_int, clGetProgramBuildInfo,                                             \
    (cl_program a, cl_device_id b, cl_program_build_info c, size_t d, void *e, \
     size_t *f),                                                               \
    (a, b, c, d, e, f))                                                        \
  X(cl_int, clBuildProgram,                                                    \
    (cl_program a, cl_uint b, const cl_device_id *c, const char *d,            \
     void(CL_CALLBACK * e)(cl_program, void *), void *f),                      \
    (a, b, c, d, e, f))                                                        \
  X(cl_int, clSetKernelArg, (cl_kernel a, cl_uint b, size_t c, const void *d), \
    (a, b, c, d))                                                              \
  X(cl_int, clEnqueueNDRangeKernel,                                            \
    (cl_command_queue a, cl_kernel b, cl_uint c, const size_t *d,              \
     const size_t *e, const size_t *f, cl_uint g, const cl_event *h,           \
     cl_event *i),                                                             \
    (a, b, c, d, e, f, g, h, i))                                               \
  X(cl_int, clEnqueueReadBuffer,                                               \
    (cl_command_queue a, cl_mem b, cl_bool c, size_t d, size_t e, void *f,     \
     cl_uint g, const cl_event *h, cl_event *i),                               \
    (a, b, c, d, e, f, g, h, i))                                               \
  X(cl_int, clEnqueueWriteBuffer,                                              \
    (cl_command_queue a, cl_mem b, cl_bool c, size_t d, size_t e,              \
     const void *f, cl_uint g, const cl_event *h, cl_event *i),                \
    (a, b, c, d, e, f, g, h, i))                                               \
  X(cl_int, clEnqueueCopyBuffer,                                               \
    (cl_command_queue a, cl_mem b, cl_mem c, size_t d, size_t e, size_t f,     \
     cl_uint g, const cl_event *h, cl_event *i),                               \
    (a, b, c, d, e, f, g, h, i))                                               \
  X(cl_int, clEnqueueFillBuffer,                                               \
    (cl_command_queue a, cl_mem b, const void *c, size_t d, size_t e,          \
     size_t f, cl_uint g, const cl_event *h, cl_event *i),                     \
    (a, b, c, d, e, f, g, h, i))                                               \
  X(cl_int, clEnqueueMarkerWithWaitList,                                       \
    (cl_command_queue a, cl_uint b, const cl_event *c, cl_event *d),           \
    (a, b, c, d))                                                              \
  X(cl_int, clFinish, (cl_command_queue a), (a))

/* Calls that create or retain an object: counted live on success. */
#define CM_FI_CREATES(X)                                                       \
  X(cl_mem, clCreateBuffer,                                                    \
    (cl_context a, cl_mem_flags b, size_t c, void *d, cl_int *err),            \
    (a, b, c, d, err))                                                         \
  X(cl_kernel, clCreateKernel, (cl_program a, const char *b, cl_int *err),     \
    (a, b, err))                                                               \
  X(cl_program, clCreateProgramWithSource,                                     \
    (cl_context a, cl_uint b, const char **c, const size_t *d, cl_int *err),   \
    (a, b, c, d, err))                                                         \
  X(cl_program, clCreateProgramWithBinary,                                     \
    (cl_context a, cl_uint b, const cl_device_id *c, const size_t *d,          \
     const unsigned char **e, cl_int *f, cl_int *err),                         \
    (a, b, c, d, e, f, err))                                                   \
  X(cl_context, clCreateContext,                                               \
    (const cl_context_properties *a, cl_uint b, const cl_device_id *c,         \
     void(CL_CALLBACK * d)(const char *, const void *, size_t, void *),        \
     void *e, cl_int *err),                                                    \
    (a, b, c, d, e, err))                                                      \
  X(cl_command_queue, clCreateCommandQueue,                                    \
    (cl_context a, cl_device_id b, cl_command_queue_properties c,              \
     cl_int * err),                                                            \
    (a, b, c, err))

#define CM_FI_RETAINS(X)                                                       \
  X(clRetainContext, cl_context)                                               \
  X(clRetainCommandQueue, cl_command_queue) X(clRetainMemObject, cl_mem)
#define CM_FI_RELEASES(X)                                                      \
  X(clReleaseContext, cl_context)                                              \
  X(clReleaseCommandQueue, cl_command_queue)                                   \
  X(clReleaseMemObject, cl_mem)                                                \
  X(clReleaseKernel, cl_kernel) X(clReleaseProgram, cl_program)

#define CM_FI_DECLARE(ret, name, params, args)                                 \
  ret cm_fi_##name(const char *site, CM_FI_UNPAREN params);
#define CM_FI_UNPAREN(...) __VA_ARGS__
#define CM_FI_DECLARE_OBJ(name, type)                                          \
  cl_int cm_fi_##name(const char *site, type obj);
CM_FI_CALLS(CM_FI_DECLARE)
CM_FI_CREATES(CM_FI_DECLARE)
CM_FI_RETAINS(CM_FI_DECLARE_OBJ)
CM_FI_RELEASES(CM_FI_DECLARE_OBJ)
CLBlastStatusCode cm_fi_CLBlastSgemm(const char *site, CLBlastLayout layout,
                                     CLBlastTranspose a_transpose,
                                     CLBlastTranspose b_transpose, size_t m,
                                     size_t n, size_t k, float alpha, cl_mem a,
                                     size_t a_off, size_t a_ld, cl_mem b,
                                     size_t b_off, size_t b_ld, float beta,
                                     cl_mem c, size_t c_off, size_t c_ld,
                                     cl_command_queue *queue, cl_event *event);
CLBlastStatusCode
cm_fi_CLBlastOverrideParameters(const char *site, cl_device_id device,
                                const char *kernel_name,
                                CLBlastPrecision precision, size_t num,
                                const char **names, const size_t *values);
void *cm_fi_malloc(const char *site, size_t n);
void *cm_fi_calloc(const char *site, size_t n, size_t size);
void *cm_fi_realloc(const char *site, void *p, size_t n);

#define clGetPlatformIDs(...) cm_fi_clGetPlatformIDs(CM_SITE, __VA_ARGS__)
#define clGetPlatformInfo(...) cm_fi_clGetPlatformInfo(CM_SITE, __VA_ARGS__)
#define clGetDeviceIDs(...) cm_fi_clGetDeviceIDs(CM_SITE, __VA_ARGS__)
#define clGetDeviceInfo(...) cm_fi_clGetDeviceInfo(CM_SITE, __VA_ARGS__)
#define clGetCommandQueueInfo(...)                                             \
  cm_fi_clGetCommandQueueInfo(CM_SITE, __VA_ARGS__)
#define clGetMemObjectInfo(...) cm_fi_clGetMemObjectInfo(CM_SITE, __VA_ARGS__)
#define clGetProgramInfo(...) cm_fi_clGetProgramInfo(CM_SITE, __VA_ARGS__)
#define clGetProgramBuildInfo(...)                                             \
  cm_fi_clGetProgramBuildInfo(CM_SITE, __VA_ARGS__)
#define clBuildProgram(...) cm_fi_clBuildProgram(CM_SITE, __VA_ARGS__)
#define clSetKernelArg(...) cm_fi_clSetKernelArg(CM_SITE, __VA_ARGS__)
#define clEnqueueNDRangeKernel(...)                                            \
  cm_fi_clEnqueueNDRangeKernel(CM_SITE, __VA_ARGS__)
#define clEnqueueReadBuffer(...) cm_fi_clEnqueueReadBuffer(CM_SITE, __VA_ARGS__)
#define clEnqueueWriteBuffer(...)                                              \
  cm_fi_clEnqueueWriteBuffer(CM_SITE, __VA_ARGS__)
#define clEnqueueCopyBuffer(...) cm_fi_clEnqueueCopyBuffer(CM_SITE, __VA_ARGS__)
#define clEnqueueFillBuffer(...) cm_fi_clEnqueueFillBuffer(CM_SITE, __VA_ARGS__)
#define clEnqueueMarkerWithWaitList(...)                                       \
  cm_fi_clEnqueueMarkerWithWaitList(CM_SITE, __VA_ARGS__)
#define clFinish(...) cm_fi_clFinish(CM_SITE, __VA_ARGS__)
#define clCreateBuffer(...) cm_fi_clCreateBuffer(CM_SITE, __VA_ARGS__)
#define clCreateKernel(...) cm_fi_clCreateKernel(CM_SITE, __VA_ARGS__)
#define clCreateProgramWithSource(...)                                         \
  cm_fi_clCreateProgramWithSource(CM_SITE, __VA_ARGS__)
#define clCreateProgramWithBinary(...)                                         \
  cm_fi_clCreateProgramWithBinary(CM_SITE, __VA_ARGS__)
#define clCreateContext(...) cm_fi_clCreateContext(CM_SITE, __VA_ARGS__)
#define clCreateCommandQueue(...)                                              \
  cm_fi_clCreateCommandQueue(CM_SITE, __VA_ARGS__)
#define clRetainContext(x) cm_fi_clRetainContext(CM_SITE, x)
#define clRetainCommandQueue(x) cm_fi_clRetainCommandQueue(CM_SITE, x)
#define clRetainMemObject(x) cm_fi_clRetainMemObject(CM_SITE, x)
#define clReleaseContext(x) cm_fi_clReleaseContext(CM_SITE, x)
#define clReleaseCommandQueue(x) cm_fi_clReleaseCommandQueue(CM_SITE, x)
#define clReleaseMemObject(x) cm_fi_clReleaseMemObject(CM_SITE, x)
#define clReleaseKernel(x) cm_fi_clReleaseKernel(CM_SITE, x)
#define clReleaseProgram(x) cm_fi_clReleaseProgram(CM_SITE, x)
#define CLBlastSgemm(...) cm_fi_CLBlastSgemm(CM_SITE, __VA_ARGS__)
#define CLBlastOverrideParameters(...)                                         \
  cm_fi_CLBlastOverrideParameters(CM_SITE, __VA_ARGS__)
#define malloc(n) cm_fi_malloc(CM_SITE, n)
#define calloc(n, size) cm_fi_calloc(CM_SITE, n, size)
#define realloc(p, n) cm_fi_realloc(CM_SITE, p, n)
#endif /* CLMOE_FAULT_INJECTION */

#endif /* CLMOE_CALL_LAYER_H */
