#!/usr/bin/python3
"""The checks 97_mongo_emulator.t runs through pymongo 3.11 (Debian's python3-pymongo), a
second real driver, against tests/emulators/mongo.py: one JSON line per check, {"name", "got",
"want"}, which the .t compares. Usage: 97_mongo_emulator_pymongo.py PORT"""
import datetime
import json
import socket
import struct
import sys
import threading

import bson
import pymongo
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.timestamp import Timestamp
from pymongo.errors import AutoReconnect, OperationFailure

sys.path.insert(0, __file__.rsplit('/', 3)[0] + '/tests/emulators')
from mongo import crc32c  # noqa: E402  (the CRC-32C the emulator checks; checked below too)

PORT = int(sys.argv[1])
MAXB = 16777216
client = pymongo.MongoClient('127.0.0.1', PORT, maxPoolSize=1, appname='pycheck',
                             serverSelectionTimeoutMS=5000, socketTimeoutMS=20000, retryWrites=False,
                             retryReads=False)
db = client.check


CHECKS = [0]


def check(name, got, want):
    CHECKS[0] += 1
    print(json.dumps({'name': name, 'got': got, 'want': want}, default=str), flush=True)


def err(fn):
    """(code, errmsg) of the OperationFailure fn raises, or ('no error', result)."""
    try:
        r = fn()
        return ['no error', str(r)]
    except OperationFailure as e:
        return [e.code, e.details.get('errmsg') if e.details else str(e)]


# -- handshake
hello = client.admin.command('hello')
check('hello: a writable standalone of wire version 0-17',
      [hello.get('isWritablePrimary'), hello.get('minWireVersion'), hello.get('maxWireVersion'),
       hello.get('maxBsonObjectSize'), hello.get('maxMessageSizeBytes'),
       hello.get('maxWriteBatchSize'), hello.get('logicalSessionTimeoutMinutes'),
       hello.get('readOnly'), 'setName' in hello, isinstance(hello.get('localTime'), datetime.datetime)],
      [True, 0, 17, 16777216, 48000000, 100000, 30, False, False, True])
im = client.admin.command('isMaster')
check('isMaster answers ismaster: true', [im.get('ismaster'), 'isWritablePrimary' in im], [True, False])
check('buildInfo says 6.0', client.admin.command('buildInfo')['version'][:4], '6.0.')

# -- CRUD and cursors
db.c.insert_many([{'_id': i, 'a': i % 3, 'e': {'f': i}} for i in range(250)])
first = db.command('find', 'c', filter={'a': {'$gte': 0}})
check('find: a first batch of 101 documents by default, and an open cursor',
      [len(first['cursor']['firstBatch']), first['cursor']['id'] != 0, first['cursor']['ns']],
      [101, True, 'check.c'])
cid = first['cursor']['id']
more = db.command('getMore', cid, collection='c', batchSize=100)
rest = db.command('getMore', cid, collection='c')
check('getMore: nextBatch by batchSize, then the rest with id 0',
      [len(more['cursor']['nextBatch']), more['cursor']['id'] == cid,
       len(rest['cursor']['nextBatch']), rest['cursor']['id'],
       rest['cursor']['nextBatch'][-1]['_id']], [100, True, 49, 0, 249])
check('getMore on a spent cursor: 43 CursorNotFound',
      err(lambda: db.command('getMore', cid, collection='c')), [43, 'cursor id %d not found' % cid])
k = db.command('find', 'c', batchSize=2)['cursor']['id']
check('killCursors', db.command('killCursors', 'c', cursors=[k])['cursorsKilled'], [k])
check('a driver cursor over 250 documents sees them all, in order',
      [d['_id'] for d in db.c.find().sort('_id', 1)] == list(range(250)), True)
check('dotted equality, $in, $or, skip, limit, projection',
      list(db.c.find({'e.f': {'$in': [3, 4, 5, 6]}, '$or': [{'a': 0}, {'a': 1}]},
                     {'e': 0}).sort('_id', -1).skip(1).limit(2)),
      [{'_id': 4, 'a': 1}, {'_id': 3, 'a': 0}])
