/*
 * admin_auth: scrypt password hashes and the thread that checks them, API tokens, sessions
 * and the login limiter.
 */
#include "admin_auth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "util.h"

/* scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB, some 50 ms); kept in each hash, so raising it
 * later leaves old hashes valid. */
#define SCRYPT_LN 15
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MAXMEM (256UL * 1024 * 1024)
#define SALT_LEN 16
#define HASH_LEN 32

int admin_auth_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= ADMIN_NAME_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") == n;
}

static int scrypt(const char *password, const unsigned char *salt, size_t salt_len, int ln, int r,
                  int p, unsigned char *out, size_t out_len)
{
    return EVP_PBE_scrypt(password, strlen(password), salt, salt_len, (uint64_t)1 << ln,
                          (uint64_t)r, (uint64_t)p, SCRYPT_MAXMEM, out, out_len) == 1
               ? 0
               : -1;
}

int admin_auth_password_hash(const char *password, char *out, size_t out_len)
{
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    util_random(salt, sizeof salt);
    if (scrypt(password, salt, sizeof salt, SCRYPT_LN, SCRYPT_R, SCRYPT_P, hash, sizeof hash) < 0)
        return -1;
    char salt_b64[4 * ((SALT_LEN + 2) / 3) + 1], hash_b64[4 * ((HASH_LEN + 2) / 3) + 1];
    EVP_EncodeBlock((unsigned char *)salt_b64, salt, sizeof salt);
    EVP_EncodeBlock((unsigned char *)hash_b64, hash, sizeof hash);
    OPENSSL_cleanse(hash, sizeof hash);
    int n = snprintf(out, out_len, "$scrypt$ln=%d,r=%d,p=%d$%s$%s", SCRYPT_LN, SCRYPT_R, SCRYPT_P,
                     salt_b64, hash_b64);
    return n > 0 && (size_t)n < out_len ? 0 : -1;
}

/* Standard base64 into out; its length or -1. */
static int b64_decode(const char *in, size_t n, unsigned char *out, size_t out_max)
{
    if (n == 0 || n % 4 || n / 4 * 3 > out_max + 2)
        return -1;
    unsigned char tmp[128];
    if (n / 4 * 3 > sizeof tmp)
        return -1;
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -1;
    len -= (in[n - 1] == '=') + (in[n - 2] == '=');
    if ((size_t)len > out_max)
        return -1;
    memcpy(out, tmp, (size_t)len);
    return len;
}

int admin_auth_password_verify(const char *password, const char *stored)
{
    int ln, r, p, used = 0;
    if (sscanf(stored, "$scrypt$ln=%d,r=%d,p=%d$%n", &ln, &r, &p, &used) != 3 || used == 0 ||
        ln < 10 || ln > 22 || r < 1 || r > 32 || p < 1 || p > 16)
        return 0;
    const char *salt_b64 = stored + used, *dollar = strchr(salt_b64, '$');
    if (!dollar)
        return 0;
    unsigned char salt[64], want[64], got[64];
    int salt_len = b64_decode(salt_b64, (size_t)(dollar - salt_b64), salt, sizeof salt);
    int hash_len = b64_decode(dollar + 1, strlen(dollar + 1), want, sizeof want);
    if (salt_len < 8 || hash_len < 16)
        return 0;
    if (scrypt(password, salt, (size_t)salt_len, ln, r, p, got, (size_t)hash_len) < 0)
        return 0;
    int same = CRYPTO_memcmp(got, want, (size_t)hash_len) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return same;
}

/* ------------------------------------------------------------------ the password checker */

struct hash_check {
    struct hash_check *next;
    char *password, *hash;
    admin_hasher_cb done;
    void *arg;
    int ok;
};

struct admin_hasher {
    struct ev_loop *loop;
    ev_async wake; /* the thread finished checks */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop;
    /* under mu: checks to run (FIFO), and checks run that the loop has not seen yet */
    struct hash_check *queued, **queued_tail, *done;
};

static void check_free(struct hash_check *c)
{
    OPENSSL_cleanse(c->password, strlen(c->password));
    free(c->password);
    free(c->hash);
    free(c);
}

static void *hasher_main(void *arg)
{
    struct admin_hasher *hs = arg;
    pthread_mutex_lock(&hs->mu);
    for (;;) {
        while (!hs->queued && !hs->stop)
            pthread_cond_wait(&hs->cond, &hs->mu);
        if (hs->stop)
            break;
        struct hash_check *c = hs->queued;
        hs->queued = c->next;
        if (!hs->queued)
            hs->queued_tail = &hs->queued;
        pthread_mutex_unlock(&hs->mu);
        c->ok = admin_auth_password_verify(c->password, c->hash);
        OPENSSL_cleanse(c->password, strlen(c->password));
        pthread_mutex_lock(&hs->mu);
        c->next = hs->done;
        hs->done = c;
        ev_async_send(hs->loop, &hs->wake);
    }
    pthread_mutex_unlock(&hs->mu);
    return NULL;
}

