/* admin_auth: scrypt hashes, API tokens, sessions and their limits, the login limiter. */
#include "admin_auth.c"

#include "tap.h"

int main(void)
{
    char h1[ADMIN_HASH_MAX], h2[ADMIN_HASH_MAX];
    ok(admin_auth_password_hash("correct horse", h1, sizeof h1) == 0, "a password hashes");
    ok(strncmp(h1, "$scrypt$ln=15,r=8,p=1$", 22) == 0, "as $scrypt$ with its parameters: %s", h1);
    ok(admin_auth_password_hash("correct horse", h2, sizeof h2) == 0 && strcmp(h1, h2) != 0,
       "the same password twice: two hashes (a fresh salt each time)");
    ok(admin_auth_password_verify("correct horse", h1), "the password matches its hash");
    ok(admin_auth_password_verify("correct horse", h2), "and the other one");
    ok(!admin_auth_password_verify("correct horsf", h1), "a wrong password does not");
    ok(!admin_auth_password_verify("", h1), "nor an empty one");
    char cheap[ADMIN_HASH_MAX];
    snprintf(cheap, sizeof cheap, "%s", h1);
    cheap[11] = '0'; /* ln=10: another cost, so another key */
    ok(!admin_auth_password_verify("correct horse", cheap), "the cost is part of the hash");
    ok(!admin_auth_password_verify("correct horse", "$scrypt$ln=15,r=8,p=1$$"),
       "a malformed hash: no");
    ok(!admin_auth_password_verify("correct horse", "plain"), "a plain string: no");
    ok(!admin_auth_password_verify("x", "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA==$AAAA"),
       "an absurd cost is refused, not computed");
    char small[20];
    ok(admin_auth_password_hash("x", small, sizeof small) < 0, "a buffer too small: -1");

    char t1[ADMIN_TOKEN_LEN + 1], t2[ADMIN_TOKEN_LEN + 1], s1[ADMIN_SHA256_HEX],
        s2[ADMIN_SHA256_HEX];
    admin_auth_token_new(t1, s1);
    admin_auth_token_new(t2, s2);
    is_int((long)strlen(t1), ADMIN_TOKEN_LEN, "a token is %d characters", ADMIN_TOKEN_LEN);
    ok(strncmp(t1, "swk_", 4) == 0 && strspn(t1 + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                                                     "tuvwxyz0123456789-_") == 43,
       "swk_ and base64url");
    ok(strcmp(t1, t2) != 0 && strcmp(s1, s2) != 0, "two tokens differ");
    char again[ADMIN_SHA256_HEX];
    admin_auth_token_sha256(t1, again);
    is_str(again, s1, "its SHA-256 is what is stored");
    admin_auth_token_sha256("abc", again);
    is_str(again, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
           "SHA-256 of \"abc\" (FIPS 180-2 vector)");

    ok(admin_auth_name_ok("alice") && admin_auth_name_ok("ops@example.com") &&
           admin_auth_name_ok("a.b_c-d"),
       "account names");
    ok(!admin_auth_name_ok("") && !admin_auth_name_ok("a b") && !admin_auth_name_ok("<b>") &&
           !admin_auth_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
       "no empty, spaced, markup or over-64 names");

    /* sessions: idle limit, absolute limit, close, close all of a user */
    struct admin_sessions *ss = admin_auth_sessions_new(600);
    const struct admin_session *s = admin_auth_session_open(ss, "alice", "tag", 1000);
    char id[44], csrf[44];
    snprintf(id, sizeof id, "%s", s->id);
    snprintf(csrf, sizeof csrf, "%s", s->csrf);
    is_int((long)strlen(id), 43, "a session id is 32 random bytes in base64url");
    ok(strcmp(id, csrf) != 0, "its CSRF token is another secret");
    ok(admin_auth_session_find(ss, id, 1500) != NULL, "found within the idle limit");
    ok(admin_auth_session_find(ss, id, 2000) != NULL, "each use extends it");
    ok(admin_auth_session_find(ss, id, 2601) == NULL, "gone after 600 s without a request");
    s = admin_auth_session_open(ss, "alice", "tag", 10000);
    snprintf(id, sizeof id, "%s", s->id);
    for (time_t t = 10500; t < 10000 + 12 * 3600; t += 500)
        admin_auth_session_find(ss, id, t);
    ok(admin_auth_session_find(ss, id, 10000 + 12 * 3600 - 100) != NULL,
       "used all day: still there");
    ok(admin_auth_session_find(ss, id, 10000 + 12 * 3600 + 1) == NULL, "but never past 12 hours");
    s = admin_auth_session_open(ss, "bob", "tag", 50000);
    snprintf(id, sizeof id, "%s", s->id);
    ok(admin_auth_session_find(ss, "short", 50001) == NULL, "a malformed id finds nothing");
    admin_auth_session_open(ss, "carol", "tag", 50000);
    admin_auth_session_open(ss, "carol", "tag", 50000);
    is_int((long)admin_auth_sessions_count(ss), 3, "three sessions");
    admin_auth_sessions_close_user(ss, "carol");
    is_int((long)admin_auth_sessions_count(ss), 1, "closing carol's leaves bob's");
    admin_auth_session_close(ss, id);
    ok(admin_auth_session_find(ss, id, 50002) == NULL, "closed: gone");
    for (int i = 0; i < 1100; i++)
        admin_auth_session_open(ss, "many", "tag", 60000 + i / 100);
    is_int((long)admin_auth_sessions_count(ss), 1024,
           "at most 1024 sessions: the oldest make room");
    admin_auth_sessions_free(ss);

    /* the limiter */
    struct admin_limiter *l = admin_auth_limiter_new();
    for (int i = 0; i < 4; i++)
        admin_auth_limiter_fail(l, "user:alice", 100);
    is_int(admin_auth_limiter_wait(l, "user:alice", 5, 100), 0, "four failures: may try");
    admin_auth_limiter_fail(l, "user:alice", 110);
    is_int(admin_auth_limiter_wait(l, "user:alice", 5, 120), ADMIN_LOGIN_WINDOW - 20,
           "five: waits for the rest of the window");
    is_int(admin_auth_limiter_wait(l, "user:bob", 5, 120), 0, "another key is not limited");
    is_int(admin_auth_limiter_wait(l, "user:alice", 20, 120), 0,
           "a higher limit (an address) is not reached");
    is_int(admin_auth_limiter_wait(l, "user:alice", 5, 100 + ADMIN_LOGIN_WINDOW), 0,
           "after the window: may try");
    admin_auth_limiter_fail(l, "user:carol", 100);
    admin_auth_limiter_clear(l, "user:carol");
    for (int i = 0; i < 4; i++)
        admin_auth_limiter_fail(l, "user:carol", 101);
    is_int(admin_auth_limiter_wait(l, "user:carol", 5, 102), 0, "a good login clears the count");
    for (int i = 0; i < 5000; i++) {
        char k[32];
        snprintf(k, sizeof k, "ip:10.0.%d.%d", i / 256, i % 256);
        admin_auth_limiter_fail(l, k, 200 + i / 100);
    }
    ok(l->n <= 4096, "the table stays bounded under a spray of addresses (%zu)", l->n);
    admin_auth_limiter_free(l);
    return done_testing();
}
