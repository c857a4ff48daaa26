/* Attention scoring with random varlen seq_offsets and key_lengths (valid
 * or not) over probabilities or fused Q/K with raw-bit values (float32,
 * float16 or bfloat16), in either layout or as a padded batch
 * [B, S, H, dh], with key heads that may or may not divide the query heads
 * and an optional raw-bit lse ([H, T] or [B, H, S]; checked or not). */
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
  d.flags = (uint32_t)fuzz_range(&b, 0, 3);
  d.layout = fuzz_range(&b, 0, 2); /* 2 is invalid */
  int Hkv = fuzz_range(&b, 1, H), shd = d.layout == 1,
      with_lse = fuzz_range(&b, 0, 1);
  static const clmoe_dtype qk_dtypes[3] = {CLMOE_DTYPE_F32, CLMOE_DTYPE_F16,
                                           CLMOE_DTYPE_BF16};
  clmoe_dtype qdt = qk_dtypes[fuzz_range(&b, 0, 2)],
              kdt = qk_dtypes[fuzz_range(&b, 0, 2)];
  /* A padded batch: Bp sequences of S tokens (rank-4 q and k). */
  int padded = fused && fuzz_range(&b, 0, 1), Bp = fuzz_range(&b, 1, 4),
      S = fuzz_range(&b, 0, 6), lse_bhs = fuzz_range(&b, 0, 1);
  if (padded)
    T = Bp * S;
  int32_t *offs = malloc(sizeof *offs * (size_t)(B + 1));
  int32_t *lens = malloc(sizeof *lens * (size_t)(B ? B : 1));
  for (int i = 0; i <= B; ++i)
    offs[i] = fuzz_range(&b, 0, 3) ? (int32_t)((int64_t)T * i / (B ? B : 1))
                                   : fuzz_i32(&b) % 40;
  for (int i = 0; i < B; ++i)
    lens[i] = fuzz_i32(&b) % 30;
  float *p = fuzz_floats(&b, fused ? (size_t)2 * H * T * dh + (size_t)H * T
                                   : (size_t)H * T * T);
  clmoe_tensor *so = NULL, *kl = NULL, *a = NULL, *k = NULL, *imp = NULL,
               *lse = NULL;
  if (B && !clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 1, (int64_t[]){B + 1},
                                offs, &so))
    d.seq_offsets = fuzz_range(&b, 0, 3) ? so : NULL;
  if (B &&
      !clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 1, (int64_t[]){B}, lens, &kl))
    d.key_lengths = fuzz_range(&b, 0, 1) ? kl : NULL;
  int ok =
      !clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, NULL, &imp);
  if (fused) {
    int64_t qs[4] = {shd ? T : H, shd ? H : T, dh, 0};
    int64_t ks[4] = {shd ? T : Hkv, shd ? Hkv : T, dh, 0};
    if (padded) {
      memcpy(qs, (int64_t[]){Bp, S, H, dh}, sizeof qs);
      memcpy(ks, (int64_t[]){Bp, S, Hkv, dh}, sizeof ks);
    }
    int rank = padded ? 4 : 3;
    ok = ok && !clmoe_tensor_create(ctx, qdt, rank, qs, p, &a) &&
         !clmoe_tensor_create(ctx, kdt, rank, ks, p + (size_t)H * T * dh, &k) &&
         (!with_lse ||
          !clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, padded && lse_bhs ? 3 : 2,
                               padded && lse_bhs ? (int64_t[]){Bp, H, S}
                                                 : (int64_t[]){H, T},
                               p + (size_t)2 * H * T * dh, &lse));
    d.lse = lse;
  } else
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
  clmoe_tensor_destroy(lse);
  free(offs);
  free(lens);
  free(p);
  return 0;
}
