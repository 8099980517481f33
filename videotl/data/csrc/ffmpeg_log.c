/* A log callback for each copy of FFmpeg's libavutil in the process (decord and PyAV bundle their
 * own, torchcodec loads the system's), so that FFmpeg's lines reach videotl's logger instead of
 * the terminal.
 *
 * FFmpeg calls its log callback for every message, trace level included, from whatever thread
 * logs (decoder threads among them). This one drops messages above the threshold at the cost of a
 * comparison, formats the rest with that libavutil's own av_log_format_line2, and keeps them in a
 * ring under a mutex; Python drains the ring after each read. Nothing here takes Python's GIL, so
 * a decoder thread logging while Python waits for it cannot deadlock.
 *
 * FFmpeg's headers are not needed: the callback and the formatter have the documented
 * signatures, and the formatter of each libavutil copy is passed in as a function pointer.
 */
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

typedef int (*format_line_fn)(void *avcl, int level, const char *fmt, va_list vl, char *line, int line_size,
                              int *print_prefix);

#define SLOTS 8
#define RING 256
#define LINE 512

static format_line_fn formatters[SLOTS];
static volatile int threshold = 24; /* AV_LOG_WARNING */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char lines[RING][LINE];
static int levels[RING];
static unsigned long long written, taken, discarded;

/* A child forked while a decoder thread held the lock (DataLoader workers fork) starts unlocked. */
static void unlock_in_child(void) { pthread_mutex_init(&lock, NULL); }
__attribute__((constructor)) static void register_fork_handler(void) { pthread_atfork(NULL, NULL, unlock_in_child); }

static void handle(int slot, void *avcl, int level, const char *fmt, va_list vl) {
    if (level > threshold || formatters[slot] == NULL) return;
    char line[LINE];
    int print_prefix = 1;
    line[0] = '\0';
    formatters[slot](avcl, level, fmt, vl, line, LINE, &print_prefix);
    pthread_mutex_lock(&lock);
    /* A full ring keeps the oldest lines (the first of a run of repeats is what a summary shows)
     * and counts the rest. */
    if (written - taken < RING) {
        unsigned long long at = written % RING;
        memcpy(lines[at], line, LINE);
        levels[at] = level;
        written++;
    } else {
        discarded++;
    }
    pthread_mutex_unlock(&lock);
}

#define CALLBACK(i) \
    static void callback_##i(void *avcl, int level, const char *fmt, va_list vl) { handle(i, avcl, level, fmt, vl); }
CALLBACK(0)
CALLBACK(1)
CALLBACK(2)
CALLBACK(3)
CALLBACK(4)
CALLBACK(5)
CALLBACK(6)
CALLBACK(7)

typedef void (*callback_fn)(void *, int, const char *, va_list);
static const callback_fn callbacks[SLOTS] = {callback_0, callback_1, callback_2, callback_3,
                                             callback_4, callback_5, callback_6, callback_7};

/* The callback to give one libavutil copy (its av_log_set_callback), bound to that copy's
 * av_log_format_line2; NULL when every slot is taken. */
void *videotl_log_callback(int slot, void *formatter) {
    if (slot < 0 || slot >= SLOTS) return NULL;
    formatters[slot] = (format_line_fn)formatter;
    return (void *)callbacks[slot];
}

void videotl_log_set_threshold(int level) { threshold = level; }

/* Copy the oldest waiting line into out (size bytes) and its level into *level; 1 if a line was
 * waiting, else 0. */
int videotl_log_take(char *out, int size, int *level) {
    int found = 0;
    pthread_mutex_lock(&lock);
    if (taken < written) {
        unsigned long long at = taken % RING;
        strncpy(out, lines[at], (size_t)size - 1);
        out[size - 1] = '\0';
        *level = levels[at];
        taken++;
        found = 1;
    }
    pthread_mutex_unlock(&lock);
    return found;
}

/* The lines the full ring could not keep since the last call. */
unsigned long long videotl_log_take_discarded(void) {
    pthread_mutex_lock(&lock);
    unsigned long long count = discarded;
    discarded = 0;
    pthread_mutex_unlock(&lock);
    return count;
}
