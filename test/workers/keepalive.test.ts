import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { KEEPALIVE_REQUEST, KEEPALIVE_RESPONSE, SUBPROTOCOL_V1 } from "../../datapath/tunnel/constants.ts";

describe("keepalive", () => {
  it("is answered by the runtime's auto-response, never reaching the segment's message handler", async () => {
    const put = await exports.default.fetch("http://edgelan.test/v1/segments/keepalive", {
      method: "PUT", headers: { authorization: "Bearer test-admin-token" }, body: JSON.stringify({ openJoin: true }),
    });
    expect(put.status).toBe(201);
    const response = await exports.default.fetch("http://edgelan.test/v1/segments/keepalive/connect", {
      headers: { Upgrade: "websocket", "Sec-WebSocket-Protocol": SUBPROTOCOL_V1 },
    });
    const ws = response.webSocket as WebSocket;
    ws.accept();
    const answers: string[] = [];
    const done = new Promise<void>((resolve) => {
      ws.addEventListener("message", (event) => {
        answers.push(String(event.data));
        if (answers.length === 3) resolve();
      });
      // The segment closes a descriptor port that sends any other text (4000), so an answer proves the runtime replied.
      ws.addEventListener("close", (event) => {
        answers.push(`closed ${event.code}`);
        resolve();
      });
    });
    for (let i = 0; i < 3; i++) ws.send(KEEPALIVE_REQUEST);
    await done;
    expect(answers).toEqual([KEEPALIVE_RESPONSE, KEEPALIVE_RESPONSE, KEEPALIVE_RESPONSE]);
    ws.close(1000, "done");
  });
});
