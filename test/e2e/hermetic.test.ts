// End-to-end: test relays are hermetic. A `.dev.vars` that turns auth on (as the
// README tells users to write) and EDGELAN_* variables in the environment do not
// reach the relay the harness starts: it runs with the settings the test gives.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startRelay, type RunningRelay } from "./relay-harness.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const configDir = mkdtempSync(join(tmpdir(), "edgelan-hermetic-"));
let relay: RunningRelay | undefined;

/** The repository's wrangler.toml in a temporary directory, its paths made absolute, with a `.dev.vars` beside it. */
function configWithDevVars(): string {
  const toml = readFileSync(join(ROOT, "wrangler.toml"), "utf8")
    .replace(/^(main|directory)\s*=\s*"([^"]+)"/gm, (_line, key: string, path: string) => `${key} = ${JSON.stringify(resolve(ROOT, path))}`);
  const configPath = join(configDir, "wrangler.toml");
  writeFileSync(configPath, toml);
  writeFileSync(join(configDir, ".dev.vars"), "EDGELAN_ADMIN_TOKEN=from-dev-vars\nEDGELAN_TOKEN_SECRET=from-dev-vars\n");
  return configPath;
}

afterAll(async () => {
  await relay?.stop();
  rmSync(configDir, { recursive: true, force: true });
});

describe("the e2e environment", () => {
  it("has no EDGELAN_* variables but the suite's own knobs, whatever the user's shell exported (hermetic-env.ts)", () => {
    expect(Object.keys(process.env).filter((name) => name.startsWith("EDGELAN_") && name !== "EDGELAN_QEMU_KERNEL")).toEqual([]);
  });
});

describe("the relay harness", () => {
  it("ignores a .dev.vars with auth on and EDGELAN_* in the environment", async () => {
    const saved = process.env.EDGELAN_ADMIN_TOKEN;
    process.env.EDGELAN_ADMIN_TOKEN = "from-environment";
    try {
      relay = await startRelay({ configPath: configWithDevVars() });
    } finally {
      if (saved === undefined) delete process.env.EDGELAN_ADMIN_TOKEN;
      else process.env.EDGELAN_ADMIN_TOKEN = saved;
    }
    const health = (await (await fetch(`${relay.baseUrl}/healthz`)).json()) as { devMode: boolean };
    expect(health.devMode).toBe(true);
    // Open dev mode as asked: no admin token needed.
    const created = await fetch(`${relay.baseUrl}/v1/segments/hermetic`, { method: "PUT", body: "{}" });
    expect(created.status).toBe(201);
  });

  it("gives the relay the admin token the test asks for, not the one in .dev.vars", async () => {
    await relay?.stop();
    relay = await startRelay({ configPath: join(configDir, "wrangler.toml"), adminToken: "from-test" });
    const withDevVarsToken = await fetch(`${relay.baseUrl}/v1/segments/hermetic`, { headers: { authorization: "Bearer from-dev-vars" } });
    expect(withDevVarsToken.status).toBe(401);
    const withTestToken = await fetch(`${relay.baseUrl}/v1/segments/hermetic`, { headers: { authorization: "Bearer from-test" } });
    expect(withTestToken.status).toBe(404);
  });
});
