/* Pins every public enum value and status name: they are ABI and never
 * change. */
#include "harness.h"

int main(void) {
  static const struct {
    clmoe_status s;
    int v;
    const char *name;
  } statuses[] = {
      {CLMOE_SUCCESS, 0, "CLMOE_SUCCESS"},
      {CLMOE_ERROR_INVALID_ARGUMENT, -1, "CLMOE_ERROR_INVALID_ARGUMENT"},
      {CLMOE_ERROR_NULL_POINTER, -2, "CLMOE_ERROR_NULL_POINTER"},
      {CLMOE_ERROR_INVALID_STRUCT_SIZE, -3, "CLMOE_ERROR_INVALID_STRUCT_SIZE"},
      {CLMOE_ERROR_SHAPE_MISMATCH, -4, "CLMOE_ERROR_SHAPE_MISMATCH"},
      {CLMOE_ERROR_DTYPE_MISMATCH, -5, "CLMOE_ERROR_DTYPE_MISMATCH"},
      {CLMOE_ERROR_DEVICE_NOT_FOUND, -6, "CLMOE_ERROR_DEVICE_NOT_FOUND"},
      {CLMOE_ERROR_OPENCL, -7, "CLMOE_ERROR_OPENCL"},
      {CLMOE_ERROR_BUILD_FAILED, -8, "CLMOE_ERROR_BUILD_FAILED"},
      {CLMOE_ERROR_OUT_OF_HOST_MEMORY, -9, "CLMOE_ERROR_OUT_OF_HOST_MEMORY"},
      {CLMOE_ERROR_OUT_OF_DEVICE_MEMORY, -10,
       "CLMOE_ERROR_OUT_OF_DEVICE_MEMORY"},
      {CLMOE_ERROR_NONFINITE_INPUT, -11, "CLMOE_ERROR_NONFINITE_INPUT"},
      {CLMOE_ERROR_TOO_LARGE, -12, "CLMOE_ERROR_TOO_LARGE"},
      {CLMOE_ERROR_UNSUPPORTED, -13, "CLMOE_ERROR_UNSUPPORTED"},
      {CLMOE_ERROR_CLBLAST, -14, "CLMOE_ERROR_CLBLAST"},
      {CLMOE_ERROR_CONTEXT_MISMATCH, -15, "CLMOE_ERROR_CONTEXT_MISMATCH"},
  };
  for (size_t i = 0; i < sizeof statuses / sizeof *statuses; ++i) {
    CHECK(statuses[i].s == statuses[i].v);
    CHECK(strcmp(clmoe_status_string(statuses[i].s), statuses[i].name) == 0);
  }
  CHECK(strcmp(clmoe_status_string(12345), "CLMOE_UNKNOWN_STATUS") == 0);
  CHECK(clmoe_status_string(-9999) != NULL);
  CHECK(clmoe_last_error_detail() != NULL);

  CHECK(CLMOE_LOG_DEBUG == 0 && CLMOE_LOG_INFO == 1 && CLMOE_LOG_WARNING == 2 &&
        CLMOE_LOG_ERROR == 3);
  CHECK(CLMOE_CONTEXT_NO_DISK_CACHE == 1);
  CHECK(CLMOE_DEVICE_TYPE_OTHER == 0 && CLMOE_DEVICE_TYPE_CPU == 1 &&
        CLMOE_DEVICE_TYPE_GPU == 2 && CLMOE_DEVICE_TYPE_ACCELERATOR == 3);
  CHECK(CLMOE_DTYPE_F32 == 1 && CLMOE_DTYPE_I32 == 2);
  CHECK(CLMOE_MAX_RANK == 4);
  return test_finish("test_enums");
}
