/* A minimal clmoe consumer: routes 8 tokens over 4 experts with top-p and
 * prints each token's experts. Built against the installed library. */
#include <clmoe/clmoe.h>
#include <stdio.h>

int main(void) {
  float logits[8 * 4];
  for (int i = 0; i < 32; ++i)
    logits[i] = (float)((i * 7) % 5) * 0.5f;
  clmoe_context *ctx = NULL;
  clmoe_router *router = NULL;
  clmoe_routing *routing = NULL;
  clmoe_tensor *z = NULL;
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = 4;
  rd.policy = CLMOE_POLICY_TOPP;
  rd.p = 0.5f;
  clmoe_status st = clmoe_context_create(NULL, &ctx);
  if (!st)
    st = clmoe_router_create(ctx, &rd, &router);
  if (!st)
    st = clmoe_routing_create(ctx, &routing);
  if (!st)
    st = clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){8, 4},
                             logits, &z);
  if (!st)
    st = clmoe_route_logits(router, z, NULL, routing, 0, NULL, NULL);
  int64_t n = 0;
  const clmoe_tensor *ids = NULL;
  int out[32];
  if (!st)
    st = clmoe_routing_get_sizes(routing, NULL, NULL, &n);
  if (!st)
    st = clmoe_routing_get_array(routing, CLMOE_ROUTING_EXPERT_IDS, &ids);
  if (!st)
    st = clmoe_tensor_read(ids, out, (size_t)n * sizeof *out);
  if (st) {
    fprintf(stderr, "%s: %s\n", clmoe_status_string(st),
            clmoe_last_error_detail());
    return 1;
  }
  printf("clmoe %s: %lld slots:", clmoe_version_string(), (long long)n);
  for (int64_t i = 0; i < n; ++i)
    printf(" %d", out[i]);
  printf("\n");
  clmoe_tensor_destroy(z);
  clmoe_routing_destroy(routing);
  clmoe_router_destroy(router);
  clmoe_context_destroy(ctx);
  return 0;
}
