/* Test double: everything the port needs from <rthw.h> is in the fake <rtthread.h>. */
#include "rtthread.h"
