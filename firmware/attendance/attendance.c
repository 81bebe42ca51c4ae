/* The attendance application: the detector and the recognizer on every camera frame, the enrolled faces in a
 * power-loss safe database in flash (face_db.c), and the msh commands of a K210 that names the people in front of
 * it. The two models are the generated ones named in attendance_models.h (rendered by deploy/attendance/render.py);
 * deploy/attendance/recognize.py is the Python twin of what each command decides.
 *
 *   face_recognize [N]       the next N camera frames (default: every frame left): one JSON line per frame,
 *                            {"frame":F,"faces":[{"box":[..],"crop":[..],"score":S,"name":"..","similarity":X}],"ms":T}
 *   face_enroll NAME [N]     enroll NAME from the largest face of each of the next N frames (default
 *                            ATTENDANCE_ENROLL_FRAMES); the template is the mean of their embeddings
 *   face_list                one line per enrolled person, then the database's summary
 *   face_delete NAME         remove NAME
 *   face_threshold [VALUE]   show or set the similarity (0 .. 1) at or above which a face is named
 *
 * Frames are taken from the camera as a stream: each command consumes the frames it reads. Every change is saved
 * at once (face_db_save writes the other slot, header last), so it survives a reset or a power cut. */
#include <rtthread.h>
#include <stdlib.h>
#include <string.h>

#include "attendance_models.h"
#include "console_line.h"
#include "embedding.h"
#include "face_crop.h"
#include "face_db.h"
#include "face_match.h"
#include "rt_port_board.h"

#if ATTENDANCE_EMBEDDING_SIZE != FACE_DB_EMBEDDING_SIZE
#error "the recognizer's embedding and the face database's template differ in size"
#endif

#define ATT_MAX_FRAMES_ARG 10000
#define ATT_PERMYRIAD 10000

/* One face of a frame: the detector's box (frame pixels), its score, the whole-pixel box the crop used and the
 * embedding in 1e-4 units. */
struct att_face {
    float box[4];
    float score;
    int crop[4];
    int16_t units[ATTENDANCE_EMBEDDING_SIZE];
};

static struct face_db att_db;
static struct region_detection att_dets[ATTENDANCE_MAX_FACES];
static struct att_face att_faces[ATTENDANCE_MAX_FACES];
static float att_embedding[ATTENDANCE_EMBEDDING_SIZE];
static int att_cursor; /* the next camera frame */

/* Load the database at boot and say what was found (a corrupt one is reported and not used). */
static int attendance_boot(void)
{
    struct face_db_load_report report;
    if (face_db_load(&att_db, &report) != FACE_DB_OK)
        rt_kprintf("face_db: cannot read the flash store; starting empty\n");
    face_db_print_load_report(&report, &att_db);
    return 0;
}
INIT_APP_EXPORT(attendance_boot);

/* Detect the frame's faces (at most ATTENDANCE_MAX_FACES, highest score first) and embed each; how many, or -1. */
static int att_detect_and_embed(const struct rt_port_frame *frame)
{
    int found = ATTENDANCE_DETECT(frame, att_dets, ATTENDANCE_MAX_FACES), i, k;
    for (i = 0; i < found; i++) {
        struct att_face *face = &att_faces[i];
        memcpy(face->box, att_dets[i].box, sizeof(face->box));
        face->score = att_dets[i].score;
        if (face_crop_round_box(face->box, face->crop) != 0 || ATTENDANCE_EMBED(frame, face->crop, att_embedding) != 0)
            return -1;
        for (k = 0; k < ATTENDANCE_EMBEDDING_SIZE; k++)
            face->units[k] = (int16_t)embedding_unit(att_embedding[k]);
    }
    return found;
}

/* The next camera frame, or -1 when the stream has ended. */
static int att_next_frame(struct rt_port_frame *frame)
{
    int index;
    if (att_cursor >= rt_port_frame_count())
        return -1;
    index = att_cursor++;
    if (rt_port_frame_get(index, frame) != 0) {
        rt_kprintf("attendance: frame %d is not a readable RGB888 image\n", index);
        return -2;
    }
    return index;
}

