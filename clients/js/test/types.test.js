// index.d.ts declares exactly what wsmq-client.js exports (no tsc here: a name check).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as client from "../wsmq-client.js";

test("index.d.ts declares every export of wsmq-client.js, and no other", () => {
  const dts = readFileSync(new URL("../index.d.ts", import.meta.url), "utf8");
  const declared = new Set(
    [...dts.matchAll(/^export declare (?:class|function|const) (\w+)/gm)].map((m) => m[1]),
  );
  if (/^export default /m.test(dts)) declared.add("default");
  assert.deepEqual([...declared].sort(), Object.keys(client).sort());
});
