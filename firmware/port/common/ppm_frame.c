/* Binary PPM parser: "P6", whitespace/comments, width, height, maxval 255, one whitespace, RGB bytes. */
#include "ppm_frame.h"

static size_t skip_space(const uint8_t *buf, size_t size, size_t at)
{
    while (at < size) {
        if (buf[at] == '#') {
            while (at < size && buf[at] != '\n')
                at++;
        } else if (buf[at] == ' ' || buf[at] == '\t' || buf[at] == '\n' || buf[at] == '\r') {
            at++;
        } else {
            break;
        }
    }
    return at;
}

static size_t read_number(const uint8_t *buf, size_t size, size_t at, uint32_t *value)
{
    uint32_t v = 0;
    size_t start = at;
    while (at < size && buf[at] >= '0' && buf[at] <= '9' && v < 100000u)
        v = v * 10u + (uint32_t)(buf[at++] - '0');
    *value = v;
    return at == start ? 0 : at;
}

int ppm_frame_parse(const uint8_t *buf, size_t size, struct rt_port_frame *frame)
{
    uint32_t w = 0, h = 0, maxval = 0;
    size_t at;
    if (size < 2 || buf[0] != 'P' || buf[1] != '6')
        return -1;
    at = read_number(buf, size, skip_space(buf, size, 2), &w);
    if (at == 0 || (at = read_number(buf, size, skip_space(buf, size, at), &h)) == 0 ||
        (at = read_number(buf, size, skip_space(buf, size, at), &maxval)) == 0)
        return -1;
    if (maxval != 255 || w == 0 || h == 0 || at >= size)
        return -1;
    at++; /* the single whitespace byte after maxval */
    if ((size_t)w * h * 3u > size - at)
        return -1;
    frame->data = buf + at;
    frame->width = w;
    frame->height = h;
    frame->planar = 0;
    return 0;
}
