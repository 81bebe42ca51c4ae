/* Matching a face against the enrolled templates, the C twin of deploy/attendance/matching.py: embeddings and
 * templates are integers in units of 1e-4 (EMBEDDING_UNITS), the similarity is their cosine computed as
 * dot / (sqrt(|a|^2) * sqrt(|b|^2)) in double from exact integer sums, so both sides get the same bits. */
#ifndef FACE_MATCH_H
#define FACE_MATCH_H

#include <stdint.h>

#include "face_db.h"

/* Cosine similarity of two unit vectors in 1e-4 units; 0 when either is all zero. */
double face_match_similarity(const int16_t *a, const int16_t *b, uint32_t count);
/* The enrolled person most similar to `units` (the first on ties): their index, or -1 when none is enrolled;
 * `similarity` gets the best similarity (0 when none). */
int face_match_best(const struct face_db *db, const int16_t *units, double *similarity);

#endif
