#!/usr/bin/python3
"""mongo.py: a MongoDB server emulator for tests (no MongoDB server can be installed here).

It behaves as a standalone mongod 6.0 (maxWireVersion 17) on 127.0.0.1, in memory, and
implements exactly the set below; anything else gets the error a real server gives, and a
known construct this emulator does not emulate gets code 238 (NotImplemented) with an errmsg
starting "emulator:", so a backend relying on it fails a test instead of passing wrongly.
Manual pages cited as M/<page> = https://www.mongodb.com/docs/manual/reference/<page>/.

Wire (M/mongodb-wire-protocol):
  OP_MSG (2013): flagBits checksumPresent (bit 0: the trailing CRC-32C is verified; a bad one
    closes the connection, as does any other required bit 2-15 set), moreToCome (bit 1: the
    request is unacknowledged, no reply is sent), exhaustAllowed ignored; one kind 0 body and
    kind 1 document sequences, merged into the body under their identifier.
  OP_QUERY (2004) only as the driver's first handshake: on <db>.$cmd, hello/isMaster/ismaster
    answered with OP_REPLY; any other command gets code 352 UnsupportedOpQueryCommand
    ("Unsupported OP_QUERY command: <name>. The client driver may require an upgrade. For more
    details see https://dochub.mongodb.org/core/legacy-opcode-removal"), and OP_QUERY on a
    collection or OP_GET_MORE an OP_REPLY with QueryFailure and {$err: "OP_QUERY is no longer
    supported. The client driver ...", code: 5739101, ok: 0} (mongod 6.0
    service_entry_point_common.cpp, makeErrorResponseToUnsupportedOpQuery).
  OP_INSERT, OP_UPDATE, OP_DELETE, OP_KILL_CURSORS: the connection is closed (6.0 raises
    57457xx "OP_... is no longer supported" in a fire-and-forget runner, which ends the
    session); OP_COMPRESSED (none was negotiated) closes it too; any other opcode is logged and
    gets no reply (6.0's UnsupportedOpRunner answers nothing).
  One thread per connection; a global lock makes each command atomic.

Commands (M/command/<name>); every command checks its fields as the server's IDL parser does:
  a field it does not know is code 40415 "BSON field '<cmd>.<field>' is an unknown field."
  (also inside updates/deletes statements and index specs); the generic fields $db, lsid,
  $clusterTime, $readPreference, comment, apiVersion, apiStrict, apiDeprecationErrors, and
  maxTimeMS / writeConcern / readConcern on the commands that take them, are accepted.
  txnNumber/startTransaction/autocommit: code 20 IllegalOperation "Transaction numbers are
  only allowed on a replica set member or mongos" (a standalone has no transactions).
  writeConcern on a command that takes none: code 72 InvalidOptions "Command does not support
  writeConcern". An unknown command: code 59 "no such command: '<name>'".
  - hello, isMaster, ismaster: isWritablePrimary (hello) / ismaster true, topologyVersion,
    maxBsonObjectSize 16777216, maxMessageSizeBytes 48000000, maxWriteBatchSize 100000,
    localTime, logicalSessionTimeoutMinutes 30, connectionId, minWireVersion 0,
    maxWireVersion 17, readOnly false, helloOk when asked. "client" accepted, "compression"
    answered with none, "saslSupportedMechs" answered without the field (no such user). An
    awaitable hello (topologyVersion of this process + maxAwaitTimeMS, the drivers' streaming
    monitor) is answered after maxAwaitTimeMS, as the topology never changes; exhaustAllowed is
    not honoured (no moreToCome replies), which the protocol allows.
  - saslStart, authenticate: code 18 "Authentication failed." (no users exist: auth is not
    emulated beyond failing as a server without that user would).
  - ping; buildInfo/buildinfo (version 6.0.12); endSessions (accepted).
  - insert (documents, ordered, bypassDocumentValidation, writeConcern, maxTimeMS): _id
    generated as an ObjectId and put first when missing; ordered stops at the first write error.
  - update (updates [{q, u, upsert, multi}], ordered, ...): u a replacement document (the _id
    kept; changing it: code 66 ImmutableField) or update operators $set, $unset, $inc,
    $setOnInsert (M/operator/update); new fields are added in lexicographic path order (5.0+);
    an unknown modifier: code 9 "Unknown modifier: $x. Expected a valid update modifier or
    pipeline-style update specified as an array"; two paths of one update that overlap: code 40
    "Updating the path 'a' would create a conflict at 'a'"; $set of _id to another value: code
    66. $inc: int32+int32 overflowing goes to int64, a double wins (M/operator/update/inc);
    on a non-number: code 14 TypeMismatch. Upsert (M/method/db.collection.update, "Upsert
    Behavior"): with operators, the new document starts from the query's equality fields
    (plain values and $eq, inside $and too), then the operators and $setOnInsert apply; with a
    replacement, the replacement plus the query's _id equality; a replacement naming another
    _id than the query's: code 66 (upsert_stage.cpp: "The _id field is always immutable"). Result: n (matched +
    upserted), nModified (documents whose bytes changed), upserted [{index, _id}].
  - delete (deletes [{q, limit}]): limit 0 (all) or 1, else code 9 "The limit field in delete
    objects must be 0 or 1. Got <n>".
  - find (filter, sort, projection, skip, limit, batchSize, singleBatch, noCursorTimeout,
    allowPartialResults, allowDiskUse, readConcern, maxTimeMS); getMore (collection, batchSize);
    killCursors (cursors). Cursors (M/command/find, getMore): firstBatch/nextBatch, ns, id 0
    once exhausted; first batch 101 documents by default, getMore up to 16 MiB; limit closes
    the cursor; an unknown cursor: code 43 CursorNotFound "cursor id <n> not found". Negative skip/limit/batchSize: code 51024 "BSON field '<f>' value must be >= 0,
    actual value '<n>'". Projection: top-level inclusion or exclusion, _id included unless
    _id: 0 (M/method/db.collection.find, "Projection"); mixing: codes 31254 "Cannot do
    exclusion on field <f> in inclusion projection" / 31253 "Cannot do inclusion on field <f>
    in exclusion projection".
  - findAndModify/findandmodify (query, sort, remove, update, new, fields, upsert,
    bypassDocumentValidation, writeConcern, maxTimeMS): lastErrorObject {n, updatedExisting,
    upserted}, value the old or (new: true) the new document; neither update nor remove: code
    9 "Either an update or remove=true must be specified".
  - count (query, limit, skip): n.
  - createIndexes (indexes [{key, name, unique, sparse, expireAfterSeconds, background, v}]):
    keys single or compound with 1/-1 (M/method/db.collection.createIndex); expireAfterSeconds
    is stored and listed but documents are NEVER expired by the emulator; the same name with
    another key: code 86 IndexKeySpecsConflict "An existing index has the same name as the
    requested index. Requested index: <spec>, existing index: <spec>"; the same key under another
    name: code 85 IndexOptionsConflict "Index already exists with a different name: <name>" (with
    another expireAfterSeconds: "An equivalent index already exists with a different name and
    options. ..."); the same name and key with another expireAfterSeconds: code 85 "An equivalent
    index already exists with the same name but different options. ..." (index_catalog_impl.cpp);
    unique or sparse changing between two specs of one key: not emulated; a unique index over
    duplicates: code 11000. Replies
    numIndexesBefore/After, createdCollectionAutomatically, note "all indexes already exist".
  - listIndexes (cursor), listCollections (filter on name only, nameOnly, cursor), drop
    (nIndexesWas, ns; a missing collection: code 26 "ns not found", as 6.0 still does),
    dropDatabase.
  - configureFailPoint (admin only; mongod --setParameter enableTestCommands=1), fail point
    "failCommand" only: mode "alwaysOn" | {times: n} | "off", data {failCommands,
    errorCode, closeConnection, writeConcernError, errorLabels, appName}: a listed command (not
    configureFailPoint itself) on a client of that appName is answered with {ok: 0, code,
    errmsg "Failing command via 'failCommand' failpoint"} before it runs, or its connection is
    closed without an answer; writeConcernError is added to the answer of a write command after
    it ran; each activation spends one of "times" (commands.cpp evaluateFailCommandFailPoint).
    Replies {count: <activations so far>}.
Write results (M/command/insert, update, delete "Output"): n, nModified, upserted, writeErrors
  [{index, code, errmsg, keyPattern, keyValue}]; duplicate key: code 11000 "E11000 duplicate
  key error collection: <db>.<coll> index: <name> dup key: { <field>: <value> }".
Write concern (M/write-concern): w 0 | 1 | "majority", j, wtimeout accepted; a standalone
  takes w: "majority" as w: 1 (jstests/core/write_concern.js: it succeeds); w > 1: code 2
  BadValue "cannot use 'w' > 1 when a host is not replicated", nothing written; another w
  string: code 2 "cannot use non-majority 'w' mode <w> when a host is not a member of a replica
  set" (write_concern.cpp, validateWriteConcern). Read concern level local, available or
  majority accepted.
Query language (M/operator/query, M/bson-type-comparison-order): implicit equality, $eq $ne $gt
  $gte $lt $lte $in $nin $exists $and $or $nor on top-level and dotted paths through embedded
  documents; missing equals null for $eq/$in null, $gt/$lt compare within one type class
  (numbers across int32/int64/double/Decimal128 by value); sort on several keys in the
  manual's BSON order (MinKey, null/missing, numbers, strings (binary), objects, arrays,
  binData, ObjectId, bool, date, timestamp, regex, MaxKey); unknown field operator: code 2
  "unknown operator: $x"; unknown top-level operator: code 2 "unknown top level operator: $x.
  If you have a field name that starts with a '$' symbol, consider using $getField or
  $setField."; $in/$nin not an array: code 2 "$in needs an array"; $and/$or/$nor not an array: code 2
  "$or must be an array", empty: "$and/$or/$nor must be a nonempty array"
  (expression_parser.cpp parseTreeTopLevel).
Types: ordered (insert, update, delete) and an update statement's upsert and multi are IDL
  `bool` fields (write_ops.idl): null reads as absent, another type is code 14 "BSON field
  '<cmd>.ordered' | 'update.updates.upsert' is the wrong type '<type>', expected type 'bool'"
  (idl_parser.cpp); other fields of a wrong type are refused with an "emulator:" error (below).
Database names (service_entry_point_common.cpp, NamespaceString::validDBName): empty, 64
  characters or more, or holding '/', '\\', '.', ' ', '"' or NUL: code 73 InvalidNamespace
  "Invalid database name: '<db>'".
Document size (BSONObjMaxUserSize 16777216): an insert over it is write error code 2 "object to
  insert too large. size in bytes: <n>, max size: 16777216" (insert.cpp fixDocumentForInsert),
  an update result 17419 "Resulting document after update is larger than 16777216"
  (update_stage.cpp), an upsert 17420 "Document to upsert is larger than 16777216"
  (upsert_stage.cpp). A cursor batch takes a document only while it fits in 16 MiB (the first
  always: FindCommon::haveSpaceForNext); batchSize 0 opens the cursor with an empty batch.
Unique indexes are enforced on insert, update and upsert, a missing field counting as null; a
  sparse index skips documents without any of its fields; _id is always unique.
NOT emulated (answered "emulator: ..." code 238): any path whose value is an array (queries,
  sort, indexes, updates through one), $regex and regex values, $not, $elemMatch, $size, $all,
  $type, $mod, $expr, $where, $text, geo and bitwise operators, MinKey/MaxKey in a range,
  collation, hint, arrayFilters, pipeline updates, the other update operators ($push, $max,
  $rename, ...), let, dotted or operator projections, $meta sorts, partial indexes, TTL expiry
  (never happens), two indexes on one key differing in unique/sparse, read preferences other
  than primary/primaryPreferred/secondaryPreferred/nearest, readConcern levels other than
  local/available/majority, a field of the wrong BSON type (new, remove, findAndModify's
  upsert, singleBatch, nameOnly, j, fsync not a bool; skip/limit/batchSize/wtimeout not a
  number; index unique/sparse not a bool or number, expireAfterSeconds not a number: all
  REFUSED, the server's IDL answering code 14 with an expected-types list not reproduced
  here), field names with '$' or '.', findAndModify combining remove with update/new/upsert, auth. The emulator is one process
  with no replication: majority writes, failover, elections, the query planner and its index
  choice are not tested through it. A command is atomic (one global lock), which a real server
  does not promise across documents; a createIndexes whose second index fails keeps the first.
Every command is logged as one JSON line (--log): {"event": "command", "command", "db",
  "collection", "body" (the whole command, document sequences merged in, BSON types as relaxed
  extended JSON), "connection", "op" (OP_MSG or OP_QUERY), "sequences" (the identifiers of
  the kind 1 sections it came with), "ok", "code", "writeErrors" (codes)};
  refused messages as {"event": "bad_op_msg" | "legacy_opcode" | "op_query" | ...}.

  mongo.py [--host 127.0.0.1] [--port 0] [--log FILE]     prints "listening <port>" first.
"""
import argparse
import datetime
import decimal
import json
import math
import socketserver
import struct
import threading

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.son import SON
from bson.timestamp import Timestamp

