/* Face matching: see face_match.h. */
#include "face_match.h"

#include <math.h>

double face_match_similarity(const int16_t *a, const int16_t *b, uint32_t count)
{
    int64_t dot = 0, aa = 0, bb = 0;
    uint32_t i;
    for (i = 0; i < count; i++) {
        dot += (int64_t)a[i] * b[i];
        aa += (int64_t)a[i] * a[i];
        bb += (int64_t)b[i] * b[i];
    }
    if (aa == 0 || bb == 0)
        return 0.0;
    return (double)dot / (sqrt((double)aa) * sqrt((double)bb));
}

int face_match_best(const struct face_db *db, const int16_t *units, double *similarity)
{
    int best = -1;
    uint32_t i;
    *similarity = 0.0;
    for (i = 0; i < db->count; i++) {
        double s = face_match_similarity(units, db->records[i].template_units, FACE_DB_EMBEDDING_SIZE);
        if (best < 0 || s > *similarity) {
            best = (int)i;
            *similarity = s;
        }
    }
    return best;
}