check('find_one with an inclusion projection keeps _id unless excluded',
      [db.c.find_one({'_id': 7}, {'a': 1}), db.c.find_one({'_id': 7}, {'a': 1, '_id': 0})],
      [{'_id': 7, 'a': 1}, {'a': 1}])
check('$ne, $nin, $exists, $nor, $lt on a missing field',
      [db.c.count_documents({'a': {'$ne': 0}}) if False else db.command('count', 'c', query={'a': {'$ne': 0}})['n'],
       db.command('count', 'c', query={'a': {'$nin': [0, 1]}})['n'],
       db.command('count', 'c', query={'zz': {'$exists': False}})['n'],
       db.command('count', 'c', query={'$nor': [{'a': 0}, {'a': 1}]})['n'],
       db.command('count', 'c', query={'zz': {'$lt': 5}})['n']], [166, 83, 250, 83, 0])
check('count with query, skip and limit',
      [db.command('count', 'c', query={'a': 1})['n'], db.command('count', 'c', query={'a': 1}, skip=80)['n'],
       db.command('count', 'c', query={'a': 1}, limit=5)['n']], [83, 3, 5])
r = db.c.update_many({'a': 2}, {'$inc': {'n': 1}})
check('update_many: matched and modified', [r.matched_count, r.modified_count], [83, 83])
r = db.c.update_one({'_id': 2}, {'$set': {'n': 1}})
check('an update that changes nothing: nModified 0', [r.matched_count, r.modified_count], [1, 0])
r = db.c.delete_many({'a': 2})
check('delete_many', r.deleted_count, 83)
check('delete limit 2: code 9 for the whole command (the IDL parses it), nothing deleted',
      [err(lambda: db.command('delete', 'c', deletes=[{'q': {'a': 0}, 'limit': 0}, {'q': {}, 'limit': 2}])),
       db.command('count', 'c')['n']], [[9, 'The limit field in delete objects must be 0 or 1. Got 2'], 167])

# -- upsert
r = db.u.update_one({'k': 'x', 'e.f': 2, '$and': [{'g': {'$eq': 3}}], 'h': {'$gt': 1}},
                    {'$set': {'y': 1}, '$setOnInsert': {'z': 2}}, upsert=True)
doc = db.u.find_one({'_id': r.upserted_id})
check('upsert builds the document from the equality fields, then $set and $setOnInsert',
      [r.matched_count, r.modified_count, isinstance(r.upserted_id, ObjectId), list(doc.keys()),
       doc['e']], [0, 0, True, ['_id', 'k', 'e', 'g', 'y', 'z'], {'f': 2}])
r = db.u.update_one({'k': 'x'}, {'$set': {'y': 5}, '$setOnInsert': {'z': 9}}, upsert=True)
check('the same upsert again updates and skips $setOnInsert',
      [r.matched_count, r.modified_count, r.upserted_id, db.u.find_one({'k': 'x'}, {'_id': 0, 'y': 1, 'z': 1})],
      [1, 1, None, {'y': 5, 'z': 2}])
raw = db.command('update', 'u', updates=[{'q': {'_id': 42}, 'u': {'w': 1}, 'upsert': True}])
check('a replacement upsert takes the query _id; upserted [{index, _id}]',
      [raw['n'], raw['nModified'], raw['upserted'], db.u.find_one({'_id': 42})], [1, 0, [{'index': 0, '_id': 42}], {'_id': 42, 'w': 1}])
check('a replacement that changes _id: 66 ImmutableField',
      err(lambda: db.u.replace_one({'_id': 42}, {'_id': 43, 'w': 2})),
      [66, "After applying the update, the (immutable) field '_id' was found to have been altered to _id: 43"])
check('$set of _id to another value: 66',
      err(lambda: db.u.update_one({'_id': 42}, {'$set': {'_id': 43}})),
      [66, "Performing an update on the path '_id' would modify the immutable field '_id'"])

# -- unique indexes
db.x.create_index('s', unique=True)
db.x.insert_one({'_id': 1, 's': 'a'})
try:
    db.x.insert_one({'_id': 2, 's': 'a'})
    got = 'no error'
