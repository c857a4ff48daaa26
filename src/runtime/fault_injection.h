/* Test-only entry points of the fault-injection build (CLMOE_FAULT_INJECTION;
 * the test library libclmoe_fi). Release builds have none of these symbols.
 * Process-wide state: use from one test thread. */
#ifndef CLMOE_FAULT_INJECTION_H
#define CLMOE_FAULT_INJECTION_H

#include <stdint.h>

#include "clmoe/clmoe_export.h"

/* Makes the nth (1-based) later call of `call` fail ("clCreateBuffer",
 * "CLBlastSgemm", "malloc", ... or "any" for every kind); nth = 0 turns
 * injection off. Resets the call counters. */
CLMOE_API void clmoe_test_fault_inject(const char *call, int64_t nth);
/* Calls of `call` ("any": all) counted since the last clmoe_test_fault_inject.
 */
CLMOE_API int64_t clmoe_test_fault_calls(const char *call);
/* The call failed on purpose since the last clmoe_test_fault_inject, or NULL;
 * *site receives its "file:line". */
CLMOE_API const char *clmoe_test_fault_injected(const char **site);
/* OpenCL objects (buffers, kernels, programs, queues, contexts) created or
 * retained through the library and not yet released. */
CLMOE_API int64_t clmoe_test_live_objects(void);
/* Distinct call sites seen since the process started; site(i) names the
 * i-th ("file:line", NULL past the end), *failed says whether a failure was
 * ever injected there and *hits counts its calls since the last
 * clmoe_test_fault_inject (either pointer may be NULL). */
CLMOE_API int32_t clmoe_test_sites_seen(void);
CLMOE_API const char *clmoe_test_site(int32_t i, int32_t *failed,
                                      int64_t *hits);

#endif /* CLMOE_FAULT_INJECTION_H */
