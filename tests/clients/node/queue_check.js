#!/usr/bin/env node
// Queue check for the official Node client (@openiap/nodeapi 0.0.39).
//
// Usage: node queue_check.js URL
//
// URL is `ws://USER:PASSWORD@HOST:PORT/ws/v2` (WebSocket; the client uses the URL
// verbatim, so the path must be given) or `grpc://USER:PASSWORD@HOST:PORT` (plain h2c).
// Without credentials in the URL, OPENIAP_USERNAME / OPENIAP_PASSWORD are put into it.
//
// Three connections (clients) A, B and C in this process, signed in by the client itself.
// * temporary queues: RegisterQueue with "" and "amq.*" gives unique `node.<random>` names
//   that receive messages;
// * named queue: A registers QCN<ID>_NAMED (answered lower-cased), B sends with a
//   correlationId (striptoken false: A's callback gets B's user), and once more through
//   the client's envelope plumbing to read the generated correlationId of the reply;
//   A and C then share the named queue's messages;
// * RPC: A answers on qcn<ID>_rpc, B calls QueueMessage(rpc=true) twice; a hand-made
//   request with its own correlationId gets the answer on B's queue;
// * timeout: QueueMessage(rpc=true) to the unregistered qcn<ID>_missing resolves with the
//   `timeout` answer, a second one is rejected with `bad queue: ...`, a send without
//   replyto to qcn<ID>_never is rejected, registering qcn<ID>_missing makes it work; an
//   RPC with expiration 1000 to the consumer-less named qcn<ID>_expire gets `timeout`
//   after the expiration, a message sent there while nobody consumes it waits for the
//   next registration;
// * exchanges qcn<ID>_direct / _fanout / _topic / _headers (algorithm "header", the
//   reference's spelling) with addqueue: routing keys, an RPC through the direct
//   exchange, both consumers of a fanout, topic wildcards, UnRegisterQueue of an
//   exchange queue;
// * an RPC right after A's UnRegisterQueue of a temporary queue gets `timeout`;
// * C's temporary queue goes away when C closes.
// Names use QUEUE_CHECK_ID (default: random). Exit status 0 on success, 1 (with a FAIL
// line) on any failure; the whole run is bounded by QUEUE_CHECK_TIMEOUT seconds
// (default 45).
"use strict";

// The client may export telemetry to a public host unless told not to; no colours in logs.
if (process.env.enable_analytics === undefined) process.env.enable_analytics = "false";
process.env.log_with_colors = "false";

const HARD_TIMEOUT_MS = 1000 * Number(process.env.QUEUE_CHECK_TIMEOUT || 45);
const CALL_TIMEOUT_MS = 10000; // one request / one expected event
const QUIET_MS = 700; // how long to wait for events that must not come

function log(message) {
  console.log(`[queue_check.js] ${message}`);
}

function fail(message) {
  console.log(`[queue_check.js] FAIL: ${message}`);
  // process.exit: the client's sockets, gRPC channel and timers must not keep the
  // process alive.
  process.exit(1);
}

process.on("unhandledRejection", (error) => fail(`unhandled rejection: ${error && error.stack ? error.stack : error}`));
process.on("uncaughtException", (error) => fail(`uncaught exception: ${error && error.stack ? error.stack : error}`));
setTimeout(() => fail(`overall timeout of ${HARD_TIMEOUT_MS / 1000} s`), HARD_TIMEOUT_MS);

function withCredentials(raw) {
  const url = new URL(raw);
  if (url.username && url.password) return url.toString();
  const username = process.env.OPENIAP_USERNAME || "";
  const password = process.env.OPENIAP_PASSWORD || "";
  if (!username || !password) {
    fail("no credentials: put USER:PASSWORD@ in the URL or set OPENIAP_USERNAME/OPENIAP_PASSWORD");
  }
  url.username = encodeURIComponent(username);
  url.password = encodeURIComponent(password);
  return url.toString();
}

