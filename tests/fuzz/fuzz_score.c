/* Attention scoring with random varlen seq_offsets and key_lengths (valid
 * or not) over probabilities or fused Q/K with raw-bit values. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_bytes b = {data, size};
  clmoe_context *ctx = fuzz_context();
  int T = fuzz_range(&b, 0, 24), H = fuzz_range(&b, 1, 3),
      B = fuzz_range(&b, 0, 5), dh = fuzz_range(&b, 1, 8);
  int fused = fuzz_range(&b, 0, 1);
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.mask = fuzz_range(&b, 0, 1);
  d.norm = fuzz_range(&b, 0, 1);
  d.flags = (uint32_t)fuzz_range(&b, 0, 1);
  int32_t *offs = malloc(sizeof *offs * (size_t)(B + 1));
  int32_t *lens = malloc(sizeof *lens * (size_t)(B ? B : 1));
  for (int i = 0; i <= B; ++i)
    offs[i] = fuzz_range(&b, 0, 3) ? (int32_t)((int64_t)T * i / (B ? B : 1))
                                   : fuzz_i32(&b) % 40;
  for (int i = 0; i < B; ++i)
    lens[i] = fuzz_i32(&b) % 30;
  float *p = fuzz_floats(&b, fused ? (size_t)2 * H * T * dh
                                   : (size_t)H * T * T);
  clmoe_tensor *so = NULL, *kl = NULL, *a = NULL, *k = NULL, *imp = NULL;
  if (B && !clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 1, (int64_t[]){B + 1},
                                offs, &so))
    d.seq_offsets = fuzz_range(&b, 0, 3) ? so : NULL;
  if (B && !clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 1, (int64_t[]){B}, lens,
                                &kl))
    d.key_lengths = fuzz_range(&b, 0, 1) ? kl : NULL;
  int ok = !clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, NULL,
                                &imp);
  if (fused)
    ok = ok &&
         !clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3,
                              (int64_t[]){H, T, dh}, p, &a) &&
         !clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3,
                              (int64_t[]){H, T, dh}, p + (size_t)H * T * dh,
                              &k);
  else
    ok = ok && !clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3,
                                    (int64_t[]){H, T, T}, p, &a);
  if (ok)
    clmoe_score_attention(ctx, &d, fused ? NULL : a, fused ? a : NULL,
                          fused ? k : NULL, imp, 0, NULL, NULL);
  clmoe_context_finish(ctx);
  clmoe_tensor_destroy(so);
  clmoe_tensor_destroy(kl);
  clmoe_tensor_destroy(a);
  clmoe_tensor_destroy(k);
  clmoe_tensor_destroy(imp);
  free(offs);
  free(lens);
  free(p);
  return 0;
}
