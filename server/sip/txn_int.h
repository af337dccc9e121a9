/*
 * txn_int: what the transaction files share among themselves and nobody else.
 */
#ifndef SIPWAKE_TXN_INT_H
#define SIPWAKE_TXN_INT_H

#include "hashtab.h"
#include "txn.h"

struct ev_loop *txn_table_loop(struct txn_table *tt);
struct transport *txn_table_transport(struct txn_table *tt);
struct hashtab *txn_table_clients(struct txn_table *tt);
/* Free every client transaction without callbacks (shutdown). */
void txn_client_drain_all(struct txn_table *tt);

#endif