static int att_count_arg(const char *text, int *count)
{
    char *end;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || value < 1 || value > ATT_MAX_FRAMES_ARG)
        return -1;
    *count = (int)value;
    return 0;
}

static void att_box(struct console_line *line, const char *key, const float *box, const int *whole)
{
    int k;
    console_line_text(line, key);
    for (k = 0; k < 4; k++) {
        console_line_text(line, k ? "," : "[");
        if (box != RT_NULL)
            console_line_fixed(line, box[k], 3);
        else
            console_line_int(line, whole[k]);
    }
    console_line_text(line, "]");
}

static void att_print_frame(int index, int faces, rt_tick_t ticks, int counted, uint64_t instructions)
{
    struct console_line line;
    int i;
    console_line_begin(&line);
    console_line_text(&line, "{\"frame\":");
    console_line_int(&line, index);
    console_line_text(&line, ",\"faces\":[");
    for (i = 0; i < faces; i++) {
        double similarity;
        int best = face_match_best(&att_db, att_faces[i].units, &similarity);
        int named = best >= 0 && similarity * ATT_PERMYRIAD >= (double)att_db.threshold_permyriad;
        console_line_text(&line, i ? ",{" : "{");
        att_box(&line, "\"box\":", att_faces[i].box, RT_NULL);
        att_box(&line, ",\"crop\":", RT_NULL, att_faces[i].crop);
        console_line_text(&line, ",\"score\":");
        console_line_fixed(&line, att_faces[i].score, 6);
        console_line_text(&line, ",\"name\":\"");
        console_line_text(&line, named ? att_db.records[best].name : "unknown");
        console_line_text(&line, "\",\"similarity\":");
        console_line_fixed(&line, best >= 0 ? similarity : 0.0, 4);
        console_line_text(&line, "}");
    }
    console_line_text(&line, "],\"ms\":");
    console_line_uint(&line, (unsigned long long)ticks * 1000u / RT_TICK_PER_SECOND);
    if (counted) {
        console_line_text(&line, ",\"insn\":");
        console_line_uint(&line, instructions);
    }
    console_line_text(&line, "}");
    console_line_end(&line);
}

static int face_recognize(int argc, char **argv)
{
    int count = ATT_MAX_FRAMES_ARG, done;
    if (argc > 2 || (argc == 2 && att_count_arg(argv[1], &count) != 0)) {
        rt_kprintf("usage: face_recognize [N]  (N: 1 .. %d frames; default every frame left)\n", ATT_MAX_FRAMES_ARG);
        return -1;
    }
    for (done = 0; done < count; done++) {
        struct rt_port_frame frame;
        uint64_t insn_start = 0, insn_end = 0;
        int index = att_next_frame(&frame), faces, counted;
        rt_tick_t start;
        if (index == -1 && done > 0)
            break;
        if (index == -1) {
            rt_kprintf("face_recognize: no frames left (the camera stream has ended)\n");
            return -1;
        }
        if (index < 0)
            return -1;
        start = rt_tick_get();
        counted = rt_port_instructions(&insn_start);
        faces = att_detect_and_embed(&frame);
        if (faces < 0) {
            rt_kprintf("face_recognize: the models could not run on frame %d\n", index);
            return -1;
        }
        counted = counted && rt_port_instructions(&insn_end);
        att_print_frame(index, faces, rt_tick_get() - start, counted, insn_end - insn_start);
    }
    return 0;
}
MSH_CMD_EXPORT(face_recognize, name the faces of the next N camera frames as JSON lines);

static void att_print_summary(struct console_line *line)
{
    console_line_text(line, "\"people\":");
    console_line_uint(line, att_db.count);
    console_line_text(line, ",\"capacity\":");
    console_line_uint(line, FACE_DB_CAPACITY);
    console_line_text(line, ",\"threshold\":");
    console_line_fixed(line, (double)att_db.threshold_permyriad / ATT_PERMYRIAD, 4);
    console_line_text(line, ",\"slot\":");
    console_line_int(line, att_db.slot);
    console_line_text(line, ",\"sequence\":");
    console_line_uint(line, att_db.sequence);
}

