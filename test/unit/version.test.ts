import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { EDGELAN_VERSION } from "../../datapath/version.ts";

describe("the version", () => {
  it("has one home, and package.json agrees with it", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(pkg.version).toBe(EDGELAN_VERSION);
  });
});
