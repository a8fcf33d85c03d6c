// The dashboard at /ui/ in a real browser: Playwright (playwright-core) drives
// Debian's chromium against the real relay (wrangler dev). Two diagnostic hosts
// join and ping; the page must show them, their counters moving, and record a
// capture that tshark reads back. A wrong token shows nothing. Screenshots of
// failed tests are kept in test-artifacts/browser/.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { formatMac } from "../../datapath/mac.ts";
import { joinDiagHost, type JoinedHost } from "../e2e/diag-hosts.ts";
import { startRelay, type RunningRelay } from "../e2e/relay-harness.ts";

const CHROMIUM = process.env.EDGELAN_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dirname, "..", "..", "test-artifacts", "browser");
const ADMIN = "browser-e2e-admin-token";
const SEGMENT = "ui";
const skipReason = existsSync(CHROMIUM) ? null : `no chromium at ${CHROMIUM} (apt-get install chromium, or set EDGELAN_CHROMIUM)`;

let browser: Browser;
let workDir: string;

/** A fresh browser context (its own profile: no storage shared between tests) and page; screenshot kept if the test fails. */
async function openPage(testName: string): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1360, height: 1000 } });
  const page = await context.newPage();
  // Script errors and Content-Security-Policy refusals (HTTP errors the page handles are expected and not listed).
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(message.text());
  });
  onTestFailed(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, `${testName.replace(/[^a-z0-9]+/gi, "-")}.png`), fullPage: true }).catch(() => undefined);
  });
  return { context, page, problems };
}

async function signIn(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(`${baseUrl}/ui/`);
  await page.locator("#admin-token").fill(token);
  await page.locator("#sign-in button[type=submit]").click();
}

/** The number in a port row's cell, or NaN when the row is not shown. */
async function cellNumber(page: Page, portId: number, column: string): Promise<number> {
  const cell = page.locator(`tr[data-port="${portId}"] td[data-col="${column}"]`);
  return (await cell.count()) === 0 ? NaN : Number(await cell.textContent());
}

beforeAll(async () => {
  if (skipReason !== null) return;
  workDir = mkdtempSync(join(tmpdir(), "edgelan-browser-"));
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
});

afterAll(async () => {
  await browser?.close();
  if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
});

