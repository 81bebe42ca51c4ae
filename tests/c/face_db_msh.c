/* An msh command for trying firmware/attendance/face_db.c and the board's flash store on real RT-Thread in QEMU
 * (tests/test_attendance_db.py builds it into bsp/qemu-virt64-riscv beside face_port/). One JSON line per call:
 *
 *   fdb load | records | save | add NAME PHOTOS SEED | remove NAME | threshold PERMYRIAD | fault WRITES | storage
 *
 * `add` makes the template from SEED (template_units[i] = ((SEED + 1) * (i + 3) * 7919) % 20001 - 10000); `storage`
 * erases two sectors at FDB_SCRATCH, writes a pattern across block boundaries, reads it back through the store and
 * the flash window, and tries an unaligned erase and a read past the flash. */
#include <stdlib.h>
#include <string.h>

#include <rtthread.h>

#include "face_db.h"
#include "memory_map.h"
#include "rt_port_board.h"

#define FDB_SCRATCH 0xF00000u
#define FDB_PATTERN_AT 300u
#define FDB_PATTERN_BYTES 700u
#define FDB_READ_AT 100u
#define FDB_READ_BYTES 1000u

static struct face_db db;
static struct face_db_load_report report;

static const char *state_name(enum face_db_slot_state state)
{
    return state == FACE_DB_SLOT_ERASED ? "erased" : state == FACE_DB_SLOT_VALID ? "valid" : "invalid";
}

static void print_result(const char *op, int rc)
{
    rt_kprintf("{\"op\":\"%s\",\"rc\":%d,\"text\":\"%s\",\"slot\":%d,\"sequence\":%lu,\"count\":%lu}\n", op, rc,
               face_db_error_text(rc), db.slot, (unsigned long)db.sequence, (unsigned long)db.count);
}

static void load(void)
{
    int k;
    face_db_load(&db, &report);
    face_db_print_load_report(&report, &db);
    rt_kprintf("{\"op\":\"load\",\"used\":%d,\"sequence\":%lu,\"count\":%lu,\"threshold\":%u,\"slots\":[", report.used,
               (unsigned long)db.sequence, (unsigned long)db.count, (unsigned)db.threshold_permyriad);
    for (k = 0; k < 2; k++)
        rt_kprintf("%s{\"state\":\"%s\",\"reason\":\"%s\",\"sequence\":%lu}", k ? "," : "", state_name(report.state[k]),
                   report.reason[k] ? report.reason[k] : "", (unsigned long)report.sequence[k]);
    rt_kprintf("]}\n");
}

static void records(void)
{
    uint32_t i, j;
    for (i = 0; i < db.count; i++) {
        long sum = 0;
        for (j = 0; j < FACE_DB_EMBEDDING_SIZE; j++)
            sum += db.records[i].template_units[j];
        rt_kprintf("{\"op\":\"record\",\"name\":\"%s\",\"photos\":%lu,\"template_sum\":%ld}\n", db.records[i].name,
                   (unsigned long)db.records[i].photos, sum);
    }
}

static void add(const char *name, uint32_t photos, uint32_t seed)
{
    static int16_t units[FACE_DB_EMBEDDING_SIZE];
    uint32_t i;
    for (i = 0; i < FACE_DB_EMBEDDING_SIZE; i++)
        units[i] = (int16_t)((long)((seed + 1) * (i + 3) * 7919u % 20001u) - 10000);
    print_result("add", face_db_add(&db, name, photos, units));
}

static uint8_t pattern(uint32_t i)
{
    return (uint8_t)(i * 13u + 5u);
}

static void storage(void)
{
    static uint8_t data[FDB_PATTERN_BYTES], back[FDB_READ_BYTES], want[FDB_READ_BYTES];
    const uint8_t *window = (const uint8_t *)(uintptr_t)(FW_FLASH_BASE + FDB_SCRATCH + FDB_READ_AT);
    int erase_rc, write_rc, read_rc, unaligned, past;
    uint32_t i;
    for (i = 0; i < FDB_PATTERN_BYTES; i++)
        data[i] = pattern(i);
    memset(want, 0xFF, sizeof(want));
    memcpy(want + (FDB_PATTERN_AT - FDB_READ_AT), data, sizeof(data));
    erase_rc = rt_port_storage_erase(FDB_SCRATCH, 2 * RT_PORT_STORAGE_SECTOR);
    write_rc = rt_port_storage_write(FDB_SCRATCH + FDB_PATTERN_AT, data, sizeof(data));
    read_rc = rt_port_storage_read(FDB_SCRATCH + FDB_READ_AT, back, sizeof(back));
    unaligned = rt_port_storage_erase(FDB_SCRATCH + 512, RT_PORT_STORAGE_SECTOR);
    past = rt_port_storage_read(FW_FLASH_SIZE - 4, back, 8);
    rt_kprintf("{\"op\":\"storage\",\"erase\":%d,\"write\":%d,\"read\":%d,\"read_equal\":%d,\"window_equal\":%d,"
               "\"unaligned\":%d,\"past\":%d}\n", erase_rc, write_rc, read_rc,
               memcmp(back, want, sizeof(want)) == 0, memcmp(window, want, sizeof(want)) == 0, unaligned, past);
}

static int fdb(int argc, char **argv)
{
    const char *op = argc > 1 ? argv[1] : "";
    if (strcmp(op, "load") == 0 && argc == 2)
        load();
    else if (strcmp(op, "records") == 0 && argc == 2)
        records();
    else if (strcmp(op, "save") == 0 && argc == 2)
        print_result(op, face_db_save(&db));
    else if (strcmp(op, "add") == 0 && argc == 5)
        add(argv[2], (uint32_t)strtoul(argv[3], RT_NULL, 0), (uint32_t)strtoul(argv[4], RT_NULL, 0));
    else if (strcmp(op, "remove") == 0 && argc == 3)
        print_result(op, face_db_remove(&db, argv[2]));
    else if (strcmp(op, "threshold") == 0 && argc == 3)
        db.threshold_permyriad = (uint16_t)strtoul(argv[2], RT_NULL, 0);
    else if (strcmp(op, "fault") == 0 && argc == 3)
        face_db_fault_after((uint32_t)strtoul(argv[2], RT_NULL, 0));
    else if (strcmp(op, "storage") == 0 && argc == 2)
        storage();
    else {
        rt_kprintf("usage: fdb load|records|save|add NAME PHOTOS SEED|remove NAME|threshold N|fault N|storage\n");
        return -1;
    }
    return 0;
}
MSH_CMD_EXPORT(fdb, face_db on the board flash store);