/* On the loop: hand the finished checks to their callers, oldest first. */
static void deliver(struct admin_hasher *hs, int dropped)
{
    pthread_mutex_lock(&hs->mu);
    struct hash_check *list = hs->done, *rev = NULL;
    hs->done = NULL;
    if (dropped) { /* the thread has stopped: what it never ran goes too */
        for (struct hash_check *c = hs->queued, *next; c; c = next) {
            next = c->next;
            c->ok = -1;
            c->next = list;
            list = c;
        }
        hs->queued = NULL;
        hs->queued_tail = &hs->queued;
    }
    pthread_mutex_unlock(&hs->mu);
    while (list) {
        struct hash_check *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev) {
        struct hash_check *c = rev;
        rev = c->next;
        c->done(c->arg, c->ok);
        check_free(c);
    }
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    deliver(w->data, 0);
}

struct admin_hasher *admin_auth_hasher_new(struct ev_loop *loop, char *err, size_t errlen)
{
    struct admin_hasher *hs = xcalloc(1, sizeof *hs);
    hs->loop = loop;
    hs->queued_tail = &hs->queued;
    pthread_mutex_init(&hs->mu, NULL);
    pthread_cond_init(&hs->cond, NULL);
    ev_async_init(&hs->wake, wake_cb);
    hs->wake.data = hs;
    int rc = pthread_create(&hs->thread, NULL, hasher_main, hs);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot start the password checker's thread: %s",
                 strerror(rc));
        pthread_mutex_destroy(&hs->mu);
        pthread_cond_destroy(&hs->cond);
        free(hs);
        return NULL;
    }
    ev_async_start(loop, &hs->wake);
    return hs;
}

void admin_auth_hasher_verify(struct admin_hasher *hs, const char *password, const char *hash,
                              admin_hasher_cb done, void *arg)
{
    struct hash_check *c = xcalloc(1, sizeof *c);
    c->password = xstrdup(password);
    c->hash = xstrdup(hash);
    c->done = done;
    c->arg = arg;
    pthread_mutex_lock(&hs->mu);
    *hs->queued_tail = c;
    hs->queued_tail = &c->next;
    pthread_cond_signal(&hs->cond);
    pthread_mutex_unlock(&hs->mu);
}

void admin_auth_hasher_free(struct admin_hasher *hs)
{
    if (!hs)
        return;
    pthread_mutex_lock(&hs->mu);
    hs->stop = 1;
    pthread_cond_signal(&hs->cond);
    pthread_mutex_unlock(&hs->mu);
    pthread_join(hs->thread, NULL);
    ev_async_stop(hs->loop, &hs->wake);
    deliver(hs, 1); /* finished ones with their result, the others dropped */
    pthread_mutex_destroy(&hs->mu);
    pthread_cond_destroy(&hs->cond);
    free(hs);
}

/* base64url without padding of n random bytes. */
static void random_b64url(char *out, size_t n_bytes)
{
    unsigned char raw[48], enc[72];
    util_random(raw, n_bytes);
    int len = EVP_EncodeBlock(enc, raw, (int)n_bytes);
    int j = 0;
    for (int i = 0; i < len && enc[i] != '='; i++)
        out[j++] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : (char)enc[i];
    out[j] = '\0';
    OPENSSL_cleanse(raw, sizeof raw);
}

void admin_auth_token_sha256(const char *token, char sha256_hex[ADMIN_SHA256_HEX])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(token, strlen(token), md, &len, EVP_sha256(), NULL);
    util_hex(md, sizeof md, sha256_hex);
}

void admin_auth_token_new(char token[ADMIN_TOKEN_LEN + 1], char sha256_hex[ADMIN_SHA256_HEX])
{
    memcpy(token, "swk_", 4);
    random_b64url(token + 4, 32);
    admin_auth_token_sha256(token, sha256_hex);
}

/* ------------------------------------------------------------------ sessions */

#define SESSION_MAX_AGE (12 * 3600)
#define SESSIONS_MAX 1024

struct admin_sessions {
    struct admin_session *s;
    size_t n;
    long idle;
};

struct admin_sessions *admin_auth_sessions_new(long idle_seconds)
{
    struct admin_sessions *ss = xcalloc(1, sizeof *ss);
    ss->s = xcalloc(SESSIONS_MAX, sizeof *ss->s);
    ss->idle = idle_seconds;
    return ss;
}

void admin_auth_sessions_free(struct admin_sessions *ss)
{
    if (!ss)
        return;
    OPENSSL_cleanse(ss->s, SESSIONS_MAX * sizeof *ss->s);
    free(ss->s);
    free(ss);
}

