// The edgelan dashboard at /ui/: sign in with the admin token (kept in
// sessionStorage, sent as a bearer header), pick a segment, watch it live.
// Nothing is fetched or shown before the relay has accepted the token (or
// said it runs in open development mode, where the API is open anyway).
import { AdminApi, AdminApiError } from "../../client/admin-api.ts";
import { el, replaceChildren } from "./dom.ts";
import { SegmentView } from "./segment-view.ts";

const TOKEN_KEY = "edgelan.adminToken";
/** A name no one uses: probing it tells a valid token (404 segment-not-found) from an invalid one (401). */
const PROBE_SEGMENT = "edgelan-ui-token-check";

interface Health {
  version?: string;
  devMode?: boolean;
}

const app = document.getElementById("app") as HTMLElement;
const status = document.getElementById("relay-status") as HTMLElement;
const banner = document.getElementById("banner") as HTMLElement;
const signOutButton = document.getElementById("sign-out") as HTMLButtonElement;
let health: Health = {};
let current: SegmentView | null = null;

async function start(): Promise<void> {
  try {
    health = (await (await fetch("/healthz")).json()) as Health;
    status.textContent = `relay ${location.host} · version ${health.version ?? "?"}`;
  } catch {
    status.textContent = `relay ${location.host} is not answering /healthz`;
  }
  if (health.devMode === true) {
    banner.hidden = false;
    banner.textContent = "Open development mode: this relay's admin API and segments need no token. Never expose it.";
  }
  signOutButton.addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", () => void route());
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved !== null) {
    const checked = await checkToken(saved);
    if (checked.ok) return void route();
    return showSignIn(checked.message);
  }
  showSignIn("");
}

/** The API client for the signed-in token; "" (dev mode) sends no header. */
function api(): AdminApi {
  const token = sessionStorage.getItem(TOKEN_KEY) ?? "";
  return new AdminApi(location.origin, token === "" ? undefined : token);
}

/** Asks the relay whether `token` is the admin token, without reading any segment's data. */
async function checkToken(token: string): Promise<{ ok: true } | { ok: false; message: string }> {
  const candidate = new AdminApi(location.origin, token === "" ? undefined : token);
  try {
    await candidate.call("GET", `/v1/segments/${PROBE_SEGMENT}`);
    return { ok: true };
  } catch (error) {
    if (error instanceof AdminApiError && error.status === 404 && error.code === "segment-not-found") return { ok: true };
    return { ok: false, message: error instanceof AdminApiError ? explain(error) : String(error) };
  }
}

function explain(error: AdminApiError): string {
  if (error.code === "admin-token-invalid") return "The relay refused this token: it is not the admin token.";
  if (error.code === "admin-token-required") return "This relay needs its admin token (EDGELAN_ADMIN_TOKEN).";
  if (error.code === "admin-disabled") return "This relay's admin API is disabled: it has no EDGELAN_ADMIN_TOKEN.";
  return error.message;
}

function showSignIn(message: string): void {
  stopSegment();
  signOutButton.hidden = true;
  const input = el("input", { type: "password", id: "admin-token", name: "admin-token", autocomplete: "off", placeholder: "EDGELAN_ADMIN_TOKEN", "aria-label": "Admin token" });
  const error = el("p", { id: "sign-in-error", class: "error", role: "alert" }, message);
  const form = el("form", {
    class: "inline", id: "sign-in",
    onsubmit: (event: Event) => {
      event.preventDefault();
      void signIn(input.value.trim(), error);
    },
  }, input, el("button", { type: "submit" }, "Sign in"));
  replaceChildren(app, el("section", { class: "panel" },
    el("h2", {}, "Sign in"),
    el("p", { class: "muted" }, health.devMode === true
      ? "Open development mode: sign in with an empty token."
      : "Use the relay's admin token. It stays in this tab's session storage and is sent only to this relay."),
    form, error));
  input.focus();
}

async function signIn(token: string, error: HTMLElement): Promise<void> {
  error.textContent = "Checking…";
  const checked = await checkToken(token);
  if (!checked.ok) {
    error.textContent = checked.message;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  await route();
}

/** Drops the token and goes back to the sign-in form. */
function signOut(message: string): void {
  sessionStorage.removeItem(TOKEN_KEY);
  if (location.hash !== "") history.replaceState(null, "", location.pathname);
  showSignIn(message);
}

/** `#/segments/<name>` shows a segment; anything else the segment list. */
async function route(): Promise<void> {
  if (sessionStorage.getItem(TOKEN_KEY) === null) return showSignIn("");
  signOutButton.hidden = false;
  const match = /^#\/segments\/([a-z0-9._-]{1,64})$/.exec(location.hash);
  if (match !== null) return showSegment(match[1] as string);
  await showHome();
}

async function showHome(): Promise<void> {
  stopSegment();
  const name = el("input", { id: "segment-name", name: "segment", class: "wide", placeholder: "segment name, e.g. lab", pattern: "[a-z0-9._\\-]{1,64}", required: true, "aria-label": "Segment name" });
  const list = el("div", { class: "segments", id: "segment-list" }, el("span", { class: "muted" }, "Loading the segment list…"));
  replaceChildren(app, el("section", { class: "panel" },
    el("h2", {}, "Segments"),
    list,
    el("form", {
      class: "inline", id: "open-segment",
      onsubmit: (event: Event) => {
        event.preventDefault();
        location.hash = `#/segments/${name.value.trim()}`;
      },
    }, name, el("button", { type: "submit" }, "Open")),
  ));
  replaceChildren(list, ...(await segmentLinks()));
}

/** Links to every segment when the relay has a list route (`GET /v1/segments`), else a hint. */
async function segmentLinks(): Promise<Array<Node | string>> {
  try {
    const body = (await api().call("GET", "/v1/segments")) as { segments?: Array<string | { name?: string }> } | Array<string | { name?: string }>;
    const names = (Array.isArray(body) ? body : body.segments ?? []).map((entry) => (typeof entry === "string" ? entry : entry.name ?? "")).filter((entry) => entry !== "");
    if (names.length === 0) return [el("span", { class: "muted" }, "No segments yet.")];
    return names.map((segment) => el("a", { href: `#/segments/${segment}` }, segment));
  } catch (error) {
    if (error instanceof AdminApiError && error.status === 401) {
      signOut(explain(error));
      return [];
    }
    return [el("span", { class: "muted" }, "This relay cannot list segments: type a segment's name.")];
  }
}

function showSegment(name: string): void {
  stopSegment();
  current = new SegmentView(name, api(), {
    onUnauthorized: (message) => signOut(message),
    back: () => {
      location.hash = "";
    },
  });
  replaceChildren(app, current.root);
  current.start();
}

function stopSegment(): void {
  current?.stop();
  current = null;
}

void start();
