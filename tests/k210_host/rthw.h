/* Test double: everything k210_camera.c needs from <rthw.h> is in the fake <rtthread.h>. */
#include "rtthread.h"
