/*
 * sip_txn_int: what the transaction files share among themselves and nobody else.
 */
#ifndef SIPWAKE_SIP_TXN_INT_H
#define SIPWAKE_SIP_TXN_INT_H

#include "hashtab.h"
#include "sip_txn.h"

struct ev_loop *txn_table_loop(struct txn_table *tt);
struct transport *txn_table_transport(struct txn_table *tt);
struct hashtab *txn_table_clients(struct txn_table *tt);
/* Free every client transaction without callbacks (shutdown). */
void txn_clients_drain(struct txn_table *tt);

#endif
