/* Context creation, device selection by every CLMOE_DEVICE form, device
 * queries, interop, and invalid arguments. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"

static void test_default_context(void) {
  clmoe_context *ctx = test_context();
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  CHECK_OK(clmoe_context_get_device_info(ctx, &info));
  CHECK(info.name[0] != 0);
  CHECK(info.vendor[0] != 0);
  CHECK(strncmp(info.version, "OpenCL ", 7) == 0);
  CHECK(info.has_fp16 == 0 || info.has_fp16 == 1);
  CHECK(info.has_fp64 == 0 || info.has_fp64 == 1);
  CHECK(info.max_alloc_bytes > 0 && info.global_mem_bytes > 0);
  cl_context c = NULL;
  cl_device_id d = NULL;
  cl_command_queue q = NULL;
  CHECK_OK(clmoe_context_get_cl(ctx, &c, &d, &q));
  CHECK(c && d && q);
  CHECK_OK(clmoe_context_finish(ctx));
}

static void test_selectors(void) {
  clmoe_device_choice def, c;
  clmoe_device_choice_init(&def);
  REQUIRE_OK(clmoe_device_select("", &def));
  CHECK(def.index >= 0 && def.reason[0]);
  char name[256] = "";
  clGetDeviceInfo(def.device, CL_DEVICE_NAME, sizeof name - 1, name, NULL);
  cl_device_type type = 0;
  clGetDeviceInfo(def.device, CL_DEVICE_TYPE, sizeof type, &type, NULL);

  char idx[16];
  snprintf(idx, sizeof idx, "%d", def.index);
  clmoe_device_choice_init(&c);
  CHECK_OK(clmoe_device_select(idx, &c));
  CHECK(c.device == def.device);

  /* A case-changed substring of the device name selects it. */
  char sub[8] = "";
  for (int i = 0; i < 4 && name[i]; ++i)
    sub[i] = (char)((name[i] >= 'a' && name[i] <= 'z') ? name[i] - 32
                    : (name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32
                                                         : name[i]);
  clmoe_device_choice_init(&c);
  CHECK_OK(clmoe_device_select(sub, &c));
  CHECK(c.device != NULL);

  const char *own = (type & CL_DEVICE_TYPE_GPU) ? "gpu" : "cpu";
  clmoe_device_choice_init(&c);
  CHECK_OK(clmoe_device_select(own, &c));
  CHECK(c.device == def.device || (type & CL_DEVICE_TYPE_GPU));
  if (!(type & CL_DEVICE_TYPE_GPU)) {
    /* No GPU on this machine: "gpu" must fail and list what exists. */
    CHECK_STATUS(clmoe_device_select("gpu", &c), CLMOE_ERROR_DEVICE_NOT_FOUND);
    CHECK(strstr(clmoe_last_error_detail(), name) != NULL);
  }

  CHECK_STATUS(clmoe_device_select("no-such-device-xyz", &c),
               CLMOE_ERROR_DEVICE_NOT_FOUND);
  CHECK(strstr(clmoe_last_error_detail(), "visible devices") != NULL);
  CHECK(strstr(clmoe_last_error_detail(), name) != NULL);
  CHECK_STATUS(clmoe_device_select("999", &c), CLMOE_ERROR_DEVICE_NOT_FOUND);

  /* The environment variable drives clmoe_context_create. */
  setenv("CLMOE_DEVICE", "no-such-device-xyz", 1);
  clmoe_context *ctx = (clmoe_context *)1;
  CHECK_STATUS(clmoe_context_create(NULL, &ctx), CLMOE_ERROR_DEVICE_NOT_FOUND);
  CHECK(ctx == NULL);
  setenv("CLMOE_DEVICE", idx, 1);
  CHECK_OK(clmoe_context_create(NULL, &ctx));
  clmoe_context_destroy(ctx);
  setenv("CLMOE_DEVICE", own, 1);
  CHECK_OK(clmoe_context_create(NULL, &ctx));
  clmoe_context_destroy(ctx);
  unsetenv("CLMOE_DEVICE");

  /* desc->device wins over the environment. */
  setenv("CLMOE_DEVICE", "no-such-device-xyz", 1);
  clmoe_context_desc desc;
  clmoe_context_desc_init(&desc);
  desc.device = idx;
  CHECK_OK(clmoe_context_create(&desc, &ctx));
  clmoe_context_destroy(ctx);
  unsetenv("CLMOE_DEVICE");
}

static void test_interop(void) {
  clmoe_device_choice c;
  clmoe_device_choice_init(&c);
  REQUIRE_OK(clmoe_device_select("", &c));
  cl_int err;
  cl_context cc = clCreateContext(NULL, 1, &c.device, NULL, NULL, &err);
  cl_command_queue q = clCreateCommandQueue(cc, c.device, 0, &err);
  clmoe_context_desc desc;
  clmoe_context_desc_init(&desc);
  desc.cl_context = cc;
  desc.cl_device = c.device;
  desc.cl_queue = q;
  clmoe_context *ctx = NULL;
  CHECK_OK(clmoe_context_create(&desc, &ctx));
  cl_command_queue got = NULL;
  CHECK_OK(clmoe_context_get_cl(ctx, NULL, NULL, &got));
  CHECK(got == q);
  clmoe_context_destroy(ctx);
  /* The caller's objects survive the clmoe context. */
  CHECK(clFinish(q) == CL_SUCCESS);

  cl_command_queue ooo = clCreateCommandQueue(
      cc, c.device, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
  if (ooo) {
    desc.cl_queue = ooo;
    CHECK_STATUS(clmoe_context_create(&desc, &ctx), CLMOE_ERROR_UNSUPPORTED);
    clReleaseCommandQueue(ooo);
  }
  desc.cl_queue = NULL;
  desc.cl_device = NULL;
  CHECK_STATUS(clmoe_context_create(&desc, &ctx),
               CLMOE_ERROR_INVALID_ARGUMENT);
  desc.cl_context = NULL;
  desc.cl_device = c.device;
  CHECK_STATUS(clmoe_context_create(&desc, &ctx),
               CLMOE_ERROR_INVALID_ARGUMENT);
  clReleaseCommandQueue(q);
  clReleaseContext(cc);
}

static void test_invalid(void) {
  CHECK_STATUS(clmoe_context_create(NULL, NULL), CLMOE_ERROR_NULL_POINTER);
  clmoe_context_desc desc;
  clmoe_context_desc_init(&desc);
  desc.struct_size = 3;
  clmoe_context *ctx = NULL;
  CHECK_STATUS(clmoe_context_create(&desc, &ctx),
               CLMOE_ERROR_INVALID_STRUCT_SIZE);
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  CHECK_STATUS(clmoe_context_get_device_info(NULL, &info),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_context_get_device_info(test_context(), NULL),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_context_get_cl(NULL, NULL, NULL, NULL),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_context_finish(NULL), CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_context_build_programs(NULL), CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_device_select("", NULL), CLMOE_ERROR_NULL_POINTER);
  /* destroy(NULL) is a no-op for every handle. */
  clmoe_context_destroy(NULL);
  clmoe_tensor_destroy(NULL);
}

static void test_version(void) {
  CHECK(clmoe_version_number() == CLMOE_VERSION_NUMBER);
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", CLMOE_VERSION_MAJOR,
           CLMOE_VERSION_MINOR, CLMOE_VERSION_PATCH);
  CHECK(strcmp(clmoe_version_string(), want) == 0);
}

int main(void) {
  test_default_context();
  test_selectors();
  test_interop();
  test_invalid();
  test_version();
  return test_finish("test_context");
}
