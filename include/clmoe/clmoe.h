/*
 * clmoe.h - dynamic Mixture-of-Experts routing and grouped expert compute on
 * OpenCL devices.
 *
 * This header is the library's manual. Conventions that hold for every call:
 *
 *  - Every call that can fail returns a clmoe_status: CLMOE_SUCCESS (0) or a
 *    negative error. On error, clmoe_last_error_detail() returns a sentence
 *    naming the call, the argument and the reason. Output handles are set to
 *    NULL on error. The library never prints, aborts or exits.
 *  - Handles are opaque. clmoe_*_destroy(NULL) is a no-op. A handle created
 *    from a context must be destroyed before that context.
 *  - Descriptor structs start with `size_t struct_size`; fill them with the
 *    matching clmoe_*_desc_init() and then set the fields you need. Structs
 *    are only ever passed by pointer, so they can grow without breaking the
 *    ABI: a caller compiled against an older, smaller struct keeps working.
 *    Every descriptor's *_init is a macro over *_init_sized that passes the
 *    caller's sizeof, and the plain symbol still initialises exactly the
 *    0.1 size (bindings calling the symbol by name use the sized one with
 *    their own struct size).
 *  - A NULL descriptor means the defaults of its *_init where those alone
 *    make a complete request (clmoe_context_create, clmoe_score_attention);
 *    calls that need the caller's data (clmoe_router_create,
 *    clmoe_experts_create) return CLMOE_ERROR_NULL_POINTER for it.
 *  - Enumerations are int32_t with explicit values that never change.
 *  - Tensors are dense and row-major, rank 1 to 4, float32, int32, float16
 *    or bfloat16.
 *  - Device work is enqueued, in order, on the context's command queue.
 *    Calls that take (num_wait_events, wait_events, out_event) wait for the
 *    listed events first; when out_event is not NULL it receives a new event
 *    that completes with the call's device work, and the caller owns it
 *    (release with clReleaseEvent).
 *  - Thread safety: a context may be shared between threads; it serialises
 *    its own shared state (program builds, caches). Tensors, routers and
 *    routing objects may be read by several threads, but a call that writes
 *    an object (a tensor written, a routing filled) needs exclusive use of it.
 *
 * Stable interface. Symbols are exported with the clmoe_ prefix only.
 */
#ifndef CLMOE_CLMOE_H
#define CLMOE_CLMOE_H

#include <stddef.h>
#include <stdint.h>

#include "clmoe/clmoe_cl_types.h"
#include "clmoe/clmoe_export.h"
#include "clmoe/clmoe_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

/* CLMOE_VERSION_MAJOR, _MINOR, _PATCH and CLMOE_VERSION_STRING come from
 * clmoe_version.h, generated from the build's version. */
/* MAJOR * 10000 + MINOR * 100 + PATCH, as returned by clmoe_version_number(). */
#define CLMOE_VERSION_NUMBER                                                   \
  (CLMOE_VERSION_MAJOR * 10000 + CLMOE_VERSION_MINOR * 100 + CLMOE_VERSION_PATCH)

/* Version of the library actually loaded (e.g. "0.2.0"); never NULL. */
CLMOE_API const char *clmoe_version_string(void);
/* Version of the library actually loaded, as CLMOE_VERSION_NUMBER. */
CLMOE_API int32_t clmoe_version_number(void);

/* ------------------------------------------------------------------------ */
/* Status codes and error detail                                             */
/* ------------------------------------------------------------------------ */

typedef int32_t clmoe_status;
enum {
  CLMOE_SUCCESS = 0,
  CLMOE_ERROR_INVALID_ARGUMENT = -1,    /* a parameter value is out of range */
  CLMOE_ERROR_NULL_POINTER = -2,        /* a required pointer is NULL */
  CLMOE_ERROR_INVALID_STRUCT_SIZE = -3, /* struct_size too small or unknown */
  CLMOE_ERROR_SHAPE_MISMATCH = -4,      /* tensor shape does not fit */
  CLMOE_ERROR_DTYPE_MISMATCH = -5,      /* tensor dtype does not fit */
  CLMOE_ERROR_DEVICE_NOT_FOUND = -6,    /* no OpenCL device matches */
  CLMOE_ERROR_OPENCL = -7,              /* an OpenCL call failed */
  CLMOE_ERROR_BUILD_FAILED = -8,        /* kernel compilation failed */
  CLMOE_ERROR_OUT_OF_HOST_MEMORY = -9,
  CLMOE_ERROR_OUT_OF_DEVICE_MEMORY = -10,
  CLMOE_ERROR_NONFINITE_INPUT = -11, /* NaN or Inf in an input */
  CLMOE_ERROR_TOO_LARGE = -12,       /* sizes overflow 32-bit indices or the
                                        device's allocation limit */
  CLMOE_ERROR_UNSUPPORTED = -13,     /* valid request the device/build lacks */
  CLMOE_ERROR_CLBLAST = -14,         /* a CLBlast call failed */
  CLMOE_ERROR_CONTEXT_MISMATCH = -15, /* objects from different contexts */
  /* Since 0.3, files (clmoe_checkpoint.h): */
  CLMOE_ERROR_IO = -16,       /* a file cannot be opened, read or mapped */
  CLMOE_ERROR_BAD_FILE = -17, /* a file is malformed (the detail says how) */
  CLMOE_ERROR_NOT_FOUND = -18, /* a named tensor or file is not there */
  CLMOE_ERROR_MPI = -19 /* an MPI call failed (clmoe_mpi.h) */
};

/* Name of a status ("CLMOE_ERROR_SHAPE_MISMATCH"); never NULL, also for
 * unknown values ("CLMOE_UNKNOWN_STATUS"). */
CLMOE_API const char *clmoe_status_string(clmoe_status status);

/* Detail of the last error raised by a clmoe call on the calling thread; ""
 * when there was none. Never NULL. The text stays valid until the next
 * failing clmoe call on the same thread. Successful calls leave it alone. */
CLMOE_API const char *clmoe_last_error_detail(void);
/* Since 0.3. Sets this thread's error detail to `detail` (truncated to the
 * detail buffer) and returns `status`: for layers built on clmoe's API
 * (libclmoe_mpi, bindings) so that clmoe_last_error_detail describes their
 * errors too. NULL clears it. */
CLMOE_API clmoe_status clmoe_set_error_detail(clmoe_status status,
                                              const char *detail);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */

typedef int32_t clmoe_log_level;
enum {
  CLMOE_LOG_DEBUG = 0,
  CLMOE_LOG_INFO = 1,
  CLMOE_LOG_WARNING = 2,
  CLMOE_LOG_ERROR = 3
};

/* Receives the library's messages. Called on the thread that made the clmoe
 * call, possibly several threads at once for a shared context. `message` is
 * only valid during the call. Messages about kernel programs start with
 * "program <name>: " and then "built from source", "loaded from cache" or
 * "cache entry rejected", so a caller can count compilations. */
typedef void (*clmoe_log_fn)(void *user_data, clmoe_log_level level,
                             const char *message);

/* ------------------------------------------------------------------------ */
/* Device selection                                                          */
/* ------------------------------------------------------------------------ */

/* Device selector strings (CLMOE_DEVICE or clmoe_context_desc.device):
 *   "gpu"      first GPU device;        "cpu"  first CPU device;
 *   "<n>"      the n-th device (0-based) over all platforms, in platform order
 *              and then device order, as clmoe-info numbers them;
 *   otherwise  the first device whose platform name or device name contains
 *              the string, compared case-insensitively.
 * Empty or NULL: the first GPU, else the first accelerator, else the first
 * CPU device. */

