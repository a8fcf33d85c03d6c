import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

describe("GET /healthz", () => {
  it("answers ok with the version", async () => {
    const response = await exports.default.fetch("http://edgelan.test/healthz");
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ ok: true, version: "0.1.0" });
  });

  it("answers unknown routes with a JSON 404", async () => {
    const response = await exports.default.fetch("http://edgelan.test/nope");
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: "not-found" });
  });
});
