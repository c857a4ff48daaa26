/* Workspaces: device buffers and kernel objects that a stage keeps between
 * calls and grows only, so a steady-state call allocates nothing. A routing
 * object owns one (route, dispatch, experts, combine); a context owns one
 * for scoring. A workspace is used by one call at a time: its owner
 * serialises access. */
#ifndef CLMOE_WORKSPACE_H
#define CLMOE_WORKSPACE_H

#include "runtime/launch.h"

enum { CM_WS_MAX_BUFFERS = 32 };

typedef struct cm_workspace {
  cm_kernels kernels;
  cl_mem buf[CM_WS_MAX_BUFFERS];
  size_t cap[CM_WS_MAX_BUFFERS]; /* bytes held by buf[i] */
} cm_workspace;

/* Makes buffer `which` hold at least `bytes` (at least 4), reallocating
 * (contents lost) only when it is smaller. */
clmoe_status cm_workspace_reserve(clmoe_context *ctx, cm_workspace *ws,
                                  int which, size_t bytes);
/* Releases every buffer and kernel; the workspace is empty afterwards. */
void cm_workspace_release(cm_workspace *ws);

#endif /* CLMOE_WORKSPACE_H */