except pymongo.errors.DuplicateKeyError as e:
    got = [e.code, e.details['errmsg'], e.details['keyPattern'], e.details['keyValue']]
check('duplicate key on insert: 11000 and the server message', got,
      [11000, 'E11000 duplicate key error collection: check.x index: s_1 dup key: { s: "a" }', {'s': 1}, {'s': 'a'}])
raw = db.command('insert', 'x', documents=[{'_id': 3, 's': 'b'}, {'_id': 4, 's': 'a'}, {'_id': 5, 's': 'c'}])
check('an ordered insert stops at the first error',
      [raw['n'], [(w['index'], w['code']) for w in raw['writeErrors']], db.x.find_one({'_id': 5})], [1, [(1, 11000)], None])
raw = db.command('insert', 'x', documents=[{'_id': 6, 's': 'a'}, {'_id': 7, 's': 'd'}], ordered=False)
check('an unordered insert goes on', [raw['n'], [w['index'] for w in raw['writeErrors']]], [1, [0]])
raw = db.command('insert', 'x', documents=[{'_id': 1}])
check('_id is unique always', raw['writeErrors'][0]['errmsg'],
      'E11000 duplicate key error collection: check.x index: _id_ dup key: { _id: 1 }')
db.x.insert_one({'_id': 8})
check('a missing field counts as null in a unique index',
      err(lambda: db.x.insert_one({'_id': 9})),
      [11000, 'E11000 duplicate key error collection: check.x index: s_1 dup key: { s: null }'])
check('an update into a duplicate: 11000',
      err(lambda: db.x.update_one({'_id': 3}, {'$set': {'s': 'a'}}))[0], 11000)
check('an upsert into a duplicate: 11000',
      err(lambda: db.x.update_one({'_id': 99}, {'$set': {'s': 'b'}}, upsert=True))[0], 11000)
db.sp.create_index([('t', 1), ('v', -1)], unique=True, sparse=True, name='tv')
db.sp.insert_many([{'_id': 1}, {'_id': 2}, {'_id': 3, 't': 1}])
check('a sparse unique index skips documents without its fields; compound key',
      [db.sp.count_documents({}) if False else db.command('count', 'sp')['n'],
       err(lambda: db.sp.insert_one({'t': 1, 'v': None}))[1]],
      [3, 'E11000 duplicate key error collection: check.sp index: tv dup key: { t: 1, v: null }'])
check('the same key under another name: 85',
      err(lambda: db.x.create_index('s', unique=True, name='other')),
      [85, 'Index already exists with a different name: s_1'])
check('the same name with another key: 86',
      err(lambda: db.x.create_index('q', name='s_1')),
      [86, 'An existing index has the same name as the requested index. Requested index: '
       '{ v: 2, key: { q: 1 }, name: "s_1" }, existing index: { v: 2, key: { s: 1 }, name: "s_1", unique: true }'])
db.command('createIndexes', 'ttl2', indexes=[{'key': {'t': 1}, 'name': 't_1', 'expireAfterSeconds': 60}])
check('the same name and key with another expireAfterSeconds: 85',
      err(lambda: db.command('createIndexes', 'ttl2', indexes=[{'key': {'t': 1}, 'name': 't_1', 'expireAfterSeconds': 30}]))[0], 85)
e = err(lambda: db.x.create_index('s', name='s_1'))
check('unique changing on an existing index: emulator error', [e[0], e[1].startswith('emulator:')], [238, True])
check('creating an existing index again is fine',
      db.command('createIndexes', 'x', indexes=[{'key': {'s': 1}, 'name': 's_1', 'unique': True}]).get('note'),
      'all indexes already exist')
check('a unique index over duplicates: 11000',
      err(lambda: db.c.create_index('a', unique=True))[0], 11000)
check('listIndexes', [(i['name'], dict(i['key']), i.get('unique')) for i in db.x.list_indexes()],
      [['_id_', {'_id': 1}, None], ['s_1', {'s': 1}, True]])
db.command('createIndexes', 'ttl', indexes=[{'key': {'t': 1}, 'name': 't_1', 'expireAfterSeconds': 0}])
check('expireAfterSeconds is kept (documents never expire in the emulator)',
      [i.get('expireAfterSeconds') for i in db.ttl.list_indexes()], [None, 0])

