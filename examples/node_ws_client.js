// The original websocketmq client, unchanged in shape, against wsmq: the `ws` package, the two
// token headers, the `/subscribe/<id>` frame and `{"message": ...}` frames (legacy mode: no
// subprotocol, so each message is deleted from the queue once written to the socket).
//
//   npm install --prefix examples        # once: ws and rsmq, pinned in examples/package.json
//   WSMQ_X_TOKEN=... WSMQ_X_ACCESS_TOKEN=... node examples/node_ws_client.js ws://127.0.0.1:8080/ QUEUE
//
// Without tokens, WSMQ_USER and WSMQ_PASSWORD log in first (POST /auth/login on the same node).
// WSMQ_COUNT=N exits after N messages.
"use strict";

const WebSocket = require("ws");

const url = process.argv[2] || "ws://127.0.0.1:8080/";
const queue = process.argv[3];
const count = Number(process.env.WSMQ_COUNT || 0);

async function tokens() {
  if (process.env.WSMQ_X_TOKEN && process.env.WSMQ_X_ACCESS_TOKEN) {
    return { token: process.env.WSMQ_X_TOKEN, accessToken: process.env.WSMQ_X_ACCESS_TOKEN };
  }
  const base = new URL(url);
  base.protocol = base.protocol === "wss:" ? "https:" : "http:";
  const res = await fetch(new URL("/auth/login", base.origin), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userName: process.env.WSMQ_USER, password: process.env.WSMQ_PASSWORD }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`login failed: ${res.status} ${body.error}`);
  return body;
}

async function main() {
  if (!queue) {
    console.error("usage: node examples/node_ws_client.js WS_URL QUEUE");
    process.exit(2);
  }
  const { token, accessToken } = await tokens();
  let received = 0;

  // As in the original README: headers on the handshake, then subscribe.
  const ws = new WebSocket(url, {
    headers: { "x-token": token, "x-access-token": accessToken },
  });

  ws.on("open", () => {
    console.error(`# connected to ${url}`);
    ws.send("/subscribe/" + queue);
  });

  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString());
    if (frame.type === "error") {
      // wsmq's error frames carry no "message" key, so they never look like a delivery.
      console.error(`# error ${frame.code}: ${frame.detail}`);
      return;
    }
    console.log(frame.message);
    received += 1;
    if (count && received >= count) ws.close(1000);
  });

  // wsmq refuses bad tokens before the upgrade (HTTP 401/403), so this fires instead of open.
  // Destroying the request matters: otherwise the refused connection stays open and Node never
  // exits.
  ws.on("unexpected-response", (req, res) => {
    console.error(`# rejected: HTTP ${res.statusCode}`);
    process.exitCode = 1;
    req.destroy();
  });

  ws.on("error", (err) => {
    console.error(`# ${err.message}`);
    process.exitCode = 1;
  });

  ws.on("close", (code) => {
    console.error(`# closed ${code}`);
  });
}

main().catch((err) => {
  console.error(`# ${err.message}`);
  process.exit(1);
});
