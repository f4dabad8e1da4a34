// ioredis against a running respkv: `node check.js PORT` exits 0 only if every reply is right.
// Prints one line per check; on the first wrong reply prints what was expected and exits 1.
"use strict";

const Redis = require("ioredis");

const port = Number(process.argv[2]);
if (!port) {
  console.error("usage: node check.js PORT");
  process.exit(2);
}

let failures = 0;

function check(name, got, want) {
  const ok = JSON.stringify(got) === JSON.stringify(want);
  console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${JSON.stringify(got)}${ok ? "" : ` (want ${JSON.stringify(want)})`}`);
  if (!ok) failures += 1;
}

async function main() {
  const redis = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 0, lazyConnect: true,
                            retryStrategy: () => null, enableOfflineQueue: false });
  redis.on("error", (e) => console.error("connection error:", e.message));
  await redis.connect();
  try {
    const prefix = "ioredis:";
    check("SET", await redis.set(prefix + "k", "hello"), "OK");
    check("GET", await redis.get(prefix + "k"), "hello");
    check("GET missing", await redis.get(prefix + "missing"), null);
    check("SET NX on existing", await redis.set(prefix + "k", "x", "NX"), null);
    check("SET XX GET", await redis.set(prefix + "k", "world", "XX", "GET"), "hello");
    check("GET Buffer", (await redis.getBuffer(prefix + "k")).toString("hex"), Buffer.from("world").toString("hex"));
    check("INCR", await redis.incr(prefix + "n"), 1);
    check("INCRBY", await redis.incrby(prefix + "n", 41), 42);
    check("INCRBYFLOAT", await redis.incrbyfloat(prefix + "f", "1.5"), "1.5");
    check("MSET", await redis.mset(prefix + "a", "1", prefix + "b", "2"), "OK");
    check("MGET", await redis.mget(prefix + "a", prefix + "missing", prefix + "b"), ["1", null, "2"]);
    check("EXPIRE", await redis.expire(prefix + "a", 100), 1);
    const ttl = await redis.ttl(prefix + "a");
    check("TTL in [99,100]", ttl >= 99 && ttl <= 100, true);
    check("TTL no expiry", await redis.ttl(prefix + "b"), -1);
    check("TTL missing", await redis.ttl(prefix + "missing"), -2);
    check("PTTL > 90000", (await redis.pttl(prefix + "a")) > 90000, true);
    check("SET EX", await redis.set(prefix + "e", "v", "EX", 50), "OK");
    check("DEL", await redis.del(prefix + "a", prefix + "b", prefix + "missing"), 2);
    check("EXISTS", await redis.exists(prefix + "a", prefix + "k"), 1);
    let err = null;
    try {
      await redis.incr(prefix + "k");
    } catch (e) {
      err = e.message;
    }
    check("INCR on a string is an error", err, "ERR value is not an integer or out of range");

    const results = await redis.pipeline()
      .set(prefix + "p1", "a")
      .incr(prefix + "pn")
      .incr(prefix + "pn")
      .get(prefix + "p1")
      .mget(prefix + "p1", prefix + "pn")
      .expire(prefix + "p1", 30)
      .ttl(prefix + "p1")
      .del(prefix + "p1")
      .get(prefix + "p1")
      .incr(prefix + "k") // an error inside a pipeline
      .exec();
    const errors = results.map(([e]) => (e ? e.message : null));
    const values = results.map(([, v]) => v);
    check("pipeline values", values.slice(0, 6), ["OK", 1, 2, "a", ["a", "2"], 1]);
    check("pipeline TTL", values[6] >= 29 && values[6] <= 30, true);
    check("pipeline tail", values.slice(7, 9), [1, null]);
    check("pipeline errors", errors, [null, null, null, null, null, null, null, null, null,
                                      "ERR value is not an integer or out of range"]);

    const many = redis.pipeline();
    for (let i = 0; i < 1000; i++) many.set(`${prefix}m${i}`, String(i));
    const manyRes = await many.exec();
    check("1000 pipelined SETs", manyRes.every(([e, v]) => e === null && v === "OK"), true);
    const got = await redis.mget(...Array.from({ length: 1000 }, (_, i) => `${prefix}m${i}`));
    check("MGET of 1000", got.every((v, i) => v === String(i)), true);
  } finally {
    redis.disconnect();
  }
  if (failures) {
    console.error(`${failures} check(s) failed`);
    process.exit(1);
  }
  console.log("all checks passed");
}

main().catch((e) => {
  console.error("error:", e && e.stack ? e.stack : e);
  process.exit(1);
});