# -- findAndModify
db.f.insert_many([{'_id': 1, 'q': 1, 'v': 'a'}, {'_id': 2, 'q': 1, 'v': 'b'}])
old = db.command('findAndModify', 'f', query={'q': 1}, sort={'_id': -1}, update={'$set': {'v': 'B'}})
check('findAndModify returns the old document by default',
      [old['value'], old['lastErrorObject']], [{'_id': 2, 'q': 1, 'v': 'b'}, {'n': 1, 'updatedExisting': True}])
new = db.command('findAndModify', 'f', query={'_id': 1}, update={'$set': {'v': 'A'}}, new=True, fields={'v': 1, '_id': 0})
check('new: true returns the new document, fields projects it', new['value'], {'v': 'A'})
up = db.command('findAndModify', 'f', query={'_id': 3}, update={'$set': {'v': 'c'}}, upsert=True, new=True)
check('findAndModify upsert', [up['value'], up['lastErrorObject']],
      [{'_id': 3, 'v': 'c'}, {'n': 1, 'updatedExisting': False, 'upserted': 3}])
none = db.command('findAndModify', 'f', query={'_id': 4}, update={'$set': {'v': 'd'}})
check('findAndModify without a match', [none['value'], none['lastErrorObject']], [None, {'n': 0, 'updatedExisting': False}])
rm = db.command('findAndModify', 'f', query={'q': 1}, sort={'_id': 1}, remove=True)
check('findAndModify remove', [rm['value'], rm['lastErrorObject'], db.command('count', 'f')['n']],
      [{'_id': 1, 'q': 1, 'v': 'A'}, {'n': 1}, 2])
check('findAndModify with neither update nor remove: 9',
      err(lambda: db.command('findAndModify', 'f', query={})),
      [9, 'Either an update or remove=true must be specified'])

# -- BSON order across types
vals = [MaxKey(), 'a', True, Timestamp(5, 1), datetime.datetime(2020, 1, 1), 'B', Int64(3),
        2.5, Decimal128('2'), 1, None, MinKey(), {'x': 1}, b'\x01', ObjectId('5f0000000000000000000000'), False, {'x': 0}]
db.o.insert_many([{'_id': i, 'v': v} for i, v in enumerate(vals)] + [{'_id': 100}])
order = [d['_id'] for d in db.o.find().sort([('v', 1), ('_id', 1)])]
check('sort follows the BSON comparison order (numbers by value, strings binary, null = missing)',
      order, [11, 10, 100, 9, 8, 7, 6, 5, 1, 16, 12, 13, 14, 15, 2, 4, 3, 0])
order = [d['_id'] for d in db.o.find({'v': {'$gte': 1}}).sort('v', -1)]
check('$gte compares within the number type class only', order, [6, 7, 8, 9])
check('1, 1.0, Int64(1) and Decimal128("1") are equal',
      [db.command('count', 'o', query={'v': v})['n'] for v in (2, 2.0, Int64(2), Decimal128('2.0'))], [1, 1, 1, 1])
check('{v: null} matches null and missing', db.command('count', 'o', query={'v': None})['n'], 2)

# -- rejections
check('an unknown command: 59', err(lambda: db.command('aggregate', 'c', pipeline=[], cursor={})),
      [59, "no such command: 'aggregate'"])
check('an unknown query operator: 2', err(lambda: list(db.c.find({'a': {'$foo': 1}}))),
      [2, 'unknown operator: $foo'])
check('an unknown top-level operator: 2', err(lambda: list(db.c.find({'$foo': 1}))),
      [2, "unknown top level operator: $foo. If you have a field name that starts with a '$' symbol, "
       "consider using $getField or $setField."])
check('an unknown update modifier: 9', err(lambda: db.c.update_one({}, {'$frob': {'a': 1}})),
      [9, 'Unknown modifier: $frob. Expected a valid update modifier or pipeline-style update specified as an array'])
