import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { defineConfig } from "vitest/config";

// wrangler.toml's [assets] directory is built by `node ui/build.mjs` before `wrangler dev`/`deploy`;
// the workers project reads the same config without building, and needs the directory to exist.
mkdirSync(join(import.meta.dirname, "dist", "assets"), { recursive: true });

// Five projects: pure unit tests in Node, Durable Object tests inside workerd, the conformance suite
// (docs/protocol.md, one test per rule, against the real Worker and segment in workerd), the dashboard
// in a real browser, and end-to-end tests that start the real `wrangler dev` (and, as root, real TAP guests).
const workerdWithTestSecrets = () =>
  cloudflareTest({
    wrangler: { configPath: "./wrangler.toml" },
    miniflare: { bindings: { EDGELAN_ADMIN_TOKEN: "test-admin-token", EDGELAN_TOKEN_SECRET: "test-token-secret" } },
  });

export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], environment: "node" } },
      {
        // Fixed test secrets: the admin API and join tokens are exercised as deployed (auth on, dev mode off);
        // dev mode and "not configured" are tested by calling the Worker with an overridden env.
        // A test's time limit is above the 5 s each expectation waits (test/workers/ports.ts), so a message that never
        // comes fails with what was awaited rather than a bare timeout.
        plugins: [workerdWithTestSecrets()],
        test: { name: "workers", include: ["test/workers/**/*.test.ts"], testTimeout: 20_000 },
      },
      {
        // Waits are bounded (10 s per expectation, 40 s for the HELLO deadline); nothing asserts a tight time.
        plugins: [workerdWithTestSecrets()],
        test: { name: "conformance", include: ["test/conformance/**/*.test.ts"], testTimeout: 60_000 },
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
          // Tests run the CLI as users do (bin/edgelan.mjs → dist/): build it from the current sources first.
          globalSetup: ["test/e2e/build-cli.setup.ts"],
          // ... and without the user's EDGELAN_* environment (the relays also ignore .dev.vars).
          setupFiles: ["test/e2e/hermetic-env.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