typedef struct clmoe_device_choice {
  size_t struct_size;
  cl_platform_id platform;
  cl_device_id device;
  int32_t index;      /* global device index, as "<n>" selects */
  char reason[256];   /* why this device was chosen, one sentence */
} clmoe_device_choice;

CLMOE_API void clmoe_device_choice_init(clmoe_device_choice *choice);

/* Applies the selection rules above to `selector` (NULL: use CLMOE_DEVICE,
 * then the default rule). Errors: CLMOE_ERROR_DEVICE_NOT_FOUND (the detail
 * lists every visible device), CLMOE_ERROR_OPENCL, NULL_POINTER,
 * INVALID_STRUCT_SIZE. Thread-safe. */
CLMOE_API clmoe_status clmoe_device_select(const char *selector,
                                           clmoe_device_choice *choice);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct clmoe_context clmoe_context;

enum {
  /* Do not read or write the on-disk program cache. */
  CLMOE_CONTEXT_NO_DISK_CACHE = 1u << 0
};

typedef struct clmoe_context_desc {
  size_t struct_size;
  /* Interop: the caller's OpenCL objects. Either all NULL (clmoe picks a
   * device and creates its own context and queue) or cl_context and
   * cl_device both set; cl_queue may be NULL (clmoe then creates one on
   * cl_context). The caller's objects are retained, never released beyond
   * that, and must use an in-order queue. */
  cl_context cl_context;
  cl_device_id cl_device;
  cl_command_queue cl_queue;
  /* Device selector when no cl_context is given; NULL reads CLMOE_DEVICE. */
  const char *device;
  /* Program cache directory; NULL: $CLMOE_CACHE_DIR, else
   * $XDG_CACHE_HOME/clmoe, else $HOME/.cache/clmoe. */
  const char *cache_dir;
  uint32_t flags; /* CLMOE_CONTEXT_* */
  clmoe_log_fn log_fn;
  void *log_user_data;
  /* Since 0.2. Extra device tuning table (same format as the shipped
   * tuning/devices.tsv: see README "Performance"); its lines are tried before
   * the shipped ones. NULL: $CLMOE_TUNING_FILE, else none. */
  const char *tuning_file;
} clmoe_context_desc;

/* Fills the first `size` bytes of *desc (at most sizeof(clmoe_context_desc))
 * with defaults (everything NULL/0) and sets struct_size to that size.
 * Call it through the clmoe_context_desc_init(desc) macro, which passes the
 * caller's own sizeof *desc, so a binary built against an older, smaller
 * struct is never written past its end. */
CLMOE_API void clmoe_context_desc_init_sized(clmoe_context_desc *desc,
                                             size_t size);
/* The 0.1 entry point, kept for binaries built against 0.1: initialises the
 * 0.1 fields only (up to log_user_data). */
CLMOE_API void(clmoe_context_desc_init)(clmoe_context_desc *desc);
#define clmoe_context_desc_init(desc)                                          \
  clmoe_context_desc_init_sized((desc), sizeof *(desc))

/* Creates a context. desc may be NULL (all defaults). The device's tuning
 * entry (first matching line of the user's table, then of the shipped one)
 * picks the expert path and its kernel parameters; when the entry has
 * CLBlast parameter sets they are applied with CLBlastOverrideParameters,
 * which CLBlast keeps per device for the whole process. Kernel programs are
 * built lazily, once per context, on first use (or by
 * clmoe_context_build_programs) and cached on disk, keyed by device, driver
 * version, build options and source; a corrupt or foreign cache file is
 * ignored and rebuilt. Errors: DEVICE_NOT_FOUND, OPENCL, UNSUPPORTED
 * (out-of-order queue), INVALID_ARGUMENT (cl_device without cl_context; a
 * tuning file that cannot be read or parsed: the detail names file and
 * line), CLBLAST (CLBlast refused a tuned parameter set),
 * INVALID_STRUCT_SIZE, OUT_OF_HOST_MEMORY. */
CLMOE_API clmoe_status clmoe_context_create(const clmoe_context_desc *desc,
                                            clmoe_context **out);

/* Releases the context's OpenCL objects and programs. NULL is a no-op. All
 * objects created from it must be destroyed first. */
CLMOE_API void clmoe_context_destroy(clmoe_context *ctx);

/* Builds (or loads from the cache) every kernel program now, so that later
 * calls do not pay for compilation. Errors: BUILD_FAILED (detail holds the
 * build log), OPENCL. */
CLMOE_API clmoe_status clmoe_context_build_programs(clmoe_context *ctx);

typedef int32_t clmoe_device_type;
enum {
  CLMOE_DEVICE_TYPE_OTHER = 0,
  CLMOE_DEVICE_TYPE_CPU = 1,
  CLMOE_DEVICE_TYPE_GPU = 2,
  CLMOE_DEVICE_TYPE_ACCELERATOR = 3
};

typedef struct clmoe_device_info {
  size_t struct_size;
  char name[256];
  char vendor[256];
  char platform_name[256];
  char version[128];        /* CL_DEVICE_VERSION */
  char driver_version[128]; /* CL_DRIVER_VERSION */
  clmoe_device_type type;
  int32_t has_fp16; /* cl_khr_fp16 arithmetic */
  int32_t has_fp64; /* cl_khr_fp64 or CL_DEVICE_DOUBLE_FP_CONFIG */
  int32_t compute_units;
  uint64_t global_mem_bytes;
  uint64_t max_alloc_bytes;
  uint64_t local_mem_bytes;
} clmoe_device_info;

CLMOE_API void clmoe_device_info_init(clmoe_device_info *info);

/* Describes the context's device. Thread-safe. Errors: NULL_POINTER,
 * INVALID_STRUCT_SIZE. */
CLMOE_API clmoe_status clmoe_context_get_device_info(const clmoe_context *ctx,
                                                     clmoe_device_info *info);

/* The context's OpenCL objects (borrowed; do not release). Any out pointer
 * may be NULL. */
CLMOE_API clmoe_status clmoe_context_get_cl(const clmoe_context *ctx,
                                            cl_context *context,
                                            cl_device_id *device,
                                            cl_command_queue *queue);

/* Blocks until all work enqueued on the context's queue has finished. */
CLMOE_API clmoe_status clmoe_context_finish(clmoe_context *ctx);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct clmoe_tensor clmoe_tensor;

/* Element types. F16 is IEEE binary16, BF16 bfloat16 (the upper half of a
 * float32); both are storage types: kernels widen them to float32 and
 * accumulate in float32, so no device half-precision arithmetic is needed. */
typedef int32_t clmoe_dtype;
enum {
  CLMOE_DTYPE_F32 = 1,
  CLMOE_DTYPE_I32 = 2,
  CLMOE_DTYPE_F16 = 3, /* since 0.3 */
  CLMOE_DTYPE_BF16 = 4, /* since 0.3 */
  /* Since 0.4: quantized storage of expert weights
   * (clmoe_experts_desc.weight_dtype; not tensor dtypes). Each expert
   * matrix is taken in its logical [out, in] form ("in" is the contraction
   * dimension); a weight is code * scale, and every product and sum is
   * float32. Exact definitions in docs/quantization.md of the source tree.
   *   F8_E4M3  one byte per weight, e4m3fn (bias 7, subnormals, 0x7F and
   *            0xFF NaN, no Inf, max 448), one scale per 128 x 128 block
   *            (edge blocks partial); clmoe's quantizer: s = amax / 448
   *            (1 when amax = 0), code = RNE(w / s) saturating to +-448.
   *   MXFP4    E2M1 codes {0, .5, 1, 1.5, 2, 3, 4, 6} and their negatives,
   *            two per byte (element k of a group in byte k / 2, the low
   *            nibble for even k), one e8m0 scale 2^(b - 127) per 32
   *            consecutive "in" elements; quantizer: e = floor(log2(amax))
   *            - 2 clamped to [-127, 127] (-127 when amax = 0), code =
   *            RNE(w / 2^e) saturating to +-6. Needs in % 32 == 0.
   *   I8       int8 codes in [-127, 127], one float32 scale per output row
   *            (amax / 127, 1 when amax = 0), code = RNE(w / s).
   *   I4       int4 codes in [-7, 7] (two's complement nibbles, packed as
   *            MXFP4), one float32 scale per 32 "in" elements (amax / 7, 1
   *            when amax = 0). Needs in % 32 == 0. */
  CLMOE_DTYPE_F8_E4M3 = 5,
  CLMOE_DTYPE_MXFP4 = 6,
  CLMOE_DTYPE_I8 = 7,
  CLMOE_DTYPE_I4 = 8,
  /* Since 0.4, decode only (clmoe_convert, checkpoint tensors): */
  CLMOE_DTYPE_F8_E5M2 = 9, /* e5m2: bias 15, Inf and NaN as IEEE */
  CLMOE_DTYPE_U8 = 10,     /* unsigned byte */
  CLMOE_DTYPE_E8M0 = 11    /* MX scale byte: 2^(b - 127); 0xFF NaN */
};

