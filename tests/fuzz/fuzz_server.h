/*
 * fuzz_server: sipwake's SIP side in a fuzzer's process, without sockets: the real dispatch
 * (server/core/dispatch.c) over the real transport framing, transactions, registrar, proxy,
 * location and policy, with a SQLite store in a temporary directory, wired as main.c wires
 * them, on a recording transport (transport_open_recording) that keeps what would be sent.
 *
 * One input is run in a fresh server (fuzz_server_run): split into parts at each line "@@@@"
 * (FUZZ_SERVER_SEPARATOR), it is sent over UDP, one datagram per part; then, in another fresh
 * server, the parts one after the other over one TCP connection, each in chunks of
 * pseudo-random sizes (from a hash of the input, so a run is repeatable); then over UDP again,
 * every datagram taken to have waited a second in the receive queue, so that overload.c
 * answers the new INVITEs and REGISTERs from their raw lines. Between datagrams
 * and chunks the loop runs until the store has answered everything asked of it, so a REGISTER
 * is answered, a subscriber looked up, before the next part arrives. Nothing is kept from one input to the
 * next but the store's subscribers and the policy VM.
 */
#ifndef FUZZ_SERVER_H
#define FUZZ_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* The line between two datagrams of one input. */
#define FUZZ_SERVER_SEPARATOR "@@@@\r\n"

/* The subscriber in the store (fuzz_register's credentials). */
#define FUZZ_SERVER_USER "alice"
#define FUZZ_SERVER_DOMAIN "example.com"
#define FUZZ_SERVER_PASSWORD "secret"
/* Where every message comes from. */
#define FUZZ_SERVER_PEER_IP "127.0.0.1"

/* Once per process, before the first run: the config (auth as given: [auth] enabled), the
 * store, the policy. The working directory becomes the repository's root (found from the
 * executable's path) so the default policy and lua/ are found. */
void fuzz_server_init(int auth);

/* Called on each part (len bytes, not NUL-terminated) just before it is sent, to fill in
 * what only the server knows (fuzz_register: the nonce of its last 401): a new string of
 * *len bytes (caller frees), or NULL to send the part as it is. */
typedef char *(*fuzz_server_rewrite_cb)(const char *part, size_t *len);

/* Run one input, over UDP then over TCP, as described above. */
void fuzz_server_run(const uint8_t *data, size_t size, fuzz_server_rewrite_cb rewrite);

/* The config in use (valid after fuzz_server_init). */
const struct config *fuzz_server_config(void);

/* How many messages the last run sent. */
size_t fuzz_server_sent_count(void);

/* The last message sent (NUL-terminated; valid until the next one is sent), "" if none. */
const char *fuzz_server_last_sent(void);

/* s (*len bytes) with every what replaced by with: a new string (*len updated; caller
 * frees), or NULL when s has no what. */
char *fuzz_server_replace(const char *s, size_t *len, const char *what, const char *with);

/* A fuzz_server_rewrite_cb that fills in what a peer takes from the requests the server sent
 * it: "@BRANCH@" the branch of the top Via of the last request sent (so a response matches
 * its client transaction), "@RECORD-ROUTE@" its Record-Route value (so a later request of
 * the dialog is routed by the server). */
char *fuzz_server_fill_in(const char *part, size_t *len);

#endif
