/* The store backends' conformance suite: the same checks, through struct store_backend, on
 * SQLite (a temporary database) and on MongoDB (tests/emulators/mongo.py, through the real
 * mongo-c-driver), so that both keep the same semantics: bindings written in batches (a
 * rollback dropping the batch, the batch's order kept, expired ones purged at load),
 * subscribers, admin accounts, API tokens, the audit log, tenants with their domains and
 * credentials, the push log, and offline messages. What only one backend does is tested in
 * test_store.c (SQLite) and test_store_mongo.c. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "emulator.h"
#include "store.h"
#include "store_checks.h"
#include "tap.h"
#include "util.h"

static void on_name(void *arg, const char *name, time_t created_at)
{
    (void)arg;
    (void)created_at;
    strncat(names_seen, name, sizeof names_seen - strlen(names_seen) - 2);
    strcat(names_seen, ",");
}

static void on_user(void *arg, const struct store_subscriber *sub)
{
    (void)arg;
    strncat(names_seen, sub->username, sizeof names_seen - strlen(names_seen) - 2);
    strcat(names_seen, ",");
}

static void on_audit(void *arg, const struct store_audit *a)
{
    (void)arg;
    strncat(names_seen, a->action, sizeof names_seen - strlen(names_seen) - 2);
    strcat(names_seen, ",");
}

static char tenants_seen[512];
static size_t secret_len_seen;
static unsigned char secret_seen[16];
static void v_tenant(void *arg, const char *name, time_t created_at)
{
    (void)arg;
    snprintf(tenants_seen + strlen(tenants_seen), sizeof tenants_seen - strlen(tenants_seen),
             "T:%s@%ld,", name, (long)created_at);
}
static void v_domain(void *arg, const char *domain, const char *tenant)
{
    (void)arg;
    snprintf(tenants_seen + strlen(tenants_seen), sizeof tenants_seen - strlen(tenants_seen),
             "D:%s=%s,", domain, tenant);
}
static void v_credential(void *arg, const struct store_credential *c)
{
    (void)arg;
    snprintf(tenants_seen + strlen(tenants_seen), sizeof tenants_seen - strlen(tenants_seen),
             "C:%s/%s/%s/%s/%s,", c->tenant, c->set_name, c->kind, c->label ? c->label : "-",
             c->environment ? c->environment : "-");
    secret_len_seen = c->secret_len;
    memcpy(secret_seen, c->secret, c->secret_len < 16 ? c->secret_len : 16);
}
static const struct store_tenant_visitor visitor = {NULL, v_tenant, v_domain, v_credential};

static int read_tenants(void *m)
{
    char err[512];
    tenants_seen[0] = 0;
    int rc = be->tenants_read(m, &visitor, err, sizeof err);
    if (rc < 0)
        printf("# %s\n", err);
    return rc;
}

static void on_message(void *arg, const struct store_message *msg)
{
    (void)arg;
    snprintf(names_seen + strlen(names_seen), sizeof names_seen - strlen(names_seen), "%s/%zu,",
             msg->call_id, msg->body_len);
}

static int for_device(void *m, const char *aor, const char *device, int64_t now)
{
    char err[512];
    names_seen[0] = 0;
    int rc = be->messages_for_device(m, aor, device, now, on_message, NULL, err, sizeof err);
    if (rc < 0)
        printf("# %s\n", err);
    return rc;
}

static void on_pending(void *arg, const char *aor, const char *device, long n, int64_t oldest)
{
    (void)arg;
    snprintf(names_seen + strlen(names_seen), sizeof names_seen - strlen(names_seen),
             "%s|%s|%ld|%lld,", aor, device, n, (long long)oldest);
}

static struct store_message message(const char *aor, const char *call_id, int64_t received,
                                    int64_t expires, int new_devices)
{
    static const unsigned char body[] = {'h', 'i', 0, '!'};
    struct store_message msg = {.aor = aor,
                                .call_id = call_id,
                                .cseq = 1,
                                .from_hdr = "<sip:bob@example.com>;tag=1",
                                .to_hdr = "<sip:alice@example.com>",
                                .content_type = "text/plain",
                                .body = body,
                                .body_len = sizeof body,
                                .received_ms = received,
                                .expires_ms = expires,
                                .new_devices = new_devices};
    return msg;
}

/* The suite, on one backend opened with cfg. */
static void suite(const struct store_backend *backend, const struct config *cfg)
{
    char err[512] = "";
    be = backend;
    void *m = be->open(cfg, err, sizeof err);
    ok(m != NULL, "%s: opens (%s)", be->name, m ? "ok" : err);
    if (!m)
        return;
    printf("# %s\n", be->name);
    /* bindings in a batch */
    time_t now = time(NULL);
    struct store_binding a = binding(1, "alice", now + 3600), b = binding(2, "bob", now + 3600),
                         old = binding(3, "carol", now - 10);
    ok(be->begin(m, err, sizeof err) == 0, "begin");
    ok(be->save_binding(m, &a, err, sizeof err) == 0 &&
           be->save_binding(m, &b, err, sizeof err) == 0 &&
           be->save_binding(m, &old, err, sizeof err) == 0 &&
           be->delete_binding(m, 1, err, sizeof err) == 0,
       "three saves and a delete queued");
    ok(be->commit(m, err, sizeof err) == 0, "commit (%s)", err);
    long purged = 0;
    ok(load(m, &purged) == 1 && has(2) && !has(1), "load: bob only (alice deleted)");
    ok(purged == 1, "the expired binding was purged at load (%ld)", purged);
    ok(strcmp(loaded_instance, b.sip_instance) == 0 && loaded_q == 0.5 &&
           loaded_modified == 1700000000,
       "the binding's fields come back as saved");

    /* a rollback drops what was not sent; an operation in the middle keeps the order */
    struct store_binding d = binding(4, "dave", now + 3600);
    be->begin(m, err, sizeof err);
    be->save_binding(m, &d, err, sizeof err);
    be->rollback(m);
    ok(load(m, NULL) == 1 && !has(4), "a rollback drops the batch's unsent bindings");
    struct store_binding e = binding(5, "erin", now + 3600);
    be->begin(m, err, sizeof err);
    be->save_binding(m, &e, err, sizeof err);
    struct store_subscriber sub = {"erin", "example.com", "pw", "ha1", "ha1sha"};
    ok(be->user_put(m, &sub, err, sizeof err) == 0, "a subscriber write inside a batch");
    be->delete_binding(m, 5, err, sizeof err);
    be->commit(m, err, sizeof err);
    ok(load(m, NULL) == 1 && !has(5), "save, other write, delete: the delete still wins");

    /* subscribers */
    struct store_subscriber got = {0};
    ok(be->get_subscriber(m, "erin", "example.com", &got, err, sizeof err) == 1 &&
           strcmp(got.ha1, "ha1") == 0 && strcmp(got.password, "pw") == 0,
       "a subscriber read back");
    snprintf(sub.ha1, sizeof sub.ha1, "%s", "ha1-new");
    be->user_put(m, &sub, err, sizeof err);
    ok(be->get_subscriber(m, "erin", "example.com", &got, err, sizeof err) == 1 &&
           strcmp(got.ha1, "ha1-new") == 0,
       "user_put again replaces its secrets");
    struct store_subscriber sub2 = {"adam", "example.com", "pw2", "", ""};
    struct store_subscriber sub3 = {"zed", "a.example", "pw3", "", ""};
    be->user_put(m, &sub2, err, sizeof err);
    be->user_put(m, &sub3, err, sizeof err);
    names_seen[0] = 0;
    ok(be->user_list(m, on_user, NULL, err, sizeof err) == 0 &&
           strcmp(names_seen, "zed,adam,erin,") == 0,
       "subscribers listed by domain, then user (%s)", names_seen);
    ok(be->get_subscriber(m, "erin", "other.example", &got, err, sizeof err) == 0,
       "another domain's erin is not found");
    ok(be->user_del(m, "erin", "example.com", err, sizeof err) == 1 &&
           be->user_del(m, "erin", "example.com", err, sizeof err) == 0,
       "user_del: 1, then 0");

    /* admin accounts */
    ok(be->admin_put(m, "root", "hash1", 100, err, sizeof err) == 1, "an admin account made");
    ok(be->admin_put(m, "root", "hash2", 200, err, sizeof err) == 0,
       "the same name again replaces its password");
    char hash[128] = "";
    ok(be->admin_hash(m, "root", hash, sizeof hash, err, sizeof err) == 1 &&
           strcmp(hash, "hash2") == 0,
       "its hash read back");
    ok(be->admin_hash(m, "nobody", hash, sizeof hash, err, sizeof err) == 0,
       "an unknown account is not found");
    be->admin_put(m, "alice", "h", 300, err, sizeof err);
    names_seen[0] = 0;
    ok(be->admin_list(m, on_name, NULL, err, sizeof err) == 0 &&
           strcmp(names_seen, "alice,root,") == 0,
       "accounts listed by name (%s)", names_seen);
    ok(be->admin_del(m, "alice", err, sizeof err) == 1 &&
           be->admin_del(m, "alice", err, sizeof err) == 0,
       "admin_del: 1, then 0");

    /* API tokens */
    ok(be->token_put(m, "ci", "aa11", 1, err, sizeof err) == 1, "a token stored");
    ok(be->token_put(m, "ci", "bb22", 2, err, sizeof err) == 0, "its name is taken");
    ok(be->token_put(m, "other", "aa11", 3, err, sizeof err) == 0,
       "the same token under another name is refused (unique index)");
    char name[64] = "";
    ok(be->token_find(m, "aa11", name, sizeof name, err, sizeof err) == 1 &&
           strcmp(name, "ci") == 0,
       "found by its hash");
    ok(be->token_find(m, "cc33", name, sizeof name, err, sizeof err) == 0,
       "an unknown hash is not found");
    ok(be->token_del(m, "ci", err, sizeof err) == 1, "token deleted");

    /* the audit log, newest first */
    struct store_audit a1 = {1000, "root", "tenant.add", "t1", NULL, "127.0.0.1"};
    struct store_audit a2 = {2000, "root", "tenant.del", "t1", NULL, "127.0.0.1"};
    struct store_audit a3 = {3000, "root", "credential.put", "t2", "apns", NULL};
    ok(be->audit_add(m, &a1, err, sizeof err) == 0 && be->audit_add(m, &a2, err, sizeof err) == 0 &&
           be->audit_add(m, &a3, err, sizeof err) == 0,
       "three audit rows");
    names_seen[0] = 0;
    ok(be->audit_read(m, 2, on_audit, NULL, err, sizeof err) == 0 &&
           strcmp(names_seen, "credential.put,tenant.del,") == 0,
       "the two newest, newest first (%s)", names_seen);

    /* tenants, their domains and credentials */
    ok(be->tenant_add(m, "t1", 10, err, sizeof err) == 1 &&
           be->tenant_add(m, "t1", 11, err, sizeof err) == 0,
       "tenant_add: 1, then 0 for the same name");
    ok(be->domain_add(m, "d1.example", "t1", err, sizeof err) == 1 &&
           be->domain_add(m, "d1.example", "t1", err, sizeof err) == 0 &&
           be->domain_add(m, "d2.example", "nope", err, sizeof err) == 0,
       "domain_add: 1; 0 when taken or the tenant is unknown");
    const unsigned char secret[] = {0x30, 0x00, 0x82, 0xff, 0x01};
    struct store_credential cr = {.tenant = "t1",
                                  .set_name = "default",
                                  .kind = "apns_key",
                                  .key_id = "KEY1234567",
                                  .team_id = "TEAM123456",
                                  .label = "one",
                                  .secret = secret,
                                  .secret_len = sizeof secret,
                                  .created_at = 20};
    ok(be->credential_put(m, &cr, err, sizeof err) == 1, "a credential stored");
    cr.label = "two";
    cr.environment = "sandbox";
    ok(be->credential_put(m, &cr, err, sizeof err) == 1, "and replaced");
    cr.tenant = "nope";
    ok(be->credential_put(m, &cr, err, sizeof err) == 0, "none for an unknown tenant");
    ok(read_tenants(m) == 0 &&
           strcmp(tenants_seen, "T:t1@10,D:d1.example=t1,C:t1/default/apns_key/two/sandbox,") == 0,
       "tenants_read: %s", tenants_seen);
    ok(secret_len_seen == sizeof secret && memcmp(secret_seen, secret, sizeof secret) == 0,
       "the secret's bytes come back, NUL included");
    be->tenant_add(m, "t3", 30, err, sizeof err);
    ok(be->tenant_rename(m, "t1", "t3", err, sizeof err) == 0, "rename onto a taken name: 0");
    ok(be->tenant_rename(m, "t1", "t2", err, sizeof err) == 1 && read_tenants(m) == 0 &&
           strcmp(tenants_seen, "T:t2@10,T:t3@30,D:d1.example=t2,"
                                "C:t2/default/apns_key/two/sandbox,") == 0,
       "rename moves the domains and credentials: %s", tenants_seen);
    ok(be->credential_del(m, "t2", "default", NULL, err, sizeof err) == 1 &&
           be->credential_del(m, "t2", "default", NULL, err, sizeof err) == 0,
       "credential_del: 1, then 0");
    ok(be->tenant_del(m, "t2", err, sizeof err) == 1 && read_tenants(m) == 0 &&
           strcmp(tenants_seen, "T:t3@30,") == 0 && be->tenant_del(m, "t2", err, sizeof err) == 0,
       "tenant_del takes its domains along, then 0 (%s)", tenants_seen);

    /* the push log */
    struct store_push_log r1 = {.time_ms = 1000,
                                .tenant = "a",
                                .provider = "apns",
                                .kind = "call",
                                .call_id = "c1",
                                .outcome = "delivered",
                                .status = 200};
    struct store_push_log r2 = {.time_ms = 2000,
                                .tenant = "b",
                                .provider = "fcm",
                                .kind = "call",
                                .call_id = "c2",
                                .outcome = "dead_token",
                                .status = 404,
                                .reason = "UNREGISTERED"};
    struct store_push_log r3 = {.time_ms = 3000,
                                .tenant = "a",
                                .provider = "fcm",
                                .kind = "call",
                                .call_id = "c3",
                                .outcome = "delivered",
                                .status = 200};
    ok(be->push_log_add(m, &r1, err, sizeof err) == 0 &&
           be->push_log_add(m, &r2, err, sizeof err) == 0 &&
           be->push_log_add(m, &r3, err, sizeof err) == 0,
       "push log rows added");
    ok(push_rows(m, NULL, NULL, 0) == 0 && strcmp(names_seen, "c3:3000,c2:2000,c1:1000,") == 0,
       "newest first (%s)", names_seen);
    ok(push_rows(m, "a", NULL, 0) == 0 && strcmp(names_seen, "c3:3000,c1:1000,") == 0,
       "by tenant (%s)", names_seen);
    ok(push_rows(m, NULL, "UNREGISTERED", 0) == 0 && strcmp(names_seen, "c2:2000,") == 0 &&
           push_rows(m, NULL, "dead_token", 0) == 0 && strcmp(names_seen, "c2:2000,") == 0,
       "by reason or outcome");
    ok(push_rows(m, NULL, NULL, 3000) == 0 && strcmp(names_seen, "c2:2000,c1:1000,") == 0,
       "older than a time (paging)");
    ok(be->push_log_prune(m, 2500, err, sizeof err) == 0 && push_rows(m, NULL, NULL, 0) == 0 &&
           strcmp(names_seen, "c3:3000,") == 0,
       "pruned before a time (%s)", names_seen);

    /* offline messages */
    const char *devs[] = {"urn:uuid:a.b$c", "contact:5"};
    int64_t nowms = (int64_t)now * 1000, id1 = 0, id2 = 0, id3 = 0, idx = 0;
    struct store_message m1 = message("sip:a@x", "m1", 100, nowms + 60000, 1),
                         m2 = message("sip:a@x", "m2", 200, nowms + 60000, 0),
                         m3 = message("sip:a@x", "m3", 300, nowms + 60000, 1);
    ok(be->message_put(m, &m1, devs, 2, 2, &id1, err, sizeof err) == 1 && id1 > 0,
       "a message stored (id %lld)", (long long)id1);
    ok(be->message_put(m, &m1, devs, 2, 2, &idx, err, sizeof err) == 0 && idx == id1,
       "the same one again: already stored, its id");
    ok(be->message_put(m, &m2, devs, 2, 2, &id2, err, sizeof err) == 1 && id2 > id1,
       "a second one, a later id");
    ok(be->message_put(m, &m3, devs, 2, 2, &id3, err, sizeof err) == 2,
       "a third: the AOR holds its maximum");
    ok(for_device(m, "sip:a@x", "urn:uuid:a.b$c", nowms) == 0 &&
           strcmp(names_seen, "m1/4,m2/4,") == 0,
       "a device's messages in order, bodies whole (%s)", names_seen);
    ok(for_device(m, "sip:a@x", "urn:uuid:new", nowms) == 0 && strcmp(names_seen, "m1/4,") == 0,
       "a new device gets only those for new devices (%s)", names_seen);
    names_seen[0] = 0;
    ok(be->messages_pending(m, NULL, on_pending, NULL, err, sizeof err) == 0 &&
           strcmp(names_seen, "sip:a@x|contact:5|2|100,sip:a@x|urn:uuid:a.b$c|2|100,") == 0,
       "pending by AOR and device (%s)", names_seen);
    ok(be->message_delivered(m, id1, "urn:uuid:a.b$c", nowms, err, sizeof err) == 0 &&
           for_device(m, "sip:a@x", "urn:uuid:a.b$c", nowms) == 0 &&
           strcmp(names_seen, "m2/4,") == 0,
       "delivered to one device: not to it again, the message stays (%s)", names_seen);
    ok(be->message_delivered(m, id1, "contact:5", nowms, err, sizeof err) == 1 &&
           be->messages_count(m, err, sizeof err) == 1,
       "delivered to the last device: the message goes");
    ok(be->message_delivered(m, 999999, "contact:5", nowms, err, sizeof err) == 0,
       "an unknown message: 0");
    ok(be->message_put(m, &m3, devs, 1, 5, &id3, err, sizeof err) == 1 &&
           be->messages_expire(m, nowms + 120000, err, sizeof err) == 2 &&
           be->messages_count(m, err, sizeof err) == 0,
       "expired messages go");
    be->message_put(m, &m3, devs, 1, 5, &id3, err, sizeof err);
    ok(be->messages_purge(m, "sip:a@x", err, sizeof err) == 1, "purge an AOR");

    be->close(m);
}

int main(void)
{
    char dir[] = "/tmp/sipwake-backends-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    struct config cfg;
    config_defaults(&cfg);
    free(cfg.store_path);
    cfg.store_path = xasprintf("%s/test.db", dir);
    suite(&store_sqlite_backend, &cfg);

    pid_t pid;
    int port = emulator_start("exec /usr/bin/python3 tests/emulators/mongo.py --port 0", &pid);
    ok(port > 0, "the MongoDB emulator started");
    if (port > 0) {
        free(cfg.store_uri);
        cfg.store_uri = xasprintf("mongodb://127.0.0.1:%d/conformance", port);
        suite(&store_mongo_backend, &cfg);
        emulator_stop(pid);
    }
    config_free(&cfg);
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
