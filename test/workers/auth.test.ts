/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import worker from "../../worker/index.ts";
import type { Env } from "../../worker/env.ts";
import {
  INSECURE_DEV_TOKEN_SECRET,
  mintJoinToken,
  newJoinClaims,
  roleAllowsKind,
  verifyJoinToken,
  type JoinClaims,
} from "../../worker/auth.ts";
import type { PortAttachment } from "../../durable/port.ts";

// Join tokens: standard JWTs (HS256, audience "edgelan"), minted by the admin API or by anyone's
// JWT library, checked by the Worker at connect. The workers project signs with EDGELAN_TOKEN_SECRET=test-token-secret.

const BASE = "http://edgelan.test";
const ADMIN = { Authorization: "Bearer test-admin-token" };
const SECRET = "test-token-secret";

function admin(method: string, path: string, body?: unknown): Promise<Response> {
  const init: RequestInit = { method, headers: ADMIN };
  if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
  return exports.default.fetch(`${BASE}${path}`, init);
}

interface Minted {
  token: string;
  segment: string;
  role: string;
  macs: string[];
  expiresAt: string;
}

async function mint(segment: string, body: unknown): Promise<Minted> {
  const response = await admin("POST", `/v1/segments/${segment}/tokens`, body);
  expect(response.status).toBe(201);
  return (await response.json()) as Minted;
}

function connect(segment: string, query = "", headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(`${BASE}/v1/segments/${segment}/connect${query}`, { headers: { Upgrade: "websocket", ...headers } });
}

async function errorCode(response: Response): Promise<string> {
  return ((await response.json()) as { error: string }).error;
}

/** The attachments of the sockets a segment has accepted. */
async function attachments(segment: string): Promise<PortAttachment[]> {
  return runInDurableObject(env.SEGMENTS.getByName(segment), (_instance, state) =>
    state.getWebSockets().map((ws) => ws.deserializeAttachment() as PortAttachment),
  );
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  for (const name of ["closed", "other"]) expect((await admin("PUT", `/v1/segments/${name}`, {})).status).toBe(201);
});