OPTS = CodecOptions(document_class=SON, tz_aware=True)
OP_REPLY, OP_UPDATE, OP_INSERT, OP_QUERY, OP_GET_MORE, OP_DELETE, OP_KILL_CURSORS = \
    1, 2001, 2002, 2004, 2005, 2006, 2007
OP_COMPRESSED, OP_MSG = 2012, 2013
MAX_BSON = 16777216

CODE_NAMES = {
    1: 'InternalError', 2: 'BadValue', 6: 'HostUnreachable', 7: 'HostNotFound',
    8: 'UnknownError', 9: 'FailedToParse', 11: 'UserNotFound', 13: 'Unauthorized',
    14: 'TypeMismatch', 73: 'InvalidNamespace', 18: 'AuthenticationFailed', 20: 'IllegalOperation',
    26: 'NamespaceNotFound', 40: 'ConflictingUpdateOperators', 43: 'CursorNotFound',
    50: 'MaxTimeMSExpired', 59: 'CommandNotFound', 64: 'WriteConcernFailed',
    66: 'ImmutableField', 72: 'InvalidOptions', 79: 'UnknownReplWriteConcern',
    85: 'IndexOptionsConflict', 86: 'IndexKeySpecsConflict', 89: 'NetworkTimeout',
    91: 'ShutdownInProgress', 100: 'UnsatisfiableWriteConcern', 112: 'WriteConflict',
    189: 'PrimarySteppedDown', 238: 'NotImplemented', 262: 'ExceededTimeLimit',
    352: 'UnsupportedOpQueryCommand', 9001: 'SocketException', 10107: 'NotWritablePrimary',
    11000: 'DuplicateKey', 11600: 'InterruptedAtShutdown', 11601: 'Interrupted',
    11602: 'InterruptedDueToReplStateChange', 13435: 'NotPrimaryNoSecondaryOk',
    13436: 'NotPrimaryOrSecondary'}


class CmdError(Exception):
    """A command's failure: {ok: 0, errmsg, code, codeName} plus extra fields."""

    def __init__(self, code, msg, **extra):
        super().__init__(msg)
        self.code, self.msg, self.extra = code, msg, extra

    def reply(self):
        r = SON([('ok', 0.0), ('errmsg', self.msg), ('code', self.code),
                 ('codeName', CODE_NAMES.get(self.code, 'Location%d' % self.code))])
        r.update(self.extra)
        return r


class CloseConnection(Exception):
    pass


def emulator(what):
    return CmdError(238, 'emulator: ' + what + ' is not emulated')


def wrong_type(field):
    """A field of the wrong BSON type: the server's IDL answers code 14 TypeMismatch "BSON
    field '<cmd>.<field>' is the wrong type '<type>', expected type '<types>'" (idl_parser.cpp);
    the expected-types list differs per field (bool vs safeBool, ...) and is not reproduced
    here, so it is an "emulator:" error: refused, never read by truthiness."""
    return emulator("a value of the wrong type for '%s'" % field)


def want_bool(d, field, default):
    """d[field] as a bool; any other BSON type refused (wrong_type), never read by truthiness."""
    v = d.get(field, default)
    if not isinstance(v, bool):
        raise wrong_type(field)
    return v


def idl_bool(d, path, field, default):
    """An IDL field of `type: bool` (write_ops.idl: WriteCommandBase.ordered,
    UpdateOpEntry.multi and upsert): null reads as absent, any other non-bool is code 14
    "BSON field '<path>.<field>' is the wrong type '<type>', expected type 'bool'"
    (idl_parser.cpp IDLParserContext::checkAndAssertTypeSlowPath)."""
    v = d.get(field)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise CmdError(14, "BSON field '%s.%s' is the wrong type '%s', expected type 'bool'"
                       % (path, field, bson_type_name(v)))
    return v


def bson_type_name(v):
    """typeName() of a BSON value, as the server's messages print it."""
    for t, n in ((bool, 'bool'), (Int64, 'long'), (int, 'int'), (float, 'double'), (str, 'string'),
                 (dict, 'object'), (list, 'array'), (bytes, 'binData'), (ObjectId, 'objectId'),
                 (Decimal128, 'decimal'), (datetime.datetime, 'date'), (Regex, 'regex'),
                 (Timestamp, 'timestamp'), (MinKey, 'minKey'), (MaxKey, 'maxKey')):
        if isinstance(v, t):
            return n
    return type(v).__name__


def want_number(d, field):
    v = d.get(field)
    if v is not None and not is_number(v):
        raise wrong_type(field)
    return v


def check_db_name(db):
    """NamespaceString::validDBName(db, DollarInDbNameBehavior::Allow), checked for every
    command (service_entry_point_common.cpp): not empty, under 64 characters, none of
    '/', '\\', '.', ' ', '"' or NUL: else code 73 InvalidNamespace."""
    if not db or len(db) >= 64 or any(ch in db for ch in '/\\. "\0'):
        raise CmdError(73, "Invalid database name: '%s'" % db)


def check_size(doc, code, msg):
    """The 16 MiB user document limit (BSONObjMaxUserSize): insert.cpp fixDocumentForInsert
    (code 2 "object to insert too large. size in bytes: <n>, max size: 16777216"),
    update_stage.cpp (17419 "Resulting document after update is larger than 16777216"),
    upsert_stage.cpp (17420 "Document to upsert is larger than 16777216")."""
    size = len(bson.encode(doc))
    if size > MAX_BSON:
        raise CmdError(code, msg % {'size': size, 'max': MAX_BSON})


TOO_LARGE_INSERT = (2, 'object to insert too large. size in bytes: %(size)d, max size: %(max)d')
TOO_LARGE_UPDATE = (17419, 'Resulting document after update is larger than %(max)d')
TOO_LARGE_UPSERT = (17420, 'Document to upsert is larger than %(max)d')


# -- CRC-32C (Castagnoli), the OP_MSG checksum (M/mongodb-wire-protocol, "checksumPresent")
def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# -- BSON values: type classes and the manual's comparison order -------------------------

class Missing:
    pass


MISSING = Missing()


def type_rank(v):
    """Canonical type order (M/bson-type-comparison-order); missing sorts as null."""
    if isinstance(v, MinKey):
        return 1
    if v is None or v is MISSING:
        return 2
    if isinstance(v, bool):
        return 9
    if isinstance(v, (int, float, Decimal128)):
        return 3
    if isinstance(v, str):
        return 4
    if isinstance(v, dict):
        return 5
    if isinstance(v, list):
        return 6
    if isinstance(v, bytes):
        return 7
    if isinstance(v, ObjectId):
        return 8
    if isinstance(v, datetime.datetime):
        return 10
    if isinstance(v, Timestamp):
        return 11
    if isinstance(v, Regex):
        return 12
    if isinstance(v, MaxKey):
        return 13
    raise emulator('the BSON type %s' % type(v).__name__)


def num(v):
    """A number as a Decimal (exact for int64 and double); NaN as None."""
    if isinstance(v, Decimal128):
        d = v.to_decimal()
        return None if d.is_nan() else d
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return decimal.Decimal('Infinity') if v > 0 else decimal.Decimal('-Infinity')
        return decimal.Decimal(v)
    return decimal.Decimal(int(v))


