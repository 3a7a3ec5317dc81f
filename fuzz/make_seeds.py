#!/usr/bin/env python3
"""Writes the seed corpus of every target into fuzz/corpus/<target>/ from the engine
test corpus (tests/data/query_corpus.json) plus a few hand-written seeds for shapes it
lacks (positional updates, $lookup, $facet, wire envelopes). Re-run after changing the
input layout of a target (see src/targets/*.rs); the output is deterministic."""
import hashlib, json, os, struct, sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "tests", "data", "query_corpus.json")
PER_TARGET = 60  # keep the seeds small: AFL trims and grows them itself


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def doc_lines(docs):
    # The targets read at most 8 documents per line.
    return [compact(docs[i:i + 8]) for i in range(0, min(len(docs), 32), 8)]


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        os.remove(os.path.join(folder, old))
    unique = []
    for seed in seeds:
        if seed not in unique:
            unique.append(seed)
    # Spread the picks over the whole corpus rather than its first entries.
    if len(unique) > PER_TARGET:
        step = len(unique) / PER_TARGET
        unique = [unique[int(i * step)] for i in range(PER_TARGET)]
    for seed in unique:
        data = seed if isinstance(seed, bytes) else seed.encode()
        name = hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(unique)} seeds", file=sys.stderr)


# --- protobuf, just enough for Envelope and the request payloads -------------
def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def field_bytes(number, data):
    data = data.encode() if isinstance(data, str) else data
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_int(number, value):
    return varint(number << 3) + varint(value & 0xFFFFFFFFFFFFFFFF)


def envelope(command, payload=b"", type_name="", seq=0, id="1", rid="", jwt="", priority=0):
    any_ = field_bytes(1, "type.googleapis.com/openiap." + type_name if type_name else "") + field_bytes(2, payload)
    body = field_bytes(1, command) + field_int(2, priority) + field_int(3, seq) + field_bytes(4, id)
    if rid:
        body += field_bytes(5, rid)
    body += field_bytes(6, any_)
    if jwt:
        body += field_bytes(7, jwt)
    return body


def frame(body):
    return struct.pack("<I", len(body)) + body


