/*
 * cli: the subcommands an operator runs next to the server: `user` (the subscriber table),
 * `tenant` (tenants, their domains and push credential sets), `push` (send one push and
 * print the provider's answer), `push-log` (the latest push outcomes) and `messages` (the
 * offline MESSAGEs waiting, per AOR and device) and `admin` (web admin accounts and API
 * tokens; a password is read from stdin, a token is printed once). They work on the
 * configured store directly; a running sipwake reads tenant changes on SIGHUP.
 *
 * Each returns the process's exit status: 0 done, 1 failed (the reason on stderr), 2 usage.
 * Secrets are read from files, never from the command line, and never printed.
 */
#ifndef SIPWAKE_CLI_H
#define SIPWAKE_CLI_H

#include "config.h"

/* Each runs on the main thread with no loop running (it opens, uses and closes the store
 * synchronously); cfg and argv are only read. */
int cli_user(const struct config *cfg, int argc, char **argv);
int cli_tenant(const struct config *cfg, int argc, char **argv);
int cli_push(const struct config *cfg, int argc, char **argv);
int cli_push_log(const struct config *cfg, int argc, char **argv);
int cli_messages(const struct config *cfg, int argc, char **argv);
int cli_admin(const struct config *cfg, int argc, char **argv);

/* The usage lines of the subcommands. */
extern const char cli_usage[];

#endif
