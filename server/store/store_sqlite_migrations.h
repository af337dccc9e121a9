/*
 * store_sqlite_migrations: the numbered SQL migrations of schemas/sqlite, embedded at build
 * time by schemas/sqlite/embed.pl into store_sqlite_migrations.c (generated).
 */
#ifndef SIPWAKE_STORE_SQLITE_MIGRATIONS_H
#define SIPWAKE_STORE_SQLITE_MIGRATIONS_H

struct store_sqlite_migration {
    int id;
    const char *name;
    const char *sql;
};

/* Constant data, in id order: any thread may read it. */
extern const struct store_sqlite_migration store_sqlite_migrations[];
extern const int store_sqlite_migrations_count;

#endif
