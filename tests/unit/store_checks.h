/* What the store unit tests share (test_store_backends.c, test_store_mongo.c): a binding to
 * save, loading the bindings back and asking which came, reading the push log as text. Through be,
 * the backend under test, which the test sets. Header-only, like tap.h. */
#ifndef SIPWAKE_TEST_STORE_CHECKS_H
#define SIPWAKE_TEST_STORE_CHECKS_H

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store.h"

static inline struct store_binding binding(uint64_t id, const char *user, time_t expires)
{
    struct store_binding b = {.contact_id = id,
                              .username = user,
                              .domain = "example.com",
                              .contact = "sip:phone@192.0.2.1:5060",
                              .received = NULL,
                              .expires = expires,
                              .q = 0.5,
                              .callid = "call-1",
                              .cseq = 7,
                              .last_modified = 1700000000,
                              .flags = 0,
                              .user_agent = "test",
                              .sip_instance = "<urn:uuid:00000000-0000-0000-0000-000000000001>"};
    return b;
}

static uint64_t loaded_ids[16];
static int loaded_n;
static char loaded_instance[128];
static double loaded_q;
static time_t loaded_modified;

static inline void on_binding(void *arg, const struct store_binding *b)
{
    (void)arg;
    if (loaded_n < 16)
        loaded_ids[loaded_n++] = b->contact_id;
    snprintf(loaded_instance, sizeof loaded_instance, "%s", b->sip_instance ? b->sip_instance : "");
    loaded_q = b->q;
    loaded_modified = b->last_modified;
}

static const struct store_backend *be; /* the backend under test */

static inline int load(void *m, long *purged)
{
    char err[512];
    loaded_n = 0;
    long p = 0;
    int rc = be->load_bindings(m, time(NULL), on_binding, NULL, &p, err, sizeof err);
    if (rc < 0)
        printf("# load: %s\n", err);
    if (purged)
        *purged = p;
    return rc < 0 ? -1 : loaded_n;
}

static inline int has(uint64_t id)
{
    for (int i = 0; i < loaded_n; i++)
        if (loaded_ids[i] == id)
            return 1;
    return 0;
}

static char names_seen[256];

static inline void on_push(void *arg, const struct store_push_log *r)
{
    (void)arg;
    snprintf(names_seen + strlen(names_seen), sizeof names_seen - strlen(names_seen), "%s:%ld,",
             r->call_id ? r->call_id : "-", (long)r->time_ms);
}

static inline int push_rows(void *m, const char *tenant, const char *reason, int64_t before)
{
    char err[512];
    names_seen[0] = 0;
    int rc = be->push_log_read(m, tenant, NULL, reason, before, 10, on_push, NULL, err, sizeof err);
    if (rc < 0)
        printf("# %s\n", err);
    return rc;
}

#endif