/* Converts `count` elements between F32, F16 and BF16 on the host
 * (src_dtype == dst_dtype copies). Narrowing rounds to nearest even; NaN
 * stays NaN (sign and leading payload bits kept), +-Inf stays Inf, -0 stays
 * -0, subnormals are rounded exactly. A finite value too large for the
 * destination becomes +-Inf, as IEEE, numpy and torch round it (since 0.4;
 * clmoe_convert_ex with CLMOE_CONVERT_STRICT keeps the 0.3 error). Since
 * 0.4 it also decodes the element codes of F8_E4M3, F8_E5M2, MXFP4 and I4
 * (4-bit codes two per byte, element i in byte i / 2, the low nibble for
 * even i), I8, U8 and E8M0 into F32, without any scale (dst_dtype must be
 * F32). Errors: INVALID_ARGUMENT (other dtype pairs, a negative count),
 * NULL_POINTER. Thread-safe. */
CLMOE_API clmoe_status clmoe_convert(clmoe_dtype src_dtype, const void *src,
                                     clmoe_dtype dst_dtype, void *dst,
                                     int64_t count);

enum {
  /* clmoe_convert_ex: a finite value that would round to Inf is an error
   * (INVALID_ARGUMENT naming the element; dst is then partly written) */
  CLMOE_CONVERT_STRICT = 1u << 0
};
/* Since 0.4. clmoe_convert with flags (CLMOE_CONVERT_*). */
CLMOE_API clmoe_status clmoe_convert_ex(clmoe_dtype src_dtype, const void *src,
                                        clmoe_dtype dst_dtype, void *dst,
                                        int64_t count, uint32_t flags);

#define CLMOE_MAX_RANK 4

/* Creates a device tensor of `dtype` and `shape[0..rank)` (rank 1..4, every
 * dimension >= 0; a zero dimension gives an empty tensor). host_data, when
 * not NULL, holds numel * element-size bytes copied to the device before the
 * call returns; when NULL the tensor is zero-filled. Errors: NULL_POINTER,
 * INVALID_ARGUMENT (rank, negative dimension, dtype), TOO_LARGE (more bytes
 * than CL_DEVICE_MAX_MEM_ALLOC_SIZE or more than 2^31-1 elements),
 * OUT_OF_DEVICE_MEMORY, OPENCL. */
CLMOE_API clmoe_status clmoe_tensor_create(clmoe_context *ctx,
                                           clmoe_dtype dtype, int32_t rank,
                                           const int64_t *shape,
                                           const void *host_data,
                                           clmoe_tensor **out);

/* Wraps the caller's buffer `mem` as a tensor without copying. The buffer
 * must belong to the context's cl_context and hold at least numel *
 * element-size bytes. clmoe retains `mem` for the tensor's lifetime and
 * releases only that reference: the memory stays the caller's. Errors as
 * clmoe_tensor_create, plus SHAPE_MISMATCH (buffer too small). */
CLMOE_API clmoe_status clmoe_tensor_wrap(clmoe_context *ctx, cl_mem mem,
                                         clmoe_dtype dtype, int32_t rank,
                                         const int64_t *shape,
                                         clmoe_tensor **out);

/* Destroys the tensor (and its buffer, unless wrapped). NULL is a no-op. */
CLMOE_API void clmoe_tensor_destroy(clmoe_tensor *tensor);

/* Blocking copies between the tensor and host memory, ordered after all
 * work already enqueued on the context's queue. `bytes` must equal the
 * tensor's size in bytes. Errors: NULL_POINTER, SHAPE_MISMATCH (bytes),
 * OPENCL. */
CLMOE_API clmoe_status clmoe_tensor_read(const clmoe_tensor *tensor,
                                         void *host, size_t bytes);
CLMOE_API clmoe_status clmoe_tensor_write(clmoe_tensor *tensor,
                                          const void *host, size_t bytes);

/* Shape queries. `shape` receives `rank` entries (give room for
 * CLMOE_MAX_RANK); any out pointer may be NULL. */
CLMOE_API clmoe_status clmoe_tensor_get_shape(const clmoe_tensor *tensor,
                                              int32_t *rank, int64_t *shape);
CLMOE_API clmoe_status clmoe_tensor_get_dtype(const clmoe_tensor *tensor,
                                              clmoe_dtype *dtype);
/* Number of elements (product of the shape). */
CLMOE_API clmoe_status clmoe_tensor_get_numel(const clmoe_tensor *tensor,
                                              int64_t *numel);
/* The underlying buffer (borrowed; do not release). */
CLMOE_API clmoe_status clmoe_tensor_get_cl_mem(const clmoe_tensor *tensor,
                                               cl_mem *mem);

/* ------------------------------------------------------------------------ */
/* Router                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct clmoe_router clmoe_router;

/* Policies; exact semantics in docs/policies.md of the source tree.
 * P = softmax(logits) in fp32 with max subtraction. "Sorted" below means by
 * the fp32 P descending, ties (equal fp32 values) by lower expert id; for
 * the 0.4 routers (sigmoid scores, a selection bias, groups) by C = s + b
 * among the allowed experts, and probabilities read as the token
 * distribution pi (see clmoe_router_desc). */
typedef int32_t clmoe_policy;
enum {
  /* first k of sorted. */
  CLMOE_POLICY_TOPK = 1,
  /* fewest experts whose cumulative probability exceeds p (strictly); E when
   * none does; then clamped to [k_min, k_max]. */
  CLMOE_POLICY_TOPP = 2,
  /* DA-MoE: K_t = clamp(ceil(s_t * k_max), k_min, k_max) from an importance
   * s_t (clamped to [0,1]); or, with k_mean > 0, a fixed batch budget (see
   * clmoe_router_desc.k_mean). */
  CLMOE_POLICY_IMPORTANCE = 3,
  /* Expert-Token Resonance: every token proposes its first k of sorted; each
   * expert accepts at most C = ceil(capacity_factor * T * k / E) proposals,
   * highest affinity first (ties by lower token index). */
  CLMOE_POLICY_RESONANCE = 4,
  /* every expert takes its top C = ceil(capacity_factor * T / E) tokens by
   * probability (ties by lower token index). */
  CLMOE_POLICY_EXPERT_CHOICE = 5
};

typedef int32_t clmoe_gate_mode;
enum {
  CLMOE_GATES_DEFAULT = 0, /* the policy's default (see desc) */
  CLMOE_GATES_RENORM = 1,  /* P / sum of P over the token's kept slots */
  CLMOE_GATES_RAW = 2      /* P itself */
};

