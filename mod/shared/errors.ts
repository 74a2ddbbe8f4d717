/** Errors that carry how the process should end. */

/** A mistake in how meshd was invoked (flag, env var or config file value). Exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  readonly exitCode = 2;
}

/** Returns a message for any thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