def date_ms(v):
    return int((v - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc))
               // datetime.timedelta(milliseconds=1))


def cmp(a, b):
    """-1, 0, 1 in BSON order (M/bson-type-comparison-order)."""
    ra, rb = type_rank(a), type_rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra in (1, 2, 13):
        return 0
    if ra == 3:
        x, y = num(a), num(b)
        if x is None or y is None:  # NaN equals NaN and is below every other number
            return 0 if x is y else (-1 if x is None else 1)
        return (x > y) - (x < y)
    if ra == 4:
        x, y = a.encode('utf-8'), b.encode('utf-8')  # simple binary comparison
        return (x > y) - (x < y)
    if ra == 5:
        # pair by pair: the field type, then the name, then the value; shorter is less
        ia, ib = list(a.items()), list(b.items())
        for (ka, va), (kb, vb) in zip(ia, ib):
            ta, tb = type_rank(va), type_rank(vb)
            if ta != tb:
                return -1 if ta < tb else 1
            if ka != kb:
                x, y = ka.encode(), kb.encode()
                return (x > y) - (x < y)
            c = cmp(va, vb)
            if c:
                return c
        return (len(ia) > len(ib)) - (len(ia) < len(ib))
    if ra == 6:
        for x, y in zip(a, b):
            c = cmp(x, y)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 7:  # length, then subtype, then bytes
        ka = (len(a), getattr(a, 'subtype', 0), bytes(a))
        kb = (len(b), getattr(b, 'subtype', 0), bytes(b))
        return (ka > kb) - (ka < kb)
    if ra == 8:
        return (a.binary > b.binary) - (a.binary < b.binary)
    if ra == 9:
        return (a > b) - (a < b)
    if ra == 10:
        x, y = date_ms(a), date_ms(b)
        return (x > y) - (x < y)
    if ra == 11:
        x, y = (a.time, a.inc), (b.time, b.inc)
        return (x > y) - (x < y)
    raise emulator('comparing regular expressions')


def canon(v):
    """A hashable key equal for values BSON equality calls equal (unique indexes, _id)."""
    r = type_rank(v)
    if r == 3:
        n = num(v)
        return (3, 'nan' if n is None else n)
    if r in (1, 2, 13):
        return (r,)
    if r == 5:
        return (5, tuple((k, canon(x)) for k, x in v.items()))
    if r == 6:
        return (6, tuple(canon(x) for x in v))
    if r == 7:
        return (7, getattr(v, 'subtype', 0), bytes(v))
    if r == 8:
        return (8, v.binary)
    if r == 10:
        return (10, date_ms(v))
    if r == 11:
        return (11, v.time, v.inc)
    return (r, v)


def fmt(v):
    """A value as the server prints it in messages (dup key, _id)."""
    if isinstance(v, dict):
        return '{ ' + ', '.join('%s: %s' % (k, fmt(x)) for k, x in v.items()) + ' }' if v else '{}'
    if isinstance(v, list):
        return '[ ' + ', '.join(fmt(x) for x in v) + ' ]' if v else '[]'
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if v is None or v is MISSING:
        return 'null'
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, ObjectId):
        return "ObjectId('%s')" % v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, datetime.datetime):
        return 'new Date(%d)' % date_ms(v)
    return str(v)


def jsonsafe(doc):
    return json.loads(json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS))


# -- paths ------------------------------------------------------------------------------

def get_path(doc, path):
    """The value at a dotted path through embedded documents, or MISSING; an array on the
    way or at the end is not emulated (MongoDB would match its elements)."""
    cur = doc
    parts = path.split('.')
    for i, p in enumerate(parts):
        if isinstance(cur, list):
            raise emulator("a path ('%s') through an array value" % path)
        if not isinstance(cur, dict) or p not in cur:
            return MISSING
        cur = cur[p]
    if isinstance(cur, list):
        raise emulator("a query, sort or index on a path ('%s') whose value is an array" % path)
    return cur


def check_field_name(name, where):
    if name.startswith('$') or '.' in name:
        raise emulator("the field name '%s' (with '$' or '.') in %s" % (name, where))


def check_doc_names(doc, where):
    for k, v in doc.items():
        check_field_name(k, where)
        if isinstance(v, dict):
            check_doc_names(v, where)


# -- query ------------------------------------------------------------------------------

FIELD_OPS = {'$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists'}
KNOWN_NOT_EMULATED_FIELD_OPS = {
    '$regex', '$options', '$not', '$elemMatch', '$size', '$all', '$type', '$mod',
    '$bitsAllSet', '$bitsAnySet', '$bitsAllClear', '$bitsAnyClear', '$geoWithin',
    '$geoIntersects', '$near', '$nearSphere', '$within', '$jsonSchema', '$expr', '$text',
    '$where', '$comment', '$minDistance', '$maxDistance', '$box', '$center', '$centerSphere',
    '$polygon', '$geometry', '$uniqueDocs', '$sampleRate'}
TOP_OPS = {'$and', '$or', '$nor'}
KNOWN_NOT_EMULATED_TOP = {'$expr', '$where', '$text', '$comment', '$jsonSchema',
                          '$alwaysTrue', '$alwaysFalse', '$sampleRate'}


def is_op_doc(v):
    return isinstance(v, dict) and len(v) > 0 and next(iter(v)).startswith('$')


def check_value(v):
    if isinstance(v, Regex) or type(v).__name__ == 'Pattern':
        raise emulator('a regular expression value in a query')
    if isinstance(v, list):
        raise emulator('an array value in a query')


def validate_query(q):
    """Parse-time checks, as the server rejects a bad filter even on an empty collection."""
    if not isinstance(q, dict):
        raise wrong_type('filter')
    for k, v in q.items():
        if k.startswith('$'):
            if k in TOP_OPS:
                # expression_parser.cpp parseTreeTopLevel: "<op> must be an array", then
                # "$and/$or/$nor must be a nonempty array"
                if not isinstance(v, list):
                    raise CmdError(2, '%s must be an array' % k)
                if not v:
                    raise CmdError(2, '$and/$or/$nor must be a nonempty array')
                for sub in v:
                    if not isinstance(sub, dict):
                        raise CmdError(2, '$or/$and/$nor entries need to be full objects')
                    validate_query(sub)
            elif k in KNOWN_NOT_EMULATED_TOP:
                raise emulator('the top-level operator ' + k)
            else:
                raise CmdError(2, "unknown top level operator: %s. If you have a field name that "
                               "starts with a '$' symbol, consider using $getField or $setField." % k)
        elif is_op_doc(v):
            for op, arg in v.items():
                if op in FIELD_OPS:
                    if op in ('$in', '$nin'):
                        if not isinstance(arg, list):
                            raise CmdError(2, '$in needs an array' if op == '$in' else '$nin needs an array')
                        for a in arg:
                            check_value(a)
                    elif op != '$exists':
                        check_value(arg)
                        if isinstance(arg, (MinKey, MaxKey)) and op not in ('$eq', '$ne'):
                            raise emulator('a range comparison with MinKey/MaxKey')
                elif op in KNOWN_NOT_EMULATED_FIELD_OPS:
                    raise emulator('the query operator ' + op)
                else:
                    raise CmdError(2, 'unknown operator: ' + op)
        else:
            check_value(v)


def eq(a, b):
    if a is MISSING:
        return b is None
    return type_rank(a) == type_rank(b) and cmp(a, b) == 0


def match_op(val, op, arg):
    if op == '$eq':
        return eq(val, arg)
    if op == '$ne':
        return not eq(val, arg)
    if op == '$in':
        return any(eq(val, a) for a in arg)
    if op == '$nin':
        return not any(eq(val, a) for a in arg)
    if op == '$exists':
        return (val is not MISSING) == bool(arg)
    # $gt $gte $lt $lte: only within the argument's type class; null/missing with null
    v = None if val is MISSING else val
    if type_rank(v) != type_rank(arg):
        return False
    if type_rank(arg) == 3 and (num(v) is None or num(arg) is None):
        return op in ('$gte', '$lte') and num(v) is None and num(arg) is None
    c = cmp(v, arg)
    return {'$gt': c > 0, '$gte': c >= 0, '$lt': c < 0, '$lte': c <= 0}[op]


def matches(doc, q):
    for k, v in q.items():
        if k == '$and':
            if not all(matches(doc, s) for s in v):
                return False
        elif k == '$or':
            if not any(matches(doc, s) for s in v):
                return False
        elif k == '$nor':
            if any(matches(doc, s) for s in v):
                return False
        else:
            val = get_path(doc, k)
            if is_op_doc(v):
                if not all(match_op(val, op, arg) for op, arg in v.items()):
                    return False
            elif not eq(val, v):
                return False
    return True


def sort_docs(docs, sort):
    import functools
    keys = list(sort.items())

    def compare(a, b):
        for k, d in keys:
            va, vb = get_path(a, k), get_path(b, k)
            c = cmp(None if va is MISSING else va, None if vb is MISSING else vb)
            if c:
                return c * d
        return 0
    return sorted(docs, key=functools.cmp_to_key(compare))


def check_sort(sort):
    if not isinstance(sort, dict):
        raise wrong_type('sort')
    for k, d in sort.items():
        if isinstance(d, dict):
            raise emulator('a $meta sort')
        if isinstance(d, bool) or not isinstance(d, (int, float)) or d not in (1, -1):
            raise emulator('the sort value %s (only 1 and -1)' % fmt(d))
        check_field_name(k.replace('.', ''), 'a sort')


def project(doc, proj):
    if not proj:
        return doc
    incl = [k for k, v in proj.items() if v and k != '_id']
    out = SON()
    if incl:
        if proj.get('_id', 1) and '_id' in doc:
            out['_id'] = doc['_id']
        for k, v in doc.items():
            if k in proj and proj[k] and k != '_id':
                out[k] = v
    else:
        for k, v in doc.items():
            if k in proj and not proj[k]:
                continue
            out[k] = v
    return out


def read_spec(body, query_key, projection_key):
    """A read's filter, sort and projection (find, findAndModify), each checked."""
    q = body.get(query_key, {})
    validate_query(q)
    sort = body.get('sort')
    if sort:
        check_sort(sort)
    proj = body.get(projection_key)
    if proj:
        check_projection(proj)
    return q, sort, proj