typedef int32_t clmoe_overflow;
enum {
  /* an expert over capacity keeps its highest-probability slots (ties by
   * lower token index) */
  CLMOE_OVERFLOW_DROP_LOWEST_GATE = 0,
  /* an expert over capacity keeps its earliest tokens (Switch/GShard) */
  CLMOE_OVERFLOW_DROP_LATEST_TOKEN = 1
};

typedef int32_t clmoe_affinity;
enum {
  CLMOE_AFFINITY_PROB = 0,  /* router probability P[t,e] */
  CLMOE_AFFINITY_COSINE = 1 /* cos(x_t, W_r[:,e]); needs x, not logits */
};

typedef int32_t clmoe_fallback;
enum {
  CLMOE_FALLBACK_NONE = 0, /* a token with no accepted proposal gets K = 0 */
  CLMOE_FALLBACK_TOP1 = 1  /* ... gets its top-1 expert anyway */
};

/* Since 0.4. How router logits become expert scores s (docs/policies.md). */
typedef int32_t clmoe_scoring;
enum {
  CLMOE_SCORING_SOFTMAX = 0, /* s = softmax(z) over all E (default) */
  CLMOE_SCORING_SIGMOID = 1  /* s_e = sigmoid(z_e) (DeepSeek-V3, Llama 4) */
};

/* Since 0.4. How a group of experts is scored for group-limited routing. */
typedef int32_t clmoe_group_score;
enum {
  /* sum of the group's two largest selection values C = s + b (DeepSeek-V3
   * "noaux_tc"; needs groups of at least 2 experts) */
  CLMOE_GROUP_SCORE_TOP2_SUM = 0,
  /* the group's largest C (DeepSeek-V2 "group_limited_greedy") */
  CLMOE_GROUP_SCORE_MAX = 1
};

/* Since 0.4. Where a slot's gate is applied. */
typedef int32_t clmoe_gate_position;
enum {
  /* y_t = sum_j g_j * Expert_j(x_t) (default) */
  CLMOE_GATE_OUTPUT = 0,
  /* y_t = sum_j Expert_j(g_j * x_t) (Llama 4): dispatch scales each row by
   * its slot's gate and combine adds the expert outputs with weight 1 */
  CLMOE_GATE_INPUT = 1
};

typedef struct clmoe_router_desc {
  size_t struct_size;
  int32_t num_experts; /* E, 1..1024 */
  /* d, >= 1; may be 0 when no weight is given: such a router only routes
   * logits (clmoe_route_logits). */
  int32_t d_model;
  clmoe_policy policy;
  int32_t k;   /* TOPK, RESONANCE: 1..E (default 2, which needs E >= 2) */
  float p;     /* TOPP: in (0, 1] (default 0.4) */
  int32_t k_min; /* TOPP, IMPORTANCE: 0..k_max (default 1) */
  int32_t k_max; /* TOPP, IMPORTANCE: k_min..E; 0 means E (default 0) */
  /* IMPORTANCE: 0 (default) = per-token K. > 0: the batch gets
   * B = round(T * k_mean) slots in all (k_min <= k_mean <= k_max). Every
   * token first gets k_min; the remaining B - T*k_min are shared in
   * proportion to w_t = floor(s_t * 65536 + 0.5) with each token capped at
   * k_max (water-filling: tokens whose share would pass the cap get exactly
   * the cap, the rest is shared again), then by largest remainder, ties by
   * lower token index. Integer arithmetic: exact and reproducible. When all
   * w_t are 0 every token weighs 1. */
  float k_mean;
  /* TOPK/TOPP/IMPORTANCE: <= 0 (default) dropless; > 0: each expert keeps at
   * most C = ceil(capacity_factor * N_proposed / E) slots (fp32 arithmetic),
   * resolved by `overflow`. RESONANCE/EXPERT_CHOICE: 0 means 1.0; must not
   * be negative. */
  float capacity_factor;
  clmoe_overflow overflow;
  /* DEFAULT: RAW for TOPP and EXPERT_CHOICE, RENORM for the others. */
  clmoe_gate_mode gates;
  clmoe_affinity affinity; /* RESONANCE only */
  clmoe_fallback fallback; /* RESONANCE only */
  /* Router weight W_r[d, E] row-major, from host memory or a float32 tensor
   * of shape [d, E] (set at most one). Copied: the caller keeps ownership. */
  const float *weight_host;
  const clmoe_tensor *weight;
  /* Optional bias [E], host or float32 tensor [E]; added to x * W_r. */
  const float *bias_host;
  const clmoe_tensor *bias;
  /* Since 0.3. dtype of weight_host: F32 (default; 0 also means F32), F16
   * or BF16 (pass the 16-bit array cast to const float *); a weight tensor
   * may be float32, float16 or bfloat16. A 16-bit weight is widened exactly
   * to float32 at create: logits and softmax are computed in float32. */
  clmoe_dtype weight_dtype;
  /* ---- Since 0.4: the routers of DeepSeek-V2/V3, Kimi K2, GLM-4.5,
   * gpt-oss and Llama 4. Exact semantics in docs/policies.md; in short:
   * z = x W_r (+ bias); s = softmax(z) or sigmoid(z); C = s + selection
   * bias; the experts are split into num_groups consecutive groups, each
   * scored by group_score over its C, and only the topk_groups best groups
   * (ties to the lower group index) are allowed. Every policy orders the
   * allowed experts by C descending, ties to the lower expert id ("sorted"
   * above means this order). TOPK's gates are s of the kept experts (RAW)
   * or s / (their sum) (RENORM; plus 1e-20 in the sum for SIGMOID, as
   * DeepSeek-V3); the other policies read the token distribution
   * pi_e = s_e / (sum of s over the allowed experts) (pi = P exactly for a
   * softmax router whose allowed set is every expert): TOPP accumulates pi
   * in the order above, RESONANCE / EXPERT_CHOICE rank by pi, and their
   * gates are pi (RAW) or pi / (sum of the kept pi) (RENORM). Every gate is
   * then multiplied by gate_scale. The routing's stats (mean_prob, entropy,
   * balance loss) are computed over pi. */
  clmoe_scoring scoring;
  /* Optional selection bias b [E] (DeepSeek-V3's e_score_correction_bias),
   * host float32 or a float32 tensor [E] (set at most one; copied). It
   * steers selection only and never enters a gate. Non-finite entries are
   * INVALID_ARGUMENT. */
  const float *selection_bias_host;
  const clmoe_tensor *selection_bias;
  /* Group-limited routing: 0 or 1 = no groups. Otherwise num_groups must
   * divide E, and topk_groups (1..num_groups; 0 = num_groups) groups are
   * kept. k (TOPK, RESONANCE) and k_max (TOPP, IMPORTANCE; 0 = all the kept
   * groups hold) may not exceed the experts the kept groups hold. */
  int32_t num_groups;
  int32_t topk_groups;
  clmoe_group_score group_score;
  /* Multiplies every gate (DeepSeek's routed_scaling_factor); finite and
   * > 0; default 1. */
  float gate_scale;
  /* Where the gates are applied; recorded in the routing, so that
   * clmoe_dispatch / clmoe_combine and the forward honour it on both
   * expert paths. */
  clmoe_gate_position gate_position;
} clmoe_router_desc;

/* Fills the first `size` bytes of *desc (at most sizeof(clmoe_router_desc))
 * with defaults: TOPK, k = 2, p = 0.4, k_min = 1, k_max = 0 (= E),
 * k_mean = 0, capacity_factor = 0, DROP_LOWEST_GATE, GATES_DEFAULT, PROB,
 * FALLBACK_NONE, no weight, no bias, SOFTMAX, no selection bias, no groups,
 * TOP2_SUM, gate_scale 1, GATE_OUTPUT; struct_size is set to that size. Call it
 * through the clmoe_router_desc_init(desc) macro (the caller's sizeof). */