// Resolves with the result, or with {error} when the server answered with an error;
// fails the check when nothing comes within `ms`.
function settle(what, promise, ms = CALL_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`__timeout__`)), ms);
  });
  return Promise.race([promise.then((value) => ({ value })), timeout])
    .catch((error) => {
      if (error && error.message === "__timeout__") fail(`${what}: no reply within ${ms / 1000} s`);
      return { error: error && error.message ? error.message : String(error) };
    })
    .finally(() => clearTimeout(timer));
}

async function within(what, promise, ms = CALL_TIMEOUT_MS) {
  const result = await settle(what, promise, ms);
  if ("error" in result) fail(`${what}: ${result.error}`);
  return result.value;
}

async function rejected(what, promise, needle = "") {
  const result = await settle(what, promise);
  if (!("error" in result)) fail(`${what}: expected an error, got ${JSON.stringify(result.value)}`);
  if (!result.error.includes(needle)) fail(`${what}: expected an error with ${JSON.stringify(needle)}, got ${result.error}`);
  log(`${what}: error as expected: ${result.error.split("\n")[0]}`);
}

function expect(condition, message) {
  if (!condition) fail(message);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const dump = (value) => JSON.stringify(value);

class Side {
  constructor(label, url, api) {
    this.label = label;
    this.url = url;
    this.api = api;
    this.events = [];
    this.waiter = null;
    this.stray = []; // queueevents the connection got for queues without callback
    this.answering = {}; // queue name -> answer requests carrying a replyto
  }

  async connect(expectedUser) {
    this.client = new this.api.openiap(this.url);
    this.client.allowconnectgiveup = true;
    const user = await within(`${this.label}: connect + signin`, this.client.connect());
    if (!user || user.username !== expectedUser) {
      fail(`${this.label}: signed in as ${JSON.stringify(user && user.username)}, expected ${JSON.stringify(expectedUser)}`);
    }
    // Every queueevent envelope, before the client's own dispatch (which only warns about
    // events for queues it has no callback for, e.g. after UnRegisterQueue).
    const inner = this.client.client.onMessage;
    this.client.client.onMessage = async (cli, message) => {
      if (message && message.command === "queueevent") {
        const event = this.api.QueueEvent.decode(message.data.value);
        const rpcAnswer = this.client.queuecallbacks[event.correlationId] && !event.replyto;
        if (!rpcAnswer && !this.client.queues[event.queuename]) this.stray.push(event);
      }
      return inner(cli, message);
    };
  }

  callback() {
    return (msg, payload, user, jwt) => {
      this.events.push({
        queuename: msg.queuename,
        correlationId: msg.correlationId,
        replyto: msg.replyto,
        routingkey: msg.routingkey,
        exchangename: msg.exchangename,
        payload,
        user,
        jwt,
      });
      if (this.waiter) this.waiter();
      if (this.answering[msg.queuename] && msg.replyto) {
        return { answer: `re: ${payload && payload.text}`, n: payload && payload.n };
      }
      return null;
    };
  }

  async register(queuename, answer = false) {
    const queue = await within(`${this.label}: RegisterQueue(${JSON.stringify(queuename)})`,
      this.client.RegisterQueue({ queuename }, this.callback()));
    expect(typeof queue === "string" && queue !== "", `${this.label}: RegisterQueue(${JSON.stringify(queuename)}) returned ${dump(queue)}`);
    this.answering[queue] = answer;
    return queue;
  }

  async registerExchange(exchangename, algorithm, routingkey = "", answer = false) {
    const queue = await within(`${this.label}: RegisterExchange(${exchangename}, ${algorithm}, ${JSON.stringify(routingkey)})`,
      this.client.RegisterExchange({ exchangename, algorithm, routingkey, addqueue: true }, this.callback()));
    expect(typeof queue === "string" && queue !== "", `${this.label}: RegisterExchange ${exchangename} returned ${dump(queue)}`);
    this.answering[queue] = answer;
    return queue;
  }

  async unregister(queuename) {
    await within(`${this.label}: UnRegisterQueue(${queuename})`, this.client.UnRegisterQueue({ queuename }));
  }

  // QueueMessage without rpc: resolves null once the server accepted it.
  send(options) {
    return this.client.QueueMessage(options, false);
  }

  rpc(options) {
    return this.client.QueueMessage(options, true);
  }

  // The envelope QueueMessage sends, through the client's protowrap.RPC, to read the
  // QueueMessageResponse (QueueMessage itself returns null).
  async sendForReply(options) {
    const { Any } = require("@openiap/nodeapi/lib/proto/google/protobuf/any");
    const message = this.api.QueueMessageRequest.create({ ...options, data: JSON.stringify(options.data) });
    const data = Any.create({ type_url: "type.googleapis.com/openiap.QueueMessageRequest", value: this.api.QueueMessageRequest.encode(message).finish() });
    const envelope = this.api.Envelope.create({ command: "queuemessage", data });
    const reply = await within(`${this.label}: queuemessage for its reply`, this.api.protowrap.RPC(this.client.client, envelope));
    return this.api.QueueMessageResponse.decode(reply.data.value);
  }

  async nextEvent(what) {
    const deadline = Date.now() + CALL_TIMEOUT_MS;
    while (this.events.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) fail(`${this.label}: ${what}: no queue event within ${CALL_TIMEOUT_MS / 1000} s`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(timer); resolve(); };
      });
      this.waiter = null;
    }
    return this.events.shift();
  }

  async noEvent(what) {
    await sleep(QUIET_MS);
    if (this.events.length !== 0 || this.stray.length !== 0) {
      fail(`${this.label}: ${what}: unexpected queue events ${dump(this.events)} ${dump(this.stray)}`);
    }
  }
}

