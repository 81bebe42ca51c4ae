/* The enrollment database in the board's flash (the C twin of deploy/attendance/face_db.py, whose numbers come as
 * the generated face_db_layout.h): a header and FACE_DB_CAPACITY records in each of two slots of
 * FACE_DB_SLOT_BYTES at FACE_DB_REGION_OFFSET. Load uses the newest valid slot; save writes the other one (erase,
 * records, then the header with its CRC-32 last), so an interrupted save leaves the previous database in use. */
#ifndef FACE_DB_H
#define FACE_DB_H

#include <stdint.h>

#include "face_db_layout.h"

struct face_record {
    char name[FACE_DB_NAME_BYTES]; /* NUL-padded, FACE_DB_NAME_RULE */
    uint32_t photos;               /* how many photos made the template */
    int16_t template_units[FACE_DB_EMBEDDING_SIZE]; /* mean L2-normalised embedding, units of 1e-4 */
};

struct face_db {
    uint32_t count, sequence;
    int slot; /* slot in use, -1 none */
    uint16_t threshold_permyriad;
    struct face_record records[FACE_DB_CAPACITY];
};

enum face_db_slot_state { FACE_DB_SLOT_ERASED, FACE_DB_SLOT_VALID, FACE_DB_SLOT_INVALID };

/* What face_db_load found: per slot its state, why it is invalid (FACE_DB_REASON_*, else NULL) and its sequence
 * number (valid slots); the slot in use (-1: none). */
struct face_db_load_report {
    enum face_db_slot_state state[2];
    const char *reason[2];
    uint32_t sequence[2];
    int used;
};

enum {
    FACE_DB_OK = 0,
    FACE_DB_ERR_IO = -1,
    FACE_DB_ERR_FULL = -2,
    FACE_DB_ERR_DUPLICATE = -3,
    FACE_DB_ERR_UNKNOWN = -4,
    FACE_DB_ERR_NAME = -5
};

/* Read both slots and load the newest valid one; with none, `db` is empty with FACE_DB_DEFAULT_THRESHOLD.
 * FACE_DB_OK even when empty or corrupt: the report says. */
int face_db_load(struct face_db *db, struct face_db_load_report *report);
/* Write the slot not in use with sequence + 1; on success db->slot and db->sequence follow. FACE_DB_ERR_IO when
 * the storage fails (the slot in use is untouched). db->threshold_permyriad must be <= FACE_DB_THRESHOLD_MAX (a
 * larger one is saved but that slot then loads as "bad threshold"). */
int face_db_save(struct face_db *db);
/* FACE_DB_OK when `name` follows FACE_DB_NAME_RULE, else FACE_DB_ERR_NAME. */
int face_db_check_name(const char *name);
/* Index of the record named `name`, or -1. */
int face_db_find(const struct face_db *db, const char *name);
/* Append a record in RAM (face_db_save writes it): FACE_DB_ERR_NAME, _DUPLICATE or _FULL refuse it. */
int face_db_add(struct face_db *db, const char *name, uint32_t photos, const int16_t *template_units);
/* Remove a record in RAM, keeping the order of the others; FACE_DB_ERR_UNKNOWN when absent. */
int face_db_remove(struct face_db *db, const char *name);
/* The template of `photos` (> 0) embeddings from their per-value sums (units of 1e-4): the mean rounded half away
 * from zero, (2*sum + sign(sum)*photos) / (2*photos) in truncating integer division. */
void face_db_template(const int32_t *sums, uint32_t photos, int16_t *template_units);
/* Test hook for power-loss tests: the next save stops for good after `writes` storage write calls (each erased
 * sector and each written chunk of at most FACE_DB_WRITE_CHUNK bytes is one), after printing
 * "face_db: power cut (test hook) after N writes"; the board then idles forever, the host process exits with
 * status 3. 0 = off. */
void face_db_fault_after(uint32_t writes);
/* A short text for a FACE_DB_* code. */
const char *face_db_error_text(int code);
/* The boot line(s): the slot in use and the people, or empty, or CORRUPT; plus an invalid slot that was not used. */
void face_db_print_load_report(const struct face_db_load_report *report, const struct face_db *db);

#endif
