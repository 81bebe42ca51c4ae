/* The enrollment database in flash (face_db.h): header and records are (de)serialised field by field at the byte
 * offsets of the generated face_db_layout.h, little-endian, so the bytes are the Python side's whatever the CPU. */
#include <string.h>

#include <rtthread.h>

#include "crc32.h"
#include "face_db.h"
#include "rt_port_board.h"

#ifdef RT_PORT_HOST_SHIM
#include <stdlib.h> /* exit: the host's power cut */
#endif

#if FACE_DB_SLOT_BYTES % RT_PORT_STORAGE_SECTOR != 0 || FACE_DB_REGION_OFFSET % RT_PORT_STORAGE_SECTOR != 0
#error "face_db_layout.h: the slots must be whole flash sectors of this board (regenerate it)"
#endif
#if FACE_DB_HEADER_BYTES > FACE_DB_WRITE_CHUNK
#error "face_db_layout.h: the header must fit one write chunk"
#endif

#define HDR_GET(h, f) le_get((h) + FACE_DB_HDR_##f, FACE_DB_HDR_##f##_BYTES)
#define HDR_PUT(h, f, v) le_put((h) + FACE_DB_HDR_##f, FACE_DB_HDR_##f##_BYTES, (v))

static uint32_t fault_after_writes; /* the test hook: 0 = off */
static uint32_t save_writes;        /* storage write calls of the save running */

static uint32_t le_get(const uint8_t *p, uint32_t width)
{
    uint32_t value = 0;
    while (width-- > 0)
        value = value << 8 | p[width];
    return value;
}

static void le_put(uint8_t *p, uint32_t width, uint32_t value)
{
    uint32_t i;
    for (i = 0; i < width; i++, value >>= 8)
        p[i] = (uint8_t)value;
}

static uint32_t slot_offset(int slot)
{
    return FACE_DB_REGION_OFFSET + (uint32_t)slot * FACE_DB_SLOT_BYTES;
}

/* Sequence a is newer than b, across the wrap of the 32-bit counter. */
static int newer(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0;
}

int face_db_check_name(const char *name)
{
    uint32_t n;
    if (name == RT_NULL || name[0] == '\0' || strchr(FACE_DB_NAME_FIRST_CHARS, name[0]) == RT_NULL)
        return FACE_DB_ERR_NAME;
    for (n = 0; name[n] != '\0'; n++)
        if (n >= FACE_DB_NAME_BYTES - 1 || strchr(FACE_DB_NAME_CHARS, name[n]) == RT_NULL)
            return FACE_DB_ERR_NAME;
    return FACE_DB_OK;
}

/* A stored name field: the name, NUL-padded to the end, following the name rule. */
static int stored_name_valid(const uint8_t *raw)
{
    uint32_t n = 0, i;
    while (n < FACE_DB_NAME_BYTES && raw[n] != 0)
        n++;
    if (n == FACE_DB_NAME_BYTES)
        return 0;
    for (i = n; i < FACE_DB_NAME_BYTES; i++)
        if (raw[i] != 0)
            return 0;
    return face_db_check_name((const char *)raw) == FACE_DB_OK;
}

/* Why a non-erased header is not one this firmware loads (a FACE_DB_REASON_* text), else NULL; the checks and
 * their order are those of face_db.py's _check_header. */
static const char *header_problem(const uint8_t *h)
{
    if (HDR_GET(h, MAGIC) != FACE_DB_MAGIC)
        return FACE_DB_REASON_MAGIC;
    if (HDR_GET(h, VERSION) != FACE_DB_VERSION)
        return FACE_DB_REASON_VERSION;
    if (HDR_GET(h, HEADER_BYTES) != FACE_DB_HEADER_BYTES || HDR_GET(h, EMBEDDING_SIZE) != FACE_DB_EMBEDDING_SIZE ||
        HDR_GET(h, CAPACITY) != FACE_DB_CAPACITY || HDR_GET(h, RECORD_BYTES) != FACE_DB_RECORD_BYTES)
        return FACE_DB_REASON_SIZE;
    if (HDR_GET(h, COUNT) > FACE_DB_CAPACITY)
        return FACE_DB_REASON_COUNT;
    if (HDR_GET(h, THRESHOLD_PERMYRIAD) > FACE_DB_THRESHOLD_MAX)
        return FACE_DB_REASON_THRESHOLD;
    return RT_NULL;
}

static int all_erased(const uint8_t *p, uint32_t size)
{
    while (size-- > 0)
        if (*p++ != 0xFF)
            return 0;
    return 1;
}

