/*
 * log: levelled logging to stderr, one line per event.
 *
 * Every line starts with a UTC timestamp and the level. Callers put the subject first
 * ("registrar: ...", "policy[gen 3]: ...") so lines can be grepped by module. Logging never
 * fails and never blocks on anything but stderr.
 */
#ifndef SIPWAKE_LOG_H
#define SIPWAKE_LOG_H

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

/* The level is process-wide: set it at start, before other threads log. log_msg and log_notice may
 * be called from any thread: each line is formatted on the caller's stack and written with one
 * fputs (stdio locks stderr). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error|warn|info|debug"; 0 on success, -1 if unknown. */
int log_parse_level(const char *s, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line printed whatever the level: start-up facts an operator always needs (where the
 * server listens, that it is ready) and the shutdown. */
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                    \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

#endif
