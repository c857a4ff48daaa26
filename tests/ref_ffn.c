#include "ref_ffn.h"

#include <math.h>
#include <stdlib.h>

static double act(clmoe_activation a, double v) {
  switch (a) {
  case CLMOE_ACTIVATION_RELU:
    return v > 0 ? v : 0;
  case CLMOE_ACTIVATION_GELU:
  case CLMOE_ACTIVATION_GEGLU:
    return 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
  default:
    return v / (1 + exp(-v));
  }
}

void ref_moe(const ref_experts *x, const ref_result *r, const float *in,
             int accumulate, double *y) {
  int d = x->d, f = x->f;
  int gated = x->activation == CLMOE_ACTIVATION_SWIGLU ||
              x->activation == CLMOE_ACTIVATION_GEGLU;
  double *h = malloc(sizeof *h * (size_t)f);
  for (int t = 0; t < r->T; ++t) {
    double *yt = y + (size_t)t * d;
    if (!accumulate)
      for (int c = 0; c < d; ++c)
        yt[c] = 0;
    const float *xt = in + (size_t)t * d;
    for (int s = r->offsets[t]; s < r->offsets[t + 1]; ++s) {
      int e = r->ids[s];
      for (int j = 0; j < f; ++j) {
        double g = x->b1 ? x->b1[(size_t)e * f + j] : 0, u = 0;
        if (gated)
          u = x->b3 ? x->b3[(size_t)e * f + j] : 0;
        for (int i = 0; i < d; ++i) {
          g += (double)xt[i] * x->w1[((size_t)e * d + i) * f + j];
          if (gated)
            u += (double)xt[i] * x->w3[((size_t)e * d + i) * f + j];
        }
        h[j] = gated ? act(x->activation, g) * u : act(x->activation, g);
      }
      for (int c = 0; c < d; ++c) {
        double o = x->b2 ? x->b2[(size_t)e * d + c] : 0;
        for (int j = 0; j < f; ++j)
          o += h[j] * x->w2[((size_t)e * f + j) * d + c];
        yt[c] += r->gates[s] * o;
      }
    }
  }
  free(h);
}