CLMOE_API void clmoe_router_desc_init_sized(clmoe_router_desc *desc,
                                            size_t size);
/* The 0.1 entry point: initialises the 0.1 fields only (up to bias). */
CLMOE_API void(clmoe_router_desc_init)(clmoe_router_desc *desc);
#define clmoe_router_desc_init(desc)                                           \
  clmoe_router_desc_init_sized((desc), sizeof *(desc))

/* Creates a router. Every invalid parameter or combination is rejected here
 * with INVALID_ARGUMENT and a detail naming the field (E outside 1..1024,
 * k > E, p outside (0,1], k_min > k_max, k_mean outside [k_min, k_max],
 * COSINE without a weight, E not divisible by num_groups, topk_groups >
 * num_groups, k or k_max above the experts the kept groups hold, TOP2_SUM
 * over one-expert groups, a non-finite selection bias, gate_scale not
 * finite and > 0, unknown scoring / group_score / gate_position, ...). Errors also: NULL_POINTER,
 * INVALID_STRUCT_SIZE, SHAPE_MISMATCH/DTYPE_MISMATCH (weight tensors),
 * CONTEXT_MISMATCH, OUT_OF_DEVICE_MEMORY, OPENCL. Thread-safe. */
CLMOE_API clmoe_status clmoe_router_create(clmoe_context *ctx,
                                           const clmoe_router_desc *desc,
                                           clmoe_router **out);
CLMOE_API void clmoe_router_destroy(clmoe_router *router);
/* Since 0.3. The router's E, d and policy; any out pointer may be NULL.
 * Thread-safe. Errors: NULL_POINTER. */
CLMOE_API clmoe_status clmoe_router_get_shape(const clmoe_router *router,
                                              int32_t *num_experts,
                                              int32_t *d_model,
                                              clmoe_policy *policy);
/* Since 0.4. Where the router's gates are applied (clmoe_router_desc.
 * gate_position). Thread-safe. Errors: NULL_POINTER. */
CLMOE_API clmoe_status clmoe_router_get_gate_position(
    const clmoe_router *router, clmoe_gate_position *position);

/* ------------------------------------------------------------------------ */
/* Routing result                                                            */
/* ------------------------------------------------------------------------ */

typedef struct clmoe_routing clmoe_routing;

/* The device arrays of a routing (int32 unless noted). T tokens, E experts,
 * N slots in all. */
typedef int32_t clmoe_routing_array;
enum {
  CLMOE_ROUTING_COUNTS = 0,         /* [T]   K_t */
  CLMOE_ROUTING_TOKEN_OFFSETS = 1,  /* [T+1] CSR row pointer into slots */
  CLMOE_ROUTING_EXPERT_IDS = 2,     /* [N]   expert of each slot; inside a
                                       token by gate descending, ties by
                                       lower expert id */
  CLMOE_ROUTING_GATES = 3,          /* [N]   float32 weight of each slot */
  CLMOE_ROUTING_EXPERT_OFFSETS = 4, /* [E+1] expert-major row pointer */
  CLMOE_ROUTING_SLOT_ROWS = 5,      /* [N]   row of each slot in x_sorted */
  CLMOE_ROUTING_ROW_TOKENS = 6      /* [N]   token of each x_sorted row
                                       (ascending inside each expert) */
};

/* Creates an empty routing object owned by the caller. Its device arrays
 * grow when a route needs more room and are reused otherwise. */
CLMOE_API clmoe_status clmoe_routing_create(clmoe_context *ctx,
                                            clmoe_routing **out);
CLMOE_API void clmoe_routing_destroy(clmoe_routing *routing);

/* T, E and N of the last successful route (all 0 for an empty routing);
 * known on the host, no device access. Any pointer may be NULL. */
CLMOE_API clmoe_status clmoe_routing_get_sizes(clmoe_routing *routing,
                                               int64_t *num_tokens,
                                               int64_t *num_experts,
                                               int64_t *num_slots);

/* A tensor view of one array, shaped as listed above. The view is owned by
 * the routing and valid until the next route into it or its destruction; do
 * not destroy it. Errors: INVALID_ARGUMENT (unknown array), NULL_POINTER. */
CLMOE_API clmoe_status clmoe_routing_get_array(clmoe_routing *routing,
                                               clmoe_routing_array which,
                                               const clmoe_tensor **view);

typedef struct clmoe_routing_stats {
  size_t struct_size;
  int64_t num_tokens;   /* T */
  int64_t num_experts;  /* E */
  int64_t num_slots;    /* N = sum of K_t */
  /* assignments proposed but not kept: capacity overflow and rejected
   * resonance proposals (a TOP1 fallback slot counts as kept). 0 for
   * EXPERT_CHOICE. */
  int64_t dropped;
  double mean_k; /* N / T (0 when T = 0) */
  int32_t min_k; /* 0 when T = 0 */
  int32_t max_k;
  /* E * sum_i f_i * Q_i with f_i = (slots of expert i) / N and Q_i the mean
   * router probability of expert i over tokens; 1.0 when perfectly
   * balanced, 0 when N = 0. */
  double balance_loss;
  double mean_entropy; /* mean over tokens of -sum_i P log P (nats) */
  /* Optional caller arrays (NULL to skip): k_histogram[E+1] counts tokens
   * with K_t = 0..E; expert_load[E] = f_i; mean_prob[E] = Q_i. Their length
   * must be at least E+1, E and E; give it in `array_capacity` (in elements
   * of the largest, i.e. >= E+1). */
  int64_t *k_histogram;
  float *expert_load;
  float *mean_prob;
  int64_t array_capacity;
} clmoe_routing_stats;

CLMOE_API void clmoe_routing_stats_init(clmoe_routing_stats *stats);

/* Reads the stats of the last route (computed on the device, one small
 * transfer). Errors: NULL_POINTER, INVALID_STRUCT_SIZE, INVALID_ARGUMENT
 * (array_capacity too small with arrays given), OPENCL. */
CLMOE_API clmoe_status clmoe_routing_read_stats(clmoe_routing *routing,
                                                clmoe_routing_stats *stats);

/* Since 0.3. Makes `routing` describe rows that arrive already grouped by
 * expert: rows [0, group_rows[0]) go to expert 0, the next group_rows[1]
 * to expert 1, and so on (T = N = the sum); each row is its own token with
 * one slot of gate 1, so dispatch is the identity, clmoe_experts_run runs
 * each expert on its group, and combine copies. For expert parallelism
 * (rows received from other ranks) and for callers with their own router.
 * Blocks while it writes the arrays. Errors: NULL_POINTER,
 * INVALID_ARGUMENT (num_experts outside 1..1024, a negative count),
 * TOO_LARGE, OPENCL, OUT_OF_HOST_MEMORY. */
CLMOE_API clmoe_status clmoe_routing_set_groups(clmoe_routing *routing,
                                                int32_t num_experts,
                                                const int32_t *group_rows);

/* ------------------------------------------------------------------------ */
/* Route                                                                     */
/* ------------------------------------------------------------------------ */

