/* Helpers shared by every clmoe kernel program (OpenCL C 1.2). */

/* Maps a float to a uint whose unsigned order is the float's order
 * (-0 and +0 map to the same key). */
inline uint cm_order_key(float f) {
  uint u = as_uint(f + 0.0f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