static void drop_at(struct admin_sessions *ss, size_t i)
{
    ss->s[i] = ss->s[--ss->n];
    OPENSSL_cleanse(&ss->s[ss->n], sizeof ss->s[ss->n]);
}

static void expire(struct admin_sessions *ss, time_t now)
{
    for (size_t i = 0; i < ss->n;)
        if (now - ss->s[i].last_seen > ss->idle || now - ss->s[i].created > SESSION_MAX_AGE)
            drop_at(ss, i);
        else
            i++;
}

const struct admin_session *admin_auth_session_open(struct admin_sessions *ss, const char *user,
                                                    const char *account, time_t now)
{
    expire(ss, now);
    if (ss->n == SESSIONS_MAX) { /* the least recently used goes */
        size_t old = 0;
        for (size_t i = 1; i < ss->n; i++)
            if (ss->s[i].last_seen < ss->s[old].last_seen)
                old = i;
        drop_at(ss, old);
    }
    struct admin_session *s = &ss->s[ss->n++];
    random_b64url(s->id, 32);
    random_b64url(s->csrf, 32);
    snprintf(s->user, sizeof s->user, "%s", user);
    snprintf(s->account, sizeof s->account, "%s", account);
    s->created = s->last_seen = now;
    return s;
}

static long index_of(const struct admin_sessions *ss, const char *id)
{
    size_t n = strlen(id);
    if (n != 43)
        return -1;
    for (size_t i = 0; i < ss->n; i++)
        if (CRYPTO_memcmp(ss->s[i].id, id, n) == 0)
            return (long)i;
    return -1;
}

const struct admin_session *admin_auth_session_find(struct admin_sessions *ss, const char *id,
                                                    time_t now)
{
    expire(ss, now);
    long i = index_of(ss, id);
    if (i < 0)
        return NULL;
    ss->s[i].last_seen = now;
    return &ss->s[i];
}

void admin_auth_session_close(struct admin_sessions *ss, const char *id)
{
    long i = index_of(ss, id);
    if (i >= 0)
        drop_at(ss, (size_t)i);
}

void admin_auth_sessions_close_user(struct admin_sessions *ss, const char *user)
{
    for (size_t i = 0; i < ss->n;)
        if (strcmp(ss->s[i].user, user) == 0)
            drop_at(ss, i);
        else
            i++;
}

size_t admin_auth_sessions_count(const struct admin_sessions *ss)
{
    return ss->n;
}

/* ------------------------------------------------------------------ login limiter */

#define LIMITER_MAX 4096

struct limit_entry {
    char key[ADMIN_NAME_MAX + 72];
    time_t window_start;
    int fails;
};

struct admin_limiter {
    struct limit_entry *e;
    size_t n;
};

struct admin_limiter *admin_auth_limiter_new(void)
{
    struct admin_limiter *l = xcalloc(1, sizeof *l);
    l->e = xcalloc(LIMITER_MAX, sizeof *l->e);
    return l;
}

void admin_auth_limiter_free(struct admin_limiter *l)
{
    if (!l)
        return;
    free(l->e);
    free(l);
}

static struct limit_entry *entry_of(struct admin_limiter *l, const char *key, time_t now, int make)
{
    for (size_t i = 0; i < l->n;) {
        if (now - l->e[i].window_start >= ADMIN_LOGIN_WINDOW) {
            l->e[i] = l->e[--l->n];
            continue;
        }
        if (strcmp(l->e[i].key, key) == 0)
            return &l->e[i];
        i++;
    }
    if (!make)
        return NULL;
    if (l->n == LIMITER_MAX) { /* full: the oldest window goes */
        size_t old = 0;
        for (size_t i = 1; i < l->n; i++)
            if (l->e[i].window_start < l->e[old].window_start)
                old = i;
        l->e[old] = l->e[--l->n];
    }
    struct limit_entry *e = &l->e[l->n++];
    snprintf(e->key, sizeof e->key, "%s", key);
    e->window_start = now;
    e->fails = 0;
    return e;
}

long admin_auth_limiter_wait(struct admin_limiter *l, const char *key, int max_fails, time_t now)
{
    struct limit_entry *e = entry_of(l, key, now, 0);
    if (!e || e->fails < max_fails)
        return 0;
    return (long)(e->window_start + ADMIN_LOGIN_WINDOW - now);
}

void admin_auth_limiter_fail(struct admin_limiter *l, const char *key, time_t now)
{
    entry_of(l, key, now, 1)->fails++;
}

void admin_auth_limiter_refund(struct admin_limiter *l, const char *key, time_t now)
{
    struct limit_entry *e = entry_of(l, key, now, 0);
    if (e && e->fails > 0)
        e->fails--;
}

void admin_auth_limiter_clear(struct admin_limiter *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->e[i].key, key) == 0) {
            l->e[i] = l->e[--l->n];
            return;
        }
}
