/**
 * The contract of the segment registry: the one Durable Object that lists segment names
 * (`GET /v1/segments`). A Durable Object cannot enumerate other objects, so each Segment
 * tells the registry when it is created, changed, deleted or expires. worker/ reads it;
 * durable/ implements and writes it.
 */

/** What `GET /v1/segments` lists for each segment. */
export interface RegisteredSegment {
  name: string;
  /** Whether members may join without a token. */
  openJoin: boolean;
  /** ISO 8601. */
  createdAt: string;
}

/** One page of the list, in name order; `next` is the `after` cursor for the next page, or null. */
export interface SegmentPage {
  segments: RegisteredSegment[];
  next: string | null;
}

/** The registry's RPC methods. */
export interface RegistryApi extends Rpc.DurableObjectBranded {
  record(entry: RegisteredSegment): Promise<void>;
  forget(name: string): Promise<void>;
  list(after: string | undefined, limit: number): Promise<SegmentPage>;
}

/** The one registry object's name. */
export const REGISTRY_NAME = "segments";
/** Most segments in one page of `GET /v1/segments` (and the default). */
export const MAX_LIST_PAGE = 1000;
