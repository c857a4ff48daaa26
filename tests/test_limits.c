/* Size limits: inputs beyond the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE or
 * beyond 32-bit element indices fail with CLMOE_ERROR_TOO_LARGE (before any
 * device work, nothing written), never a crash or a wrong answer. */
#include "harness.h"

static void test_tensors(clmoe_context *ctx, uint64_t max_alloc) {
  clmoe_tensor *t = (clmoe_tensor *)1;
  /* 2^31 elements: past int32 indices. */
  CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2,
                                   (int64_t[]){1 << 16, 1 << 15}, NULL, &t),
               CLMOE_ERROR_TOO_LARGE);
  CHECK(t == NULL);
  /* A shape whose product overflows int64. */
  CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 4,
                                   (int64_t[]){1ll << 40, 1ll << 40, 1, 1},
                                   NULL, &t),
               CLMOE_ERROR_TOO_LARGE);
  /* Fewer than 2^31 elements but more bytes than one allocation may hold. */
  int64_t over = (int64_t)(max_alloc / 4) + 1;
  if (over < INT32_MAX) {
    CHECK_STATUS(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, &over, NULL, &t),
                 CLMOE_ERROR_TOO_LARGE);
    CHECK(strstr(clmoe_last_error_detail(), "MAX_MEM_ALLOC") != NULL);
  }
}

static void test_experts(clmoe_context *ctx, uint64_t max_alloc) {
  float dummy[4] = {0}; /* never read: sizes are refused first */
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.w1_host = dummy;
  ed.w3_host = dummy;
  ed.w2_host = dummy;
  clmoe_experts *x = (clmoe_experts *)1;
  /* E * d * 2f past int32. */
  ed.num_experts = 1024;
  ed.d_model = 1 << 12;
  ed.d_ff = 1 << 12;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x), CLMOE_ERROR_TOO_LARGE);
  CHECK(x == NULL);
  /* Within int32 but one matrix beyond the device's allocation limit, on
   * both paths. */
  ed.num_experts = 1;
  ed.d_model = 1 << 15;
  ed.d_ff = (int32_t)(max_alloc / 4 / (1u << 15) / 2 + 64);
  if ((int64_t)ed.d_model * ed.d_ff * 2 <= INT32_MAX)
    for (int p = CLMOE_EXPERTS_PATH_CLBLAST; p <= CLMOE_EXPERTS_PATH_GROUPED;
         ++p) {
      ed.path = p;
      CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x), CLMOE_ERROR_TOO_LARGE);
      CHECK(strstr(clmoe_last_error_detail(), "MAX_MEM_ALLOC") != NULL);
    }
}

/* T * E past int32: refused by route before anything is enqueued. */
static void test_route(clmoe_context *ctx) {
  const int E = 1024;
  float w[1024];
  for (int i = 0; i < E; ++i)
    w[i] = (float)i / E;
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = 1;
  rd.weight_host = w;
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
  int64_t T = (1ll << 31) / E + 1;
  clmoe_tensor *x = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, 1},
                                 NULL, &x));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  CHECK_STATUS(clmoe_route(r, x, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_TOO_LARGE);
  int64_t n = -1;
  CHECK_OK(clmoe_routing_get_sizes(rt, &n, NULL, NULL));
  CHECK(n == 0);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(x);
  clmoe_router_destroy(r);
}

int main(void) {
  clmoe_context *ctx = test_context();
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  REQUIRE_OK(clmoe_context_get_device_info(ctx, &info));
  printf("device allocation limit: %llu bytes\n",
         (unsigned long long)info.max_alloc_bytes);
  test_tensors(ctx, info.max_alloc_bytes);
  test_experts(ctx, info.max_alloc_bytes);
  test_route(ctx);
  return test_finish("test_limits");
}
