/* Integer helpers of the KPU datapath: floor shifts, the two activation roundings, sign extension.
 *
 * Reference semantics (nncase v0.2/v1 simulator): round half to even, strict `t > x_start` segment selection.
 * Compile with -DKPU_ROUNDING_V01 for the documented alternative (nncase v0.1: round half up, `t >= x_start`). */
#ifndef KPU_ARITH_H
#define KPU_ARITH_H

#include <stdint.h>

#if (-1 >> 1) != -1
#error "the KPU arithmetic needs an arithmetic right shift of negative integers (GCC and Clang provide it)"
#endif

/* floor(v / 2^s) for any sign: an arithmetic shift (checked above). */
static inline int64_t kpu_floor_shift(int64_t v, unsigned s)
{
    return v >> s;
}

/* v / 2^s rounded: half to even (reference) or half up (v0.1). Branch-free and without shifting a constant, so a
 * loop over values with per-value shifts vectorises: `bit` is the first bit shifted out (the remainder is at least
 * half), `sticky` says whether any bit below it is set (the remainder is more than half). */
static inline int64_t kpu_round_shift(int64_t v, unsigned s)
{
    const int64_t nonzero = s != 0;
    const unsigned s1 = s - (unsigned)nonzero; /* s - 1, or 0 when s is 0 */
    const int64_t q = v >> s, above = v >> s1;
    const int64_t bit = above & 1 & nonzero;
    const int64_t sticky = ((uint64_t)v - ((uint64_t)above << s1)) != 0;
#ifdef KPU_ROUNDING_V01
    (void)sticky;
    return q + bit;
#else
    return q + (bit & (sticky | (q & 1)));
#endif
}

/* Is t in the segment that starts at `start`? */
static inline int kpu_segment_hit(int64_t t, int64_t start)
{
#ifdef KPU_ROUNDING_V01
    return t >= start;
#else
    return t > start;
#endif
}

static inline int64_t kpu_sign_extend(uint64_t v, unsigned bits)
{
    uint64_t m = (uint64_t)1 << (bits - 1);
    v &= (bits == 64) ? ~(uint64_t)0 : (((uint64_t)1 << bits) - 1);
    return (int64_t)((v ^ m) - m);
}

static inline uint64_t kpu_field(uint64_t word, unsigned lsb, unsigned width)
{
    return (word >> lsb) & ((width == 64) ? ~(uint64_t)0 : (((uint64_t)1 << width) - 1));
}

static inline uint8_t kpu_clamp_u8(int64_t v)
{
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

#endif
