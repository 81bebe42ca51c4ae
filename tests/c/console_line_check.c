/* Host check of firmware/app/console_line.c over the RT-Thread API shim: one line per value given on the command
 * line (console_line_fixed with the decimals first), then, with --kprintf-float, an rt_kprintf("%f") that the shim
 * must refuse, and with --kprintf-long, a 300-character rt_kprintf line it must cut. */
#include <stdlib.h>
#include <string.h>

#include "console_line.h"

#include "shim_tables.h"

int main(int argc, char **argv)
{
    struct console_line line;
    int i;
    if (argc > 1 && strcmp(argv[1], "--kprintf-float") == 0) {
        rt_kprintf("%.3f\n", 1.5);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--kprintf-long") == 0) {
        char text[301];
        memset(text, 'x', 300);
        text[300] = '\0';
        rt_kprintf("%s\n", text);
        return 0;
    }
    for (i = 2; i < argc; i++) {
        console_line_begin(&line);
        console_line_fixed(&line, strtod(argv[i], NULL), atoi(argv[1]));
        console_line_end(&line);
    }
    return 0;
}