/* Routes x[T, d] (float32; float16 or bfloat16 since 0.3, widened to a
 * float32 copy in the routing first): logits = x * W_r (+ bias) (CLBlast,
 * or the grouped kernel where the device's tuning entry says
 * ROUTER=grouped), then the scores (softmax, or sigmoid), the kept groups
 * and the router's policy on the device, into `routing`, which records the
 * router's gate position for dispatch and combine.
 * importance[T] (float32) is required for IMPORTANCE and ignored otherwise
 * (may be NULL). The call enqueues its work, then blocks for one 4-byte
 * read that tells whether the logits were finite; on return the routing is
 * complete. On any error the routing is left empty (T = N = 0).
 * Errors: NULL_POINTER, SHAPE_MISMATCH, DTYPE_MISMATCH, CONTEXT_MISMATCH,
 * UNSUPPORTED (router has no weight), NONFINITE_INPUT (the detail names the
 * first token with a NaN/Inf logit or importance), TOO_LARGE (T*E or the
 * slot arrays overflow int32), CLBLAST, OPENCL, OUT_OF_DEVICE_MEMORY.
 * The router may be shared between threads; the routing may not. */
CLMOE_API clmoe_status clmoe_route(clmoe_router *router,
                                   const clmoe_tensor *x,
                                   const clmoe_tensor *importance,
                                   clmoe_routing *routing,
                                   uint32_t num_wait_events,
                                   const cl_event *wait_events,
                                   cl_event *out_event);

/* As clmoe_route, from router logits[T, E] (float32) given directly; the
 * router's weight and bias are not used. COSINE affinity is unavailable
 * (UNSUPPORTED). */
CLMOE_API clmoe_status clmoe_route_logits(clmoe_router *router,
                                          const clmoe_tensor *logits,
                                          const clmoe_tensor *importance,
                                          clmoe_routing *routing,
                                          uint32_t num_wait_events,
                                          const cl_event *wait_events,
                                          cl_event *out_event);

/* ------------------------------------------------------------------------ */
/* Experts, dispatch, combine, forward                                       */
/* ------------------------------------------------------------------------ */

typedef struct clmoe_experts clmoe_experts;

typedef int32_t clmoe_activation;
enum {
  CLMOE_ACTIVATION_RELU = 1,   /* y = relu(x W1 + b1) W2 + b2 */
  CLMOE_ACTIVATION_GELU = 2,   /* tanh approximation */
  CLMOE_ACTIVATION_SILU = 3,
  CLMOE_ACTIVATION_SWIGLU = 4, /* y = (silu(x W1 + b1) * (x W3 + b3)) W2 + b2 */
  CLMOE_ACTIVATION_GEGLU = 5,  /* as SWIGLU with gelu (tanh) */
  /* Since 0.4. gpt-oss's clamped SwiGLU, with L = swiglu_limit and
   * a = swiglu_alpha (clmoe_experts_desc): g = min(x W1 + b1, L),
   * u = clamp(x W3 + b3, -L, L), y = (g * sigmoid(a * g) * (u + 1)) W2 + b2.
   * Gated: W1 holds the gate columns and W3 the up columns (the checkpoint
   * loader de-interleaves gpt-oss's gate_up_proj). */
  CLMOE_ACTIVATION_SWIGLU_OAI = 6
};

typedef int32_t clmoe_weight_layout;
enum {
  /* W1, W3: [E, d, f]; W2: [E, f, d] - the documented, fast layout */
  CLMOE_LAYOUT_IN_OUT = 0,
  /* W1, W3: [E, f, d]; W2: [E, d, f] (PyTorch / GGUF); transposed once at
   * create */
  CLMOE_LAYOUT_OUT_IN = 1
};

/* How clmoe_experts_run computes the expert GEMMs. */
typedef int32_t clmoe_experts_path;
enum {
  /* the device's tuning entry decides */
  CLMOE_EXPERTS_PATH_AUTO = 0,
  /* per-expert CLBlast SGEMMs on buffer offsets; reads expert_offsets back
   * (E+1 ints, the one host sync of a layer) and skips empty experts */
  CLMOE_EXPERTS_PATH_CLBLAST = 1,
  /* one launch of clmoe's grouped kernel per matrix for all experts, which
   * reads expert_offsets on the device (no host sync), with bias and
   * activation fused; weights are packed into a private panel layout at
   * create */
  CLMOE_EXPERTS_PATH_GROUPED = 2
};

typedef struct clmoe_experts_desc {
  size_t struct_size;
  int32_t num_experts; /* E, 1..1024 */
  int32_t d_model;     /* d >= 1 */
  int32_t d_ff;        /* f >= 1 */
  clmoe_activation activation;
  clmoe_weight_layout layout;
  /* Weights, expert-major row-major float32, each from host memory or a
   * tensor (set at most one of each pair); copied at create. W3 is required
   * for the gated kinds and refused otherwise. Biases are optional:
   * b1, b3 [E, f], b2 [E, d]. */
  const float *w1_host;
  const clmoe_tensor *w1;
  const float *w3_host;
  const clmoe_tensor *w3;
  const float *w2_host;
  const clmoe_tensor *w2;
  const float *b1_host;
  const clmoe_tensor *b1;
  const float *b3_host;
  const clmoe_tensor *b3;
  const float *b2_host;
  const clmoe_tensor *b2;
  /* Since 0.2. Expert GEMM path; AUTO (default) follows the device's tuning
   * entry. */
  clmoe_experts_path path;
  /* Since 0.3. Storage dtype of W1, W3 and W2 on the device: F32 (default;
   * 0 also means F32), F16 or BF16, which take exactly half the memory.
   * Values are rounded to nearest even at create; a finite value that would
   * round to Inf is INVALID_ARGUMENT naming the matrix and element. Biases
   * stay float32. The kernels widen 16-bit weights to float32 as they load
   * them and accumulate in float32. 16-bit weights run on the grouped path
   * only: AUTO picks it, CLBLAST returns UNSUPPORTED (CLBlast's 16-bit GEMM
   * accumulates in half precision and needs cl_khr_fp16). */
  clmoe_dtype weight_dtype;
  /* Since 0.3. dtype of the w1_host, w3_host and w2_host arrays: F32
   * (default; 0 also means F32), F16 or BF16 (pass the 16-bit array cast
   * to const float *). Bias host arrays are float32. Weight tensors carry
   * their own dtype (F32, F16 or BF16). */
  clmoe_dtype host_dtype;
  /* Since 0.4. SWIGLU_OAI's clamp limit L (> 0, finite; default 7.0, gpt-oss's
   * swiglu_limit) and sigmoid scale a (finite; default 1.702). Ignored by
   * the other activations. */
  float swiglu_limit;
  float swiglu_alpha;
  /* Since 0.4. Already-quantized weights for a quantized weight_dtype
   * (F8_E4M3, MXFP4, I8, I4), as checkpoints store them: per matrix in
   * [E, out, in] form whatever `layout` says (W1, W3: out = d_ff, in =
   * d_model; W2: out = d_model, in = d_ff). Codes: F8_E4M3 one e4m3fn byte
   * per weight; MXFP4 and I4 two per byte ([E, out, in / 2], the low nibble
   * first); I8 one int8. Scales: F8_E4M3 float32 [E, ceil(out / 128),
   * ceil(in / 128)] (a checkpoint's weight_scale_inv: w = code * scale);
   * MXFP4 e8m0 bytes [E, out, in / 32]; I8 float32 [E, out]; I4 float32
   * [E, out, in / 32]. Give these instead of w1/w3/w2 (codes and scales of
   * W3 only for gated kinds); copied at create. A NaN code or scale is
   * INVALID_ARGUMENT. Quantized experts run on the grouped path (AUTO picks
   * it; CLBLAST is UNSUPPORTED); float weights with a quantized
   * weight_dtype are quantized by clmoe's rule (see clmoe_dtype). */
  const void *w1_codes, *w3_codes, *w2_codes;
  const void *w1_scales, *w3_scales, *w2_scales;
} clmoe_experts_desc;