describe("POST /v1/segments/:name/tokens", () => {
  it("mints a token scoped to the segment and role, expiring after ttlSeconds", async () => {
    const before = Date.now();
    const minted = await mint("closed", { role: "bridge", ttlSeconds: 600, macs: ["02:00:00:00:00:0A"] });
    expect(minted).toMatchObject({ segment: "closed", role: "bridge", macs: ["02:00:00:00:00:0a"] });
    expect(minted.token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    const [header, payload] = minted.token.split(".").slice(0, 2).map((part) => JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/"))) as Record<string, unknown>);
    expect(header).toEqual({ alg: "HS256", typ: "JWT" });
    expect(payload).toMatchObject({ aud: "edgelan", seg: "closed", role: "bridge", macs: ["02:00:00:00:00:0a"] });
    const expires = Date.parse(minted.expiresAt);
    expect(expires).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 600_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 600_000);

    const claims = await verifyJoinToken(SECRET, minted.token, nowSeconds());
    expect(claims).toMatchObject({ ok: true, value: { seg: "closed", role: "bridge", macs: ["02:00:00:00:00:0a"] } });
  });

  it("defaults to a one-hour token without MAC binding", async () => {
    const minted = await mint("closed", { role: "member" });
    expect(minted.macs).toEqual([]);
    const lifetime = Date.parse(minted.expiresAt) - Date.now();
    expect(lifetime).toBeGreaterThan(3590_000);
    expect(lifetime).toBeLessThanOrEqual(3600_000);
  });

  it("gives two tokens minted at once different ids", async () => {
    const [a, b] = await Promise.all([mint("closed", { role: "member" }), mint("closed", { role: "member" })]);
    expect(a.token).not.toBe(b.token);
  });

  it("answers 404 for a segment that does not exist", async () => {
    const response = await admin("POST", "/v1/segments/ghost/tokens", { role: "member" });
    expect(response.status).toBe(404);
    expect(await errorCode(response)).toBe("segment-not-found");
  });

  it.each([
    ["no role", {}],
    ["an unknown role", { role: "admin" }],
    ["ttlSeconds 0", { role: "member", ttlSeconds: 0 }],
    ["ttlSeconds past 30 days", { role: "member", ttlSeconds: 30 * 86400 + 1 }],
    ["a fractional ttlSeconds", { role: "member", ttlSeconds: 1.5 }],
    ["a malformed MAC", { role: "member", macs: ["02:00:00:00:00"] }],
    ["macs not an array", { role: "member", macs: "02:00:00:00:00:01" }],
    ["a multicast MAC", { role: "member", macs: ["01:00:5e:00:00:01"] }],
    ["the all-zeros MAC", { role: "member", macs: ["00:00:00:00:00:00"] }],
    ["more MACs than a port may have (16)", { role: "bridge", macs: Array.from({ length: 17 }, (_, i) => `02:00:00:00:00:${i.toString(16).padStart(2, "0")}`) }],
    ["an unknown field", { role: "member", segment: "other" }],
  ])("refuses a request with %s: 400 invalid-token-request", async (_what, body) => {
    const response = await admin("POST", "/v1/segments/closed/tokens", body);
    expect(response.status).toBe(400);
    expect(await errorCode(response)).toBe("invalid-token-request");
  });

  it("answers malformed JSON with 400 invalid-json", async () => {
    const response = await admin("POST", "/v1/segments/closed/tokens", '{"role":');
    expect(response.status).toBe(400);
    expect(await errorCode(response)).toBe("invalid-json");
  });

  it("needs the admin token", async () => {
    const response = await exports.default.fetch(`${BASE}/v1/segments/closed/tokens`, { method: "POST", body: '{"role":"member"}' });
    expect(response.status).toBe(401);
  });
});

describe("connect with a join token", () => {
  it("needs a token on a segment without open joins: 401 token-required from the segment", async () => {
    const response = await connect("closed");
    expect(response.status).toBe(401);
    expect(response.headers.get("WWW-Authenticate")).toMatch(/^Bearer/);
    expect(await errorCode(response)).toBe("token-required");
  });

  it("accepts a token in the Authorization header", async () => {
    const { token } = await mint("closed", { role: "member" });
    const response = await connect("closed", "", { Authorization: `Bearer ${token}` });
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    response.webSocket?.close(1000, "done");
  });

  it("accepts a token in ?token= (browsers cannot set WebSocket headers)", async () => {
    const { token } = await mint("closed", { role: "monitor" });
    const response = await connect("closed", `?kind=monitor&token=${encodeURIComponent(token)}`);
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    response.webSocket?.close(1000, "done");
  });

  it("answers a token signed with another key with 401 invalid-token", async () => {
    const forged = await mintJoinToken("not-the-secret", newJoinClaims("closed", "member", 600, undefined, nowSeconds()));
    const response = await connect("closed", "", { Authorization: `Bearer ${forged}` });
    expect(response.status).toBe(401);
    expect(await errorCode(response)).toBe("invalid-token");
  });

  it("answers a token whose claims were altered with 401 invalid-token", async () => {
    const { token } = await mint("other", { role: "member" });
    const [header, , signature] = token.split(".");
    const claims = base64url(JSON.stringify({ ...newJoinClaims("closed", "bridge", 600, undefined, nowSeconds()), aud: "edgelan" }));
    const response = await connect("closed", "?kind=bridge", { Authorization: `Bearer ${header}.${claims}.${signature}` });
    expect(response.status).toBe(401);
    expect(await errorCode(response)).toBe("invalid-token");
  });

  it.each([["garbage"], ["elt1.only-two"], ["elt2.e30.AAAA"], ["elt1.!!!.AAAA"]])("answers the malformed token %j with 401 invalid-token", async (token) => {
    const response = await connect("closed", `?token=${encodeURIComponent(token)}`);
    expect(response.status).toBe(401);
    expect(await errorCode(response)).toBe("invalid-token");
  });

  it("answers an expired token with 401 token-expired", async () => {
    const claims = newJoinClaims("closed", "member", 60, undefined, nowSeconds() - 120);
    const expired = await mintJoinToken(SECRET, claims);
    const response = await connect("closed", "", { Authorization: `Bearer ${expired}` });
    expect(response.status).toBe(401);
    const body = (await response.json()) as { error: string; message: string };
    expect(body.error).toBe("token-expired");
    expect(body.message).toContain(new Date(claims.exp * 1000).toISOString());
  });

  it("answers a token for another segment with 403 token-wrong-segment", async () => {
    const { token } = await mint("other", { role: "member" });
    const response = await connect("closed", "", { Authorization: `Bearer ${token}` });
    expect(response.status).toBe(403);
    expect(await errorCode(response)).toBe("token-wrong-segment");
  });

  it.each([
    ["member", "bridge"],
    ["member", "monitor"],
    ["monitor", "member"],
    ["bridge", "monitor"],
  ])("answers a %s token asking for kind=%s with 403 token-wrong-role", async (role, kind) => {
    const { token } = await mint("closed", { role });
    const response = await connect("closed", `?kind=${kind}`, { Authorization: `Bearer ${token}` });
    expect(response.status).toBe(403);
    expect(await errorCode(response)).toBe("token-wrong-role");
  });

  it("lets a bridge token join as a bridge or as a plain member", async () => {
    const { token } = await mint("closed", { role: "bridge" });
    for (const query of ["?kind=bridge", ""]) {
      const response = await connect("closed", query, { Authorization: `Bearer ${token}` });
      expect(response.status).toBe(101);
      response.webSocket?.accept();
      response.webSocket?.close(1000, "done");
    }
  });

  it("follows the role table exactly", () => {
    const kinds = ["member", "bridge", "monitor"] as const;
    const allowed = kinds.flatMap((role) => kinds.filter((kind) => roleAllowsKind(role, kind)).map((kind) => `${role}->${kind}`));
    expect(allowed).toEqual(["member->member", "bridge->member", "bridge->bridge", "monitor->monitor"]);
  });

  it("checks the token before the segment: a bad token on a missing segment is 401, not 404", async () => {
    const response = await connect("ghost", "?token=garbage");
    expect(response.status).toBe(401);
  });
});

describe("what the Worker tells the segment", () => {
  it("forwards the token's MAC binding, expiry, kind and the client address; the segment stores them on the socket", async () => {
    await admin("PUT", "/v1/segments/bound", {});
    const minted = await mint("bound", { role: "bridge", macs: ["02:00:00:00:00:0A", "02:00:00:00:00:0b"] });
    const response = await connect("bound", "?kind=bridge", {
      Authorization: `Bearer ${minted.token}`,
      "CF-Connecting-IP": "198.51.100.4",
      "Sec-WebSocket-Protocol": "edgelan.v1",
    });
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    const [attachment] = await attachments("bound");
    expect(attachment).toMatchObject({
      authorizedKind: "bridge",
      port: { kind: "bridge" },
      mode: "descriptor",
      auth: "token",
      boundMacs: [0x02000000000a, 0x02000000000b],
      remote: "198.51.100.4",
      tokenExp: Date.parse(minted.expiresAt) / 1000,
    });
    response.webSocket?.close(1000, "done");
  });

  it("strips x-edgelan-* headers a client forges", async () => {
    const forged = { "x-edgelan-auth": "dev", "x-edgelan-dev-mode": "1", "X-Edgelan-Kind": "bridge" };
    const refused = await connect("closed", "", forged);
    expect(refused.status).toBe(401);
    expect(await errorCode(refused)).toBe("token-required");

    await admin("PUT", "/v1/segments/forged", {});
    const { token } = await mint("forged", { role: "member", macs: ["02:00:00:00:00:01"] });
    const admitted = await connect("forged", "", { ...forged, "x-edgelan-macs": "", Authorization: `Bearer ${token}` });
    expect(admitted.status).toBe(101);
    admitted.webSocket?.accept();
    const [attachment] = await attachments("forged");
    expect(attachment).toMatchObject({ authorizedKind: "member", auth: "token", boundMacs: [0x020000000001] });
    admitted.webSocket?.close(1000, "done");
  });

  it("refuses a connect that did not come through the Worker: 400 bad-forward", async () => {
    const response = await env.SEGMENTS.getByName("closed").fetch(`${BASE}/`, { headers: { Upgrade: "websocket" } });
    expect(response.status).toBe(400);
    expect(await errorCode(response)).toBe("bad-forward");
  });
});

describe("join token keys", () => {
  it("falls back to the admin token as HMAC key when EDGELAN_TOKEN_SECRET is unset", async () => {
    const adminKeyed: Env = { ...env, EDGELAN_TOKEN_SECRET: undefined };
    const response = await worker.fetch(
      new Request(`${BASE}/v1/segments/closed/tokens`, { method: "POST", headers: ADMIN, body: '{"role":"member"}' }),
      adminKeyed,
    );
    expect(response.status).toBe(201);
    const { token } = (await response.json()) as Minted;
    expect((await verifyJoinToken("test-admin-token", token, nowSeconds())).ok).toBe(true);
    expect((await verifyJoinToken(SECRET, token, nowSeconds())).ok).toBe(false);
  });

  it("uses the documented insecure dev key in dev mode with no secrets", async () => {
    const devEnv: Env = { ...env, EDGELAN_DEV_MODE: "1", EDGELAN_ADMIN_TOKEN: undefined, EDGELAN_TOKEN_SECRET: undefined };
    const response = await worker.fetch(new Request(`${BASE}/v1/segments/closed/tokens`, { method: "POST", body: '{"role":"monitor"}' }), devEnv);
    expect(response.status).toBe(201);
    const { token } = (await response.json()) as Minted;
    expect((await verifyJoinToken(INSECURE_DEV_TOKEN_SECRET, token, nowSeconds())).ok).toBe(true);
  });

  it("cannot accept tokens when deployed with no secret at all", async () => {
    const bare: Env = { ...env, EDGELAN_ADMIN_TOKEN: undefined, EDGELAN_TOKEN_SECRET: undefined, EDGELAN_DEV_MODE: undefined };
    const { token } = await mint("closed", { role: "member" });
    const response = await worker.fetch(new Request(`${BASE}/v1/segments/closed/connect?token=${token}`, { headers: { Upgrade: "websocket" } }), bare);
    expect(response.status).toBe(401);
    expect(await errorCode(response)).toBe("invalid-token");
  });
});

describe("verifyJoinToken", () => {
  const at = 1_800_000_000;
  const claims: JoinClaims = { seg: "lab", role: "member", iat: at, exp: at + 60, jti: "x" };

  it("accepts a token until the second before exp, and calls it expired from exp on", async () => {
    const token = await mintJoinToken(SECRET, claims);
    expect((await verifyJoinToken(SECRET, token, at + 59)).ok).toBe(true);
    expect(await verifyJoinToken(SECRET, token, at + 60)).toMatchObject({ ok: false, error: { code: "token-expired" } });
  });

  it("refuses claims with a bad shape even when correctly signed", async () => {
    for (const bad of [{ ...claims, seg: "UPPER" }, { ...claims, seg: undefined }, { ...claims, role: "root" }, { ...claims, macs: ["nope"] }, { ...claims, exp: "soon" }, { ...claims, jti: 7 }]) {
      const token = await mintJoinToken(SECRET, bad as unknown as JoinClaims);
      expect(await verifyJoinToken(SECRET, token, at)).toMatchObject({ ok: false, error: { code: "invalid-token" } });
    }
  });
});

/** Unpadded base64url of a string (UTF-8) or bytes. */
function base64url(data: string | Uint8Array): string {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A JWT built by hand with WebCrypto, as another JWT library would build it (the test does not use jose). */
async function handMadeJwt(header: Record<string, unknown>, payload: Record<string, unknown>, secret = SECRET, hash = "SHA-256"): Promise<string> {
  const body = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash }, false, ["sign"]);
  return `${body}.${base64url(new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body))))}`;
}