/* Check one slot: its state, why it is invalid, and its header (kept for face_db_load). Every record is read once
 * for the CRC and the name rule. */
static void check_slot(int slot, uint8_t header[FACE_DB_HEADER_BYTES], enum face_db_slot_state *state,
                       const char **reason)
{
    uint8_t record[FACE_DB_RECORD_BYTES];
    uint32_t at = slot_offset(slot), i, count, stored, crc, names_ok = 1;
    *state = FACE_DB_SLOT_INVALID;
    *reason = FACE_DB_REASON_READ;
    if (rt_port_storage_read(at, header, FACE_DB_HEADER_BYTES) != 0)
        return;
    if (all_erased(header, FACE_DB_HEADER_BYTES)) {
        /* the first record's name written under an erased header: a save stopped before its header */
        if (rt_port_storage_read(at + FACE_DB_HEADER_BYTES, record, FACE_DB_NAME_BYTES) != 0)
            return;
        if (!all_erased(record, FACE_DB_NAME_BYTES)) {
            *reason = FACE_DB_REASON_INTERRUPTED;
            return;
        }
        *state = FACE_DB_SLOT_ERASED;
        *reason = RT_NULL;
        return;
    }
    if ((*reason = header_problem(header)) != RT_NULL)
        return;
    count = HDR_GET(header, COUNT);
    stored = HDR_GET(header, CRC32);
    HDR_PUT(header, CRC32, 0);
    crc = crc32_ieee(0, header, FACE_DB_HEADER_BYTES);
    HDR_PUT(header, CRC32, stored);
    for (i = 0, at += FACE_DB_HEADER_BYTES; i < count; i++, at += FACE_DB_RECORD_BYTES) {
        if (rt_port_storage_read(at, record, FACE_DB_RECORD_BYTES) != 0) {
            *reason = FACE_DB_REASON_READ;
            return;
        }
        crc = crc32_ieee(crc, record, FACE_DB_RECORD_BYTES);
        names_ok &= (uint32_t)stored_name_valid(record + FACE_DB_REC_NAME);
    }
    if (crc != stored)
        *reason = FACE_DB_REASON_CRC;
    else if (!names_ok)
        *reason = FACE_DB_REASON_NAME;
    else
        *state = FACE_DB_SLOT_VALID;
}

static void decode_record(const uint8_t *raw, struct face_record *record)
{
    uint32_t i;
    memcpy(record->name, raw + FACE_DB_REC_NAME, FACE_DB_NAME_BYTES);
    record->photos = le_get(raw + FACE_DB_REC_PHOTOS, FACE_DB_REC_PHOTOS_BYTES);
    for (i = 0; i < FACE_DB_EMBEDDING_SIZE; i++)
        record->template_units[i] =
            (int16_t)(uint16_t)le_get(raw + FACE_DB_REC_TEMPLATE + i * FACE_DB_REC_TEMPLATE_BYTES,
                                      FACE_DB_REC_TEMPLATE_BYTES);
}

static void encode_record(const struct face_record *record, uint8_t *raw)
{
    uint32_t i, n = 0;
    memset(raw + FACE_DB_REC_NAME, 0, FACE_DB_NAME_BYTES);
    while (n < FACE_DB_NAME_BYTES - 1 && record->name[n] != '\0')
        n++;
    memcpy(raw + FACE_DB_REC_NAME, record->name, n);
    le_put(raw + FACE_DB_REC_PHOTOS, FACE_DB_REC_PHOTOS_BYTES, record->photos);
    for (i = 0; i < FACE_DB_EMBEDDING_SIZE; i++)
        le_put(raw + FACE_DB_REC_TEMPLATE + i * FACE_DB_REC_TEMPLATE_BYTES, FACE_DB_REC_TEMPLATE_BYTES,
               (uint32_t)(uint16_t)record->template_units[i]);
}

/* The records of a checked slot into `db`; 0, or -1 when the storage fails. */
static int read_records(struct face_db *db, int slot, const uint8_t *header)
{
    uint8_t raw[FACE_DB_RECORD_BYTES];
    uint32_t i, count = HDR_GET(header, COUNT), at = slot_offset(slot) + FACE_DB_HEADER_BYTES;
    for (i = 0; i < count; i++, at += FACE_DB_RECORD_BYTES) {
        if (rt_port_storage_read(at, raw, FACE_DB_RECORD_BYTES) != 0)
            return -1;
        decode_record(raw, &db->records[i]);
    }
    db->count = count;
    db->sequence = HDR_GET(header, SEQUENCE);
    db->threshold_permyriad = (uint16_t)HDR_GET(header, THRESHOLD_PERMYRIAD);
    db->slot = slot;
    return 0;
}