check('an unknown field: 40415', err(lambda: db.command('find', 'c', frob=1)),
      [40415, "BSON field 'find.frob' is an unknown field."])
check('an unknown field of an update statement: 40415',
      err(lambda: db.command('update', 'c', updates=[{'q': {}, 'u': {'$set': {'a': 1}}, 'frob': 1}])),
      [40415, "BSON field 'update.updates.frob' is an unknown field."])
db.arr.insert_one({'_id': 1, 'tags': ['a', 'b']})
e = err(lambda: list(db.arr.find({'tags': 'a'})))
check('a query on an array-valued field: emulator error', [e[0], e[1].startswith('emulator:')], [238, True])
e = err(lambda: list(db.c.find({'s': {'$regex': '^a'}})))
check('$regex: emulator error', [e[0], e[1].startswith('emulator:')], [238, True])
e = err(lambda: db.c.update_one({}, {'$push': {'l': 1}}))
check('$push: emulator error', [e[0], e[1].startswith('emulator:')], [238, True])
check('conflicting update paths: 40', err(lambda: db.c.update_one({}, {'$set': {'a.b': 1}, '$inc': {'a': 1}})),
      [40, "Updating the path 'a' would create a conflict at 'a'"])
check('exclusion in an inclusion projection: 31254',
      err(lambda: list(db.c.find({}, {'a': 1, 'e': 0}))), [31254, 'Cannot do exclusion on field e in inclusion projection'])
check('a negative limit in find: 51024', err(lambda: db.command('find', 'c', limit=-1)),
      [51024, "BSON field 'limit' value must be >= 0, actual value '-1'"])
check('a transaction on a standalone: 20',
      err(lambda: db.command('find', 'c', txnNumber=Int64(1)))[0], 20)
check('configureFailPoint outside admin: 13', err(lambda: db.command('configureFailPoint', 'failCommand', mode='off'))[0], 13)

# -- write concern on a standalone
r = db.get_collection('wc', write_concern=pymongo.WriteConcern(w='majority', j=True, wtimeout=1000)).insert_one({'_id': 1})
check('w: majority on a standalone is acknowledged', r.acknowledged, True)
check('w: 2 on a standalone: 2 BadValue, nothing written',
      [err(lambda: db.command('insert', 'wc', documents=[{'_id': 2}], writeConcern={'w': 2})),
       db.command('count', 'wc')['n']], [[2, "cannot use 'w' > 1 when a host is not replicated"], 1])
check('a tag-set w on a standalone: 2 BadValue',
      err(lambda: db.command('insert', 'wc', documents=[{'_id': 2}], writeConcern={'w': 'dc1'})),
      [2, "cannot use non-majority 'w' mode dc1 when a host is not a member of a replica set"])
db.get_collection('wc', write_concern=pymongo.WriteConcern(w=0)).insert_one({'_id': 3})
check('w: 0 (OP_MSG moreToCome) is applied without an answer', db.wc.find_one({'_id': 3}), {'_id': 3})
check('writeConcern on find: 72', err(lambda: db.command('find', 'c', writeConcern={'w': 1})),
      [72, 'Command does not support writeConcern'])

# -- failCommand
adm = client.admin
r = adm.command('configureFailPoint', 'failCommand', mode={'times': 2},
                data={'failCommands': ['insert'], 'errorCode': 8})
check('configureFailPoint answers ok', r['ok'], 1.0)
got = [err(lambda: db.command('insert', 'fp', documents=[{'_id': i}])) for i in range(3)]
check('{times: 2}: two inserts fail with the code, the third passes',
      [got[0], got[1][0], got[2][0], db.command('count', 'fp')['n']],
      [[8, "Failing command via 'failCommand' failpoint"], 8, 'no error', 1])
adm.command('configureFailPoint', 'failCommand', mode={'times': 1}, data={'failCommands': ['ping'], 'closeConnection': True})
try:
    db.command('ping')
    got = 'no error'
except AutoReconnect:
    got = 'connection closed'
check('closeConnection closes the connection without an answer', got, 'connection closed')
check('the next ping passes', db.command('ping')['ok'], 1.0)
adm.command('configureFailPoint', 'failCommand', mode='alwaysOn',
            data={'failCommands': ['insert'], 'writeConcernError': {'code': 64, 'errmsg': 'waiting for replication timed out'}})
