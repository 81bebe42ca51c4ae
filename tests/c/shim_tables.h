/* For host test drivers built on the RT-Thread shim: its init and msh tables need one entry each to exist. */
#ifndef SHIM_TABLES_H
#define SHIM_TABLES_H

#include "rtthread.h"

static int check_init(void)
{
    return 0;
}
INIT_APP_EXPORT(check_init);

static int check_cmd(int argc, char **argv)
{
    (void)argc, (void)argv;
    return 0;
}
MSH_CMD_EXPORT(check_cmd, host check);

#endif