describe.skipIf(skipReason !== null)("dashboard with an admin token", () => {
  let relay: RunningRelay;
  const hosts: JoinedHost[] = [];
  const connectUrl = (): string => `${relay.wsUrl}/v1/segments/${SEGMENT}/connect`;

  beforeAll(async () => {
    relay = await startRelay({ adminToken: ADMIN });
    const created = await fetch(`${relay.baseUrl}/v1/segments/${SEGMENT}`, { method: "PUT", headers: { authorization: `Bearer ${ADMIN}` }, body: '{"openJoin": true}' });
    expect(created.status).toBe(201);
  });

  afterAll(async () => {
    for (const host of hosts) host.close();
    await relay?.stop();
  });

  it("refuses a wrong token and shows no segment data", async () => {
    const { context, page } = await openPage("wrong token");
    await signIn(page, relay.baseUrl, "not-the-admin-token");
    await expect.poll(() => page.locator("#sign-in-error").textContent()).toMatch(/refused this token/);
    expect(await page.locator("#segment-view, #segment-list").count()).toBe(0);
    expect(await page.evaluate("sessionStorage.getItem(\"edgelan.adminToken\")")).toBeNull();
    // Going straight to a segment's address does not get past the sign-in either.
    await page.goto(`${relay.baseUrl}/ui/#/segments/${SEGMENT}`);
    await page.locator("#admin-token").waitFor();
    expect(await page.locator("#segment-view").count()).toBe(0);
    await context.close();
  });

  it("signs in, shows two joined ports, moves their counters, and downloads a capture tshark reads", async () => {
    const { context, page, problems } = await openPage("signed in");
    const served = await fetch(`${relay.baseUrl}/ui/`);
    expect(served.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
    await signIn(page, relay.baseUrl, ADMIN);
    await page.locator("#segment-name").fill(SEGMENT);
    await page.locator("#open-segment button[type=submit]").click();
    await page.locator("#segment-view").waitFor();
    await expect.poll(() => page.locator("#ports").textContent()).toContain("No port is connected");

    const a = await joinDiagHost(connectUrl(), 0x02_00_00_00_0b_01, "10.11.0.1");
    const b = await joinDiagHost(connectUrl(), 0x02_00_00_00_0b_02, "10.11.0.2");
    hosts.push(a, b);
    await page.locator(`tr[data-port="${a.portId}"]`).waitFor();
    await page.locator(`tr[data-port="${b.portId}"]`).waitFor();
    expect(await page.locator(`tr[data-port="${a.portId}"] td[data-col="macs"]`).textContent()).toBe(formatMac(a.mac));
    expect(await page.locator(`tr[data-port="${b.portId}"] td[data-col="kind"]`).textContent()).toBe("member");

    // Counters move: A sends an ARP request and 5 echo requests; the page's next refreshes show them.
    const before = await cellNumber(page, a.portId, "rxFrames");
    expect(before).toBe(0);
    // One ARP request whatever the machine's load (a slow reply must not trigger a second one), then 5 echo requests.
    await a.host.resolve("10.11.0.2", { attempts: 1, intervalMs: 20_000 });
    const pinged = await a.host.ping("10.11.0.2", { count: 5, intervalMs: 20, timeoutMs: 10_000 });
    expect(pinged.received).toBe(5);
    await expect.poll(() => cellNumber(page, a.portId, "rxFrames"), { timeout: 15_000 }).toBe(6);
    await expect.poll(() => cellNumber(page, b.portId, "txFrames"), { timeout: 15_000 }).toBe(6);
    await expect.poll(() => page.locator("#fdb").textContent()).toContain(formatMac(b.mac));
    await expect.poll(() => page.locator("#legend").textContent()).toContain(`port ${a.portId}`);

    // Capture from the page: a monitor port opened by the browser; A's neighbour is cached, so 3 requests + 3 replies.
    await page.locator("#capture-start").click();
    await expect.poll(() => page.locator("#capture-status").textContent()).toMatch(/Capturing as monitor port \d+/);
    expect((await a.host.ping("10.11.0.2", { count: 3, intervalMs: 20, timeoutMs: 10_000 })).received).toBe(3);
    await expect.poll(() => page.locator("#capture-status").getAttribute("data-packets"), { timeout: 15_000 }).toBe("6");
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#capture-stop").click()]);
    expect(download.suggestedFilename()).toMatch(/^edgelan-ui-.*\.pcapng$/);
    const path = join(workDir, "dashboard.pcapng");
    await download.saveAs(path);
    const packets = execFileSync("tshark", ["-r", path, "-T", "fields", "-E", "separator=|", "-e", "icmp.type", "-e", "eth.src", "-e", "frame.comment"], { encoding: "utf8" })
      .trim().split("\n").map((line) => line.split("|"));
    expect(packets.filter(([type]) => type === "8").map(([, source, comment]) => [source, comment?.split(",")[0]]))
      .toEqual(Array(3).fill([formatMac(a.mac), `ingress port ${a.portId}`]));
    expect(packets.filter(([type]) => type === "0").map(([, source, comment]) => [source, comment?.split(",")[0]]))
      .toEqual(Array(3).fill([formatMac(b.mac), `ingress port ${b.portId}`]));
    expect(execFileSync("capinfos", [path], { encoding: "utf8" })).toMatch(/Number of stat entries = 1/);

    // Minting a token from the page.
    await page.locator("#token-role").selectOption("monitor");
    await page.locator("#token-result").evaluate((node) => node.replaceChildren());
    await page.getByRole("button", { name: "Mint token" }).click();
    await expect.poll(() => page.locator("#minted-token").textContent()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/); // a JWT: header.claims.signature
    expect(problems).toEqual([]);
    if (process.env.EDGELAN_SCREENSHOTS === "1") {
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
    }
    await context.close();
  });
});

describe.skipIf(skipReason !== null)("dashboard against `npm start` (open development mode)", () => {
  let relay: RunningRelay;
  let host: JoinedHost | undefined;

  beforeAll(async () => {
    relay = await startRelay();
  });

  afterAll(async () => {
    host?.close();
    await relay?.stop();
  });

  it("signs in with an empty token and shows a segment a host created by joining", async () => {
    host = await joinDiagHost(`${relay.wsUrl}/v1/segments/devlab/connect`, 0x02_00_00_00_0c_01, "10.12.0.1");
    const { context, page } = await openPage("dev mode");
    await page.goto(`${relay.baseUrl}/ui/`);
    await expect.poll(() => page.locator("#banner").textContent()).toMatch(/Open development mode/);
    await page.locator("#sign-in button[type=submit]").click();
    await page.locator("#segment-name").fill("devlab");
    await page.locator("#open-segment button[type=submit]").click();
    await page.locator(`tr[data-port="${host.portId}"]`).waitFor();
    await context.close();
  });
});