def check_projection(proj):
    if not isinstance(proj, dict):
        raise wrong_type('projection')
    mode = None
    for k, v in proj.items():
        if '.' in k or k.startswith('$'):
            raise emulator("the projection of '%s' (dotted or operator)" % k)
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, (int, float)):
            raise emulator("the projection expression for '%s'" % k)
        inc = bool(v)
        if k == '_id':
            continue
        if mode is None:
            mode = inc
        elif mode != inc:
            if mode:
                raise CmdError(31254, 'Cannot do exclusion on field %s in inclusion projection' % k)
            raise CmdError(31253, 'Cannot do inclusion on field %s in exclusion projection' % k)


# -- update -----------------------------------------------------------------------------

UPDATE_OPS = {'$set', '$unset', '$inc', '$setOnInsert'}
KNOWN_NOT_EMULATED_UPDATE = {'$currentDate', '$max', '$min', '$mul', '$rename', '$addToSet',
                             '$pop', '$pull', '$push', '$pullAll', '$bit'}
TYPE_NAMES = {float: 'double', str: 'string', SON: 'object', dict: 'object', list: 'array',
              bytes: 'binData', ObjectId: 'objectId', bool: 'bool', type(None): 'null',
              int: 'int', Int64: 'long', Decimal128: 'decimal'}


def is_number(v):
    return isinstance(v, (int, float, Decimal128)) and not isinstance(v, bool)


def validate_update(u):
    """'ops' for operators, 'replace' for a replacement document."""
    if isinstance(u, list):
        raise emulator('a pipeline-style update')
    if not isinstance(u, dict):
        raise wrong_type('u')
    if not u or not next(iter(u)).startswith('$'):
        for k, v in u.items():
            check_field_name(k, 'a replacement document')
            if isinstance(v, dict):
                check_doc_names(v, 'a replacement document')
        return 'replace'
    paths = []
    for op, arg in u.items():
        if op in KNOWN_NOT_EMULATED_UPDATE:
            raise emulator('the update operator ' + op)
        if op not in UPDATE_OPS:
            raise CmdError(9, 'Unknown modifier: %s. Expected a valid update modifier or '
                           'pipeline-style update specified as an array' % op)
        if not isinstance(arg, dict):
            raise CmdError(9, 'Modifiers operate on fields but we found type %s instead. For '
                           'example: {$mod: {<field>: ...}} not {%s: %s}'
                           % (TYPE_NAMES.get(type(arg), type(arg).__name__), op, fmt(arg)))
        for path, v in arg.items():
            if any(p == '' or p.startswith('$') for p in path.split('.')):
                raise emulator("the update path '%s'" % path)
            if op == '$inc' and not is_number(v):
                raise CmdError(14, 'Cannot increment with non-numeric argument: {%s: %s}'
                               % (path, fmt(v)))
            if op in ('$set', '$setOnInsert'):
                check_value_for_set(v)
            for other in paths:
                if path == other or path.startswith(other + '.') or other.startswith(path + '.'):
                    short, = sorted((path, other), key=len)[:1]
                    raise CmdError(40, "Updating the path '%s' would create a conflict at '%s'"
                                   % (path, short))
            paths.append(path)
    return 'ops'


def check_value_for_set(v):
    if isinstance(v, dict):
        check_doc_names(v, 'an update value')


def inc_value(old, by, path, doc):
    if old is MISSING:
        return by
    if not is_number(old):
        raise CmdError(14, "Cannot apply $inc to a value of non-numeric type. {_id: %s} has the "
                       "field '%s' of non-numeric type %s"
                       % (fmt(doc.get('_id')), path, TYPE_NAMES.get(type(old), type(old).__name__)))
    if isinstance(old, float) or isinstance(by, float):
        return float(old) + float(by) if not (isinstance(old, Decimal128) or isinstance(by, Decimal128)) \
            else Decimal128(num(old) + num(by))
    if isinstance(old, Decimal128) or isinstance(by, Decimal128):
        return Decimal128(num(old) + num(by))
    r = int(old) + int(by)
    if isinstance(old, Int64) or isinstance(by, Int64) or not -2**31 <= r < 2**31:
        if not -2**63 <= r < 2**63:
            raise emulator('an $inc overflowing int64')
        return Int64(r)
    return r


def set_path(doc, path, value, create=True):
    parts = path.split('.')
    cur = doc
    for i, p in enumerate(parts[:-1]):
        nxt = cur.get(p, MISSING)
        if nxt is MISSING:
            if not create:
                return
            nxt = SON()
            cur[p] = nxt
        elif isinstance(nxt, list):
            raise emulator("an update through an array ('%s')" % path)
        elif not isinstance(nxt, dict):
            raise emulator("an update creating a field inside a non-document ('%s')" % path)
        cur = nxt
    if isinstance(cur, list):
        raise emulator("an update through an array ('%s')" % path)
    cur[parts[-1]] = value


def unset_path(doc, path):
    parts = path.split('.')
    cur = doc
    for p in parts[:-1]:
        cur = cur.get(p) if isinstance(cur, dict) else None
        if isinstance(cur, list):
            raise emulator("an $unset through an array ('%s')" % path)
        if not isinstance(cur, dict):
            return
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)


def apply_ops(doc, u, inserting):
    """Applies validated update operators to a copy of doc; returns the new document."""
    new = copy_doc(doc)
    items = []
    for op, arg in u.items():
        if op == '$setOnInsert' and not inserting:
            continue
        for path, v in arg.items():
            items.append((path, op, v))
    # 5.0+: fields are updated in lexicographic order of their paths
    for path, op, v in sorted(items, key=lambda t: t[0]):
        if path == '_id' or path.startswith('_id.'):
            # _id may only be set to the value it has, or given by an upsert that has none
            old = new.get('_id', MISSING)
            if op == '$unset' or (old is MISSING and not inserting) or \
                    (old is not MISSING and (op == '$inc' or path != '_id' or not eq(old, v))):
                raise CmdError(66, "Performing an update on the path '_id' would modify the "
                               "immutable field '_id'")
        if op in ('$set', '$setOnInsert'):
            set_path(new, path, copy_val(v))
        elif op == '$unset':
            unset_path(new, path)
        elif op == '$inc':
            set_path(new, path, inc_value(get_path(new, path), v, path, new))
    return new


def copy_val(v):
    if isinstance(v, dict):
        return copy_doc(v)
    if isinstance(v, list):
        return [copy_val(x) for x in v]
    return v


def copy_doc(d):
    out = SON()
    for k, v in d.items():
        out[k] = copy_val(v)
    return out


def upsert_seed(q, seed):
    """The query's equality fields (plain values and $eq, inside $and too)."""
    for k, v in q.items():
        if k == '$and':
            for s in v:
                upsert_seed(s, seed)
        elif k.startswith('$'):
            continue
        elif is_op_doc(v):
            if '$eq' in v:
                set_path(seed, k, copy_val(v['$eq']))
        else:
            set_path(seed, k, copy_val(v))


def id_first(doc):
    if '_id' not in doc:
        out = SON([('_id', ObjectId())])
    else:
        out = SON([('_id', doc['_id'])])
    for k, v in doc.items():
        if k != '_id':
            out[k] = v
    return out


# -- storage ----------------------------------------------------------------------------

class Index:
    def __init__(self, name, key, unique=False, sparse=False, ttl=None, extra=None):
        self.name, self.key, self.unique, self.sparse, self.ttl = name, key, unique, sparse, ttl
        self.extra = extra or {}

    def spec(self):
        s = SON([('v', 2), ('key', self.key), ('name', self.name)])
        if self.unique and self.name != '_id_':  # the _id index is listed without it
            s['unique'] = True
        if self.sparse:
            s['sparse'] = True
        if self.ttl is not None:
            s['expireAfterSeconds'] = self.ttl
        return s

    def options(self):
        return (bool(self.unique), bool(self.sparse), self.ttl)

    def entry(self, doc):
        """(key tuple, key values) of doc in this index, or None if sparse skips it."""
        vals = [get_path(doc, f) for f in self.key]
        if self.sparse and all(v is MISSING for v in vals):
            return None
        vals = [None if v is MISSING else v for v in vals]
        return tuple(canon(v) for v in vals), vals


