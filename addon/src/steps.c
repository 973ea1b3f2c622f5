/* The step names, shared by the addon and the init binary. */
#include "sandbox.h"

const char *const step_names[STEP_COUNT] = {
#define STEP(name) #name,
#include "steps.def"
#undef STEP
};
