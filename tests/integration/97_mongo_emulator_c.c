/*
 * 97_mongo_emulator_c: the real mongo-c-driver (Debian's libmongoc-dev, the driver the MongoDB
 * store backend uses) against tests/emulators/mongo.py, so the driver's handshake (OP_QUERY
 * isMaster with its client metadata), OP_MSG framing and document sequences are proved to work
 * with the emulator. Built and run by 97_mongo_emulator.t: `97_mongo_emulator_c URI`; prints one
 * line per step, which the test compares.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>

/* One line: what the step gave, or the driver's error. */
static void report(const char *step, bool ok, const bson_error_t *error)
{
    if (ok)
        printf("%s ok\n", step);
    else
        printf("%s error %u %s\n", step, error->code, error->message);
}

int main(int argc, char **argv)
{
    bson_error_t error;
    bson_t reply;
    if (argc != 2)
        return 2;
    mongoc_init();
    mongoc_client_t *client = mongoc_client_new(argv[1]);
    if (!client) {
        printf("bad uri\n");
        return 1;
    }

    bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
    report("ping", mongoc_client_command_simple(client, "admin", ping, NULL, &reply, &error),
           &error);
    bson_destroy(&reply);

    mongoc_collection_t *coll = mongoc_client_get_collection(client, "ccheck", "people");
    bson_t *one = BCON_NEW("_id", BCON_INT32(1), "name", BCON_UTF8("alice"), "age", BCON_INT64(30));
    report("insert_one", mongoc_collection_insert_one(coll, one, NULL, NULL, &error), &error);

    /* three documents: the driver sends them as an OP_MSG kind 1 section "documents" */
    bson_t *docs[3];
    for (int i = 0; i < 3; i++)
        docs[i] = BCON_NEW("_id", BCON_INT32(10 + i), "name", BCON_UTF8("bob"));
    bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, 3, NULL, &reply, &error);
    bson_iter_t it;
    if (ok && bson_iter_init_find(&it, &reply, "insertedCount"))
        printf("insert_many %d\n", bson_iter_int32(&it));
    else
        report("insert_many", ok, &error);
    bson_destroy(&reply);

    bson_t *filter = BCON_NEW("name", BCON_UTF8("bob"), "_id", "{", "$gte", BCON_INT32(11), "}");
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(-1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        char *s = bson_as_relaxed_extended_json(doc, NULL);
        printf("found %s\n", s);
        bson_free(s);
    }
    if (mongoc_cursor_error(cur, &error))
        report("find", false, &error);
    mongoc_cursor_destroy(cur);

    /* w: majority, as the backend asks for writes that must not be lost */
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_wmajority(wc, 1000);
    bson_t wopts = BSON_INITIALIZER;
    mongoc_write_concern_append(wc, &wopts);
    bson_t *dup = BCON_NEW("_id", BCON_INT32(1));
    report("insert_dup", mongoc_collection_insert_one(coll, dup, &wopts, NULL, &error), &error);
    bson_t *two = BCON_NEW("_id", BCON_INT32(2));
    report("insert_majority", mongoc_collection_insert_one(coll, two, &wopts, NULL, &error),
           &error);

    bson_destroy(two);
    bson_destroy(dup);
    bson_destroy(&wopts);
    mongoc_write_concern_destroy(wc);
    bson_destroy(opts);
    bson_destroy(filter);
    for (int i = 0; i < 3; i++)
        bson_destroy(docs[i]);
    bson_destroy(one);
    bson_destroy(ping);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mongoc_cleanup();
    return 0;
}
