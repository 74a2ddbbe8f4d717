"""A proxyless gRPC client (python3-grpcio, gRPC C-core) driven over stdin.

Run with /usr/bin/python3 and GRPC_XDS_BOOTSTRAP naming an xDS bootstrap file. It keeps one
channel per target for its whole life and answers each JSON command line on stdin with one
JSON line on stdout, in the protocol of tests/e2e/_grpc_client.ts:

  {"id":1,"op":"calls","target":"xds:///echo.test.svc.cluster.local:9000","n":100,
   "concurrency":10,"metadata":{"x-user":"v2"},"deadlineMs":5000}
  -> {"id":1,"total":100,"ok":98,"byBackend":{"v1":90,"v2":8},"errors":{"UNAVAILABLE":2},
      "details":{"UNAVAILABLE":"..."},"latenciesMs":[...]}

The test service (tests/e2e/proto/echo.proto) is called without generated code: its two
messages hold only strings, encoded and decoded here by hand.
"""

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

METHOD = "/meshd.test.Echo/Call"


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_request(message):
    data = message.encode()
    return b"\x0a" + _varint(len(data)) + data


def decode_reply(data):
    """Returns the string fields of CallReply by field number."""
    fields = {}
    i = 0
    while i < len(data):
        key = 0
        shift = 0
        while True:
            b = data[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        field, wire = key >> 3, key & 7
        if wire != 2:
            raise ValueError("unexpected wire type %d" % wire)
        length = 0
        shift = 0
        while True:
            b = data[i]
            i += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        fields[field] = data[i:i + length].decode()
        i += length
    return fields


channels = {}


def stub_for(target):
    if target not in channels:
        channel = grpc.insecure_channel(target)
        call = channel.unary_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        channels[target] = (channel, call)
    return channels[target][1]


def calls(cmd):
    call = stub_for(cmd["target"])
    n = cmd["n"]
    metadata = list((cmd.get("metadata") or {}).items())
    deadline = cmd.get("deadlineMs", 5000) / 1000.0
    lock = threading.Lock()
    summary = {"total": 0, "ok": 0, "byBackend": {}, "errors": {}, "details": {}, "latenciesMs": []}

    def one(i):
        started = time.monotonic()
        try:
            reply = call(encode_request("call %d" % i), timeout=deadline, metadata=metadata)
            backend = decode_reply(reply).get(1, "")
            err = None
        except grpc.RpcError as e:
            backend = None
            err = (e.code().name, e.details())
        with lock:
            summary["total"] += 1
            summary["latenciesMs"].append(round((time.monotonic() - started) * 1000))
            if err is None:
                summary["ok"] += 1
                summary["byBackend"][backend] = summary["byBackend"].get(backend, 0) + 1
            else:
                summary["errors"][err[0]] = summary["errors"].get(err[0], 0) + 1
                summary["details"].setdefault(err[0], err[1])

    workers = max(1, min(cmd.get("concurrency", 1), n))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(n)))
    return summary


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "close":
            break
        try:
            out = dict(id=cmd["id"], **calls(cmd))
        except Exception as e:  # reported to the test, which fails with it
            out = {"id": cmd["id"], "error": repr(e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    for channel, _ in channels.values():
        channel.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
