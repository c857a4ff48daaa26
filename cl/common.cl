/* Helpers shared by every clmoe kernel program (OpenCL C 1.2). */

/* Maps a float to a uint whose unsigned order is the float's order
 * (-0 and +0 map to the same key). */
inline uint cm_order_key(float f) {
  uint u = as_uint(f + 0.0f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* The segment holding x in a non-decreasing offsets[0..n]: the last i < n
 * with offsets[i] <= x (binary search). */
inline int cm_segment_of(global const int *offsets, int n, int x) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (offsets[mid] <= x)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}
