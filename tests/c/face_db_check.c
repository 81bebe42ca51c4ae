/* Host driver of firmware/attendance/face_db.c over the host port's flash-image storage (storage_host.c) and the
 * RT-Thread API shim: runs the operations of a script, one per line, on one database in RAM and prints a JSON line
 * for each (the firmware's own console lines, "face_db: ...", come in between).
 *
 *   face_db_check STORAGE.img|- SCRIPT        ("-": no flash image, every storage call fails)
 *
 * Script lines: load | records | add NAME PHOTOS V0 .. V(E-1) | remove NAME | find NAME | check NAME |
 * threshold PERMYRIAD | fault WRITES | save | template PHOTOS S0 .. S(E-1)   (E = FACE_DB_EMBEDDING_SIZE)
 * and the storage itself: erase OFFSET SIZE | poke OFFSET BYTE (a one-byte write) | peek OFFSET
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "face_db.h"
#include "rt_port_board.h"
#include "rtthread.h"
#include "storage_host.h"

#include "shim_tables.h"

static struct face_db db;

static const char *state_name(enum face_db_slot_state state)
{
    return state == FACE_DB_SLOT_ERASED ? "erased" : state == FACE_DB_SLOT_VALID ? "valid" : "invalid";
}

static void print_load(void)
{
    struct face_db_load_report report;
    int rc = face_db_load(&db, &report), k;
    face_db_print_load_report(&report, &db);
    printf("{\"op\":\"load\",\"rc\":%d,\"used\":%d,\"slot\":%d,\"sequence\":%lu,\"count\":%lu,\"threshold\":%u,"
           "\"slots\":[", rc, report.used, db.slot, (unsigned long)db.sequence, (unsigned long)db.count,
           (unsigned)db.threshold_permyriad);
    for (k = 0; k < 2; k++)
        printf("%s{\"state\":\"%s\",\"reason\":\"%s\",\"sequence\":%lu}", k ? "," : "", state_name(report.state[k]),
               report.reason[k] ? report.reason[k] : "", (unsigned long)report.sequence[k]);
    printf("]}\n");
}

static void print_values(const int16_t *values)
{
    uint32_t i;
    for (i = 0; i < FACE_DB_EMBEDDING_SIZE; i++)
        printf("%s%d", i ? "," : "", values[i]);
}

static void print_records(void)
{
    uint32_t i;
    printf("{\"op\":\"records\",\"records\":[");
    for (i = 0; i < db.count; i++) {
        printf("%s{\"name\":\"%s\",\"photos\":%lu,\"template\":[", i ? "," : "", db.records[i].name,
               (unsigned long)db.records[i].photos);
        print_values(db.records[i].template_units);
        printf("]}");
    }
    printf("]}\n");
}

static int read_values(FILE *script, long *values)
{
    uint32_t i;
    for (i = 0; i < FACE_DB_EMBEDDING_SIZE; i++)
        if (fscanf(script, "%ld", &values[i]) != 1)
            return -1;
    return 0;
}

static void print_rc(const char *op, int rc)
{
    printf("{\"op\":\"%s\",\"rc\":%d,\"text\":\"%s\",\"slot\":%d,\"sequence\":%lu,\"count\":%lu}\n", op, rc,
           face_db_error_text(rc), db.slot, (unsigned long)db.sequence, (unsigned long)db.count);
}

/* One script operation; 0, or -1 for a line the driver does not understand. */
static int run_op(const char *op, FILE *script)
{
    static long values[FACE_DB_EMBEDDING_SIZE];
    char name[64];
    unsigned long number;
    uint32_t i;
    if (strcmp(op, "load") == 0) {
        print_load();
    } else if (strcmp(op, "records") == 0) {
        print_records();
    } else if (strcmp(op, "save") == 0) {
        print_rc(op, face_db_save(&db));
    } else if (strcmp(op, "add") == 0) {
        int16_t units[FACE_DB_EMBEDDING_SIZE];
        if (fscanf(script, "%63s %lu", name, &number) != 2 || read_values(script, values) != 0)
            return -1;
        for (i = 0; i < FACE_DB_EMBEDDING_SIZE; i++)
            units[i] = (int16_t)values[i];
        print_rc(op, face_db_add(&db, name, (uint32_t)number, units));
    } else if (strcmp(op, "template") == 0) {
        int32_t sums[FACE_DB_EMBEDDING_SIZE];
        int16_t units[FACE_DB_EMBEDDING_SIZE];
        if (fscanf(script, "%lu", &number) != 1 || read_values(script, values) != 0)
            return -1;
        for (i = 0; i < FACE_DB_EMBEDDING_SIZE; i++)
            sums[i] = (int32_t)values[i];
        face_db_template(sums, (uint32_t)number, units);
        printf("{\"op\":\"template\",\"template\":[");
        print_values(units);
        printf("]}\n");
    } else if (strcmp(op, "remove") == 0 || strcmp(op, "find") == 0 || strcmp(op, "check") == 0) {
        if (fscanf(script, "%63s", name) != 1)
            return -1;
        if (strcmp(op, "find") == 0)
            printf("{\"op\":\"find\",\"index\":%d}\n", face_db_find(&db, name));
        else
            print_rc(op, op[0] == 'r' ? face_db_remove(&db, name) : face_db_check_name(name));
    } else if (strcmp(op, "threshold") == 0 || strcmp(op, "fault") == 0) {
        if (fscanf(script, "%lu", &number) != 1)
            return -1;
        if (op[0] == 't')
            db.threshold_permyriad = (uint16_t)number;
        else
            face_db_fault_after((uint32_t)number);
    } else if (strcmp(op, "erase") == 0 || strcmp(op, "poke") == 0 || strcmp(op, "peek") == 0) {
        long offset, value = 0;
        uint8_t byte;
        int rc;
        if (fscanf(script, "%li", &offset) != 1 || (strcmp(op, "peek") != 0 && fscanf(script, "%li", &value) != 1))
            return -1;
        byte = (uint8_t)value;
        if (strcmp(op, "erase") == 0)
            rc = rt_port_storage_erase((uint32_t)offset, (uint32_t)value);
        else if (strcmp(op, "poke") == 0)
            rc = rt_port_storage_write((uint32_t)offset, &byte, 1);
        else
            rc = rt_port_storage_read((uint32_t)offset, &byte, 1);
        printf("{\"op\":\"%s\",\"rc\":%d,\"byte\":%u}\n", op, rc, (unsigned)byte);
    } else {
        return -1;
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    char op[32];
    FILE *script;
    if (argc != 3 || (strcmp(argv[1], "-") != 0 && host_storage_open(argv[1]) != 0) ||
        (script = fopen(argv[2], "r")) == NULL) {
        fprintf(stderr, "usage: face_db_check STORAGE.img|- SCRIPT\n");
        return 2;
    }
    while (fscanf(script, "%31s", op) == 1)
        if (run_op(op, script) != 0) {
            fprintf(stderr, "face_db_check: bad script line at '%s'\n", op);
            return 2;
        }
    fclose(script);
    return 0;
}