def main():
    entries = json.load(open(CORPUS))
    filters, updates, projections, pipelines, json_texts = [], [], [], [], []
    for entry in entries:
        docs = entry.get("docs", [])
        for kind, op in entry["op"].items():
            if kind == "find":
                flt = op.get("filter", {})
                filters.append("\n".join([compact(flt)] + doc_lines(docs)))
                if "projection" in op or "sort" in op:
                    projections.append("\n".join(
                        [compact(op.get("projection", {"_id": 0})), compact(flt), compact(op.get("sort", {}))]
                        + doc_lines(docs)))
                json_texts.append(compact(flt))
            elif kind == "update":
                updates.append("\n".join([compact(op["update"]), compact(op.get("filter", {}))] + doc_lines(docs)))
                json_texts.append(compact(op["update"]))
            elif kind == "aggregate":
                pipelines.append("\n".join([compact(op)] + doc_lines(docs)))
                json_texts.append(compact(op))
            elif kind == "distinct":
                filters.append("\n".join([compact(op.get("filter", {}))] + doc_lines(docs)))
        if docs:
            json_texts.append(compact(docs[:4]))

    # Shapes the engine corpus lacks.
    updates += [
        '{"$set":{"arr.$.x":9}}\n{"arr.x":2}',
        '{"$inc":{"c.$[]":1}}\n{}',
        '{"$push":{"c":{"$each":[5,1],"$sort":1,"$slice":-3,"$position":0}}}\n{"_id":1}',
        '{"$pull":{"arr":{"x":{"$gte":2}}}}\n{}',
        '{"$rename":{"a":"z.y"},"$currentDate":{"t":true}}\n{}',
        '{"_id":1,"replaced":true}\n{"_id":1}',
        '{"$setOnInsert":{"x":1},"$set":{"y":2}}\n{"_id":"u1","k":{"$in":[3]}}',
    ]
    projections += [
        '{"arr.$":1}\n{"arr.x":2}\n{}',
        '{"arr":{"$elemMatch":{"x":2}},"_id":0}\n{}\n{"a":-1}',
        '{"c":{"$slice":[1,1]},"d.f.g":1}\n{}\n{"_id":1}',
        '{"sum":{"$add":["$a",1]},"name":1}\n{"_type":"user"}\nname',
        '{"h":"$passwordhash"}\n{}\n',
    ]
    pipelines += [
        '[{"$lookup":{"from":"users","localField":"a","foreignField":"_id","as":"j"}},{"$unwind":"$j"}]',
        '[{"$lookup":{"from":"users","let":{"x":"$a"},"pipeline":[{"$match":{"$expr":{"$eq":["$a","$$x"]}}}],"as":"j"}}]',
        '[{"$facet":{"n":[{"$count":"n"}],"g":[{"$group":{"_id":"$b","s":{"$sum":"$a"}}}]}}]',
        '[{"$unionWith":{"coll":"other","pipeline":[{"$project":{"a":1}}]}}]',
        '[{"$project":{"r":{"$range":[0,10,3]}}},{"$unwind":{"path":"$r","includeArrayIndex":"i"}}]',
        '[{"$sortByCount":"$b"},{"$limit":2}]',
        '[{"$replaceRoot":{"newRoot":{"$mergeObjects":["$d",{"k":"$a"}]}}}]',
    ]
    json_texts += [
        '{"d":"2024-05-01T10:00:00.123Z","r":"__REGEXP /^ab+c/ig","ms":"/Date(1000)/","id":{"$oid":"5a1702fa245d9013697656fb"}}',
        '{"dt":{"$date":{"$numberLong":"1000"}},"u":18446744073709551615,"n":-9223372036854775808,"f":1.5e300}',
        '[{"a":"\\u0000\\ud83d\\ude00"},{"$where":"1"}]',
        '{"_id":{"$ne":"59f1f6e6f0a22200126638d8"}}',
        'name',
    ]

    write("filter_match", filters)
    write("update_apply", updates)
    write("projection", projections)
    write("aggregate", pipelines)
    write("json_bson", json_texts)

    query = field_bytes(1, '{"_type":"user"}') + field_bytes(2, "users") + field_bytes(3, '{"name":1}') + field_int(4, 10)
    signin = field_bytes(1, "user") + field_bytes(2, "pass") + field_bytes(3, "") + field_int(4, 1)
    insert = field_bytes(1, "entities") + field_bytes(2, '{"name":"x","_type":"test"}')
    envelopes = [
        frame(envelope("ping", b"", "PingRequest")),
        frame(envelope("signin", signin, "SigninRequest")),
        frame(envelope("query", query, "QueryRequest", seq=1)) + frame(envelope("query", query, "QueryRequest", seq=0, id="2")),
        frame(envelope("InsertOne", insert, "InsertOneRequest", jwt="eyJ.x.y")),
        frame(envelope("getelement", field_bytes(1, "x"), "GetElementRequest", rid="9")),
        frame(envelope("aggregate", field_bytes(1, "entities") + field_bytes(2, '[{"$match":{}}]'), "AggregateRequest", priority=3)),
        frame(envelope("nope", b"\xff\xff\xff")),
        struct.pack("<I", 0),
        struct.pack("<I", 0xFFFFFFFF) + b"abc",
    ]
    # Byte 0: frame limit 1 << (b % 21) (20 = 1 MiB); byte 1: chunking pattern.
    write("frame_envelope", [bytes([20, i * 37 % 256]) + e for i, e in enumerate(envelopes)]
          + [bytes([20, 7]) + b"".join(envelopes[:6]), bytes([6, 1]) + envelopes[2]])


main()
