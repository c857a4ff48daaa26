/* Grow-only workspaces (see workspace.h). */
#include "runtime/workspace.h"

clmoe_status cm_workspace_reserve(clmoe_context *ctx, cm_workspace *ws,
                                  int which, size_t bytes) {
  return cm_buffer_reserve(ctx, &ws->buf[which], &ws->cap[which], bytes);
}

void cm_workspace_release(cm_workspace *ws) {
  cm_kernels_release(&ws->kernels);
  for (int i = 0; i < CM_WS_MAX_BUFFERS; ++i) {
    cm_release_mem(&ws->buf[i]);
    ws->cap[i] = 0;
  }
}
