/* Shared experts (Qwen2-MoE's shared_expert): one expert applied to every
 * token, weighted per token by sigmoid(x . w_gate) or 1, added after the
 * routed sum in combine. */
#ifndef CLMOE_SHARED_H
#define CLMOE_SHARED_H

#include "moe/dispatch_combine.h"
#include "moe/experts.h"

/* Checks shared experts (E = 1, d as the layer's) and the optional gate
 * (float32 [d]) against a layer of width d; `fn` names the public call. */
clmoe_status cm_check_shared(const clmoe_experts *shared,
                             const clmoe_tensor *gate, const clmoe_routing *rt,
                             int d, const char *fn);

/* rt's dense sub-routing (made on first use) sending all T tokens to
 * expert 0: expert_offsets {0, T}, a successful route's status. */
clmoe_status cm_shared_routing(clmoe_routing *rt, int T, clmoe_routing **out);

/* Each token's shared weight into dr's CM_RB_GATES (T = dr->T):
 * sigmoid(x_t . gate), or 1 without a gate (x [T, d], any float dtype). */
clmoe_status cm_shared_gates(clmoe_routing *dr, const clmoe_tensor *gate,
                             const clmoe_tensor *x);

/* Enqueues the shared experts over all T rows of x and each token's weight
 * into rt's dense sub-routing; *out points at the results for combine. */
clmoe_status cm_shared_enqueue(clmoe_routing *rt, clmoe_experts *shared,
                               const clmoe_tensor *gate, const clmoe_tensor *x,
                               cm_shared_rows *out);

#endif /* CLMOE_SHARED_H */
