/* Fused (Q/K) versus materialised-probabilities scoring at T = 2048,
 * H = 16, dh = 64, side by side in one run, with the extra device memory
 * each needs beyond its inputs. */
#include <math.h>
#include <stdio.h>

#include "bench_common.h"
#include "clmoe/clmoe.h"

#define REPS 5

int main(void) {
  const int T = 2048, H = 16, dh = 64;
  clmoe_context *ctx = NULL;
  die(clmoe_context_create(NULL, &ctx), "context");
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  clmoe_context_get_device_info(ctx, &info);
  printf("device: %s\nT = %d, H = %d, dh = %d, causal, median of %d\n\n",
         info.name, T, H, dh, REPS);
  size_t nq = (size_t)H * T * dh, na = (size_t)H * T * T;
  float *q = malloc(sizeof *q * nq), *k = malloc(sizeof *k * nq);
  for (size_t i = 0; i < nq; ++i) {
    q[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    k[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
  }
  clmoe_tensor *qt, *kt, *imp, *at;
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){H, T, dh}, q,
                          &qt), "q");
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){H, T, dh}, k,
                          &kt), "k");
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, NULL, &imp),
      "importance");
  /* The probabilities path scores an attention matrix someone computed:
   * build it here (not timed) from the same Q and K. */
  float *a = malloc(sizeof *a * na);
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < T; ++i) {
      float *row = a + ((size_t)h * T + i) * T, m = -INFINITY, s = 0;
      for (int j = 0; j < T; ++j) {
        float v = 0;
        if (j <= i)
          for (int c = 0; c < dh; ++c)
            v += q[((size_t)h * T + i) * dh + c] * k[((size_t)h * T + j) * dh + c];
        row[j] = j <= i ? v / 8.0f : -INFINITY;
        m = row[j] > m ? row[j] : m;
      }
      for (int j = 0; j < T; ++j)
        s += (row[j] = j <= i ? expf(row[j] - m) : 0.0f);
      for (int j = 0; j < T; ++j)
        row[j] /= s;
    }
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){H, T, T}, a,
                          &at), "probs");
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.mask = CLMOE_SCORE_MASK_CAUSAL;
  double tf[REPS], tp[REPS];
  for (int rep = -1; rep < REPS; ++rep) {
    double t0 = now_ms();
    die(clmoe_score_attention(ctx, &d, NULL, qt, kt, imp, 0, NULL, NULL),
        "fused");
    double t1 = now_ms();
    die(clmoe_score_attention(ctx, &d, at, NULL, NULL, imp, 0, NULL, NULL),
        "probs");
    double t2 = now_ms();
    if (rep >= 0) {
      tf[rep] = t1 - t0;
      tp[rep] = t2 - t1;
    }
  }
  double f = median(tf, REPS), p = median(tp, REPS);
  /* Extra device memory beyond the inputs: fused keeps column sums, row
   * maxima and row sums ([H, T] each); the probabilities path keeps the
   * column sums, and its input is the materialised H x T x T matrix. */
  double mib = 1024.0 * 1024.0;
  printf("%-24s %10s %18s %22s\n", "path", "ms", "extra memory", "attention matrix");
  printf("%-24s %10.1f %14.2f MiB %18s\n", "fused Q/K", f,
         3.0 * H * T * 4 / mib, "never built");
  printf("%-24s %10.1f %14.2f MiB %14.1f MiB\n", "materialised probs", p,
         1.0 * H * T * 4 / mib, na * 4 / mib);
  printf("\nfused / materialised time: %.2f (fused also computes the "
         "softmax; the probabilities path only sums columns)\n", f / p);
  clmoe_tensor_destroy(qt);
  clmoe_tensor_destroy(kt);
  clmoe_tensor_destroy(at);
  clmoe_tensor_destroy(imp);
  free(q);
  free(k);
  free(a);
  clmoe_context_destroy(ctx);
  return 0;
}
