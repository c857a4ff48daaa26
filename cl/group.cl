/* Deterministic integer scans and the stable expert-major grouping of
 * ragged slot lists. Integer-only, so results never depend on scheduling. */

/* Exclusive scan, phase 1: each work-item sums one chunk. */
kernel void scan_chunk_sums(int n, int chunk, global const int *in,
                            global int *partials, int num_chunks) {
  int i = get_global_id(0);
  if (i >= num_chunks)
    return;
  int begin = i * chunk, end = min(n, begin + chunk), s = 0;
  for (int j = begin; j < end; ++j)
    s += in[j];
  partials[i] = s;
}

/* Phase 2: one work-item scans the chunk sums (at most a few thousand) in
 * place and stores the grand total after them. */
kernel void scan_partials(int num_chunks, global int *partials) {
  if (get_global_id(0) != 0)
    return;
  int run = 0;
  for (int i = 0; i < num_chunks; ++i) {
    int v = partials[i];
    partials[i] = run;
    run += v;
  }
  partials[num_chunks] = run;
}

/* Phase 3: each chunk writes its exclusive prefix; out has n + 1 entries and
 * out[n] receives the total. in and out may be the same buffer. */
kernel void scan_apply(int n, int chunk, global const int *in,
                       global const int *partials, int num_chunks,
                       global int *out) {
  int i = get_global_id(0);
  if (i >= num_chunks)
    return;
  int begin = i * chunk, end = min(n, begin + chunk), run = partials[i];
  for (int j = begin; j < end; ++j) {
    int v = in[j];
    out[j] = run;
    run += v;
  }
  if (i == num_chunks - 1)
    out[n] = partials[num_chunks];
}

/* The same exclusive scan in one launch: one work-group of at most
 * SCAN_LOCAL_MAX work-items walks the input in chunks of eight elements per
 * work-item, scans the work-items' sums in local memory (log-step) and
 * carries the chunk total on. For devices where a launch costs more than
 * the scan (GPUs, and pocl at routing sizes). in and out may alias: every
 * element is read and written by one work-item. */
#define SCAN_ITEMS 8
#define SCAN_LOCAL_MAX 1024
kernel void scan_local(int n, global const int *in, global int *out) {
  local int sums[SCAN_LOCAL_MAX];
  int lid = get_local_id(0), L = get_local_size(0), carry = 0;
  for (int base = 0; base < n; base += L * SCAN_ITEMS) {
    int begin = base + lid * SCAN_ITEMS, end = min(n, begin + SCAN_ITEMS);
    int own = 0;
    for (int j = begin; j < end; ++j)
      own += in[j];
    sums[lid] = own;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int off = 1; off < L; off <<= 1) {
      int left = lid >= off ? sums[lid - off] : 0;
      barrier(CLK_LOCAL_MEM_FENCE);
      sums[lid] += left;
      barrier(CLK_LOCAL_MEM_FENCE);
    }
    int run = carry + sums[lid] - own;
    for (int j = begin; j < end; ++j) {
      int v = in[j];
      out[j] = run;
      run += v;
    }
    carry += sums[L - 1];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0)
    out[n] = carry;
}

/* Slot j of token t lives at start(t) + j, j < counts[t], with
 * start(t) = t * stride when stride > 0, else offsets[t]. */
inline int slot_start(int t, int stride, global const int *offsets) {
  return stride > 0 ? t * stride : offsets[t];
}

/* Grouping, phase 1: work-item b counts the slots of its token block per
 * expert into hist[e * num_blocks + b] (expert-major, so an exclusive scan
 * of hist yields every (expert, block) base row). */
kernel void group_count(int T, int E, int block, int num_blocks,
                        global const int *ids, int stride,
                        global const int *offsets, global const int *counts,
                        global int *hist) {
  int b = get_global_id(0);
  if (b >= num_blocks)
    return;
  for (int e = 0; e < E; ++e)
    hist[e * num_blocks + b] = 0;
  int t_end = min(T, (b + 1) * block);
  for (int t = b * block; t < t_end; ++t) {
    int start = slot_start(t, stride, offsets), k = counts[t];
    for (int j = 0; j < k; ++j)
      hist[ids[start + j] * num_blocks + b] += 1;
  }
}

/* Grouping, phase 2 (after the scan of hist): expert_offsets[e] is the base
 * of the expert's first block; expert_offsets[E] the total. */
kernel void group_expert_offsets(int E, int num_blocks, global const int *base,
                                 global int *expert_offsets) {
  int e = get_global_id(0);
  if (e <= E)
    expert_offsets[e] = base[e * num_blocks];
}

/* Grouping, phase 3: rows in ascending token order inside each expert.
 * base is consumed (each work-item advances its own column entries). */
kernel void group_place(int T, int block, int num_blocks, global const int *ids,
                        int stride, global const int *offsets,
                        global const int *counts, global int *base,
                        int write_slot_rows, global int *slot_rows,
                        global int *row_tokens) {
  int b = get_global_id(0);
  if (b >= num_blocks)
    return;
  int t_end = min(T, (b + 1) * block);
  for (int t = b * block; t < t_end; ++t) {
    int start = slot_start(t, stride, offsets), k = counts[t];
    for (int j = 0; j < k; ++j) {
      int cell = ids[start + j] * num_blocks + b;
      int row = base[cell];
      base[cell] = row + 1;
      if (write_slot_rows)
        slot_rows[start + j] = row;
      row_tokens[row] = t;
    }
  }
}
