/** Secrets compared by the Worker (admin token) and the Durable Object (resume tokens). */

/** Compares two secrets without leaking where they differ: both are hashed to equal length first (workerd's timingSafeEqual). */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [digestA, digestB] = await Promise.all([sha256(a), sha256(b)]);
  return crypto.subtle.timingSafeEqual(digestA, digestB);
}

async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
}