function checkTimeoutAnswer(what, answer, text, n) {
  expect(answer && typeof answer === "object", `${what}: the answer is not a JSON object: ${dump(answer)}`);
  expect(answer.command === "timeout", `${what}: expected the timeout answer, got ${dump(answer)}`);
  expect(answer.text === text && answer.n === n, `${what}: not the original body: ${dump(answer)}`);
}

async function main() {
  if (process.argv.length !== 3) {
    console.error("usage: node queue_check.js URL");
    process.exit(2);
  }
  const url = withCredentials(process.argv[2]);
  const parsed = new URL(url);
  const transport = { "ws:": "ws", "wss:": "ws", "grpc:": "grpc" }[parsed.protocol];
  if (!transport) fail(`unsupported URL scheme ${parsed.protocol} (use ws://, wss:// or grpc://)`);
  const runId = (process.env.QUEUE_CHECK_ID || Math.random().toString(16).substring(2, 14)).toLowerCase();
  const prefix = `qcn${runId}`;
  const safeUrl = url.replace(`:${parsed.password}@`, ":***@");
  log(`client @openiap/nodeapi ${require("@openiap/nodeapi/package.json").version}, transport ${transport}, url ${safeUrl}, names ${prefix}_*`);

  const api = require("@openiap/nodeapi");
  const username = decodeURIComponent(parsed.username);
  const [a, b, c] = [new Side("A", url, api), new Side("B", url, api), new Side("C", url, api)];
  for (const side of [a, b, c]) await side.connect(username);
  log(`A, B and C signed in as ${username}`);

  // Temporary queues.
  const temps = [await a.register(""), await a.register("amq.whatever"), await b.register(""), await c.register("")];
  for (const name of temps) {
    expect(name.startsWith("node.") && name.length > "node.".length && name === name.toLowerCase(),
      `temporary queue names are node.<random>: ${dump(name)}`);
  }
  expect(new Set(temps).size === temps.length, `temporary queue names are unique: ${dump(temps)}`);
  const [aTemp, aAmq, bTemp, cTemp] = temps;
  for (const [n, queue] of [aTemp, aAmq].entries()) {
    await within("send to a temporary queue", b.send({ queuename: queue, data: { text: "to temp", n } }));
    const event = await a.nextEvent("message to a temporary queue");
    expect(event.queuename === queue && event.payload.text === "to temp" && event.payload.n === n,
      `message to the temporary queue ${queue}: ${dump(event)}`);
  }
  await a.noEvent("after the temporary queue messages");
  log("temporary queues: unique node.* names, messages delivered");

  // Named queue.
  const named = `${prefix}_named`;
  const got = await a.register(named.toUpperCase());
  expect(got === named, `RegisterQueue(${named.toUpperCase()}) returned ${dump(got)}, expected the lower-cased ${named}`);
  await within("QueueMessage to the named queue", b.send({ queuename: named, correlationId: "corr-1", data: { text: "hello", n: 1 } }));
  let event = await a.nextEvent("message to the named queue");
  expect(event.queuename === named && event.correlationId === "corr-1" && event.replyto === "",
    `the named queue event: ${dump(event)}`);
  expect(event.payload.text === "hello" && event.payload.n === 1, `the body: ${dump(event)}`);
  expect(event.user && event.user.username === username && typeof event.jwt === "string" && event.jwt !== "",
    `__user/__jwt of the sender (striptoken false): user ${dump(event.user)}, jwt ${dump(event.jwt)}`);
  const reply = await b.sendForReply({ queuename: named, data: { text: "second", n: 2 }, striptoken: true });
  expect(reply.queuename === named && reply.correlationId, `queuemessagereply with a generated correlationId: ${dump(reply)}`);
  event = await a.nextEvent("second message");
  expect(event.correlationId === reply.correlationId, `the generated correlationId ${reply.correlationId}: ${dump(event)}`);
  expect(event.payload.text === "second" && event.user === undefined && event.jwt === undefined,
    `striptoken: no __user/__jwt: ${dump(event)}`);
  await a.noEvent("after the named queue messages");
  // A and C share the named queue.
  expect((await c.register(named)) === named, "C registers the named queue");
  for (let n = 0; n < 6; n++) await within("shared message", b.send({ queuename: named, data: { text: "shared", n } }));
  const counts = { A: 0, C: 0 };
  const seen = [];
  const deadline = Date.now() + CALL_TIMEOUT_MS;
  while (seen.length < 6 && Date.now() < deadline) {
    for (const [label, side] of [["A", a], ["C", c]]) {
      while (side.events.length) {
        counts[label] += 1;
        seen.push(side.events.shift().payload.n);
      }
    }
    await sleep(50);
  }
  seen.sort();
  expect(dump(seen) === dump([0, 1, 2, 3, 4, 5]), `each shared message once: ${dump(seen)}`);
  expect(counts.A > 0 && counts.C > 0, `two consumers share a named queue: ${dump(counts)}`);
  await a.noEvent("after the shared messages");
  await c.noEvent("after the shared messages");
  log(`named queue ${named}: correlationId, user/jwt, striptoken, shared by A and C ${dump(counts)}`);

  // RPC.
  const rpcQueue = `${prefix}_rpc`;
  await a.register(rpcQueue, true);
  for (const [n, text] of ["hi mom, i miss you", "and a second call"].entries()) {
    const answer = await within(`rpc ${n}`, b.rpc({ queuename: rpcQueue, data: { text, n } }));
    expect(dump(answer) === dump({ answer: `re: ${text}`, n }), `rpc ${n}: got ${dump(answer)}`);
    const request = await a.nextEvent("rpc request");
    expect(request.replyto === b.client.defaltqueue && request.replyto.startsWith("node.") && request.correlationId,
      `rpc request: ${dump(request)} (B's reply queue ${b.client.defaltqueue})`);
  }
  await within("hand-made request", b.send({ queuename: rpcQueue, correlationId: "rpc-corr-7", replyto: bTemp, data: { text: "by hand", n: 7 } }));
  const request = await a.nextEvent("hand-made request");
  expect(request.correlationId === "rpc-corr-7" && request.replyto === bTemp, `hand-made request: ${dump(request)}`);
  const answer = await b.nextEvent("the answer");
  expect(answer.queuename === bTemp && answer.correlationId === "rpc-corr-7" && answer.replyto === "",
    `the answer: ${dump(answer)}`);
  expect(dump(answer.payload) === dump({ answer: "re: by hand", n: 7 }), `the answer: ${dump(answer)}`);
  await a.noEvent("after the rpcs");
  await b.noEvent("after the rpcs");
  log("rpc: two QueueMessage(rpc=true) calls and one by hand answered");

  // Timeouts.
  const missing = `${prefix}_missing`;
  let timeoutAnswer = await within(`rpc to the missing ${missing}`, b.rpc({ queuename: missing, data: { text: "anyone there?", n: 1 } }));
  checkTimeoutAnswer(`rpc to the missing queue ${missing}`, timeoutAnswer, "anyone there?", 1);
  await rejected(`second rpc to ${missing}`, b.rpc({ queuename: missing, data: { text: "again", n: 2 } }), `bad queue: ${missing}`);
  const never = `${prefix}_never`;
  await rejected(`send without replyto to the missing ${never}`, b.send({ queuename: never, data: { text: "lost" } }));
  await a.register(missing);
  await within("send to the registered missing queue", b.send({ queuename: missing, data: { text: "now you exist" } }));
  event = await a.nextEvent("after registering the missing queue");
  expect(event.queuename === missing && event.payload.text === "now you exist", dump(event));
  const expire = `${prefix}_expire`;
  await a.register(expire);
  await a.unregister(expire);
  const started = Date.now();
  timeoutAnswer = await within(`rpc with expiration to ${expire}`, b.rpc({ queuename: expire, expiration: 1000, data: { text: "expire me", n: 5 } }));
  checkTimeoutAnswer(`rpc with expiration 1000 to ${expire} (no consumer)`, timeoutAnswer, "expire me", 5);
  expect(Date.now() - started >= 800, `the timeout came after ${Date.now() - started} ms, before the expiration of 1 s`);
  await within("send to the unconsumed named queue", b.send({ queuename: expire, data: { text: "kept" } }));
  await a.noEvent("nothing delivered after UnRegisterQueue");
  await a.register(expire);
  event = await a.nextEvent("what waited in the durable queue");
  expect(event.queuename === expire && event.payload.text === "kept", dump(event));
  await a.noEvent("after the timeouts");
  await b.noEvent("after the timeouts");
  log("timeouts: missing queue, bad queue, expiration; unregister keeps the named queue");

  // Exchanges.
  const direct = `${prefix}_direct`;
  const directQueue = await a.registerExchange(direct, "direct", "rk1", true);
  // A key nobody bound is not an error (as in AMQP); the message goes nowhere.
  await within("send with a key nobody bound", b.send({ exchangename: direct, routingkey: "rk2", data: { text: "not for rk1" } }));
  await within("send to the direct exchange", b.send({ exchangename: direct, routingkey: "rk1", correlationId: "ex-1", data: { text: "for rk1", n: 1 } }));
  event = await a.nextEvent("direct exchange message");
  expect(event.queuename === directQueue && event.exchangename === direct && event.routingkey === "rk1"
    && event.correlationId === "ex-1" && event.payload.text === "for rk1", `direct: ${dump(event)}`);
  await a.noEvent("only the rk1 message");
  const viaExchange = await within("rpc through the exchange", b.rpc({ exchangename: direct, routingkey: "rk1", data: { text: "via exchange", n: 2 } }));
  expect(dump(viaExchange) === dump({ answer: "re: via exchange", n: 2 }), `rpc through ${direct}: ${dump(viaExchange)}`);
  expect((await a.nextEvent("rpc through the exchange")).replyto !== "", "the request carries replyto");

  const fanout = `${prefix}_fanout`;
  const aFan = await a.registerExchange(fanout, "fanout");
  const cFan = await c.registerExchange(fanout, "fanout");
  expect(aFan !== cFan, `each fanout consumer has its own queue: ${aFan} ${cFan}`);
  await within("send to the fanout exchange", b.send({ exchangename: fanout, routingkey: "any.key", data: { text: "to all" } }));
  for (const [side, queue] of [[a, aFan], [c, cFan]]) {
    event = await side.nextEvent("fanout message");
    expect(event.queuename === queue && event.exchangename === fanout && event.payload.text === "to all", `${side.label} fanout: ${dump(event)}`);
  }
  await a.noEvent("one fanout copy");
  await c.noEvent("one fanout copy");
  await a.unregister(aFan);
  // The client forgets the callback: an event for aFan would now show up as stray.
  await within("send to the fanout exchange", b.send({ exchangename: fanout, data: { text: "to one" } }));
  event = await c.nextEvent("fanout after UnRegisterQueue");
  expect(event.queuename === cFan && event.payload.text === "to one", `C fanout: ${dump(event)}`);
  await a.noEvent("unregistered fanout queue");

  const topic = `${prefix}_topic`;
  const aCreated = await a.registerExchange(topic, "topic", "orders.*.created");
  const cAll = await c.registerExchange(topic, "topic", "orders.#");
  await within("send orders.eu.created", b.send({ exchangename: topic, routingkey: "orders.eu.created", data: { text: "created" } }));
  for (const [side, queue] of [[a, aCreated], [c, cAll]]) {
    event = await side.nextEvent("orders.eu.created");
    expect(event.queuename === queue && event.routingkey === "orders.eu.created", `${side.label} topic: ${dump(event)}`);
  }
  await within("send orders.eu.deleted", b.send({ exchangename: topic, routingkey: "orders.eu.deleted", data: { text: "deleted" } }));
  event = await c.nextEvent("orders.eu.deleted");
  expect(event.queuename === cAll && event.payload.text === "deleted", `C topic: ${dump(event)}`);
  await within("send invoices.eu.created (nobody bound)", b.send({ exchangename: topic, routingkey: "invoices.eu.created", data: { text: "invoice" } }));
  await a.noEvent("orders.*.created: only orders.eu.created");
  await c.noEvent("orders.#: no invoices");

  const headers = `${prefix}_headers`;
  const aHeaders = await a.registerExchange(headers, "header");
  await within("send to the headers exchange", b.send({ exchangename: headers, routingkey: "some.key", data: { text: "by headers" } }));
  event = await a.nextEvent("headers exchange message");
  expect(event.queuename === aHeaders && event.exchangename === headers && event.payload.text === "by headers", `headers: ${dump(event)}`);
  await a.noEvent("one headers message");
  log("exchanges: direct (+rpc), fanout to A and C (+UnRegisterQueue), topic wildcards, headers (\"header\")");

  // An RPC right after UnRegisterQueue of a temporary queue: the queue is gone.
  const gone = await a.register("");
  await a.unregister(gone);
  timeoutAnswer = await within(`rpc right after UnRegisterQueue of ${gone}`, b.rpc({ queuename: gone, data: { text: "gone?", n: 4 } }));
  checkTimeoutAnswer(`rpc right after UnRegisterQueue of the temporary queue ${gone}`, timeoutAnswer, "gone?", 4);
  await a.noEvent("after unregistering the temporary queue");
  log("an rpc to a temporary queue right after its UnRegisterQueue gets the timeout answer");

  // C's temporary queue goes with C's connection.
  c.client.Close();
  const closeDeadline = Date.now() + CALL_TIMEOUT_MS;
  for (;;) {
    const result = await settle("send to C's temporary queue", b.send({ queuename: cTemp, data: { text: "late" } }));
    if ("error" in result) {
      log(`C's temporary queue is gone with C: ${result.error.split("\n")[0]}`);
      break;
    }
    if (Date.now() > closeDeadline) fail(`${cTemp} still takes messages ${CALL_TIMEOUT_MS / 1000} s after C closed`);
    await sleep(200);
  }
  a.client.Close();
  b.client.Close();
  log("OK");
  process.exit(0);
}

const started = Date.now();
process.on("exit", (code) => {
  if (code === 0) console.log(`[queue_check.js] passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
main().catch((error) => fail(`unexpected ${error && error.stack ? error.stack : error}`));
