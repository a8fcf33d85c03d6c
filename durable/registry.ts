import { DurableObject } from "cloudflare:workers";
import { MAX_LIST_PAGE, REGISTRY_NAME, type RegisteredSegment, type RegistryApi, type SegmentPage } from "../contract/registry-api.ts";
import type { Env } from "../contract/segment-api.ts";

// The names of the segments that exist. A Durable Object cannot enumerate other
// objects, so each Segment tells this one object when it is created or changed
// (record) and when it is deleted or expires (forget). Only management events
// write here, never the data path.

const KEY_PREFIX = "segment:";

/** The index of segment names: one instance, named REGISTRY_NAME. */
export class SegmentRegistry extends DurableObject<Env> implements RegistryApi {
  /** Adds or updates a segment's entry. */
  async record(entry: RegisteredSegment): Promise<void> {
    this.ctx.storage.kv.put(KEY_PREFIX + entry.name, entry);
  }

  /** Removes a segment's entry (deleted, or expired by its TTL). */
  async forget(name: string): Promise<void> {
    this.ctx.storage.kv.delete(KEY_PREFIX + name);
  }

  /** Up to `limit` segments whose names sort after `after`, in name order. */
  async list(after: string | undefined, limit: number): Promise<SegmentPage> {
    const size = Math.max(1, Math.min(MAX_LIST_PAGE, limit));
    const options = { prefix: KEY_PREFIX, limit: size + 1, ...(after === undefined ? {} : { startAfter: KEY_PREFIX + after }) };
    const segments = [...this.ctx.storage.kv.list<RegisteredSegment>(options)].map(([, entry]) => entry);
    const more = segments.length > size;
    if (more) segments.pop();
    return { segments, next: more ? (segments.at(-1)?.name ?? null) : null };
  }
}

/** Tells the registry about a segment; a failure is logged, never fails the management call that caused it. */
export async function recordSegment(env: Env, entry: RegisteredSegment): Promise<void> {
  try {
    await env.SEGMENT_REGISTRY.getByName(REGISTRY_NAME).record(entry);
  } catch (error) {
    console.error(`edgelan: could not record segment ${entry.name} in the registry`, error);
  }
}

/** Tells the registry a segment is gone; failures are logged. */
export async function forgetSegment(env: Env, name: string): Promise<void> {
  try {
    await env.SEGMENT_REGISTRY.getByName(REGISTRY_NAME).forget(name);
  } catch (error) {
    console.error(`edgelan: could not remove segment ${name} from the registry`, error);
  }
}