int face_db_load(struct face_db *db, struct face_db_load_report *report)
{
    uint8_t headers[2][FACE_DB_HEADER_BYTES];
    int slot, order[2], i;
    db->count = 0;
    db->sequence = 0;
    db->slot = -1;
    db->threshold_permyriad = FACE_DB_DEFAULT_THRESHOLD;
    for (slot = 0; slot < 2; slot++) {
        check_slot(slot, headers[slot], &report->state[slot], &report->reason[slot]);
        report->sequence[slot] = report->state[slot] == FACE_DB_SLOT_VALID ? HDR_GET(headers[slot], SEQUENCE) : 0;
    }
    /* the newest valid slot first; one that fails to read now becomes invalid and the other one is tried */
    order[0] = report->state[1] == FACE_DB_SLOT_VALID &&
               (report->state[0] != FACE_DB_SLOT_VALID || newer(report->sequence[1], report->sequence[0]));
    order[1] = 1 - order[0];
    report->used = -1;
    for (i = 0; i < 2 && report->used < 0; i++) {
        slot = order[i];
        if (report->state[slot] != FACE_DB_SLOT_VALID)
            continue;
        if (read_records(db, slot, headers[slot]) == 0) {
            report->used = slot;
        } else {
            report->state[slot] = FACE_DB_SLOT_INVALID;
            report->reason[slot] = FACE_DB_REASON_READ;
            report->sequence[slot] = 0;
        }
    }
    return FACE_DB_OK;
}

/* One storage write call of a save: counted for the power-cut test hook, which stops here after the n-th. */
static int counted(int rc)
{
    if (fault_after_writes != 0 && ++save_writes == fault_after_writes) {
        rt_kprintf("face_db: power cut (test hook) after %u writes\n", (unsigned)save_writes);
#ifdef RT_PORT_HOST_SHIM
        exit(3);
#else
        for (;;)
            rt_thread_mdelay(1000);
#endif
    }
    return rc;
}

/* Bytes written in chunks that never cross a FACE_DB_WRITE_CHUNK boundary of the flash. */
struct chunk_writer {
    uint8_t buf[FACE_DB_WRITE_CHUNK];
    uint32_t at, fill; /* buf holds the bytes for flash [at, at + fill) */
};

static int writer_flush(struct chunk_writer *w)
{
    int rc = 0;
    if (w->fill > 0)
        rc = counted(rt_port_storage_write(w->at, w->buf, w->fill));
    w->at += w->fill;
    w->fill = 0;
    return rc;
}

static int writer_put(struct chunk_writer *w, const uint8_t *data, uint32_t size)
{
    while (size > 0) {
        uint32_t room = FACE_DB_WRITE_CHUNK - w->at % FACE_DB_WRITE_CHUNK - w->fill;
        uint32_t n = size < room ? size : room;
        memcpy(w->buf + w->fill, data, n);
        w->fill += n;
        data += n;
        size -= n;
        if (n == room && writer_flush(w) != 0)
            return -1;
    }
    return 0;
}

int face_db_save(struct face_db *db)
{
    static struct chunk_writer writer; /* off the stack: msh threads have little */
    uint8_t header[FACE_DB_HEADER_BYTES], record[FACE_DB_RECORD_BYTES];
    int slot = db->slot == 0 ? 1 : 0, rc = 0;
    uint32_t base = slot_offset(slot), sequence = db->sequence + 1, crc, i;
    save_writes = 0;
    memset(header, 0, sizeof(header));
    HDR_PUT(header, MAGIC, FACE_DB_MAGIC);
    HDR_PUT(header, VERSION, FACE_DB_VERSION);
    HDR_PUT(header, HEADER_BYTES, FACE_DB_HEADER_BYTES);
    HDR_PUT(header, RECORD_BYTES, FACE_DB_RECORD_BYTES);
    HDR_PUT(header, EMBEDDING_SIZE, FACE_DB_EMBEDDING_SIZE);
    HDR_PUT(header, CAPACITY, FACE_DB_CAPACITY);
    HDR_PUT(header, COUNT, db->count);
    HDR_PUT(header, SEQUENCE, sequence);
    HDR_PUT(header, THRESHOLD_PERMYRIAD, db->threshold_permyriad);
    crc = crc32_ieee(0, header, FACE_DB_HEADER_BYTES); /* with the CRC field 0 */
    for (i = 0; i < FACE_DB_SLOT_BYTES && rc == 0; i += RT_PORT_STORAGE_SECTOR)
        rc = counted(rt_port_storage_erase(base + i, RT_PORT_STORAGE_SECTOR));
    writer.at = base + FACE_DB_HEADER_BYTES;
    writer.fill = 0;
    for (i = 0; i < db->count && rc == 0; i++) {
        encode_record(&db->records[i], record);
        crc = crc32_ieee(crc, record, FACE_DB_RECORD_BYTES);
        rc = writer_put(&writer, record, FACE_DB_RECORD_BYTES);
    }
    if (rc == 0)
        rc = writer_flush(&writer);
    if (rc == 0) {
        HDR_PUT(header, CRC32, crc);
        rc = counted(rt_port_storage_write(base, header, FACE_DB_HEADER_BYTES)); /* last: the slot becomes valid */
    }
    fault_after_writes = 0; /* the hook arms one save */
    if (rc != 0)
        return FACE_DB_ERR_IO;
    db->slot = slot;
    db->sequence = sequence;
    return FACE_DB_OK;
}

