/*
 * admin_auth: what the web admin knows about who is asking. Password hashes (scrypt, through
 * OpenSSL), API tokens (random, kept as their SHA-256), login sessions with their CSRF token,
 * and the limiter that slows password guessing.
 *
 * Sessions and the limiter live in memory on the loop: a restart logs everyone out, which is
 * what an operator expects of a restart. Nothing here logs a password, a token or a session id.
 */
#ifndef SIPWAKE_ADMIN_AUTH_H
#define SIPWAKE_ADMIN_AUTH_H

#include <ev.h>
#include <stddef.h>
#include <time.h>

#define ADMIN_HASH_MAX 160
#define ADMIN_TOKEN_LEN 47 /* "swk_" and 43 base64url characters */
#define ADMIN_SHA256_HEX 65
#define ADMIN_NAME_MAX 64

/* Threads: the hashing and token helpers keep no state (any thread); sessions, the limiter
 * and the hasher's functions are the loop's (unlocked). Nothing keeps its arguments after
 * the call unless said. */

/* 1 when s is a usable account or token name: 1..64 of A-Z a-z 0-9 . _ @ - */
int admin_auth_name_ok(const char *s);

/* "$scrypt$ln=15,r=8,p=1$SALT$HASH" of password, fresh salt, into the caller's out. 0, or -1
 * (OpenSSL failed). Slow on purpose, as admin_auth_password_verify: the CLI, or off the
 * loop. */
int admin_auth_password_hash(const char *password, char *out, size_t out_len);
/* 1 when password matches a hash made by admin_auth_password_hash, else 0 (also for a malformed
 * hash). Takes tens of milliseconds on purpose: call it off the loop. */
int admin_auth_password_verify(const char *password, const char *hash);

/* ------------------------------------------------------------------ the password checker */

/* One thread of its own that runs admin_auth_password_verify, so that neither the loop nor the
 * store's worker (which registrations wait for) spends tens of milliseconds per login. */
struct admin_hasher;

/* On the loop: 1 the password matches, 0 it does not, -1 the check was dropped (the hasher
 * is being freed). */
typedef void (*admin_hasher_cb)(void *arg, int ok);

/* NULL with err when the thread cannot start. loop is borrowed for the hasher's lifetime.
 * The caller frees it with admin_auth_hasher_free. */
struct admin_hasher *admin_auth_hasher_new(struct ev_loop *loop, char *err, size_t errlen);
/* Queue a check of password against hash (both copied; the copy of the password is wiped
 * after use). done(arg, ...) runs on the loop later, never from within this call. The caller
 * bounds how many it queues. */
void admin_auth_hasher_verify(struct admin_hasher *hs, const char *password, const char *hash,
                              admin_hasher_cb done, void *arg);
/* Stop the thread (after the check it is running) and call done(arg, -1) for each check not
 * finished, done(arg, 0 or 1) for each finished and not yet delivered, then free hs. Joins
 * the thread, so it waits for the check in progress (tens of milliseconds): at shutdown,
 * never on the running loop. NULL: no-op. */
void admin_auth_hasher_free(struct admin_hasher *hs);

/* A new API token (shown once) and its SHA-256 in hex (what is stored), into the caller's
 * arrays. Any thread. */
void admin_auth_token_new(char token[ADMIN_TOKEN_LEN + 1], char sha256_hex[ADMIN_SHA256_HEX]);
void admin_auth_token_sha256(const char *token, char sha256_hex[ADMIN_SHA256_HEX]);

/* ------------------------------------------------------------------ sessions */

struct admin_session {
    char id[44];   /* base64url of 32 random bytes: the cookie */
    char csrf[44]; /* sent back in X-CSRF-Token on every change */
    char user[ADMIN_NAME_MAX + 1];
    char account[ADMIN_SHA256_HEX]; /* the account at login (SHA-256 of its password hash) */
    time_t created, last_seen;
};

struct admin_sessions;

/* Sessions idle for idle_seconds end. The caller frees the table with
 * admin_auth_sessions_free (NULL: no-op). A session returned below belongs to ss and is valid
 * until the next call on ss (which may move or drop sessions): copy what is kept. */
struct admin_sessions *admin_auth_sessions_new(long idle_seconds);
void admin_auth_sessions_free(struct admin_sessions *ss);
/* A new session for user, whose account is as account says (see struct admin_session); both
 * copied. The least recently used session goes when the table is full. */
const struct admin_session *admin_auth_session_open(struct admin_sessions *ss, const char *user,
                                                    const char *account, time_t now);
/* The live session with this id (idle and age limits applied; its last_seen is updated), or
 * NULL. */
const struct admin_session *admin_auth_session_find(struct admin_sessions *ss, const char *id,
                                                    time_t now);
void admin_auth_session_close(struct admin_sessions *ss, const char *id);
/* Close every session of user (its account was removed or its password changed). */
void admin_auth_sessions_close_user(struct admin_sessions *ss, const char *user);
size_t admin_auth_sessions_count(const struct admin_sessions *ss);

/* ------------------------------------------------------------------ login limiter */

/* Login attempts per key: ADMIN_LOGIN_FAILS for an account name, ADMIN_LOGIN_FAILS_ADDRESS for
 * a client address (several operators may share one, behind a proxy) in ADMIN_LOGIN_WINDOW
 * seconds, then logins for that key are refused until the window ends. An attempt counts when
 * it starts, so concurrent tries cannot all be checked before the first failure is known; one
 * that succeeds is taken back (admin_auth_limiter_refund) or clears its account's count. */
#define ADMIN_LOGIN_FAILS 5
#define ADMIN_LOGIN_FAILS_ADDRESS 20
#define ADMIN_LOGIN_WINDOW 300

struct admin_limiter;

/* The caller frees it with admin_auth_limiter_free (NULL: no-op). Keys are copied. */
struct admin_limiter *admin_auth_limiter_new(void);
void admin_auth_limiter_free(struct admin_limiter *l);
/* Seconds key must still wait after max_fails failures, 0 when it may try. */
long admin_auth_limiter_wait(struct admin_limiter *l, const char *key, int max_fails, time_t now);
void admin_auth_limiter_fail(struct admin_limiter *l, const char *key, time_t now);
/* Take back one attempt counted by admin_auth_limiter_fail (it succeeded). */
void admin_auth_limiter_refund(struct admin_limiter *l, const char *key, time_t now);
void admin_auth_limiter_clear(struct admin_limiter *l, const char *key);

#endif
