/*
 * rel_location_mem: what 20,000 bindings cost the release allocator (jemalloc) while every
 * REGISTER also leaves a short-lived object of the binding's size class behind, as a UDP
 * transaction's kept 200 does until Timer J frees it (RFC 3261 §17.2.2). Issue 15: once
 * bindings and those responses shared jemalloc's 640-byte slabs, freeing the responses left
 * every slab half empty, and the REGISTER bench's memory per binding went from 786 B to
 * 1,424 B. Built like the release binary (-O2, jemalloc, the release objects), not with the
 * sanitizers, whose allocator is not the one that ships; measured with jemalloc's own
 * stats.active (bytes in pages holding live objects).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jemalloc/jemalloc.h>

#include <ev.h>

#include "location.h"
#include "tap.h"

#define N 20000

static size_t active_bytes(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof epoch;
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    size_t a = 0;
    sz = sizeof a;
    mallctl("stats.active", &a, &sz, NULL, 0);
    return a;
}

int main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct location *loc = location_new(loop, NULL);
    static void *garbage[N];
    size_t binding_size = 0;
    size_t before = active_bytes();
    for (int i = 0; i < N; i++) {
        /* the REGISTER bench's binding (tests/bench/reg.xml): RFC 8599 push params */
        char aor[64], contact[256], callid[64], prid[72];
        snprintf(prid, sizeof prid, "%016x%016x%016x%016x", i, i * 2654435761u, i ^ 0x5a5a5a5a,
                 0xc0ffee00u + i % 256);
        snprintf(aor, sizeof aor, "m%07d@example.com", i);
        snprintf(contact, sizeof contact,
                 "sip:m%07d@127.0.0.1:5999;transport=udp;pn-provider=apns;pn-prid=%s;"
                 "pn-param=TEAMID.com.example.voip",
                 i, prid);
        snprintf(callid, sizeof callid, "%d-8689@127.0.0.1", i + 1);
        struct binding_fields f = {
            .contact_id = location_new_id(loc),
            .expires = 4102444800,
            .last_modified = 1796555063,
            .cseq = 1,
            .q = -1,
            .listener = 0,
            .contact = contact,
            .callid = callid,
            .user_agent = "sipp-bench",
            .received = "sip:127.0.0.1:5061",
            .socket = "udp:127.0.0.1:5070",
            .pn_provider = "apns",
            .pn_param = "TEAMID.com.example.voip",
            .pn_prid = prid,
        };
        struct binding *b = location_binding_new(&f);
        if (!binding_size)
            binding_size = malloc_usable_size(b);
        /* the kept response: same size class, made between one binding and the next */
        garbage[i] = malloc(malloc_usable_size(b));
        location_save(loc, aor, b, NULL);
    }
    for (int i = 0; i < N; i++)
        free(garbage[i]); /* Timer J */
    size_t per = (active_bytes() - before) / N;
    printf("# a binding's allocation: %zu B; memory per binding (stats.active): %zu B\n",
           binding_size, per);
    ok(per <= 1024, "%d bindings among same-size short-lived objects stay under 1 KiB each (%zu B)",
       N, per);
    ok(per <= binding_size + 256,
       "a binding costs its own allocation and its AOR, not a half-empty slab (%zu B for %zu)", per,
       binding_size);
    location_free(loc);
    ev_loop_destroy(loop);
    return done_testing();
}
