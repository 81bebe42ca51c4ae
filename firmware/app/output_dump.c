/* Raw output tensors as hex lines: see output_dump.h. */
#include "output_dump.h"

#include "console_line.h"

void output_dump(rt_ai_t model, rt_uint32_t outputs, int frame)
{
    static const char digits[] = "0123456789abcdef";
    struct console_line line;
    char hex[3] = {0, 0, 0};
    rt_uint32_t o, i;
    for (o = 0; o < outputs; o++) {
        const rt_uint8_t *data = rt_ai_output(model, o);
        rt_uint32_t size = data != RT_NULL ? rt_ai_output_size(model, o) : 0;
        console_line_begin(&line);
        console_line_text(&line, "{\"frame\":");
        console_line_int(&line, frame);
        console_line_text(&line, ",\"output\":");
        console_line_uint(&line, o);
        console_line_text(&line, ",\"bytes\":");
        console_line_uint(&line, size);
        console_line_text(&line, ",\"hex\":\"");
        for (i = 0; i < size; i++) {
            hex[0] = digits[data[i] >> 4];
            hex[1] = digits[data[i] & 15];
            console_line_text(&line, hex);
        }
        console_line_text(&line, "\"}");
        console_line_end(&line);
    }
}
