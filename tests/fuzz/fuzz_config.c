/*
 * fuzz_config: libFuzzer target for the config file parser (server/core/config.c): sections,
 * keys, comments, every key type of key_rows (strings, integers with their bounds, booleans,
 * lists, enums, listeners), and the checks across keys (expiry bounds, providers, TLS and
 * admin pairs, the VAPID subject, APNs ids, the upstream and admin addresses). The input is
 * the file's bytes, read by config_load through a memfd as sipwake reads a file. A file that
 * loads is also asked what config_key_where, config_names_us, config_gateway and
 * config_admin_insecure say of it. `make test` replays tests/fuzz/corpus-config through it
 * once; `make fuzz` fuzzes it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0) {
        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
    }
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    char path[64], err[1024];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct config cfg;
    if (config_load(path, &cfg, err, sizeof err) < 0) {
        if (!*err) {
            fprintf(stderr, "fuzz_config: config_load failed without a reason\n");
            abort();
        }
        return 0;
    }
    char where[1100];
    config_key_where(&cfg, "sip", "listen", where, sizeof where);
    config_key_where(&cfg, "push", "vapid_subject", where, sizeof where);
    for (size_t i = 0; i < cfg.n_listens; i++)
        (void)config_names_us(&cfg, cfg.listens[i].host, NULL);
    (void)config_names_us(&cfg, "example.com", "5060");
    (void)config_gateway(&cfg);
    (void)config_admin_insecure(&cfg);
    (void)config_provider_enabled(&cfg, "apns.dev");
    config_free(&cfg);
    return 0;
}
