/* What clmoe_checkpoint_load_layer needs to know of one MoE layer: tensor
 * name templates and the model family's routing and expert conventions.
 * families.c fills it from config.json (or the CUSTOM desc); load_layer.c
 * reads the tensors and creates the objects. */
#ifndef CLMOE_LAYER_PLAN_H
#define CLMOE_LAYER_PLAN_H

#include "clmoe/clmoe_checkpoint.h"

/* Name templates of one architecture ({layer}, {expert}); NULL: none. */
typedef struct arch_names {
  const char *router, *w1, *w3, *w2, *gate_up, *down;
  const char *shared_w1, *shared_w3, *shared_w2, *shared_gate;
  const char *selection_bias; /* [E] (DeepSeek-V3's e_score_correction_bias) */
  const char *router_bias;    /* [E] (gpt-oss) */
  const char *gate_up_bias;   /* [E, 2f] (gpt-oss) */
  const char *down_bias;      /* [E, d] (gpt-oss) */
} arch_names;

typedef struct plan {
  arch_names names;
  clmoe_arch arch;
  int layer, E, d, f, fs, k, renorm;
  clmoe_activation activation;
  float swiglu_limit, swiglu_alpha;
  /* The router's conventions (clmoe_router_desc, since 0.4). */
  clmoe_scoring scoring;
  int num_groups, topk_groups;
  clmoe_group_score group_score;
  float gate_scale;
  clmoe_gate_position gate_position;
  /* Stacked experts stored in x.W order ([E, in, out]: gpt-oss, Llama 4)
   * rather than nn.Linear's [E, out, in]; gate_up's gate and up columns
   * alternate (gpt-oss) or are its two halves (Llama 4). */
  int xw, interleaved;
  int needs_expert_biases; /* gpt-oss ships them; their absence is an error */
} plan;

/* The layer's plan: from config.json's model_type (AUTO) or the desc's
 * arch, the family's conventions and sizes; for CUSTOM from the desc (the
 * sizes then come from the tensors). Errors name the config field. */
clmoe_status cm_layer_plan(const clmoe_checkpoint *ck,
                           const clmoe_layer_desc *desc, plan *p);

/* `tmpl` with {layer} and {expert} replaced. */
void cm_expand_name(const char *tmpl, int layer, int expert, char *out,
                    size_t len);

#endif /* CLMOE_LAYER_PLAN_H */
