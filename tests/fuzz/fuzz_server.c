/*
 * fuzz_server: the server side of the dispatch fuzzers (see fuzz_server.h).
 */
#include "fuzz_server.h"

#include <dirent.h>
#include <ev.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "destination.h"
#include "dispatch.h"
#include "location.h"
#include "log.h"
#include "lua_vm.h"
#include "msgstore.h"
#include "overload.h"
#include "proxy.h"
#include "registrar.h"
#include "sip_msg.h"
#include "store.h"
#include "transport.h"
#include "txn.h"
#include "util.h"

static struct config cfg;
static struct ev_loop *loop;
static struct store *store;
static size_t sent;

/* One server, made for one run as main.c wires it (without push, the bucket and the admin:
 * they need the network or are not SIP input). */
struct server {
    struct location *loc;
    struct transport *tp;
    struct txn_table *txns;
    struct registrar *reg;
    struct destination *dest;
    struct proxy *proxy;
    struct msgstore *msgstore;
    struct overload *ovl;
    struct dispatch dispatch;
};

static struct buf last_sent;
static char last_branch[128], last_record_route[512];

/* The value of the first header line named name (with its ": "), up to its line end. */
static void header_value(const char *msg, const char *name, char *out, size_t outlen)
{
    const char *at = strstr(msg, name);
    if (!at)
        return;
    at += strlen(name);
    snprintf(out, outlen, "%.*s", (int)strcspn(at, "\r\n"), at);
}

static void record(void *arg, const struct sip_source *dst, const char *buf, size_t len)
{
    sent++;
    last_sent.len = 0;
    buf_append(&last_sent, buf, len);
    if (strncmp(last_sent.data, "SIP/", 4) == 0)
        return;
    /* a request the server sent: what a peer answering it needs */
    char via[512] = "";
    header_value(last_sent.data, "\r\nVia: ", via, sizeof via);
    const char *b = strstr(via, "branch=");
    if (b)
        snprintf(last_branch, sizeof last_branch, "%.*s", (int)strcspn(b + 7, ";, "), b + 7);
    header_value(last_sent.data, "\r\nRecord-Route: ", last_record_route, sizeof last_record_route);
}

static void flow_closed(void *arg, uint64_t flow_id)
{
    txn_client_flow_failed(arg, flow_id);
}

static int nothing(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    return 0;
}

static int forget_messages(void *db, const struct store_backend *be, void *arg, char *err,
                           size_t errlen)
{
    return be->messages_expire(db, INT64_MAX, err, errlen);
}

static void done_cb(void *arg, int rc)
{
    *(int *)arg = 1;
}

/* Run the loop until the store has answered everything, including what its answers asked. */
static void settle(void)
{
    static uint64_t quiet; /* store_mark when the store was last found with nothing to do */
    for (int round = 0; round < 64 && store_mark(store) != quiet; round++) {
        uint64_t before = store_mark(store);
        int done = 0;
        store_call(store, STORE_NOW, nothing, done_cb, &done);
        while (!done)
            ev_run(loop, EVRUN_ONCE);
        if (store_mark(store) == before + 1)
            quiet = store_mark(store);
    }
}

static void server_start(struct server *s)
{
    memset(s, 0, sizeof *s);
    s->loc = location_new(loop, store);
    s->tp = transport_open_recording(loop, &cfg, dispatch_message, &s->dispatch, record, NULL);
    s->txns = txn_table_new(loop, s->tp);
    transport_on_close(s->tp, flow_closed, s->txns);
    s->reg = registrar_new(&cfg, s->loc, store, s->txns, s->tp);
    s->dest = destination_new(&cfg, s->tp, s->txns);
    s->proxy = proxy_new(loop, &cfg, s->loc, s->txns, s->tp, s->dest);
    transport_on_udp_heard(s->tp, proxy_udp_heard, s->proxy);
    proxy_set_store(s->proxy, store);
    if (cfg.offline_enabled) {
        char err[256];
        s->msgstore = msgstore_new(loop, &cfg, store, s->loc, err, sizeof err);
        msgstore_set_destination(s->msgstore, s->dest);
        proxy_set_msgstore(s->proxy, s->msgstore);
        registrar_set_msgstore(s->reg, s->msgstore);
    }
    s->ovl = overload_new(loop, &cfg, s->tp, s->txns);
    s->dispatch = (struct dispatch){
        .cfg = &cfg, .tp = s->tp, .txns = s->txns, .reg = s->reg, .proxy = s->proxy, .ovl = s->ovl};
}

static void forget_binding(void *arg, const struct binding *b)
{
    store_delete_binding(store, b->contact_id, NULL, NULL);
}

/* main.c's stop, with the store left open and emptied of what the run stored. */
static void server_stop(struct server *s)
{
    settle();
    txn_client_abort_all(s->txns);
    settle();
    location_each(s->loc, forget_binding, NULL);
    int done = 0;
    store_call(store, STORE_WRITE | STORE_NOW, forget_messages, done_cb, &done);
    settle();
    transport_close(s->tp);
    msgstore_free(s->msgstore);
    registrar_free(s->reg);
    proxy_free(s->proxy);
    destination_free(s->dest);
    overload_free(s->ovl);
    txn_table_free(s->txns);
    location_free(s->loc);
    ev_run(loop, EVRUN_NOWAIT); /* connections closed free themselves from the loop */
}

static char store_dir[64];

