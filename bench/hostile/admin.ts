// The management API calls the hostile benchmark needs, with timeouts (a blocked segment
// may not answer for seconds).
export class Admin {
  constructor(private readonly baseUrl: string, private readonly adminToken: string) {}

  private async call(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<{ status: number; json: unknown }> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method, headers: { Authorization: `Bearer ${this.adminToken}` }, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    return { status: response.status, json: text === "" ? null : (JSON.parse(text) as unknown) };
  }

  async putSegment(name: string, config: Record<string, unknown>): Promise<void> {
    const { status, json } = await this.call("PUT", `/v1/segments/${name}`, config);
    if (status !== 200 && status !== 201) throw new Error(`PUT ${name}: ${status} ${JSON.stringify(json)}`);
  }

  async deleteSegment(name: string): Promise<void> {
    await this.call("DELETE", `/v1/segments/${name}`);
  }

  async token(name: string, role: string, ttlSeconds = 3600, macs?: string[]): Promise<string> {
    const { status, json } = await this.call("POST", `/v1/segments/${name}/tokens`, { role, ttlSeconds, ...(macs === undefined ? {} : { macs }) });
    if (status !== 201) throw new Error(`token for ${name}: ${status} ${JSON.stringify(json)}`);
    return (json as { token: string }).token;
  }

  /**
   * Every number the segment reports, flattened: segment counters (`counters.x`), the per-port
   * drop reasons summed over ports (`drops.x`), queued bytes. Null when the segment does not answer in time.
   */
  async counters(name: string, timeoutMs = 30_000): Promise<Record<string, number> | null> {
    try {
      const segment = await this.call("GET", `/v1/segments/${name}`, undefined, timeoutMs);
      const ports = await this.call("GET", `/v1/segments/${name}/ports`, undefined, timeoutMs);
      if (segment.status !== 200 || ports.status !== 200) return null;
      const flat: Record<string, number> = {};
      const described = segment.json as { counters: Record<string, number>; queuedBytes: number };
      for (const [key, value] of Object.entries(described.counters)) if (typeof value === "number") flat[`counters.${key}`] = value;
      flat.queuedBytes = described.queuedBytes;
      for (const port of (ports.json as { ports: Array<{ counters: { drops: Record<string, number> } }> }).ports) {
        for (const [reason, count] of Object.entries(port.counters.drops)) flat[`drops.${reason}`] = (flat[`drops.${reason}`] ?? 0) + count;
      }
      return flat;
    } catch {
      return null;
    }
  }
}

/** The counters that rose between two readings, with how much (closed ports take their drops with them). */
export function rose(before: Record<string, number> | null, after: Record<string, number> | null): Record<string, number> {
  const deltas: Record<string, number> = {};
  if (after === null) return deltas;
  for (const [key, value] of Object.entries(after)) {
    const delta = value - (before?.[key] ?? 0);
    if (delta > 0) deltas[key] = delta;
  }
  return deltas;
}
