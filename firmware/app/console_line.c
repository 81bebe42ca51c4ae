/* Console lines without rt_kprintf's limits: see console_line.h. */
#include "console_line.h"

#include <math.h>

static void console_line_flush(struct console_line *line)
{
    line->text[line->length] = '\0';
    rt_kputs(line->text);
    line->length = 0;
}

static void console_line_char(struct console_line *line, char c)
{
    if (line->length + 1 >= CONSOLE_LINE_BYTES)
        console_line_flush(line);
    line->text[line->length++] = c;
}

void console_line_begin(struct console_line *line)
{
    line->length = 0;
}

void console_line_text(struct console_line *line, const char *text)
{
    while (*text)
        console_line_char(line, *text++);
}

void console_line_uint(struct console_line *line, unsigned long long value)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0);
    while (n > 0)
        console_line_char(line, digits[--n]);
}

void console_line_int(struct console_line *line, long value)
{
    if (value < 0) {
        console_line_char(line, '-');
        console_line_uint(line, (unsigned long long)(-(value + 1)) + 1u);
    } else {
        console_line_uint(line, (unsigned long long)value);
    }
}

void console_line_fixed(struct console_line *line, double value, int decimals)
{
    unsigned long long scale = 1, scaled;
    int i;
    if (!isfinite(value) || fabs(value) >= 1e9) {
        console_line_text(line, "null");
        return;
    }
    decimals = decimals < 0 ? 0 : decimals > 9 ? 9 : decimals;
    for (i = 0; i < decimals; i++)
        scale *= 10u;
    scaled = (unsigned long long)floor(fabs(value) * (double)scale + 0.5);
    if (value < 0 && scaled != 0)
        console_line_char(line, '-');
    console_line_uint(line, scaled / scale);
    if (decimals == 0)
        return;
    console_line_char(line, '.');
    for (scale /= 10u; scale != 0; scale /= 10u)
        console_line_char(line, (char)('0' + (scaled / scale) % 10u));
}

void console_line_end(struct console_line *line)
{
    console_line_char(line, '\n');
    console_line_flush(line);
}
