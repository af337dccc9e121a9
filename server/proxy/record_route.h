/*
 * record_route: sipwake's Record-Route (RFC 3261 §16.6 step 4) with flow tokens (RFC 5626
 * §5.2) naming both sides' flows of the dialog, authenticated by a MAC.
 *
 * The proxy writes them on dialog-creating requests (record_route_lines) and recognises them
 * on the dialog's later requests (record_route_ours), which then go down the flow of the side
 * they are for. It knows the listeners and the token key, nothing of routing. On the loop.
 */
#ifndef SIPWAKE_RECORD_ROUTE_H
#define SIPWAKE_RECORD_ROUTE_H

#include <stddef.h>

#include <osipparser2/osip_parser.h>

#include "config.h"
#include "transport.h"

struct record_route;

/* cfg borrowed for the result's lifetime; the token key is random until
 * record_route_load_key. Free with record_route_free. */
struct record_route *record_route_new(const struct config *cfg);
void record_route_free(struct record_route *rr);

/* Use the token key kept in the file at path (made on first use), so that dialogs
 * Record-Routed before a restart are still routed after it. As util_secret_file: 0, 1 with a
 * warning in err (its mode was tightened), or -1 with err. */
int record_route_load_key(struct record_route *rr, const char *path, char *err, size_t errlen);

/* The Record-Route header lines ("Record-Route: <...>\r\n") for req coming from caller and
 * leaving toward callee: one entry, or two when it changes listener (transport or address
 * family; RFC 5658), the callee's side on top. NULL when req's From has no tag usable to tell
 * the sides apart (then no Record-Route). The caller frees the result; the arguments are
 * borrowed for the call. */
char *record_route_lines(const struct record_route *rr, const osip_message_t *req,
                         const struct sip_source *caller, const struct sip_source *callee);

/* How many of the top Route entries of req are sipwake's Record-Routes (two after a double
 * Record-Route), with the dialog's sides (copies) and the caller's tag from the first (*ftag
 * points into req, valid while req is). */
int record_route_ours(const struct record_route *rr, const osip_message_t *req,
                      struct sip_source *caller, struct sip_source *callee, const char **ftag);

#endif
