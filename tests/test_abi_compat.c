/* A caller built against 0.1 keeps working: the plain *_desc_init symbols
 * write only the 0.1 bytes of the structs that have grown since, and create
 * calls accept 0.1-sized structs (new fields take their defaults). */
#include <stddef.h>

#include "harness.h"

/* 0.1 sizes: the structs ended before the fields added in 0.2. */
#define CONTEXT_DESC_01 offsetof(clmoe_context_desc, tuning_file)
#define EXPERTS_DESC_01 offsetof(clmoe_experts_desc, path)

static int guard_intact(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0xAB)
      return 0;
  return 1;
}

int main(void) {
  unsigned char buf[sizeof(clmoe_experts_desc) + sizeof(clmoe_context_desc) +
                    64];
  /* The plain symbols (parenthesised: not the macros) stop at 0.1 sizes. */
  memset(buf, 0xAB, sizeof buf);
  (clmoe_context_desc_init)((clmoe_context_desc *)buf);
  CHECK(((clmoe_context_desc *)buf)->struct_size == CONTEXT_DESC_01);
  CHECK(guard_intact(buf + CONTEXT_DESC_01, sizeof buf - CONTEXT_DESC_01));
  memset(buf, 0xAB, sizeof buf);
  (clmoe_experts_desc_init)((clmoe_experts_desc *)buf);
  CHECK(((clmoe_experts_desc *)buf)->struct_size == EXPERTS_DESC_01);
  CHECK(((clmoe_experts_desc *)buf)->activation == CLMOE_ACTIVATION_SWIGLU);
  CHECK(guard_intact(buf + EXPERTS_DESC_01, sizeof buf - EXPERTS_DESC_01));
  /* The sized calls never write past `size`, nor past their struct. */
  memset(buf, 0xAB, sizeof buf);
  clmoe_experts_desc_init_sized((clmoe_experts_desc *)buf, 40);
  CHECK(guard_intact(buf + 40, sizeof buf - 40));
  memset(buf, 0xAB, sizeof buf);
  clmoe_context_desc_init_sized((clmoe_context_desc *)buf, 1u << 20);
  CHECK(((clmoe_context_desc *)buf)->struct_size ==
        sizeof(clmoe_context_desc));
  CHECK(guard_intact(buf + sizeof(clmoe_context_desc),
                     sizeof buf - sizeof(clmoe_context_desc)));
  clmoe_experts_desc full;
  clmoe_experts_desc_init(&full); /* the macro: the caller's own size */
  CHECK(full.struct_size == sizeof full);
  CHECK(full.path == CLMOE_EXPERTS_PATH_AUTO);

  /* 0.1-sized structs are accepted; the 0.2 fields behind them (filled with
   * garbage here) are not read. */
  memset(buf, 0xAB, sizeof buf);
  (clmoe_context_desc_init)((clmoe_context_desc *)buf);
  clmoe_context *ctx = NULL;
  CHECK_OK(clmoe_context_create((clmoe_context_desc *)buf, &ctx));
  if (ctx) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    memset(buf, 0xAB, sizeof buf);
    clmoe_experts_desc *ed = (clmoe_experts_desc *)buf;
    (clmoe_experts_desc_init)(ed);
    ed->num_experts = 1;
    ed->d_model = 2;
    ed->d_ff = 3;
    ed->activation = CLMOE_ACTIVATION_RELU;
    ed->w1_host = w;
    ed->w2_host = w;
    clmoe_experts *ex = NULL;
    CHECK_OK(clmoe_experts_create(ctx, ed, &ex));
    clmoe_experts_path path = CLMOE_EXPERTS_PATH_AUTO;
    CHECK_OK(clmoe_experts_get_path(ex, &path));
    CHECK(path == CLMOE_EXPERTS_PATH_CLBLAST ||
          path == CLMOE_EXPERTS_PATH_GROUPED);
    clmoe_experts_destroy(ex);
    ed->struct_size = EXPERTS_DESC_01 - 1;
    CHECK_STATUS(clmoe_experts_create(ctx, ed, &ex),
                 CLMOE_ERROR_INVALID_STRUCT_SIZE);
  }
  clmoe_context_destroy(ctx);
  return test_finish("test_abi_compat");
}