/* At exit: the store's directory goes (the database is in memory on a tmpfs). */
static void remove_store_dir(void)
{
    DIR *d = opendir(store_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[sizeof store_dir + 256];
        snprintf(path, sizeof path, "%s/%s", store_dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(store_dir);
}

void fuzz_server_init(int auth)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *at = strstr(exe, "/tests/fuzz/build/");
        if (at) {
            *at = '\0';
            if (chdir(exe) < 0)
                perror(exe);
        }
    }
    char err[1024];
    config_defaults(&cfg);
    /* in memory where there is a tmpfs: the store commits after every REGISTER */
    char *dir = store_dir;
    snprintf(dir, sizeof store_dir, "%s/sipwake-fuzz-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        abort();
    atexit(remove_store_dir);
    free(cfg.store_path);
    cfg.store_path = xasprintf("%s/fuzz.db", dir);
    free(cfg.data_dir);
    cfg.data_dir = xstrdup(dir);
    cfg.auth_enabled = auth;
    log_set_level(getenv("FUZZ_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    sip_msg_init();
    loop = ev_default_loop(0);
    if (store_open(&cfg, &store, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_server: %s\n", err);
        abort();
    }
    struct store_subscriber sub = {.username = FUZZ_SERVER_USER,
                                   .domain = FUZZ_SERVER_DOMAIN,
                                   .password = FUZZ_SERVER_PASSWORD};
    if (store_user_put(store, &sub, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_server: %s\n", err);
        abort();
    }
    store_start(store, loop);
    struct lua_vm *vm;
    if (lua_vm_new(&cfg, &vm, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_server: policy: %s\n", err);
        abort();
    }
    lua_vm_set_current(vm);
}

const struct config *fuzz_server_config(void)
{
    return &cfg;
}

size_t fuzz_server_sent_count(void)
{
    return sent;
}

const char *fuzz_server_last_sent(void)
{
    return last_sent.data ? last_sent.data : "";
}

char *fuzz_server_fill_in(const char *part, size_t *len)
{
    static const char *const names[] = {"@BRANCH@", "@RECORD-ROUTE@"};
    const char *values[] = {last_branch, last_record_route};
    char *out = NULL;
    for (size_t i = 0; i < 2; i++) {
        char *next = fuzz_server_replace(out ? out : part, len, names[i], values[i]);
        if (next) {
            free(out);
            out = next;
        }
    }
    return out;
}

char *fuzz_server_replace(const char *s, size_t *len, const char *what, const char *with)
{
    size_t wl = strlen(what), rl = strlen(with);
    if (!memmem(s, *len, what, wl))
        return NULL;
    struct buf out = {0};
    const char *p = s, *end = s + *len, *at;
    while ((at = memmem(p, (size_t)(end - p), what, wl))) {
        buf_append(&out, p, (size_t)(at - p));
        buf_append(&out, with, rl);
        p = at + wl;
    }
    buf_append(&out, p, (size_t)(end - p));
    *len = out.len;
    return out.data;
}

/* The parts of an input, split at FUZZ_SERVER_SEPARATOR lines: each part keeps the line end
 * before the separator. */
static size_t next_part(const char *data, size_t size, size_t *len)
{
    static const char sep[] = "\n" FUZZ_SERVER_SEPARATOR;
    const char *at = memmem(data, size, sep, sizeof sep - 1);
    if (!at) {
        *len = size;
        return size;
    }
    *len = (size_t)(at - data) + 1;
    return *len + sizeof sep - 2;
}

static uint64_t hash_of(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Send one part: a datagram, or chunks on the connection. 0, or -1 once the connection is
 * closed. */
static int send_part(struct server *s, const struct sip_source *src, const char *part, size_t len,
                     uint64_t *rnd)
{
    if (src->transport == CONFIG_TRANSPORT_UDP) {
        if (len <= 65535) {
            transport_inject(s->tp, src, part, len);
            settle();
        }
        return 0;
    }
    for (size_t off = 0; off < len;) {
        uint64_t r = xorshift(rnd);
        size_t chunk = 1 + (r & 3 ? (r >> 8) % 64 : (r >> 8) % 2048);
        if (chunk > len - off)
            chunk = len - off;
        if (transport_inject(s->tp, src, part + off, chunk) < 0)
            return -1; /* the framing closed the connection */
        settle();
        off += chunk;
    }
    return 0;
}

void fuzz_server_run(const uint8_t *data, size_t size, fuzz_server_rewrite_cb rewrite)
{
    sent = 0;
    /* UDP, TCP, then UDP again with every datagram late: overload.c's stateless 503 path */
    for (int pass = 0; pass < 3; pass++) {
        int tcp = pass == 1;
        last_branch[0] = last_record_route[0] = '\0';
        struct server s;
        server_start(&s);
        struct sip_source peer = {.transport = tcp ? CONFIG_TRANSPORT_TCP : CONFIG_TRANSPORT_UDP,
                                  .queued = pass == 2 ? 1.0 : 0};
        transport_addr_make(FUZZ_SERVER_PEER_IP, 5070, &peer.addr, &peer.addrlen);
        peer.listener = transport_find_listener(s.tp, peer.transport, AF_INET);
        if (peer.listener >= 0 && tcp)
            transport_inject_connection(s.tp, &peer, &peer);
        uint64_t rnd = hash_of(data, size) | 1;
        for (size_t off = 0; off < size && peer.listener >= 0;) {
            size_t len, step = next_part((const char *)data + off, size - off, &len);
            const char *part = (const char *)data + off;
            char *rewritten = rewrite ? rewrite(part, &len) : NULL;
            int rc = send_part(&s, &peer, rewritten ? rewritten : part, len, &rnd);
            free(rewritten);
            if (rc < 0)
                break;
            off += step;
        }
        server_stop(&s);
    }
}

/* Every run makes and frees a registrar, whose nonce ring is 4 MiB: a smaller quarantine than
 * ASan's 256 MiB keeps those frees from dominating a run (use after free is still caught
 * within the last 16 MiB freed, which spans several runs). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=16";
}
