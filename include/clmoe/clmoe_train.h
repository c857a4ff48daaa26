/* clmoe training (since 0.5): a forward that keeps what the backward needs,
 * the backward of every stage (experts, gates, router, auxiliary losses),
 * and in-place weight updates for optimizer steps.
 *
 * Gradients (exact definitions in docs/training.md of the source tree), for
 * y = sum over token t's slots j of g_j * Expert_{e_j}(x_t) (output-side
 * gates) or Expert_{e_j}(g_j * x_t) (input-side gates, Llama 4) and an
 * upstream gradient dy:
 *  - experts: dW1, dW3, dW2 and the biases of every expert, plus the
 *    experts' share of dx. Every activation, SwiGLU variants included.
 *  - gates: dg_j = dy_t . Expert_e(x_t) (input-side: x_t . dXs_j).
 *  - router: through the gate mode into the logits z = x W_r + b_r. TOPK
 *    gates are a function of the scores s (softmax or sigmoid), the other
 *    policies' of pi = s / (sum of s over the allowed experts); RAW gates
 *    are gate_scale * q, RENORM gates gate_scale * q / (sum over the kept
 *    slots of q) (+ 1e-20 for sigmoid TOPK). Then dW_r = x^T dz,
 *    db_r = sum over tokens of dz, and the router's share of dx = dz W_r^T.
 *    The selection (which experts, how many) gets no gradient; neither do
 *    the selection bias and importance scores.
 *  - auxiliary losses, each with a coefficient (clmoe_train_desc), their
 *    gradients added into dz: balance E * sum_i f_i Q_i (f_i the fraction
 *    of slots, a constant; Q_i the mean over tokens of pi[:, i]); router
 *    z-loss mean_t logsumexp(z_t)^2; entropy mean_t -sum_i pi log pi.
 *
 * Determinism: no float atomics anywhere. Each expert's weight gradient is
 * its rows reduced in ascending row order (ascending token inside an
 * expert); every other sum runs in a fixed order in one work-item. The
 * gradients are the same bits run to run and for any pocl thread count.
 *
 * Storage: clmoe_forward_train stores (it does not recompute): the routing
 * keeps the router logits and token distribution [T, E], and per routed
 * row the dispatched input [N, d], the pre-activations [N, F'], the
 * activations [N, f] and the expert outputs [N, d] (F' = 2 f for gated
 * kinds, rounded up to the grouped kernel's panels), and the same for the
 * shared experts' T rows; clmoe_routing_saved_bytes reports the total.
 * On the grouped path the experts object also keeps transposed copies of
 * its weight panels for the backward (made by the first backward, remade
 * after clmoe_experts_update; as large as the weights, not counted above).
 *
 * Quantized experts (F8_E4M3, MXFP4, I8, I4) are inference-only: training
 * calls return UNSUPPORTED for them. Float32, float16 and bfloat16 weights
 * train; gradients are always float32.
 *
 * Shared experts (clmoe_forward_shared's y = routed + g_t * S(x_t), g_t =
 * sigmoid(x_t . shared_gate) or 1) train too: their weights get gradients
 * like the routed experts', the gate vector d(shared_gate) =
 * sum_t (dy_t . S(x_t)) g_t (1 - g_t) x_t, and dx their share. */
#ifndef CLMOE_CLMOE_TRAIN_H
#define CLMOE_CLMOE_TRAIN_H

#include "clmoe/clmoe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Coefficients of the auxiliary losses; 0 leaves a loss out of the
 * gradient (its value is still reported). Each must be finite and >= 0. */
typedef struct clmoe_train_desc {
  size_t struct_size;
  float balance_coeff; /* Switch/GShard load-balance loss */
  float z_loss_coeff;  /* router z-loss */
  float entropy_coeff; /* the top-p paper's dynamic (entropy) loss */
} clmoe_train_desc;

/* Defaults: every coefficient 0. Call through the macro (the caller's
 * sizeof). */
