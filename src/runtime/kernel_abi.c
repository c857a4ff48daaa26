/* The -D block every kernel program is built with (see kernel_abi.h). */
#include "runtime/kernel_abi.h"

#include <stdio.h>

#include "clmoe/clmoe.h"

static const struct {
  const char *name;
  int value;
} k_defines[] = {
    {"ST_N", CM_ST_N},
    {"ST_N_PROPOSED", CM_ST_N_PROPOSED},
    {"ST_MIN_K", CM_ST_MIN_K},
    {"ST_MAX_K", CM_ST_MAX_K},
    {"ST_BAD_TOKEN", CM_ST_BAD_TOKEN},
    {"ST_BALANCE_LOSS", CM_ST_BALANCE_LOSS},
    {"ST_ENTROPY", CM_ST_ENTROPY},
    {"ST_HEADER", CM_ST_HEADER},
    {"POLICY_TOPK", CLMOE_POLICY_TOPK},
    {"POLICY_TOPP", CLMOE_POLICY_TOPP},
    {"POLICY_IMPORTANCE", CLMOE_POLICY_IMPORTANCE},
    {"POLICY_RESONANCE", CLMOE_POLICY_RESONANCE},
    {"POLICY_EXPERT_CHOICE", CLMOE_POLICY_EXPERT_CHOICE},
    {"ACT_RELU", CLMOE_ACTIVATION_RELU},
    {"ACT_GELU", CLMOE_ACTIVATION_GELU},
    {"ACT_SILU", CLMOE_ACTIVATION_SILU},
    {"ACT_SWIGLU", CLMOE_ACTIVATION_SWIGLU},
    {"ACT_GEGLU", CLMOE_ACTIVATION_GEGLU},
    {"ACT_SWIGLU_OAI", CLMOE_ACTIVATION_SWIGLU_OAI},
    {"EPI_NONE", CM_EPI_NONE},
    {"DT_F32", CLMOE_DTYPE_F32},
    {"DT_F16", CLMOE_DTYPE_F16},
    {"DT_BF16", CLMOE_DTYPE_BF16},
    {"CM_ROW_CHUNK", CM_ROW_CHUNK},
    {"CM_PROB_COLS", CM_PROB_COLS},
};

size_t cm_kernel_defines(char *out, size_t len) {
  size_t used = 0;
  for (size_t i = 0; i < sizeof k_defines / sizeof *k_defines; ++i) {
    int n =
        snprintf(used < len ? out + used : NULL, used < len ? len - used : 0,
                 " -D%s=%d", k_defines[i].name, k_defines[i].value);
    used += n > 0 ? (size_t)n : 0;
  }
  return used;
}
