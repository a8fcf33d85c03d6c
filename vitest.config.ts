import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { defineConfig } from "vitest/config";

// wrangler.toml's [assets] directory is built by `node ui/build.mjs` before `wrangler dev`/`deploy`;
// the workers project reads the same config without building, and needs the directory to exist.
mkdirSync(join(import.meta.dirname, "dist", "assets"), { recursive: true });

// Four projects: pure unit tests in Node, Durable Object tests inside workerd, the dashboard
// in a real browser, and end-to-end tests that start the real `wrangler dev` (and, as root, real TAP guests).
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], environment: "node" } },
      {
        // Fixed test secrets: the admin API and join tokens are exercised as deployed (auth on, dev mode off);
        // dev mode and "not configured" are tested by calling the Worker with an overridden env.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: { bindings: { EDGELAN_ADMIN_TOKEN: "test-admin-token", EDGELAN_TOKEN_SECRET: "test-token-secret" } },
          }),
        ],
        test: { name: "workers", include: ["test/workers/**/*.test.ts"] },
      },
      {
        // The dashboard in Debian's chromium through playwright-core, against the real relay.
        test: {
          name: "browser",
          include: ["test/browser/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