/* The database's summary as a line of its own: {"people":N,...}. */
static void att_summary_line(void)
{
    struct console_line line;
    console_line_begin(&line);
    console_line_text(&line, "{");
    att_print_summary(&line);
    console_line_text(&line, "}");
    console_line_end(&line);
}

/* Save the changed database; on failure say so (the previous one is still what the flash holds). */
static int att_save(const char *command)
{
    int status = face_db_save(&att_db);
    if (status != FACE_DB_OK)
        rt_kprintf("%s: the database was not saved: %s\n", command, face_db_error_text(status));
    return status;
}

static int att_check_new_name(const char *name)
{
    if (face_db_check_name(name) != FACE_DB_OK) {
        rt_kprintf("face_enroll: bad name '%.40s': 1 to %d characters of A-Z a-z 0-9 _ . -, starting with a letter or "
                   "digit\n", name, FACE_DB_NAME_BYTES - 1);
        return -1;
    }
    if (face_db_find(&att_db, name) >= 0) {
        rt_kprintf("face_enroll: '%s' is already enrolled (face_delete it first)\n", name);
        return -1;
    }
    if (att_db.count >= FACE_DB_CAPACITY) {
        rt_kprintf("face_enroll: the database is full (%d people); face_delete someone first\n", FACE_DB_CAPACITY);
        return -1;
    }
    return 0;
}

/* The largest face of the frame (by box area; the first on ties), or -1 when there is none. */
static int att_largest(int faces)
{
    int best = -1, i;
    float best_area = 0.0f;
    for (i = 0; i < faces; i++) {
        float area = (att_faces[i].box[2] - att_faces[i].box[0]) * (att_faces[i].box[3] - att_faces[i].box[1]);
        if (best < 0 || area > best_area) {
            best = i;
            best_area = area;
        }
    }
    return best;
}

static int face_enroll(int argc, char **argv)
{
    static int32_t sums[ATTENDANCE_EMBEDDING_SIZE];
    int16_t template_units[ATTENDANCE_EMBEDDING_SIZE];
    int frames = ATTENDANCE_ENROLL_FRAMES, used = 0, done, k;
    struct console_line line;
    if (argc < 2 || argc > 3 || (argc == 3 && att_count_arg(argv[2], &frames) != 0)) {
        rt_kprintf("usage: face_enroll NAME [FRAMES]  (FRAMES: 1 .. %d, default %d)\n", ATT_MAX_FRAMES_ARG,
                   ATTENDANCE_ENROLL_FRAMES);
        return -1;
    }
    if (att_check_new_name(argv[1]) != 0)
        return -1;
    memset(sums, 0, sizeof(sums));
    console_line_begin(&line);
    console_line_text(&line, "{\"enrolled\":\"");
    console_line_text(&line, argv[1]);
    console_line_text(&line, "\",\"frames\":[");
    for (done = 0; done < frames; done++) {
        struct rt_port_frame frame;
        int index = att_next_frame(&frame), faces, face;
        if (index == -1)
            break;
        if (index < 0 || (faces = att_detect_and_embed(&frame)) < 0) {
            rt_kprintf("face_enroll: the models could not run on frame %d; nothing enrolled\n", index);
            return -1;
        }
        if ((face = att_largest(faces)) < 0)
            continue;
        for (k = 0; k < ATTENDANCE_EMBEDDING_SIZE; k++)
            sums[k] += att_faces[face].units[k];
        console_line_text(&line, used++ ? "," : "");
        console_line_int(&line, index);
    }
    if (used == 0) {
        rt_kprintf("face_enroll: no face in %d frame(s); nothing enrolled\n", done);
        return -1;
    }
    face_db_template(sums, (uint32_t)used, template_units);
    if (face_db_add(&att_db, argv[1], (uint32_t)used, template_units) != FACE_DB_OK)
        return -1;
    if (att_save("face_enroll") != FACE_DB_OK) {
        face_db_remove(&att_db, argv[1]);
        return -1;
    }
    console_line_text(&line, "],\"photos\":");
    console_line_int(&line, used);
    console_line_text(&line, ",");
    att_print_summary(&line);
    console_line_text(&line, "}");
    console_line_end(&line);
    return 0;
}
MSH_CMD_EXPORT(face_enroll, enroll NAME from the largest face of the next FRAMES camera frames);