int face_db_find(const struct face_db *db, const char *name)
{
    uint32_t i;
    for (i = 0; name != RT_NULL && i < db->count; i++)
        if (strncmp(db->records[i].name, name, FACE_DB_NAME_BYTES) == 0)
            return (int)i;
    return -1;
}

int face_db_add(struct face_db *db, const char *name, uint32_t photos, const int16_t *template_units)
{
    struct face_record *record;
    if (face_db_check_name(name) != FACE_DB_OK)
        return FACE_DB_ERR_NAME;
    if (face_db_find(db, name) >= 0)
        return FACE_DB_ERR_DUPLICATE;
    if (db->count >= FACE_DB_CAPACITY)
        return FACE_DB_ERR_FULL;
    record = &db->records[db->count++];
    memset(record->name, 0, sizeof(record->name));
    strcpy(record->name, name);
    record->photos = photos;
    memcpy(record->template_units, template_units, sizeof(record->template_units));
    return FACE_DB_OK;
}

int face_db_remove(struct face_db *db, const char *name)
{
    int index = face_db_find(db, name);
    if (index < 0)
        return FACE_DB_ERR_UNKNOWN;
    memmove(&db->records[index], &db->records[index + 1], (db->count - (uint32_t)index - 1) * sizeof(db->records[0]));
    db->count--;
    return FACE_DB_OK;
}

void face_db_template(const int32_t *sums, uint32_t photos, int16_t *template_units)
{
    int64_t n = photos, sum;
    uint32_t i;
    for (i = 0; i < FACE_DB_EMBEDDING_SIZE; i++) {
        sum = sums[i];
        template_units[i] = photos == 0 ? 0 : (int16_t)((2 * sum + (sum > 0) * n - (sum < 0) * n) / (2 * n));
    }
}

void face_db_fault_after(uint32_t writes)
{
    fault_after_writes = writes;
}

const char *face_db_error_text(int code)
{
    switch (code) {
    case FACE_DB_OK:
        return "ok";
    case FACE_DB_ERR_IO:
        return "flash storage error";
    case FACE_DB_ERR_FULL:
        return "the database is full";
    case FACE_DB_ERR_DUPLICATE:
        return "the name is already enrolled";
    case FACE_DB_ERR_UNKNOWN:
        return "no one of that name is enrolled";
    case FACE_DB_ERR_NAME:
        return "names are " FACE_DB_NAME_RULE;
    default:
        return "unknown face_db error";
    }
}

static const char *slot_text(const struct face_db_load_report *report, int slot)
{
    return report->state[slot] == FACE_DB_SLOT_ERASED ? "erased" : report->reason[slot];
}

void face_db_print_load_report(const struct face_db_load_report *report, const struct face_db *db)
{
    if (report->used >= 0) {
        int other = 1 - report->used;
        rt_kprintf("face_db: slot %d (sequence %u) in use, %u of %u people, threshold %u.%04u\n", report->used,
                   (unsigned)db->sequence, (unsigned)db->count, (unsigned)FACE_DB_CAPACITY,
                   (unsigned)db->threshold_permyriad / 10000u, (unsigned)db->threshold_permyriad % 10000u);
        if (report->state[other] == FACE_DB_SLOT_INVALID)
            rt_kprintf("face_db: slot %d not used: %s\n", other, report->reason[other]);
    } else if (report->state[0] == FACE_DB_SLOT_ERASED && report->state[1] == FACE_DB_SLOT_ERASED) {
        rt_kprintf("face_db: empty (both slots erased)\n");
    } else {
        rt_kprintf("face_db: CORRUPT: no valid slot (slot 0: %s, slot 1: %s); starting empty\n", slot_text(report, 0),
                   slot_text(report, 1));
    }
}
