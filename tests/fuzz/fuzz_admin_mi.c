/*
 * fuzz_admin_mi: libFuzzer target for the bytes an admin client sends to POST /mi — the
 * JSON-RPC request, its method name and params by position or by name — through the real
 * dispatch, against a location with a few bindings (re-made when a command removed them) and
 * a real SQLite store for the audit rows. Every answer must be one JSON-RPC 2.0 object (a
 * streamed ul_dump is read to its end). `make test` replays tests/fuzz/corpus-mi through it
 * once; `make fuzz` fuzzes it.
 */
#include <ev.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "location.h"
#include "log.h"
#include "lua_vm.h"
#include "sip_msg.h"
#include "store.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct config cfg;
static struct ev_loop *loop;
static struct store *store;
static struct admin adm;

static void add_binding(const char *aor, const char *contact, const char *prid)
{
    if (location_find(adm.deps.loc, aor))
        return;
    struct binding_fields f = {.contact_id = location_new_id(adm.deps.loc),
                               .expires = util_now() + 600,
                               .last_modified = util_now(),
                               .cseq = 1,
                               .q = -1,
                               .listener = -1,
                               .contact = contact,
                               .callid = "fuzz",
                               .socket = "udp:127.0.0.1:5060",
                               .pn_provider = prid ? "apns" : NULL,
                               .pn_param = prid ? "TEAM.org.app" : NULL,
                               .pn_prid = prid};
    location_save(adm.deps.loc, aor, location_binding_new(&f), NULL);
}

static void setup(void)
{
    char err[512];
    config_defaults(&cfg);
    char dir[] = "/tmp/sipwake-fuzz-mi-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    free(cfg.store_path);
    cfg.store_path = xasprintf("%s/fuzz.db", dir);
    loop = ev_default_loop(0);
    if (store_open(&cfg, &store, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    store_start(store, loop);
    struct lua_vm *vm;
    if (lua_vm_new(&cfg, &vm, err, sizeof err) == 0) /* reload_routes needs a current VM */
        lua_vm_set_current(vm);
    adm.loop = loop;
    adm.cfg = &cfg;
    adm.started = util_now();
    adm.deps.store = store;
    adm.deps.loc = location_new(loop, store);
    adm.deps.version = "fuzz";
    log_set_level(LOG_LEVEL_ERROR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loop)
        setup();
    add_binding("alice@example.com", "sip:alice@127.0.0.1:5070", NULL);
    add_binding("frank@example.com",
                "sip:frank@127.0.0.1:5071;pn-provider=apns;pn-param=TEAM.org.app;pn-prid=0A0B",
                "0A0B");
    struct admin_req r;
    memset(&r, 0, sizeof r);
    snprintf(r.who, sizeof r.who, "token:fuzz");
    snprintf(r.source, sizeof r.source, "127.0.0.1");
    snprintf(r.method, sizeof r.method, "POST");
    r.path = xstrdup("/mi");
    buf_append(&r.body, data, size);
    buf_append(&r.body, "", 1);
    r.body.len--;
    admin_mi(&adm, &r);
    if (!r.answered)
        abort();
    if (r.stream) { /* read it as a client would */
        struct admin_stream *s = r.stream;
        int rc;
        while ((rc = s->next(s->state, &s->pending)) > 0)
            ;
        if (rc < 0)
            abort();
        buf_free(&r.out);
        r.out = s->pending;
        s->done(s->state);
        free(s);
    }
    json_error_t e;
    json_t *ans = json_loadb(r.out.data, r.out.len, 0, &e);
    const char *v = json_string_value(json_object_get(ans, "jsonrpc"));
    if (!json_is_object(ans) || !v || strcmp(v, "2.0") != 0)
        abort(); /* never anything but one JSON-RPC answer */
    json_decref(ans);
    free(r.path);
    buf_free(&r.body);
    buf_free(&r.out);
    free(r.set_cookie);
    /* let the store commit the audit rows and report back */
    while (adm.jobs_out > 0)
        ev_run(loop, EVRUN_ONCE);
    return 0;
}