r = db.command('insert', 'fp', documents=[{'_id': 10}])
adm.command('configureFailPoint', 'failCommand', mode='off')
check('writeConcernError is added after the write ran', [r['n'], r['writeConcernError']['code'], db.command('count', 'fp')['n']], [1, 64, 2])
r = db.command('insert', 'fp', documents=[{'_id': 11}])
check('mode off', 'writeConcernError' in r, False)


# -- raw wire: checksums, legacy opcodes
def raw(payload_fn):
    s = socket.create_connection(('127.0.0.1', PORT), timeout=5)
    try:
        s.sendall(payload_fn())
        head = s.recv(16, socket.MSG_WAITALL)
        if len(head) < 16:
            return 'closed'
        n, _, _, op = struct.unpack('<iiii', head)
        rest = s.recv(n - 16, socket.MSG_WAITALL)
        if op == 1:
            return bson.decode(rest[20:])
        return bson.decode(rest[5:])
    finally:
        s.close()


def op_msg(doc, checksum=None, flags=0):
    body = b'\0' + bson.encode(doc)
    if checksum is None:
        return struct.pack('<iiiiI', 16 + 4 + len(body), 7, 0, 2013, flags) + body
    msg = struct.pack('<iiiiI', 16 + 4 + len(body) + 4, 7, 0, 2013, flags | 1) + body
    return msg + struct.pack('<I', checksum(msg))


def op_query(ns, doc):
    b = struct.pack('<i', 0) + ns.encode() + b'\0' + struct.pack('<ii', 0, -1) + bson.encode(doc)
    return struct.pack('<iiii', 16 + len(b), 9, 0, 2004) + b


check('CRC-32C of "123456789" is e3069283', '%08x' % crc32c(b'123456789'), 'e3069283')
check('an OP_MSG with a right checksum is answered',
      raw(lambda: op_msg({'ping': 1, '$db': 'admin'}, checksum=crc32c)).get('ok'), 1.0)
check('an OP_MSG with a wrong checksum closes the connection',
      raw(lambda: op_msg({'ping': 1, '$db': 'admin'}, checksum=lambda m: crc32c(m) ^ 1)), 'closed')
check('document sequences (kind 1) are merged into the command',
      raw(lambda: (lambda body: struct.pack('<iiiiI', 16 + 4 + len(body), 8, 0, 2013, 0) + body)(
          b'\0' + bson.encode({'insert': 'seq', '$db': 'check'}) + b'\x01' +
          (lambda seq: struct.pack('<i', 4 + len(seq)) + seq)(b'documents\0' + bson.encode({'_id': 1}) + bson.encode({'_id': 2})))).get('n'), 2)
check('OP_QUERY hello on admin.$cmd is answered with OP_REPLY',
      raw(lambda: op_query('admin.$cmd', {'hello': 1})).get('isWritablePrimary'), True)
check('OP_QUERY of another command: 352',
      raw(lambda: op_query('admin.$cmd', {'ping': 1})).get('code'), 352)
check('OP_QUERY on a collection: 5739101',
      raw(lambda: op_query('check.c', {})).get('code'), 5739101)
check('OP_INSERT closes the connection',
      raw(lambda: (lambda b: struct.pack('<iiii', 16 + len(b), 10, 0, 2002) + b)(
          struct.pack('<i', 0) + b'check.c\0' + bson.encode({'_id': 'legacy'}))), 'closed')

# -- what a real mongod refuses and the emulator once accepted
check('a replacement upsert naming another _id than the query: 66, nothing inserted',
      [[(w['code'], w['errmsg']) for w in db.command('update', 'rid', updates=[
          {'q': {'_id': 1}, 'u': {'_id': 2, 'w': 1}, 'upsert': True}]).get('writeErrors', [])],
       db.command('count', 'rid')['n']],
      [[(66, "After applying the update, the (immutable) field '_id' was found to have been "
            "altered to _id: 2")], 0])