static int face_list(int argc, char **argv)
{
    struct console_line line;
    uint32_t i;
    (void)argv;
    if (argc != 1) {
        rt_kprintf("usage: face_list\n");
        return -1;
    }
    for (i = 0; i < att_db.count; i++) {
        console_line_begin(&line);
        console_line_text(&line, "{\"person\":\"");
        console_line_text(&line, att_db.records[i].name);
        console_line_text(&line, "\",\"photos\":");
        console_line_uint(&line, att_db.records[i].photos);
        console_line_text(&line, "}");
        console_line_end(&line);
    }
    att_summary_line();
    return 0;
}
MSH_CMD_EXPORT(face_list, list the enrolled people);

static int face_delete(int argc, char **argv)
{
    struct console_line line;
    if (argc != 2) {
        rt_kprintf("usage: face_delete NAME\n");
        return -1;
    }
    if (face_db_find(&att_db, argv[1]) < 0) {
        rt_kprintf("face_delete: '%.40s' is not enrolled (face_list shows who is)\n", argv[1]);
        return -1;
    }
    face_db_remove(&att_db, argv[1]);
    if (att_save("face_delete") != FACE_DB_OK) {
        struct face_db_load_report report;
        face_db_load(&att_db, &report); /* back to what the flash holds */
        return -1;
    }
    console_line_begin(&line);
    console_line_text(&line, "{\"deleted\":\"");
    console_line_text(&line, argv[1]);
    console_line_text(&line, "\",");
    att_print_summary(&line);
    console_line_text(&line, "}");
    console_line_end(&line);
    return 0;
}
MSH_CMD_EXPORT(face_delete, remove NAME from the enrolled people);

/* "0", "1", "0.55", ".5", "1.0000": a value in [0, 1] with at most 4 decimals, in 1e-4 units; -1 when not. */
static int att_parse_permyriad(const char *text)
{
    long whole = 0, fraction = 0, scale = 1000;
    const char *p = text;
    if (*p == '\0')
        return -1;
    while (*p >= '0' && *p <= '9' && whole <= 1)
        whole = whole * 10 + (*p++ - '0');
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9' && scale > 0; p++, scale /= 10)
            fraction += (*p - '0') * scale;
    if (*p != '\0' || p == text || whole * ATT_PERMYRIAD + fraction > ATT_PERMYRIAD)
        return -1;
    return (int)(whole * ATT_PERMYRIAD + fraction);
}

static int face_threshold(int argc, char **argv)
{
    if (argc > 2) {
        rt_kprintf("usage: face_threshold [VALUE]  (0 .. 1, at most 4 decimals)\n");
        return -1;
    }
    if (argc == 2) {
        int value = att_parse_permyriad(argv[1]);
        uint16_t previous = att_db.threshold_permyriad;
        if (value < 0) {
            rt_kprintf("face_threshold: '%.40s' is not a similarity between 0 and 1 with at most 4 decimals\n",
                       argv[1]);
            return -1;
        }
        att_db.threshold_permyriad = (uint16_t)value;
        if (att_save("face_threshold") != FACE_DB_OK) {
            att_db.threshold_permyriad = previous;
            return -1;
        }
    }
    att_summary_line();
    return 0;
}
MSH_CMD_EXPORT(face_threshold, show or set the similarity at or above which a face is named);

#if ATTENDANCE_TEST_HOOKS
/* Test hook: the next save stops after N flash writes, as if the power were cut there (face_db_fault_after). */
static int face_db_fault(int argc, char **argv)
{
    int writes;
    if (argc != 2 || att_count_arg(argv[1], &writes) != 0) {
        rt_kprintf("usage: face_db_fault N  (the next save stops after N flash writes)\n");
        return -1;
    }
    face_db_fault_after((uint32_t)writes);
    rt_kprintf("face_db_fault: the next save stops after %d flash writes\n", writes);
    return 0;
}
MSH_CMD_EXPORT(face_db_fault, test hook: cut the power after N flash writes of the next save);
#endif
