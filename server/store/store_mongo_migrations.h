/*
 * store_mongo_migrations: the numbered migrations of schemas/mongo (JSON arrays of commands,
 * createIndexes today), embedded at build time by schemas/sqlite/embed.pl into
 * store_mongo_migrations.c (generated).
 */
#ifndef SIPWAKE_STORE_MONGO_MIGRATIONS_H
#define SIPWAKE_STORE_MONGO_MIGRATIONS_H

struct store_mongo_migration {
    int id;
    const char *name;
    const char *text; /* a JSON array of command documents, run in order */
};

/* Constant data, in id order: any thread may read it. */
extern const struct store_mongo_migration store_mongo_migrations[];
extern const int store_mongo_migrations_count;

#endif
