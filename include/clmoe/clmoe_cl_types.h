/*
 * clmoe_cl_types.h - the OpenCL handle types clmoe's interface uses.
 *
 * Declared here the same way <CL/cl.h> declares them, so that bindings and
 * tools can parse clmoe.h without the OpenCL headers. Repeating an identical
 * typedef is valid C11 and C++, so including <CL/cl.h> before or after this
 * header is fine.
 */
#ifndef CLMOE_CL_TYPES_H
#define CLMOE_CL_TYPES_H

#include <stdint.h>

typedef struct _cl_platform_id *cl_platform_id;
typedef struct _cl_device_id *cl_device_id;
typedef struct _cl_context *cl_context;
typedef struct _cl_command_queue *cl_command_queue;
typedef struct _cl_mem *cl_mem;
typedef struct _cl_event *cl_event;

#endif /* CLMOE_CL_TYPES_H */
