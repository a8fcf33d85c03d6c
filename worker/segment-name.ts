import { fail, ok, type Result } from "../datapath/result.ts";

const SEGMENT_NAME = /^[a-z0-9._-]{1,64}$/;

/**
 * Checks a segment name: 1–64 characters of `a-z 0-9 . _ -`. "." and ".." are refused too,
 * because URL normalisation would turn them into a different path before they reach us.
 */
export function validateSegmentName(name: string): Result<string, "invalid-segment-name"> {
  if (!SEGMENT_NAME.test(name) || name === "." || name === "..") {
    return fail(
      "invalid-segment-name",
      `invalid segment name ${JSON.stringify(name)}: use 1-64 characters of a-z, 0-9, ".", "_" and "-" (not "." or "..")`,
    );
  }
  return ok(name);
}