/* Defaults: SWIGLU, LAYOUT_IN_OUT, PATH_AUTO, swiglu_limit 7, swiglu_alpha
 * 1.702, everything else 0/NULL, for
 * the first `size` bytes (at most sizeof(clmoe_experts_desc)); struct_size
 * is set to that size. Call it through the clmoe_experts_desc_init(desc)
 * macro (the caller's sizeof *desc), as for clmoe_context_desc_init. */
CLMOE_API void clmoe_experts_desc_init_sized(clmoe_experts_desc *desc,
                                             size_t size);
/* The 0.1 entry point: initialises the 0.1 fields only (up to b2). */
CLMOE_API void(clmoe_experts_desc_init)(clmoe_experts_desc *desc);
#define clmoe_experts_desc_init(desc)                                          \
  clmoe_experts_desc_init_sized((desc), sizeof *(desc))

/* Creates E expert FFNs. Gated kinds keep [W1 | W3] side by side per expert
 * so that one GEMM computes both. Errors: NULL_POINTER, INVALID_STRUCT_SIZE,
 * INVALID_ARGUMENT (sizes, activation, swiglu_limit <= 0 or a non-finite
 * swiglu_alpha for SWIGLU_OAI, missing/extra W3, a weight given
 * twice), SHAPE_MISMATCH / DTYPE_MISMATCH (weight tensors), CONTEXT_MISMATCH,
 * TOO_LARGE, OUT_OF_DEVICE_MEMORY, OPENCL. Thread-safe. */
CLMOE_API clmoe_status clmoe_experts_create(clmoe_context *ctx,
                                            const clmoe_experts_desc *desc,
                                            clmoe_experts **out);
CLMOE_API void clmoe_experts_destroy(clmoe_experts *experts);

/* The path the experts object uses (never AUTO). Errors: NULL_POINTER. */
CLMOE_API clmoe_status clmoe_experts_get_path(const clmoe_experts *experts,
                                              clmoe_experts_path *path);

/* Device bytes held by the experts object: *weight_bytes for the weight
 * matrices in their storage dtype and device layout (half of F32's for the
 * 16-bit dtypes; codes plus scales for the quantized ones), *bias_bytes
 * for the biases; either pointer may be NULL. Since 0.3. Errors:
 * NULL_POINTER. */
CLMOE_API clmoe_status clmoe_experts_get_bytes(const clmoe_experts *experts,
                                               int64_t *weight_bytes,
                                               int64_t *bias_bytes);
/* The storage dtype of the weights (F32, F16, BF16, or since 0.4 a
 * quantized one). Since 0.3. Errors: NULL_POINTER. */
CLMOE_API clmoe_status clmoe_experts_get_weight_dtype(
    const clmoe_experts *experts, clmoe_dtype *dtype);
/* Since 0.3. The experts' E, d, d_ff and activation; any out pointer may
 * be NULL. Thread-safe. Errors: NULL_POINTER. */
CLMOE_API clmoe_status clmoe_experts_get_shape(const clmoe_experts *experts,
                                               int32_t *num_experts,
                                               int32_t *d_model, int32_t *d_ff,
                                               clmoe_activation *activation);

/* Gathers token rows into expert-major order: x_sorted[r, :] =
 * x[row_tokens[r], :]. x: [T, d] with T the routing's; x_sorted: [N, d];
 * each float32, float16 or bfloat16 (since 0.3), converted on the way
 * (rounded to nearest even when narrowing). Errors: NULL_POINTER,
 * SHAPE_MISMATCH, DTYPE_MISMATCH (not a float dtype), CONTEXT_MISMATCH,
 * INVALID_ARGUMENT (empty routing), OPENCL. */
CLMOE_API clmoe_status clmoe_dispatch(clmoe_routing *routing,
                                      const clmoe_tensor *x,
                                      clmoe_tensor *x_sorted,
                                      uint32_t num_wait_events,
                                      const cl_event *wait_events,
                                      cl_event *out_event);

/* Runs every expert on its rows: y_sorted[rows of e] = FFN_e(x_sorted[rows
 * of e]), by the object's path (see clmoe_experts_path). CLBLAST path: reads
 * expert_offsets back (E+1 ints, the one host sync of a layer), runs CLBlast
 * SGEMMs per expert on buffer offsets, skipping experts without rows, with
 * the activation as one fused elementwise launch. GROUPED path: three
 * launches whatever E is, no host sync. x_sorted, y_sorted: [N, d], both
 * float32, or both float16 or bfloat16 (since 0.3: widened into the
 * routing's float32 workspace, run, and rounded once into y_sorted; the
 * forward fuses these conversions into dispatch and combine instead). The
 * experts object may be shared by threads; the routing may not. Errors: as
 * clmoe_dispatch (DTYPE_MISMATCH also when x_sorted and y_sorted differ),
 * plus CLBLAST. */
CLMOE_API clmoe_status clmoe_experts_run(clmoe_experts *experts,
                                         clmoe_routing *routing,
                                         const clmoe_tensor *x_sorted,
                                         clmoe_tensor *y_sorted,
                                         uint32_t num_wait_events,
                                         const cl_event *wait_events,
                                         cl_event *out_event);

enum {
  /* combine / forward: add into y instead of overwriting it (residual) */
  CLMOE_COMBINE_ACCUMULATE = 1u << 0
};

/* y[t, :] = sum over token t's slots j (in slot order) of
 * gates[j] * y_sorted[slot_rows[j], :]; a token with K = 0 gets 0 (or keeps
 * its value with CLMOE_COMBINE_ACCUMULATE). Deterministic, no atomics.
 * y_sorted: [N, d]; y: [T, d]; each float32, float16 or bfloat16 (since
 * 0.3): the sum is accumulated in float32 and rounded once (to nearest
 * even) into y. Errors as clmoe_dispatch. */
CLMOE_API clmoe_status clmoe_combine(clmoe_routing *routing,
                                     const clmoe_tensor *y_sorted,
                                     clmoe_tensor *y, uint32_t flags,
                                     uint32_t num_wait_events,
                                     const cl_event *wait_events,
                                     cl_event *out_event);

/* The whole layer: route x[T, d] with `router` (importance[T] for
 * IMPORTANCE), dispatch, run `experts`, combine into y[T, d]. x and y are
 * both float32, or both float16 or bfloat16 (since 0.3): the router GEMM
 * reads a float32 copy of x, dispatch widens x's rows, every product and sum
 * is float32, and combine rounds y once when it stores it. The
 * intermediate buffers live in `routing` (which also receives the routing)
 * and grow only when a larger batch needs them. All shapes are checked
 * before any device work: router and experts must agree on E and d.
 * Errors: those of the stages, SHAPE_MISMATCH (router/experts/tensors
 * disagree), DTYPE_MISMATCH (x and y differ, naming both),
 * CONTEXT_MISMATCH. */
CLMOE_API clmoe_status clmoe_forward(clmoe_router *router,
                                     clmoe_experts *experts,
                                     const clmoe_tensor *x,
                                     const clmoe_tensor *importance,
                                     clmoe_tensor *y, clmoe_routing *routing,
                                     uint32_t flags,
                                     uint32_t num_wait_events,
                                     const cl_event *wait_events,
                                     cl_event *out_event);

/* Since 0.3. clmoe_forward plus shared experts applied to every token
 * (Qwen2-MoE's shared_expert): y = routed(x) + g_t * shared(x_t), where
 * g_t = sigmoid(x_t . shared_gate) with shared_gate (float32 [d]) given, 1
 * without. `shared` is an experts object of one expert (num_experts 1) and
 * the layer's d, on any path and weight dtype. Per token, the routed slots
 * are summed in slot order, then the shared term is added, in float32, and
 * y is rounded once: results are bitwise reproducible. shared = NULL is
 * clmoe_forward. With CLMOE_COMBINE_ACCUMULATE, y's previous value is the
 * first term. The shared rows and weights live in `routing` (grow only).
 * Errors: those of clmoe_forward, SHAPE_MISMATCH (shared not one expert of
 * width d, shared_gate not [d]), DTYPE_MISMATCH (shared_gate not float32),
 * INVALID_ARGUMENT (shared_gate without shared). */
