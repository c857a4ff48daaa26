/* Status names, the thread-local error detail and OpenCL error mapping. */
#include <stdio.h>
#include <string.h>

#include "runtime/runtime.h"

static _Thread_local char tls_detail[4096];

const char *clmoe_status_string(clmoe_status status) {
  switch (status) {
  case CLMOE_SUCCESS:
    return "CLMOE_SUCCESS";
  case CLMOE_ERROR_INVALID_ARGUMENT:
    return "CLMOE_ERROR_INVALID_ARGUMENT";
  case CLMOE_ERROR_NULL_POINTER:
    return "CLMOE_ERROR_NULL_POINTER";
  case CLMOE_ERROR_INVALID_STRUCT_SIZE:
    return "CLMOE_ERROR_INVALID_STRUCT_SIZE";
  case CLMOE_ERROR_SHAPE_MISMATCH:
    return "CLMOE_ERROR_SHAPE_MISMATCH";
  case CLMOE_ERROR_DTYPE_MISMATCH:
    return "CLMOE_ERROR_DTYPE_MISMATCH";
  case CLMOE_ERROR_DEVICE_NOT_FOUND:
    return "CLMOE_ERROR_DEVICE_NOT_FOUND";
  case CLMOE_ERROR_OPENCL:
    return "CLMOE_ERROR_OPENCL";
  case CLMOE_ERROR_BUILD_FAILED:
    return "CLMOE_ERROR_BUILD_FAILED";
  case CLMOE_ERROR_OUT_OF_HOST_MEMORY:
    return "CLMOE_ERROR_OUT_OF_HOST_MEMORY";
  case CLMOE_ERROR_OUT_OF_DEVICE_MEMORY:
    return "CLMOE_ERROR_OUT_OF_DEVICE_MEMORY";
  case CLMOE_ERROR_NONFINITE_INPUT:
    return "CLMOE_ERROR_NONFINITE_INPUT";
  case CLMOE_ERROR_TOO_LARGE:
    return "CLMOE_ERROR_TOO_LARGE";
  case CLMOE_ERROR_UNSUPPORTED:
    return "CLMOE_ERROR_UNSUPPORTED";
  case CLMOE_ERROR_CLBLAST:
    return "CLMOE_ERROR_CLBLAST";
  case CLMOE_ERROR_CONTEXT_MISMATCH:
    return "CLMOE_ERROR_CONTEXT_MISMATCH";
  case CLMOE_ERROR_IO:
    return "CLMOE_ERROR_IO";
  case CLMOE_ERROR_BAD_FILE:
    return "CLMOE_ERROR_BAD_FILE";
  case CLMOE_ERROR_NOT_FOUND:
    return "CLMOE_ERROR_NOT_FOUND";
  case CLMOE_ERROR_MPI:
    return "CLMOE_ERROR_MPI";
  default:
    return "CLMOE_UNKNOWN_STATUS";
  }
}

const char *clmoe_last_error_detail(void) { return tls_detail; }

clmoe_status clmoe_set_error_detail(clmoe_status status, const char *detail) {
  snprintf(tls_detail, sizeof tls_detail, "%s", detail ? detail : "");
  return status;
}

clmoe_status cm_fail(clmoe_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_detail, sizeof tls_detail, fmt, ap);
  va_end(ap);
  return st;
}

clmoe_status cm_fail_at(clmoe_status st, const char *where, const char *fmt,
                        ...) {
  int n = snprintf(tls_detail, sizeof tls_detail, "%s: ", where);
  size_t used = n > 0 && (size_t)n < sizeof tls_detail ? (size_t)n : 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_detail + used, sizeof tls_detail - used, fmt, ap);
  va_end(ap);
  return st;
}

