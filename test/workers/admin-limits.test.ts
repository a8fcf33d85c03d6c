/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_BODY_BYTES, MAX_JSON_DEPTH } from "../../worker/json-body.ts";

// Bad admin input (issue 9 §6): a body too deep or too large for the management API is a
// 4xx with a message, decided in the Worker before JSON.parse and before any RPC to the segment.

const BASE = "http://edgelan.test";
const ADMIN = { Authorization: "Bearer test-admin-token" };

function send(method: string, path: string, body: BodyInit, headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(`${BASE}${path}`, { method, headers: { ...ADMIN, "Content-Type": "application/json", ...headers }, body });
}

async function errorOf(response: Response): Promise<{ error: string; message: string }> {
  expect(response.headers.get("Content-Type")).toContain("application/json");
  return (await response.json()) as { error: string; message: string };
}

/** `{"maxPorts": [[[…]]]}` nested `depth` levels in all. */
function nested(depth: number, open = "[", close = "]"): string {
  return `{"maxPorts":${open.repeat(depth - 1)}${close.repeat(depth - 1)}}`;
}

/** A body that arrives in chunks without Content-Length, `total` bytes of JSON in all. */
function chunkedBody(total: number): ReadableStream<Uint8Array> {
  const chunk = new TextEncoder().encode(" ".repeat(16 * 1024));
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) {
        controller.enqueue(new TextEncoder().encode("{}"));
        controller.close();
        return;
      }
      controller.enqueue(chunk);
      sent += chunk.length;
    },
  });
}

describe("admin JSON bodies", () => {
  const routes = [
    ["PUT", "/v1/segments/deep"],
    ["POST", "/v1/segments/deep/tokens"],
  ] as const;

  it.each(routes)("%s %s: JSON nested 20,000 deep is 400 json-too-deep, not 500", async (method, path) => {
    const response = await send(method, path, nested(20_000));
    expect(response.status).toBe(400);
    const body = await errorOf(response);
    expect(body.error).toBe("json-too-deep");
    expect(body.message).toContain(String(MAX_JSON_DEPTH));
  });

  it.each(routes)("%s %s: objects nested past the limit are refused too", async (method, path) => {
    const objects = `${'{"a":'.repeat(MAX_JSON_DEPTH + 1)}1${"}".repeat(MAX_JSON_DEPTH + 1)}`;
    const response = await send(method, path, objects);
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("json-too-deep");
  });

  it("counts brackets inside strings as text, not nesting", async () => {
    const response = await send("PUT", "/v1/segments/brackets", JSON.stringify({ maxPorts: 8, note: "[".repeat(1000) }));
    // Parsed fine: the failure is the segment's own validation of the unknown key.
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("unknown-config-field");
  });

  it("accepts nesting exactly at the limit and leaves the verdict to the segment", async () => {
    const response = await send("PUT", "/v1/segments/at-limit", nested(MAX_JSON_DEPTH));
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("invalid-config-field");
  });

  it.each(routes)("%s %s: a streamed body past the limit without Content-Length is 413 body-too-large", async (method, path) => {
    const response = await send(method, path, chunkedBody(4 * MAX_BODY_BYTES));
    expect(response.status).toBe(413);
    const body = await errorOf(response);
    expect(body.error).toBe("body-too-large");
    expect(body.message).toContain(String(MAX_BODY_BYTES));
  });

  it("refuses a declared Content-Length past the limit before reading", async () => {
    const response = await send("POST", "/v1/segments/deep/tokens", "{}", { "Content-Length": String(10 * MAX_BODY_BYTES) });
    expect(response.status).toBe(413);
    expect((await errorOf(response)).error).toBe("body-too-large");
  });

  it("refuses a body that is not UTF-8 with 400 invalid-json", async () => {
    const response = await send("PUT", "/v1/segments/bytes", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    expect(response.status).toBe(400);
    expect((await errorOf(response)).error).toBe("invalid-json");
  });

  it("still creates a segment from a small, shallow body", async () => {
    const response = await send("PUT", "/v1/segments/fine", JSON.stringify({ maxPorts: 8 }));
    expect(response.status).toBe(201);
  });
});
