// Reads what a join token says without verifying it (only the relay can): the
// CLI uses it to check --mac against a MAC-bound token before connecting.
import { parseMac, type MacKey } from "../../datapath/mac.ts";

/** The claims the CLI looks at; absent when the token does not carry them. */
export interface PeekedClaims {
  seg?: string;
  role?: string;
  macs?: MacKey[];
  exp?: number;
}

/** The payload of a JWT (header.payload.signature), or null for anything else. */
export function peekTokenClaims(token: string): PeekedClaims | null {
  const parts = token.split(".");
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1] as string)) return null;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1] as string, "base64url").toString("utf8"));
  } catch {
    return null;
  }
  if (typeof payload !== "object" || payload === null) return null;
  const { seg, role, macs, exp } = payload as Record<string, unknown>;
  const claims: PeekedClaims = {};
  if (typeof seg === "string") claims.seg = seg;
  if (typeof role === "string") claims.role = role;
  if (typeof exp === "number") claims.exp = exp;
  if (Array.isArray(macs)) {
    claims.macs = macs.flatMap((text) => {
      const mac = parseMac(String(text));
      return mac.ok ? [mac.value] : [];
    });
  }
  return claims;
}
