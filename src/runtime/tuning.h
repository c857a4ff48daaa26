/* Per-device tuning entries: the expert GEMM path and kernel parameters,
 * looked up in a user table and then the shipped tuning/devices.tsv. */
#ifndef CLMOE_TUNING_H
#define CLMOE_TUNING_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "clmoe/clmoe.h"

enum { CM_TUNING_MAX_PARAMS = 24 };

typedef struct cm_clblast_params {
  int count; /* 0: CLBlast's own database */
  char names[CM_TUNING_MAX_PARAMS][16];
  size_t values[CM_TUNING_MAX_PARAMS];
} cm_clblast_params;

typedef struct cm_tuning {
  clmoe_experts_path path; /* experts: CLBLAST or GROUPED */
  int rm, vw, lx;          /* grouped kernel: rows, vector width, local size */
  int tc; /* grouped kernel: row tiles per work-item, 0 = an expert's all */
  int pn; /* grouped kernel: software prefetch of the next panels (PN=1) */
  /* The grouped kernel's shape: 0 one work-item per register tile (CPUs),
   * 1 work-group blocks staged in local memory (GPUs) of bm rows x np
   * panels, k tiles of bk, each work-item tm rows x 2 * tn columns. */
  int local_kernel, bm, np, bk, tm, tn;
  cm_clblast_params xgemm, xgemm_direct;
  /* The router GEMM (T x d x E): CLBLAST, or GROUPED on the grouped kernel
   * with the router weight packed at create. */
  clmoe_experts_path router_gemm;
  /* A forward on the grouped path enqueues the whole layer without waiting
   * for the route's N while its slot bound is at most in_flight_max_k per
   * token and its row buffers at most in_flight_max_mib MiB; otherwise it
   * reads N first and sizes the launches exactly. */
  int in_flight_max_k, in_flight_max_mib;
  /* Fused scoring kernels: query rows per work-item (1..16), vector width
   * (4, 8, 16: tiles of 2 * vw keys), local size (0: the driver's). */
  int score_rm, score_vw, score_lx;
  /* 0: the private scoring kernels; n > 0: the work-group ones
   * (cl/score_local.cl), staging n head dimensions at a time in local
   * memory (needs score_lx > 0). */
  int score_dc;
  /* Integer scans of the route: 0 three launches (chunk sums, partials,
   * apply), else one work-group of scan_lx work-items in local memory. */
  int scan_lx;
  char origin[160]; /* "<file>:<line>", for logs and errors */
} cm_tuning;

/* The values a table line leaves unset, and the entry of a device that no
 * line matches: the portable CLBlast paths. */
extern const cm_tuning cm_tuning_defaults;

/* Finds the device's entry: the first matching line of user_file (NULL or
 * "": none), then of the shipped table. Errors: INVALID_ARGUMENT (a file
 * that cannot be read or a malformed line; the detail names file:line). */
clmoe_status cm_tuning_lookup(const clmoe_device_info *info,
                              const char *user_file, cm_tuning *out);

/* The local grouped kernel's work-group: (NP * VW / TN) x (BM / TM)
 * work-items (cl/grouped_gemm_local.cl). */
void cm_tuning_local_shape(const cm_tuning *t, size_t shape[2]);

/* Checks that the device can run the entry's one-work-group scans and its
 * local grouped kernel (work-group size, local memory). Errors:
 * INVALID_ARGUMENT naming the table line, OPENCL. */
clmoe_status cm_tuning_check_device(const cm_tuning *t, cl_device_id device,
                                    const clmoe_device_info *info);

/* Applies the entry's CLBlast parameter sets to the device (process-wide in
 * CLBlast). Errors: CLBLAST. */
clmoe_status cm_tuning_apply_clblast(cl_device_id device, const cm_tuning *t);

#endif /* CLMOE_TUNING_H */