const char *cm_cl_error_name(cl_int err) {
  switch (err) {
#define CM_CASE(x)                                                             \
  case x:                                                                      \
    return #x;
    CM_CASE(CL_SUCCESS)
    CM_CASE(CL_DEVICE_NOT_FOUND)
    CM_CASE(CL_DEVICE_NOT_AVAILABLE)
    CM_CASE(CL_COMPILER_NOT_AVAILABLE)
    CM_CASE(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    CM_CASE(CL_OUT_OF_RESOURCES)
    CM_CASE(CL_OUT_OF_HOST_MEMORY)
    CM_CASE(CL_BUILD_PROGRAM_FAILURE)
    CM_CASE(CL_INVALID_VALUE)
    CM_CASE(CL_INVALID_DEVICE)
    CM_CASE(CL_INVALID_CONTEXT)
    CM_CASE(CL_INVALID_COMMAND_QUEUE)
    CM_CASE(CL_INVALID_MEM_OBJECT)
    CM_CASE(CL_INVALID_BINARY)
    CM_CASE(CL_INVALID_BUILD_OPTIONS)
    CM_CASE(CL_INVALID_PROGRAM)
    CM_CASE(CL_INVALID_PROGRAM_EXECUTABLE)
    CM_CASE(CL_INVALID_KERNEL_NAME)
    CM_CASE(CL_INVALID_KERNEL)
    CM_CASE(CL_INVALID_ARG_INDEX)
    CM_CASE(CL_INVALID_ARG_VALUE)
    CM_CASE(CL_INVALID_ARG_SIZE)
    CM_CASE(CL_INVALID_KERNEL_ARGS)
    CM_CASE(CL_INVALID_WORK_DIMENSION)
    CM_CASE(CL_INVALID_WORK_GROUP_SIZE)
    CM_CASE(CL_INVALID_WORK_ITEM_SIZE)
    CM_CASE(CL_INVALID_GLOBAL_OFFSET)
    CM_CASE(CL_INVALID_EVENT_WAIT_LIST)
    CM_CASE(CL_INVALID_EVENT)
    CM_CASE(CL_INVALID_BUFFER_SIZE)
    CM_CASE(CL_INVALID_GLOBAL_WORK_SIZE)
    CM_CASE(CL_INVALID_PLATFORM)
    CM_CASE(CL_INVALID_DEVICE_TYPE)
    CM_CASE(CL_INVALID_QUEUE_PROPERTIES)
    CM_CASE(CL_INVALID_OPERATION)
    CM_CASE(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    CM_CASE(CL_MISALIGNED_SUB_BUFFER_OFFSET)
#undef CM_CASE
  case -1001:
    return "CL_PLATFORM_NOT_FOUND_KHR";
  default:
    return "CL_UNKNOWN_ERROR";
  }
}

clmoe_status cm_cl_fail(cl_int err, const char *what) {
  clmoe_status st = CLMOE_ERROR_OPENCL;
  if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
      err == CL_INVALID_BUFFER_SIZE)
    st = CLMOE_ERROR_OUT_OF_DEVICE_MEMORY;
  else if (err == CL_OUT_OF_HOST_MEMORY)
    st = CLMOE_ERROR_OUT_OF_HOST_MEMORY;
  return cm_fail(st, "%s failed: %s (%d)", what, cm_cl_error_name(err),
                 (int)err);
}

clmoe_status cm_check_struct(const void *desc, size_t min_size,
                             const char *what) {
  if (!desc)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "%s is NULL", what);
  size_t size = *(const size_t *)desc;
  /* An upper bound catches uninitialised structs (garbage sizes). */
  if (size < min_size || size > (1u << 16))
    return cm_fail(CLMOE_ERROR_INVALID_STRUCT_SIZE,
                   "%s->struct_size is %zu; expected at least %zu (call the "
                   "matching *_init function first)",
                   what, size, min_size);
  return CLMOE_SUCCESS;
}

void cm_init_struct(void *desc, const void *defaults, size_t full,
                    size_t size) {
  if (!desc)
    return;
  if (size > full)
    size = full;
  memcpy(desc, defaults, size);
  if (size >= sizeof size) /* struct_size is every descriptor's first field */
    memcpy(desc, &size, sizeof size);
}
