/*
 * txn_int: what the transaction files share among themselves and nobody else.
 */
#ifndef SIPWAKE_TXN_INT_H
#define SIPWAKE_TXN_INT_H

#include "hashtab.h"
#include "txn.h"

/* tt's loop, transport and client table (owned by tt: valid while it is). Loop thread, as
 * is everything here. */
struct ev_loop *txn_table_loop(struct txn_table *tt);
struct transport *txn_table_transport(struct txn_table *tt);
struct hashtab *txn_table_clients(struct txn_table *tt);
/* Free every client transaction without callbacks but the late-2xx ones' final NULL
 * (shutdown). */
void txn_client_drain_all(struct txn_table *tt);

#endif