CLMOE_API void clmoe_train_desc_init_sized(clmoe_train_desc *desc,
                                           size_t size);
#define clmoe_train_desc_init(desc)                                            \
  clmoe_train_desc_init_sized((desc), sizeof *(desc))

/* The auxiliary losses of one training forward, unscaled, and their
 * weighted sum (total = sum of coefficient * value). Sums over tokens in
 * double, in token order. */
typedef struct clmoe_aux_losses {
  size_t struct_size;
  double balance;
  double z_loss;
  double entropy;
  double total;
} clmoe_aux_losses;

CLMOE_API void clmoe_aux_losses_init_sized(clmoe_aux_losses *losses,
                                           size_t size);
#define clmoe_aux_losses_init(losses)                                          \
  clmoe_aux_losses_init_sized((losses), sizeof *(losses))

/* clmoe_forward_shared (same arguments; shared and shared_gate may be
 * NULL; y equal to it within float32 rounding) that also keeps in
 * `routing` what clmoe_backward needs (see "Storage" above) and computes
 * the auxiliary losses into *losses (may be NULL). `train` may be NULL (all
 * coefficients 0). Blocks until the losses are read (one small transfer).
 * The saved state belongs to this router and experts object and to this
 * route: any later route into `routing` invalidates it.
 * Errors: those of clmoe_forward_shared, INVALID_ARGUMENT (a coefficient
 * negative or not finite), INVALID_STRUCT_SIZE, UNSUPPORTED (quantized
 * experts, routed or shared; a router without a weight). Thread-safety:
 * as clmoe_forward. */
CLMOE_API clmoe_status clmoe_forward_train(
    clmoe_router *router, clmoe_experts *experts, clmoe_experts *shared,
    const clmoe_tensor *shared_gate, const clmoe_tensor *x,
    const clmoe_tensor *importance, clmoe_tensor *y, clmoe_routing *routing,
    uint32_t flags, const clmoe_train_desc *train, clmoe_aux_losses *losses);

/* Device bytes the routing keeps for a backward (0 when none). Errors:
 * NULL_POINTER. */
CLMOE_API clmoe_status clmoe_routing_saved_bytes(const clmoe_routing *routing,
                                                 int64_t *bytes);

/* Gradient outputs: caller-owned float32 tensors, any may be NULL (not
 * computed). Expert gradients are in LAYOUT_IN_OUT whatever layout the
 * experts were created from: w1, w3 [E, d, f]; w2 [E, f, d]; b1, b3
 * [E, f]; b2 [E, d]. w3 / b3 only for gated kinds. */
typedef struct clmoe_expert_grads {
  size_t struct_size;
  clmoe_tensor *w1, *w3, *w2;
  clmoe_tensor *b1, *b3, *b2;
} clmoe_expert_grads;

/* Router gradients: weight [d, E], bias [E]; float32, NULL to skip. */
typedef struct clmoe_router_grads {
  size_t struct_size;
  clmoe_tensor *weight;
  clmoe_tensor *bias;
} clmoe_router_grads;

CLMOE_API void clmoe_expert_grads_init_sized(clmoe_expert_grads *g,
                                             size_t size);
#define clmoe_expert_grads_init(g)                                             \
  clmoe_expert_grads_init_sized((g), sizeof *(g))
CLMOE_API void clmoe_router_grads_init_sized(clmoe_router_grads *g,
                                             size_t size);
#define clmoe_router_grads_init(g)                                             \
  clmoe_router_grads_init_sized((g), sizeof *(g))

enum {
  /* add the weight and bias gradients into the caller's tensors instead of
   * overwriting them (gradient accumulation) */
  CLMOE_BACKWARD_ACCUMULATE = 1u << 0,
  /* add into dx instead of overwriting it (a residual's gradient) */
  CLMOE_BACKWARD_ACCUMULATE_DX = 1u << 1
};

