/** Errors are values: a code a program can switch on and a message a person can act on. */
export interface Failure<Code extends string = string> {
  readonly code: Code;
  readonly message: string;
}

export type Result<T, Code extends string = string> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: Failure<Code> };

/** Wraps a value as a successful result. */
export function ok<T>(value: T): { readonly ok: true; readonly value: T } {
  return { ok: true, value };
}

/** Builds a failed result with a code and a human-readable message. */
export function fail<Code extends string>(code: Code, message: string): { readonly ok: false; readonly error: Failure<Code> } {
  return { ok: false, error: { code, message } };
}