describe("join tokens are standard JWTs", () => {
  const at = 1_800_000_000;
  const payload = { aud: "edgelan", seg: "lab", role: "bridge", exp: at + 600, macs: ["02:00:00:00:00:0B"] };

  it("accepts a token minted by another JWT implementation (HS256, aud edgelan, seg, role, exp)", async () => {
    const token = await handMadeJwt({ alg: "HS256", typ: "JWT" }, payload);
    expect(await verifyJoinToken(SECRET, token, at)).toEqual({ ok: true, value: { seg: "lab", role: "bridge", exp: at + 600, macs: ["02:00:00:00:00:0b"] } });
    // A header without typ is as good.
    expect((await verifyJoinToken(SECRET, await handMadeJwt({ alg: "HS256" }, payload), at)).ok).toBe(true);
  });

  it("lets such a token join over the Worker", async () => {
    const token = await handMadeJwt({ alg: "HS256" }, { aud: "edgelan", seg: "closed", role: "member", exp: nowSeconds() + 600 });
    const response = await connect("closed", "", { Authorization: `Bearer ${token}` });
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    response.webSocket?.close(1000, "done");
  });

  it.each([
    ["alg none", { alg: "none" }, payload, "SHA-256"],
    ["HS512", { alg: "HS512" }, payload, "SHA-512"],
    ["a header that lies (HS512 signed with SHA-256)", { alg: "HS512" }, payload, "SHA-256"],
    ["no aud", { alg: "HS256" }, { ...payload, aud: undefined }, "SHA-256"],
    ["another aud", { alg: "HS256" }, { ...payload, aud: "other-service" }, "SHA-256"],
    ["no exp", { alg: "HS256" }, { ...payload, exp: undefined }, "SHA-256"],
    ["nbf in the future", { alg: "HS256" }, { ...payload, nbf: at + 60 }, "SHA-256"],
    ["no role", { alg: "HS256" }, { ...payload, role: undefined }, "SHA-256"],
  ])("refuses %s with invalid-token", async (_what, header, claims, hash) => {
    const token = await handMadeJwt(header, claims, SECRET, hash);
    expect(await verifyJoinToken(SECRET, token, at)).toMatchObject({ ok: false, error: { code: "invalid-token" } });
  });

  it("refuses an unsigned token (alg none, empty signature)", async () => {
    const token = `${base64url(JSON.stringify({ alg: "none" }))}.${base64url(JSON.stringify(payload))}.`;
    expect(await verifyJoinToken(SECRET, token, at)).toMatchObject({ ok: false, error: { code: "invalid-token" } });
  });

  it("refuses a token longer than 4096 characters without parsing it", async () => {
    const token = await handMadeJwt({ alg: "HS256" }, { ...payload, pad: "x".repeat(4096) });
    expect(await verifyJoinToken(SECRET, token, at)).toMatchObject({ ok: false, error: { code: "invalid-token", message: expect.stringContaining("4096") } });
  });
});
