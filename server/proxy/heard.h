/*
 * heard: when each UDP peer address was last heard from, for the last few seconds.
 *
 * A phone registered over UDP has no connection whose state says it is awake; what it
 * sends is the only proof (RFC 8599 phones sleep without a word). The transport notes every
 * datagram's source address here — a request, a response, a CRLF or STUN keep-alive — and
 * the proxy asks, for a UDP push binding, whether its address was heard within the window
 * ([push] udp_awake_window). Memory only, nothing written per packet: entries older than
 * the window are dropped as new ones arrive, and at most a fixed number are kept (the
 * oldest goes first), so a flood of sources costs bounded memory and at worst makes a phone
 * look asleep, which means push only.
 *
 * The proxy keeps a second table of the same shape for [push] wake_interval, keyed by push
 * device ("provider|token hash" as the address, port 0): when each was last woken for a
 * request that is neither a call nor a message.
 */
#ifndef SIPWAKE_HEARD_H
#define SIPWAKE_HEARD_H

#include <stddef.h>

#include <ev.h>

struct heard;

/* A table that remembers addresses for window seconds (0: remembers nothing), at most max
 * of them. Caller frees with heard_free. */
struct heard *heard_new(double window, size_t max);
void heard_free(struct heard *h);

/* ip:port (numeric, as the transport writes it) was heard at now. */
void heard_note(struct heard *h, const char *ip, int port, ev_tstamp now);

/* 1 if ip:port was heard within the window before now, else 0. */
int heard_recently(struct heard *h, const char *ip, int port, ev_tstamp now);

/* Addresses held. */
size_t heard_count(const struct heard *h);

#endif
