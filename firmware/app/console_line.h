/* Console lines that real RT-Thread can print. Its rt_kprintf has no floating-point conversions and cuts every
 * call at RT_CONSOLEBUF_SIZE, so a line is assembled here (decimals by integer arithmetic) and written with
 * rt_kputs, which has no length limit. Text longer than the buffer is written in pieces of one line. */
#ifndef CONSOLE_LINE_H
#define CONSOLE_LINE_H

#include <rtthread.h>

#define CONSOLE_LINE_BYTES 512

struct console_line {
    char text[CONSOLE_LINE_BYTES];
    rt_size_t length;
};

void console_line_begin(struct console_line *line);
/* Append text as it is (JSON punctuation, keys, strings escaped at render time). */
void console_line_text(struct console_line *line, const char *text);
void console_line_int(struct console_line *line, long value);
void console_line_uint(struct console_line *line, unsigned long long value);
/* `value` rounded to `decimals` (0..9) places, half away from zero (printf's "%.*f" differs only on exact ties,
 * which it rounds to even); null when not finite or beyond 1e9. */
void console_line_fixed(struct console_line *line, double value, int decimals);
/* Append "\n" and write the line to the console. */
void console_line_end(struct console_line *line);

#endif