/* The backward of the last clmoe_forward_train into `routing`, for the
 * same router, experts, shared experts and gate, and the same x [T, d]:
 * dy [T, d] (float32, float16 or bfloat16) in, dx [T, d] (any of those;
 * may be NULL), router, expert and shared-expert gradients (any struct may
 * be NULL) and the shared gate's gradient ([d] float32, may be NULL) out, with the auxiliary
 * losses' gradients included in the router's: with the coefficients of
 * `aux`, or of that forward when aux is NULL (an autograd engine passes
 * the forward's coefficients times the upstream gradient of the loss). All sums in float32. Blocks while it checks dy (one 4-byte
 * read).
 * Errors: NULL_POINTER, INVALID_STRUCT_SIZE, INVALID_ARGUMENT (the routing
 * holds no training forward of these objects, or was routed again since;
 * x, dy or dx with another row count than that forward's T; a coefficient
 * negative or not finite; shared_gate_grad without a shared gate),
 * SHAPE_MISMATCH (any other wrong shape: x, dy or dx not [T, d], a
 * gradient tensor not its documented shape; the detail names it), DTYPE_MISMATCH (a gradient not float32),
 * NONFINITE_INPUT (a NaN or Inf in dy: the detail names the element),
 * CONTEXT_MISMATCH, OUT_OF_DEVICE_MEMORY, OPENCL, CLBLAST. Thread-safety:
 * as clmoe_forward (one call per routing at a time). */
CLMOE_API clmoe_status clmoe_backward(
    clmoe_router *router, clmoe_experts *experts, clmoe_experts *shared,
    const clmoe_tensor *shared_gate, clmoe_routing *routing,
    const clmoe_tensor *x, const clmoe_tensor *dy, clmoe_tensor *dx,
    clmoe_router_grads *router_grads, clmoe_expert_grads *expert_grads,
    clmoe_expert_grads *shared_grads, clmoe_tensor *shared_gate_grad,
    const clmoe_train_desc *aux, uint32_t flags);

/* Writes new weights into existing experts (an optimizer step): `desc`
 * gives them as for clmoe_experts_create (w1/w3/w2 and optional biases,
 * host or tensor, its layout and host_dtype); every weight matrix is
 * required, and the biases become exactly the ones given (absent = none).
 * Its num_experts, d_model, d_ff and activation must equal the object's;
 * path, weight_dtype and the SwiGLU-OAI fields are ignored (the object
 * keeps its own). Weights are rounded to the object's storage dtype and
 * repacked for its path; no program is rebuilt. New device buffers replace
 * the old ones, so work already enqueued keeps reading the old weights.
 * Errors: NULL_POINTER, INVALID_STRUCT_SIZE, SHAPE_MISMATCH (sizes differ
 * from the object's), INVALID_ARGUMENT (a missing weight), UNSUPPORTED
 * (quantized experts), and those of clmoe_experts_create. Not
 * thread-safe with other calls using the same experts object. */
CLMOE_API clmoe_status clmoe_experts_update(clmoe_experts *experts,
                                            const clmoe_experts_desc *desc);

/* Writes a new router weight [d, E] (float32 host array, or a float32,
 * float16 or bfloat16 tensor; NULL: unchanged) and bias [E] (float32 host
 * or tensor; NULL: unchanged) into an existing router. The column norms
 * (COSINE) and the grouped kernel's panels are refreshed. Errors:
 * NULL_POINTER, INVALID_ARGUMENT (both host and tensor given, or a router
 * created without a weight), SHAPE_MISMATCH, DTYPE_MISMATCH, OPENCL,
 * OUT_OF_DEVICE_MEMORY. Not thread-safe with other calls using the same
 * router. */
CLMOE_API clmoe_status clmoe_router_update(clmoe_router *router,
                                           const float *weight_host,
                                           const clmoe_tensor *weight,
                                           const float *bias_host,
                                           const clmoe_tensor *bias);

#ifdef __cplusplus
}
#endif

#endif /* CLMOE_CLMOE_TRAIN_H */
