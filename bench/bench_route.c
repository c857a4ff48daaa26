/* Routing cost per token, and the policy kernels' time relative to the
 * router GEMM, measured side by side in one run (T = 4096, d = 1024).
 * Goal (issue "Routing"): policy kernels cost less than the GEMM itself. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "clmoe/clmoe.h"

#define REPS 9

int main(void) {
  const int T = 4096, d = 1024;
  clmoe_context *ctx = NULL;
  die(clmoe_context_create(NULL, &ctx), "context");
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  clmoe_context_get_device_info(ctx, &info);
  cl_command_queue q;
  clmoe_context_get_cl(ctx, NULL, NULL, &q);
  printf("device: %s\nT = %d, d = %d, median of %d after warm-up\n\n",
         info.name, T, d, REPS);
  printf("%-6s %5s %12s %12s %14s %14s\n", "policy", "E", "gemm ms",
         "policy ms", "route ns/token", "policy/gemm");
  float *x = malloc(sizeof *x * (size_t)T * d);
  for (size_t i = 0; i < (size_t)T * d; ++i)
    x[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  clmoe_tensor *xt = NULL;
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d}, x, &xt),
      "x");
  static const int Es[] = {16, 64, 256};
  for (int ei = 0; ei < 3; ++ei) {
    int E = Es[ei];
    float *w = malloc(sizeof *w * (size_t)d * E);
    for (size_t i = 0; i < (size_t)d * E; ++i)
      w[i] = (float)((i * 40503u) % 1001) / 20000.0f - 0.025f;
    for (int pol = 0; pol < 2; ++pol) {
      clmoe_router_desc desc;
      clmoe_router_desc_init(&desc);
      desc.num_experts = E;
      desc.d_model = d;
      desc.weight_host = w;
      desc.policy = pol ? CLMOE_POLICY_TOPP : CLMOE_POLICY_TOPK;
      clmoe_router *r = NULL;
      die(clmoe_router_create(ctx, &desc, &r), "router");
      clmoe_routing *rt = NULL;
      die(clmoe_routing_create(ctx, &rt), "routing");
      clmoe_tensor *logits = NULL;
      die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, E}, NULL,
                              &logits),
          "logits");
      cl_mem xm, wm, lm;
      clmoe_tensor_get_cl_mem(xt, &xm);
      clmoe_tensor_get_cl_mem(logits, &lm);
      clmoe_tensor *wt = NULL;
      die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){d, E}, w,
                              &wt),
          "w");
      clmoe_tensor_get_cl_mem(wt, &wm);
      double gemm[REPS], full[REPS], policy[REPS];
      for (int rep = -2; rep < REPS; ++rep) {
        double t0 = now_ms();
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                     CLBlastTransposeNo, T, E, d, 1.0f, xm, 0, d, wm, 0, E,
                     0.0f, lm, 0, E, &q, NULL);
        clFinish(q);
        double t1 = now_ms();
        die(clmoe_route(r, xt, NULL, rt, 0, NULL, NULL), "route");
        double t2 = now_ms();
        die(clmoe_route_logits(r, logits, NULL, rt, 0, NULL, NULL), "route");
        double t3 = now_ms();
        if (rep >= 0) {
          gemm[rep] = t1 - t0;
          full[rep] = t2 - t1;
          policy[rep] = t3 - t2;
        }
      }
      double g = median(gemm, REPS), f = median(full, REPS),
             p = median(policy, REPS);
      printf("%-6s %5d %12.3f %12.3f %14.1f %14.2f\n", pol ? "top-p" : "top-2",
             E, g, p, f * 1e6 / T, p / g);
      clmoe_tensor_destroy(wt);
      clmoe_tensor_destroy(logits);
      clmoe_routing_destroy(rt);
      clmoe_router_destroy(r);
    }
    free(w);
  }
  printf("\npolicy/gemm < 1 means the routing kernels cost less than the "
         "router GEMM.\n");
  clmoe_tensor_destroy(xt);
  free(x);
  clmoe_context_destroy(ctx);
  return 0;
}
