/* Runtime version of the loaded library (from the generated clmoe_version.h).
 */
#include "runtime/runtime.h"

const char *clmoe_version_string(void) { return CLMOE_VERSION_STRING; }

int32_t clmoe_version_number(void) { return CLMOE_VERSION_NUMBER; }