class Collection:
    """Documents by canon(_id) in insertion order (the "natural order" finds return), and for
    each index a map from its key to the documents holding it, so duplicate checks and
    equality lookups on an index's fields do not scan the collection."""

    def __init__(self, db, name):
        self.db, self.name = db, name
        self.docs = {}  # canon(_id) -> document
        self.order = {}  # canon(_id) -> insertion number (natural order)
        self.next_order = 0
        self.indexes = [Index('_id_', SON([('_id', 1)]), unique=True)]
        self.ikeys = {'_id_': {}}  # index name -> {index key: {canon(_id)}}
        self.ifirst = {'_id_': {}}  # index name -> {its first field's value: {canon(_id)}}

    def ns(self):
        return '%s.%s' % (self.db, self.name)

    def put(self, k, doc):
        """Stores doc under k (replacing the document there, keeping its place); the caller
        checked dup_error first. An array in an indexed field raises before anything changes."""
        entries = [(ix, ix.entry(doc)) for ix in self.indexes]
        self.remove(k)
        self.docs[k] = doc
        if k not in self.order:
            self.order[k] = self.next_order
            self.next_order += 1
        for ix, e in entries:
            if e is not None:
                self.ikeys[ix.name].setdefault(e[0], set()).add(k)
                self.ifirst[ix.name].setdefault(e[0][0], set()).add(k)

    def remove(self, k):
        """Takes the document at k out of the index maps (not out of docs)."""
        old = self.docs.get(k)
        if old is None:
            return
        for ix in self.indexes:
            e = ix.entry(old)
            if e is not None:
                for m, key in ((self.ikeys[ix.name], e[0]), (self.ifirst[ix.name], e[0][0])):
                    held = m.get(key)
                    if held is not None:
                        held.discard(k)
                        if not held:
                            del m[key]

    def delete(self, k):
        self.remove(k)
        del self.docs[k]
        del self.order[k]

    def add_index(self, ix):
        """Adds ix; for a unique one, CmdError(11000) if the documents already break it."""
        keys, first = {}, {}
        for k, d in self.docs.items():
            e = ix.entry(d)
            if e is None:
                continue
            if ix.unique and e[0] in keys:
                raise self.dup(ix, e[1])
            keys.setdefault(e[0], set()).add(k)
            first.setdefault(e[0][0], set()).add(k)
        self.ikeys[ix.name], self.ifirst[ix.name] = keys, first
        self.indexes.append(ix)

    def lookup(self, q):
        """The (key, document) pairs that may match q, in natural order: through the first
        non-sparse index whose every field (else whose first field) q names with a plain or $eq
        equality, else all of them."""
        eqs = {}
        for f, v in q.items():
            if f.startswith('$'):
                continue
            if is_op_doc(v):
                if set(v) == {'$eq'} and not isinstance(v['$eq'], (dict, list)):
                    eqs[f] = v['$eq']
            elif not isinstance(v, (dict, list)):
                eqs[f] = v
        ks = None
        for ix in self.indexes:
            if not ix.sparse and all(f in eqs for f in ix.key):
                ks = self.ikeys[ix.name].get(tuple(canon(eqs[f]) for f in ix.key), ())
                break
        else:
            for ix in self.indexes:
                first = next(iter(ix.key))
                if not ix.sparse and first in eqs:
                    ks = self.ifirst[ix.name].get(canon(eqs[first]), ())
                    break
        if ks is None:
            return list(self.docs.items())
        return [(k, self.docs[k]) for k in sorted(ks, key=self.order.get)]

    def dup(self, ix, values):
        kv = SON(zip(ix.key.keys(), values))
        msg = 'E11000 duplicate key error collection: %s index: %s dup key: %s' % (
            self.ns(), ix.name, fmt(kv))
        return CmdError(11000, msg, keyPattern=ix.key, keyValue=kv)

    def dup_error(self, doc, ignore_key=None):
        """The first unique index doc would violate (not counting the document at
        ignore_key), as CmdError(11000), or None."""
        for ix in self.indexes:
            if not ix.unique:
                continue
            mine = ix.entry(doc)
            if mine is None:
                continue
            if self.ikeys[ix.name].get(mine[0], set()) - {ignore_key}:
                return self.dup(ix, mine[1])
        return None


class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.dbs = {}  # db -> {coll name -> Collection}
        self.cursors = {}  # id -> {ns, docs, pos, remaining(limit)}
        self.next_cursor = 1000
        self.fail = None  # {'mode': ..., 'times': n, 'data': {...}}
        self.fail_count = 0
        self.next_conn = 1

    def coll(self, db, name, create=False):
        c = self.dbs.get(db, {}).get(name)
        if c is None and create:
            c = self.dbs.setdefault(db, {})[name] = Collection(db, name)
        return c


# -- commands ---------------------------------------------------------------------------

GENERIC = {'$db', 'lsid', '$clusterTime', '$readPreference', 'comment', 'apiVersion',
           'apiStrict', 'apiDeprecationErrors', '$audit', '$client'}
TXN_FIELDS = {'txnNumber', 'startTransaction', 'autocommit', 'stmtId', 'stmtIds'}
WC = {'writeConcern'}
RC = {'readConcern'}
MT = {'maxTimeMS'}

# command -> (fields besides its own name and the generic ones, known-but-not-emulated fields)
FIELDS = {
    'hello': ({'helloOk', 'client', 'compression', 'saslSupportedMechs', 'topologyVersion',
               'maxAwaitTimeMS', 'loadBalanced', 'speculativeAuthenticate'}, set()),
    'ping': (set(), set()),
    'buildInfo': (set(), set()),
    'endSessions': (set(), set()),
    'saslStart': ({'mechanism', 'payload', 'autoAuthorize', 'options'}, set()),
    'authenticate': ({'mechanism', 'user', 'pwd', 'key', 'nonce'}, set()),
    'insert': ({'documents', 'ordered', 'bypassDocumentValidation'} | WC | MT, {'let'}),
    'update': ({'updates', 'ordered', 'bypassDocumentValidation'} | WC | MT, {'let'}),
    'delete': ({'deletes', 'ordered'} | WC | MT, {'let'}),
    'find': ({'filter', 'sort', 'projection', 'skip', 'limit', 'batchSize', 'singleBatch',
              'noCursorTimeout', 'allowPartialResults', 'allowDiskUse'} | RC | MT,
             {'hint', 'collation', 'min', 'max', 'returnKey', 'showRecordId', 'tailable',
              'awaitData', 'oplogReplay', 'let', 'readOnce', 'ntoreturn'}),
    'getMore': ({'collection', 'batchSize'} | MT, {'term', 'lastKnownCommittedOpTime'}),
    'killCursors': ({'cursors'}, set()),
    'findAndModify': ({'query', 'sort', 'remove', 'update', 'new', 'fields', 'upsert',
                       'bypassDocumentValidation'} | WC | MT,
                      {'collation', 'arrayFilters', 'hint', 'let'}),
    'count': ({'query', 'limit', 'skip'} | RC | MT, {'hint', 'collation', 'fields'}),
    'createIndexes': ({'indexes'} | WC | MT, {'commitQuorum'}),
    'listIndexes': ({'cursor'}, set()),
    'listCollections': ({'filter', 'nameOnly', 'authorizedCollections', 'cursor'} | MT, set()),
    'drop': (WC, set()),
    'dropDatabase': (WC, set()),
    'configureFailPoint': ({'mode', 'data'}, set()),
}
ALIASES = {'isMaster': 'hello', 'ismaster': 'hello', 'buildinfo': 'buildInfo',
           'findandmodify': 'findAndModify'}
WRITE_CMDS = {'insert', 'update', 'delete', 'findAndModify', 'createIndexes', 'drop',
              'dropDatabase'}
UPDATE_STMT = {'q', 'u', 'upsert', 'multi'}
UPDATE_STMT_NE = {'collation', 'arrayFilters', 'hint', 'c', 'upsertSupplied', 'sampleId'}
DELETE_STMT = {'q', 'limit'}
DELETE_STMT_NE = {'collation', 'hint', 'sampleId'}
INDEX_SPEC = {'key', 'name', 'unique', 'sparse', 'expireAfterSeconds', 'background', 'v', 'ns'}
INDEX_SPEC_NE = {'partialFilterExpression', 'collation', 'hidden', 'weights',
                 'default_language', 'language_override', 'textIndexVersion',
                 '2dsphereIndexVersion', 'bits', 'min', 'max', 'bucketSize', 'storageEngine',
                 'wildcardProjection', 'prepareUnique', 'clustered', 'dropDups'}


def unknown_field(cmd, field):
    return CmdError(40415, "BSON field '%s.%s' is an unknown field." % (cmd, field))


def check_nonneg(name, v):
    if v is None:
        return 0
    if isinstance(v, bool) or not is_number(v):
        raise wrong_type(name)
    if num(v) is None or num(v) < 0:
        raise CmdError(51024, "BSON field '%s' value must be >= 0, actual value '%s'" % (name, fmt(v)))
    return int(num(v))