CLMOE_API clmoe_status clmoe_forward_shared(
    clmoe_router *router, clmoe_experts *experts, clmoe_experts *shared,
    const clmoe_tensor *shared_gate, const clmoe_tensor *x,
    const clmoe_tensor *importance, clmoe_tensor *y, clmoe_routing *routing,
    uint32_t flags, uint32_t num_wait_events, const cl_event *wait_events,
    cl_event *out_event);

/* ------------------------------------------------------------------------ */
/* Attention-importance scoring (DA-MoE)                                     */
/* ------------------------------------------------------------------------ */

typedef int32_t clmoe_score_mask;
enum {
  CLMOE_SCORE_MASK_NONE = 0,  /* every query of a sequence sees every key */
  CLMOE_SCORE_MASK_CAUSAL = 1 /* query i sees keys j <= i */
};

typedef int32_t clmoe_score_norm;
enum {
  CLMOE_SCORE_NORM_MAX = 0, /* divide each sequence by its maximum: [0, 1] */
  CLMOE_SCORE_NORM_RAW = 1  /* no per-sequence scaling */
};

/* Layouts of the fused path's q and k (since 0.3). k may have fewer heads
 * than q (grouped-query attention): H_kv must divide H, and query head h
 * uses key head h / (H / H_kv). */
typedef int32_t clmoe_score_layout;
enum {
  CLMOE_SCORE_LAYOUT_HSD = 0, /* q [H, T, dh], k [H_kv, T, dh] */
  CLMOE_SCORE_LAYOUT_SHD = 1  /* q [T, H, dh], k [T, H_kv, dh], as attention
                                 kernels produce them */
};

typedef struct clmoe_score_desc {
  size_t struct_size;
  clmoe_score_mask mask;
  clmoe_score_norm norm;
  /* Fused path: logits are scale * q . k; 0 means 1 / sqrt(dh). */
  float scale;
  /* Optional int32 [B+1]: varlen sequences (tokens of different sequences
   * never see each other); non-decreasing from 0 to T (a sequence may be
   * empty; decreasing entries are INVALID_ARGUMENT). NULL: one
   * sequence (or, for a padded batch — probs [B, H, S, S] or q
   * [B, S, H, dh] — B sequences of S tokens). */
  const clmoe_tensor *seq_offsets;
  /* Optional int32 [B]: valid keys per sequence (key padding); tokens past
   * it are neither seen nor counted and get importance 0. NULL: all. */
  const clmoe_tensor *key_lengths;
  uint32_t flags; /* CLMOE_SCORE_* */
  /* Since 0.3. Fused path: the layout of q and k (CLMOE_SCORE_LAYOUT_*). */
  clmoe_score_layout layout;
  /* Since 0.3. Fused path, optional float32 [H, T] (or [B, H, S] for q
   * [B, S, H, dh], as batched attention kernels return it): each query row's
   * log-sum-exp as attention kernels (FlashAttention) return it, natural
   * log, over the keys that row sees (mask, sequence, key padding):
   * lse[h, i] = log(sum over visible j of exp(scale * q_i . k_j)). Given,
   * the pass that finds each row's max and sum is skipped and the column
   * pass uses exp(scale * q_i . k_j - lse[h, i]). A non-finite entry is
   * NONFINITE_INPUT naming it; with CLMOE_SCORE_CHECK_LSE each row's own
   * log-sum-exp is computed and compared (INVALID_ARGUMENT naming the first
   * row that differs by more than 1e-3). NULL: computed. */
  const clmoe_tensor *lse;
} clmoe_score_desc;

enum {
  /* Do not block to check for non-finite input: the call is then fully
   * asynchronous and a NaN/Inf is left in `importance`, where
   * clmoe_route(IMPORTANCE) rejects it with NONFINITE_INPUT. */
  CLMOE_SCORE_DEFER_CHECK = 1u << 0,
  /* Debug: check a given lse against the rows it claims to normalise (one
   * more pass over Q K^T). Since 0.3. */
  CLMOE_SCORE_CHECK_LSE = 1u << 1
};

/* Fills the first `size` bytes of *desc (at most sizeof(clmoe_score_desc))
 * with defaults: no mask, MAX, scale 0 (1/sqrt(dh)), no varlen, no padding,
 * flags 0; struct_size is set to that size. Call it through the
 * clmoe_score_desc_init(desc) macro (the caller's sizeof). */
CLMOE_API void clmoe_score_desc_init_sized(clmoe_score_desc *desc,
                                           size_t size);
/* The 0.1 entry point: initialises the 0.1 fields only (up to flags). */
CLMOE_API void(clmoe_score_desc_init)(clmoe_score_desc *desc);
#define clmoe_score_desc_init(desc)                                            \
  clmoe_score_desc_init_sized((desc), sizeof *(desc))

/* importance[j] = (mean over heads of the attention token j receives from
 * the queries that can see it) / (the number of those queries), then, with
 * NORM_MAX, divided by its sequence's maximum. Inputs:
 *  - probs (float32): attention probabilities A[H, T, T] or, as a padded
 *    batch, A[B, H, S, S] (T = B * S); rows are used as given (not
 *    renormalised); set q = k = NULL; or
 *  - q, k (each float32, float16 or bfloat16; 16-bit since 0.3, widened
 *    exactly, all arithmetic fp32): [H, T, dh] or, with
 *    CLMOE_SCORE_LAYOUT_SHD, [T, H, dh] or a padded batch [B, S, H, dh]
 *    (T = B * S: B sequences of S tokens, seq_offsets not allowed,
 *    key_lengths [B] for padding; since 0.3); k may have H_kv heads dividing
 *    H. Fused: two tiled passes over Q K^T (each row's log-sum-exp, then the
 *    column sums; one with desc->lse), causal blocks above the diagonal
 *    skipped, never materialising T x T. Extra device memory: float32
 *    copies of q and k repacked (T * (H + H_kv) * dh floats, keys rounded
 *    up to 32) and 2 * H * T floats, i.e. O(T * H) for a fixed dh; set
 *    probs = NULL. Tile shape: the device table's SCORE_* parameters.
 * importance: float32 [T]. Deterministic (no float atomics). seq_offsets and
 * key_lengths are checked on the device; the call blocks for one 28-byte
 * status read that reports them and non-finite input, unless
 * CLMOE_SCORE_DEFER_CHECK: then nothing blocks, and invalid sequences leave
 * NaN in every importance, which clmoe_route(IMPORTANCE) rejects. A context's
 * scoring buffers grow only: a call no larger than an earlier one allocates
 * nothing; concurrent calls on one context are serialised while they
 * enqueue. desc may be NULL (defaults). Errors: NULL_POINTER,
 * INVALID_STRUCT_SIZE, SHAPE_MISMATCH, DTYPE_MISMATCH, INVALID_ARGUMENT
 * (both or neither input, bad seq_offsets/key_lengths), NONFINITE_INPUT
 * (NaN/Inf in the inputs; the detail names the first affected token),
 * CONTEXT_MISMATCH, OPENCL. */
CLMOE_API clmoe_status clmoe_score_attention(
    clmoe_context *ctx, const clmoe_score_desc *desc,
    const clmoe_tensor *probs, const clmoe_tensor *q, const clmoe_tensor *k,
    clmoe_tensor *importance, uint32_t num_wait_events,
    const cl_event *wait_events, cl_event *out_event);

#ifdef __cplusplus
}
#endif

#endif /* CLMOE_CLMOE_H */