r = db.command('update', 'rid', updates=[{'q': {'_id': 1}, 'u': {'_id': 1, 'w': 1}, 'upsert': True}])
check('a replacement upsert repeating the query _id is fine', [r['n'], r['upserted']], [1, [{'index': 0, '_id': 1}]])


def emu_err(fn):
    e = err(fn)
    return [e[0], str(e[1]).startswith('emulator:')]


db.ty.insert_one({'_id': 1})
for what, fn, want in [
        ('update upsert', lambda: db.command('update', 'ty', updates=[
            {'q': {'_id': 5}, 'u': {'$set': {'a': 1}}, 'upsert': 'yes'}]),
         "BSON field 'update.updates.upsert' is the wrong type 'string', expected type 'bool'"),
        ('update multi', lambda: db.command('update', 'ty', updates=[
            {'q': {}, 'u': {'$set': {'a': 1}}, 'multi': 1}]),
         "BSON field 'update.updates.multi' is the wrong type 'int', expected type 'bool'"),
        ('insert ordered', lambda: db.command('insert', 'ty', documents=[{'_id': 2}], ordered='no'),
         "BSON field 'insert.ordered' is the wrong type 'string', expected type 'bool'"),
        ('delete ordered', lambda: db.command('delete', 'ty', deletes=[{'q': {}, 'limit': 1}], ordered=0),
         "BSON field 'delete.ordered' is the wrong type 'int', expected type 'bool'")]:
    check('an IDL bool of the wrong BSON type (%s): 14 TypeMismatch' % what, err(fn), [14, want])
r = db.command('update', 'ty', updates=[{'q': {'_id': 1}, 'u': {'$set': {'n': 1}}, 'upsert': None,
                                         'multi': None}], ordered=None)
check('... null reads as absent, as the IDL does', [r['n'], r.get('upserted')], [1, None])
db.ty.replace_one({'_id': 1}, {})
for what, fn in [
        ('findAndModify new', lambda: db.command('findAndModify', 'ty', query={'_id': 1},
                                                 update={'$set': {'a': 1}}, new='yes')),
        ('findAndModify remove', lambda: db.command('findAndModify', 'ty', query={'_id': 1}, remove=1)),
        ('findAndModify upsert', lambda: db.command('findAndModify', 'ty', query={'_id': 7},
                                                    update={'$set': {'a': 1}}, upsert='yes')),
        ('find singleBatch', lambda: db.command('find', 'ty', singleBatch='yes')),
        ('find limit', lambda: db.command('find', 'ty', limit='2')),
        ('count limit', lambda: db.command('count', 'ty', limit=True)),
        ('writeConcern j', lambda: db.command('insert', 'ty', documents=[{'_id': 3}],
                                              writeConcern={'w': 1, 'j': 'yes'})),
        ('writeConcern wtimeout', lambda: db.command('insert', 'ty', documents=[{'_id': 3}],
                                                     writeConcern={'w': 1, 'wtimeout': '5'})),
        ('index unique', lambda: db.command('createIndexes', 'ty', indexes=[
            {'key': {'a': 1}, 'name': 'a_1', 'unique': 'yes'}])),
        ('index sparse', lambda: db.command('createIndexes', 'ty', indexes=[
            {'key': {'a': 1}, 'name': 'a_1', 'sparse': 'yes'}])),
        ('index expireAfterSeconds', lambda: db.command('createIndexes', 'ty', indexes=[
            {'key': {'a': 1}, 'name': 'a_1', 'expireAfterSeconds': '60'}]))]:
    check('a wrong BSON type (%s) is refused, not read by truthiness' % what, emu_err(fn), [238, True])
check('... and nothing was written by them', [list(db.ty.find()), len(list(db.ty.list_indexes()))],
      [[{'_id': 1}], 1])

big = 'x' * MAXB
check('an insert over 16 MiB: write error 2, not stored',
      [db.command('insert', 'big', documents=[{'_id': 1, 's': big}]).get('writeErrors', [{}])[0].get('code'),
       db.command('count', 'big')['n']], [2, 0])
