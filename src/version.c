/* Runtime version of the loaded library. */
#include "internal.h"

const char *clmoe_version_string(void) { return "0.2.0"; }

int32_t clmoe_version_number(void) { return CLMOE_VERSION_NUMBER; }