class Server:
    def __init__(self, args):
        self.args = args
        self.st = State()
        self.log = open(args.log, 'a', buffering=1) if args.log else None
        self.log_lock = threading.Lock()
        self.process_id = ObjectId()
        self.stopping = threading.Event()

    def record(self, entry):
        if self.log:
            with self.log_lock:
                self.log.write(json.dumps(entry) + '\n')

    # The command dispatcher: returns the reply document, raises CloseConnection.
    def run(self, body, conn, op='OP_MSG', sequences=()):
        name = next(iter(body)) if body else ''
        db = body.get('$db')
        canonical = ALIASES.get(name, name)
        coll = body.get(name) if isinstance(body.get(name), str) else None
        reply, entry = None, {'event': 'command', 'command': name, 'db': db, 'collection': coll,
                              'body': jsonsafe(body), 'connection': conn.id, 'op': op}
        if sequences:
            entry['sequences'] = list(sequences)
        try:
            with self.st.lock:
                reply = self.dispatch(name, canonical, db, body, conn)
        except CmdError as e:
            reply = e.reply()
        except CloseConnection:
            entry.update(ok=None, closed=True)
            self.record(entry)
            raise
        entry.update(ok=reply.get('ok'), code=reply.get('code'))
        if 'writeErrors' in reply:
            entry['writeErrors'] = [w['code'] for w in reply['writeErrors']]
        self.record(entry)
        return reply

    def dispatch(self, name, canonical, db, body, conn):
        if canonical not in FIELDS:
            raise CmdError(59, "no such command: '%s'" % name)
        if not isinstance(db, str):
            raise emulator('a command without $db')
        check_db_name(db)
        own, not_emulated = FIELDS[canonical]
        for f in list(body.keys())[1:]:
            if f in TXN_FIELDS:
                raise CmdError(20, 'Transaction numbers are only allowed on a replica set member '
                               'or mongos')
            if f in GENERIC or f in own:
                continue
            if f in not_emulated:
                raise emulator("the field '%s' of %s" % (f, name))
            if f == 'writeConcern':
                raise CmdError(72, 'Command does not support writeConcern')
            if f in ('readConcern', 'maxTimeMS'):
                raise emulator("'%s' on %s" % (f, name))
            raise unknown_field(name, f)
        if '$readPreference' in body:
            mode = body['$readPreference'].get('mode') if isinstance(body['$readPreference'], dict) else None
            if mode not in ('primary', 'primaryPreferred', 'secondaryPreferred', 'nearest'):
                raise emulator('the read preference %r' % mode)
        if 'writeConcern' in body:
            self.check_write_concern(body['writeConcern'])
        if 'readConcern' in body:
            rc = body['readConcern']
            if not isinstance(rc, dict) or set(rc) - {'level'} or \
                    rc.get('level', 'local') not in ('local', 'available', 'majority'):
                raise emulator('the read concern %s' % fmt(rc))
        self.fail_before(canonical, name, conn)
        reply = getattr(self, 'cmd_' + canonical)(name, db, body, conn)
        self.fail_after(canonical, name, conn, reply)
        return reply

    def check_write_concern(self, wc):
        if not isinstance(wc, dict):
            raise wrong_type('writeConcern')
        for k in wc:
            if k not in ('w', 'j', 'wtimeout', 'fsync', 'provenance'):
                raise emulator("the writeConcern field '%s'" % k)
        for k in ('j', 'fsync'):
            if k in wc:
                want_bool(wc, k, False)
        if 'wtimeout' in wc and (isinstance(wc['wtimeout'], bool) or not is_number(wc['wtimeout'])):
            raise wrong_type('wtimeout')
        w = wc.get('w', 1)
        if isinstance(w, str):
            if w != 'majority':
                raise CmdError(2, "cannot use non-majority 'w' mode %s when a host is not a member "
                               "of a replica set" % w)
        elif isinstance(w, bool) or not is_number(w) or num(w) < 0:
            raise emulator('the write concern w: %s' % fmt(w))
        elif num(w) > 1:
            raise CmdError(2, "cannot use 'w' > 1 when a host is not replicated")

    # -- failCommand (src/mongo/db/commands.cpp, evaluateFailCommandFailPoint) --
    def fail_active(self, canonical, name, conn, need):
        fp = self.st.fail
        if fp is None or canonical == 'configureFailPoint':
            return None
        data = fp['data']
        if 'appName' in data and data['appName'] != conn.app_name:
            return None
        names = data.get('failCommands', [])
        if name not in names and canonical not in names and \
                not any(ALIASES.get(n) == canonical for n in names):
            return None
        if not need(data):
            return None
        if fp['times'] is not None:
            fp['times'] -= 1
            if fp['times'] <= 0:
                self.st.fail = None
        self.st.fail_count += 1
        return data

    def fail_before(self, canonical, name, conn):
        data = self.fail_active(canonical, name, conn,
                                lambda d: d.get('closeConnection') or 'errorCode' in d)
        if data is None:
            return
        if data.get('closeConnection'):
            raise CloseConnection()
        extra = {}
        if 'errorLabels' in data:
            extra['errorLabels'] = data['errorLabels']
        raise CmdError(int(data['errorCode']), "Failing command via 'failCommand' failpoint", **extra)

    def fail_after(self, canonical, name, conn, reply):
        if canonical not in WRITE_CMDS:
            return
        data = self.fail_active(canonical, name, conn, lambda d: 'writeConcernError' in d)
        if data is not None:
            reply['writeConcernError'] = data['writeConcernError']
            if 'errorLabels' in data:
                reply['errorLabels'] = data['errorLabels']

    def cmd_configureFailPoint(self, name, db, body, conn):
        if db != 'admin':
            raise CmdError(13, 'configureFailPoint may only be run against the admin database.')
        if body[name] != 'failCommand':
            raise emulator("the fail point '%s' (only failCommand)" % body[name])
        mode, data = body.get('mode'), body.get('data', {})
        count = self.st.fail_count
        if mode == 'off':
            self.st.fail = None
        elif mode == 'alwaysOn':
            self.st.fail = {'times': None, 'data': data}
        elif isinstance(mode, dict) and set(mode) == {'times'} and is_number(mode['times']):
            n = int(num(mode['times']))
            self.st.fail = {'times': n, 'data': data} if n > 0 else None
        else:
            raise emulator('the fail point mode %s' % fmt(mode))
        for k in data:
            if k not in ('failCommands', 'errorCode', 'closeConnection', 'writeConcernError',
                         'errorLabels', 'appName'):
                raise emulator("the failCommand data field '%s'" % k)
        self.st.fail_count = 0 if mode != 'off' else self.st.fail_count
        return SON([('count', count), ('ok', 1.0)])

    # -- handshake and small commands --
    def cmd_hello(self, name, db, body, conn):
        client = body.get('client')
        if isinstance(client, dict) and isinstance(client.get('application'), dict):
            conn.app_name = client['application'].get('name')
        r = SON()
        if body.get('helloOk'):
            r['helloOk'] = True
        r['isWritablePrimary' if name == 'hello' else 'ismaster'] = True
        r['topologyVersion'] = SON([('processId', self.process_id), ('counter', Int64(0))])
        r['maxBsonObjectSize'] = MAX_BSON
        r['maxMessageSizeBytes'] = 48000000
        r['maxWriteBatchSize'] = 100000
        r['localTime'] = datetime.datetime.now(datetime.timezone.utc)
        r['logicalSessionTimeoutMinutes'] = 30
        r['connectionId'] = conn.id
        r['minWireVersion'] = 0
        r['maxWireVersion'] = 17
        r['readOnly'] = False
        r['ok'] = 1.0
        return r

    def cmd_saslStart(self, name, db, body, conn):
        raise CmdError(18, 'Authentication failed.')

    cmd_authenticate = cmd_saslStart

    def cmd_ping(self, name, db, body, conn):
        return SON([('ok', 1.0)])

    def cmd_buildInfo(self, name, db, body, conn):
        return SON([('version', '6.0.12'), ('versionArray', [6, 0, 12, 0]), ('bits', 64),
                    ('maxBsonObjectSize', MAX_BSON), ('ok', 1.0)])

    def cmd_endSessions(self, name, db, body, conn):
        if not isinstance(body[name], list):
            raise wrong_type('endSessions')
        return SON([('ok', 1.0)])

    def coll_name(self, name, body):
        c = body[name]
        if not isinstance(c, str) or not c:
            raise wrong_type(name)
        return c

    # -- writes --
    def cmd_insert(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        docs = body.get('documents')
        if not isinstance(docs, list):
            raise CmdError(40414, "BSON field 'insert.documents' is missing but a required field")
        ordered = idl_bool(body, name, 'ordered', True)
        n, errors = 0, []
        for i, d in enumerate(docs):
            try:
                if not isinstance(d, dict):
                    raise wrong_type('documents')
                check_doc_names(d, 'an inserted document')
                d = id_first(copy_doc(d))
                check_size(d, *TOO_LARGE_INSERT)
                self.insert_one(db, cname, d)
                n += 1
            except CmdError as e:
                if e.code == 238:
                    raise
                errors.append(self.write_error(i, e))
                if ordered:
                    break
        return self.write_reply(n, errors)

    def insert_one(self, db, cname, d):
        if isinstance(d['_id'], (list, Regex)):
            raise emulator('an array or regex _id')
        c = self.st.coll(db, cname, create=True)
        for ix in c.indexes:
            for f in ix.key:
                get_path(d, f)  # an array in an indexed field is not emulated
        err = c.dup_error(d)
        if err:
            raise err
        c.put(canon(d['_id']), d)

    @staticmethod
    def write_error(i, e):
        w = SON([('index', i), ('code', e.code)])
        w.update(e.extra)
        w['errmsg'] = e.msg
        return w

    @staticmethod
    def write_reply(n, errors, **more):
        r = SON([('n', n)])
        r.update(more)
        if errors:
            r['writeErrors'] = errors
        r['ok'] = 1.0
        return r

    def cmd_update(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        stmts = body.get('updates')
        if not isinstance(stmts, list):
            raise CmdError(40414, "BSON field 'update.updates' is missing but a required field")
        ordered = idl_bool(body, name, 'ordered', True)
        n = nmod = 0
        upserted, errors = [], []
        # the IDL parses every statement before any runs: its faults fail the whole command
        for s in stmts:
            if not isinstance(s, dict):
                raise wrong_type('updates')
            for f in s:
                if f in UPDATE_STMT_NE:
                    raise emulator("the field '%s' of an update statement" % f)
                if f not in UPDATE_STMT:
                    raise unknown_field('update.updates', f)
            if 'q' not in s or 'u' not in s:
                raise CmdError(40414, "BSON field 'update.updates.%s' is missing but a required "
                               "field" % ('q' if 'q' not in s else 'u'))
            idl_bool(s, 'update.updates', 'upsert', False)
            idl_bool(s, 'update.updates', 'multi', False)
        for i, s in enumerate(stmts):
            try:
                validate_query(s['q'])
                kind = validate_update(s['u'])
                if kind == 'replace' and s.get('multi') is True:
                    raise CmdError(9, 'multi update is not supported for replacement-style update')
                m, mod, up = self.update_docs(db, cname, s['q'], s['u'], kind,
                                              s.get('multi') is True, s.get('upsert') is True)
                n += m
                nmod += mod
                if up is not None:
                    upserted.append(SON([('index', i), ('_id', up['_id'])]))
                    n += 1
            except CmdError as e:
                if e.code == 238:
                    raise
                errors.append(self.write_error(i, e))
                if ordered:
                    break
        more = SON([('nModified', nmod)])
        if upserted:
            more = SON([('upserted', upserted), ('nModified', nmod)])
        return self.write_reply(n, errors, **more)

    def matching(self, c, q, sort=None):
        if c is None:
            return []
        docs = [(k, d) for k, d in c.lookup(q) if matches(d, q)]
        if sort:
            order = sort_docs([d for _, d in docs], sort)
            ids = {id(d): k for k, d in docs}
            docs = [(ids[id(d)], d) for d in order]
        return docs

    def update_docs(self, db, cname, q, u, kind, multi, upsert, sort=None):
        """(matched, modified, upserted document or None); raises CmdError for the first
        failure (documents updated before it stay updated, as on the server)."""
        c = self.st.coll(db, cname)
        hits = self.matching(c, q, sort)
        if not multi:
            hits = hits[:1]
        if hits:
            mod = 0
            for k, d in hits:
                new = self.updated(d, u, kind)
                if bson.encode(new) == bson.encode(d):
                    continue
                check_size(new, *TOO_LARGE_UPDATE)
                err = c.dup_error(new, ignore_key=k)
                if err:
                    raise err
                c.put(k, new)
                mod += 1
            return len(hits), mod, None
        if not upsert:
            return 0, 0, None
        if kind == 'replace':
            new = copy_doc(u)
            seed = SON()
            upsert_seed(q, seed)
            if '_id' in seed:
                # upsert_stage.cpp _produceNewDocumentForInsert: "The _id field is always
                # immutable to user requests": the query's _id seeds the document, and a
                # replacement giving another _id fails as a replacement of it would (code 66)
                if '_id' in new and not eq(seed['_id'], new['_id']):
                    raise CmdError(66, "After applying the update, the (immutable) field '_id' "
                                   "was found to have been altered to _id: %s" % fmt(new['_id']))
                new['_id'] = seed['_id']
        else:
            seed = SON()
            upsert_seed(q, seed)
            new = apply_ops(seed, u, inserting=True)
        new = id_first(new)
        check_size(new, *TOO_LARGE_UPSERT)
        self.insert_one(db, cname, new)
        return 0, 0, new

    @staticmethod
    def updated(d, u, kind):
        if kind == 'replace':
            if '_id' in u and not eq(d['_id'], u['_id']):
                raise CmdError(66, "After applying the update, the (immutable) field '_id' was "
                               "found to have been altered to _id: %s" % fmt(u['_id']))
            new = SON([('_id', d['_id'])])
            for k, v in u.items():
                if k != '_id':
                    new[k] = copy_val(v)
            return new
        return apply_ops(d, u, inserting=False)

    def cmd_delete(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        stmts = body.get('deletes')
        if not isinstance(stmts, list):
            raise CmdError(40414, "BSON field 'delete.deletes' is missing but a required field")
        ordered = idl_bool(body, name, 'ordered', True)
        n, errors = 0, []
        # the IDL parses every statement first (limit by readMultiDeleteProperty): its faults
        # fail the whole command
        for s in stmts:
            if not isinstance(s, dict):
                raise wrong_type('deletes')
            for f in s:
                if f in DELETE_STMT_NE:
                    raise emulator("the field '%s' of a delete statement" % f)
                if f not in DELETE_STMT:
                    raise unknown_field('delete.deletes', f)
            for f in ('q', 'limit'):
                if f not in s:
                    raise CmdError(40414, "BSON field 'delete.deletes.%s' is missing but a "
                                   "required field" % f)
            if not is_number(s['limit']) or isinstance(s['limit'], bool):
                raise emulator('a delete limit that is not a number')
            lim = float(num(s['limit']) or 0)
            if lim not in (0, 1):
                raise CmdError(9, 'The limit field in delete objects must be 0 or 1. Got %g' % lim)
        for i, s in enumerate(stmts):
            lim = float(num(s['limit']) or 0)
            try:
                validate_query(s['q'])
                c = self.st.coll(db, cname)
                hits = self.matching(c, s['q'])
                if lim == 1:
                    hits = hits[:1]
                for k, _ in hits:
                    c.delete(k)
                n += len(hits)
            except CmdError as e:
                if e.code == 238:
                    raise
                errors.append(self.write_error(i, e))
                if ordered:
                    break
        return self.write_reply(n, errors)

    def cmd_findAndModify(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        q, sort, fields = read_spec(body, 'query', 'fields')
        remove, u = want_bool(body, 'remove', False), body.get('update')
        want_bool(body, 'new', False)
        want_bool(body, 'upsert', False)
        if remove and u is not None:
            raise emulator('findAndModify with both remove and update')
        if not remove and u is None:
            raise CmdError(9, 'Either an update or remove=true must be specified')
        if remove and (body.get('new') or body.get('upsert')):
            raise emulator('findAndModify remove with new or upsert')
        c = self.st.coll(db, cname)
        hits = self.matching(c, q, sort)[:1]
        leo = SON()
        value = None
        if remove:
            if hits:
                k, d = hits[0]
                c.delete(k)
                value = d
            leo['n'] = len(hits)
        else:
            kind = validate_update(u)
            if hits:
                k, d = hits[0]
                new = self.updated(d, u, kind)
                if bson.encode(new) != bson.encode(d):
                    check_size(new, *TOO_LARGE_UPDATE)
                    err = c.dup_error(new, ignore_key=k)
                    if err:
                        raise err
                    c.put(k, new)
                value = new if body.get('new') else d
                leo['n'] = 1
                leo['updatedExisting'] = True
            elif body.get('upsert'):
                _, _, new = self.update_docs(db, cname, q, u, kind, False, True)
                leo['n'] = 1
                leo['updatedExisting'] = False
                leo['upserted'] = new['_id']
                value = new if body.get('new') else None
            else:
                leo['n'] = 0
                leo['updatedExisting'] = False
        if value is not None and fields:
            value = project(value, fields)
        return SON([('lastErrorObject', leo), ('value', value), ('ok', 1.0)])

    # -- reads --
    def cmd_find(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        q, sort, proj = read_spec(body, 'filter', 'projection')
        skip = check_nonneg('skip', body.get('skip'))
        limit = check_nonneg('limit', body.get('limit'))
        batch = check_nonneg('batchSize', body.get('batchSize')) if 'batchSize' in body else None
        single = want_bool(body, 'singleBatch', False)
        for f in ('noCursorTimeout', 'allowPartialResults', 'allowDiskUse'):
            want_bool(body, f, False)
        docs = [d for _, d in self.matching(self.st.coll(db, cname), q, sort)][skip:]
        if limit:
            docs = docs[:limit]
        docs = [project(copy_doc(d), proj) for d in docs]
        first = 101 if batch is None else batch
        if single and batch is None and limit:
            first = limit
        return self.cursor_reply(db, cname, docs, first, single, 'firstBatch')

    def cursor_reply(self, db, cname, docs, first, single, field):
        """A batch of at most `first` documents (None: no count limit, as a getMore without
        batchSize), each added only if it still fits in 16 MiB (FindCommon::haveSpaceForNext:
        the first document always does). batchSize 0 (M/command/find: "a batchSize of 0
        establishes a cursor without returning documents") answers an empty first batch and
        an open cursor, even when nothing matches (the plan has not run yet)."""
        out, size = [], 0
        for d in docs:
            if first is not None and len(out) >= first:
                break
            n = len(bson.encode(d))
            if out and size + n > MAX_BSON:
                break
            out.append(d)
            size += n
        rest = docs[len(out):]
        cid = 0
        if (rest or first == 0) and not single:
            cid = self.st.next_cursor
            self.st.next_cursor += 1
            self.st.cursors[cid] = {'ns': '%s.%s' % (db, cname), 'docs': rest}
        return SON([('cursor', SON([(field, out), ('id', Int64(cid)),
                                    ('ns', '%s.%s' % (db, cname))])), ('ok', 1.0)])

    def cmd_getMore(self, name, db, body, conn):
        cid = body[name]
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise wrong_type('getMore')
        cname = body.get('collection')
        if not isinstance(cname, str):
            raise CmdError(40414, "BSON field 'getMore.collection' is missing but a required field")
        cur = self.st.cursors.get(int(cid))
        if cur is None:
            raise CmdError(43, 'cursor id %d not found' % cid)
        if cur['ns'] != '%s.%s' % (db, cname):
            raise emulator('a getMore naming another collection than its cursor')
        batch = check_nonneg('batchSize', body.get('batchSize')) or None if 'batchSize' in body else None
        del self.st.cursors[int(cid)]
        r = self.cursor_reply(db, cname, cur['docs'], batch, False, 'nextBatch')
        if r['cursor']['id']:  # the same id continues
            newid = int(r['cursor']['id'])
            self.st.cursors[int(cid)] = self.st.cursors.pop(newid)
            r['cursor']['id'] = Int64(cid)
        return r

    def cmd_killCursors(self, name, db, body, conn):
        ids = body.get('cursors')
        if not isinstance(ids, list):
            raise CmdError(40414, "BSON field 'killCursors.cursors' is missing but a required field")
        killed, missing = [], []
        for cid in ids:
            if self.st.cursors.pop(int(cid), None) is not None:
                killed.append(Int64(cid))
            else:
                missing.append(Int64(cid))
        return SON([('cursorsKilled', killed), ('cursorsNotFound', missing), ('cursorsAlive', []),
                    ('cursorsUnknown', []), ('ok', 1.0)])

    def cmd_count(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        q = body.get('query') or {}
        validate_query(q)
        skip = check_nonneg('skip', body.get('skip'))
        limit = body.get('limit', 0)
        if isinstance(limit, bool) or not is_number(limit):
            raise wrong_type('limit')
        limit = abs(int(num(limit)))  # a negative limit counts as its absolute value
        n = max(0, len(self.matching(self.st.coll(db, cname), q)) - skip)
        if limit:
            n = min(n, limit)
        return SON([('n', n), ('ok', 1.0)])

    # -- indexes and collections --
    def cmd_createIndexes(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        specs = body.get('indexes')
        if not isinstance(specs, list) or not specs:
            raise CmdError(40414, "BSON field 'createIndexes.indexes' is missing but a required field")
        created = self.st.coll(db, cname) is None
        c = self.st.coll(db, cname, create=True)
        before = len(c.indexes)
        new = []
        for s in specs:
            for f in s:
                if f in INDEX_SPEC_NE:
                    raise emulator("the index option '%s'" % f)
                if f not in INDEX_SPEC:
                    raise emulator("the index option '%s'" % f)
            key, iname = s.get('key'), s.get('name')
            if not isinstance(key, dict) or not key:
                raise emulator('an index without a key document')
            if not isinstance(iname, str):
                raise emulator('an index without a name')
            for f, d in key.items():
                if isinstance(d, bool) or not is_number(d) or d not in (1, -1):
                    raise emulator("the index type %s on '%s'" % (fmt(d), f))
            # index_key_validate.cpp: unique/sparse a bool or a number, expireAfterSeconds a
            # number (code 67 CannotCreateIndex; texts differ across versions: not reproduced)
            for f in ('unique', 'sparse'):
                if f in s and not isinstance(s[f], bool) and not is_number(s[f]):
                    raise emulator("the index option '%s' of the type %s (refused by the server)"
                                   % (f, TYPE_NAMES.get(type(s[f]), type(s[f]).__name__)))
            if 'expireAfterSeconds' in s and (isinstance(s['expireAfterSeconds'], bool) or
                                              not is_number(s['expireAfterSeconds'])):
                raise emulator("a non-numeric expireAfterSeconds (refused by the server)")
            ix = Index(iname, key, bool(s.get('unique')), bool(s.get('sparse')),
                       s.get('expireAfterSeconds'))
            exists = False
            for old in c.indexes:
                same_key = canon(old.key) == canon(key)
                same_ident = (old.unique, old.sparse) == (ix.unique, ix.sparse)
                if old.name == iname:
                    if not same_key:
                        raise CmdError(86, 'An existing index has the same name as the requested '
                                       'index. Requested index: %s, existing index: %s'
                                       % (fmt(ix.spec()), fmt(old.spec())))
                    if not same_ident:
                        raise emulator('an index whose unique/sparse options change')
                    if old.ttl != ix.ttl:
                        raise CmdError(85, 'An equivalent index already exists with the same name '
                                       'but different options. Requested index: %s, existing '
                                       'index: %s' % (fmt(ix.spec()), fmt(old.spec())))
                    exists = True
                    break
                if same_key:
                    if not same_ident:
                        raise emulator('two indexes on one key pattern with other unique/sparse')
                    if old.ttl != ix.ttl:
                        raise CmdError(85, 'An equivalent index already exists with a different '
                                       'name and options. Requested index: %s, existing index: %s'
                                       % (fmt(ix.spec()), fmt(old.spec())))
                    raise CmdError(85, 'Index already exists with a different name: %s' % old.name)
            if exists:
                continue
            for d in c.docs.values():
                for f in key:
                    get_path(d, f)  # an array in an indexed field is not emulated
            c.add_index(ix)
            new.append(ix)
        r = SON([('numIndexesBefore', before), ('numIndexesAfter', len(c.indexes))])
        if not new:
            r['note'] = 'all indexes already exist'
        r['createdCollectionAutomatically'] = created
        r['ok'] = 1.0
        return r

    def cmd_listIndexes(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        c = self.st.coll(db, cname)
        if c is None:
            raise CmdError(26, 'ns does not exist: %s.%s' % (db, cname))
        cur = body.get('cursor', {})
        if not isinstance(cur, dict):
            raise wrong_type('cursor')
        batch = cur.get('batchSize', 101)
        return self.cursor_reply(db, cname, [ix.spec() for ix in c.indexes],
                                 check_nonneg('batchSize', batch), False, 'firstBatch')

    def cmd_listCollections(self, name, db, body, conn):
        flt = body.get('filter') or {}
        if set(flt) - {'name'} or not isinstance(flt.get('name', ''), str):
            raise emulator('a listCollections filter other than {name: <string>}')
        out = []
        for cname in sorted(self.st.dbs.get(db, {})):
            if 'name' in flt and flt['name'] != cname:
                continue
            if want_bool(body, 'nameOnly', False):
                out.append(SON([('name', cname), ('type', 'collection')]))
            else:
                out.append(SON([('name', cname), ('type', 'collection'), ('options', SON()),
                                ('info', SON([('readOnly', False)])),
                                ('idIndex', SON([('v', 2), ('key', SON([('_id', 1)])), ('name', '_id_')]))]))
        return self.cursor_reply(db, '$cmd.listCollections', out, 101, False, 'firstBatch')

    def cmd_drop(self, name, db, body, conn):
        cname = self.coll_name(name, body)
        c = self.st.dbs.get(db, {}).pop(cname, None)
        if c is None:
            raise CmdError(26, 'ns not found')
        self.drop_cursors('%s.%s' % (db, cname))
        return SON([('nIndexesWas', len(c.indexes)), ('ns', c.ns()), ('ok', 1.0)])

    def cmd_dropDatabase(self, name, db, body, conn):
        if body[name] != 1:
            raise emulator('dropDatabase with a value other than 1')
        self.st.dbs.pop(db, None)
        self.drop_cursors(db + '.')
        return SON([('ok', 1.0)])

    def drop_cursors(self, prefix):
        for cid in [k for k, v in self.st.cursors.items()
                    if v['ns'] == prefix or v['ns'].startswith(prefix if prefix.endswith('.') else '\0')]:
            del self.st.cursors[cid]


# -- connections ------------------------------------------------------------------------

class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        srv = self.server.emu
        with srv.st.lock:
            self.id = srv.st.next_conn
            srv.st.next_conn += 1
        self.app_name = None

    def recv_exact(self, n):
        buf = b''
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self):
        emu = self.server.emu
        try:
            while True:
                head = self.recv_exact(16)
                if head is None:
                    return
                length, req_id, _, opcode = struct.unpack('<iiii', head)
                if length < 16 or length > 48000000:
                    emu.record({'event': 'bad_message', 'length': length, 'connection': self.id})
                    return
                payload = self.recv_exact(length - 16)
                if payload is None:
                    return
                if opcode == OP_MSG:
                    if not self.op_msg(head, payload, req_id):
                        return
                elif opcode == OP_QUERY:
                    self.op_query(payload, req_id)
                elif opcode == OP_GET_MORE:
                    self.reply_legacy(req_id, 2, SON([
                        ('$err', 'OP_GET_MORE is no longer supported. The client driver may require '
                         'an upgrade. For more details see '
                         'https://dochub.mongodb.org/core/legacy-opcode-removal'),
                        ('code', 5739101), ('ok', 0.0)]))
                elif opcode in (OP_INSERT, OP_UPDATE, OP_DELETE, OP_KILL_CURSORS, OP_COMPRESSED):
                    emu.record({'event': 'legacy_opcode', 'opcode': opcode, 'closed': True,
                                'connection': self.id})
                    return
                else:
                    emu.record({'event': 'unknown_opcode', 'opcode': opcode, 'connection': self.id})
        except (ConnectionError, OSError):
            return
        except CloseConnection:
            return

    def op_msg(self, head, payload, req_id):
        emu = self.server.emu
        flags, = struct.unpack_from('<I', payload, 0)
        if flags & 0xFFFC:  # required bits this emulator (like 6.0) does not know
            emu.record({'event': 'bad_op_msg', 'why': 'unknown required flag bits %#x' % flags,
                        'connection': self.id})
            return False
        end = len(payload)
        if flags & 1:
            end -= 4
            want, = struct.unpack_from('<I', payload, end)
            if crc32c(head + payload[:end]) != want:
                emu.record({'event': 'bad_op_msg', 'why': 'checksum mismatch', 'connection': self.id})
                return False
        pos, body, seqs = 4, None, []
        try:
            while pos < end:
                kind = payload[pos]
                pos += 1
                size, = struct.unpack_from('<i', payload, pos)
                if kind == 0:
                    if body is not None:
                        raise ValueError('two kind 0 sections')
                    body = bson.decode(payload[pos:pos + size], codec_options=OPTS)
                    pos += size
                elif kind == 1:
                    sec = payload[pos + 4:pos + size]
                    nul = sec.index(b'\0')
                    ident = sec[:nul].decode()
                    docs = bson.decode_all(sec[nul + 1:], OPTS)
                    seqs.append((ident, docs))
                    pos += size
                else:
                    raise ValueError('section kind %d' % kind)
            if body is None:
                raise ValueError('no kind 0 section')
        except (ValueError, IndexError, struct.error, bson.errors.BSONError) as e:
            emu.record({'event': 'bad_op_msg', 'why': str(e), 'connection': self.id})
            return False
        for ident, docs in seqs:
            if ident in body:
                reply = emulator("a document sequence '%s' also in the body" % ident).reply()
                break
            body[ident] = docs
        else:
            self.await_hello(body)
            reply = emu.run(body, self, 'OP_MSG', [ident for ident, _ in seqs])
        if flags & 2:  # moreToCome: no reply
            return True
        data = bson.encode(reply)
        msg = struct.pack('<iiiiI', 16 + 4 + 1 + len(data), 0, req_id, OP_MSG, 0) + b'\0' + data
        self.request.sendall(msg)
        return True

    def await_hello(self, body):
        """An awaitable hello (the drivers' streaming monitor; M/command/hello,
        "topologyVersion", "maxAwaitTimeMS"): naming this process's topology version, which never
        changes here, it is answered only after maxAwaitTimeMS, without moreToCome (the server
        may ignore exhaustAllowed), so a monitor does not spin. Outside the global lock."""
        name = next(iter(body), '')
        tv = body.get('topologyVersion')
        wait = body.get('maxAwaitTimeMS')
        if ALIASES.get(name, name) == 'hello' and isinstance(tv, dict) and \
                tv.get('processId') == self.server.emu.process_id and is_number(wait):
            self.server.emu.stopping.wait(min(max(float(num(wait)), 0) / 1000, 600))

    def op_query(self, payload, req_id):
        emu = self.server.emu
        pos = 4
        nul = payload.index(b'\0', pos)
        ns = payload[pos:nul].decode()
        pos = nul + 1 + 8
        size, = struct.unpack_from('<i', payload, pos)
        q = bson.decode(payload[pos:pos + size], codec_options=OPTS)
        if not ns.endswith('.$cmd'):
            emu.record({'event': 'op_query', 'ns': ns, 'connection': self.id})
            self.reply_legacy(req_id, 2, SON([
                ('$err', 'OP_QUERY is no longer supported. The client driver may require an '
                 'upgrade. For more details see https://dochub.mongodb.org/core/legacy-opcode-removal'),
                ('code', 5739101), ('ok', 0.0)]))
            return
        if '$query' in q:
            q = q['$query']
        name = next(iter(q)) if q else ''
        if name in ('hello', 'isMaster', 'ismaster'):
            q['$db'] = ns[:-5]
            reply = emu.run(q, self, 'OP_QUERY')
        else:
            emu.record({'event': 'op_query', 'ns': ns, 'command': name, 'connection': self.id})
            reply = CmdError(352, 'Unsupported OP_QUERY command: %s. The client driver may require '
                             'an upgrade. For more details see '
                             'https://dochub.mongodb.org/core/legacy-opcode-removal' % name).reply()
        self.reply_legacy(req_id, 8, reply)

    def reply_legacy(self, req_id, flags, doc):
        data = bson.encode(doc)
        body = struct.pack('<iqii', flags, 0, 0, 1) + data
        self.request.sendall(struct.pack('<iiii', 16 + len(body), 0, req_id, OP_REPLY) + body)


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--log', help='JSON lines, one per command')
    args = ap.parse_args()
    srv = TCPServer((args.host, args.port), Handler)
    srv.emu = Server(args)
    print('listening %d' % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