res = db.command('update', 'big', updates=[{'q': {'_id': 1}, 'u': {'$set': {'s': big}}, 'upsert': True}])
check('an upsert over 16 MiB: write error 17420, not stored',
      [[(w['code'], w['errmsg']) for w in res.get('writeErrors', [])], db.command('count', 'big')['n']],
      [[(17420, 'Document to upsert is larger than 16777216')], 0])
half = 'y' * (9 * 1024 * 1024)
db.big.drop()
db.big.insert_many([{'_id': 1, 's': half}, {'_id': 2, 's': half}])
res = db.command('update', 'big', updates=[{'q': {'_id': 1}, 'u': {'$set': {'t': half}}}])
check('an update growing a document over 16 MiB: write error 17419, the document unchanged',
      [[(w['code'], w['errmsg']) for w in res.get('writeErrors', [])], sorted(db.big.find_one({'_id': 1}))],
      [[(17419, 'Resulting document after update is larger than 16777216')], ['_id', 's']])
check('findAndModify growing a document over 16 MiB: 17419',
      err(lambda: db.command('findAndModify', 'big', query={'_id': 1}, update={'$set': {'t': half}}))[0],
      17419)
db.big.drop()
db.big.insert_many([{'_id': 1, 's': half}, {'_id': 2, 's': half}])
b = db.command('find', 'big', sort={'_id': 1})['cursor']
check('a find batch stops before the document that would pass 16 MiB',
      [[d['_id'] for d in b['firstBatch']], b['id'] != 0], [[1], True])
nb = db.command('getMore', b['id'], collection='big')['cursor'] if b['id'] else {'nextBatch': []}
check('... and the getMore gives the next one', [[d['_id'] for d in nb['nextBatch']], nb.get('id')], [[2], 0])
db.big.drop()

z = db.command('find', 'c', batchSize=0)['cursor']
check('find batchSize 0: an empty first batch and an open cursor',
      [z['firstBatch'], z['id'] != 0], [[], True])
zm = db.command('getMore', z['id'], collection='c')['cursor'] if z['id'] else {'nextBatch': []}
check('... whose getMore gives the documents', len(zm['nextBatch']) > 0, True)
z = db.command('listIndexes', 'c', cursor={'batchSize': 0})['cursor']
check('listIndexes batchSize 0: an empty first batch and an open cursor',
      [z['firstBatch'], z['id'] != 0], [[], True])
if z['id']:
    db.command('killCursors', 'c', cursors=[z['id']])

check('a database name of 64 characters: 73 InvalidNamespace',
      err(lambda: client['d' * 64].command('insert', 'x', documents=[{'_id': 1}])),
      [73, "Invalid database name: '%s'" % ('d' * 64)])
for name in ('a.b', 'a b', 'a/b', 'a"b', 'a\\b'):  # pymongo refuses these itself: raw OP_MSG
    r = raw(lambda: op_msg({'insert': 'x', 'documents': [{'_id': 1}], '$db': name}))
    check('the database name %r: 73 InvalidNamespace' % name,
          [r.get('code'), r.get('errmsg')], [73, "Invalid database name: '%s'" % name])
check('a database name of 63 characters is fine',
      client['e' * 63].command('insert', 'x', documents=[{'_id': 1}])['n'], 1)
client.drop_database('e' * 63)

check('$or not an array: 2 "$or must be an array"', err(lambda: list(db.c.find({'$or': {'a': 1}}))),
      [2, '$or must be an array'])
check('$nor empty: 2 "$and/$or/$nor must be a nonempty array"', err(lambda: list(db.c.find({'$nor': []}))),
      [2, '$and/$or/$nor must be a nonempty array'])

# -- many connections at once
many = pymongo.MongoClient('127.0.0.1', PORT, maxPoolSize=16, serverSelectionTimeoutMS=5000,
                           socketTimeoutMS=20000)


def writer(t):
    for i in range(20):
        many.check.par.insert_one({'t': t, 'i': i})


threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(30)
check('8 threads over a pool of connections: every insert counted', db.command('count', 'par')['n'], 160)
client.drop_database('check')
check('dropDatabase', client.check.list_collection_names(), [])
print(json.dumps({'done': True, 'checks': CHECKS[0]}), flush=True)
